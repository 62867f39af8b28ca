//! Native buckets for the histograms counted before runplane kept them
//! ([`crate::aggregate::native`]), from the runs and jobs still kept: once per
//! workflow, in the background after an upgrade. Until a workflow's turn its
//! scrapes carry the classic buckets alone.

use runplane_api::workflowrun::v1::{RunStatus, RunnerType};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};

use super::{Store, record, run_writes};
use crate::aggregate::native::{self, KeptJob, KeptRun};
use crate::entity::{job, run, workflow};
use crate::error::Error;

/// Workflows read per page while looking for records to backfill.
const PAGE: u64 = 200;

/// Backfills every workflow that needs it, retrying a minute after a
/// failure (the database away at startup) until it has gone through all.
pub(crate) async fn run(store: Store) {
    loop {
        match store.backfill_native().await {
            Ok(0) => return,
            Ok(workflows) => {
                tracing::info!(
                    workflows,
                    "native histogram buckets backfilled from the runs kept"
                );
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "backfilling native histogram buckets failed, will retry")
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
    }
}

impl Store {
    /// Backfills every workflow whose record lacks native buckets; says how
    /// many it backfilled. Every replica may run it: a workflow is backfilled
    /// under its row's lock, once.
    pub(crate) async fn backfill_native(&self) -> Result<u64, Error> {
        let mut after = String::new();
        let mut backfilled = 0;
        loop {
            let page: Vec<(String, Vec<u8>)> = workflow::Entity::find()
                .select_only()
                .column(workflow::Column::Id)
                .column(workflow::Column::Metrics)
                .filter(workflow::Column::Id.gt(after.as_str()))
                .order_by_asc(workflow::Column::Id)
                .limit(PAGE)
                .into_tuple()
                .all(&self.db)
                .await?;
            let Some((last, _)) = page.last() else {
                return Ok(backfilled);
            };
            after = last.clone();
            for (id, metrics) in &page {
                if native::lacks_native(&record::decode(metrics)?)
                    && self.backfill_workflow(id).await?
                {
                    backfilled += 1;
                }
            }
        }
    }

    /// Backfills one workflow's record, unless it is gone or was backfilled
    /// meanwhile; says whether it did.
    async fn backfill_workflow(&self, workflow_id: &str) -> Result<bool, Error> {
        let backend = self.db.get_database_backend();
        let txn = self.db.begin().await?;
        // A write first: it takes the row's lock on PostgreSQL and the
        // database's write lock on SQLite before anything is read, so no
        // finish counted meanwhile is lost (nor a read upgraded too late).
        let touched = workflow::Entity::update_many()
            .col_expr(
                workflow::Column::Metrics,
                Expr::col(workflow::Column::Metrics),
            )
            .filter(workflow::Column::Id.eq(workflow_id))
            .exec(&txn)
            .await?;
        let row = txn
            .query_one_raw(run_writes::record_of_workflow(backend, workflow_id))
            .await?;
        let (Some(row), 1) = (row, touched.rows_affected) else {
            return Ok(false);
        };
        let metrics: Vec<u8> = row.try_get("", "metrics")?;
        let exemplars: Vec<u8> = row.try_get("", "exemplars")?;
        let mut record = record::decode_with_exemplars(&metrics, &exemplars)?;
        if !native::lacks_native(&record) {
            return Ok(false);
        }
        let runs: Vec<(String, String, String, i64, Option<i64>)> = run::Entity::find()
            .select_only()
            .column(run::Column::Status)
            .column(run::Column::Runner)
            .column(run::Column::Branch)
            .column(run::Column::StartedAtMs)
            .column(run::Column::FinishedAtMs)
            .filter(run::Column::WorkflowId.eq(workflow_id))
            .filter(run::Column::FinishedAtMs.is_not_null())
            .into_tuple()
            .all(&txn)
            .await?;
        let runs: Vec<KeptRun> = runs
            .into_iter()
            .filter_map(|(status, runner, branch, started, finished)| {
                let status = RunStatus::from_label(&status);
                let seconds = crate::aggregate::seconds(finished? - started);
                (status != RunStatus::Expired).then(|| KeptRun {
                    status,
                    runner: RunnerType::from_label(&runner),
                    branch,
                    seconds,
                })
            })
            .collect();
        let jobs: Vec<(String, String, Option<i64>, Option<i64>)> = job::Entity::find()
            .select_only()
            .column(job::Column::Name)
            .column(job::Column::Outcome)
            .column(job::Column::StartedAtMs)
            .column(job::Column::FinishedAtMs)
            .filter(job::Column::WorkflowId.eq(workflow_id))
            .filter(job::Column::Outcome.ne(""))
            .into_tuple()
            .all(&txn)
            .await?;
        let jobs: Vec<KeptJob> = jobs
            .into_iter()
            .filter_map(|(name, outcome, started, finished)| {
                let ms = finished? - started?;
                (ms >= 0).then(|| KeptJob {
                    name,
                    status: RunStatus::from_label(&outcome),
                    seconds: crate::aggregate::seconds(ms),
                })
            })
            .collect();
        native::backfill_record(&mut record, &runs, &jobs);
        txn.execute_raw(run_writes::record_update(backend, workflow_id, &mut record))
            .await?;
        txn.commit().await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use runplane_api::workflowrun::v1::RunStatus;
    use sea_orm::ConnectionTrait;

    use crate::aggregate::native;
    use crate::store::record;
    use crate::store::test_support::{finished_run, org_metrics, store_with_workflow};

    #[tokio::test]
    async fn records_counted_without_native_buckets_get_them_from_the_runs_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, wf) = store_with_workflow(&dir, "build").await;
        for outcome in [RunStatus::Success, RunStatus::Success, RunStatus::Error] {
            finished_run(&store, &wf, "UNSPECIFIED", outcome).await;
        }
        let counted = org_metrics(&store).await;
        assert!(!native::lacks_native(&counted[0]), "counted with them");
        // As a record written before runplane kept native buckets.
        let mut older = counted[0].clone();
        for d in &mut older.durations {
            d.native = None;
        }
        let bytes = record::encode(&older);
        let backend = store.db.get_database_backend();
        store
            .db
            .execute_raw(sea_orm::Statement::from_sql_and_values(
                backend,
                "UPDATE workflows SET metrics = ? WHERE id = ?",
                [bytes.into(), wf.id.clone().into()],
            ))
            .await
            .expect("write the older record");
        assert!(native::lacks_native(&org_metrics(&store).await[0]));

        assert_eq!(store.backfill_native().await.expect("backfill"), 1);
        let backfilled = org_metrics(&store).await;
        assert_eq!(
            backfilled[0].durations, counted[0].durations,
            "the runs are all kept: the same buckets as counted live"
        );
        assert_eq!(store.backfill_native().await.expect("again"), 0, "once");
    }
}
