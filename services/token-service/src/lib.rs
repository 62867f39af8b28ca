//! token-service: organization-scoped credentials — API tokens (create, the
//! secret shown once; list, revoke, authenticate) and webhook secrets.
//!
//! Transport ([`handler`]) → domain ([`token`], [`error`]) → storage ([`store`]),
//! with organizations looked up in org-service ([`orgs`]).

mod config;
mod entity;
mod error;
mod handler;
mod migration;
mod orgs;
mod store;
mod token;
mod webhook;

use std::sync::Arc;

use runplane_api::token::v1::token_service_server::TokenServiceServer;
use runplane_auth::AdminCredential;
use runplane_auth::FailureLimiter;

pub use config::Config;

/// Runs token-service until SIGTERM/SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let admin = Arc::new(
        AdminCredential::load(&config.common.admin)?
            .with_failure_limit(FailureLimiter::from_args(&config.common.auth_failures)),
    );
    let org_channel = runplane_client::channel(&config.org_service_addr, &config.upstream)?;
    let listener = runplane_server::grpc::bind(config.common.listen_addr).await?;
    let db = runplane_database::connect_and_migrate::<migration::Migrator>(
        &config.database,
        "token_service",
    )
    .await?;
    let webhook_key = webhook::key(config.webhook_key_file.as_deref(), &admin)?;
    let orgs = orgs::OrgDirectory::new(org_channel, admin.clone(), config.org_cache_ttl);
    let service = handler::TokenHandler::new(store::Store::new(db), orgs, admin, webhook_key);
    runplane_server::grpc::serve(
        listener,
        TokenServiceServer::new(service),
        &config.common.server,
    )
    .await
}
