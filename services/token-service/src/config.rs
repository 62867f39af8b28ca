//! token-service's configuration.

use std::time::Duration;

use runplane_client::UpstreamArgs;
use runplane_config::parse_duration;
use runplane_database::DatabaseArgs;
use runplane_server::suite::{self, Member};
use runplane_server::{CommonArgs, ServiceConfig};

/// Organization API tokens.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "token-service", version, about)]
pub struct Config {
    /// org-service's address.
    #[arg(long, env = "RUNPLANE_ORG_SERVICE_ADDR")]
    pub org_service_addr: String,
    /// How long Authenticate trusts that a token's organization still exists
    /// before asking org-service again. A deleted organization's tokens stop
    /// working within this time.
    #[arg(long, env = "RUNPLANE_ORG_CACHE_TTL", default_value = "5s", value_parser = parse_duration)]
    pub org_cache_ttl: Duration,
    /// File holding the key webhook secrets are derived from (at least 32
    /// random bytes). Unset: derived from the admin credential, so that
    /// rotating the admin credential also changes every webhook secret; set
    /// it to rotate them apart. Changing it changes every webhook secret.
    #[arg(long, env = "RUNPLANE_WEBHOOK_KEY_FILE")]
    pub webhook_key_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub upstream: UpstreamArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

impl ServiceConfig for Config {
    const MEMBER: Member = suite::TOKEN_SERVICE;
    fn common(&self) -> &CommonArgs {
        &self.common
    }
}

#[cfg(test)]
mod settings {
    #[test]
    fn the_suite_knows_this_services_settings() {
        runplane_server::suite::check_settings::<super::Config>();
    }
}
