//! `runplane deployment …`: deployments of a project to an environment, for
//! whatever deploys without a GitHub or GitLab deployment or a
//! `deploy_workflows` workflow (docs/dora.md).

use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use runplane_api::time::{Timestamp, from_timestamp};
use runplane_api::workflowrun::v1::{
    DeleteEnvironmentRequest, Deployment, DeploymentKind, DeploymentStatus, ListDeploymentsRequest,
    RecordDeploymentRequest,
};
use serde::Serialize;

use crate::cli::Global;
use crate::output::{format_time, print_json};
use crate::report::parse_time;
use crate::run::{Reporter, TokenArg};
use crate::runner_env;

#[derive(Debug, Subcommand)]
pub(crate) enum DeploymentCommand {
    /// Record a finished deployment (needs `runs:write`).
    Record {
        /// The environment deployed to, e.g. `production`.
        #[arg(long)]
        environment: String,
        /// How it ended.
        #[arg(long, value_enum)]
        status: DeployOutcome,
        /// The commit deployed, in hex (default: the CI's own, as for `run start`).
        #[arg(long)]
        commit: Option<String>,
        /// When that commit was made (RFC 3339), for its lead time (default:
        /// CI_COMMIT_TIMESTAMP on GitLab; else the time a run of the commit
        /// reported, if one did).
        #[arg(long, value_parser = parse_time)]
        commit_time: Option<Timestamp>,
        /// The project deployed.
        #[arg(long, default_value = "default")]
        project: String,
        /// `rollback` or `hotfix`: it undoes the deployment before it, whose
        /// change failed.
        #[arg(long, value_enum, default_value_t = Kind::Deploy)]
        kind: Kind,
        /// When it started (RFC 3339), if known.
        #[arg(long, value_parser = parse_time)]
        started_at: Option<Timestamp>,
        /// When it finished (RFC 3339; default: now).
        #[arg(long, value_parser = parse_time)]
        finished_at: Option<Timestamp>,
        /// Link to the deployment.
        #[arg(long)]
        url: Option<String>,
        /// Idempotency key: recording again with the same key counts nothing
        /// twice (default: none).
        #[arg(long)]
        request_id: Option<String>,
        #[command(flatten)]
        token: TokenArg,
    },
    /// List deployments, most recently recorded first (needs `metrics:read`).
    List {
        /// Only deployments to this environment.
        #[arg(long)]
        environment: Option<String>,
        /// Only this project's deployments.
        #[arg(long)]
        project: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
        #[command(flatten)]
        token: TokenArg,
    },
    /// Delete an environment with its deployments and DORA series (needs
    /// `workflows:delete`): for one recorded by mistake.
    DeleteEnvironment {
        /// The environment, e.g. `prodution`.
        #[arg(long)]
        environment: String,
        /// Its project.
        #[arg(long, default_value = "default")]
        project: String,
        #[command(flatten)]
        token: TokenArg,
    },
}

/// How a deployment ended.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum DeployOutcome {
    Success,
    Failure,
}

/// What a deployment does.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Kind {
    Deploy,
    Rollback,
    Hotfix,
}

impl From<Kind> for DeploymentKind {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Deploy => DeploymentKind::Unspecified,
            Kind::Rollback => DeploymentKind::Rollback,
            Kind::Hotfix => DeploymentKind::Hotfix,
        }
    }
}

/// A deployment as `--output json` prints it.
#[derive(Debug, Serialize)]
struct DeploymentJson {
    id: String,
    project: String,
    environment: String,
    status: &'static str,
    kind: &'static str,
    commit_sha: String,
    commit_time: Option<String>,
    finish_time: Option<String>,
    url: String,
    run_id: String,
}

fn time(at: Option<&Timestamp>) -> Option<String> {
    at.map(from_timestamp).map(|ms| format_time(Some(ms)))
}

impl From<&Deployment> for DeploymentJson {
    fn from(d: &Deployment) -> Self {
        DeploymentJson {
            id: d.id.clone(),
            project: d.project.clone(),
            environment: d.environment.clone(),
            status: d.status().label(),
            kind: d.kind().label(),
            commit_sha: d.commit_sha.clone(),
            commit_time: time(d.commit_time.as_ref()),
            finish_time: time(d.finish_time.as_ref()),
            url: d.url.clone(),
            run_id: d.run_id.clone(),
        }
    }
}

/// Runs a deployment command.
pub(crate) async fn run(global: &Global, command: DeploymentCommand) -> anyhow::Result<ExitCode> {
    match command {
        DeploymentCommand::Record {
            environment,
            status,
            commit,
            commit_time,
            project,
            kind,
            started_at,
            finished_at,
            url,
            request_id,
            token,
        } => {
            let reporter = Reporter::new(global, token)?;
            let detected = runner_env::detect_from_process().origin;
            let commit_sha = commit.or(detected.commit_sha).ok_or_else(|| {
                anyhow::anyhow!(
                    "which commit? Give --commit SHA (no CI commit found in the environment)"
                )
            })?;
            let request = RecordDeploymentRequest {
                project,
                environment,
                commit_sha,
                commit_time: commit_time.or(detected.commit_time),
                start_time: started_at,
                finish_time: Some(finished_at.unwrap_or_else(|| {
                    runplane_api::time::timestamp(runplane_api::time::now_ms())
                })),
                status: match status {
                    DeployOutcome::Success => DeploymentStatus::Success,
                    DeployOutcome::Failure => DeploymentStatus::Failure,
                }
                .into(),
                kind: DeploymentKind::from(kind).into(),
                request_id: request_id.unwrap_or_default(),
                url: url.unwrap_or_default(),
            };
            let recorded = reporter
                .call(
                    "recording the deployment",
                    request,
                    |mut client, request| async move { client.record_deployment(request).await },
                )
                .await?;
            let deployment = recorded.deployment.unwrap_or_default();
            if global.json() {
                print_json(&DeploymentJson::from(&deployment))?;
            } else if global.quiet {
                outln!("{}", deployment.id);
            } else {
                // Only a successful deployment of a change has a lead time.
                let lead_time = deployment.status() == DeploymentStatus::Success
                    && deployment.kind() != DeploymentKind::Rollback;
                let note = match (recorded.counted, deployment.commit_time.is_some()) {
                    (false, _) => " (already recorded: counted once)",
                    (true, false) if lead_time => " (commit time unknown: no lead time)",
                    _ => "",
                };
                outln!(
                    "Recorded deployment {} of {} to {}: {}{note}.",
                    deployment.id,
                    deployment.project,
                    deployment.environment,
                    deployment.status().label()
                );
            }
        }
        DeploymentCommand::List {
            environment,
            project,
            limit,
            token,
        } => {
            let reporter = Reporter::new(global, token)?;
            let limit = limit as usize;
            let mut deployments: Vec<Deployment> = Vec::new();
            let mut page_token = String::new();
            while deployments.len() < limit {
                let request = ListDeploymentsRequest {
                    environment: environment.clone().unwrap_or_default(),
                    project: project.clone().unwrap_or_default(),
                    page_size: i32::try_from((limit - deployments.len()).min(1000)).unwrap_or(1000),
                    page_token,
                };
                let page = reporter
                    .call(
                        "listing deployments",
                        request,
                        |mut client, request| async move { client.list_deployments(request).await },
                    )
                    .await?;
                deployments.extend(page.deployments);
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            if global.json() {
                print_json(
                    &deployments
                        .iter()
                        .map(DeploymentJson::from)
                        .collect::<Vec<_>>(),
                )?;
            } else if global.quiet {
                deployments.iter().for_each(|d| outln!("{}", d.id));
            } else {
                outln!(
                    "{:<24} {:<16} {:<8} {:<9} {:<12} {:<22} COMMIT TIME",
                    "PROJECT",
                    "ENVIRONMENT",
                    "STATUS",
                    "KIND",
                    "COMMIT",
                    "FINISHED"
                );
                for d in &deployments {
                    outln!(
                        "{:<24} {:<16} {:<8} {:<9} {:<12} {:<22} {}",
                        d.project,
                        d.environment,
                        d.status().label(),
                        d.kind().label(),
                        d.commit_sha.chars().take(12).collect::<String>(),
                        format_time(d.finish_time.as_ref().map(from_timestamp)),
                        format_time(d.commit_time.as_ref().map(from_timestamp)),
                    );
                }
            }
        }
        DeploymentCommand::DeleteEnvironment {
            environment,
            project,
            token,
        } => {
            let reporter = Reporter::new(global, token)?;
            let request = DeleteEnvironmentRequest {
                environment: environment.clone(),
                project: project.clone(),
            };
            let deleted = reporter
                .call(
                    "deleting the environment",
                    request,
                    |mut client, request| async move { client.delete_environment(request).await },
                )
                .await?;
            if global.json() {
                print_json(&serde_json::json!({
                    "project": project,
                    "environment": environment,
                    "deleted_deployments": deleted.deleted_deployments,
                }))?;
            } else if !global.quiet {
                outln!(
                    "Deleted environment {project}/{environment} and its {} deployments.",
                    deleted.deleted_deployments
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
