use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum OrgRevisions {
    Table,
    OrgId,
    Shard,
    Revision,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Counters of the writes to each organization's aggregates, in
        // shards (see `store::revisions`). Rows are never deleted.
        manager
            .create_table(
                Table::create()
                    .table(OrgRevisions::Table)
                    .if_not_exists()
                    .col(string(OrgRevisions::OrgId))
                    .col(integer(OrgRevisions::Shard))
                    .col(big_integer(OrgRevisions::Revision))
                    .primary_key(
                        Index::create()
                            .col(OrgRevisions::OrgId)
                            .col(OrgRevisions::Shard),
                    )
                    .to_owned(),
            )
            .await
    }
}
