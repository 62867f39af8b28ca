//! The standard `process_*` metrics (CPU, memory, file descriptors, threads,
//! start time), read from `/proc/self` in the units the OS reports them in;
//! and what the allocator holds, in use and free ([`crate::memory`]).

use nix::unistd::SysconfVar;
use prometheus::core::Collector;
use prometheus::{Gauge, IntGauge};

/// The standard `process_*` metrics, from `/proc/self` (Linux; elsewhere none).
pub(crate) struct ProcessCollector {
    cpu: prometheus::Counter,
    resident: IntGauge,
    virtual_memory: IntGauge,
    open_fds: IntGauge,
    threads: IntGauge,
    start_time: Gauge,
    allocator_in_use: IntGauge,
    allocator_free: IntGauge,
    /// Units of `/proc`: clock ticks (USER_HZ) and memory pages, as the OS
    /// says (pages are 16 or 64 KiB on some arm64 kernels).
    ticks_per_second: f64,
    page_size: i64,
}

impl ProcessCollector {
    pub(crate) fn new() -> Self {
        let gauge = |name: &str, help: &str| {
            Gauge::new(name, help).unwrap_or_else(|e| unreachable!("static metric {name}: {e}"))
        };
        let int = |name: &str, help: &str| {
            IntGauge::new(name, help).unwrap_or_else(|e| unreachable!("static metric {name}: {e}"))
        };
        ProcessCollector {
            cpu: prometheus::Counter::new(
                "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds.",
            )
            .unwrap_or_else(|e| unreachable!("static metric: {e}")),
            resident: int(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
            ),
            virtual_memory: int(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
            ),
            open_fds: int("process_open_fds", "Number of open file descriptors."),
            threads: int("process_threads", "Number of OS threads in the process."),
            start_time: gauge(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
            ),
            allocator_in_use: int(
                "runplane_allocator_in_use_bytes",
                "Memory the allocator (glibc malloc) has handed out and not had back, in bytes.",
            ),
            allocator_free: int(
                "runplane_allocator_free_bytes",
                "Memory freed and kept by the allocator (glibc malloc) for reuse, in bytes; every 10 s, \
                 above 4 MiB, its whole free pages are given back to the OS (they count here still).",
            ),
            ticks_per_second: sysconf(SysconfVar::CLK_TCK).map_or(100.0, |t| t as f64),
            page_size: sysconf(SysconfVar::PAGE_SIZE).unwrap_or(4096),
        }
    }
}

fn saturating_i64(bytes: usize) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

/// A value of the running system's configuration, as `getconf` reads it.
#[allow(clippy::useless_conversion)] // a C long is 32 bits on some targets
fn sysconf(name: SysconfVar) -> Option<i64> {
    nix::unistd::sysconf(name)
        .ok()
        .flatten()
        .and_then(|v| i64::try_from(v).ok())
        .filter(|v| *v > 0)
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        [
            self.cpu.desc(),
            self.resident.desc(),
            self.virtual_memory.desc(),
            self.open_fds.desc(),
            self.threads.desc(),
            self.start_time.desc(),
            self.allocator_in_use.desc(),
            self.allocator_free.desc(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
            return Vec::new();
        };
        // Fields after the parenthesised command name, which may hold spaces.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
        if let (Some(utime), Some(stime)) = (field(14), field(15)) {
            // A counter only goes up: add what was spent since the last scrape.
            let spent = (utime + stime) / self.ticks_per_second;
            let delta = spent - self.cpu.get();
            if delta > 0.0 {
                self.cpu.inc_by(delta);
            }
        }
        if let Some(threads) = field(20) {
            self.threads.set(threads as i64);
        }
        if let Some(vsize) = field(23) {
            self.virtual_memory.set(vsize as i64);
        }
        if let Some(rss) = field(24) {
            self.resident.set(rss as i64 * self.page_size);
        }
        let boot_time = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse::<f64>().ok())
        });
        if let (Some(boot), Some(start)) = (boot_time, field(22)) {
            self.start_time.set(boot + start / self.ticks_per_second);
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(fds.count() as i64);
        }
        let mut allocator = Vec::new();
        if let Some(bytes) = crate::memory::allocator_bytes() {
            self.allocator_in_use.set(saturating_i64(bytes.in_use));
            self.allocator_free.set(saturating_i64(bytes.free));
            allocator.extend(self.allocator_in_use.collect());
            allocator.extend(self.allocator_free.collect());
        }
        [
            self.cpu.collect(),
            self.resident.collect(),
            self.virtual_memory.collect(),
            self.open_fds.collect(),
            self.threads.collect(),
            self.start_time.collect(),
            allocator,
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}
