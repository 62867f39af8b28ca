//! metrics-service's configuration.

use std::net::SocketAddr;

use runplane_kit::auth::AdminArgs;
use runplane_kit::client::UpstreamArgs;
use runplane_kit::service::{CommonArgs, ServiceConfig};

/// The authenticated per-organization Prometheus endpoint.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "metrics-service", version, about)]
pub struct Config {
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
    #[command(flatten)]
    pub upstream: UpstreamArgs,
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

impl ServiceConfig for Config {
    const NAME: &'static str = "metrics-service";
    const SECTION: &'static str = "metrics_service";
    fn common(&self) -> &CommonArgs {
        &self.common
    }
}
