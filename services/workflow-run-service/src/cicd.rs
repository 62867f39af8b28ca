//! Optional: runs as OpenTelemetry CI/CD semantic-convention metrics, pushed
//! over OTLP for users whose metrics pipeline is an OpenTelemetry collector
//! (`otel_cicd_metrics: true` plus the standard `OTEL_EXPORTER_OTLP_*`).
//!
//! - `cicd.pipeline.run.duration` (histogram, s): each run that reported an outcome;
//! - `cicd.pipeline.run.active` (up-down counter): runs started and not finished
//!   (each replica adds its deltas, so the sum over replicas is right whichever
//!   replica starts or finishes a run);
//! - `cicd.pipeline.run.errors` (counter): runs that failed or timed out.
//!
//! Attributes: `cicd.pipeline.name` (project/workflow), `cicd.pipeline.result`
//! (success, failure, cancellation, timeout), `error.type` on errors, and the
//! organization as `runplane.org.id` (and `runplane.org.name` when a runner
//! reported the outcome; the sweeper knows only the id).

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, MeterProvider as _, UpDownCounter};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use runplane_api::workflowrun::v1::RunStatus;

/// The instruments, and the provider that pushes them.
pub(crate) struct CicdMetrics {
    provider: SdkMeterProvider,
    duration: Histogram<f64>,
    active: UpDownCounter<i64>,
    errors: Counter<u64>,
}

/// Who a run belongs to, as the attributes name it.
pub(crate) struct Pipeline<'a> {
    pub(crate) org_id: &'a str,
    pub(crate) org_name: Option<&'a str>,
    /// `project/workflow`.
    pub(crate) name: &'a str,
}

impl Pipeline<'_> {
    fn attributes(&self) -> Vec<KeyValue> {
        let mut attributes = vec![
            KeyValue::new("cicd.pipeline.name", self.name.to_owned()),
            KeyValue::new("runplane.org.id", self.org_id.to_owned()),
        ];
        if let Some(name) = self.org_name {
            attributes.push(KeyValue::new("runplane.org.name", name.to_owned()));
        }
        attributes
    }
}

/// The semantic conventions' `cicd.pipeline.result` for an outcome.
pub(crate) fn result(outcome: RunStatus) -> &'static str {
    match outcome {
        RunStatus::Success => "success",
        RunStatus::Error => "failure",
        RunStatus::Canceled => "cancellation",
        RunStatus::Expired => "timeout",
        RunStatus::Initialized | RunStatus::Unspecified => "error",
    }
}

impl CicdMetrics {
    /// The exporter and instruments, when OTLP is configured; a warning and
    /// nothing otherwise (the rest of the service works the same).
    pub(crate) fn start() -> Option<Self> {
        if !runplane_telemetry::otlp_configured() {
            tracing::warn!(
                "otel_cicd_metrics is on but OTEL_EXPORTER_OTLP_ENDPOINT is unset; not exporting them"
            );
            return None;
        }
        let exporter = match opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .build()
        {
            Ok(exporter) => exporter,
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the OTLP metric exporter; CI/CD metrics are off");
                return None;
            }
        };
        let provider = SdkMeterProvider::builder()
            .with_periodic_exporter(exporter)
            .with_resource(runplane_telemetry::resource("workflow-run-service"))
            .build();
        let meter = provider.meter("runplane");
        let metrics = CicdMetrics {
            duration: meter
                .f64_histogram("cicd.pipeline.run.duration")
                .with_unit("s")
                .with_description("Duration of a pipeline run, grouped by pipeline and result.")
                .build(),
            active: meter
                .i64_up_down_counter("cicd.pipeline.run.active")
                .with_unit("{run}")
                .with_description("Pipeline runs started and not finished.")
                .build(),
            errors: meter
                .u64_counter("cicd.pipeline.run.errors")
                .with_unit("{error}")
                .with_description("Pipeline runs that failed or timed out.")
                .build(),
            provider,
        };
        tracing::info!("exporting CI/CD semantic-convention metrics over OTLP");
        Some(metrics)
    }

    /// A run started (only a new one: a retried start is not counted twice).
    pub(crate) fn started(&self, pipeline: &Pipeline<'_>) {
        let mut attributes = pipeline.attributes();
        attributes.push(KeyValue::new("cicd.pipeline.run.state", "executing"));
        self.active.add(1, &attributes);
    }

    /// A run finished (only the call that finished it, not a retry). A run
    /// that had expired left the active ones then.
    pub(crate) fn finished(
        &self,
        pipeline: &Pipeline<'_>,
        outcome: RunStatus,
        seconds: Option<f64>,
        was_expired: bool,
    ) {
        let mut attributes = pipeline.attributes();
        if !was_expired {
            let mut executing = attributes.clone();
            executing.push(KeyValue::new("cicd.pipeline.run.state", "executing"));
            self.active.add(-1, &executing);
        }
        let result = result(outcome);
        attributes.push(KeyValue::new("cicd.pipeline.result", result));
        if let Some(seconds) = seconds {
            self.duration.record(seconds, &attributes);
        }
        if matches!(outcome, RunStatus::Error | RunStatus::Expired) {
            attributes.push(KeyValue::new("error.type", result));
            self.errors.add(1, &attributes);
        }
    }
}

impl Drop for CicdMetrics {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "could not flush CI/CD metrics");
        }
    }
}
