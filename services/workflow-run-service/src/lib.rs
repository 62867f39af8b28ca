//! workflow-run-service: workflows and their runs, and the per-workflow
//! aggregates behind the Prometheus metrics.
//!
//! Transport ([`handler`]) → domain: a run's life ([`lifecycle`]), a
//! workflow's aggregates ([`aggregate`]), what a runner may send
//! ([`validation`]), errors ([`error`]) → storage ([`store`]) over its own
//! tables ([`entity`], [`migration`]). Background tasks: the [`sweeper`]
//! that expires runs nobody finished, [`retention`], which deletes old
//! finished runs, and the backfill of native histogram buckets for records
//! counted without them (`store::backfill`). Runs can also be pushed as OpenTelemetry CI/CD metrics
//! ([`cicd`]).
//!
//! The crate's API is [`run`] and [`Config`]; benchmarks and tests reach its
//! storage through [`testing`], behind the `test-support` feature.

mod aggregate;
mod cicd;
mod config;
mod deploy_workflows;
mod entity;
mod error;
mod handler;
mod lifecycle;
mod migration;
mod periodic;
mod retention;
mod store;
mod sweeper;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
mod validation;

use anyhow::Context as _;
use runplane_api::workflowrun::v1::workflow_run_service_server::WorkflowRunServiceServer;
use runplane_auth::FailureLimiter;
use runplane_auth::{AdminCredential, TokenAuthenticator};

pub use aggregate::BranchLabel;
pub use config::Config;
pub use deploy_workflows::{DeployWorkflow, DeployWorkflows};

/// Runs workflow-run-service until SIGTERM/SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    aggregate::validate_buckets("run_duration_buckets", &config.run_duration_buckets)
        .and_then(|()| {
            aggregate::validate_buckets("queue_duration_buckets", &config.queue_duration_buckets)
        })
        .map_err(anyhow::Error::msg)
        .context("invalid configuration")?;
    if config.run_timeout.is_zero()
        || config.sweep_interval.is_zero()
        || config.retention_interval.is_zero()
    {
        anyhow::bail!(
            "invalid configuration: run_timeout, sweep_interval and retention_interval must be above zero"
        );
    }
    let admin = std::sync::Arc::new(AdminCredential::load(&config.common.admin)?);
    let token_channel = runplane_client::channel(&config.token_service_addr, &config.upstream)?;
    let listener = runplane_server::grpc::bind(config.common.listen_addr).await?;
    let db = runplane_database::connect_and_migrate::<migration::Migrator>(
        &config.database,
        "workflow_run_service",
    )
    .await?;
    let store = store::Store::new(db, config.run_duration_buckets.clone())
        .with_queue_buckets(config.queue_duration_buckets.clone())
        .with_workflow_limit(config.max_workflows_per_org)
        .with_job_queue_window(config.run_timeout)
        .with_branch_label(config.branch_label.clone());
    let cicd = config
        .otel_cicd_metrics
        .then(cicd::CicdMetrics::start)
        .flatten()
        .map(std::sync::Arc::new);
    let lifecycle = lifecycle::Lifecycle::new(store.clone(), cicd)
        .with_deploy_workflows(config.deploy_workflows.clone());
    tokio::spawn(store::backfill::run(store.clone()));
    tokio::spawn(sweeper::run(
        lifecycle.clone(),
        config.run_timeout,
        config.sweep_interval,
    ));
    if config.run_retention.is_zero() {
        tracing::info!("run retention is off: finished runs are kept forever");
    } else {
        tokio::spawn(retention::run(
            store.clone(),
            config.run_retention,
            config.retention_interval,
        ));
    }
    let auth = TokenAuthenticator::cached(
        token_channel,
        admin,
        config.auth_cache_ttl,
        config.auth_cache_capacity,
    )
    .with_failure_limit(FailureLimiter::from_args(&config.common.auth_failures));
    let service = handler::WorkflowRunHandler::new(lifecycle, auth);
    runplane_server::grpc::serve(
        listener,
        WorkflowRunServiceServer::new(service),
        &config.common.server,
    )
    .await
}
