//! metrics-service's configuration.

use runplane_client::UpstreamArgs;
use runplane_server::suite::{self, Member};
use runplane_server::{CommonArgs, ServiceConfig};

/// The authenticated per-organization Prometheus endpoint.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "metrics-service", version, about)]
pub struct Config {
    /// org-service's address.
    #[arg(long, env = "RUNPLANE_ORG_SERVICE_ADDR")]
    pub org_service_addr: String,
    /// token-service's address.
    #[arg(long, env = "RUNPLANE_TOKEN_SERVICE_ADDR")]
    pub token_service_addr: String,
    /// workflow-run-service's address.
    #[arg(long, env = "RUNPLANE_WORKFLOW_RUN_SERVICE_ADDR")]
    pub workflow_run_service_addr: String,
    /// Prefix of the per-organization metric names. The default keeps
    /// Chainloop's names, so its dashboards and alert rules work unchanged.
    #[arg(long, env = "RUNPLANE_METRICS_NAMESPACE", default_value = crate::exposition::DEFAULT_NAMESPACE, value_parser = parse_namespace)]
    pub metrics_namespace: String,
    /// In OpenMetrics responses, add `_created` series to counters and histograms.
    #[arg(
        long,
        env = "RUNPLANE_OPENMETRICS_CREATED_SERIES",
        default_value_t = false
    )]
    pub openmetrics_created_series: bool,
    /// How protobuf scrapes (Prometheus with native histograms on) carry each
    /// duration histogram: `both`, the native histogram and the classic
    /// series (Prometheus keeps both, so Chainloop's dashboard keeps its
    /// buckets), or `native`, one standard histogram message, of which
    /// Prometheus keeps the native series alone unless told otherwise.
    #[arg(long, env = "RUNPLANE_PROTOBUF_HISTOGRAMS", value_enum, default_value_t = crate::exposition::ProtobufHistograms::Both)]
    pub protobuf_histograms: crate::exposition::ProtobufHistograms,
    /// Families left out of every scrape, by name without the namespace
    /// (e.g. `workflow_job_queue_seconds,workflow_runs_by_attempt_total`).
    #[arg(long, env = "RUNPLANE_DISABLED_METRICS", value_delimiter = ',', value_parser = parse_family)]
    pub disabled_metrics: Vec<String>,
    /// Labels left out of every series, `runner` and/or `project`: series that
    /// differ only by them are merged (counts added, histograms over their
    /// shared buckets, the newest run's gauges kept).
    #[arg(long, env = "RUNPLANE_DROP_LABELS", value_delimiter = ',', value_parser = parse_droppable)]
    pub drop_labels: Vec<String>,
    /// Most series one organization's scrape holds (0: no limit). Past it,
    /// whole workflows are left out, the most recently created first, and
    /// `org_series_dropped` says how many series went.
    #[arg(long, env = "RUNPLANE_MAX_SERIES_PER_ORG", default_value_t = 1_000_000)]
    pub max_series_per_org: usize,
    /// MiB of expositions kept between scrapes (0: none), each served again
    /// only while its organization's aggregates are byte for byte those it
    /// was written from. Least recently used go first; an exposition too
    /// large for it is kept gzip-compressed only, or not at all.
    #[arg(long, env = "RUNPLANE_SCRAPE_CACHE_MIB", default_value_t = 32)]
    pub scrape_cache_mib: usize,
    /// Request header naming the client's address, when a proxy or mesh sits in
    /// front (e.g. `x-forwarded-for`: its last entry, the one the proxy added,
    /// is used): the source whose sprays of wrong tokens are told to back off.
    /// Without it, the peer address.
    #[arg(long, env = "RUNPLANE_CLIENT_ADDRESS_HEADER", value_parser = parse_header_name)]
    pub client_address_header: Option<http::HeaderName>,
    #[command(flatten)]
    pub upstream: UpstreamArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

impl ServiceConfig for Config {
    const MEMBER: Member = suite::METRICS_SERVICE;
    fn common(&self) -> &CommonArgs {
        &self.common
    }
}

/// A family `disabled_metrics` may name.
fn parse_family(text: &str) -> Result<String, String> {
    use crate::exposition::cardinality::FAMILIES;
    let name = text.trim();
    if FAMILIES.contains(&name) {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "{name:?} is not a family of the scrape; one of: {} (names without the namespace)",
            FAMILIES.join(", ")
        ))
    }
}

/// A label `drop_labels` may name.
fn parse_droppable(text: &str) -> Result<String, String> {
    use crate::exposition::cardinality::DROPPABLE_LABELS;
    let name = text.trim();
    if DROPPABLE_LABELS.contains(&name) {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "{name:?} cannot be dropped; only {} can",
            DROPPABLE_LABELS.join(" and ")
        ))
    }
}

fn parse_header_name(text: &str) -> Result<http::HeaderName, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not an HTTP header name"))
}

/// A metric name prefix: `[a-zA-Z_][a-zA-Z0-9_]*`, as Prometheus names go.
fn parse_namespace(text: &str) -> Result<String, String> {
    let mut chars = text.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "{text:?} is not a metric name prefix (letters, digits and `_`, not starting with a digit)"
        ))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_known_families_and_labels_are_taken() {
        assert!(super::parse_family("workflow_job_up").is_ok());
        assert!(super::parse_family("chainloop_workflow_job_up").is_err());
        assert!(super::parse_droppable(" runner").is_ok());
        assert!(super::parse_droppable("workflow").is_err());
    }

    #[test]
    fn namespaces_are_metric_name_prefixes() {
        assert!(super::parse_namespace("chainloop").is_ok());
        assert!(super::parse_namespace("ci_cd2").is_ok());
        for bad in ["", "2ci", "ci-cd", "ci cd", "ci:cd"] {
            assert!(super::parse_namespace(bad).is_err(), "{bad:?}");
        }
    }
}

#[cfg(test)]
mod settings {
    #[test]
    fn the_suite_knows_this_services_settings() {
        runplane_server::suite::check_settings::<super::Config>();
    }
}
