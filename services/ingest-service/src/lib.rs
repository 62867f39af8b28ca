//! ingest-service: the internet-facing HTTP edge for CI systems.
//!
//! GitHub's and GitLab's webhook deliveries are verified against the
//! organization's webhook secrets (from token-service) before their body is
//! parsed ([`webhook`], [`github`], [`gitlab`]), then reported through
//! workflow-run-service's gRPC API on the organization's behalf; the run API
//! is also served as HTTP/JSON for runners that cannot speak gRPC
//! ([`json_api`]). It owns no tables and keeps no state.

mod config;
mod error;
mod github;
mod gitlab;
mod json_api;
mod upstream;
mod webhook;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use runplane_api::token::v1::token_service_client::TokenServiceClient;
use runplane_api::workflowrun::v1::workflow_run_service_client::WorkflowRunServiceClient;
use runplane_auth::{AdminCredential, FailureLimiter};
use runplane_server::http_observe;
use tower_http::limit::RequestBodyLimitLayer;

pub use config::Config;

/// What every handler shares.
pub(crate) struct State {
    pub(crate) upstreams: upstream::Upstreams,
    /// Failing webhook deliveries, limited per what they presented.
    pub(crate) failures: Arc<FailureLimiter>,
    pub(crate) client_address_header: Option<http::HeaderName>,
    /// MiB of delivery bodies that may be in memory at once.
    pub(crate) body_budget: tokio::sync::Semaphore,
}

pub(crate) type SharedState = Arc<State>;

/// Runs ingest-service until SIGTERM/SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let admin = Arc::new(AdminCredential::load(&config.common.admin)?);
    let channel = |addr: &str| runplane_client::channel(addr, &config.upstream);
    let state = Arc::new(State {
        upstreams: upstream::Upstreams {
            tokens: TokenServiceClient::new(channel(&config.token_service_addr)?),
            runs: WorkflowRunServiceClient::new(channel(&config.workflow_run_service_addr)?),
            admin,
            secrets: upstream::SecretCache::new(config.webhook_secret_cache_ttl),
        },
        failures: FailureLimiter::from_args(&config.common.auth_failures),
        client_address_header: config.client_address_header.clone(),
        body_budget: tokio::sync::Semaphore::new(webhook::BODY_BUDGET_MIB as usize),
    });
    let draining = Arc::new(AtomicBool::new(false));
    let app = router(
        state,
        draining.clone(),
        config.common.server.request_timeout,
    );
    let listener = runplane_server::grpc::bind(config.common.listen_addr).await?;
    runplane_server::http::serve(
        listener,
        app,
        &config.common.server,
        draining,
        // A backstop: each route reads its bodies within its own limit, and
        // answers past it in JSON.
        2 * webhook::MAX_BODY_BYTES,
    )
    .await
}

/// The routes: webhooks (bodies up to GitHub's 25 MB), the JSON run API
/// (small bodies), probes and own metrics.
fn router(
    state: SharedState,
    draining: Arc<AtomicBool>,
    request_timeout: std::time::Duration,
) -> Router {
    let hooks = Router::new()
        .route("/hooks/github/{org}", post(github::handle))
        .route("/hooks/gitlab/{org}", post(gitlab::handle))
        .layer(axum::extract::DefaultBodyLimit::max(
            webhook::MAX_BODY_BYTES,
        ));
    let api = Router::new()
        .route("/v1/runs:start", post(json_api::start))
        .route("/v1/runs:report", post(json_api::report))
        .route("/v1/deployments:record", post(json_api::record_deployment))
        .route("/v1/runs/{target}", post(json_api::run_method))
        .layer(axum::extract::DefaultBodyLimit::max(
            json_api::MAX_BODY_BYTES,
        ))
        .layer(RequestBodyLimitLayer::new(json_api::MAX_BODY_BYTES));
    hooks
        .merge(api)
        .with_state(state)
        .fallback(|| async { StatusCode::NOT_FOUND })
        .layer(axum::middleware::map_response(error::json_errors))
        .merge(http_observe::probes(draining))
        .layer(axum::middleware::from_fn(http_observe::track))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            request_timeout,
        ))
}
