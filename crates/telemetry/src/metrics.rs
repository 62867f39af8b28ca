//! The process's own metrics, for its operators: one Prometheus registry per
//! process, served on `GET /metrics` next to the service.
//!
//! Each concern defines its instruments beside the code that records them and
//! registers them here once, through the constructors below, next to the
//! standard `process_*` metrics ([`crate::process`]).

use std::sync::OnceLock;

use prometheus::core::Collector;
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

/// The process's registry, created on first use.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let registry = Registry::new();
        if let Err(e) = registry.register(Box::new(crate::process::ProcessCollector::new())) {
            tracing::error!(error = %e, "cannot register the process metrics");
        }
        registry
    })
}

/// Adds a collector to the process's registry; a clash of names is a bug,
/// logged rather than fatal.
pub fn register(collector: Box<dyn Collector>) {
    if let Err(e) = registry().register(collector) {
        tracing::error!(error = %e, "cannot register a metrics collector");
    }
}

/// The text exposition of everything registered.
pub fn render() -> String {
    prometheus::TextEncoder::new()
        .encode_to_string(&registry().gather())
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot encode own metrics");
            String::new()
        })
}

/// The text format's content type, as `GET /metrics` answers it.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A counter, registered. Names and help are static: a failure is a bug.
pub fn int_counter(name: &str, help: &str) -> IntCounter {
    registered(IntCounter::new(name, help), name)
}

/// A gauge, registered.
pub fn int_gauge(name: &str, help: &str) -> IntGauge {
    registered(IntGauge::new(name, help), name)
}

/// A counter with labels, registered.
pub fn int_counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    registered(IntCounterVec::new(Opts::new(name, help), labels), name)
}

/// A histogram with labels over `buckets`, registered.
pub fn histogram_vec(name: &str, help: &str, buckets: &[f64], labels: &[&str]) -> HistogramVec {
    registered(
        HistogramVec::new(
            HistogramOpts::new(name, help).buckets(buckets.to_vec()),
            labels,
        ),
        name,
    )
}

fn registered<C: Collector + Clone + 'static>(made: prometheus::Result<C>, name: &str) -> C {
    let collector = made.unwrap_or_else(|e| unreachable!("static metric {name}: {e}"));
    register(Box::new(collector.clone()));
    collector
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_metrics_come_from_the_os() {
        // The OS's own count, in kB, of the same pages, around the render:
        // the other tests of this binary allocate beside it.
        let vm_rss = || {
            let status = std::fs::read_to_string("/proc/self/status").expect("status");
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .expect("VmRSS")
        };
        let before = vm_rss();
        let text = render();
        let after = vm_rss();
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_start_time_seconds",
            "process_threads",
            "runplane_allocator_in_use_bytes",
            "runplane_allocator_free_bytes",
        ] {
            assert!(text.contains(&format!("\n{name} ")), "no {name} in\n{text}");
        }
        let rss: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
            .and_then(|v| v.parse().ok())
            .expect("rss");
        assert!(rss > 1e6, "{rss}");
        let kb = rss / 1024.0;
        assert!(
            kb >= before.min(after) * 0.5 && kb <= before.max(after) * 1.5,
            "{rss} bytes vs {before} kB before and {after} kB after"
        );
    }

    #[test]
    fn instruments_are_registered_once_and_rendered() {
        let counter = int_counter("runplane_test_things_total", "Things.");
        counter.inc();
        assert!(render().contains("runplane_test_things_total 1"));
    }
}
