//! Load shedding: a bound on the requests one process works on at a time.
//!
//! Past the bound a request is answered at once — gRPC `RESOURCE_EXHAUSTED`
//! with `grpc-retry-pushback-ms`, HTTP 503 with `Retry-After` — instead of
//! queueing without bound, so memory and latency stay bounded under overload
//! and well-behaved clients back off. Probes and `/metrics` are never shed: an
//! overloaded replica must not look dead to Kubernetes, nor blind to Prometheus.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use runplane_client::upstream::PUSHBACK_METADATA;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a shed client is asked to wait before trying again.
pub const RETRY_AFTER_SECONDS: u64 = 1;

/// What admission does, among the process's own metrics.
struct AdmissionMetrics {
    shed: prometheus::IntCounter,
    in_flight: prometheus::IntGauge,
}

fn admission_metrics() -> &'static AdmissionMetrics {
    static METRICS: OnceLock<AdmissionMetrics> = OnceLock::new();
    METRICS.get_or_init(|| AdmissionMetrics {
        shed: runplane_telemetry::metrics::int_counter(
            "runplane_requests_shed_total",
            "Requests refused at once because the process was at its concurrency limit.",
        ),
        in_flight: runplane_telemetry::metrics::int_gauge(
            "runplane_requests_in_flight",
            "Requests being worked on, out of --max-concurrent-requests (probes excluded).",
        ),
    })
}

/// What kind of server the layer guards: it decides the shape of the refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    Http,
}

/// Admits at most `limit` requests at a time (shared by every connection).
#[derive(Debug, Clone)]
pub struct AdmissionLayer {
    permits: Arc<Semaphore>,
    limit: usize,
    protocol: Protocol,
}

impl AdmissionLayer {
    pub fn new(limit: usize, protocol: Protocol) -> Self {
        // Registered now, so that the metrics read 0 before the first request.
        admission_metrics();
        let limit = limit.clamp(1, Semaphore::MAX_PERMITS);
        AdmissionLayer {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            protocol,
        }
    }
}

impl<S> tower::Layer<S> for AdmissionLayer {
    type Service = Admission<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Admission {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Admission<S> {
    inner: S,
    layer: AdmissionLayer,
}

/// Probes and the process's own metrics: always answered.
fn is_exempt(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/")
        || matches!(path, "/metrics" | "/healthz" | "/readyz")
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for Admission<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    R: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    R::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let permit = if is_exempt(request.uri().path()) {
            None
        } else {
            match self.layer.permits.clone().try_acquire_owned() {
                Ok(permit) => Some(Admitted::new(permit)),
                Err(_) => {
                    admission_metrics().shed.inc();
                    let refusal = refusal(self.layer.protocol, self.layer.limit);
                    return Box::pin(async move { Ok(refusal) });
                }
            }
        };
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await;
            // Held until the answer is ready: for unary calls, the work is done.
            drop(permit);
            Ok(response?.map(tonic::body::Body::new))
        })
    }
}

/// A request being worked on: counted in `runplane_requests_in_flight`
/// until dropped.
struct Admitted {
    _permit: OwnedSemaphorePermit,
}

impl Admitted {
    fn new(permit: OwnedSemaphorePermit) -> Self {
        admission_metrics().in_flight.inc();
        Admitted { _permit: permit }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        admission_metrics().in_flight.dec();
    }
}

/// The answer to a request over the limit.
fn refusal(protocol: Protocol, limit: usize) -> http::Response<tonic::body::Body> {
    let message = format!(
        "server overloaded: {limit} requests already in progress; retry after {RETRY_AFTER_SECONDS}s"
    );
    match protocol {
        Protocol::Grpc => {
            let mut status = tonic::Status::resource_exhausted(message);
            if let Ok(value) = (RETRY_AFTER_SECONDS * 1000).to_string().parse() {
                status.metadata_mut().insert(PUSHBACK_METADATA, value);
            }
            status.into_http()
        }
        Protocol::Http => {
            let mut response = http::Response::new(tonic::body::Body::new(
                http_body_util::Full::new(bytes::Bytes::from(message + "\n")),
            ));
            *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
            let headers = response.headers_mut();
            headers.insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from(RETRY_AFTER_SECONDS),
            );
            headers.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::time::Duration;
    use tower::{Layer as _, ServiceExt as _};

    /// A service that answers once `gate` has a permit for it: requests stay
    /// in flight until the test adds permits.
    fn gated(
        gate: Arc<Semaphore>,
    ) -> impl tower::Service<
        http::Request<()>,
        Response = http::Response<tonic::body::Body>,
        Error = Infallible,
        Future = impl Send,
    > + Clone
    + Send
    + 'static {
        tower::service_fn(move |_request: http::Request<()>| {
            let gate = gate.clone();
            async move {
                if let Ok(permit) = gate.acquire().await {
                    permit.forget();
                }
                Ok::<_, Infallible>(http::Response::new(tonic::body::Body::empty()))
            }
        })
    }

    fn request(path: &str) -> http::Request<()> {
        http::Request::builder()
            .uri(path)
            .body(())
            .unwrap_or_else(|e| unreachable!("{e}"))
    }

    #[tokio::test]
    async fn sheds_past_the_limit_and_admits_again_once_a_request_finishes() {
        let gate = Arc::new(Semaphore::new(0));
        let layer = AdmissionLayer::new(1, Protocol::Grpc);
        let service = layer.layer(gated(gate.clone()));
        let first = tokio::spawn(service.clone().oneshot(request("/pkg.S/M")));
        while layer.permits.available_permits() > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }

        let shed = service
            .clone()
            .oneshot(request("/pkg.S/M"))
            .await
            .unwrap_or_else(|e| match e {});
        let status = tonic::Status::from_header_map(shed.headers()).expect("a gRPC status");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            shed.headers()
                .get(PUSHBACK_METADATA)
                .and_then(|v| v.to_str().ok()),
            Some("1000")
        );

        // Health checks get through even now.
        let probe = tokio::spawn(
            service
                .clone()
                .oneshot(request("/grpc.health.v1.Health/Check")),
        );
        gate.add_permits(2);
        assert!(probe.await.is_ok());
        assert!(first.await.is_ok());
        assert_eq!(layer.permits.available_permits(), 1);
        gate.add_permits(1);
        let admitted = service
            .oneshot(request("/pkg.S/M"))
            .await
            .unwrap_or_else(|e| match e {});
        assert!(tonic::Status::from_header_map(admitted.headers()).is_none());
    }

    #[test]
    fn http_refusal_is_503_with_retry_after() {
        let response = refusal(Protocol::Http, 8);
        assert_eq!(response.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers().get(http::header::RETRY_AFTER),
            Some(&http::HeaderValue::from(RETRY_AFTER_SECONDS))
        );
    }
}
