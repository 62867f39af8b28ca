use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Runs {
    Table,
    WorkflowId,
    CommitSha,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // A successful finish looks up the earlier runs of its workflow and
        // commit (is it flaky?): without this, that lookup would read every run
        // of the workflow, and grow with its history.
        manager
            .create_index(
                Index::create()
                    .name("runs_workflow_commit")
                    .table(Runs::Table)
                    .col(Runs::WorkflowId)
                    .col(Runs::CommitSha)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }
}
