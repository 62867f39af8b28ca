//! org-service's table.

/// `organizations`: one row per organization.
pub(crate) mod organization {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "organizations")]
    pub(crate) struct Model {
        /// UUIDv7, never reused.
        #[sea_orm(primary_key, auto_increment = false)]
        pub(crate) id: String,
        #[sea_orm(unique)]
        pub(crate) name: String,
        pub(crate) created_at_ms: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
