//! metrics-service's configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use runplane_kit::auth::AdminArgs;
use runplane_kit::client::UpstreamArgs;
use runplane_kit::config::parse_duration;
use runplane_kit::service::ServiceConfig;
use runplane_kit::telemetry::LogArgs;

/// The authenticated per-organization Prometheus endpoint.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "metrics-service", version, about)]
pub struct Config {
    /// Shared YAML configuration file (section `metrics_service`).
    #[arg(long, env = "RUNPLANE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address the HTTP server listens on.
    #[arg(long, env = "RUNPLANE_LISTEN_ADDR", default_value = "127.0.0.1:8080")]
    pub listen_addr: SocketAddr,
    /// org-service's address.
    #[arg(
        long,
        env = "RUNPLANE_ORG_SERVICE_ADDR",
        default_value = "127.0.0.1:50051"
    )]
    pub org_service_addr: String,
    /// token-service's address.
    #[arg(
        long,
        env = "RUNPLANE_TOKEN_SERVICE_ADDR",
        default_value = "127.0.0.1:50052"
    )]
    pub token_service_addr: String,
    /// workflow-run-service's address.
    #[arg(
        long,
        env = "RUNPLANE_WORKFLOW_RUN_SERVICE_ADDR",
        default_value = "127.0.0.1:50053"
    )]
    pub workflow_run_service_addr: String,
    /// Longest time one HTTP request may take.
    #[arg(long, env = "RUNPLANE_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// On SIGTERM, how long in-flight scrapes may take to finish.
    #[arg(long, env = "RUNPLANE_DRAIN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    #[command(flatten)]
    pub upstream: UpstreamArgs,
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

impl ServiceConfig for Config {
    const NAME: &'static str = "metrics-service";
    const SECTION: &'static str = "metrics_service";
    fn log(&self) -> &LogArgs {
        &self.log
    }
}
