//! Every service's own telemetry for its operators: one Prometheus registry
//! per process with gRPC server and client requests (by service, method and
//! code), database pool usage and process metrics; one tower layer that
//! measures, traces and logs each gRPC request the same way in all four
//! services; and the client side of it on every inter-service channel.
//!
//! A unary call's code is read from the `grpc-status` header (a trailers-only
//! answer, as every error is) and is OK otherwise; its latency runs until the
//! response headers, which for a unary call is when the handler is done.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use prometheus::core::Collector;
use prometheus::{
    Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use tracing::Instrument as _;

/// Latency buckets (seconds) for requests between services.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process's registry and request instruments.
pub struct ServiceMetrics {
    pub registry: Registry,
    server_handled: IntCounterVec,
    server_seconds: HistogramVec,
    client_handled: IntCounterVec,
    client_seconds: HistogramVec,
    shed: prometheus::IntCounter,
    pub(crate) in_flight: IntGauge,
    auth_failures: prometheus::IntCounter,
}

/// The process's metrics, created on first use.
pub fn metrics() -> &'static ServiceMetrics {
    static METRICS: OnceLock<ServiceMetrics> = OnceLock::new();
    METRICS.get_or_init(ServiceMetrics::new)
}

fn counter(name: &str, help: &str) -> IntCounterVec {
    IntCounterVec::new(
        Opts::new(name, help),
        &["grpc_service", "grpc_method", "grpc_code"],
    )
    .unwrap_or_else(|e| unreachable!("static metric {name}: {e}"))
}

fn histogram(name: &str, help: &str) -> HistogramVec {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
        &["grpc_service", "grpc_method"],
    )
    .unwrap_or_else(|e| unreachable!("static metric {name}: {e}"))
}

impl ServiceMetrics {
    fn new() -> Self {
        let metrics = ServiceMetrics {
            registry: Registry::new(),
            server_handled: counter(
                "grpc_server_handled_total",
                "gRPC requests completed by the server, by service, method and code.",
            ),
            server_seconds: histogram(
                "grpc_server_handling_seconds",
                "Time the server took to answer a gRPC request.",
            ),
            client_handled: counter(
                "grpc_client_handled_total",
                "gRPC calls to other services completed, by service, method and code.",
            ),
            client_seconds: histogram(
                "grpc_client_handling_seconds",
                "Time calls to other services took, until their answer.",
            ),
            shed: prometheus::IntCounter::new(
                "runplane_requests_shed_total",
                "Requests refused at once because the process was at its concurrency limit.",
            )
            .unwrap_or_else(|e| unreachable!("static metric: {e}")),
            in_flight: IntGauge::new(
                "runplane_requests_in_flight",
                "Requests being worked on, out of --max-concurrent-requests (probes excluded).",
            )
            .unwrap_or_else(|e| unreachable!("static metric: {e}")),
            auth_failures: prometheus::IntCounter::new(
                "runplane_auth_failures_total",
                "Wrong credentials presented (counted towards the per-address limit).",
            )
            .unwrap_or_else(|e| unreachable!("static metric: {e}")),
        };
        for collector in [
            Box::new(metrics.server_handled.clone()) as Box<dyn Collector>,
            Box::new(metrics.server_seconds.clone()),
            Box::new(metrics.client_handled.clone()),
            Box::new(metrics.client_seconds.clone()),
            Box::new(metrics.shed.clone()),
            Box::new(metrics.in_flight.clone()),
            Box::new(metrics.auth_failures.clone()),
            Box::new(ProcessCollector::new()),
        ] {
            metrics.register(collector);
        }
        metrics
    }

    /// Adds a collector; a clash of names is a bug, logged rather than fatal.
    pub fn register(&self, collector: Box<dyn Collector>) {
        if let Err(e) = self.registry.register(collector) {
            tracing::error!(error = %e, "cannot register a metrics collector");
        }
    }

    /// Counts a request refused by [`crate::admission`].
    pub fn record_shed(&self) {
        self.shed.inc();
    }

    /// Counts a wrong credential (see [`crate::auth_failures`]).
    pub fn record_auth_failure(&self) {
        self.auth_failures.inc();
    }

    /// The text exposition of everything registered.
    pub fn render(&self) -> String {
        prometheus::TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "cannot encode own metrics");
                String::new()
            })
    }
}

/// `/pkg.Service/Method` → (`pkg.Service`, `Method`).
fn split_path(path: &str) -> (String, String) {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let service = parts.next().unwrap_or_default().to_owned();
    let method = parts.next().unwrap_or_default().to_owned();
    (service, method)
}

/// The gRPC code of an answer: its `grpc-status` header, else OK.
fn code_of<B>(response: &http::Response<B>) -> tonic::Code {
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map_or(tonic::Code::Ok, tonic::Code::from_i32)
}

/// Prometheus' spelling of a code: `OK`, `NOT_FOUND`, ….
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Probes and reflection are logged at DEBUG: a mesh asks every few seconds.
fn is_infrastructure(service: &str) -> bool {
    service.starts_with("grpc.health.") || service.starts_with("grpc.reflection.")
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The server side: measure, trace (joining the caller's trace) and log every
/// gRPC request. Anything else (`GET /metrics`) passes through untouched.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcServerLayer;

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

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
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
        let trace_id = crate::telemetry::extract(request.headers(), &span);
        let started = Instant::now();
        let deadline = request
            .headers()
            .get(GRPC_TIMEOUT)
            .and_then(|v| parse_grpc_timeout(v.as_bytes()))
            .and_then(|timeout| started.checked_add(timeout));
        let answer = DEADLINE.scope(deadline, inner.call(request));
        Box::pin(async move {
            let result = answer.instrument(span.clone()).await;
            let code = match &result {
                Ok(response) => code_of(response),
                Err(_) => tonic::Code::Unknown,
            };
            let seconds = started.elapsed().as_secs_f64();
            let m = metrics();
            m.server_handled
                .with_label_values(&[service.as_str(), method.as_str(), code_name(code)])
                .inc();
            m.server_seconds
                .with_label_values(&[service.as_str(), method.as_str()])
                .observe(seconds);
            span.record("rpc.grpc.status_code", code as i32);
            let latency_ms = (seconds * 1e5).round() / 100.0;
            let trace_id = trace_id.as_deref().unwrap_or("");
            if is_infrastructure(&service) {
                tracing::debug!(parent: &span, method = %path, code = code_name(code), latency_ms, trace_id, "request");
            } else {
                tracing::info!(parent: &span, method = %path, code = code_name(code), latency_ms, trace_id, "request");
            }
            result
        })
    }
}

/// A channel to another service that measures and traces every call, and
/// passes the caller's trace on in `traceparent`.
#[derive(Debug, Clone)]
pub struct ObservedChannel {
    inner: tonic::transport::Channel,
}

impl ObservedChannel {
    pub fn new(inner: tonic::transport::Channel) -> Self {
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
            crate::telemetry::extract(request.headers(), &span);
        }
        span.in_scope(|| crate::telemetry::inject(request.headers_mut()));
        propagate_deadline(request.headers_mut());
        let started = Instant::now();
        let answer = tower::Service::call(&mut self.inner, request);
        Box::pin(async move {
            let result = answer.instrument(span).await;
            let code = match &result {
                Ok(response) => code_of(response),
                Err(_) => tonic::Code::Unavailable,
            };
            let m = metrics();
            m.client_handled
                .with_label_values(&[service.as_str(), method.as_str(), code_name(code)])
                .inc();
            m.client_seconds
                .with_label_values(&[service.as_str(), method.as_str()])
                .observe(started.elapsed().as_secs_f64());
            result
        })
    }
}

const GRPC_TIMEOUT: &str = "grpc-timeout";

tokio::task_local! {
    /// The deadline of the gRPC request being served, from its `grpc-timeout`.
    static DEADLINE: Option<Instant>;
}

/// Parses a `grpc-timeout` value: at most 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(value: &[u8]) -> Option<Duration> {
    let (unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let amount: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(amount * 3600),
        b'M' => Duration::from_secs(amount * 60),
        b'S' => Duration::from_secs(amount),
        b'm' => Duration::from_millis(amount),
        b'u' => Duration::from_micros(amount),
        b'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// A call made while serving a request with a deadline carries what is left
/// of it (or its own shorter `grpc-timeout`): a peer never works on behalf of
/// a caller that has already given up.
fn propagate_deadline(headers: &mut http::HeaderMap) {
    let Ok(Some(deadline)) = DEADLINE.try_with(|d| *d) else {
        return;
    };
    let remaining = deadline.saturating_duration_since(Instant::now());
    let own = headers
        .get(GRPC_TIMEOUT)
        .and_then(|v| parse_grpc_timeout(v.as_bytes()));
    if own.is_some_and(|own| own <= remaining) {
        return;
    }
    // Milliseconds, rounded up so that a nearly spent deadline is not zero;
    // 8 digits of them is over a day.
    let millis = remaining.as_micros().div_ceil(1000).clamp(1, 99_999_999);
    if let Ok(value) = format!("{millis}m").parse() {
        headers.insert(GRPC_TIMEOUT, value);
    }
}

/// Records the organization a request acts for on its request span (and so on
/// its log line and trace).
pub fn record_org(org: &str) {
    tracing::Span::current().record("org", org);
}

/// Connection pool usage of a service's database, read at scrape time.
pub fn register_database_pool(db: &sea_orm::DatabaseConnection) {
    match DatabasePoolCollector::new(db.clone()) {
        Ok(collector) => metrics().register(Box::new(collector)),
        Err(e) => tracing::error!(error = %e, "cannot create the database pool metrics"),
    }
}

struct DatabasePoolCollector {
    db: sea_orm::DatabaseConnection,
    connections: IntGaugeVec,
    max: IntGauge,
}

impl DatabasePoolCollector {
    fn new(db: sea_orm::DatabaseConnection) -> Result<Self, prometheus::Error> {
        Ok(DatabasePoolCollector {
            db,
            connections: IntGaugeVec::new(
                Opts::new(
                    "runplane_db_pool_connections",
                    "Database connections open, by state (idle or in_use).",
                ),
                &["state"],
            )?,
            max: IntGauge::new(
                "runplane_db_pool_max_connections",
                "Most database connections the pool opens.",
            )?,
        })
    }
}

impl Collector for DatabasePoolCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.connections
            .desc()
            .into_iter()
            .chain(self.max.desc())
            .collect()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let (size, idle, max) = match self.db.get_database_backend() {
            sea_orm::DbBackend::Postgres => {
                let pool = self.db.get_postgres_connection_pool();
                (
                    pool.size(),
                    pool.num_idle(),
                    pool.options().get_max_connections(),
                )
            }
            sea_orm::DbBackend::Sqlite => {
                let pool = self.db.get_sqlite_connection_pool();
                (
                    pool.size(),
                    pool.num_idle(),
                    pool.options().get_max_connections(),
                )
            }
            _ => return Vec::new(),
        };
        let idle = i64::try_from(idle).unwrap_or(i64::MAX);
        self.connections.with_label_values(&["idle"]).set(idle);
        self.connections
            .with_label_values(&["in_use"])
            .set((i64::from(size) - idle).max(0));
        self.max.set(i64::from(max));
        self.connections
            .collect()
            .into_iter()
            .chain(self.max.collect())
            .collect()
    }
}

/// The standard `process_*` metrics, from `/proc/self` (Linux; elsewhere none).
struct ProcessCollector {
    cpu: prometheus::Counter,
    resident: IntGauge,
    virtual_memory: IntGauge,
    open_fds: IntGauge,
    threads: IntGauge,
    start_time: Gauge,
}

impl ProcessCollector {
    fn new() -> Self {
        let gauge = |name: &str, help: &str| {
            Gauge::new(name, help).unwrap_or_else(|e| unreachable!("static metric {name}: {e}"))
        };
        let int = |name: &str, help: &str| {
            IntGauge::new(name, help).unwrap_or_else(|e| unreachable!("static metric {name}: {e}"))
        };
        ProcessCollector {
            cpu: prometheus::Counter::new(
                "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds.",
            )
            .unwrap_or_else(|e| unreachable!("static metric: {e}")),
            resident: int(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
            ),
            virtual_memory: int(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
            ),
            open_fds: int("process_open_fds", "Number of open file descriptors."),
            threads: int("process_threads", "Number of OS threads in the process."),
            start_time: gauge(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
            ),
        }
    }
}

/// Clock ticks per second in `/proc` (USER_HZ, fixed by the kernel ABI).
const TICKS_PER_SECOND: f64 = 100.0;
const PAGE_SIZE: i64 = 4096;

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        [
            self.cpu.desc(),
            self.resident.desc(),
            self.virtual_memory.desc(),
            self.open_fds.desc(),
            self.threads.desc(),
            self.start_time.desc(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
            return Vec::new();
        };
        // Fields after the parenthesised command name, which may hold spaces.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
        if let (Some(utime), Some(stime)) = (field(14), field(15)) {
            // A counter only goes up: add what was spent since the last scrape.
            let spent = (utime + stime) / TICKS_PER_SECOND;
            let delta = spent - self.cpu.get();
            if delta > 0.0 {
                self.cpu.inc_by(delta);
            }
        }
        if let Some(threads) = field(20) {
            self.threads.set(threads as i64);
        }
        if let Some(vsize) = field(23) {
            self.virtual_memory.set(vsize as i64);
        }
        if let Some(rss) = field(24) {
            self.resident.set(rss as i64 * PAGE_SIZE);
        }
        let boot_time = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse::<f64>().ok())
        });
        if let (Some(boot), Some(start)) = (boot_time, field(22)) {
            self.start_time.set(boot + start / TICKS_PER_SECOND);
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(fds.count() as i64);
        }
        [
            self.cpu.collect(),
            self.resident.collect(),
            self.virtual_memory.collect(),
            self.open_fds.collect(),
            self.threads.collect(),
            self.start_time.collect(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_metrics_are_read_from_proc() {
        let text = metrics().render();
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_start_time_seconds",
            "process_threads",
        ] {
            assert!(text.contains(&format!("\n{name} ")), "no {name} in\n{text}");
        }
        let rss: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
            .and_then(|v| v.parse().ok())
            .expect("rss");
        assert!(rss > 1e6, "{rss}");
    }

    #[test]
    fn paths_and_codes() {
        assert_eq!(
            split_path("/runplane.org.v1.OrganizationService/GetOrganization"),
            (
                "runplane.org.v1.OrganizationService".into(),
                "GetOrganization".into()
            )
        );
        let response = http::Response::builder()
            .header("grpc-status", "5")
            .body(())
            .expect("response");
        assert_eq!(code_name(code_of(&response)), "NOT_FOUND");
        assert_eq!(code_of(&http::Response::new(())), tonic::Code::Ok);
    }
}

#[cfg(test)]
mod deadline_tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_like_the_spec_says() {
        assert_eq!(parse_grpc_timeout(b"5S"), Some(Duration::from_secs(5)));
        assert_eq!(
            parse_grpc_timeout(b"250m"),
            Some(Duration::from_millis(250))
        );
        assert_eq!(parse_grpc_timeout(b"2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout(b"7n"), Some(Duration::from_nanos(7)));
        for bad in [&b""[..], b"S", b"123456789S", b"5s", b"-5S", b"5 S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    fn timeout_of(headers: &http::HeaderMap) -> Option<Duration> {
        headers
            .get(GRPC_TIMEOUT)
            .and_then(|v| parse_grpc_timeout(v.as_bytes()))
    }

    #[tokio::test]
    async fn calls_made_while_serving_carry_the_remaining_deadline() {
        // Outside a request: nothing is added.
        let mut headers = http::HeaderMap::new();
        propagate_deadline(&mut headers);
        assert_eq!(timeout_of(&headers), None);

        let deadline = Instant::now() + Duration::from_millis(800);
        DEADLINE
            .scope(Some(deadline), async {
                let mut headers = http::HeaderMap::new();
                propagate_deadline(&mut headers);
                let left = timeout_of(&headers).expect("a grpc-timeout");
                assert!(left <= Duration::from_millis(800) && left > Duration::ZERO);

                // A call's own shorter timeout stays; a longer one is cut.
                let mut headers = http::HeaderMap::new();
                headers.insert(GRPC_TIMEOUT, http::HeaderValue::from_static("100m"));
                propagate_deadline(&mut headers);
                assert_eq!(timeout_of(&headers), Some(Duration::from_millis(100)));
                headers.insert(GRPC_TIMEOUT, http::HeaderValue::from_static("60S"));
                propagate_deadline(&mut headers);
                assert!(timeout_of(&headers).is_some_and(|t| t <= Duration::from_millis(800)));
            })
            .await;

        // A spent deadline still sends the smallest timeout, not none.
        DEADLINE
            .scope(Some(Instant::now()), async {
                let mut headers = http::HeaderMap::new();
                propagate_deadline(&mut headers);
                assert_eq!(timeout_of(&headers), Some(Duration::from_millis(1)));
            })
            .await;
    }
}
