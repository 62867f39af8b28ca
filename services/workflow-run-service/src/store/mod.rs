//! workflow-run-service's storage: plain async functions over its own connection.
//!
//! Writes that must agree with each other (a run's outcome, its workflow's last
//! run, its duration histogram) happen in one transaction; rows that concurrent
//! finishes share are locked (`FOR UPDATE` on PostgreSQL; SQLite has a single
//! writer connection), so no update is lost whichever replica serves the call.

mod batch;
mod metrics;
pub(crate) mod record;
mod runs;
mod seed;
mod workflows;
mod writes;

use std::sync::{Arc, Mutex};

use sea_orm::DatabaseConnection;

pub use metrics::MetricsPage;
pub use runs::{Finish, RunFilter};
pub use seed::SeedPlan;
pub use workflows::WorkflowRef;

/// Workflows, runs and their aggregates, persisted.
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    /// Bounds for histograms created from now on.
    buckets: Vec<f64>,
    /// Workflow identities seen so far, shared by clones.
    identities: Arc<Mutex<workflows::Identities>>,
    /// Most workflows per organization; `None`: no limit.
    max_workflows_per_org: Option<u64>,
    /// How runs started and finished are written.
    writes: writes::WritePath,
}

impl Store {
    pub fn new(db: DatabaseConnection, buckets: Vec<f64>) -> Self {
        Store {
            writes: writes::WritePath::for_backend(db.get_database_backend()),
            db,
            buckets,
            identities: Arc::default(),
            max_workflows_per_org: None,
        }
    }

    /// Refuses to create an organization's workflow past `limit` (0: no limit).
    /// Concurrent creations may overshoot it by as many as run at once.
    pub fn with_workflow_limit(mut self, limit: u64) -> Self {
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

    /// Organization `org`'s first ten workflows with their aggregates, decoded.
    pub(crate) async fn org_metrics(
        store: &super::Store,
    ) -> Vec<runplane_api::workflowrun::v1::WorkflowMetrics> {
        let page = store
            .workflow_metrics("org", None, 10)
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
            })
            .await
            .expect("finish")
    }
}
