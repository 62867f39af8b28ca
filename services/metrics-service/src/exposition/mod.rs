//! Renders an organization's workflow aggregates as a Prometheus exposition,
//! in the text format 0.0.4, OpenMetrics 1.0 or Prometheus' protobuf format
//! (the one that carries native histograms), with the two metrics of
//! Chainloop's integration (same names and labels, so its dashboard and alert
//! rules work unchanged) and runplane's own beside them.
//!
//! The exposition is written straight into one buffer: each series' labels are
//! escaped once and reused for all its lines. Building `prometheus` crate metric
//! families and encoding them was most of a large scrape's cost (see
//! docs/benchmarks.md); the tests check that the text output is byte for byte
//! what that encoder writes, and the end-to-end tests parse both formats with
//! independent parsers (promtool, Python's prometheus_client).
//!
//! No sample carries a timestamp: Prometheus' staleness handling needs the
//! scrape time. Names of workflows, projects and organizations only ever
//! appear as label values, escaped.

pub(crate) mod cardinality;
mod environments;
mod jobs;
mod runs;
mod shape;
mod writer;

use std::borrow::Cow;
use std::time::Instant;

use runplane_api::workflowrun::v1::{EnvironmentMetrics, WorkflowMetrics};

use writer::{Kind, Labels, Out, Writer};

/// The namespace of Chainloop's metric names, the default.
pub(crate) const DEFAULT_NAMESPACE: &str = "chainloop";

/// Which exposition format to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Format {
    /// `text/plain; version=0.0.4`: what Prometheus falls back to.
    Text,
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
    /// Prometheus' delimited `MetricFamily` messages: what it asks for first
    /// with native histograms on, and the only format that carries them.
    Protobuf,
}

impl Format {
    /// The `Content-Type` of a response in this format.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Protobuf => PROTOBUF_CONTENT_TYPE,
        }
    }

    /// A label value as this format carries it: escaped in the text formats
    /// ([`writer::escape`]), as it is in protobuf.
    pub(crate) fn label_value(self, value: &str) -> Cow<'_, str> {
        match self {
            Format::Text | Format::OpenMetrics => writer::escape(value),
            Format::Protobuf => Cow::Borrowed(value),
        }
    }

    /// The format a scraper asked for with its `Accept` header, as Prometheus
    /// negotiates: the listed format of highest quality, protobuf before
    /// OpenMetrics before the text format when equal; the text format
    /// without a header or a format of ours listed.
    pub(crate) fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let (mut protobuf, mut openmetrics, mut text) = (0.0f32, 0.0f32, 0.0f32);
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default().to_ascii_lowercase();
            let (mut quality, mut version) = (1.0f32, None);
            let (mut proto, mut encoding) = (None, None);
            for param in parts {
                let Some((key, value)) = param.split_once('=') else {
                    continue;
                };
                let value = value.trim().trim_matches('"');
                match key.trim().to_ascii_lowercase().as_str() {
                    // A quality outside 0–1 (or none) makes the range unacceptable.
                    "q" => {
                        quality = value
                            .parse()
                            .ok()
                            .filter(|q: &f32| (0.0..=1.0).contains(q))
                            .unwrap_or(0.0);
                    }
                    "version" => version = Some(value.to_owned()),
                    "proto" => proto = Some(value.to_owned()),
                    "encoding" => encoding = Some(value.to_ascii_lowercase()),
                    _ => {}
                }
            }
            match media.as_str() {
                "application/vnd.google.protobuf"
                    if proto.as_deref() == Some("io.prometheus.client.MetricFamily")
                        && encoding.as_deref() == Some("delimited") =>
                {
                    protobuf = protobuf.max(quality);
                }
                "application/openmetrics-text"
                    if version
                        .as_deref()
                        .is_none_or(|v| v == "1.0.0" || v == "0.0.1") =>
                {
                    openmetrics = openmetrics.max(quality);
                }
                "text/plain" if version.as_deref().is_none_or(|v| v == "0.0.4") => {
                    text = text.max(quality);
                }
                "*/*" | "text/*" => text = text.max(quality),
                _ => {}
            }
        }
        if protobuf > 0.0 && protobuf >= openmetrics && protobuf >= text {
            Format::Protobuf
        } else if openmetrics > 0.0 && openmetrics >= text {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

/// How a protobuf exposition carries each histogram (`protobuf_histograms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ProtobufHistograms {
    /// The native histogram, and the classic series as families of their
    /// own: Prometheus keeps both, whatever its version (with its
    /// `scrape_classic_histograms` off, else the classic series come twice).
    #[default]
    Both,
    /// One histogram message, classic buckets and native ones: Prometheus
    /// keeps the native series alone (one instead of a series per bucket),
    /// unless told to keep the classic ones too (`scrape_classic_histograms`
    /// from 2.45 on).
    Native,
}

/// The protobuf exposition's media type, as Prometheus asks for it.
const PROTOBUF_CONTENT_TYPE: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

/// How to write: set once from the configuration, then per request.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Prefix of every metric name (`chainloop` by default).
    pub(crate) namespace: String,
    pub(crate) format: Format,
    /// In OpenMetrics, add `_created` series to counters and histograms (the
    /// workflow's creation time: every counter of it was zero then).
    pub(crate) created_series: bool,
    /// How protobuf carries histograms.
    pub(crate) protobuf_histograms: ProtobufHistograms,
    /// Families left out, labels dropped, the series budget.
    pub(crate) cardinality: std::sync::Arc<cardinality::Cardinality>,
}

const ORG_WORKFLOWS_HELP: &str = "Workflows of the organization.";
const SCRAPE_DURATION_HELP: &str = "Time spent building this response, in seconds.";
const SERIES_DROPPED_HELP: &str = "Series of the organization left out of this response by the \
max_series_per_org budget: whole deployment environments (counted first, in name order) and whole \
workflows, the most recently created first.";

/// The exposition of one organization's workflows, whole. `started` is when
/// the request began: the last family reports how long the whole answer took.
#[cfg(test)]
pub(crate) fn render(
    options: &Options,
    org: &str,
    workflows: &[WorkflowMetrics],
    started: Instant,
) -> Vec<u8> {
    let mut whole = families(options, org, workflows);
    whole.extend(tail(options, org, started));
    whole
}

/// [`families_of`] an organization without environments.
#[cfg(test)]
pub(crate) fn families(options: &Options, org: &str, workflows: &[WorkflowMetrics]) -> Vec<u8> {
    families_of(options, org, workflows, &[])
}

/// The exposition without its [`tail`]: everything that depends only on the
/// workflows and environments (and the options and organization), so that
/// it can be kept while they are unchanged.
pub(crate) fn families_of(
    options: &Options,
    org: &str,
    workflows: &[WorkflowMetrics],
    environments: &[EnvironmentMetrics],
) -> Vec<u8> {
    let mut whole = Vec::new();
    render_chunked(options, org, workflows, environments, usize::MAX, |chunk| {
        whole = chunk;
        Ok(())
    });
    whole
}

/// The end of every exposition, written for each scrape: how long this
/// answer took (`started` is when the request began), and OpenMetrics' end.
pub(crate) fn tail(options: &Options, org: &str, started: Instant) -> Vec<u8> {
    let writer = Writer {
        ns: &options.namespace,
        format: options.format,
        created: false,
        protobuf_histograms: options.protobuf_histograms,
    };
    let mut labels = Labels::new(options.format, Vec::new());
    let org = options.format.label_value(org);
    labels.set(&[("org", &org)]);
    let mut out = Out::with_capacity(256);
    let mut family = writer.family("scrape_duration_seconds", SCRAPE_DURATION_HELP, Kind::Gauge);
    family.sample(&mut out, "", &labels, started.elapsed().as_secs_f64());
    let mut tail = out.take(0);
    if options.format == Format::OpenMetrics {
        tail.extend_from_slice(b"# EOF\n");
    }
    tail
}

/// About how long the exposition of `workflows` is, rounded up (with the
/// default buckets, a workflow's lines are ~0.7 KiB and an outcome's ~2.4 KiB,
/// a job's or a job outcome's about as much).
pub(crate) fn estimated_len(workflows: &[WorkflowMetrics]) -> usize {
    let outcomes: usize = workflows
        .iter()
        .map(|w| {
            let jobs: usize = w.jobs.iter().map(|j| 1 + j.durations.len()).sum();
            w.durations.len() + jobs
        })
        .sum();
    512 + workflows.len() * 700 + outcomes * 2800
}

/// The receiver of a chunked exposition is gone (the client hung up).
#[derive(Debug)]
pub(crate) struct Gone;

/// The [`families`] of one organization's workflows, handed to `emit` in
/// chunks of about `chunk_size` bytes (a chunk is cut at the end of a
/// workflow's lines), so that a large one is sent while it is written rather
/// than held whole: 10,000 workflows make ~70 MiB of text. Stops early when
/// `emit` says the receiver is gone.
pub(crate) fn render_chunked(
    options: &Options,
    org: &str,
    workflows: &[WorkflowMetrics],
    environments: &[EnvironmentMetrics],
    chunk_size: usize,
    emit: impl FnMut(Vec<u8>) -> Result<(), Gone>,
) {
    // Room for one workflow's lines past the cut, so a chunk is not
    // reallocated as it fills.
    let capacity = estimated_len(workflows).min(chunk_size.saturating_add(64 * 1024));
    let mut out = Chunks {
        buf: Out::with_capacity(capacity),
        capacity,
        chunk_size,
        emit,
    };
    // Only a receiver that hung up stops the writing.
    let _ = write(options, org, workflows, environments, &mut out);
}

fn write(
    options: &Options,
    org: &str,
    workflows: &[WorkflowMetrics],
    environments: &[EnvironmentMetrics],
    chunks: &mut Chunks<impl FnMut(Vec<u8>) -> Result<(), Gone>>,
) -> Result<(), Gone> {
    let cardinality = &options.cardinality;
    let created = options.created_series && options.format == Format::OpenMetrics;
    let all = workflows.len();
    let shaped = shape::shape(cardinality, workflows);
    let counting = cardinality::Counting {
        created,
        histograms: match (options.format, options.protobuf_histograms) {
            (Format::Protobuf, ProtobufHistograms::Both) => {
                cardinality::Histograms::ClassicAndNative
            }
            (Format::Protobuf, ProtobufHistograms::Native) => cardinality::Histograms::Native,
            _ => cardinality::Histograms::Classic,
        },
    };
    // Environments first: what DORA dashboards read, and few.
    let environments = shape::environments(cardinality, environments);
    let (kept, environments_dropped, reserved) =
        cardinality::admitted_environments(cardinality, counting, &environments);
    let environments = &environments[..kept];
    let (admitted, dropped) = cardinality::admitted(cardinality, counting, &shaped, reserved);
    let dropped = dropped + environments_dropped;
    let workflows = &shaped[..admitted];
    let mut families = Families {
        writer: Writer {
            ns: &options.namespace,
            format: options.format,
            created,
            protobuf_histograms: options.protobuf_histograms,
        },
        org: options.format.label_value(org),
        workflows,
        // Each workflow's names, escaped once for all its series.
        names: workflows
            .iter()
            .map(|w| {
                let value = |name| options.format.label_value(name);
                (value(&w.project), value(&w.workflow))
            })
            .collect(),
        environments,
        environment_names: environments
            .iter()
            .map(|e| {
                let value = |name| options.format.label_value(name);
                (value(&e.project), value(&e.environment))
            })
            .collect(),
        labels: Labels::new(options.format, options.cardinality.dropped_labels()),
        chunks,
    };
    // Each family the configuration keeps, by its name without the namespace.
    macro_rules! family {
        ($name:literal, $write:ident) => {
            if cardinality.enabled($name) {
                families.$write()?;
            }
        };
    }
    // Chainloop's two families first, as Chainloop writes them.
    family!("workflow_up", workflow_up);
    family!("workflow_run_duration_seconds", run_durations);
    family!("workflow_runs_in_progress", runs_in_progress);
    family!("workflow_last_run_timestamp_seconds", last_run_timestamps);
    family!("workflow_last_run_duration_seconds", last_run_durations);
    family!("workflow_runs_total", runs_total);
    family!("workflow_run_queue_seconds", queue_times);
    family!("workflow_flaky_runs_total", flaky_runs);
    family!("workflow_runs_by_attempt_total", runs_by_attempt);
    family!("workflow_runs_queued", runs_queued);
    family!("workflow_job_up", job_up);
    family!("workflow_job_duration_seconds", job_durations);
    family!("workflow_jobs_total", jobs_total);
    family!("workflow_job_queue_seconds", job_queue_times);
    family!("workflow_jobs_queued", jobs_queued);
    family!("deployments_total", deployments);
    family!("deployment_change_failures_total", change_failures);
    family!("deployment_last_timestamp_seconds", last_deployments);
    family!("deployment_lead_time_seconds", lead_times);
    family!("deployments_without_commit_time_total", without_commit_time);
    family!("deployment_time_to_restore_seconds", restore_times);
    family!("environment_up", environment_up);
    families.organization(all, dropped);
    families.chunks.finish()
}

/// What every family of one exposition is written from and into.
struct Families<'a, E> {
    writer: Writer<'a>,
    org: Cow<'a, str>,
    workflows: &'a [WorkflowMetrics],
    /// Each workflow's (project, workflow), escaped.
    names: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    environments: &'a [EnvironmentMetrics],
    /// Each environment's (project, environment), escaped.
    environment_names: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// A sample's labels, rewritten for each.
    labels: Labels,
    chunks: &'a mut Chunks<E>,
}

impl<E: FnMut(Vec<u8>) -> Result<(), Gone>> Families<'_, E> {
    /// The organization's own families: its workflows (`all` of them) and
    /// the series left out by the budget.
    fn organization(&mut self, all: usize, dropped: usize) {
        self.labels.set(&[("org", &self.org)]);
        let out = &mut self.chunks.buf;
        let mut family = self
            .writer
            .family("org_workflows", ORG_WORKFLOWS_HELP, Kind::Gauge);
        family.sample(out, "", &self.labels, all);
        let mut family = self
            .writer
            .family("org_series_dropped", SERIES_DROPPED_HELP, Kind::Gauge);
        family.sample(out, "", &self.labels, dropped);
    }
}

/// The exposition's buffer, handed on whenever it holds a chunk.
struct Chunks<E> {
    buf: Out,
    capacity: usize,
    chunk_size: usize,
    emit: E,
}

impl<E: FnMut(Vec<u8>) -> Result<(), Gone>> Chunks<E> {
    /// Hands the buffer on if it holds a chunk; called between workflows.
    fn cut_if_full(&mut self) -> Result<(), Gone> {
        if self.buf.len() < self.chunk_size {
            return Ok(());
        }
        let full = self.buf.take(self.capacity);
        (self.emit)(full)
    }

    /// Hands on what is left.
    fn finish(&mut self) -> Result<(), Gone> {
        let rest = self.buf.take(0);
        (self.emit)(rest)
    }
}

#[cfg(test)]
mod tests;
