//! What every webhook delivery goes through: its organization's secrets from
//! token-service, the provider's check of the delivery against each (in
//! constant time, before the body is parsed), limits on failing ones, and
//! the answer once it is handled.

use std::net::IpAddr;

use axum::http::StatusCode;
use axum::response::Response;
use runplane_api::token::v1::WebhookProvider;
use runplane_api::workflowrun::v1::{ReportJobRequest, ReportRunRequest, StartRunRequest};
use runplane_auth::secret::SecretHash;
use runplane_client::Failure;

use crate::State;
use crate::error::{IngestError, json};
use crate::upstream::{Org, WORKFLOW_RUN_SERVICE};

/// The most a delivery's body may be: GitHub's own cap.
pub(crate) const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;

/// Checks a delivery for organization `org`: `matches` says whether it is
/// genuine for one secret. A delivery that fails is counted against what it
/// presented (`presented`: its signature or token), never against others.
pub(crate) async fn verify(
    state: &State,
    provider: WebhookProvider,
    org: &str,
    presented: &str,
    client: Option<IpAddr>,
    matches: impl Fn(&str) -> bool,
) -> Result<Org, IngestError> {
    let label = match provider {
        WebhookProvider::Gitlab => "gitlab",
        _ => "github",
    };
    let unauthorized = || IngestError::Unauthorized {
        provider: label,
        org: runplane_api::input::quoted(org).to_string(),
    };
    let credential = SecretHash::of(&format!("{label}\n{org}\n{presented}"));
    state
        .failures
        .check(&credential)
        .map_err(IngestError::TooManyFailures)?;
    let verified = match runplane_api::org_name::validate(org) {
        Err(_) => None,
        Ok(()) => match state.upstreams.webhook_secrets(org, provider).await? {
            Some((org, secrets)) => secrets.iter().any(|s| matches(&s.secret)).then_some(org),
            None => None,
        },
    };
    match verified {
        Some(org) => Ok(org),
        None => {
            state
                .failures
                .record_failure(&credential, client)
                .map_err(IngestError::TooManyFailures)?;
            Err(unauthorized())
        }
    }
}

/// What a delivery asks of workflow-run-service.
#[derive(Debug)]
pub(crate) enum Action {
    Start(StartRunRequest),
    Report(ReportRunRequest),
    Job(ReportJobRequest),
    /// Nothing to record, and why (answered 202).
    Ignore(String),
}

/// Carries out `action` for `org` and answers the CI system.
pub(crate) async fn perform(
    state: &State,
    org: &Org,
    action: Action,
) -> Result<Response, IngestError> {
    let upstreams = &state.upstreams;
    let answer = match action {
        Action::Ignore(reason) => {
            return Ok(json(
                StatusCode::ACCEPTED,
                &serde_json::json!({"status": "ignored", "reason": reason}),
            ));
        }
        Action::Start(request) => upstreams
            .runs()
            .start_run(upstreams.for_org(request, org)?)
            .await
            .map(|r| {
                let run = r.into_inner().run.unwrap_or_default();
                serde_json::json!({"status": "recorded", "run_id": run.id, "run_status": run.status().label()})
            }),
        Action::Report(request) => upstreams
            .runs()
            .report_run(upstreams.for_org(request, org)?)
            .await
            .map(|r| {
                let r = r.into_inner();
                let run = r.run.unwrap_or_default();
                serde_json::json!({"status": "recorded", "run_id": run.id, "run_status": run.status().label(), "counted": r.counted})
            }),
        Action::Job(request) => upstreams
            .runs()
            .report_job(upstreams.for_org(request, org)?)
            .await
            .map(|r| {
                let job = r.into_inner().job.unwrap_or_default();
                serde_json::json!({"status": "recorded", "job_id": job.id})
            }),
    };
    match answer {
        Ok(body) => Ok(json(StatusCode::OK, &body)),
        // A run that already finished otherwise (a pipeline retried after it
        // failed): nothing to record, and not the CI system's fault.
        Err(status) if status.code() == tonic::Code::FailedPrecondition => Ok(json(
            StatusCode::ACCEPTED,
            &serde_json::json!({"status": "ignored", "reason": status.message()}),
        )),
        Err(status) if runplane_client::classify(&status) == Failure::Rejected => {
            Err(IngestError::BadRequest(format!(
                "the delivery's content was refused: {}",
                status.message()
            )))
        }
        Err(status) => Err(IngestError::upstream(WORKFLOW_RUN_SERVICE)(status)),
    }
}

/// A time from a payload, or a clear error naming the field.
pub(crate) fn time(
    field: &str,
    text: Option<&str>,
) -> Result<Option<runplane_api::time::Timestamp>, IngestError> {
    match text.filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(text) => runplane_api::time::parse_rfc3339(text)
            .map(Some)
            .ok_or_else(|| {
                IngestError::BadRequest(format!(
                    "{field} is not a time: {}",
                    runplane_api::input::quoted(text)
                ))
            }),
    }
}

/// A payload parsed, or a 400 that says what is wrong with it (never its content).
pub(crate) fn parse<'a, T: serde::Deserialize<'a>>(
    event: &str,
    body: &'a [u8],
) -> Result<T, IngestError> {
    serde_json::from_slice(body).map_err(|e| {
        IngestError::BadRequest(format!(
            "not a {event} payload in JSON (line {}, column {}: {})",
            e.line(),
            e.column(),
            match e.classify() {
                serde_json::error::Category::Data => "a field is missing or of the wrong type",
                serde_json::error::Category::Syntax => "invalid JSON",
                serde_json::error::Category::Eof => "the body ends early",
                serde_json::error::Category::Io => "unreadable",
            }
        ))
    })
}
