//! The run API as HTTP/JSON, for runners that cannot speak gRPC (a plain
//! `curl` in any CI, a corporate proxy that passes only HTTP/1.1):
//!
//! - `POST /v1/runs:start` with a `StartRunRequest`,
//! - `POST /v1/runs/{run_id}:finish` with a `FinishRunRequest`,
//! - `POST /v1/runs:report` with a `ReportRunRequest`,
//! - `POST /v1/deployments:record` with a `RecordDeploymentRequest`,
//!
//! bodies and answers in the proto3 JSON mapping of the same messages
//! (generated, see `runplane_api`), `Authorization: Bearer <token>`, and the
//! gRPC codes mapped to HTTP statuses ([`crate::error`]).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use runplane_api::workflowrun::v1::{
    FinishRunRequest, RecordDeploymentRequest, ReportRunRequest, StartRunRequest,
};
use runplane_client::with_bearer;
use serde::de::DeserializeOwned;

use crate::SharedState;
use crate::error::{IngestError, json};
use crate::upstream::WORKFLOW_RUN_SERVICE;

/// The most a JSON request may be: a run is small.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;

/// The caller's token, as workflow-run-service will check it.
fn bearer(headers: &HeaderMap) -> Result<String, IngestError> {
    let missing = || IngestError::Upstream {
        upstream: WORKFLOW_RUN_SERVICE,
        status: tonic::Status::unauthenticated(
            "missing credential: send `Authorization: Bearer <token>`",
        ),
    };
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(missing)?;
    runplane_auth::bearer_from_header(value)
        .map(str::to_owned)
        .ok_or_else(missing)
}

/// The body as message `T`, in the proto3 JSON mapping.
fn message<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
    what: &str,
) -> Result<T, IngestError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    if !json {
        return Err(IngestError::UnsupportedMediaType);
    }
    serde_json::from_slice(body).map_err(|e| {
        // serde names the field at fault; the input itself is not echoed
        // beyond what the message quotes of a field name.
        let detail = e.to_string();
        let detail: String = detail.chars().take(300).collect();
        IngestError::BadRequest(format!(
            "the body is not a {what} in JSON: {detail} (fields in lowerCamelCase, enums by \
             name such as RUN_STATUS_SUCCESS or DEPLOYMENT_STATUS_FAILURE, times in RFC 3339 \
             with a zone such as 2026-11-25T10:00:00Z)"
        ))
    })
}

fn answer<T: serde::Serialize>(
    result: Result<tonic::Response<T>, tonic::Status>,
) -> Result<Response, IngestError> {
    result
        .map(|r| json(StatusCode::OK, &r.into_inner()))
        .map_err(IngestError::upstream(WORKFLOW_RUN_SERVICE))
}

pub(crate) async fn start(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, IngestError> {
    let token = bearer(&headers)?;
    let request: StartRunRequest = message(&headers, &body, "StartRunRequest")?;
    answer(
        state
            .upstreams
            .runs()
            .start_run(with_bearer(request, &token))
            .await,
    )
}

pub(crate) async fn report(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, IngestError> {
    let token = bearer(&headers)?;
    let request: ReportRunRequest = message(&headers, &body, "ReportRunRequest")?;
    answer(
        state
            .upstreams
            .runs()
            .report_run(with_bearer(request, &token))
            .await,
    )
}

pub(crate) async fn record_deployment(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, IngestError> {
    let token = bearer(&headers)?;
    let request: RecordDeploymentRequest = message(&headers, &body, "RecordDeploymentRequest")?;
    answer(
        state
            .upstreams
            .runs()
            .record_deployment(with_bearer(request, &token))
            .await,
    )
}

/// `POST /v1/runs/{run_id}:finish`.
pub(crate) async fn run_method(
    State(state): State<SharedState>,
    Path(target): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, IngestError> {
    let Some(run_id) = target.strip_suffix(":finish") else {
        return Err(IngestError::Upstream {
            upstream: WORKFLOW_RUN_SERVICE,
            status: tonic::Status::not_found(
                "no such method: POST /v1/runs/{run_id}:finish, /v1/runs:start or /v1/runs:report",
            ),
        });
    };
    let token = bearer(&headers)?;
    let mut request: FinishRunRequest = message(&headers, &body, "FinishRunRequest")?;
    if !request.run_id.is_empty() && request.run_id != run_id {
        return Err(IngestError::BadRequest(
            "the body's runId differs from the URL's: leave it out".into(),
        ));
    }
    request.run_id = run_id.to_owned();
    answer(
        state
            .upstreams
            .runs()
            .finish_run(with_bearer(request, &token))
            .await,
    )
}
