//! Renders an organization's workflow aggregates as a Prometheus exposition,
//! in the text format 0.0.4 or OpenMetrics 1.0, with the two metrics of
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

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use runplane_api::time::from_timestamp;
use runplane_api::workflowrun::v1::{DurationHistogram, RunStatus, WorkflowMetrics};

/// The namespace of Chainloop's metric names, the default.
pub(crate) const DEFAULT_NAMESPACE: &str = "chainloop";

/// Which exposition format to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// `text/plain; version=0.0.4`: what Prometheus falls back to.
    Text,
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` of a response in this format.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// The format a scraper asked for with its `Accept` header, as Prometheus
    /// negotiates: OpenMetrics when listed with a quality at least that of the
    /// text format; the text format otherwise (also without a header).
    pub(crate) fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let (mut openmetrics, mut text) = (0.0f32, 0.0f32);
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default().to_ascii_lowercase();
            let (mut quality, mut version) = (1.0f32, None);
            for param in parts {
                match param.split_once('=') {
                    Some((k, v)) if k.trim().eq_ignore_ascii_case("q") => {
                        quality = v.trim().parse().unwrap_or(0.0);
                    }
                    Some((k, v)) if k.trim().eq_ignore_ascii_case("version") => {
                        version = Some(v.trim().trim_matches('"').to_owned());
                    }
                    _ => {}
                }
            }
            match media.as_str() {
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
        if openmetrics > 0.0 && openmetrics >= text {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

/// How to write: set once from the configuration, then per request.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Prefix of every metric name (`chainloop` by default).
    pub(crate) namespace: String,
    pub(crate) format: Format,
    /// In OpenMetrics, add `_created` series to counters and histograms (the
    /// workflow's creation time: every counter of it was zero then).
    pub(crate) created_series: bool,
}

const UP_HELP: &str = "Indicate if the last run was successful. A run still in progress does \
not count: the value is that of the newest finished run.";
const DURATION_HELP: &str = "Duration of a workflow runs in seconds.";
const IN_PROGRESS_HELP: &str = "Runs of the workflow started and not finished yet.";
const LAST_TIMESTAMP_HELP: &str = "When the newest run of the workflow with each outcome \
finished, in seconds since the Unix epoch.";
const LAST_DURATION_HELP: &str = "Duration of the newest finished run of the workflow that \
reported an outcome (expired runs have none); runs in progress do not count.";
const RUNS_HELP: &str = "Runs of the workflow finished, by outcome and runner; kept when old \
runs are deleted.";
const QUEUE_HELP: &str = "Time runs of the workflow waited for a runner (queued to started), in \
seconds, for runs whose reporter said when they were queued; counted as each run ends.";
const FLAKY_HELP: &str = "Flaky runs of the workflow: successes of a commit after a run of the \
same workflow and commit failed (a later attempt, or a re-run), the first success of each.";
const ORG_WORKFLOWS_HELP: &str = "Workflows of the organization.";
const SCRAPE_DURATION_HELP: &str = "Time spent building this response, in seconds.";

/// The exposition of one organization's workflows, whole. `started` is when
/// the request began: the last family reports how long the whole answer took.
pub(crate) fn render(
    options: &Options,
    org: &str,
    workflows: &[WorkflowMetrics],
    started: Instant,
) -> String {
    let mut whole = String::new();
    render_chunked(options, org, workflows, started, usize::MAX, |chunk| {
        whole = chunk;
        Ok(())
    });
    whole
}

/// About how long the exposition of `workflows` is, rounded up (with the
/// default buckets, a workflow's lines are ~0.7 KiB and an outcome's ~2.4 KiB).
pub(crate) fn estimated_len(workflows: &[WorkflowMetrics]) -> usize {
    let outcomes: usize = workflows.iter().map(|w| w.durations.len()).sum();
    512 + workflows.len() * 700 + outcomes * 2800
}

/// The receiver of a chunked exposition is gone (the client hung up).
#[derive(Debug)]
pub(crate) struct Gone;

/// The exposition of one organization's workflows, handed to `emit` in
/// chunks of about `chunk_size` bytes (a chunk is cut at the end of a
/// workflow's lines), so that a large one is sent while it is written rather
/// than held whole: 10,000 workflows make ~70 MiB of text. Stops early when
/// `emit` says the receiver is gone.
pub(crate) fn render_chunked(
    options: &Options,
    org: &str,
    workflows: &[WorkflowMetrics],
    started: Instant,
    chunk_size: usize,
    emit: impl FnMut(String) -> Result<(), Gone>,
) {
    let mut out = Chunks {
        buf: String::new(),
        // Room for one workflow's lines past the cut, so a chunk is not
        // reallocated as it fills.
        capacity: estimated_len(workflows).min(chunk_size.saturating_add(64 * 1024)),
        chunk_size,
        emit,
    };
    out.buf.reserve(out.capacity);
    // Only a receiver that hung up stops the writing.
    let _ = write(options, org, workflows, started, &mut out);
}

fn write(
    options: &Options,
    org: &str,
    workflows: &[WorkflowMetrics],
    started: Instant,
    chunks: &mut Chunks<impl FnMut(String) -> Result<(), Gone>>,
) -> Result<(), Gone> {
    let mut families = Families {
        writer: Writer {
            ns: &options.namespace,
            format: options.format,
            created: options.created_series && options.format == Format::OpenMetrics,
        },
        org: escape(org),
        workflows,
        // Each workflow's names, escaped once for all its series.
        names: workflows
            .iter()
            .map(|w| (escape(&w.project), escape(&w.workflow)))
            .collect(),
        labels: String::new(),
        chunks,
    };
    // Chainloop's two families first, as Chainloop writes them.
    families.workflow_up()?;
    families.run_durations()?;
    families.runs_in_progress()?;
    families.last_run_timestamps()?;
    families.last_run_durations()?;
    families.runs_total()?;
    families.queue_times()?;
    families.flaky_runs()?;
    families.organization(started);
    if options.format == Format::OpenMetrics {
        families.chunks.buf.push_str("# EOF\n");
    }
    families.chunks.finish()
}

/// What every family of one exposition is written from and into.
struct Families<'a, E> {
    writer: Writer<'a>,
    org: Cow<'a, str>,
    workflows: &'a [WorkflowMetrics],
    /// Each workflow's (project, workflow), escaped.
    names: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// A sample's labels, rewritten for each.
    labels: String,
    chunks: &'a mut Chunks<E>,
}

impl<E: FnMut(String) -> Result<(), Gone>> Families<'_, E> {
    /// `workflow_up`: whether each workflow's last run succeeded.
    fn workflow_up(&mut self) -> Result<(), Gone> {
        let mut family = self.writer.family("workflow_up", UP_HELP, Kind::Gauge);
        for (w, (project, workflow)) in self.workflows.iter().zip(&self.names) {
            self.chunks.cut_if_full()?;
            let Some(last) = &w.last_run else { continue };
            set_labels(
                &mut self.labels,
                &[
                    ("org", &self.org),
                    ("project", project),
                    ("runner", last.runner_type().label()),
                    ("workflow", workflow),
                ],
            );
            let up = u8::from(last.status() == RunStatus::Success);
            family.sample(&mut self.chunks.buf, "", &self.labels, up);
        }
        Ok(())
    }

    /// `workflow_run_duration_seconds`: a histogram per outcome that has
    /// durations (expired runs are counted without one).
    fn run_durations(&mut self) -> Result<(), Gone> {
        let mut family = self.writer.family(
            "workflow_run_duration_seconds",
            DURATION_HELP,
            Kind::Histogram,
        );
        let mut prefix = String::new();
        let mut bound_labels = BoundLabels::new(self.writer.format);
        for (w, (project, workflow)) in self.workflows.iter().zip(&self.names) {
            self.chunks.cut_if_full()?;
            for d in w.durations.iter().filter(|d| d.count > 0) {
                outcome_labels(&mut self.labels, &self.org, project, workflow, d);
                let out = &mut self.chunks.buf;
                family.header(out);
                // Each bucket line is this prefix, a bound, and a count: the
                // bounds are formatted once per distinct list, not once per line.
                prefix.clear();
                prefix.push_str(&family.name);
                prefix.push_str("_bucket{");
                prefix.push_str(&self.labels);
                prefix.push_str(",le=\"");
                let bounds = bound_labels.get(&d.bucket_bounds);
                for (bound, count) in bounds.iter().zip(&d.bucket_counts) {
                    bucket_line(out, &prefix, bound, *count);
                }
                bucket_line(out, &prefix, "+Inf", d.count);
                family.sample(out, "_sum", &self.labels, d.sum_seconds);
                family.sample(out, "_count", &self.labels, d.count);
                if self.writer.created {
                    family.created(out, &self.labels, w);
                }
            }
        }
        Ok(())
    }

    /// `workflow_runs_in_progress`.
    fn runs_in_progress(&mut self) -> Result<(), Gone> {
        let mut family =
            self.writer
                .family("workflow_runs_in_progress", IN_PROGRESS_HELP, Kind::Gauge);
        for (w, (project, workflow)) in self.workflows.iter().zip(&self.names) {
            self.chunks.cut_if_full()?;
            workflow_labels(&mut self.labels, &self.org, project, workflow);
            family.sample(&mut self.chunks.buf, "", &self.labels, w.runs_in_progress);
        }
        Ok(())
    }

    /// `workflow_last_run_timestamp_seconds`: when the newest run of each
    /// status finished, whatever its runner.
    fn last_run_timestamps(&mut self) -> Result<(), Gone> {
        let mut family = self.writer.family(
            "workflow_last_run_timestamp_seconds",
            LAST_TIMESTAMP_HELP,
            Kind::Gauge,
        );
        let mut newest: BTreeMap<&'static str, i64> = BTreeMap::new();
        for (w, (project, workflow)) in self.workflows.iter().zip(&self.names) {
            self.chunks.cut_if_full()?;
            newest.clear();
            for d in &w.durations {
                if let Some(at) = d.last_finish_time.as_ref().map(from_timestamp) {
                    let entry = newest.entry(d.status().label()).or_insert(at);
                    *entry = (*entry).max(at);
                }
            }
            for (status, at) in &newest {
                set_labels(
                    &mut self.labels,
                    &[
                        ("org", &self.org),
                        ("project", project),
                        ("status", status),
                        ("workflow", workflow),
                    ],
                );
                family.sample(&mut self.chunks.buf, "", &self.labels, Seconds(*at));
            }
        }
        Ok(())
    }

    /// `workflow_last_run_duration_seconds`: how long the newest run that
    /// reported an outcome took.
    fn last_run_durations(&mut self) -> Result<(), Gone> {
        let mut family = self.writer.family(
            "workflow_last_run_duration_seconds",
            LAST_DURATION_HELP,
            Kind::Gauge,
        );
        for (w, (project, workflow)) in self.workflows.iter().zip(&self.names) {
            self.chunks.cut_if_full()?;
            let Some(seconds) = w.last_run.as_ref().and_then(|l| l.duration_seconds) else {
                continue;
            };
            workflow_labels(&mut self.labels, &self.org, project, workflow);
            family.sample(&mut self.chunks.buf, "", &self.labels, seconds);
        }
        Ok(())
    }

    /// `workflow_runs_total`, by outcome and runner.
    fn runs_total(&mut self) -> Result<(), Gone> {
        let mut family = self
            .writer
            .family("workflow_runs", RUNS_HELP, Kind::Counter);
        for (w, (project, workflow)) in self.workflows.iter().zip(&self.names) {
            self.chunks.cut_if_full()?;
            for d in &w.durations {
                outcome_labels(&mut self.labels, &self.org, project, workflow, d);
                family.sample(&mut self.chunks.buf, "_total", &self.labels, d.runs_total);
                if self.writer.created {
                    family.created(&mut self.chunks.buf, &self.labels, w);
                }
            }
        }
        Ok(())
    }

    /// `workflow_flaky_runs_total`, for the workflows that have had one.
    fn flaky_runs(&mut self) -> Result<(), Gone> {
        let mut family = self
            .writer
            .family("workflow_flaky_runs", FLAKY_HELP, Kind::Counter);
        for (w, (project, workflow)) in self.workflows.iter().zip(&self.names) {
            self.chunks.cut_if_full()?;
            if w.flaky_runs == 0 {
                continue;
            }
            workflow_labels(&mut self.labels, &self.org, project, workflow);
            family.sample(&mut self.chunks.buf, "_total", &self.labels, w.flaky_runs);
            if self.writer.created {
                family.created(&mut self.chunks.buf, &self.labels, w);
            }
        }
        Ok(())
    }

    /// `workflow_run_queue_seconds`: how long runs waited for a runner, for
    /// the workflows whose reporters said.
    fn queue_times(&mut self) -> Result<(), Gone> {
        let mut family =
            self.writer
                .family("workflow_run_queue_seconds", QUEUE_HELP, Kind::Histogram);
        let mut prefix = String::new();
        let mut bound_labels = BoundLabels::new(self.writer.format);
        for (w, (project, workflow)) in self.workflows.iter().zip(&self.names) {
            self.chunks.cut_if_full()?;
            let Some(queue) = w.queue.as_ref().filter(|q| q.count > 0) else {
                continue;
            };
            workflow_labels(&mut self.labels, &self.org, project, workflow);
            let out = &mut self.chunks.buf;
            family.header(out);
            prefix.clear();
            prefix.push_str(&family.name);
            prefix.push_str("_bucket{");
            prefix.push_str(&self.labels);
            prefix.push_str(",le=\"");
            let bounds = bound_labels.get(&queue.bucket_bounds);
            for (bound, count) in bounds.iter().zip(&queue.bucket_counts) {
                bucket_line(out, &prefix, bound, *count);
            }
            bucket_line(out, &prefix, "+Inf", queue.count);
            family.sample(out, "_sum", &self.labels, queue.sum_seconds);
            family.sample(out, "_count", &self.labels, queue.count);
            if self.writer.created {
                family.created(out, &self.labels, w);
            }
        }
        Ok(())
    }

    /// The organization's own families: its workflows, and how long this
    /// answer took (`started` is when the request began).
    fn organization(&mut self, started: Instant) {
        set_labels(&mut self.labels, &[("org", &self.org)]);
        let out = &mut self.chunks.buf;
        let mut family = self
            .writer
            .family("org_workflows", ORG_WORKFLOWS_HELP, Kind::Gauge);
        family.sample(out, "", &self.labels, self.workflows.len());
        let mut family =
            self.writer
                .family("scrape_duration_seconds", SCRAPE_DURATION_HELP, Kind::Gauge);
        family.sample(out, "", &self.labels, started.elapsed().as_secs_f64());
    }
}

/// The exposition's buffer, handed on whenever it holds a chunk.
struct Chunks<E> {
    buf: String,
    capacity: usize,
    chunk_size: usize,
    emit: E,
}

impl<E: FnMut(String) -> Result<(), Gone>> Chunks<E> {
    /// Hands the buffer on if it holds a chunk; called between workflows.
    fn cut_if_full(&mut self) -> Result<(), Gone> {
        if self.buf.len() < self.chunk_size {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.buf, String::with_capacity(self.capacity));
        (self.emit)(full)
    }

    /// Hands on what is left.
    fn finish(&mut self) -> Result<(), Gone> {
        (self.emit)(std::mem::take(&mut self.buf))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gauge,
    Counter,
    Histogram,
}

struct Writer<'a> {
    ns: &'a str,
    format: Format,
    created: bool,
}

impl Writer<'_> {
    /// A family whose HELP/TYPE lines are written before its first sample
    /// (a family without samples is left out, as the prometheus crate does).
    fn family(&self, name: &str, help: &'static str, kind: Kind) -> Family {
        // OpenMetrics names a counter family without `_total`; the text
        // format names it after its samples.
        let base = format!("{}_{name}", self.ns);
        let family_name = match (kind, self.format) {
            (Kind::Counter, Format::Text) => format!("{base}_total"),
            _ => base.clone(),
        };
        Family {
            name: base,
            family_name,
            help,
            kind,
            written: false,
        }
    }
}

struct Family {
    /// Prefix of the sample names.
    name: String,
    /// Name on the HELP and TYPE lines.
    family_name: String,
    help: &'static str,
    kind: Kind,
    written: bool,
}

impl Family {
    fn header(&mut self, out: &mut String) {
        if self.written {
            return;
        }
        self.written = true;
        let kind = match self.kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
            Kind::Histogram => "histogram",
        };
        let name = &self.family_name;
        let _ = writeln!(out, "# HELP {name} {}\n# TYPE {name} {kind}", self.help);
    }

    fn sample(
        &mut self,
        out: &mut String,
        suffix: &str,
        labels: &str,
        value: impl std::fmt::Display,
    ) {
        self.header(out);
        // Plain pushes: the formatter's cost per argument adds up over the
        // tens of thousands of lines of a large organization.
        out.push_str(&self.name);
        out.push_str(suffix);
        out.push('{');
        out.push_str(labels);
        out.push_str("} ");
        let _ = writeln!(out, "{value}");
    }

    fn created(&mut self, out: &mut String, labels: &str, w: &WorkflowMetrics) {
        if let Some(at) = w.create_time.as_ref().map(from_timestamp) {
            let _ = writeln!(out, "{}_created{{{labels}}} {}", self.name, Seconds(at));
        }
    }
}

/// One bucket line: `prefix` ends in `le="`.
fn bucket_line(out: &mut String, prefix: &str, bound: &str, count: u64) {
    out.push_str(prefix);
    out.push_str(bound);
    out.push_str("\"} ");
    out.push_str(itoa::Buffer::new().format(count));
    out.push('\n');
}

/// The `le` values of the last list of bucket bounds seen: every histogram of
/// a workflow-run-service shares one list, so each bound is formatted once.
struct BoundLabels {
    format: Format,
    bounds: Vec<f64>,
    text: Vec<String>,
}

impl BoundLabels {
    fn new(format: Format) -> Self {
        BoundLabels {
            format,
            bounds: Vec::new(),
            text: Vec::new(),
        }
    }

    fn get(&mut self, bounds: &[f64]) -> &[String] {
        if self.bounds != bounds {
            self.bounds = bounds.to_vec();
            self.text = bounds
                .iter()
                .map(|b| Bound(*b, self.format).to_string())
                .collect();
        }
        &self.text
    }
}

/// `org`, `project`, `workflow`: the labels of a per-workflow series.
fn workflow_labels(labels: &mut String, org: &str, project: &str, workflow: &str) {
    set_labels(
        labels,
        &[("org", org), ("project", project), ("workflow", workflow)],
    );
}

/// `org`, `project`, `runner`, `status`, `workflow`: the labels of an
/// outcome's series.
fn outcome_labels(
    labels: &mut String,
    org: &str,
    project: &str,
    workflow: &str,
    outcome: &DurationHistogram,
) {
    set_labels(
        labels,
        &[
            ("org", org),
            ("project", project),
            ("runner", outcome.runner_type().label()),
            ("status", outcome.status().label()),
            ("workflow", workflow),
        ],
    );
}

/// `labels` becomes `name="value",…`; the values are escaped already. Plain
/// pushes: the formatter's cost per argument adds up over the tens of
/// thousands of series of a large organization.
fn set_labels(labels: &mut String, pairs: &[(&str, &str)]) {
    labels.clear();
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            labels.push(',');
        }
        labels.push_str(name);
        labels.push_str("=\"");
        labels.push_str(value);
        labels.push('"');
    }
}

/// Milliseconds since the epoch, written as seconds (`1732450000.5`).
struct Seconds(i64);

impl std::fmt::Display for Seconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0 as f64 / 1000.0)
    }
}

/// A bucket bound: as the prometheus crate writes it in the text format
/// (`10`), and as OpenMetrics' canonical form wants it (`10.0`).
struct Bound(f64, Format);

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.1 {
            Format::OpenMetrics if self.0.fract() == 0.0 => write!(f, "{:.1}", self.0),
            _ => write!(f, "{}", self.0),
        }
    }
}

/// A label value as both formats want it: `\\`, `"` and newlines escaped.
fn escape(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return std::borrow::Cow::Borrowed(value);
    }
    let mut escaped = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    std::borrow::Cow::Owned(escaped)
}

#[cfg(test)]
mod tests;
