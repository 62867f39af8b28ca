//! ingest-service's errors, and the one place they become HTTP answers: the
//! gRPC codes of the run API mapped to HTTP statuses as Google's APIs map
//! them, with a body in Google's JSON error form:
//! `{"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "…"}}`.
//! An upstream that cannot be reached is 503 with `Retry-After`.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use runplane_auth::failures::TooManyFailures;
use runplane_client::Failure;
use tonic::Code;

/// When a client is asked to come back after an outage that gave no time.
const OUTAGE_RETRY_AFTER: Duration = Duration::from_secs(5);

/// Why a request is refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IngestError {
    /// A bad or missing signature, an unknown organization and a revoked
    /// secret look the same from outside.
    #[error(
        "the delivery's signature does not match a live {provider} webhook of organization {org} \
         (check the secret and the URL: `runplane organization webhook list --org ORG`)"
    )]
    Unauthorized { provider: &'static str, org: String },
    #[error("{0}")]
    BadRequest(String),
    #[error("send the body as JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error(transparent)]
    TooManyFailures(TooManyFailures),
    #[error("the body is larger than 25 MB, or ended early")]
    BodyTooLarge,
    /// Shed: come back shortly.
    #[error("{0}; try again")]
    Busy(String),
    /// A callee's answer: its code and message pass through.
    #[error("{}", .status.message())]
    Upstream {
        upstream: &'static str,
        status: tonic::Status,
    },
}

impl IngestError {
    pub(crate) fn upstream(upstream: &'static str) -> impl Fn(tonic::Status) -> IngestError {
        move |status| IngestError::Upstream { upstream, status }
    }

    fn code(&self) -> Code {
        match self {
            IngestError::Unauthorized { .. } => Code::Unauthenticated,
            IngestError::BadRequest(_) | IngestError::UnsupportedMediaType => Code::InvalidArgument,
            IngestError::TooManyFailures(_) => Code::ResourceExhausted,
            IngestError::BodyTooLarge => Code::OutOfRange,
            IngestError::Busy(_) => Code::Unavailable,
            IngestError::Upstream { status, .. } => match runplane_client::classify(status) {
                Failure::Unavailable { .. } => Code::Unavailable,
                _ => status.code(),
            },
        }
    }
}

/// The HTTP status Google's APIs answer a gRPC code with.
pub(crate) fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::Aborted | Code::AlreadyExists => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A code's name as Google's JSON errors spell it.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// `value` as a JSON answer with `status`.
pub(crate) fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode an answer as JSON");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Google's JSON error form.
fn error_body(status: StatusCode, code: Code, message: &str) -> Response {
    let body = serde_json::json!({
        "error": {"code": status.as_u16(), "status": code_name(code), "message": message}
    });
    json(status, &body)
}

/// Middleware: answers the HTTP layer made itself (no such path, wrong
/// method, a body over a route's limit, a timeout) in the same JSON form as
/// the handlers' own.
pub(crate) async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (code, message) = match status {
        StatusCode::NOT_FOUND => (
            Code::NotFound,
            "no such path: webhooks are POST /hooks/github/{org} and /hooks/gitlab/{org}; the \
             JSON API is POST /v1/runs:start, /v1/runs/{run_id}:finish, /v1/runs:report and \
             /v1/deployments:record",
        ),
        StatusCode::METHOD_NOT_ALLOWED => (Code::Unimplemented, "method not allowed: use POST"),
        StatusCode::PAYLOAD_TOO_LARGE => (
            Code::OutOfRange,
            "the body is too large: at most 25 MB for a webhook delivery, 64 KiB for the JSON API",
        ),
        StatusCode::SERVICE_UNAVAILABLE => (Code::Unavailable, "busy or shutting down; try again"),
        _ => (Code::Unknown, "the request could not be served"),
    };
    let retry_after = response.headers().get(header::RETRY_AFTER).cloned();
    let mut answer = error_body(status, code, message);
    if let Some(retry_after) = retry_after {
        answer
            .headers_mut()
            .insert(header::RETRY_AFTER, retry_after);
    }
    answer
}

/// A `Retry-After` value: whole seconds, rounded up, at least one.
fn seconds(wait: Duration) -> HeaderValue {
    HeaderValue::from(wait.as_millis().div_ceil(1000).max(1) as u64)
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let code = self.code();
        let status = match self {
            IngestError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            IngestError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => http_status(code),
        };
        let message = match (&self, code) {
            (IngestError::Upstream { upstream, status }, Code::Unavailable) => {
                tracing::warn!(upstream, detail = %status.message(), "upstream unavailable");
                format!("{upstream} is unavailable; try again")
            }
            (
                IngestError::Upstream { upstream, status },
                Code::Internal | Code::Unknown | Code::DataLoss,
            ) => {
                tracing::error!(upstream, detail = %status.message(), "unexpected upstream answer");
                format!("{upstream} failed (logged on the server)")
            }
            _ => self.to_string(),
        };
        if !matches!(self, IngestError::Upstream { .. }) {
            // Why, for the operator (never a payload: messages quote at most a
            // short prefix of any input).
            tracing::info!(status = status.as_u16(), reason = %message, "refused");
        }
        let mut response = error_body(status, code, &message);
        let retry_after = match &self {
            IngestError::TooManyFailures(e) => Some(e.retry_after),
            IngestError::Busy(_) => Some(OUTAGE_RETRY_AFTER),
            IngestError::Upstream { status, .. } => match runplane_client::classify(status) {
                Failure::Unavailable { retry_after } => {
                    Some(retry_after.unwrap_or(OUTAGE_RETRY_AFTER))
                }
                _ => None,
            },
            _ => None,
        };
        if let Some(wait) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, seconds(wait));
        }
        if matches!(code, Code::Unauthenticated) {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"runplane\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_as_googles_apis_map_them() {
        assert_eq!(http_status(Code::InvalidArgument), StatusCode::BAD_REQUEST);
        assert_eq!(http_status(Code::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(http_status(Code::Unauthenticated), StatusCode::UNAUTHORIZED);
        assert_eq!(
            http_status(Code::ResourceExhausted),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            http_status(Code::Unavailable),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let outage = IngestError::Upstream {
            upstream: "workflow-run-service",
            status: tonic::Status::unavailable("connection refused"),
        }
        .into_response();
        assert_eq!(outage.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(outage.headers().contains_key(header::RETRY_AFTER));
    }
}
