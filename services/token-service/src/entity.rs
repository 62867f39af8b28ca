//! token-service's tables.

/// `api_tokens`: one row per token ever issued. The secret itself is never stored.
pub(crate) mod api_token {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "api_tokens")]
    pub(crate) struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub(crate) id: String,
        pub(crate) org_id: String,
        pub(crate) org_name: String,
        pub(crate) name: String,
        pub(crate) description: String,
        /// Comma-separated scope names, e.g. `runs:write,metrics:read`.
        pub(crate) scopes: String,
        /// Hex SHA-256 of the secret.
        #[sea_orm(unique)]
        pub(crate) secret_hash: String,
        pub(crate) created_at_ms: i64,
        pub(crate) expires_at_ms: Option<i64>,
        pub(crate) revoked_at_ms: Option<i64>,
        /// The projects the token is limited to, one per line; empty: every project.
        pub(crate) projects: String,
        /// When the token last authenticated a call, to the minute.
        pub(crate) last_used_at_ms: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `webhooks`: one row per webhook ever created. Its secret is derived from
/// its id and the suite's webhook key (`runplane_auth::webhook`), never stored.
pub(crate) mod webhook {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "webhooks")]
    pub(crate) struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub(crate) id: String,
        pub(crate) org_id: String,
        pub(crate) org_name: String,
        /// `github` or `gitlab`.
        pub(crate) provider: String,
        pub(crate) name: String,
        pub(crate) created_at_ms: i64,
        pub(crate) revoked_at_ms: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
