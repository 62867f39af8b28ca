//! ingest-service's configuration.

use runplane_client::UpstreamArgs;
use runplane_server::suite::{self, Member};
use runplane_server::{CommonArgs, ServiceConfig};

/// The HTTP edge for CI systems: webhooks and the run API as JSON.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "ingest-service", version, about)]
pub struct Config {
    /// token-service's address (webhook secrets).
    #[arg(long, env = "RUNPLANE_TOKEN_SERVICE_ADDR")]
    pub token_service_addr: String,
    /// workflow-run-service's address (where runs are reported).
    #[arg(long, env = "RUNPLANE_WORKFLOW_RUN_SERVICE_ADDR")]
    pub workflow_run_service_addr: String,
    /// Request header naming the client's address, when a proxy or mesh sits in
    /// front (e.g. `x-forwarded-for`: its last entry, the one the proxy added,
    /// is used): the source whose sprays of wrong signatures are told to back
    /// off. Without it, the peer address.
    #[arg(long, env = "RUNPLANE_CLIENT_ADDRESS_HEADER", value_parser = parse_header_name)]
    pub client_address_header: Option<http::HeaderName>,
    /// How long an organization's webhook secrets are reused without asking
    /// token-service (0s: ask for every delivery). A deleted webhook's secret
    /// may still verify deliveries for at most this long; a secret added since
    /// is seen at once (a delivery that matches none of the remembered ones
    /// asks again).
    #[arg(long, env = "RUNPLANE_WEBHOOK_SECRET_CACHE_TTL", default_value = "5s", value_parser = runplane_config::parse_duration)]
    pub webhook_secret_cache_ttl: std::time::Duration,
    #[command(flatten)]
    pub upstream: UpstreamArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

impl ServiceConfig for Config {
    const MEMBER: Member = suite::INGEST_SERVICE;
    fn common(&self) -> &CommonArgs {
        &self.common
    }
}

fn parse_header_name(text: &str) -> Result<http::HeaderName, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not an HTTP header name"))
}

#[cfg(test)]
mod settings {
    #[test]
    fn the_suite_knows_this_services_settings() {
        runplane_server::suite::check_settings::<super::Config>();
    }
}
