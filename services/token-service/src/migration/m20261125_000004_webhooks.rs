use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Webhooks {
    Table,
    Id,
    OrgId,
    OrgName,
    Provider,
    Name,
    CreatedAtMs,
    RevokedAtMs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Webhooks' identities only: each secret is derived from its id and the
        // suite's webhook key when needed, never stored.
        manager
            .create_table(
                Table::create()
                    .table(Webhooks::Table)
                    .if_not_exists()
                    .col(string(Webhooks::Id).primary_key())
                    .col(string(Webhooks::OrgId))
                    .col(string(Webhooks::OrgName))
                    .col(string(Webhooks::Provider))
                    .col(string(Webhooks::Name))
                    .col(big_integer(Webhooks::CreatedAtMs))
                    .col(big_integer_null(Webhooks::RevokedAtMs))
                    .to_owned(),
            )
            .await?;
        // A name is unique among an organization's live webhooks of a provider;
        // this index is also how a delivery finds its organization's secrets.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX IF NOT EXISTS webhooks_live_name \
                 ON webhooks (org_id, provider, name) WHERE revoked_at_ms IS NULL",
            )
            .await?;
        Ok(())
    }
}
