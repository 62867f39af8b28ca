use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Jobs {
    Table,
    OrgId,
    Status,
    WorkflowId,
}

#[derive(DeriveIden)]
enum Runs {
    Table,
    DefaultBranch,
    TraceId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // A job's workflow, once known: its completion counts in that
        // workflow's metrics, and its jobs go when it is deleted.
        manager
            .alter_table(
                Table::alter()
                    .table(Jobs::Table)
                    .add_column(string(Jobs::WorkflowId).default(""))
                    .to_owned(),
            )
            .await?;
        // A scrape counts the jobs queued now, per workflow.
        manager
            .create_index(
                Index::create()
                    .name("jobs_org_status_workflow")
                    .table(Jobs::Table)
                    .col(Jobs::OrgId)
                    .col(Jobs::Status)
                    .col(Jobs::WorkflowId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("jobs_workflow")
                    .table(Jobs::Table)
                    .col(Jobs::WorkflowId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        // A job names its run by the run's key: finding the run (and so the
        // job's workflow) by it must not read the organization's history.
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS runs_org_request_id \
             ON runs (org_id, request_id) WHERE request_id IS NOT NULL",
        )
        .await?;
        // The run's repository's default branch, when its reporter said (the
        // branch label), and the trace its report belonged to (exemplars).
        for column in [
            string(Runs::DefaultBranch).default("").to_owned(),
            string(Runs::TraceId).default("").to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Runs::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
