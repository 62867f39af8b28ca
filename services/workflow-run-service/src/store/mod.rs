//! workflow-run-service's storage: its tables, read and written over its own
//! connection. What the aggregates mean and when a run may change are the
//! domain's ([`crate::aggregate`], [`crate::lifecycle`]); this only persists.
//!
//! - [`workflows`]: found or created, listed, deleted; identities remembered.
//! - [`runs`]: started, finished, listed, expired, deleted by retention.
//! - [`run_writes`]: ingestion's writes as statements; [`group_commit`]: how
//!   they are committed (one writer task on SQLite); [`write_txn`]: a
//!   transaction whose statements travel in batches.
//! - [`record`]: how a workflow's aggregates are stored; [`metrics_page`]: a
//!   scrape's page of them; [`backfill`]: native buckets for records counted
//!   before they were kept.
//! - [`jobs`]: jobs of runs, as CI systems report them (moved forward only).
//! - [`revisions`]: which writes an organization's aggregates have seen, for
//!   a scrape to tell whether what it holds is current without reading them.
//! - [`deployments`]: deployments, their environments' DORA aggregates, and
//!   commit times.
//!
//! Writes that must agree with each other (a run's outcome, its workflow's last
//! run, its duration histogram) happen in one transaction; rows that concurrent
//! finishes share are locked (`FOR UPDATE` on PostgreSQL; SQLite has a single
//! writer connection), so no update is lost whichever replica serves the call.
//!
//! One lock order, so that no two writes deadlock: **a workflow's row, then its
//! runs' rows.** A start holds the workflow's row (`FOR KEY SHARE`) while it
//! adds the run; a finish locks the workflow's row (`FOR UPDATE`, reading its
//! record) before it claims the run; a delete removes the workflow's row, then
//! its runs. A write that waited for a workflow deleted meanwhile finds it gone.

pub(crate) mod backfill;
mod deployments;
mod group_commit;
mod jobs;
mod metrics_page;
pub(crate) mod record;
mod revisions;
mod run_writes;
mod runs;
mod workflows;
mod write_txn;

use std::sync::{Arc, Mutex};

use sea_orm::DatabaseConnection;

pub(crate) use deployments::{DeploymentFilter, NewDeployment};
pub(crate) use jobs::{JobReport, status_from_label as job_status_from_label};
#[cfg(any(test, feature = "test-support"))]
pub(crate) use revisions::bump as bump_revision;
pub(crate) use runs::{Finish, FinishedRun, NewRun, Origin, RunFilter};
pub(crate) use workflows::WorkflowRef;

/// Workflows, runs and their aggregates, persisted.
#[derive(Clone)]
pub(crate) struct Store {
    pub(crate) db: DatabaseConnection,
    /// Bounds for histograms created from now on.
    buckets: Vec<f64>,
    /// Bounds for queue-time histograms created from now on.
    queue_buckets: Vec<f64>,
    /// Workflow identities seen so far, shared by clones.
    identities: Arc<Mutex<workflows::Identities>>,
    /// Commits whose time is stored, shared by clones.
    known_commits: Arc<Mutex<deployments::KnownCommits>>,
    /// Most workflows per organization; `None`: no limit.
    max_workflows_per_org: Option<u64>,
    /// How runs started and finished are written.
    writes: group_commit::WritePath,
    /// How long a job reported queued counts as waiting, at most.
    job_queue_window_ms: i64,
    /// Which branch label finished runs count under.
    branch_label: crate::aggregate::BranchLabel,
}

impl Store {
    pub(crate) fn new(db: DatabaseConnection, buckets: Vec<f64>) -> Self {
        Store {
            writes: group_commit::WritePath::for_backend(db.get_database_backend()),
            db,
            buckets,
            queue_buckets: crate::aggregate::DEFAULT_QUEUE_BUCKETS.to_vec(),
            identities: Arc::default(),
            known_commits: Arc::default(),
            max_workflows_per_org: None,
            job_queue_window_ms: 3_600_000,
            branch_label: crate::aggregate::BranchLabel::None,
        }
    }

    /// Counts runs finished from now on under the branch labels `label` gives.
    pub(crate) fn with_branch_label(mut self, label: crate::aggregate::BranchLabel) -> Self {
        self.branch_label = label;
        self
    }

    /// Jobs reported queued longer ago than `window` no longer count as
    /// queued now: their start was lost, or they will never run.
    pub(crate) fn with_job_queue_window(mut self, window: std::time::Duration) -> Self {
        self.job_queue_window_ms = runplane_api::time::duration_ms(window);
        self
    }

    /// Bounds for histograms created from now on.
    #[cfg(any(test, feature = "test-support"))]
    pub(crate) fn buckets(&self) -> &[f64] {
        &self.buckets
    }

    /// Bounds for queue-time histograms created from now on.
    pub(crate) fn with_queue_buckets(mut self, buckets: Vec<f64>) -> Self {
        self.queue_buckets = buckets;
        self
    }

    /// Refuses to create an organization's workflow past `limit` (0: no limit).
    /// Concurrent creations may overshoot it by as many as run at once.
    pub(crate) fn with_workflow_limit(mut self, limit: u64) -> Self {
        self.max_workflows_per_org = (limit > 0).then_some(limit);
        self
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    /// A store over a fresh SQLite file in `dir`.
    pub(crate) async fn store(dir: &tempfile::TempDir) -> super::Store {
        let path = dir.path().join("workflow-run.db");
        let db = runplane_database::open_sqlite::<crate::migration::Migrator>(&path)
            .await
            .expect("open");
        super::Store::new(db, vec![10.0, 60.0])
    }

    /// `check` run on a store in a schema of its own on the PostgreSQL server
    /// of RUNPLANE_TEST_POSTGRES, dropped after.
    pub(crate) async fn on_postgres<F: std::future::Future<Output = ()>>(
        check: impl FnOnce(super::Store) -> F,
    ) {
        use sea_orm::ConnectionTrait as _;
        let server = std::env::var("RUNPLANE_TEST_POSTGRES").expect("RUNPLANE_TEST_POSTGRES");
        let schema = format!("store_test_{}", uuid::Uuid::now_v7().simple());
        let args = runplane_database::DatabaseArgs {
            database_url: format!("{server}/postgres"),
            db_max_connections: 4,
            db_connect_timeout: std::time::Duration::from_secs(5),
            db_acquire_timeout: std::time::Duration::from_secs(5),
            database_schema: Some(schema.clone()),
        };
        let db = runplane_database::connect_and_migrate::<crate::migration::Migrator>(&args, "x")
            .await
            .expect("connect");
        check(super::Store::new(db.clone(), vec![10.0, 60.0])).await;
        db.execute_unprepared(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .expect("drop schema");
    }

    /// Organization `org`'s first ten workflows with their aggregates (and
    /// exemplars), decoded.
    pub(crate) async fn org_metrics(
        store: &super::Store,
    ) -> Vec<runplane_api::workflowrun::v1::WorkflowMetrics> {
        let page = store
            .workflow_metrics("org", None, None, 10, true, false)
            .await
            .expect("metrics");
        page.workflows.workflows().expect("decode")
    }

    /// A store over a fresh SQLite file in `dir`, with organization `org`'s
    /// workflow `default/{name}`.
    pub(crate) async fn store_with_workflow(
        dir: &tempfile::TempDir,
        name: &str,
    ) -> (super::Store, super::WorkflowRef) {
        let store = store(dir).await;
        let workflow = store
            .find_or_create_workflow("org", "default", name)
            .await
            .expect("workflow");
        (store, workflow)
    }

    impl super::Store {
        /// Starts a run of `workflow` on `runner` (a label).
        pub(crate) async fn start_run(
            &self,
            workflow: &super::WorkflowRef,
            runner: &str,
            run_url: &str,
            request_id: Option<&str>,
        ) -> Result<crate::entity::run::Model, crate::error::Error> {
            let runner = runplane_api::workflowrun::v1::RunnerType::from_label(runner);
            Ok(self
                .start(
                    workflow,
                    super::NewRun {
                        runner,
                        run_url,
                        request_id,
                        ..super::NewRun::default()
                    },
                )
                .await?
                .run)
        }

        /// Finishes a run.
        pub(crate) async fn finish_run(
            &self,
            finish: super::Finish<'_>,
        ) -> Result<crate::entity::run::Model, crate::error::Error> {
            Ok(self.finish(finish).await?.run)
        }
    }

    /// A run of organization `org`'s `workflow` on `runner`, started and
    /// finished as `outcome`.
    pub(crate) async fn finished_run(
        store: &super::Store,
        workflow: &super::WorkflowRef,
        runner: &str,
        outcome: runplane_api::workflowrun::v1::RunStatus,
    ) -> crate::entity::run::Model {
        let run = store
            .start_run(workflow, runner, "", None)
            .await
            .expect("start");
        store
            .finish_run(super::Finish {
                org_id: Some("org"),
                run_id: &run.id,
                outcome,
                reason: "",
                finished_at_ms: None,
                trace_id: None,
            })
            .await
            .expect("finish")
    }
}
