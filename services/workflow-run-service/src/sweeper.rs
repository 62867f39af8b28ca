//! Marks runs that never reported an outcome as expired.
//!
//! A CI job killed before it could report leaves its run in progress forever;
//! after the run timeout the sweeper finishes it as EXPIRED through the same
//! lifecycle as FinishRun, so the workflow's last run reflects it.

use std::time::Duration;

use crate::error::Error;
use crate::lifecycle::Lifecycle;

/// Runs expired per database round trip.
const BATCH: u64 = 500;

/// Sweeps every `interval`, forever.
pub(crate) async fn run(lifecycle: Lifecycle, timeout: Duration, interval: Duration) {
    let reason = format!(
        "no outcome reported within {}",
        humantime::format_duration(timeout)
    );
    crate::periodic::every(interval, "expired runs past the run timeout", || {
        sweep(&lifecycle, timeout, &reason)
    })
    .await;
}

/// Expires every run started more than `timeout` ago that is still in progress.
pub(crate) async fn sweep(
    lifecycle: &Lifecycle,
    timeout: Duration,
    reason: &str,
) -> Result<u64, Error> {
    let now = runplane_api::time::now_ms();
    let cutoff = now - runplane_api::time::duration_ms(timeout);
    let mut expired = 0;
    loop {
        let stale = lifecycle.store().stale_runs(cutoff, now, BATCH).await?;
        for run_id in &stale {
            match lifecycle.expire(run_id, reason).await {
                Ok(_) => expired += 1,
                // Finished by its runner in the meantime: nothing to expire.
                Err(Error::AlreadyFinished { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        if (stale.len() as u64) < BATCH {
            return Ok(expired);
        }
    }
}

#[cfg(test)]
mod tests {
    use runplane_api::workflowrun::v1::RunStatus;

    use super::*;
    use crate::store::test_support::{finished_run, store_with_workflow};

    #[tokio::test]
    async fn sweeping_expires_only_runs_past_the_timeout_and_only_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, wf) = store_with_workflow(&dir, "nightly").await;
        let stale = store
            .start_run(&wf, "UNSPECIFIED", "", None)
            .await
            .expect("start");
        let finished = finished_run(&store, &wf, "UNSPECIFIED", RunStatus::Success).await;
        let lifecycle = Lifecycle::new(store.clone(), None);

        // Nothing is older than an hour yet.
        assert_eq!(
            sweep(&lifecycle, Duration::from_secs(3600), "late")
                .await
                .expect("sweep"),
            0
        );
        // With a zero timeout the in-progress run is past due; the finished one is left alone.
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(
            sweep(&lifecycle, Duration::ZERO, "late")
                .await
                .expect("sweep"),
            1
        );
        assert_eq!(
            sweep(&lifecycle, Duration::ZERO, "late")
                .await
                .expect("sweep"),
            0
        );

        let expired = store.get_run("org", &stale.id).await.expect("get");
        assert_eq!(
            (expired.status.as_str(), expired.reason.as_str()),
            ("expired", "late")
        );
        assert_eq!(
            store
                .get_run("org", &finished.id)
                .await
                .expect("get")
                .status,
            "success"
        );
    }
}
