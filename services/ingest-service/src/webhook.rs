//! What every webhook delivery goes through: its organization's secrets from
//! token-service (remembered for `webhook_secret_cache_ttl`), the provider's
//! check of the delivery against each (in constant time, before the body is
//! parsed), limits on failing ones, and the answer once it is handled.

use std::net::IpAddr;

use axum::http::StatusCode;
use axum::response::Response;
use runplane_api::token::v1::WebhookProvider;
use runplane_api::workflowrun::v1::{
    RecordDeploymentRequest, ReportJobRequest, ReportRunRequest, StartRunRequest,
};
use runplane_auth::secret::SecretHash;
use runplane_client::Failure;

use crate::State;
use crate::error::{IngestError, json};
use crate::upstream::{Freshness, Org, Secrets, WORKFLOW_RUN_SERVICE};

/// Deliveries by provider, event and what became of them: ingest-service's
/// own metric (no tenant names).
fn deliveries() -> &'static prometheus::IntCounterVec {
    static DELIVERIES: std::sync::OnceLock<prometheus::IntCounterVec> = std::sync::OnceLock::new();
    DELIVERIES.get_or_init(|| {
        runplane_telemetry::metrics::int_counter_vec(
            "runplane_webhook_deliveries_total",
            "Webhook deliveries, by provider, event (workflow_run, workflow_job, pipeline, job, \
             ping, other) and outcome (recorded, ignored, refused: not verified or not valid, \
             failed: runplane could not record it).",
            &["provider", "event", "outcome"],
        )
    })
}

/// Counts a delivery's outcome.
pub(crate) fn count(provider: &str, event: &str, result: &Result<Response, IngestError>) {
    let event = match event {
        "workflow_run" | "workflow_job" | "ping" => event,
        "Pipeline Hook" => "pipeline",
        "Job Hook" => "job",
        _ => "other",
    };
    let outcome = match result {
        Ok(r) if r.status() == StatusCode::ACCEPTED => "ignored",
        Ok(_) => "recorded",
        Err(IngestError::Upstream { status, .. })
            if matches!(
                runplane_client::classify(status),
                Failure::Unavailable { .. } | Failure::Internal
            ) =>
        {
            "failed"
        }
        Err(_) => "refused",
    };
    deliveries()
        .with_label_values(&[provider, event, outcome])
        .inc();
}

/// The most a delivery's body may be: GitHub's own cap.
pub(crate) const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;

/// A delivery as it arrived, before anything of it is trusted.
pub(crate) struct Delivery<'a> {
    pub(crate) provider: WebhookProvider,
    /// The organization its URL names.
    pub(crate) org: &'a str,
    /// Its signature (GitHub) or token (GitLab).
    pub(crate) presented: &'a str,
    pub(crate) client: Option<IpAddr>,
    pub(crate) body: axum::body::Body,
    pub(crate) content_length: Option<u64>,
}

/// How much of delivery bodies may be held in memory at once, in MiB: 25 MB
/// bodies times the concurrency limit would be gigabytes.
pub(crate) const BODY_BUDGET_MIB: u32 = 100;
/// How long a delivery waits for room in that budget before it is told to
/// come back (503).
const BODY_BUDGET_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Checks a delivery for organization `org`, and reads its body: `matches`
/// says whether it is genuine for one secret. Nothing is read of a delivery
/// that cannot be genuine (no secret presented, an organization without a
/// live webhook of the provider), and bodies are read within
/// [`BODY_BUDGET_MIB`]. A delivery that fails is counted against what it
/// presented (`presented`: its signature or token), never against others.
pub(crate) async fn verify(
    state: &State,
    delivery: Delivery<'_>,
    matches: impl Fn(&str, &[u8]) -> bool,
) -> Result<(Org, bytes::Bytes), IngestError> {
    let Delivery {
        provider,
        org,
        presented,
        client,
        body,
        content_length,
    } = delivery;
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
    let secrets = |freshness| state.upstreams.webhook_secrets(org, provider, freshness);
    let found = match runplane_api::org_name::validate(org) {
        Ok(()) if !presented.is_empty() => secrets(Freshness::Remembered).await?,
        _ => None,
    };
    let refuse = || {
        state
            .failures
            .record_failure(&credential, client)
            .map_err(IngestError::TooManyFailures)
            .and_then(|()| Err(unauthorized()))
    };
    let Some((found, freshness)) = found.filter(|(found, _)| !found.secrets.is_empty()) else {
        return refuse();
    };
    let body = read_body(state, body, content_length).await?;
    let genuine = |found: &Secrets| found.secrets.iter().any(|s| matches(&s.secret, &body));
    if genuine(&found) {
        return Ok((found.org.clone(), body));
    }
    // Remembered secrets may predate a webhook created since: ask once more.
    if freshness == Freshness::Remembered
        && let Some((fresh, _)) = secrets(Freshness::Fresh).await?
        && genuine(&fresh)
    {
        return Ok((fresh.org.clone(), body));
    }
    refuse()
}

/// A header's value as text; empty when it is absent or not text.
pub(crate) fn header<'h>(headers: &'h axum::http::HeaderMap, name: &str) -> &'h str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

impl<'a> Delivery<'a> {
    /// A delivery as its request brought it: for organization `org`,
    /// presenting what its `presented_header` holds (signature or token).
    pub(crate) fn of_request(
        state: &State,
        provider: WebhookProvider,
        org: &'a str,
        headers: &'a axum::http::HeaderMap,
        presented_header: &str,
        peer: Option<runplane_server::http::PeerAddr>,
        body: axum::body::Body,
    ) -> Self {
        Delivery {
            provider,
            org,
            presented: header(headers, presented_header),
            client: runplane_server::http::client_ip(
                state.client_address_header.as_ref(),
                headers,
                peer.map(|runplane_server::http::PeerAddr(addr)| addr.ip()),
            ),
            body,
            content_length: content_length(headers),
        }
    }
}

/// The `Content-Length` a request declares, if any.
fn content_length(headers: &axum::http::HeaderMap) -> Option<u64> {
    headers
        .get(axum::http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// A delivery's body, read while holding its share of the memory budget.
async fn read_body(
    state: &State,
    body: axum::body::Body,
    content_length: Option<u64>,
) -> Result<bytes::Bytes, IngestError> {
    const MIB: u64 = 1024 * 1024;
    let max = MAX_BODY_BYTES as u64;
    if content_length.is_some_and(|n| n > max) {
        return Err(IngestError::BodyTooLarge);
    }
    let mib = content_length.unwrap_or(max).min(max).div_ceil(MIB).max(1);
    let permits = u32::try_from(mib).unwrap_or(BODY_BUDGET_MIB);
    let _held = tokio::time::timeout(BODY_BUDGET_WAIT, state.body_budget.acquire_many(permits))
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| IngestError::Busy("too many large deliveries at once".into()))?;
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| IngestError::BodyTooLarge)
}

/// What a delivery asks of workflow-run-service.
#[derive(Debug)]
pub(crate) enum Action {
    Start(StartRunRequest),
    Report(ReportRunRequest),
    Job(ReportJobRequest),
    Deploy(RecordDeploymentRequest),
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
            .report_job(upstreams.for_org(fit_job(request), org)?)
            .await
            .map(|r| {
                let job = r.into_inner().job.unwrap_or_default();
                serde_json::json!({"status": "recorded", "job_id": job.id})
            }),
        Action::Deploy(request) => upstreams
            .runs()
            .record_deployment(upstreams.for_org(request, org)?)
            .await
            .map(|r| {
                let r = r.into_inner();
                let deployment = r.deployment.unwrap_or_default();
                serde_json::json!({"status": "recorded", "deployment_id": deployment.id, "counted": r.counted})
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

/// A CI system's job as the run API takes it: what only describes the job
/// (its name, conclusion, runner, labels) cut to the API's limits rather than
/// refused, so that a delivery is never lost over it (the CI system would not
/// send it again). Names are cut on a character boundary.
fn fit_job(mut job: ReportJobRequest) -> ReportJobRequest {
    fn cut(text: &mut String, chars: usize) {
        if let Some((at, _)) = text.char_indices().nth(chars) {
            text.truncate(at);
        }
    }
    cut(&mut job.name, 200);
    cut(&mut job.conclusion, 100);
    cut(&mut job.runner_name, 200);
    job.runner_labels.truncate(50);
    for label in &mut job.runner_labels {
        label.retain(|c| c != '\n');
        cut(label, 200);
    }
    job
}

#[cfg(test)]
mod fitting {
    use super::*;

    #[test]
    fn a_jobs_descriptions_are_cut_to_the_apis_limits() {
        let job = fit_job(ReportJobRequest {
            name: "é".repeat(300),
            conclusion: "x".repeat(150),
            runner_labels: (0..60)
                .map(|i| format!("label-{i}\n{}", "y".repeat(250)))
                .collect(),
            ..ReportJobRequest::default()
        });
        assert_eq!(job.name.chars().count(), 200);
        assert_eq!(job.conclusion.len(), 100);
        assert_eq!(job.runner_labels.len(), 50);
        assert!(
            job.runner_labels
                .iter()
                .all(|l| l.chars().count() == 200 && !l.contains('\n'))
        );
    }
}
