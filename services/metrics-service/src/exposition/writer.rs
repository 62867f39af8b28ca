//! The lines of an exposition: a family's HELP and TYPE, its samples, a
//! histogram's buckets, label sets and their escaping, numbers as each format
//! wants them. Plain pushes rather than the formatter wherever a line is
//! written per series: its cost per argument adds up over the tens of
//! thousands of series of a large organization.

use std::fmt::Write as _;

use runplane_api::time::from_timestamp;
use runplane_api::workflowrun::v1::{Exemplar, WorkflowMetrics};

use super::Format;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Gauge,
    Counter,
    Histogram,
}

/// How every family of one exposition is named and written.
pub(super) struct Writer<'a> {
    pub(super) ns: &'a str,
    pub(super) format: Format,
    /// Write `_created` series (OpenMetrics, when asked for).
    pub(super) created: bool,
}

impl Writer<'_> {
    /// A family whose HELP/TYPE lines are written before its first sample
    /// (a family without samples is left out, as the prometheus crate does).
    pub(super) fn family(&self, name: &str, help: &'static str, kind: Kind) -> Family {
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
            created: self.created,
            prefix: String::new(),
            bounds: BoundLabels::new(self.format),
        }
    }
}

/// One family being written.
pub(super) struct Family {
    /// Prefix of the sample names.
    pub(super) name: String,
    /// Name on the HELP and TYPE lines.
    family_name: String,
    help: &'static str,
    kind: Kind,
    written: bool,
    created: bool,
    /// A histogram's bucket line up to its bound, rewritten per series.
    prefix: String,
    bounds: BoundLabels,
}

/// A cumulative histogram's values, as the aggregates keep them.
pub(super) struct Buckets<'a> {
    pub(super) bounds: &'a [f64],
    /// Cumulative count for each bound.
    pub(super) counts: &'a [u64],
    pub(super) count: u64,
    pub(super) sum: f64,
    /// The newest run of some buckets, in bucket order (written in OpenMetrics only).
    pub(super) exemplars: &'a [Exemplar],
}

impl Family {
    pub(super) fn header(&mut self, out: &mut String) {
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

    pub(super) fn sample(
        &mut self,
        out: &mut String,
        suffix: &str,
        labels: &str,
        value: impl std::fmt::Display,
    ) {
        self.header(out);
        out.push_str(&self.name);
        out.push_str(suffix);
        out.push('{');
        out.push_str(labels);
        out.push_str("} ");
        let _ = writeln!(out, "{value}");
    }

    /// A counter's `_total` sample, and its `_created` one when asked for.
    pub(super) fn counter(
        &mut self,
        out: &mut String,
        labels: &str,
        value: u64,
        w: &WorkflowMetrics,
    ) {
        self.sample(out, "_total", labels, value);
        self.created(out, labels, w);
    }

    /// One histogram series: its buckets, `+Inf`, sum and count, and
    /// `_created` when asked for.
    pub(super) fn histogram(
        &mut self,
        out: &mut String,
        labels: &str,
        buckets: &Buckets<'_>,
        w: &WorkflowMetrics,
    ) {
        self.header(out);
        // Each bucket line is this prefix, a bound, and a count: the bounds
        // are formatted once per distinct list, not once per line.
        self.prefix.clear();
        self.prefix.push_str(&self.name);
        self.prefix.push_str("_bucket{");
        self.prefix.push_str(labels);
        self.prefix.push_str(",le=\"");
        let exemplars = match self.bounds.format {
            Format::OpenMetrics => buckets.exemplars,
            Format::Text => &[],
        };
        let mut exemplars = exemplars.iter().peekable();
        let mut exemplar_of = |bucket: usize| {
            let bucket = u32::try_from(bucket).unwrap_or(u32::MAX);
            while exemplars.next_if(|e| e.bucket < bucket).is_some() {}
            exemplars.next_if(|e| e.bucket == bucket)
        };
        let bounds = self.bounds.get(buckets.bounds);
        for (i, (bound, count)) in bounds.iter().zip(buckets.counts).enumerate() {
            bucket_line(out, &self.prefix, bound, *count, exemplar_of(i));
        }
        let infinite = exemplar_of(buckets.bounds.len());
        bucket_line(out, &self.prefix, "+Inf", buckets.count, infinite);
        self.sample(out, "_sum", labels, buckets.sum);
        self.sample(out, "_count", labels, buckets.count);
        self.created(out, labels, w);
    }

    /// The `_created` sample of a counter or histogram series (OpenMetrics,
    /// when asked for): the workflow's creation, when every counter of it
    /// was zero.
    fn created(&mut self, out: &mut String, labels: &str, w: &WorkflowMetrics) {
        if !self.created {
            return;
        }
        if let Some(at) = w.create_time.as_ref().map(from_timestamp) {
            let _ = writeln!(out, "{}_created{{{labels}}} {}", self.name, Seconds(at));
        }
    }
}

/// One bucket line: `prefix` ends in `le="`; with its exemplar, OpenMetrics'
/// ` # {run_id="…",trace_id="…"} VALUE TIMESTAMP`.
fn bucket_line(
    out: &mut String,
    prefix: &str,
    bound: &str,
    count: u64,
    exemplar: Option<&Exemplar>,
) {
    out.push_str(prefix);
    out.push_str(bound);
    out.push_str("\"} ");
    out.push_str(itoa::Buffer::new().format(count));
    if let Some(e) = exemplar {
        out.push_str(" # {run_id=\"");
        out.push_str(&escape(&e.run_id));
        if !e.trace_id.is_empty() {
            out.push_str("\",trace_id=\"");
            out.push_str(&escape(&e.trace_id));
        }
        let _ = write!(out, "\"}} {}", e.value);
        if let Some(at) = e.time.as_ref().map(from_timestamp) {
            let _ = write!(out, " {}", Seconds(at));
        }
    }
    out.push('\n');
}

/// The `le` values of the last list of bucket bounds seen: every histogram of
/// a family mostly shares one list, so each bound is formatted once.
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

/// A sample's label set, rewritten for each series, without the labels the
/// configuration drops (`drop_labels`).
#[derive(Debug, Default)]
pub(super) struct Labels {
    text: String,
    /// Label names left out of every set.
    dropped: Vec<&'static str>,
}

impl Labels {
    pub(super) fn dropping(dropped: Vec<&'static str>) -> Self {
        Labels {
            text: String::new(),
            dropped,
        }
    }

    /// The set becomes `name="value",…`: the values are escaped already, and
    /// the pairs given in name order (as the prometheus crate writes them).
    pub(super) fn set(&mut self, pairs: &[(&str, &str)]) {
        self.text.clear();
        for (name, value) in pairs {
            if self.dropped.contains(name) {
                continue;
            }
            if !self.text.is_empty() {
                self.text.push(',');
            }
            self.text.push_str(name);
            self.text.push_str("=\"");
            self.text.push_str(value);
            self.text.push('"');
        }
    }
}

impl std::ops::Deref for Labels {
    type Target = str;

    fn deref(&self) -> &str {
        &self.text
    }
}

/// Milliseconds since the epoch, written as seconds (`1732450000.5`).
pub(super) struct Seconds(pub(super) i64);

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
pub(super) fn escape(value: &str) -> std::borrow::Cow<'_, str> {
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
