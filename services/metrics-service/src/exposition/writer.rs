//! The lines of an exposition: a family's HELP and TYPE, its samples, a
//! histogram's buckets, label sets and their escaping, numbers as each format
//! wants them. Plain pushes rather than the formatter wherever a line is
//! written per series: its cost per argument adds up over the tens of
//! thousands of series of a large organization.
//!
//! The protobuf format goes through the same calls: a family's samples are
//! gathered as Prometheus' `Metric` messages (generated from its
//! `metrics.proto`) and encoded as a delimited `MetricFamily` when the next
//! family begins or a chunk is cut. A family cut across chunks continues in a
//! message of its own under the same name, which Prometheus reads as one.
//!
//! In protobuf a histogram goes twice: as a native histogram (the family
//! itself, for the outcomes whose native buckets are kept) and as its classic
//! series, `_bucket`, `_sum` and `_count`, each a family of its own. Prometheus
//! keeps only the native part of a histogram message that has both (before
//! 2.45, and after unless told otherwise), so Chainloop's dashboard would lose
//! its buckets; sent apart, they are the very series a text scrape makes (the
//! same `le` values too: Prometheus would write `10.0` for a protobuf bucket),
//! so a scraper switching formats keeps its series (on Prometheus 2.x; 3.x
//! writes a text scrape's `le` as `10.0`).

use std::fmt::Write as _;

use prost::Message as _;
use runplane_api::prometheus_client as pb;
use runplane_api::time::from_timestamp;
use runplane_api::workflowrun::v1::{Exemplar, NativeBuckets, WorkflowMetrics};

use super::{Format, ProtobufHistograms};

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
    pub(super) protobuf_histograms: ProtobufHistograms,
}

impl Writer<'_> {
    /// A family whose HELP/TYPE lines are written before its first sample
    /// (a family without samples is left out, as the prometheus crate does).
    pub(super) fn family(&self, name: &str, help: &'static str, kind: Kind) -> Family {
        // OpenMetrics names a counter family without `_total`; the text
        // format names it after its samples.
        let base = format!("{}_{name}", self.ns);
        let family_name = match (kind, self.format) {
            (Kind::Counter, Format::Text | Format::Protobuf) => format!("{base}_total"),
            _ => base.clone(),
        };
        Family {
            name: base,
            family_name,
            help,
            kind,
            written: false,
            created: self.created,
            classic_apart: self.protobuf_histograms == ProtobufHistograms::Both,
            prefix: String::new(),
            bounds: BoundLabels::new(self.format),
        }
    }
}

/// Where an exposition is written: its bytes and, in the protobuf format,
/// the families being gathered (a histogram's four, another's one): each
/// family's header, and its metrics encoded as they come (the family's
/// repeated `metric` field, encoded by prost), so that a metric is not kept
/// as a message and a scratch message can be reused for the next.
#[derive(Default)]
pub(super) struct Out {
    bytes: Vec<u8>,
    families: Vec<(pb::MetricFamily, Vec<u8>)>,
}

impl Out {
    pub(super) fn with_capacity(capacity: usize) -> Self {
        Out {
            bytes: Vec::with_capacity(capacity),
            ..Out::default()
        }
    }

    /// How many bytes are written, the families being gathered included.
    pub(super) fn len(&self) -> usize {
        self.bytes.len() + self.families.iter().map(|(_, m)| m.len()).sum::<usize>()
    }

    /// Everything written, the families being gathered encoded so far (each
    /// continues in a message of its own), leaving `capacity` reserved.
    pub(super) fn take(&mut self, capacity: usize) -> Vec<u8> {
        self.encode_families();
        std::mem::replace(&mut self.bytes, Vec::with_capacity(capacity))
    }

    fn push_str(&mut self, text: &str) {
        self.bytes.extend_from_slice(text.as_bytes());
    }

    fn push(&mut self, byte: u8) {
        self.bytes.push(byte);
    }

    /// Encodes the current families that gathered metrics, each as one
    /// length-delimited `MetricFamily`: its header's fields, then its metrics.
    fn encode_families(&mut self) {
        for (header, metrics) in self.families.iter_mut().filter(|(_, m)| !m.is_empty()) {
            let len = header.encoded_len() + metrics.len();
            prost::encoding::encode_varint(len as u64, &mut self.bytes);
            // Writing into a Vec cannot fail.
            let _ = header.encode(&mut self.bytes);
            self.bytes.append(metrics);
        }
    }

    fn begin_families(&mut self, families: Vec<pb::MetricFamily>) {
        self.encode_families();
        self.families = families.into_iter().map(|f| (f, Vec::new())).collect();
    }

    /// Adds a metric to the `which`th current family.
    fn metric(&mut self, which: usize, metric: &pb::Metric) {
        if let Some((_, metrics)) = self.families.get_mut(which) {
            prost::encoding::message::encode(METRIC_FIELD, metric, metrics);
        }
    }
}

/// `MetricFamily.metric`'s field number in Prometheus' `metrics.proto`.
const METRIC_FIELD: u32 = 4;

impl std::fmt::Write for Out {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        self.push_str(text);
        Ok(())
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
    /// In protobuf, a histogram's classic series go as families of their own.
    classic_apart: bool,
    /// A histogram's bucket line up to its bound, rewritten per series.
    prefix: String,
    bounds: BoundLabels,
}

/// What the `_created` samples of a series are read from: when every counter
/// of it was zero.
pub(super) trait Created {
    fn create_time(&self) -> Option<&runplane_api::time::Timestamp>;
}

impl Created for WorkflowMetrics {
    fn create_time(&self) -> Option<&runplane_api::time::Timestamp> {
        self.create_time.as_ref()
    }
}

impl Created for runplane_api::workflowrun::v1::EnvironmentMetrics {
    fn create_time(&self) -> Option<&runplane_api::time::Timestamp> {
        self.create_time.as_ref()
    }
}

/// A cumulative histogram's values, as the aggregates keep them.
pub(super) struct Buckets<'a> {
    pub(super) bounds: &'a [f64],
    /// Cumulative count for each bound.
    pub(super) counts: &'a [u64],
    pub(super) count: u64,
    pub(super) sum: f64,
    /// The newest run of some buckets, in bucket order (written in OpenMetrics
    /// and protobuf).
    pub(super) exemplars: &'a [Exemplar],
    /// The same observations in native buckets (written in protobuf only).
    pub(super) native: Option<&'a NativeBuckets>,
}

impl Family {
    pub(super) fn header(&mut self, out: &mut Out) {
        if self.written {
            return;
        }
        self.written = true;
        if self.bounds.format == Format::Protobuf {
            let family = |name: String, kind: pb::MetricType| pb::MetricFamily {
                name: Some(name),
                help: Some(self.help.to_owned()),
                r#type: Some(kind.into()),
                metric: Vec::new(),
            };
            let name = self.family_name.clone();
            out.begin_families(match self.kind {
                Kind::Gauge => vec![family(name, pb::MetricType::Gauge)],
                Kind::Counter => vec![family(name, pb::MetricType::Counter)],
                // Those with native buckets, then those without, in a message
                // of their own: Prometheus (2.42 at least) takes a family's
                // first histogram to tell whether all of them are native.
                Kind::Histogram if !self.classic_apart => vec![
                    family(name.clone(), pb::MetricType::Histogram),
                    family(name, pb::MetricType::Histogram),
                ],
                // The order `protobuf_histogram` fills them in.
                Kind::Histogram => vec![
                    family(format!("{name}_bucket"), pb::MetricType::Counter),
                    family(format!("{name}_sum"), pb::MetricType::Counter),
                    family(format!("{name}_count"), pb::MetricType::Counter),
                    family(name, pb::MetricType::Histogram),
                ],
            });
            return;
        }
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
        out: &mut Out,
        suffix: &str,
        labels: &Labels,
        value: impl Value,
    ) {
        self.header(out);
        if self.bounds.format == Format::Protobuf {
            let value = Some(value.as_f64());
            let mut metric = labels.metric.borrow_mut();
            match self.kind {
                Kind::Counter => {
                    metric.counter = Some(pb::Counter {
                        value,
                        exemplar: None,
                    })
                }
                _ => metric.gauge = Some(pb::Gauge { value }),
            }
            out.metric(0, &metric);
            metric.counter = None;
            metric.gauge = None;
            return;
        }
        out.push_str(&self.name);
        out.push_str(suffix);
        out.push(b'{');
        out.push_str(&labels.text);
        out.push_str("} ");
        let _ = writeln!(out, "{value}");
    }

    /// A counter's `_total` sample, and its `_created` one when asked for.
    pub(super) fn counter(&mut self, out: &mut Out, labels: &Labels, value: u64, w: &impl Created) {
        self.sample(out, "_total", labels, value);
        self.created(out, labels, w);
    }

    /// One histogram series: its buckets, `+Inf`, sum and count, and
    /// `_created` when asked for.
    pub(super) fn histogram(
        &mut self,
        out: &mut Out,
        labels: &Labels,
        buckets: &Buckets<'_>,
        w: &impl Created,
    ) {
        self.header(out);
        if self.bounds.format == Format::Protobuf {
            self.protobuf_histogram(out, labels, buckets);
            return;
        }
        // Each bucket line is this prefix, a bound, and a count: the bounds
        // are formatted once per distinct list, not once per line.
        self.prefix.clear();
        self.prefix.push_str(&self.name);
        self.prefix.push_str("_bucket{");
        self.prefix.push_str(&labels.text);
        self.prefix.push_str(",le=\"");
        let exemplars = match self.bounds.format {
            Format::OpenMetrics => buckets.exemplars,
            Format::Text | Format::Protobuf => &[],
        };
        let mut exemplar_of = exemplars_by_bucket(exemplars);
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
    fn created(&mut self, out: &mut Out, labels: &Labels, w: &impl Created) {
        if !self.created {
            return;
        }
        if let Some(at) = w.create_time().map(from_timestamp) {
            let labels = &labels.text;
            let _ = writeln!(out, "{}_created{{{labels}}} {}", self.name, Seconds(at));
        }
    }
}

impl Family {
    /// A histogram in protobuf: its classic series as counters, then the
    /// native histogram when its buckets are kept (see the module); or, not
    /// [`Self::classic_apart`], one histogram message with both.
    fn protobuf_histogram(&mut self, out: &mut Out, labels: &Labels, buckets: &Buckets<'_>) {
        let mut scratch = labels.metric.borrow_mut();
        if !self.classic_apart {
            let mut histogram = native_histogram(buckets);
            histogram.bucket = classic_buckets(buckets);
            scratch.histogram = Some(histogram);
            let family = if buckets.native.is_some() { 0 } else { 1 };
            out.metric(family, &scratch);
            scratch.histogram = None;
            return;
        }
        let (bucket, sum, count, native) = (0, 1, 2, 3);
        let mut exemplars = exemplars_by_bucket(buckets.exemplars);
        let mut exemplar_of = |bucket| exemplars(bucket).map(protobuf_exemplar);
        // One message for every series of the histogram, its `le` label and
        // value rewritten for each.
        scratch.label.push(pb::LabelPair {
            name: Some("le".to_owned()),
            value: None,
        });
        let bounds = self.bounds.get(buckets.bounds).iter().map(String::as_str);
        let counts = buckets.counts.iter().chain([&buckets.count]);
        for (i, (le, cumulative)) in bounds.chain(["+Inf"]).zip(counts).enumerate() {
            if let Some(pair) = scratch.label.last_mut() {
                let value = pair.value.get_or_insert_default();
                value.clear();
                value.push_str(le);
            }
            scratch.counter = Some(pb::Counter {
                value: Some(*cumulative as f64),
                exemplar: exemplar_of(i),
            });
            out.metric(bucket, &scratch);
        }
        scratch.label.pop();
        for (which, value) in [(sum, buckets.sum), (count, buckets.count as f64)] {
            scratch.counter = Some(pb::Counter {
                value: Some(value),
                exemplar: None,
            });
            out.metric(which, &scratch);
        }
        scratch.counter = None;
        if buckets.native.is_some() {
            scratch.histogram = Some(native_histogram(buckets));
            out.metric(native, &scratch);
            scratch.histogram = None;
        }
    }
}

/// A histogram message with the count, the sum and the native buckets when
/// they are kept.
fn native_histogram(buckets: &Buckets<'_>) -> pb::Histogram {
    let mut histogram = pb::Histogram {
        sample_count: Some(buckets.count),
        sample_sum: Some(buckets.sum),
        ..pb::Histogram::default()
    };
    if let Some(kept) = buckets.native {
        let (spans, deltas) = spans_and_deltas(&kept.indexes, &kept.counts);
        histogram.schema = Some(kept.schema);
        histogram.zero_threshold = Some(NATIVE_ZERO_THRESHOLD);
        histogram.zero_count = Some(kept.zero_count);
        histogram.positive_span = spans;
        histogram.positive_delta = deltas;
    }
    histogram
}

/// The classic buckets of a histogram message (`+Inf` implied by the count),
/// with their exemplars.
fn classic_buckets(buckets: &Buckets<'_>) -> Vec<pb::Bucket> {
    let mut exemplars = exemplars_by_bucket(buckets.exemplars);
    let mut exemplar_of = |bucket| exemplars(bucket).map(protobuf_exemplar);
    buckets
        .bounds
        .iter()
        .zip(buckets.counts)
        .enumerate()
        .map(|(i, (bound, count))| pb::Bucket {
            cumulative_count: Some(*count),
            upper_bound: Some(*bound),
            exemplar: exemplar_of(i),
            ..pb::Bucket::default()
        })
        .collect()
}

/// The breadth of the native histograms' zero bucket, as Prometheus' Go
/// client sets it by default (2^-128): durations of zero are counted there.
const NATIVE_ZERO_THRESHOLD: f64 = 2.938_735_877_055_719e-39;

/// Native buckets as protobuf spans (runs of consecutive indexes, each
/// offset from the end of the previous) and deltas (each count from the
/// previous bucket's).
fn spans_and_deltas(indexes: &[i32], counts: &[u64]) -> (Vec<pb::BucketSpan>, Vec<i64>) {
    let mut spans: Vec<pb::BucketSpan> = Vec::new();
    let mut deltas = Vec::with_capacity(counts.len());
    let (mut next, mut previous) = (None::<i32>, 0i64);
    for (index, count) in indexes.iter().zip(counts) {
        match (next, spans.last_mut()) {
            (Some(expected), Some(span)) if expected == *index => {
                span.length = Some(span.length.unwrap_or(0) + 1);
            }
            _ => spans.push(pb::BucketSpan {
                offset: Some(next.map_or(*index, |expected| index - expected)),
                length: Some(1),
            }),
        }
        next = Some(index + 1);
        let count = i64::try_from(*count).unwrap_or(i64::MAX);
        deltas.push(count - previous);
        previous = count;
    }
    (spans, deltas)
}

fn protobuf_exemplar(e: &Exemplar) -> pb::Exemplar {
    let mut label = vec![pb::LabelPair {
        name: Some("run_id".to_owned()),
        value: Some(e.run_id.clone()),
    }];
    if !e.trace_id.is_empty() {
        label.push(pb::LabelPair {
            name: Some("trace_id".to_owned()),
            value: Some(e.trace_id.clone()),
        });
    }
    pb::Exemplar {
        label,
        value: Some(e.value),
        timestamp: e.time,
    }
}

/// A sample's value, in the text formats as written and in protobuf as a double.
pub(super) trait Value: std::fmt::Display {
    fn as_f64(&self) -> f64;
}

macro_rules! value_as_cast {
    ($($t:ty),*) => {$(
        impl Value for $t {
            fn as_f64(&self) -> f64 {
                *self as f64
            }
        }
    )*};
}
value_as_cast!(u8, u32, u64, usize, f64);

impl Value for Seconds {
    fn as_f64(&self) -> f64 {
        self.0 as f64 / 1000.0
    }
}

/// The exemplar of each bucket in turn: called with ascending bucket
/// indexes, it walks `exemplars` (in bucket order) once.
fn exemplars_by_bucket<'a>(exemplars: &'a [Exemplar]) -> impl FnMut(usize) -> Option<&'a Exemplar> {
    let mut exemplars = exemplars.iter().peekable();
    move |bucket| {
        let bucket = u32::try_from(bucket).unwrap_or(u32::MAX);
        while exemplars.next_if(|e| e.bucket < bucket).is_some() {}
        exemplars.next_if(|e| e.bucket == bucket)
    }
}

/// One bucket line: `prefix` ends in `le="`; with its exemplar, OpenMetrics'
/// ` # {run_id="…",trace_id="…"} VALUE TIMESTAMP`.
fn bucket_line(out: &mut Out, prefix: &str, bound: &str, count: u64, exemplar: Option<&Exemplar>) {
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
    out.push(b'\n');
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
#[derive(Debug)]
pub(super) struct Labels {
    /// `name="value",…`, in the text formats.
    text: String,
    /// In protobuf, the message every series of the set is encoded from: its
    /// label pairs set here (their strings reused from set to set), its value
    /// by the family for each series, then cleared.
    metric: std::cell::RefCell<pb::Metric>,
    protobuf: bool,
    /// Label names left out of every set.
    dropped: Vec<&'static str>,
}

impl Labels {
    pub(super) fn new(format: Format, dropped: Vec<&'static str>) -> Self {
        Labels {
            text: String::new(),
            metric: Default::default(),
            protobuf: format == Format::Protobuf,
            dropped,
        }
    }

    /// A label value as this set's format carries it ([`Format::label_value`]).
    pub(super) fn value<'v>(&self, value: &'v str) -> std::borrow::Cow<'v, str> {
        if self.protobuf {
            std::borrow::Cow::Borrowed(value)
        } else {
            escape(value)
        }
    }

    /// The set becomes these pairs, given in name order (as the prometheus
    /// crate writes them), their values as the format carries them
    /// ([`Self::value`]).
    pub(super) fn set(&mut self, pairs: &[(&str, &str)]) {
        if self.protobuf {
            let label = &mut self.metric.get_mut().label;
            let kept = pairs
                .iter()
                .filter(|(name, _)| !self.dropped.contains(name));
            label.resize_with(kept.clone().count(), Default::default);
            // The strings of the previous set are reused.
            for ((name, value), pair) in kept.zip(label.iter_mut()) {
                let to = pair.name.get_or_insert_default();
                to.clear();
                to.push_str(name);
                let to = pair.value.get_or_insert_default();
                to.clear();
                to.push_str(value);
            }
            return;
        }
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

/// A label value as both text formats want it: `\\`, `"` and newlines escaped.
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
