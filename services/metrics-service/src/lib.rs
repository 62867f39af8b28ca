//! metrics-service: the HTTP scrape endpoint `GET /prom/{org}/metrics`.
//!
//! Every scrape is authenticated through token-service, checked against
//! org-service's list of organizations with the integration on, and rendered
//! from workflow-run-service's per-workflow aggregates ([`scrape`],
//! [`upstream`], [`exposition`]). It keeps no state of its own.

mod cache;
mod config;
mod error;
mod exposition;
mod gzip;
mod scrape;
mod upstream;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use runplane_api::org::v1::organization_service_client::OrganizationServiceClient;
use runplane_api::workflowrun::v1::workflow_run_service_client::WorkflowRunServiceClient;
use runplane_auth::FailureLimiter;
use runplane_auth::{AdminCredential, TokenAuthenticator};
use runplane_server::http_observe;

pub use config::Config;

/// Runs metrics-service until SIGTERM/SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let cardinality = exposition::cardinality::Cardinality::new(
        &config.disabled_metrics,
        &config.drop_labels,
        config.max_series_per_org,
    )
    .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    let admin = Arc::new(AdminCredential::load(&config.common.admin)?);
    let channel = |addr: &str| runplane_client::channel(addr, &config.upstream);
    let scraper = Arc::new(scrape::Scraper {
        upstreams: upstream::Upstreams {
            tokens: TokenAuthenticator::uncached(
                channel(&config.token_service_addr)?,
                admin.clone(),
            )
            .with_failure_limit(FailureLimiter::from_args(&config.common.auth_failures)),
            orgs: OrganizationServiceClient::new(channel(&config.org_service_addr)?),
            workflow_runs: WorkflowRunServiceClient::new(channel(
                &config.workflow_run_service_addr,
            )?),
            admin,
        },
        client_address_header: config.client_address_header.clone(),
        exposition: exposition::Options {
            namespace: config.metrics_namespace.clone(),
            format: exposition::Format::Text,
            created_series: config.openmetrics_created_series,
            protobuf_histograms: config.protobuf_histograms,
            cardinality: Arc::new(cardinality),
        },
        cache: cache::ExpositionCache::new(config.scrape_cache_mib.saturating_mul(1 << 20)),
        counters: scrape::CacheCounters::new(),
        known_scrapers: scrape::KnownScrapers::new(),
    });
    let draining = Arc::new(AtomicBool::new(false));
    let app = router(
        scraper,
        draining.clone(),
        config.common.server.request_timeout,
    );

    let listener = runplane_server::grpc::bind(config.common.listen_addr).await?;
    runplane_server::http::serve(
        listener,
        app,
        &config.common.server,
        draining,
        runplane_server::http::MAX_BODY_BYTES,
    )
    .await
}

/// The HTTP routes: the per-organization scrape, probes, and own metrics.
fn router(
    scraper: Arc<scrape::Scraper>,
    draining: Arc<AtomicBool>,
    request_timeout: std::time::Duration,
) -> Router {
    Router::new()
        .route(
            "/prom/{org}/metrics",
            // gzip (which Prometheus asks for) is the handler's: it keeps
            // expositions compressed (see gzip.rs).
            get(scrape::handle).with_state(scraper),
        )
        .merge(http_observe::probes(draining))
        .layer(axum::middleware::from_fn(http_observe::track))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            request_timeout,
        ))
}
