//! Deletes finished runs past the retention age, in batches, and the jobs,
//! deployments and commit times of that long ago.
//!
//! Only the run history goes: the per-workflow aggregates behind the metrics
//! are never touched, so counters and histograms stay monotonic. Every replica
//! may run this; deleting is idempotent.

use std::time::Duration;

use crate::error::Error;
use crate::store::Store;

/// Runs deleted per statement, so that no transaction grows large.
const BATCH: u64 = 1000;

/// Applies retention every `interval`, forever.
pub(crate) async fn run(store: Store, retention: Duration, interval: Duration) {
    crate::periodic::every(
        interval,
        "deleted finished runs past the retention age",
        || apply(&store, retention),
    )
    .await;
}

/// Deletes every run that finished more than `retention` ago, and every job
/// first reported, deployment finished and commit made that long ago; says
/// how many runs went.
pub(crate) async fn apply(store: &Store, retention: Duration) -> Result<u64, Error> {
    let cutoff =
        runplane_api::time::now_ms().saturating_sub(runplane_api::time::duration_ms(retention));
    let mut deleted = 0;
    loop {
        let batch = store.delete_finished_runs(cutoff, BATCH).await?;
        deleted += batch;
        if batch < BATCH {
            break;
        }
    }
    while store.delete_old_jobs(cutoff, BATCH).await? == BATCH {}
    while store.delete_old_deployments(cutoff, BATCH).await? == BATCH {}
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use runplane_api::workflowrun::v1::RunStatus;

    use super::*;
    use crate::store::RunFilter;
    use crate::store::test_support::{finished_run, store_with_workflow};

    #[tokio::test]
    async fn old_finished_runs_go_and_the_aggregates_stay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, wf) = store_with_workflow(&dir, "build").await;
        for outcome in [RunStatus::Success, RunStatus::Error] {
            finished_run(&store, &wf, "UNSPECIFIED", outcome).await;
        }
        let open = store
            .start_run(&wf, "UNSPECIFIED", "", None)
            .await
            .expect("start");
        let before = crate::store::test_support::org_metrics(&store).await;

        // Nothing is a day old yet.
        assert_eq!(
            apply(&store, Duration::from_secs(86_400))
                .await
                .expect("apply"),
            0
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(apply(&store, Duration::ZERO).await.expect("apply"), 2);

        let left = store
            .list_runs("org", &RunFilter::default(), None, 10)
            .await
            .expect("list");
        assert_eq!(
            left.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            [open.id.as_str()]
        );
        assert_eq!(
            crate::store::test_support::org_metrics(&store).await,
            before
        );
    }
}
