//! `POST /hooks/gitlab/{org}`: GitLab's webhook deliveries.
//!
//! `Pipeline Hook` events become runs, keyed `gitlab:<pipeline id>`; `Job
//! Hook` events become jobs (`gitlab-job:<job id>`); `Deployment Hook`
//! events that end a deployment become deployments
//! (`gitlab-deployment:<id>`). Every other event is accepted and ignored
//! (202). Statuses and names: docs/webhooks.md and docs/dora.md.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use runplane_api::time::{Timestamp, from_timestamp, timestamp};
use runplane_api::token::v1::WebhookProvider;
use runplane_api::workflowrun::v1::{
    DeploymentStatus, JobStatus, RecordDeploymentRequest, ReportJobRequest, ReportRunRequest,
    RunStatus, RunnerType, StartRunRequest,
};
use runplane_server::http::PeerAddr;
use serde::Deserialize;

use crate::error::IngestError;
use crate::webhook::{self, Action, time};

/// The workflow a pipeline without a name is reported under: the file that
/// defines it, as GitHub's unnamed runs are named after theirs.
pub(crate) const UNNAMED_PIPELINE: &str = ".gitlab-ci.yml";

#[derive(Debug, Deserialize)]
struct Project {
    path_with_namespace: String,
    #[serde(default)]
    default_branch: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PipelineEvent {
    object_attributes: Pipeline,
    project: Project,
    #[serde(default)]
    commit: Option<Commit>,
}

#[derive(Debug, Deserialize)]
struct Commit {
    #[serde(default)]
    timestamp: Option<String>,
}

#[derive(Debug, Deserialize)]
struct DeploymentEvent {
    status: String,
    deployment_id: u64,
    environment: String,
    #[serde(default)]
    status_changed_at: Option<String>,
    #[serde(default)]
    deployable_url: Option<String>,
    /// `…/-/commit/<sha>`: the only place the whole commit id is.
    #[serde(default)]
    commit_url: Option<String>,
    project: Project,
}

#[derive(Debug, Deserialize)]
struct Pipeline {
    id: u64,
    #[serde(default)]
    name: Option<String>,
    status: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    finished_at: Option<String>,
    /// Seconds it ran.
    #[serde(default)]
    duration: Option<f64>,
    /// Seconds it waited for a runner.
    #[serde(default)]
    queued_duration: Option<f64>,
    #[serde(default, rename = "ref")]
    git_ref: Option<String>,
    #[serde(default)]
    sha: Option<String>,
    #[serde(default)]
    source: Option<String>,
}

#[derive(Debug, Deserialize)]
struct JobEvent {
    build_id: u64,
    build_name: String,
    build_status: String,
    #[serde(default)]
    build_created_at: Option<String>,
    #[serde(default)]
    build_started_at: Option<String>,
    #[serde(default)]
    build_finished_at: Option<String>,
    pipeline_id: u64,
    #[serde(default)]
    runner: Option<Runner>,
    project: Project,
}

#[derive(Debug, Deserialize)]
struct Runner {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
}

/// Serves one delivery, counted.
pub(crate) async fn handle(
    state: State<crate::SharedState>,
    org: Path<String>,
    peer: Option<Extension<PeerAddr>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, IngestError> {
    let event = webhook::header(&headers, "x-gitlab-event").to_owned();
    let result = deliver(state, org, peer, headers, body).await;
    webhook::count("gitlab", &event, &result);
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
    let token = header("x-gitlab-token");
    let peer = peer.map(|Extension(addr)| addr);
    let delivery = webhook::Delivery::of_request(
        &state,
        WebhookProvider::Gitlab,
        &org,
        &headers,
        "x-gitlab-token",
        peer,
        body,
    );
    let (org, body) = webhook::verify(&state, delivery, |secret, _| {
        runplane_auth::webhook::gitlab_token_matches(secret, token)
    })
    .await?;
    let action = match header("x-gitlab-event") {
        "Pipeline Hook" => pipeline_action(&webhook::parse("Pipeline Hook", &body)?)?,
        "Job Hook" => job_action(&webhook::parse("Job Hook", &body)?)?,
        "Deployment Hook" => deployment_action(&webhook::parse("Deployment Hook", &body)?)?,
        "" => {
            return Err(IngestError::BadRequest(
                "no X-Gitlab-Event header: is this a GitLab webhook delivery?".into(),
            ));
        }
        other => Action::Ignore(format!(
            "{} events are not recorded: enable Pipeline events, Job events and Deployment events",
            runplane_api::input::quoted(other)
        )),
    };
    webhook::perform(&state, &org, action).await
}

fn plus_seconds(at: Timestamp, seconds: f64) -> Timestamp {
    timestamp(from_timestamp(&at).saturating_add((seconds * 1000.0).round() as i64))
}

/// What a `Pipeline Hook` event records.
fn pipeline_action(event: &PipelineEvent) -> Result<Action, IngestError> {
    let pipeline = &event.object_attributes;
    let workflow = pipeline
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or(UNNAMED_PIPELINE)
        .to_owned();
    let created = time(
        "object_attributes.created_at",
        pipeline.created_at.as_deref(),
    )?;
    // GitLab sends no start time: it is the creation plus the time queued.
    let started_after_queue = match (created, pipeline.queued_duration) {
        (Some(at), Some(queued)) if queued >= 0.0 => Some(plus_seconds(at, queued)),
        (at, _) => at,
    };
    let request_id = format!("gitlab:{}", pipeline.id);
    let run_url = pipeline.url.clone().unwrap_or_default();
    let project = event.project.path_with_namespace.clone();
    let runner_type = RunnerType::GitlabPipeline.into();
    let branch = pipeline.git_ref.clone().unwrap_or_default();
    let commit_sha = pipeline.sha.clone().unwrap_or_default();
    let trigger = pipeline.source.clone().unwrap_or_default();
    let default_branch = event.project.default_branch.clone().unwrap_or_default();
    let commit_time = time(
        "commit.timestamp",
        event.commit.as_ref().and_then(|c| c.timestamp.as_deref()),
    )?
    .filter(|_| !commit_sha.is_empty());
    let (status, reason) = match pipeline.status.as_str() {
        "running" => {
            return Ok(Action::Start(StartRunRequest {
                workflow,
                project,
                runner_type,
                run_url,
                request_id,
                start_time: started_after_queue,
                queue_time: created,
                branch,
                commit_sha,
                trigger,
                default_branch,
                commit_time,
                ..StartRunRequest::default()
            }));
        }
        "success" => (RunStatus::Success, String::new()),
        "failed" => (RunStatus::Error, String::new()),
        "canceled" | "cancelled" => (RunStatus::Canceled, String::new()),
        "skipped" => (RunStatus::Canceled, "GitLab status: skipped".to_owned()),
        other => {
            return Ok(Action::Ignore(format!(
                "pipeline status {} is not recorded: a run is counted from `running` on",
                runplane_api::input::quoted(other)
            )));
        }
    };
    // The start is the same whichever deliveries arrive: the creation plus
    // the time queued, as `running` says it. Only without a creation time is
    // it counted back from the end by GitLab's `duration` (which leaves out
    // pending and manual waits).
    let end = time(
        "object_attributes.finished_at",
        pipeline.finished_at.as_deref(),
    )?;
    let by_duration = |at: Timestamp| match pipeline.duration {
        Some(seconds) if seconds >= 0.0 => Some(plus_seconds(at, seconds)),
        _ => None,
    };
    let (started, finished) = match (started_after_queue, end) {
        (Some(start), Some(end)) => (start, end),
        (Some(start), None) => match by_duration(start) {
            Some(end) => (start, end),
            None => return Err(missing_finish()),
        },
        (None, Some(end)) => match pipeline.duration {
            Some(seconds) if seconds >= 0.0 => (plus_seconds(end, -seconds), end),
            _ => (end, end),
        },
        (None, None) => return Err(missing_finish()),
    };
    // A start after the end (clocks, rounding) would be refused: the end bounds it.
    let started = if from_timestamp(&started) > from_timestamp(&finished) {
        finished
    } else {
        started
    };
    let queue_time = created.filter(|at| from_timestamp(at) <= from_timestamp(&started));
    Ok(Action::Report(ReportRunRequest {
        workflow,
        project,
        runner_type,
        run_url,
        request_id,
        queue_time,
        start_time: Some(started),
        finish_time: Some(finished),
        status: status.into(),
        reason,
        branch,
        commit_sha,
        trigger,
        default_branch,
        commit_time,
        ..ReportRunRequest::default()
    }))
}

/// What a `Deployment Hook` event records: a deployment, once it ends
/// (`success`, `failed`); the commit's time is the one its pipeline's
/// `Pipeline Hook` reported (GitLab's deployment payload has none).
fn deployment_action(event: &DeploymentEvent) -> Result<Action, IngestError> {
    let status = match event.status.as_str() {
        "success" => DeploymentStatus::Success,
        "failed" => DeploymentStatus::Failure,
        other => {
            return Ok(Action::Ignore(format!(
                "deployment status {} does not end the deployment",
                runplane_api::input::quoted(other)
            )));
        }
    };
    let commit_sha = event
        .commit_url
        .as_deref()
        .map(|url| url.split(['?', '#']).next().unwrap_or(url))
        .and_then(|url| url.rsplit_once("/commit/"))
        .map(|(_, sha)| sha.trim_end_matches('/').to_owned())
        .filter(|sha| !sha.is_empty())
        .ok_or_else(|| {
            IngestError::BadRequest(
                "the deployment's commit_url does not name its commit (…/-/commit/<sha>)".into(),
            )
        })?;
    let url = event
        .deployable_url
        .clone()
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
        .unwrap_or_default();
    Ok(Action::Deploy(RecordDeploymentRequest {
        project: event.project.path_with_namespace.clone(),
        environment: event.environment.clone(),
        commit_sha,
        finish_time: time("status_changed_at", event.status_changed_at.as_deref())?,
        status: status.into(),
        request_id: format!("gitlab-deployment:{}", event.deployment_id),
        url,
        ..RecordDeploymentRequest::default()
    }))
}

fn missing_finish() -> IngestError {
    IngestError::BadRequest(
        "a finished pipeline without object_attributes.finished_at, created_at or duration: \
         its times cannot be known"
            .into(),
    )
}

/// What a `Job Hook` event records.
fn job_action(event: &JobEvent) -> Result<Action, IngestError> {
    let (status, outcome) = match event.build_status.as_str() {
        "created" | "pending" | "waiting_for_resource" | "preparing" | "scheduled" => {
            (JobStatus::Queued, RunStatus::Unspecified)
        }
        "running" => (JobStatus::InProgress, RunStatus::Unspecified),
        "success" => (JobStatus::Completed, RunStatus::Success),
        "failed" => (JobStatus::Completed, RunStatus::Error),
        "canceled" | "cancelled" | "skipped" => (JobStatus::Completed, RunStatus::Canceled),
        other => {
            return Ok(Action::Ignore(format!(
                "job status {} is not recorded",
                runplane_api::input::quoted(other)
            )));
        }
    };
    let runner = event.runner.as_ref();
    Ok(Action::Job(ReportJobRequest {
        project: event.project.path_with_namespace.clone(),
        workflow: String::new(),
        run_request_id: format!("gitlab:{}", event.pipeline_id),
        job_key: format!("gitlab-job:{}", event.build_id),
        name: event.build_name.clone(),
        status: status.into(),
        outcome: outcome.into(),
        conclusion: event.build_status.clone(),
        queue_time: time("build_created_at", event.build_created_at.as_deref())?,
        start_time: time("build_started_at", event.build_started_at.as_deref())?,
        finish_time: match status {
            JobStatus::Completed => time("build_finished_at", event.build_finished_at.as_deref())?,
            _ => None,
        },
        runner_type: RunnerType::GitlabPipeline.into(),
        runner_name: runner
            .and_then(|r| r.description.clone())
            .unwrap_or_default(),
        runner_labels: runner.map(|r| r.tags.clone()).unwrap_or_default(),
        ..ReportJobRequest::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(status: &str, name: Option<&str>) -> PipelineEvent {
        serde_json::from_value(serde_json::json!({
            "object_kind": "pipeline",
            "object_attributes": {
                "id": 31, "name": name, "status": status,
                "created_at": "2016-08-12 15:23:28 UTC", "finished_at": "2016-08-12 15:26:29 UTC",
                "duration": 63, "queued_duration": 12
            },
            "project": {"path_with_namespace": "gitlab-org/gitlab-test"}
        }))
        .expect("event")
    }

    #[test]
    fn pipelines_take_their_times_from_the_payload() {
        let Ok(Action::Report(report)) = pipeline_action(&pipeline("failed", None)) else {
            panic!("a report");
        };
        assert_eq!(report.workflow, UNNAMED_PIPELINE);
        assert_eq!(report.request_id, "gitlab:31");
        assert_eq!(report.status(), RunStatus::Error);
        let seconds = |t: Option<Timestamp>| t.map(|t| t.seconds).unwrap_or_default();
        // From the end of its queue (created + 12 s) to finished_at, as the
        // `running` delivery would have started it.
        assert_eq!(
            seconds(report.finish_time) - seconds(report.start_time),
            169
        );
        assert_eq!(seconds(report.finish_time), 1_471_015_589);
        let Ok(Action::Start(start)) = pipeline_action(&pipeline("running", Some("nightly")))
        else {
            panic!("a start");
        };
        assert_eq!(start.workflow, "nightly");
        assert_eq!(seconds(start.start_time) - seconds(start.queue_time), 12);
        // Without a creation time, the duration counts back from the end;
        // without an end, forward from the start.
        let mut no_created = pipeline("success", None);
        no_created.object_attributes.created_at = None;
        let Ok(Action::Report(report)) = pipeline_action(&no_created) else {
            panic!("a report");
        };
        assert_eq!(seconds(report.finish_time) - seconds(report.start_time), 63);
        let mut no_end = pipeline("success", None);
        no_end.object_attributes.finished_at = None;
        let Ok(Action::Report(report)) = pipeline_action(&no_end) else {
            panic!("a report");
        };
        assert_eq!(seconds(report.finish_time) - seconds(report.start_time), 63);
        no_end.object_attributes.duration = None;
        assert!(pipeline_action(&no_end).is_err());
        for waiting in ["created", "pending", "manual", "scheduled"] {
            assert!(matches!(
                pipeline_action(&pipeline(waiting, None)),
                Ok(Action::Ignore(_))
            ));
        }
    }
}
