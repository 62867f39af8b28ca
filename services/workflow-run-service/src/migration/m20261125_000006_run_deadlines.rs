use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Runs {
    Table,
    ExpiresAtMs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // A run's own deadline, when its runner sets a timeout (StartRun.timeout).
        manager
            .alter_table(
                Table::alter()
                    .table(Runs::Table)
                    .add_column(big_integer_null(Runs::ExpiresAtMs))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}
