//! `POST /hooks/github/{org}`: GitHub's webhook deliveries.
//!
//! `workflow_run` events become runs: one per (run id, attempt), keyed
//! `github:<id>:<attempt>` so that redeliveries and events out of order count
//! once; `workflow_job` events become jobs (`github-job:<id>`);
//! `deployment_status` events that end a deployment become deployments
//! (`github-deployment:<id>`); `ping` is answered; every other event is
//! accepted and ignored (202). The mappings are documented in
//! docs/webhooks.md and docs/dora.md.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use runplane_api::token::v1::WebhookProvider;
use runplane_api::workflowrun::v1::{
    DeploymentKind, DeploymentStatus, JobStatus, RecordDeploymentRequest, ReportJobRequest,
    ReportRunRequest, RunStatus, RunnerType, StartRunRequest,
};
use runplane_server::http::PeerAddr;
use serde::Deserialize;

use crate::error::{IngestError, json};
use crate::webhook::{self, Action, time};

#[derive(Debug, Deserialize)]
struct Repository {
    full_name: String,
    #[serde(default)]
    default_branch: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WorkflowRunEvent {
    action: String,
    workflow_run: WorkflowRun,
    repository: Repository,
}

#[derive(Debug, Deserialize)]
struct WorkflowRun {
    id: u64,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    run_attempt: Option<u32>,
    #[serde(default)]
    html_url: Option<String>,
    #[serde(default)]
    conclusion: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    run_started_at: Option<String>,
    #[serde(default)]
    updated_at: Option<String>,
    #[serde(default)]
    head_branch: Option<String>,
    #[serde(default)]
    head_sha: Option<String>,
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    head_commit: Option<HeadCommit>,
}

#[derive(Debug, Deserialize)]
struct HeadCommit {
    #[serde(default)]
    timestamp: Option<String>,
}

#[derive(Debug, Deserialize)]
struct DeploymentStatusEvent {
    deployment_status: DeploymentStatusBody,
    deployment: DeploymentBody,
    repository: Repository,
}

#[derive(Debug, Deserialize)]
struct DeploymentStatusBody {
    state: String,
    #[serde(default)]
    environment: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    log_url: Option<String>,
    #[serde(default)]
    target_url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct DeploymentBody {
    id: u64,
    sha: String,
    #[serde(default)]
    environment: Option<String>,
    #[serde(default)]
    task: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WorkflowJobEvent {
    action: String,
    workflow_job: WorkflowJob,
    repository: Repository,
}

#[derive(Debug, Deserialize)]
struct WorkflowJob {
    id: u64,
    run_id: u64,
    #[serde(default)]
    run_attempt: Option<u32>,
    #[serde(default)]
    workflow_name: Option<String>,
    name: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    conclusion: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    started_at: Option<String>,
    #[serde(default)]
    completed_at: Option<String>,
    #[serde(default)]
    runner_name: Option<String>,
    #[serde(default)]
    labels: Vec<String>,
}

/// Serves one delivery, counted.
pub(crate) async fn handle(
    state: State<crate::SharedState>,
    org: Path<String>,
    peer: Option<Extension<PeerAddr>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, IngestError> {
    let event = webhook::header(&headers, "x-github-event").to_owned();
    let result = deliver(state, org, peer, headers, body).await;
    webhook::count("github", &event, &result);
    result
}

async fn deliver(
    State(state): State<crate::SharedState>,
    Path(org): Path<String>,
    peer: Option<Extension<PeerAddr>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, IngestError> {
    let header = |name: &str| webhook::header(&headers, name);
    let signature = header("x-hub-signature-256");
    let peer = peer.map(|Extension(addr)| addr);
    let delivery = webhook::Delivery::of_request(
        &state,
        WebhookProvider::Github,
        &org,
        &headers,
        "x-hub-signature-256",
        peer,
        body,
    );
    let (org, body) = webhook::verify(&state, delivery, |secret, body| {
        runplane_auth::webhook::github_signature_matches(secret, body, signature)
    })
    .await?;
    // GitHub's other content type: the JSON in a `payload` form field.
    let form = header("content-type")
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded");
    let body = if form {
        form_urlencoded::parse(&body)
            .find(|(key, _)| key == "payload")
            .map(|(_, json)| bytes::Bytes::from(json.into_owned()))
            .ok_or_else(|| {
                IngestError::BadRequest(
                    "a form-encoded delivery without a payload field: set the webhook's \
                     Content type to application/json"
                        .into(),
                )
            })?
    } else {
        body
    };
    let event = header("x-github-event");
    let action = match event {
        "ping" => {
            return Ok(json(StatusCode::OK, &serde_json::json!({"status": "pong"})));
        }
        "workflow_run" => run_action(&webhook::parse("workflow_run", &body)?)?,
        "workflow_job" => job_action(&webhook::parse("workflow_job", &body)?)?,
        "deployment_status" => deployment_action(&webhook::parse("deployment_status", &body)?)?,
        "" => {
            return Err(IngestError::BadRequest(
                "no X-GitHub-Event header: is this a GitHub webhook delivery?".into(),
            ));
        }
        other => Action::Ignore(format!(
            "{} events are not recorded: subscribe to Workflow runs, Workflow jobs and \
             Deployment statuses",
            runplane_api::input::quoted(other)
        )),
    };
    webhook::perform(&state, &org, action).await
}

/// The run's key: one run per attempt of a GitHub run.
fn run_key(run_id: u64, attempt: Option<u32>) -> String {
    format!("github:{run_id}:{}", attempt.unwrap_or(1))
}

/// What a `workflow_run` event records.
fn run_action(event: &WorkflowRunEvent) -> Result<Action, IngestError> {
    let run = &event.workflow_run;
    // GitHub's own example payloads have empty names: the file then names it.
    let workflow = run
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .or(run.path.as_deref().map(str::trim).filter(|p| !p.is_empty()))
        .ok_or_else(|| {
            IngestError::BadRequest("the workflow run has neither a name nor a path".into())
        })?
        .to_owned();
    let created = time("workflow_run.created_at", run.created_at.as_deref())?;
    let started = time("workflow_run.run_started_at", run.run_started_at.as_deref())?.or(created);
    // A re-run keeps its run's created_at: only a first attempt was queued then.
    let queued = created.filter(|_| run.run_attempt.unwrap_or(1) <= 1);
    let request_id = run_key(run.id, run.run_attempt);
    let run_url = run.html_url.clone().unwrap_or_default();
    let project = event.repository.full_name.clone();
    let runner_type = RunnerType::GithubAction.into();
    let attempt = run.run_attempt.unwrap_or(1);
    let branch = run.head_branch.clone().unwrap_or_default();
    let commit_sha = run.head_sha.clone().unwrap_or_default();
    let trigger = run.event.clone().unwrap_or_default();
    let default_branch = event.repository.default_branch.clone().unwrap_or_default();
    let commit_time = time(
        "workflow_run.head_commit.timestamp",
        run.head_commit
            .as_ref()
            .and_then(|c| c.timestamp.as_deref()),
    )?
    .filter(|_| !commit_sha.is_empty());
    match event.action.as_str() {
        "requested" | "in_progress" => Ok(Action::Start(StartRunRequest {
            workflow,
            project,
            runner_type,
            run_url,
            request_id,
            start_time: started,
            queue_time: queued,
            attempt,
            branch,
            commit_sha,
            trigger,
            default_branch,
            commit_time,
            ..StartRunRequest::default()
        })),
        "completed" => {
            let conclusion = run.conclusion.as_deref().unwrap_or("");
            let Some((status, reason)) = outcome(conclusion) else {
                return Ok(Action::Ignore(format!(
                    "conclusion {} does not end the run",
                    runplane_api::input::quoted(conclusion)
                )));
            };
            let finished = time("workflow_run.updated_at", run.updated_at.as_deref())?;
            Ok(Action::Report(ReportRunRequest {
                workflow,
                project,
                runner_type,
                run_url,
                request_id,
                queue_time: queued,
                start_time: started,
                finish_time: finished,
                status: status.into(),
                reason,
                attempt,
                branch,
                commit_sha,
                trigger,
                default_branch,
                commit_time,
            }))
        }
        other => Ok(Action::Ignore(format!(
            "workflow_run action {} is not recorded",
            runplane_api::input::quoted(other)
        ))),
    }
}

/// What a `deployment_status` event records: a deployment, once its status
/// ends it (`success`; `failure` or `error`). A deployment whose task ends in
/// `:rollback` or `:hotfix` (`deploy:rollback`) undoes the one before it.
fn deployment_action(event: &DeploymentStatusEvent) -> Result<Action, IngestError> {
    let (deployment, status) = (&event.deployment, &event.deployment_status);
    let outcome = match status.state.as_str() {
        "success" => DeploymentStatus::Success,
        "failure" | "error" => DeploymentStatus::Failure,
        other => {
            return Ok(Action::Ignore(format!(
                "deployment state {} does not end the deployment",
                runplane_api::input::quoted(other)
            )));
        }
    };
    let task = deployment
        .task
        .as_deref()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let kind = if task.ends_with(":rollback") {
        DeploymentKind::Rollback
    } else if task.ends_with(":hotfix") {
        DeploymentKind::Hotfix
    } else {
        DeploymentKind::Unspecified
    };
    let environment = status
        .environment
        .as_deref()
        .or(deployment.environment.as_deref())
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .ok_or_else(|| IngestError::BadRequest("the deployment names no environment".into()))?;
    let url = [&status.log_url, &status.target_url]
        .into_iter()
        .flatten()
        .find(|u| u.starts_with("https://") || u.starts_with("http://"))
        .cloned()
        .unwrap_or_default();
    Ok(Action::Deploy(RecordDeploymentRequest {
        project: event.repository.full_name.clone(),
        environment: environment.to_owned(),
        commit_sha: deployment.sha.clone(),
        start_time: time("deployment.created_at", deployment.created_at.as_deref())?,
        finish_time: time("deployment_status.created_at", status.created_at.as_deref())?,
        status: outcome.into(),
        kind: kind.into(),
        request_id: format!("github-deployment:{}", deployment.id),
        url,
        ..RecordDeploymentRequest::default()
    }))
}

/// A GitHub conclusion as an outcome, with the reason kept when the mapping
/// loses something; `None` when it does not end the run (`action_required`:
/// waiting for approval, it goes on once approved).
fn outcome(conclusion: &str) -> Option<(RunStatus, String)> {
    let said = || format!("GitHub conclusion: {conclusion}");
    Some(match conclusion {
        "success" => (RunStatus::Success, String::new()),
        "neutral" => (RunStatus::Success, said()),
        "failure" => (RunStatus::Error, String::new()),
        "timed_out" | "startup_failure" => (RunStatus::Error, said()),
        "cancelled" => (RunStatus::Canceled, String::new()),
        "skipped" | "stale" => (RunStatus::Canceled, said()),
        _ => return None,
    })
}

/// What a `workflow_job` event records.
fn job_action(event: &WorkflowJobEvent) -> Result<Action, IngestError> {
    let job = &event.workflow_job;
    let status = match (event.action.as_str(), job.status.as_deref()) {
        ("completed", _) | (_, Some("completed")) => JobStatus::Completed,
        ("in_progress", _) | (_, Some("in_progress")) => JobStatus::InProgress,
        ("queued" | "waiting", _) | (_, Some("queued" | "waiting" | "pending")) => {
            JobStatus::Queued
        }
        (other, _) => {
            return Ok(Action::Ignore(format!(
                "workflow_job action {} is not recorded",
                runplane_api::input::quoted(other)
            )));
        }
    };
    let conclusion = job.conclusion.clone().unwrap_or_default();
    let outcome = match status {
        JobStatus::Completed => match outcome(&conclusion) {
            Some((status, _)) => status,
            None => {
                return Ok(Action::Ignore(format!(
                    "job conclusion {} does not end the job",
                    runplane_api::input::quoted(&conclusion)
                )));
            }
        },
        _ => RunStatus::Unspecified,
    };
    let started = time("workflow_job.started_at", job.started_at.as_deref())?;
    Ok(Action::Job(ReportJobRequest {
        project: event.repository.full_name.clone(),
        workflow: job.workflow_name.clone().unwrap_or_default(),
        run_request_id: run_key(job.run_id, job.run_attempt),
        job_key: format!("github-job:{}", job.id),
        name: job.name.clone(),
        status: status.into(),
        outcome: outcome.into(),
        conclusion,
        queue_time: time("workflow_job.created_at", job.created_at.as_deref())?,
        start_time: started,
        finish_time: match status {
            JobStatus::Completed => time("workflow_job.completed_at", job.completed_at.as_deref())?,
            _ => None,
        },
        runner_type: RunnerType::GithubAction.into(),
        runner_name: job.runner_name.clone().unwrap_or_default(),
        runner_labels: job.labels.clone(),
        ..ReportJobRequest::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(action: &str, conclusion: Option<&str>) -> WorkflowRunEvent {
        serde_json::from_value(serde_json::json!({
            "action": action,
            "workflow_run": {
                "id": 30433642, "name": "", "path": ".github/workflows/ci.yml", "run_attempt": 2,
                "html_url": "https://github.com/o/r/actions/runs/30433642",
                "conclusion": conclusion,
                "created_at": "2020-01-22T19:33:08Z", "run_started_at": "2020-01-22T19:33:10Z",
                "updated_at": "2020-01-22T19:35:08Z"
            },
            "repository": {"full_name": "o/r", "default_branch": "main"}
        }))
        .expect("event")
    }

    #[test]
    fn runs_are_keyed_by_id_and_attempt_and_named_by_their_file_when_unnamed() {
        let Ok(Action::Start(start)) = run_action(&event("requested", None)) else {
            panic!("a start");
        };
        assert_eq!(start.workflow, ".github/workflows/ci.yml");
        assert_eq!(start.request_id, "github:30433642:2");
        assert_eq!(start.start_time.map(|t| t.seconds), Some(1_579_721_590));
        assert_eq!(start.default_branch, "main");
        // A re-run keeps the run's created_at: its attempt 2 was not queued then.
        assert_eq!(start.queue_time, None);
        let mut first = event("requested", None);
        first.workflow_run.run_attempt = Some(1);
        let Ok(Action::Start(start)) = run_action(&first) else {
            panic!("a start");
        };
        assert_eq!(start.queue_time.map(|t| t.seconds), Some(1_579_721_588));
        let Ok(Action::Report(report)) = run_action(&event("completed", Some("timed_out"))) else {
            panic!("a report");
        };
        assert_eq!(report.status(), RunStatus::Error);
        assert_eq!(report.reason, "GitHub conclusion: timed_out");
        assert_eq!(report.finish_time.map(|t| t.seconds), Some(1_579_721_708));
        assert!(matches!(
            run_action(&event("completed", Some("action_required"))),
            Ok(Action::Ignore(_))
        ));
    }

    #[test]
    fn every_conclusion_has_a_decided_outcome() {
        for (conclusion, status) in [
            ("success", RunStatus::Success),
            ("neutral", RunStatus::Success),
            ("failure", RunStatus::Error),
            ("timed_out", RunStatus::Error),
            ("startup_failure", RunStatus::Error),
            ("cancelled", RunStatus::Canceled),
            ("skipped", RunStatus::Canceled),
            ("stale", RunStatus::Canceled),
        ] {
            assert_eq!(
                outcome(conclusion).map(|o| o.0),
                Some(status),
                "{conclusion}"
            );
        }
        assert_eq!(outcome("action_required"), None);
        assert_eq!(outcome(""), None);
    }
}
