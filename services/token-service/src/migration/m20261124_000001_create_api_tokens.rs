use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum ApiTokens {
    Table,
    Id,
    OrgId,
    OrgName,
    Name,
    Description,
    Scopes,
    SecretHash,
    CreatedAtMs,
    ExpiresAtMs,
    RevokedAtMs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ApiTokens::Table)
                    .if_not_exists()
                    .col(string(ApiTokens::Id).primary_key())
                    .col(string(ApiTokens::OrgId))
                    .col(string(ApiTokens::OrgName))
                    .col(string(ApiTokens::Name))
                    .col(text(ApiTokens::Description))
                    .col(string(ApiTokens::Scopes))
                    .col(string_uniq(ApiTokens::SecretHash))
                    .col(big_integer(ApiTokens::CreatedAtMs))
                    .col(big_integer_null(ApiTokens::ExpiresAtMs))
                    .col(big_integer_null(ApiTokens::RevokedAtMs))
                    .to_owned(),
            )
            .await?;
        // A name is unique among an organization's live (unrevoked) tokens; revoked
        // ones keep their rows for the audit trail. Partial indexes read the same
        // on SQLite and PostgreSQL.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX IF NOT EXISTS api_tokens_live_name \
                 ON api_tokens (org_id, name) WHERE revoked_at_ms IS NULL",
            )
            .await?;
        Ok(())
    }
}
