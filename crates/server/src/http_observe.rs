//! An HTTP service's own telemetry, for operators rather than tenants: every
//! request measured (by route template and status), traced (joining the
//! caller's trace when it sends `traceparent`) and logged once; `GET /metrics`
//! serves these with the process-wide ones (outgoing gRPC calls, process);
//! `/healthz` and `/readyz` are the probes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus::{HistogramVec, IntCounterVec};
use runplane_telemetry::metrics;
use tracing::Instrument as _;

struct HttpMetrics {
    requests: IntCounterVec,
    latency: HistogramVec,
}

fn http_metrics() -> &'static HttpMetrics {
    static METRICS: OnceLock<HttpMetrics> = OnceLock::new();
    METRICS.get_or_init(|| HttpMetrics {
        requests: metrics::int_counter_vec(
            "runplane_http_requests_total",
            "HTTP requests served, by route and status code.",
            &["route", "code"],
        ),
        latency: metrics::histogram_vec(
            "runplane_http_request_duration_seconds",
            "Time to serve an HTTP request, by route.",
            &[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ],
            &["route"],
        ),
    })
}

/// Routes every HTTP service has: `/healthz` (alive), `/readyz` (fails once
/// `draining` is set, so balancers stop sending), `/metrics` (its own).
pub fn probes(draining: Arc<AtomicBool>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz).with_state(draining))
        .route("/metrics", get(render))
}

async fn readyz(State(draining): State<Arc<AtomicBool>>) -> (StatusCode, &'static str) {
    if draining.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        (StatusCode::OK, "ok\n")
    }
}

/// Whether a route is one of [`probes`]: frequent, and uninteresting to log.
fn is_probe(route: &str) -> bool {
    matches!(route, "/healthz" | "/readyz" | "/metrics")
}

/// `GET /metrics`: the process's metrics in the text format.
pub async fn render() -> Response {
    http_metrics();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(metrics::CONTENT_TYPE),
        )],
        metrics::render(),
    )
        .into_response()
}

/// Middleware: one span, one measurement and one log line per request, by its
/// route template (never the concrete path, whose organization names would
/// explode cardinality). Handlers add the organization to the span.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().clone();
    let span = tracing::info_span!(
        "http.server",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
        org = tracing::field::Empty,
    );
    let trace_id = runplane_telemetry::trace_context::extract(request.headers(), &span);
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let seconds = started.elapsed().as_secs_f64();
    let metrics = http_metrics();
    metrics
        .latency
        .with_label_values(&[route.as_str()])
        .observe(seconds);
    metrics
        .requests
        .with_label_values(&[route.as_str(), response.status().as_str()])
        .inc();
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    let latency_ms = (seconds * 1e5).round() / 100.0;
    // An absent trace id is left out, not written empty.
    let trace_id = trace_id.as_deref();
    let served = !is_probe(&route);
    if served && !response.status().is_success() {
        tracing::info!(parent: &span, method = %method, route, status, latency_ms, trace_id, "request");
    } else {
        // Successful requests are summed once a minute (telemetry::summary);
        // probes and our own metrics are frequent and uninteresting.
        if served {
            runplane_telemetry::summary::requests().record(&route, response.status().as_str());
        }
        tracing::debug!(parent: &span, method = %method, route, status, latency_ms, trace_id, "request");
    }
    response
}
