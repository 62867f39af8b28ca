//! org-service's schema migrations, applied at start-up. One file per migration.

use sea_orm_migration::prelude::*;

mod m20261124_000001_create_organizations;

/// Applies org-service's migrations, tracked in its own table.
pub(crate) struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(m20261124_000001_create_organizations::Migration)]
    }

    fn migration_table_name() -> DynIden {
        "org_service_migrations".into_iden()
    }
}
