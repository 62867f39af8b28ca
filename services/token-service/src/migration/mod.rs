//! token-service's schema migrations, applied at start-up. One file per migration.

use sea_orm_migration::prelude::*;

mod m20261124_000001_create_api_tokens;
mod m20261125_000002_token_projects;
mod m20261125_000003_token_last_used;
mod m20261125_000004_webhooks;

/// Applies token-service's migrations, tracked in its own table.
pub(crate) struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_create_api_tokens::Migration),
            Box::new(m20261125_000002_token_projects::Migration),
            Box::new(m20261125_000003_token_last_used::Migration),
            Box::new(m20261125_000004_webhooks::Migration),
        ]
    }

    fn migration_table_name() -> DynIden {
        "token_service_migrations".into_iden()
    }
}
