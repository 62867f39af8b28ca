//! metrics-service's errors, and the one place a refused scrape gets its HTTP
//! status. (The server's own answers are decided where they happen: 503 when
//! shed, past the request timeout or draining, 413 and 431 for oversized
//! requests.)

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// When a scraper is asked to come back after an upstream outage that gave no
/// time of its own.
const OUTAGE_RETRY_AFTER: Duration = Duration::from_secs(5);

/// A `Retry-After` value: whole seconds, rounded up, at least one.
fn seconds(wait: Duration) -> HeaderValue {
    HeaderValue::from(wait.as_millis().div_ceil(1000).max(1) as u64)
}

/// Why a scrape is refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ScrapeError {
    #[error("missing bearer token: send `Authorization: Bearer <token>`")]
    MissingToken,
    #[error("only Bearer tokens are accepted: send `Authorization: Bearer <token>`")]
    NotBearer,
    #[error("invalid, expired or revoked token")]
    InvalidToken,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error(transparent)]
    TooManyFailures(runplane_auth::failures::TooManyFailures),
    #[error(
        "Prometheus metrics are not enabled for organization {}",
        runplane_api::input::quoted(.0)
    )]
    NotEnabled(String),
    #[error("{upstream} is unavailable; try again")]
    Unavailable {
        upstream: &'static str,
        detail: String,
        /// When the upstream asked to be tried again, if it said (shed).
        retry_after: Option<Duration>,
    },
    #[error("{upstream} answered unexpectedly")]
    Upstream {
        upstream: &'static str,
        detail: String,
    },
    #[error("the exposition could not be written")]
    Internal(String),
}

impl IntoResponse for ScrapeError {
    fn into_response(self) -> Response {
        let status = match &self {
            ScrapeError::MissingToken | ScrapeError::NotBearer | ScrapeError::InvalidToken => {
                StatusCode::UNAUTHORIZED
            }
            ScrapeError::Forbidden(_) => StatusCode::FORBIDDEN,
            ScrapeError::NotEnabled(_) => StatusCode::NOT_FOUND,
            ScrapeError::TooManyFailures(_) => StatusCode::TOO_MANY_REQUESTS,
            ScrapeError::Unavailable {
                upstream, detail, ..
            } => {
                tracing::warn!(upstream, %detail, "scrape failed: upstream unavailable");
                StatusCode::SERVICE_UNAVAILABLE
            }
            ScrapeError::Upstream { upstream, detail } => {
                tracing::error!(upstream, %detail, "scrape failed: unexpected upstream answer");
                StatusCode::BAD_GATEWAY
            }
            ScrapeError::Internal(detail) => {
                tracing::error!(%detail, "scrape failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let mut response = (status, format!("{self}\n")).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        match self {
            ScrapeError::MissingToken | ScrapeError::NotBearer => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"runplane\""),
                );
            }
            ScrapeError::InvalidToken => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"runplane\", error=\"invalid_token\""),
                );
            }
            ScrapeError::TooManyFailures(e) => {
                headers.insert(header::RETRY_AFTER, seconds(e.retry_after));
            }
            ScrapeError::Unavailable { retry_after, .. } => {
                headers.insert(
                    header::RETRY_AFTER,
                    seconds(retry_after.unwrap_or(OUTAGE_RETRY_AFTER)),
                );
            }
            _ => {}
        }
        response
    }
}
