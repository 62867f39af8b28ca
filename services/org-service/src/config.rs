//! org-service's configuration.

use runplane_database::DatabaseArgs;
use runplane_server::suite::{self, Member};
use runplane_server::{CommonArgs, ServiceConfig};

/// Organizations and their Prometheus integration switch.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "org-service", version, about)]
pub struct Config {
    /// Organizations whose Prometheus metrics are served, comma-separated.
    /// In the config file: `prometheus_org_metrics: [{org_name: cyberdyne}, …]`.
    #[arg(long, env = "RUNPLANE_PROMETHEUS_ORG_METRICS", value_delimiter = ',')]
    pub prometheus_org_metrics: Vec<String>,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

impl ServiceConfig for Config {
    const MEMBER: Member = suite::ORG_SERVICE;
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
