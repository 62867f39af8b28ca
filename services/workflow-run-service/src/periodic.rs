//! The loop behind the background tasks: run a job every interval, forever,
//! saying what it did, and retrying at the next tick when it fails.

use std::future::Future;
use std::time::Duration;

use crate::error::Error;

/// Runs `job` every `interval`. A job returns how many rows it handled;
/// `done` names what they were (`"expired runs past the run timeout"`).
pub(crate) async fn every<F, Fut>(interval: Duration, done: &'static str, mut job: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64, Error>>,
{
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match job().await {
            Ok(0) => {}
            Ok(rows) => tracing::info!(rows, "{done}"),
            Err(e) => tracing::warn!(error = %e, "{done}: failed, will retry"),
        }
    }
}
