use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Workflows {
    Table,
    Exemplars,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The exemplars of a workflow's histograms, beside its metrics record
        // rather than in it: only OpenMetrics scrapes read them (see
        // `store::record`). Empty until a run with an id is counted.
        let empty = match manager.get_database_backend() {
            sea_orm::DbBackend::Postgres => "''::bytea",
            _ => "x''",
        };
        manager
            .alter_table(
                Table::alter()
                    .table(Workflows::Table)
                    .add_column(blob(Workflows::Exemplars).default(Expr::cust(empty)))
                    .to_owned(),
            )
            .await
    }
}
