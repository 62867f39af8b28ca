//! metrics-service's own metrics (`GET /metrics`, unauthenticated): its HTTP
//! requests by route and status, for operators rather than for tenants.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{Encoder as _, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// The service's own registry and instruments.
#[derive(Clone)]
pub struct OwnMetrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
}

impl OwnMetrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "runplane_http_requests_total",
                "HTTP requests served, by route and status code.",
            ),
            &["route", "code"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "runplane_http_request_duration_seconds",
                "Time to serve an HTTP request, by route.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["route"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        Ok(OwnMetrics {
            registry,
            requests,
            latency,
        })
    }

    /// The text exposition of the service's own metrics.
    pub fn render(&self) -> Response {
        let mut body = Vec::new();
        match prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut body) {
            Ok(()) => (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(crate::exposition::Format::Text.content_type()),
                )],
                body,
            )
                .into_response(),
            Err(e) => {
                tracing::error!(error = %e, "cannot encode own metrics");
                axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }
}

/// Middleware: counts and times every request by its route template (never by
/// the concrete path, whose organization names would explode cardinality).
pub async fn track(State(metrics): State<OwnMetrics>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    metrics
        .latency
        .with_label_values(&[route.as_str()])
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .with_label_values(&[route.as_str(), response.status().as_str()])
        .inc();
    response
}
