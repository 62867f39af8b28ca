use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Runs {
    Table,
    RequestId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // StartRun's optional idempotency key: unique per organization when given.
        manager
            .alter_table(
                Table::alter()
                    .table(Runs::Table)
                    .add_column(string_null(Runs::RequestId))
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX IF NOT EXISTS runs_org_request_id \
                 ON runs (org_id, request_id) WHERE request_id IS NOT NULL",
            )
            .await?;
        Ok(())
    }
}
