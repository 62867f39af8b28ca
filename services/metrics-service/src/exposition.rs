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
    let writer = Writer {
        ns: &options.namespace,
        format: options.format,
        created: options.created_series && options.format == Format::OpenMetrics,
    };
    let org = escape(org);
    let org = org.as_ref();
    // Each workflow's names, escaped once for all its series.
    let escaped: Vec<(Cow<'_, str>, Cow<'_, str>)> = workflows
        .iter()
        .map(|w| (escape(&w.project), escape(&w.workflow)))
        .collect();
    let mut labels = String::new();
    let mut prefix = String::new();
    let mut bound_labels = BoundLabels::new(writer.format);

    // Chainloop's two families first, as Chainloop writes them.
    let mut family = writer.family("workflow_up", UP_HELP, Kind::Gauge);
    for (w, (project, workflow)) in workflows.iter().zip(&escaped) {
        chunks.cut_if_full()?;
        let Some(last) = &w.last_run else { continue };
        set_labels(
            &mut labels,
            &[
                ("org", org),
                ("project", project),
                ("runner", last.runner_type().label()),
                ("workflow", workflow),
            ],
        );
        let up = u8::from(last.status() == RunStatus::Success);
        family.sample(&mut chunks.buf, "", &labels, up);
    }

    let mut family = writer.family(
        "workflow_run_duration_seconds",
        DURATION_HELP,
        Kind::Histogram,
    );
    for (w, (project, workflow)) in workflows.iter().zip(&escaped) {
        chunks.cut_if_full()?;
        // Expired runs are counted without a duration: no histogram of their own.
        for d in w.durations.iter().filter(|d| d.count > 0) {
            outcome_labels(&mut labels, org, project, workflow, d);
            family.header(&mut chunks.buf);
            // Each bucket line is this prefix, a bound, and a count: the
            // bounds are formatted once per distinct list, not once per line.
            prefix.clear();
            prefix.push_str(&family.name);
            prefix.push_str("_bucket{");
            prefix.push_str(&labels);
            prefix.push_str(",le=\"");
            let bounds = bound_labels.get(&d.bucket_bounds);
            for (bound, count) in bounds.iter().zip(&d.bucket_counts) {
                bucket_line(&mut chunks.buf, &prefix, bound, *count);
            }
            bucket_line(&mut chunks.buf, &prefix, "+Inf", d.count);
            family.sample(&mut chunks.buf, "_sum", &labels, d.sum_seconds);
            family.sample(&mut chunks.buf, "_count", &labels, d.count);
            if writer.created {
                family.created(&mut chunks.buf, &labels, w);
            }
        }
    }

    let mut family = writer.family("workflow_runs_in_progress", IN_PROGRESS_HELP, Kind::Gauge);
    for (w, (project, workflow)) in workflows.iter().zip(&escaped) {
        chunks.cut_if_full()?;
        workflow_labels(&mut labels, org, project, workflow);
        family.sample(&mut chunks.buf, "", &labels, w.runs_in_progress);
    }

    let mut family = writer.family(
        "workflow_last_run_timestamp_seconds",
        LAST_TIMESTAMP_HELP,
        Kind::Gauge,
    );
    let mut newest: BTreeMap<&'static str, i64> = BTreeMap::new();
    for (w, (project, workflow)) in workflows.iter().zip(&escaped) {
        chunks.cut_if_full()?;
        newest.clear();
        for d in &w.durations {
            if let Some(at) = d.last_finish_time.as_ref().map(from_timestamp) {
                let entry = newest.entry(d.status().label()).or_insert(at);
                *entry = (*entry).max(at);
            }
        }
        for (status, at) in &newest {
            set_labels(
                &mut labels,
                &[
                    ("org", org),
                    ("project", project),
                    ("status", status),
                    ("workflow", workflow),
                ],
            );
            family.sample(&mut chunks.buf, "", &labels, Seconds(*at));
        }
    }

    let mut family = writer.family(
        "workflow_last_run_duration_seconds",
        LAST_DURATION_HELP,
        Kind::Gauge,
    );
    for (w, (project, workflow)) in workflows.iter().zip(&escaped) {
        chunks.cut_if_full()?;
        let Some(seconds) = w.last_run.as_ref().and_then(|l| l.duration_seconds) else {
            continue;
        };
        workflow_labels(&mut labels, org, project, workflow);
        family.sample(&mut chunks.buf, "", &labels, seconds);
    }

    let mut family = writer.family("workflow_runs", RUNS_HELP, Kind::Counter);
    for (w, (project, workflow)) in workflows.iter().zip(&escaped) {
        chunks.cut_if_full()?;
        for d in &w.durations {
            outcome_labels(&mut labels, org, project, workflow, d);
            family.sample(&mut chunks.buf, "_total", &labels, d.runs_total);
            if writer.created {
                family.created(&mut chunks.buf, &labels, w);
            }
        }
    }

    set_labels(&mut labels, &[("org", org)]);
    let mut family = writer.family("org_workflows", ORG_WORKFLOWS_HELP, Kind::Gauge);
    family.sample(&mut chunks.buf, "", &labels, workflows.len());
    let mut family = writer.family("scrape_duration_seconds", SCRAPE_DURATION_HELP, Kind::Gauge);
    family.sample(
        &mut chunks.buf,
        "",
        &labels,
        started.elapsed().as_secs_f64(),
    );

    if writer.format == Format::OpenMetrics {
        chunks.buf.push_str("# EOF\n");
    }
    chunks.finish()
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

/// The text exposition through the `prometheus` crate's families and encoder,
/// in the same family order: the reference [`render`] must match.
#[cfg(test)]
fn reference_text(ns: &str, org: &str, workflows: &[WorkflowMetrics]) -> String {
    use prometheus::proto::{Bucket, Counter, Gauge, Histogram, Metric, MetricType};
    let gauge = |value: f64, pairs: &[(&str, &str)]| {
        let mut g = Gauge::default();
        g.set_value(value);
        let mut m = Metric::from_gauge(g);
        m.set_label(labels(pairs));
        m
    };
    let (mut up, mut durations, mut in_progress, mut last_at, mut last_duration, mut runs) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for w in workflows {
        let base = [("org", org), ("project", w.project.as_str())];
        if let Some(last) = &w.last_run {
            let value = f64::from(u8::from(last.status() == RunStatus::Success));
            up.push(gauge(
                value,
                &[
                    base[0],
                    base[1],
                    ("runner", last.runner_type().label()),
                    ("workflow", &w.workflow),
                ],
            ));
            if let Some(seconds) = last.duration_seconds {
                last_duration.push(gauge(
                    seconds,
                    &[base[0], base[1], ("workflow", &w.workflow)],
                ));
            }
        }
        in_progress.push(gauge(
            f64::from(w.runs_in_progress),
            &[base[0], base[1], ("workflow", &w.workflow)],
        ));
        let mut newest: BTreeMap<&str, i64> = BTreeMap::new();
        for d in &w.durations {
            let pairs = [
                base[0],
                base[1],
                ("runner", d.runner_type().label()),
                ("status", d.status().label()),
                ("workflow", w.workflow.as_str()),
            ];
            if let Some(at) = d.last_finish_time.as_ref().map(from_timestamp) {
                let entry = newest.entry(d.status().label()).or_insert(at);
                *entry = (*entry).max(at);
            }
            let mut counter = Counter::default();
            counter.set_value(d.runs_total as f64);
            let mut m = Metric::default();
            m.set_counter(counter);
            m.set_label(labels(&pairs));
            runs.push(m);
            if d.count == 0 {
                continue;
            }
            let mut histogram = Histogram::default();
            histogram.set_sample_count(d.count);
            histogram.set_sample_sum(d.sum_seconds);
            histogram.set_bucket(
                d.bucket_bounds
                    .iter()
                    .zip(&d.bucket_counts)
                    .map(|(bound, count)| {
                        let mut bucket = Bucket::default();
                        bucket.set_upper_bound(*bound);
                        bucket.set_cumulative_count(*count);
                        bucket
                    })
                    .collect(),
            );
            let mut m = Metric::default();
            m.set_histogram(histogram);
            m.set_label(labels(&pairs));
            durations.push(m);
        }
        for (status, at) in newest {
            last_at.push(gauge(
                at as f64 / 1000.0,
                &[
                    base[0],
                    base[1],
                    ("status", status),
                    ("workflow", &w.workflow),
                ],
            ));
        }
    }
    let org_workflows = vec![gauge(workflows.len() as f64, &[("org", org)])];
    let mut families = Vec::new();
    for (name, help, kind, metrics) in [
        ("workflow_up", UP_HELP, MetricType::GAUGE, up),
        (
            "workflow_run_duration_seconds",
            DURATION_HELP,
            MetricType::HISTOGRAM,
            durations,
        ),
        (
            "workflow_runs_in_progress",
            IN_PROGRESS_HELP,
            MetricType::GAUGE,
            in_progress,
        ),
        (
            "workflow_last_run_timestamp_seconds",
            LAST_TIMESTAMP_HELP,
            MetricType::GAUGE,
            last_at,
        ),
        (
            "workflow_last_run_duration_seconds",
            LAST_DURATION_HELP,
            MetricType::GAUGE,
            last_duration,
        ),
        ("workflow_runs_total", RUNS_HELP, MetricType::COUNTER, runs),
        (
            "org_workflows",
            ORG_WORKFLOWS_HELP,
            MetricType::GAUGE,
            org_workflows,
        ),
    ] {
        // The encoder refuses empty families; an absent family is what we write.
        if metrics.is_empty() {
            continue;
        }
        let mut family = prometheus::proto::MetricFamily::default();
        family.set_name(format!("{ns}_{name}"));
        family.set_help(help.to_owned());
        family.set_field_type(kind);
        family.set_metric(metrics);
        families.push(family);
    }
    prometheus::TextEncoder::new()
        .encode_to_string(&families)
        .expect("encode")
}

/// Label pairs, given in name order (the exposition keeps the order given).
#[cfg(test)]
fn labels(pairs: &[(&str, &str)]) -> Vec<prometheus::proto::LabelPair> {
    pairs
        .iter()
        .map(|(name, value)| {
            let mut pair = prometheus::proto::LabelPair::default();
            pair.set_name((*name).to_owned());
            pair.set_value((*value).to_owned());
            pair
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use runplane_api::time::timestamp;
    use runplane_api::workflowrun::v1::{DurationHistogram, LastRun, RunnerType};

    fn options(format: Format) -> Options {
        Options {
            namespace: DEFAULT_NAMESPACE.to_owned(),
            format,
            created_series: false,
        }
    }

    fn text(org: &str, workflows: &[WorkflowMetrics]) -> String {
        render(&options(Format::Text), org, workflows, Instant::now())
    }

    pub(super) fn workflow(name: &str, status: RunStatus) -> WorkflowMetrics {
        WorkflowMetrics {
            workflow_id: "id".into(),
            project: "default".into(),
            workflow: name.into(),
            last_run: Some(LastRun {
                status: status.into(),
                runner_type: RunnerType::GithubAction.into(),
                finish_time: Some(timestamp(1_732_450_000_500)),
                duration_seconds: Some(42.5),
            }),
            durations: vec![DurationHistogram {
                status: status.into(),
                runner_type: RunnerType::GithubAction.into(),
                count: 3,
                sum_seconds: 75.5,
                bucket_bounds: vec![10.0, 30.0],
                bucket_counts: vec![1, 2],
                runs_total: 3,
                last_finish_time: Some(timestamp(1_732_450_000_500)),
            }],
            runs_in_progress: 2,
            create_time: Some(timestamp(1_700_000_000_000)),
        }
    }

    /// Everything but the scrape duration, whose value changes every time.
    fn without_scrape_duration(text: &str) -> String {
        text.lines()
            .filter(|l| !l.contains("scrape_duration_seconds"))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    #[test]
    fn renders_chainloop_compatible_series() {
        let text = text(
            "cyberdyne",
            &[workflow("backend-release-production", RunStatus::Success)],
        );
        assert!(
            text.contains("# HELP chainloop_workflow_up Indicate if the last run was successful.")
        );
        assert!(text.contains("# TYPE chainloop_workflow_up gauge\n"));
        assert!(text.contains(
            "chainloop_workflow_up{org=\"cyberdyne\",project=\"default\",runner=\"GITHUB_ACTION\",workflow=\"backend-release-production\"} 1\n"
        ));
        assert!(text.contains("# HELP chainloop_workflow_run_duration_seconds Duration of a workflow runs in seconds.\n"));
        let labels = "org=\"cyberdyne\",project=\"default\",runner=\"GITHUB_ACTION\",status=\"success\",workflow=\"backend-release-production\"";
        for line in [
            format!("chainloop_workflow_run_duration_seconds_bucket{{{labels},le=\"10\"}} 1\n"),
            format!("chainloop_workflow_run_duration_seconds_bucket{{{labels},le=\"30\"}} 2\n"),
            format!("chainloop_workflow_run_duration_seconds_bucket{{{labels},le=\"+Inf\"}} 3\n"),
            format!("chainloop_workflow_run_duration_seconds_sum{{{labels}}} 75.5\n"),
            format!("chainloop_workflow_run_duration_seconds_count{{{labels}}} 3\n"),
            format!("chainloop_workflow_runs_total{{{labels}}} 3\n"),
            "chainloop_workflow_runs_in_progress{org=\"cyberdyne\",project=\"default\",workflow=\"backend-release-production\"} 2\n".into(),
            "chainloop_workflow_last_run_timestamp_seconds{org=\"cyberdyne\",project=\"default\",status=\"success\",workflow=\"backend-release-production\"} 1732450000.5\n".into(),
            "chainloop_workflow_last_run_duration_seconds{org=\"cyberdyne\",project=\"default\",workflow=\"backend-release-production\"} 42.5\n".into(),
            "# TYPE chainloop_workflow_runs_total counter\n".into(),
            "chainloop_org_workflows{org=\"cyberdyne\"} 1\n".into(),
            "# TYPE chainloop_scrape_duration_seconds gauge\n".into(),
        ] {
            assert!(text.contains(&line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains("# EOF"));
        assert!(!text.contains("_created"));
    }

    #[test]
    fn failed_last_run_is_zero_and_a_fresh_workflow_has_only_its_gauges() {
        let text = text("o", &[workflow("w", RunStatus::Error)]);
        assert!(text.contains("chainloop_workflow_up{org=\"o\",project=\"default\",runner=\"GITHUB_ACTION\",workflow=\"w\"} 0\n"));
        let fresh = WorkflowMetrics {
            workflow: "never-finished".into(),
            project: "default".into(),
            runs_in_progress: 1,
            ..WorkflowMetrics::default()
        };
        let text = super::render(&options(Format::Text), "o", &[fresh], Instant::now());
        assert!(!text.contains("chainloop_workflow_up"), "{text}");
        assert!(!text.contains("chainloop_workflow_run_duration"), "{text}");
        assert!(text.contains("chainloop_workflow_runs_in_progress{org=\"o\",project=\"default\",workflow=\"never-finished\"} 1\n"));
        assert!(text.contains("chainloop_org_workflows{org=\"o\"} 1\n"));
    }

    fn assorted() -> Vec<WorkflowMetrics> {
        let mut several = vec![
            workflow("a", RunStatus::Success),
            workflow("b \"quoted\" \\ back\nslash", RunStatus::Error),
            WorkflowMetrics {
                workflow: "never-finished".into(),
                project: "p".into(),
                ..WorkflowMetrics::default()
            },
        ];
        let mut two = workflow("two-outcomes", RunStatus::Canceled);
        two.durations.push(DurationHistogram {
            status: RunStatus::Error.into(),
            runner_type: RunnerType::Unspecified.into(),
            count: 1,
            sum_seconds: 0.25,
            bucket_bounds: vec![0.5, 2.5, 1e9],
            bucket_counts: vec![1, 1, 1],
            runs_total: 1,
            last_finish_time: Some(timestamp(1_732_450_001_000)),
        });
        // Expired runs: counted, no histogram.
        two.durations.push(DurationHistogram {
            status: RunStatus::Expired.into(),
            runner_type: RunnerType::Unspecified.into(),
            runs_total: 4,
            last_finish_time: Some(timestamp(1_732_450_002_000)),
            ..DurationHistogram::default()
        });
        several.push(two);
        several
    }

    #[test]
    fn the_direct_writer_matches_the_prometheus_crates_encoder_byte_for_byte() {
        let several = assorted();
        for (org, workflows) in [
            ("cyberdyne", &several[..]),
            ("o", &several[..1]),
            ("o", &several[2..3]),
            ("empty", &[][..]),
        ] {
            let reference = reference_text(DEFAULT_NAMESPACE, org, workflows);
            assert_eq!(
                without_scrape_duration(&text(org, workflows)),
                reference,
                "{org}"
            );
        }
        let renamed = Options {
            namespace: "ci".into(),
            ..options(Format::Text)
        };
        let text = render(&renamed, "o", &several, Instant::now());
        assert_eq!(
            without_scrape_duration(&text),
            reference_text("ci", "o", &several)
        );
        assert!(text.contains("# TYPE ci_scrape_duration_seconds gauge"));
    }

    #[test]
    fn chunks_join_to_the_whole_exposition_and_stop_when_the_receiver_is_gone() {
        let several = assorted();
        for format in [Format::Text, Format::OpenMetrics] {
            let whole =
                without_scrape_duration(&render(&options(format), "o", &several, Instant::now()));
            let mut chunks = Vec::new();
            render_chunked(&options(format), "o", &several, Instant::now(), 1, |c| {
                chunks.push(c);
                Ok(())
            });
            // Cut between workflows, so more chunks than families, each of
            // whole lines.
            assert!(chunks.len() > 8, "{} chunks", chunks.len());
            assert!(chunks.iter().all(|c| c.ends_with('\n')), "{chunks:?}");
            assert_eq!(without_scrape_duration(&chunks.concat()), whole);

            let mut handed = 0;
            render_chunked(&options(format), "o", &several, Instant::now(), 1, |_| {
                handed += 1;
                if handed == 2 { Err(Gone) } else { Ok(()) }
            });
            assert_eq!(handed, 2, "nothing is written after the receiver is gone");
        }
    }

    #[test]
    fn openmetrics_names_counters_without_total_ends_with_eof_and_adds_created_on_request() {
        let several = assorted();
        let om = render(&options(Format::OpenMetrics), "o", &several, Instant::now());
        assert!(om.ends_with("# EOF\n"), "{om}");
        assert!(
            om.contains("# TYPE chainloop_workflow_runs counter\n"),
            "{om}"
        );
        assert!(
            om.contains("chainloop_workflow_runs_total{org=\"o\","),
            "{om}"
        );
        assert!(om.contains("le=\"10.0\"}"), "{om}");
        assert!(om.contains("le=\"1000000000.0\"}"), "{om}");
        assert!(!om.contains("_created"), "{om}");
        let with_created = Options {
            created_series: true,
            ..options(Format::OpenMetrics)
        };
        let om = render(&with_created, "o", &several, Instant::now());
        assert!(om.contains("chainloop_workflow_runs_created{org=\"o\",project=\"default\",runner=\"GITHUB_ACTION\",status=\"success\",workflow=\"a\"} 1700000000\n"), "{om}");
        assert!(
            om.contains("chainloop_workflow_run_duration_seconds_created{"),
            "{om}"
        );
        // Text never gets them.
        let text = render(
            &Options {
                format: Format::Text,
                ..with_created
            },
            "o",
            &several,
            Instant::now(),
        );
        assert!(!text.contains("_created"));
    }

    #[test]
    fn negotiation_follows_prometheus() {
        let prometheus = "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text")),
            Format::OpenMetrics
        );
        for text in [
            None,
            Some("*/*"),
            Some("text/plain"),
            Some("text/plain;version=0.0.4;q=1,application/openmetrics-text;q=0.5"),
            Some("application/openmetrics-text;version=2.0.0"),
            Some("application/openmetrics-text;q=0"),
            Some("application/json"),
        ] {
            assert_eq!(Format::negotiate(text), Format::Text, "{text:?}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let name = "say \"hi\"\\\nbye";
        let text = text("o", &[workflow(name, RunStatus::Success)]);
        assert!(
            text.contains(r#"workflow="say \"hi\"\\\nbye""#),
            "escaping wrong in\n{text}"
        );
        // Every sample is still one line.
        assert!(
            text.lines()
                .all(|l| l.starts_with('#') || l.starts_with("chainloop_")),
            "{text}"
        );
    }
}

/// Property tests: the writer over arbitrary names.
#[cfg(test)]
mod properties {
    use super::tests::workflow;
    use super::*;
    use proptest::prelude::*;
    use runplane_api::workflowrun::v1::RunStatus;

    fn without_scrape_duration(text: &str) -> String {
        text.lines()
            .filter(|l| !l.contains("scrape_duration_seconds"))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// Whatever the names (quotes, backslashes, new lines, any unicode),
        /// the output is what the prometheus crate's own encoder writes.
        #[test]
        fn any_names_are_written_as_the_reference_encoder_writes_them(
            names in proptest::collection::vec(("(\\PC|[\"\\\\\n])*", "(\\PC|[\"\\\\\n])*"), 0..4),
            failed in any::<bool>(),
        ) {
            let status = if failed { RunStatus::Error } else { RunStatus::Success };
            let workflows: Vec<WorkflowMetrics> = names
                .iter()
                .map(|(project, name)| WorkflowMetrics {
                    project: project.clone(),
                    ..workflow(name, status)
                })
                .collect();
            let options = Options {
                namespace: DEFAULT_NAMESPACE.into(),
                format: Format::Text,
                created_series: false,
            };
            let text = render(&options, "cyberdyne", &workflows, Instant::now());
            prop_assert_eq!(
                without_scrape_duration(&text),
                reference_text(DEFAULT_NAMESPACE, "cyberdyne", &workflows)
            );
        }
    }
}
