use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Runs {
    Table,
    Attempt,
    Branch,
    CommitSha,
    Trigger,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Where a run came from, when its reporter says: which attempt of its
        // CI run, the branch and commit, and what triggered it. One column a
        // statement: SQLite adds one at a time.
        let columns = [
            integer(Runs::Attempt).default(0).to_owned(),
            string(Runs::Branch).default("").to_owned(),
            string(Runs::CommitSha).default("").to_owned(),
            string(Runs::Trigger).default("").to_owned(),
        ];
        for column in columns {
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
