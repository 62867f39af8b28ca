//! Logs and traces, set up once per process.
//!
//! Logs go to stderr, as text or JSON. Traces are OpenTelemetry spans exported
//! over OTLP/gRPC when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, with `OTEL_SERVICE_NAME` and
//! `OTEL_RESOURCE_ATTRIBUTES` honoured; without it, nothing is exported and
//! spans cost what a `tracing` span costs. W3C `traceparent` is read from every
//! incoming request and written on every outgoing call ([`trace_context`]).
//!
//! The process's own Prometheus metrics, for its operators, are gathered in
//! one registry ([`metrics`]); gRPC calls are labelled the same way on both
//! sides ([`grpc`]).

pub mod grpc;
pub mod memory;
pub mod metrics;
mod process;
pub mod summary;
pub mod trace_context;

use clap::ValueEnum;
use opentelemetry::trace::TracerProvider as _;
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
