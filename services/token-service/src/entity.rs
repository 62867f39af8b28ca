//! token-service's table.

/// `api_tokens`: one row per token ever issued. The secret itself is never stored.
pub mod api_token {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "api_tokens")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub org_id: String,
        pub org_name: String,
        pub name: String,
        pub description: String,
        /// Comma-separated scope names, e.g. `runs:write,metrics:read`.
        pub scopes: String,
        /// Hex SHA-256 of the secret.
        #[sea_orm(unique)]
        pub secret_hash: String,
        pub created_at_ms: i64,
        pub expires_at_ms: Option<i64>,
        pub revoked_at_ms: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
