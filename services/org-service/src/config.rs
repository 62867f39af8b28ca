//! org-service's configuration.

use std::net::SocketAddr;

use runplane_kit::auth::AdminArgs;
use runplane_kit::database::DatabaseArgs;
use runplane_kit::service::{CommonArgs, ServiceConfig};

/// Organizations and their Prometheus integration switch.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "org-service", version, about)]
pub struct Config {
    /// Address the gRPC server listens on.
    #[arg(long, env = "RUNPLANE_LISTEN_ADDR", default_value = "127.0.0.1:50051")]
    pub listen_addr: SocketAddr,
    /// Database URL: sqlite://PATH (embedded) or postgres://USER@HOST:PORT/DB.
    #[arg(
        long,
        env = "RUNPLANE_DATABASE_URL",
        default_value = "sqlite://.runplane/org.db"
    )]
    pub database_url: String,
    /// Organizations whose Prometheus metrics are served, comma-separated.
    /// In the config file: `prometheus_org_metrics: [{org_name: cyberdyne}, …]`.
    #[arg(long, env = "RUNPLANE_PROMETHEUS_ORG_METRICS", value_delimiter = ',')]
    pub prometheus_org_metrics: Vec<String>,
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

impl ServiceConfig for Config {
    const NAME: &'static str = "org-service";
    const SECTION: &'static str = "org_service";
    fn common(&self) -> &CommonArgs {
        &self.common
    }
}
