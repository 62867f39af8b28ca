//! workflow-run-service's configuration.

use std::time::Duration;

use runplane_client::UpstreamArgs;
use runplane_config::parse_duration;
use runplane_database::DatabaseArgs;
use runplane_server::suite::{self, Member};
use runplane_server::{CommonArgs, ServiceConfig};

/// Workflows, runs and their aggregates.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "workflow-run-service", version, about)]
pub struct Config {
    /// token-service's address.
    #[arg(long, env = "RUNPLANE_TOKEN_SERVICE_ADDR")]
    pub token_service_addr: String,
    /// How long token-service's answer about a token is reused on this service
    /// (0s: ask every time). A revoked token may keep reporting runs for at most
    /// this long; scrapes always ask token-service.
    #[arg(long, env = "RUNPLANE_AUTH_CACHE_TTL", default_value = "5s", value_parser = parse_duration)]
    pub auth_cache_ttl: Duration,
    /// Most token answers kept in that cache.
    #[arg(long, env = "RUNPLANE_AUTH_CACHE_CAPACITY", default_value_t = 10_000)]
    pub auth_cache_capacity: usize,
    /// Most workflows one organization may have (0: no limit). Each workflow is
    /// a few dozen series on the organization's scrape; past the limit, a run
    /// of a new workflow is refused with RESOURCE_EXHAUSTED (runs of existing
    /// workflows are unaffected).
    #[arg(long, env = "RUNPLANE_MAX_WORKFLOWS_PER_ORG", default_value_t = 10_000)]
    pub max_workflows_per_org: u64,
    /// Also push runs as OpenTelemetry CI/CD metrics (`cicd.pipeline.run.*`)
    /// over OTLP, to the standard `OTEL_EXPORTER_OTLP_ENDPOINT`.
    #[arg(long, env = "RUNPLANE_OTEL_CICD_METRICS", default_value_t = false)]
    pub otel_cicd_metrics: bool,
    /// A run still in progress this long after it started is marked expired;
    /// a job reported queued this long ago no longer counts as queued now.
    #[arg(long, env = "RUNPLANE_RUN_TIMEOUT", default_value = "1h", value_parser = parse_duration)]
    pub run_timeout: Duration,
    /// How often the sweeper looks for runs past the run timeout.
    #[arg(long, env = "RUNPLANE_SWEEP_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub sweep_interval: Duration,
    /// Finished runs older than this are deleted, and jobs first reported that
    /// long ago (0s: keep forever). The metrics
    /// are unaffected: they come from aggregates that retention never touches.
    /// Deployments finished and commit times of that long ago go too.
    #[arg(long, env = "RUNPLANE_RUN_RETENTION", default_value = "90d", value_parser = parse_duration)]
    pub run_retention: Duration,
    /// How often retention looks for runs to delete.
    #[arg(long, env = "RUNPLANE_RETENTION_INTERVAL", default_value = "10m", value_parser = parse_duration)]
    pub retention_interval: Duration,
    /// Upper bounds, in seconds, of the run duration histogram's buckets, for
    /// histograms created from now on (existing series keep theirs).
    #[arg(
        long,
        env = "RUNPLANE_RUN_DURATION_BUCKETS",
        value_delimiter = ',',
        default_value = "10,30,60,90,120,180,240,300,600,900,1200"
    )]
    pub run_duration_buckets: Vec<f64>,
    /// Upper bounds, in seconds, of the queue-time histogram's buckets (how
    /// long runs waited for a runner), for histograms created from now on.
    #[arg(
        long,
        env = "RUNPLANE_QUEUE_DURATION_BUCKETS",
        value_delimiter = ',',
        default_value = "1,5,10,30,60,120,300,600,1800,3600"
    )]
    pub queue_duration_buckets: Vec<f64>,
    /// Which runs get a `branch` label on the run families (`workflow_up`,
    /// `workflow_run_duration_seconds`, `workflow_runs_total`): `none` (no
    /// label), `default` (the repository's default branch by name, the rest
    /// as `other`), `all` (every branch by name), or one regular expression
    /// matched against the whole branch name (matching branches by name, the
    /// rest as `other`). At most 50 labels a workflow, then `other`. Applies
    /// to runs finished from then on.
    #[arg(long, env = "RUNPLANE_BRANCH_LABEL", default_value = "none")]
    pub branch_label: crate::aggregate::BranchLabel,
    /// Workflows whose runs are deployments: a run of one that ends in
    /// success or error is recorded as a deployment of its commit to the
    /// environment (docs/dora.md). In the config file a list of `{project,
    /// workflow, environment}` (project: empty means "default"); as a flag or
    /// environment variable the same list in YAML or JSON.
    #[arg(long, env = "RUNPLANE_DEPLOY_WORKFLOWS", default_value = "")]
    pub deploy_workflows: crate::deploy_workflows::DeployWorkflows,
    #[command(flatten)]
    pub upstream: UpstreamArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

impl ServiceConfig for Config {
    const MEMBER: Member = suite::WORKFLOW_RUN_SERVICE;
    fn common(&self) -> &CommonArgs {
        &self.common
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_suite_knows_this_services_settings() {
        suite::check_settings::<Config>();
    }

    #[test]
    fn the_default_buckets_are_chainloops() {
        let layout = suite::layout(&Config::MEMBER);
        let config: Config =
            runplane_config::load_from(&layout, vec!["workflow-run-service".into()])
                .expect("defaults");
        assert_eq!(
            config.run_duration_buckets,
            crate::aggregate::DEFAULT_BUCKETS
        );
    }
}
