//! Native buckets for the histograms counted before runplane kept them
//! ([`crate::aggregate::native`]), from the runs and jobs still kept: once per
//! workflow, in the background after an upgrade (and for any record an older
//! replica rewrote meanwhile). Until a workflow's turn its scrapes carry the
//! classic buckets alone.

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

/// How often the records are looked through again: at start, then every
/// hour, so that a record an older replica rewrote without its native
/// buckets during a rolling upgrade (decoding drops fields a binary does
/// not know) gets them back without waiting for a restart.
const LOOK_AGAIN_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Backfills every workflow that needs it, at start and every
/// [`LOOK_AGAIN_EVERY`]; a failure is retried at the next look.
pub(crate) async fn run(store: Store) {
    crate::periodic::every(
        LOOK_AGAIN_EVERY,
        "native histogram buckets backfilled from the runs kept",
        || store.backfill_native(),
    )
    .await;
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
        let org_id: Option<String> = workflow::Entity::find_by_id(workflow_id)
            .select_only()
            .column(workflow::Column::OrgId)
            .into_tuple()
            .one(&txn)
            .await?;
        if let Some(org_id) = org_id {
            super::revisions::bump(&txn, &org_id, workflow_id).await?;
        }
        txn.commit().await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {

    use runplane_api::workflowrun::v1::RunStatus;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

    use crate::aggregate::native;
    use crate::entity::workflow;
    use crate::store::test_support::{finished_run, org_metrics};
    use crate::store::{Store, record};

    /// Runs finished with native buckets, their record then put back as one
    /// written before runplane kept them: the backfill gives it the very
    /// buckets counted live (every run is still kept), once.
    async fn backfill_restores_what_was_counted_live(store: Store) {
        let wf = store
            .find_or_create_workflow("org", "default", "build")
            .await
            .expect("workflow");
        for outcome in [RunStatus::Success, RunStatus::Success, RunStatus::Error] {
            finished_run(&store, &wf, "UNSPECIFIED", outcome).await;
        }
        let counted = org_metrics(&store).await;
        assert!(!native::lacks_native(&counted[0]), "counted with them");
        let mut older = counted[0].clone();
        for d in &mut older.durations {
            d.native = None;
        }
        workflow::Entity::update_many()
            .col_expr(
                workflow::Column::Metrics,
                sea_orm::sea_query::Expr::value(record::encode(&older)),
            )
            .filter(workflow::Column::Id.eq(&wf.id))
            .exec(&store.db)
            .await
            .expect("write the older record");
        assert!(native::lacks_native(&org_metrics(&store).await[0]));

        assert_eq!(store.backfill_native().await.expect("backfill"), 1);
        let backfilled = org_metrics(&store).await;
        assert_eq!(backfilled[0].durations, counted[0].durations);
        assert_eq!(store.backfill_native().await.expect("again"), 0, "once");
    }

    #[tokio::test]
    async fn records_counted_without_native_buckets_get_them_on_sqlite() {
        let dir = tempfile::tempdir().expect("tempdir");
        backfill_restores_what_was_counted_live(crate::store::test_support::store(&dir).await)
            .await;
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL: set RUNPLANE_TEST_POSTGRES (scripts/test does)"]
    async fn records_counted_without_native_buckets_get_them_on_postgres() {
        crate::store::test_support::on_postgres(backfill_restores_what_was_counted_live).await;
    }
}
