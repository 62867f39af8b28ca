//! org-service's configuration.

use std::net::SocketAddr;

use runplane_auth::AdminArgs;
use runplane_auth::AuthFailureArgs;
use runplane_database::DatabaseArgs;
use runplane_server::suite::{self, Member};
use runplane_server::{CommonArgs, ServiceConfig};

/// Organizations and their Prometheus integration switch.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "org-service", version, about)]
pub struct Config {
    /// Address the gRPC server listens on.
    #[arg(long, env = "RUNPLANE_LISTEN_ADDR", default_value = suite::ORG_SERVICE.default_addr)]
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
    pub auth_failures: AuthFailureArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

impl ServiceConfig for Config {
    const MEMBER: Member = suite::ORG_SERVICE;
    fn common(&self) -> &CommonArgs {
        &self.common
    }
}
