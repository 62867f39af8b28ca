//! workflow-run-service's schema migrations, applied at start-up. One file per migration.

use sea_orm_migration::prelude::*;

mod m20261124_000001_create_workflows_and_runs;
mod m20261124_000002_index_finished_runs;
mod m20261124_000003_run_request_ids;
mod m20261124_000004_outcome_aggregates;
mod m20261125_000005_metrics_records;
mod m20261125_000006_run_deadlines;
mod m20261125_000007_request_ids_per_workflow;
mod m20261125_000008_run_queue_times;
mod m20261125_000009_jobs;
mod m20261125_000010_run_origins;
mod m20261125_000011_index_runs_by_commit;
mod m20261206_000012_job_workflows;
mod m20261206_000013_exemplars;
mod m20261206_000014_job_keys_per_project;
mod m20261207_000015_deployments;
mod m20261207_000016_org_revisions;

/// Applies workflow-run-service's migrations, tracked in its own table.
pub(crate) struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_create_workflows_and_runs::Migration),
            Box::new(m20261124_000002_index_finished_runs::Migration),
            Box::new(m20261124_000003_run_request_ids::Migration),
            Box::new(m20261124_000004_outcome_aggregates::Migration),
            Box::new(m20261125_000005_metrics_records::Migration),
            Box::new(m20261125_000006_run_deadlines::Migration),
            Box::new(m20261125_000007_request_ids_per_workflow::Migration),
            Box::new(m20261125_000008_run_queue_times::Migration),
            Box::new(m20261125_000009_jobs::Migration),
            Box::new(m20261125_000010_run_origins::Migration),
            Box::new(m20261125_000011_index_runs_by_commit::Migration),
            Box::new(m20261206_000012_job_workflows::Migration),
            Box::new(m20261206_000013_exemplars::Migration),
            Box::new(m20261206_000014_job_keys_per_project::Migration),
            Box::new(m20261207_000015_deployments::Migration),
            Box::new(m20261207_000016_org_revisions::Migration),
        ]
    }

    fn migration_table_name() -> DynIden {
        "workflow_run_service_migrations".into_iden()
    }
}
