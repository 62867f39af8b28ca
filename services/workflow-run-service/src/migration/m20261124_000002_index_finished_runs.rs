use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Runs {
    Table,
    FinishedAtMs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Retention deletes finished runs older than a cut-off, oldest first.
        manager
            .create_index(
                Index::create()
                    .name("runs_finished_at")
                    .table(Runs::Table)
                    .col(Runs::FinishedAtMs)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }
}
