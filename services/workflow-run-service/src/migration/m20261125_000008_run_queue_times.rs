use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Runs {
    Table,
    QueuedAtMs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // When a run waited for a runner from, when its reporter knows
        // (StartRun.queue_time, ReportRun, webhooks).
        manager
            .alter_table(
                Table::alter()
                    .table(Runs::Table)
                    .add_column(big_integer_null(Runs::QueuedAtMs))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}
