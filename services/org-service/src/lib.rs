//! org-service: organizations, and which of them have the Prometheus
//! integration turned on.
//!
//! Transport ([`handler`]) → domain ([`error`]; names follow
//! [`runplane_api::org_name`]) → storage ([`store`]),
//! over its own tables ([`entity`], [`migration`]).

mod config;
mod entity;
mod error;
mod handler;
mod migration;
mod reload;
mod store;

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::Context as _;
use runplane_api::org::v1::organization_service_server::OrganizationServiceServer;
use runplane_auth::AdminCredential;
use runplane_auth::FailureLimiter;

pub use config::Config;

/// Runs org-service until SIGTERM/SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let enabled = metrics_enabled_orgs(&config.prometheus_org_metrics)?;
    let admin = AdminCredential::load(&config.common.admin)?
        .with_failure_limit(FailureLimiter::from_args(&config.common.auth_failures));
    let listener = runplane_server::grpc::bind(config.common.listen_addr).await?;
    let db = runplane_database::connect_and_migrate::<migration::Migrator>(
        &config.database,
        "org_service",
    )
    .await?;
    tracing::info!(
        orgs = ?enabled,
        "Prometheus metrics enabled for {} organization(s)",
        enabled.len()
    );
    let enabled = reload::watch(enabled, config.common.config.clone())?;
    let service =
        handler::OrganizationHandler::new(store::Store::new(db), Arc::new(admin), enabled);
    runplane_server::grpc::serve(
        listener,
        OrganizationServiceServer::new(service),
        &config.common.server,
    )
    .await
}

/// Validates the `prometheus_org_metrics` list: every entry must be a valid name.
fn metrics_enabled_orgs(names: &[String]) -> anyhow::Result<BTreeSet<String>> {
    names
        .iter()
        .map(|n| n.trim())
        .filter(|n| !n.is_empty())
        .map(|n| {
            runplane_api::org_name::validate(n)
                .map(|()| n.to_owned())
                .with_context(|| format!("prometheus_org_metrics: {n:?}"))
        })
        .collect()
}
