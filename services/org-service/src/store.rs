//! org-service's storage: plain async functions over its own connection.

use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use crate::entity::organization;
use crate::error::Error;

/// Organizations, persisted.
#[derive(Clone)]
pub(crate) struct Store {
    db: DatabaseConnection,
}

impl Store {
    pub(crate) fn new(db: DatabaseConnection) -> Self {
        Store { db }
    }

    /// Creates an organization; fails with [`Error::AlreadyExists`] on a taken name.
    pub(crate) async fn create(&self, name: &str) -> Result<organization::Model, Error> {
        runplane_api::org_name::validate(name)?;
        let model = organization::Model {
            id: uuid::Uuid::now_v7().to_string(),
            name: name.to_owned(),
            created_at_ms: runplane_api::time::now_ms(),
        };
        let active = organization::ActiveModel {
            id: Set(model.id.clone()),
            name: Set(model.name.clone()),
            created_at_ms: Set(model.created_at_ms),
        };
        match organization::Entity::insert(active).exec(&self.db).await {
            Ok(_) => Ok(model),
            Err(e) if runplane_database::is_unique_violation(&e) => {
                Err(Error::AlreadyExists(name.to_owned()))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) async fn by_name(&self, name: &str) -> Result<organization::Model, Error> {
        organization::Entity::find()
            .filter(organization::Column::Name.eq(name))
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::NotFound(name.to_owned()))
    }

    pub(crate) async fn by_id(&self, id: &str) -> Result<organization::Model, Error> {
        organization::Entity::find_by_id(id.to_owned())
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::IdNotFound(id.to_owned()))
    }

    /// Up to `limit` organizations after `after` (by name), in name order.
    pub(crate) async fn list(
        &self,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<organization::Model>, Error> {
        let mut query = organization::Entity::find().order_by_asc(organization::Column::Name);
        if let Some(after) = after {
            query = query.filter(organization::Column::Name.gt(after));
        }
        Ok(query.limit(limit).all(&self.db).await?)
    }

    /// Deletes an organization by name; fails with [`Error::NotFound`] if there is none.
    pub(crate) async fn delete(&self, name: &str) -> Result<(), Error> {
        let result = organization::Entity::delete_many()
            .filter(organization::Column::Name.eq(name))
            .exec(&self.db)
            .await?;
        if result.rows_affected == 0 {
            return Err(Error::NotFound(name.to_owned()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store(dir: &tempfile::TempDir) -> Store {
        let path = dir.path().join("org.db");
        let db = runplane_database::open_sqlite::<crate::migration::Migrator>(&path)
            .await
            .expect("open");
        Store::new(db)
    }

    #[tokio::test]
    async fn create_get_list_delete_on_a_real_sqlite_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir).await;
        let a = store.create("cyberdyne").await.expect("create");
        store.create("acme-corp").await.expect("create");
        assert!(matches!(
            store.create("cyberdyne").await,
            Err(Error::AlreadyExists(_))
        ));
        assert!(matches!(
            store.create("Bad_Name").await,
            Err(Error::InvalidName(_))
        ));
        assert_eq!(store.by_name("cyberdyne").await.expect("get").id, a.id);
        assert_eq!(store.by_id(&a.id).await.expect("get").name, "cyberdyne");

        let first = store.list(None, 1).await.expect("list");
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].name, "acme-corp");
        let rest = store.list(Some("acme-corp"), 10).await.expect("list");
        assert_eq!(
            rest.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(),
            ["cyberdyne"]
        );

        store.delete("cyberdyne").await.expect("delete");
        assert!(matches!(
            store.by_name("cyberdyne").await,
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            store.delete("cyberdyne").await,
            Err(Error::NotFound(_))
        ));
        // A name can be used again, with a new identity.
        let again = store.create("cyberdyne").await.expect("recreate");
        assert_ne!(again.id, a.id);

        // Data survives reopening the file.
        drop(store);
        let reopened = super::tests::store(&dir).await;
        assert_eq!(
            reopened.by_name("cyberdyne").await.expect("get").id,
            again.id
        );
    }
}
