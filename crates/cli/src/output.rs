//! What the CLI prints: tables for people, JSON (`--output json`) for
//! scripts, and the names and times both use.

use std::time::{Duration, UNIX_EPOCH};

use clap::ValueEnum;
use runplane_api::org::v1::Organization;
use runplane_api::time::from_timestamp;
use runplane_api::token::v1::Token;
use runplane_api::workflowrun::v1::{Run, RunStatus, Workflow};
use serde::Serialize;

/// `--output`: how results are printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Tables and sentences for people.
    #[default]
    Text,
    /// One JSON value on stdout: an object for one thing, an array for a list.
    Json,
}

/// Prints `value` as one line of JSON.
pub(crate) fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string(value)?);
    Ok(())
}

/// Writes one line to stdout for [`outln!`]. A reader that has gone (a
/// closed pipe) ends the process with success: it read what it wanted.
pub(crate) fn write_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    if let Err(e) = writeln!(std::io::stdout().lock(), "{line}") {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// A time as RFC 3339 UTC to the second, `-` when unset.
pub(crate) fn format_time(ms: Option<i64>) -> String {
    rfc3339(ms).unwrap_or_else(|| "-".to_owned())
}

fn rfc3339(ms: Option<i64>) -> Option<String> {
    let ms = u64::try_from(ms?).ok()?;
    Some(humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string())
}

pub(crate) fn time_of(at: Option<&runplane_api::time::Timestamp>) -> Option<String> {
    rfc3339(at.map(from_timestamp))
}

/// A run state as the CLI prints it and `--status` takes it.
pub(crate) fn status_name(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Initialized => "running",
        other => other.label(),
    }
}

/// An organization, for `--output json`.
#[derive(Serialize)]
pub(crate) struct OrganizationJson {
    id: String,
    name: String,
    create_time: Option<String>,
    prometheus_metrics_enabled: bool,
}

impl From<&Organization> for OrganizationJson {
    fn from(org: &Organization) -> Self {
        OrganizationJson {
            id: org.id.clone(),
            name: org.name.clone(),
            create_time: time_of(org.create_time.as_ref()),
            prometheus_metrics_enabled: org.prometheus_metrics_enabled,
        }
    }
}

/// A token (never its secret, unless just created), for `--output json`.
#[derive(Serialize)]
pub(crate) struct TokenJson {
    id: String,
    name: String,
    organization: String,
    description: String,
    scopes: Vec<&'static str>,
    /// Empty: every project.
    projects: Vec<String>,
    state: &'static str,
    create_time: Option<String>,
    expire_time: Option<String>,
    revoke_time: Option<String>,
    last_used_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

impl TokenJson {
    pub(crate) fn new(token: &Token, secret: Option<String>) -> Self {
        TokenJson {
            id: token.id.clone(),
            name: token.name.clone(),
            organization: token.org_name.clone(),
            description: token.description.clone(),
            scopes: token.scopes().map(|s| s.label()).collect(),
            projects: token.projects.clone(),
            state: token_state(token),
            create_time: time_of(token.create_time.as_ref()),
            expire_time: time_of(token.expire_time.as_ref()),
            revoke_time: time_of(token.revoke_time.as_ref()),
            last_used_time: time_of(token.last_used_time.as_ref()),
            secret,
        }
    }
}

/// `live`, `revoked` or `expired`.
pub(crate) fn token_state(token: &Token) -> &'static str {
    if token.revoke_time.is_some() {
        "revoked"
    } else if token
        .expire_time
        .as_ref()
        .is_some_and(|at| from_timestamp(at) <= runplane_api::time::now_ms())
    {
        "expired"
    } else {
        "live"
    }
}

/// A run, for `--output json`.
#[derive(Serialize)]
pub(crate) struct RunJson {
    id: String,
    project: String,
    workflow: String,
    workflow_id: String,
    status: &'static str,
    runner: &'static str,
    run_url: String,
    reason: String,
    start_time: Option<String>,
    finish_time: Option<String>,
    expire_time: Option<String>,
    duration_seconds: Option<f64>,
    queue_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attempt: Option<u32>,
    #[serde(skip_serializing_if = "String::is_empty")]
    branch: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    commit_sha: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    trigger: String,
}

impl From<&Run> for RunJson {
    fn from(run: &Run) -> Self {
        RunJson {
            id: run.id.clone(),
            project: run.project.clone(),
            workflow: run.workflow.clone(),
            workflow_id: run.workflow_id.clone(),
            status: status_name(run.status()),
            runner: run.runner_type().label(),
            run_url: run.run_url.clone(),
            reason: run.reason.clone(),
            start_time: time_of(run.start_time.as_ref()),
            finish_time: time_of(run.finish_time.as_ref()),
            expire_time: time_of(run.expire_time.as_ref()),
            duration_seconds: run_duration_ms(run).map(|ms| ms as f64 / 1000.0),
            queue_time: time_of(run.queue_time.as_ref()),
            attempt: (run.attempt > 0).then_some(run.attempt),
            branch: run.branch.clone(),
            commit_sha: run.commit_sha.clone(),
            trigger: run.trigger.clone(),
        }
    }
}

/// How long a finished run took.
pub(crate) fn run_duration_ms(run: &Run) -> Option<i64> {
    let started = run.start_time.as_ref().map(from_timestamp)?;
    let finished = run.finish_time.as_ref().map(from_timestamp)?;
    Some(finished - started)
}

/// A workflow, for `--output json`.
#[derive(Serialize)]
pub(crate) struct WorkflowJson {
    id: String,
    project: String,
    name: String,
    create_time: Option<String>,
    last_run_status: Option<&'static str>,
    last_run_finish_time: Option<String>,
}

impl From<&Workflow> for WorkflowJson {
    fn from(w: &Workflow) -> Self {
        WorkflowJson {
            id: w.id.clone(),
            project: w.project.clone(),
            name: w.name.clone(),
            create_time: time_of(w.create_time.as_ref()),
            last_run_status: (w.last_run_status() != RunStatus::Unspecified)
                .then(|| status_name(w.last_run_status())),
            last_run_finish_time: time_of(w.last_run_finish_time.as_ref()),
        }
    }
}
