//! Logs and traces, set up once per process.
//!
//! Logs go to stderr, as text or JSON. Traces are OpenTelemetry spans exported
//! over OTLP/gRPC when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, with `OTEL_SERVICE_NAME` and
//! `OTEL_RESOURCE_ATTRIBUTES` honoured; without it, nothing is exported and
//! spans cost what a `tracing` span costs. W3C `traceparent` is read from every
//! incoming request and written on every outgoing call ([`extract`], [`inject`]).

use clap::ValueEnum;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per event, for log pipelines.
    Json,
}

/// Logging settings every service and the CLI accept.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log filter, in `RUST_LOG` syntax. sqlx is quiet by default: it logs every statement at INFO.
    #[arg(long, env = "RUNPLANE_LOG", default_value = "info,sqlx=warn")]
    pub log: String,
    /// Log line format.
    #[arg(long, env = "RUNPLANE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Whether OTLP export is configured, by the standard variables.
pub fn otlp_configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))
}

/// The OpenTelemetry resource of this process: `service.name` from
/// `OTEL_SERVICE_NAME`, else the service's own name; plus `OTEL_RESOURCE_ATTRIBUTES`.
pub fn resource(service: &'static str) -> opentelemetry_sdk::Resource {
    let builder = opentelemetry_sdk::Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_some_and(|v| !v.is_empty()) {
        builder.build()
    } else {
        builder.with_service_name(service).build()
    }
}

/// Flushes and stops trace export when dropped (at the end of `main`).
pub struct Telemetry {
    tracer_provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.tracer_provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("could not flush traces: {e}");
        }
    }
}

/// Installs the global subscriber (stderr, tagged with the service's name) and,
/// when OTLP is configured, the span exporter. Call it inside the tokio runtime
/// that lives as long as the process: the exporter's gRPC channel runs on it.
/// An invalid filter falls back to the default and says so.
pub fn init(service: &'static str, args: &LogArgs) -> Telemetry {
    let (filter, bad_filter) = match EnvFilter::try_new(&args.log) {
        Ok(filter) => (filter, None),
        Err(e) => (EnvFilter::new("info,sqlx=warn"), Some(e)),
    };
    let (tracer_provider, otlp_error) = if otlp_configured() {
        match opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
        {
            Ok(exporter) => (
                Some(
                    opentelemetry_sdk::trace::SdkTracerProvider::builder()
                        .with_batch_exporter(exporter)
                        .with_resource(resource(service))
                        .build(),
                ),
                None,
            ),
            Err(e) => (None, Some(e)),
        }
    } else {
        (None, None)
    };
    let otel = tracer_provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(service)));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false);
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    // A second init (tests) keeps the first subscriber; that is fine.
    let _ = match args.log_format {
        LogFormat::Text => registry.with(fmt).try_init(),
        LogFormat::Json => registry
            .with(
                fmt.json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
    };
    if let Some(e) = bad_filter {
        tracing::warn!(filter = %args.log, error = %e, "invalid log filter; using info,sqlx=warn");
    }
    match (&tracer_provider, otlp_error) {
        (Some(_), _) => tracing::info!(service, "exporting traces over OTLP"),
        (None, Some(e)) => {
            tracing::warn!(error = %e, "OTLP endpoint set but the exporter could not start; traces are off")
        }
        (None, None) => tracing::debug!(
            service,
            "traces are off (OTEL_EXPORTER_OTLP_ENDPOINT unset)"
        ),
    }
    Telemetry { tracer_provider }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Makes `span` a child of the W3C trace context in `headers`, if any, and
/// returns the trace id the request belongs to (for the request's log line).
pub fn extract(headers: &http::HeaderMap, span: &tracing::Span) -> Option<String> {
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let remote = parent.span().span_context().clone();
    if remote.is_valid() {
        let _ = span.set_parent(parent);
    }
    // With export on, the span's own trace (the remote one, or a new one).
    let own = span.context().span().span_context().clone();
    [own, remote]
        .into_iter()
        .find(|c| c.is_valid())
        .map(|c| c.trace_id().to_string())
}

/// Writes the current span's trace context into outgoing request headers.
pub fn inject(headers: &mut http::HeaderMap) {
    let cx = tracing::Span::current().context();
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_incoming_traceparent_gives_the_trace_id_even_without_export() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "traceparent",
            http::HeaderValue::from_static(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        );
        let span = tracing::info_span!("test");
        assert_eq!(
            extract(&headers, &span).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(extract(&http::HeaderMap::new(), &span), None);
        let mut bad = http::HeaderMap::new();
        bad.insert("traceparent", http::HeaderValue::from_static("garbage"));
        assert_eq!(extract(&bad, &span), None);
    }
}
