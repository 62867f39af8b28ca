//! One log line a minute (and one at shutdown) for the requests that went
//! well, instead of one line each: a busy service answers thousands of runs and scrapes a minute, and a
//! line per request made logs of tens of megabytes that said "OK" each time.
//! Each request is still logged at DEBUG; refusals and failures at INFO and
//! above, each.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// How often the summary is logged.
pub const INTERVAL: Duration = Duration::from_secs(60);

/// Requests counted since the last summary, by what they were and how they ended.
#[derive(Debug, Default)]
pub struct RequestSummary {
    counts: Mutex<BTreeMap<(String, String), u64>>,
}

/// The process's summary; its logging task starts with the first count.
pub fn requests() -> &'static RequestSummary {
    static SUMMARY: OnceLock<RequestSummary> = OnceLock::new();
    SUMMARY.get_or_init(|| {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async {
                let mut tick = tokio::time::interval(INTERVAL);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    requests().log();
                }
            });
        }
        RequestSummary::default()
    })
}

impl RequestSummary {
    /// Counts one request to `what` (a method or route) that ended as `how`.
    pub fn record(&self, what: &str, how: &str) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *counts.entry((what.to_owned(), how.to_owned())).or_default() += 1;
    }

    /// Logs the counts since the last summary, if any, and starts over.
    pub fn log(&self) {
        let counts = std::mem::take(&mut *self.counts.lock().unwrap_or_else(|p| p.into_inner()));
        if let Some(line) = summary_line(&counts) {
            tracing::info!(requests = counts.values().sum::<u64>(), by = %line, "requests served since the last summary");
        }
    }
}

/// `StartRun OK 600, FinishRun OK 598, …`, or nothing when nothing was served.
fn summary_line(counts: &BTreeMap<(String, String), u64>) -> Option<String> {
    (!counts.is_empty()).then(|| {
        counts
            .iter()
            .map(|((what, how), n)| format!("{what} {how} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_summed_by_what_and_how_and_start_over() {
        let summary = RequestSummary::default();
        summary.record("StartRun", "OK");
        summary.record("StartRun", "OK");
        summary.record("FinishRun", "NOT_FOUND");
        let counts = summary.counts.lock().expect("lock").clone();
        assert_eq!(
            summary_line(&counts).as_deref(),
            Some("FinishRun NOT_FOUND 1, StartRun OK 2")
        );
        summary.log();
        assert!(summary.counts.lock().expect("lock").is_empty());
        assert_eq!(summary_line(&BTreeMap::new()), None);
    }
}
