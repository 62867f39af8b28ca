use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Environments {
    Table,
    Id,
    OrgId,
    Project,
    Name,
    CreatedAtMs,
    Metrics,
}

#[derive(DeriveIden)]
enum Deployments {
    Table,
    Id,
    OrgId,
    EnvironmentId,
    Project,
    Environment,
    CommitSha,
    CommittedAtMs,
    StartedAtMs,
    FinishedAtMs,
    Status,
    Kind,
    Url,
    RunId,
    RequestId,
    RecordedAtMs,
}

#[derive(DeriveIden)]
enum Commits {
    Table,
    OrgId,
    Project,
    CommitSha,
    CommittedAtMs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // An organization's deployment environments, each with its DORA
        // aggregates as one encoded record (`EnvironmentMetrics`), rewritten
        // by every deployment counted (see `store::deployments`).
        manager
            .create_table(
                Table::create()
                    .table(Environments::Table)
                    .if_not_exists()
                    .col(string(Environments::Id).primary_key())
                    .col(string(Environments::OrgId))
                    .col(string(Environments::Project))
                    .col(string(Environments::Name))
                    .col(big_integer(Environments::CreatedAtMs))
                    .col(blob(Environments::Metrics))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("environments_org_project_name")
                    .table(Environments::Table)
                    .col(Environments::OrgId)
                    .col(Environments::Project)
                    .col(Environments::Name)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        // The deployments themselves: history, deleted by retention like runs,
        // by when they were recorded (so that a backfilled deployment's key
        // still makes its repeats count once).
        manager
            .create_table(
                Table::create()
                    .table(Deployments::Table)
                    .if_not_exists()
                    .col(string(Deployments::Id).primary_key())
                    .col(string(Deployments::OrgId))
                    .col(string(Deployments::EnvironmentId))
                    .col(string(Deployments::Project))
                    .col(string(Deployments::Environment))
                    .col(string(Deployments::CommitSha))
                    .col(big_integer_null(Deployments::CommittedAtMs))
                    .col(big_integer_null(Deployments::StartedAtMs))
                    .col(big_integer(Deployments::FinishedAtMs))
                    .col(string(Deployments::Status))
                    .col(string(Deployments::Kind))
                    .col(string(Deployments::Url))
                    .col(string(Deployments::RunId))
                    .col(string_null(Deployments::RequestId))
                    .col(big_integer(Deployments::RecordedAtMs))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("deployments_environment_request_id")
                    .table(Deployments::Table)
                    .col(Deployments::EnvironmentId)
                    .col(Deployments::RequestId)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("deployments_org_id")
                    .table(Deployments::Table)
                    .col(Deployments::OrgId)
                    .col(Deployments::Id)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("deployments_recorded")
                    .table(Deployments::Table)
                    .col(Deployments::RecordedAtMs)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        // When commits were made, as runs (or deployments) of them reported,
        // per project: a deployment announced without its commit's time
        // (GitHub's deployment_status, GitLab's Deployment Hook) finds it here.
        manager
            .create_table(
                Table::create()
                    .table(Commits::Table)
                    .if_not_exists()
                    .col(string(Commits::OrgId))
                    .col(string(Commits::Project))
                    .col(string(Commits::CommitSha))
                    .col(big_integer(Commits::CommittedAtMs))
                    .primary_key(
                        Index::create()
                            .col(Commits::OrgId)
                            .col(Commits::Project)
                            .col(Commits::CommitSha),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("commits_committed")
                    .table(Commits::Table)
                    .col(Commits::CommittedAtMs)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }
}
