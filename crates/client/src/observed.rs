//! The client side of every inter-service call: each is measured (by service,
//! method and code), traced (the caller's trace goes on in `traceparent`), and
//! carries what is left of the served request's deadline ([`crate::deadline`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Instant;

use prometheus::{HistogramVec, IntCounterVec};
use runplane_telemetry::grpc::{LATENCY_BUCKETS, code_name, code_of, split_path};
use runplane_telemetry::{metrics, trace_context};
use tracing::Instrument as _;

struct ClientMetrics {
    handled: IntCounterVec,
    seconds: HistogramVec,
}

fn client_metrics() -> &'static ClientMetrics {
    static METRICS: OnceLock<ClientMetrics> = OnceLock::new();
    METRICS.get_or_init(|| ClientMetrics {
        handled: metrics::int_counter_vec(
            "grpc_client_handled_total",
            "gRPC calls to other services completed, by service, method and code.",
            &["grpc_service", "grpc_method", "grpc_code"],
        ),
        seconds: metrics::histogram_vec(
            "grpc_client_handling_seconds",
            "Time calls to other services took, until their answer.",
            LATENCY_BUCKETS,
            &["grpc_service", "grpc_method"],
        ),
    })
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A channel to another service that measures and traces every call, and
/// passes the caller's trace and deadline on.
#[derive(Debug, Clone)]
pub struct ObservedChannel {
    inner: tonic::transport::Channel,
}

impl ObservedChannel {
    pub fn new(inner: tonic::transport::Channel) -> Self {
        // Registered now, so that the metrics are there before the first call.
        client_metrics();
        ObservedChannel { inner }
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for ObservedChannel {
    type Response = http::Response<tonic::body::Body>;
    type Error = tonic::transport::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower::Service::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, mut request: http::Request<tonic::body::Body>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let (service, method) = split_path(&path);
        let span = tracing::info_span!(
            "grpc.client",
            otel.name = %path.trim_start_matches('/'),
            otel.kind = "client",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
        );
        // A caller that set `traceparent` itself (the CLI, from the CI job's
        // TRACEPARENT) continues that trace.
        if request.headers().contains_key("traceparent") {
            trace_context::extract(request.headers(), &span);
        }
        span.in_scope(|| trace_context::inject(request.headers_mut()));
        crate::deadline::propagate(request.headers_mut());
        let started = Instant::now();
        let answer = tower::Service::call(&mut self.inner, request);
        Box::pin(async move {
            let result = answer.instrument(span).await;
            let code = match &result {
                Ok(response) => code_of(response),
                Err(_) => tonic::Code::Unavailable,
            };
            let m = client_metrics();
            m.handled
                .with_label_values(&[service.as_str(), method.as_str(), code_name(code)])
                .inc();
            m.seconds
                .with_label_values(&[service.as_str(), method.as_str()])
                .observe(started.elapsed().as_secs_f64());
            result
        })
    }
}
