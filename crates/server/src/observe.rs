//! Every gRPC request measured (by service, method and code), traced (joining
//! the caller's trace) and logged once, the same way in every service, and its
//! deadline recorded for the calls it makes ([`runplane_client::deadline`]).
//! Anything that is not gRPC (`GET /metrics`) passes through untouched.
//!
//! A unary call's code is read from the `grpc-status` header (a trailers-only
//! answer, as every error is) and is OK otherwise; its latency runs until the
//! response headers, which for a unary call is when the handler is done.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Instant;

use prometheus::{HistogramVec, IntCounterVec};
use runplane_client::deadline;
use runplane_telemetry::grpc::{LATENCY_BUCKETS, code_name, code_of, split_path};
use runplane_telemetry::{metrics, summary, trace_context};
use tracing::Instrument as _;

struct ServerMetrics {
    handled: IntCounterVec,
    seconds: HistogramVec,
}

fn server_metrics() -> &'static ServerMetrics {
    static METRICS: OnceLock<ServerMetrics> = OnceLock::new();
    METRICS.get_or_init(|| ServerMetrics {
        handled: metrics::int_counter_vec(
            "grpc_server_handled_total",
            "gRPC requests completed by the server, by service, method and code.",
            &["grpc_service", "grpc_method", "grpc_code"],
        ),
        seconds: metrics::histogram_vec(
            "grpc_server_handling_seconds",
            "Time the server took to answer a gRPC request.",
            LATENCY_BUCKETS,
            &["grpc_service", "grpc_method"],
        ),
    })
}

/// Probes and reflection are logged at DEBUG: a mesh asks every few seconds.
fn is_infrastructure(service: &str) -> bool {
    service.starts_with("grpc.health.") || service.starts_with("grpc.reflection.")
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The layer every gRPC server runs its requests through.
#[derive(Debug, Clone, Copy)]
pub struct GrpcServerLayer(());

impl GrpcServerLayer {
    pub fn new() -> Self {
        // Registered now, so that the metrics are there before the first request.
        server_metrics();
        GrpcServerLayer(())
    }
}

impl Default for GrpcServerLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> tower::Layer<S> for GrpcServerLayer {
    type Service = GrpcServer<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcServer { inner }
    }
}

#[derive(Debug, Clone)]
pub struct GrpcServer<S> {
    inner: S,
}

impl<S, B, R> tower::Service<http::Request<B>> for GrpcServer<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let is_grpc = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/grpc"));
        // The clone is the ready one's replacement (tower's usual dance).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if !is_grpc {
            return Box::pin(inner.call(request));
        }
        let path = request.uri().path().to_owned();
        let (service, method) = split_path(&path);
        let span = tracing::info_span!(
            "grpc.server",
            otel.name = %path.trim_start_matches('/'),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = tracing::field::Empty,
            org = tracing::field::Empty,
        );
        let trace_id = trace_context::extract(request.headers(), &span);
        if let Some(id) = &trace_id {
            // For handlers that keep it (a run's exemplar links to its trace).
            request
                .extensions_mut()
                .insert(trace_context::TraceId(id.clone()));
        }
        let started = Instant::now();
        let deadline = deadline::of_request(request.headers(), started);
        let answer = deadline::serve_within(deadline, inner.call(request));
        Box::pin(async move {
            let result = answer.instrument(span.clone()).await;
            let code = match &result {
                Ok(response) => code_of(response),
                Err(_) => tonic::Code::Unknown,
            };
            let seconds = started.elapsed().as_secs_f64();
            let m = server_metrics();
            m.handled
                .with_label_values(&[service.as_str(), method.as_str(), code_name(code)])
                .inc();
            m.seconds
                .with_label_values(&[service.as_str(), method.as_str()])
                .observe(seconds);
            span.record("rpc.grpc.status_code", code as i32);
            let latency_ms = (seconds * 1e5).round() / 100.0;
            // An absent trace id is left out, not written empty.
            let trace_id = trace_id.as_deref();
            let code = code_name(code);
            if is_infrastructure(&service) || code == "OK" {
                // Successes are summed once a minute (telemetry::summary).
                if !is_infrastructure(&service) {
                    summary::requests().record(&method, code);
                }
                tracing::debug!(parent: &span, method = %path, code, latency_ms, trace_id, "request");
            } else {
                tracing::info!(parent: &span, method = %path, code, latency_ms, trace_id, "request");
            }
            result
        })
    }
}
