//! token-service's configuration.

use std::net::SocketAddr;
use std::time::Duration;

use runplane_auth::AdminArgs;
use runplane_auth::AuthFailureArgs;
use runplane_client::UpstreamArgs;
use runplane_config::parse_duration;
use runplane_database::DatabaseArgs;
use runplane_server::suite::{self, Member};
use runplane_server::{CommonArgs, ServiceConfig};

/// Organization API tokens.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "token-service", version, about)]
pub struct Config {
    /// Address the gRPC server listens on.
    #[arg(long, env = "RUNPLANE_LISTEN_ADDR", default_value = suite::TOKEN_SERVICE.default_addr)]
    pub listen_addr: SocketAddr,
    /// Database URL: sqlite://PATH (embedded) or postgres://USER@HOST:PORT/DB.
    #[arg(
        long,
        env = "RUNPLANE_DATABASE_URL",
        default_value = "sqlite://.runplane/token.db"
    )]
    pub database_url: String,
    /// org-service's address.
    #[arg(
        long,
        env = "RUNPLANE_ORG_SERVICE_ADDR",
        default_value = suite::ORG_SERVICE.default_addr
    )]
    pub org_service_addr: String,
    /// How long Authenticate trusts that a token's organization still exists
    /// before asking org-service again. A deleted organization's tokens stop
    /// working within this time.
    #[arg(long, env = "RUNPLANE_ORG_CACHE_TTL", default_value = "5s", value_parser = parse_duration)]
    pub org_cache_ttl: Duration,
    #[command(flatten)]
    pub upstream: UpstreamArgs,
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
    const MEMBER: Member = suite::TOKEN_SERVICE;
    fn common(&self) -> &CommonArgs {
        &self.common
    }
}
