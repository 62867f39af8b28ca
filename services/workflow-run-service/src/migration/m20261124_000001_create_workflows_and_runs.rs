use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Workflows {
    Table,
    Id,
    OrgId,
    Project,
    Name,
    CreatedAtMs,
    LastRunStatus,
    LastRunRunner,
    LastRunFinishedAtMs,
}

#[derive(DeriveIden, Clone, Copy)]
enum Runs {
    Table,
    Id,
    OrgId,
    WorkflowId,
    Runner,
    RunUrl,
    Status,
    Reason,
    StartedAtMs,
    FinishedAtMs,
}

#[derive(DeriveIden, Clone, Copy)]
enum RunDurations {
    Table,
    WorkflowId,
    Status,
    Runner,
    Count,
    SumSeconds,
    BucketBounds,
    BucketCounts,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Workflows::Table)
                    .if_not_exists()
                    .col(string(Workflows::Id).primary_key())
                    .col(string(Workflows::OrgId))
                    .col(string(Workflows::Project))
                    .col(string(Workflows::Name))
                    .col(big_integer(Workflows::CreatedAtMs))
                    .col(string_null(Workflows::LastRunStatus))
                    .col(string_null(Workflows::LastRunRunner))
                    .col(big_integer_null(Workflows::LastRunFinishedAtMs))
                    .to_owned(),
            )
            .await?;
        // Find-or-create on StartRun, and the uniqueness of a workflow's name.
        index(
            manager,
            "workflows_org_project_name",
            Workflows::Table,
            &[Workflows::OrgId, Workflows::Project, Workflows::Name],
            true,
        )
        .await?;
        // ListWorkflows and the scrape page through an organization's workflows by id.
        index(
            manager,
            "workflows_org_id",
            Workflows::Table,
            &[Workflows::OrgId, Workflows::Id],
            false,
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(Runs::Table)
                    .if_not_exists()
                    .col(string(Runs::Id).primary_key())
                    .col(string(Runs::OrgId))
                    .col(string(Runs::WorkflowId))
                    .col(string(Runs::Runner))
                    .col(text(Runs::RunUrl))
                    .col(string(Runs::Status))
                    .col(text(Runs::Reason))
                    .col(big_integer(Runs::StartedAtMs))
                    .col(big_integer_null(Runs::FinishedAtMs))
                    .to_owned(),
            )
            .await?;
        // ListRuns, newest first: all of an organization's runs, one workflow's, or one status'.
        index(
            manager,
            "runs_org_id",
            Runs::Table,
            &[Runs::OrgId, Runs::Id],
            false,
        )
        .await?;
        index(
            manager,
            "runs_workflow_id",
            Runs::Table,
            &[Runs::WorkflowId, Runs::Id],
            false,
        )
        .await?;
        index(
            manager,
            "runs_org_status_id",
            Runs::Table,
            &[Runs::OrgId, Runs::Status, Runs::Id],
            false,
        )
        .await?;
        // The sweeper looks for runs still initialized past the run timeout.
        index(
            manager,
            "runs_status_started",
            Runs::Table,
            &[Runs::Status, Runs::StartedAtMs],
            false,
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(RunDurations::Table)
                    .if_not_exists()
                    .col(string(RunDurations::WorkflowId))
                    .col(string(RunDurations::Status))
                    .col(string(RunDurations::Runner))
                    .col(big_integer(RunDurations::Count))
                    .col(double(RunDurations::SumSeconds))
                    .col(text(RunDurations::BucketBounds))
                    .col(text(RunDurations::BucketCounts))
                    .primary_key(
                        Index::create()
                            .col(RunDurations::WorkflowId)
                            .col(RunDurations::Status)
                            .col(RunDurations::Runner),
                    )
                    .to_owned(),
            )
            .await
    }
}

async fn index<T: IntoIden + Copy + 'static>(
    manager: &SchemaManager<'_>,
    name: &str,
    table: T,
    columns: &[T],
    unique: bool,
) -> Result<(), DbErr> {
    let mut statement = Index::create();
    statement.name(name).table(table).if_not_exists();
    for column in columns {
        statement.col(*column);
    }
    if unique {
        statement.unique();
    }
    manager.create_index(statement.to_owned()).await
}
