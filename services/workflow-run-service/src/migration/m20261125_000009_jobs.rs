use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Jobs {
    Table,
    Id,
    OrgId,
    JobKey,
    Project,
    Workflow,
    RunRequestId,
    Name,
    Status,
    Outcome,
    Conclusion,
    QueuedAtMs,
    StartedAtMs,
    FinishedAtMs,
    Runner,
    RunnerName,
    RunnerLabels,
    Version,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Jobs of runs, as CI systems report them (webhooks' workflow_job and
        // Job Hook): stored now, for queue-time and per-job metrics.
        manager
            .create_table(
                Table::create()
                    .table(Jobs::Table)
                    .if_not_exists()
                    .col(string(Jobs::Id).primary_key())
                    .col(string(Jobs::OrgId))
                    .col(string(Jobs::JobKey))
                    .col(string(Jobs::Project))
                    .col(string(Jobs::Workflow))
                    .col(string(Jobs::RunRequestId))
                    .col(string(Jobs::Name))
                    .col(string(Jobs::Status))
                    .col(string(Jobs::Outcome))
                    .col(string(Jobs::Conclusion))
                    .col(big_integer_null(Jobs::QueuedAtMs))
                    .col(big_integer_null(Jobs::StartedAtMs))
                    .col(big_integer_null(Jobs::FinishedAtMs))
                    .col(string(Jobs::Runner))
                    .col(string(Jobs::RunnerName))
                    .col(text(Jobs::RunnerLabels))
                    .col(big_integer(Jobs::Version))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("jobs_org_job_key")
                    .table(Jobs::Table)
                    .col(Jobs::OrgId)
                    .col(Jobs::JobKey)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("jobs_org_run")
                    .table(Jobs::Table)
                    .col(Jobs::OrgId)
                    .col(Jobs::RunRequestId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}
