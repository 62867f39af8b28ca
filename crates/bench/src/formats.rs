//! One organization scraped in each format: the text format, and Prometheus'
//! protobuf as metrics-service sends it with `protobuf_histograms: both` (the
//! default) and `native` (from a second metrics-service beside the suite's).
//! Bytes per scrape, plain and gzip; series as Prometheus keeps them; p50 of
//! batches alternating between the formats.

use std::fmt::Write as _;

use prost::Message as _;
use runplane_api::prometheus_client::{Metric, MetricFamily, MetricType};

use crate::scrape::{self, Encoding};
use crate::stats::Repeated;

/// What Prometheus sends with `--enable-feature=native-histograms`.
pub(crate) const PROTOBUF_ACCEPT: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// The formats measured: a name, the metrics-service (0: the suite's, 1: the
/// one with `protobuf_histograms: native`) and the `Accept` header.
const FORMATS: [(&str, usize, Option<&str>); 3] = [
    ("text 0.0.4", 0, None),
    ("protobuf, `both`", 0, Some(PROTOBUF_ACCEPT)),
    ("protobuf, `native`", 1, Some(PROTOBUF_ACCEPT)),
];

/// One organization of `workflows` workflows, in each format.
pub(crate) struct Formats {
    workflows: usize,
    /// Per format: bytes plain and gzip, series, p50 plain and gzip.
    rows: Vec<([usize; 2], usize, [Repeated; 2])>,
}

/// Measures organization `org` (token `secret`) of `workflows` workflows on
/// both metrics-services (`hosts`: host:port of each).
pub(crate) async fn measure(
    http: &reqwest::Client,
    hosts: [&str; 2],
    (org, secret): (&str, &str),
    workflows: usize,
    count: usize,
    repetitions: usize,
) -> anyhow::Result<Formats> {
    let url = |service: usize| format!("http://{}/prom/{org}/metrics", hosts[service]);
    let mut rows: Vec<([usize; 2], usize, [Repeated; 2])> = Vec::new();
    for (name, service, accept) in FORMATS {
        let url = url(service);
        let fetch = |encoding| scrape::fetch_as(http, &url, Some(secret), encoding, accept);
        let (plain, gzip) = (
            fetch(Encoding::Identity).await?,
            fetch(Encoding::Gzip).await?,
        );
        let series = match accept {
            None => scrape::series(std::str::from_utf8(&plain)?),
            Some(_) => protobuf_series(&plain)?,
        };
        anyhow::ensure!(series > 0, "{name}: an empty scrape");
        rows.push(([plain.len(), gzip.len()], series, Default::default()));
    }
    for _ in 0..repetitions {
        for ((_, service, accept), (_, _, p50)) in FORMATS.iter().zip(&mut rows) {
            let url = url(*service);
            for (encoding, results) in [(Encoding::Identity, 0), (Encoding::Gzip, 1)] {
                p50[results].push(
                    scrape::batch_as(http, &url, Some(secret), encoding, *accept, count).await?,
                );
            }
        }
    }
    Ok(Formats { workflows, rows })
}

/// The series Prometheus keeps of a protobuf exposition: one per metric, but
/// a histogram without native buckets, which it keeps as its classic series.
fn protobuf_series(mut body: &[u8]) -> anyhow::Result<usize> {
    let mut series = 0;
    while !body.is_empty() {
        let family = MetricFamily::decode_length_delimited(&mut body)?;
        let histogram = family.r#type() == MetricType::Histogram;
        series += family
            .metric
            .iter()
            .map(|m| if histogram { histogram_series(m) } else { 1 })
            .sum::<usize>();
    }
    Ok(series)
}

fn histogram_series(metric: &Metric) -> usize {
    let Some(h) = &metric.histogram else {
        return 0;
    };
    let native = !h.positive_delta.is_empty() || h.zero_count() > 0 || h.zero_threshold() > 0.0;
    if native {
        1
    } else {
        // Each bound, `+Inf`, `_sum` and `_count`.
        h.bucket.len() + 3
    }
}

/// The report's table of formats.
pub(crate) fn report(out: &mut String, sizes: &[Formats]) {
    let _ = writeln!(
        out,
        "\n### Formats\n\nThe short-history organizations in each format: bytes per scrape, series as \
         Prometheus keeps them (per workflow), bytes per series, p50 in ms (medians of the batches').\n"
    );
    let _ = writeln!(
        out,
        "| N | format | bytes, plain / gzip | series (per workflow) | bytes per series, plain | p50 plain / gzip |"
    );
    let _ = writeln!(out, "|---:|---|---:|---:|---:|---:|");
    for size in sizes {
        for ((name, ..), (bytes, series, p50)) in FORMATS.iter().zip(&size.rows) {
            let _ = writeln!(
                out,
                "| {} | {name} | {} / {} | {series} ({:.1}) | {:.0} | {:.2} / {:.2} |",
                size.workflows,
                crate::size(bytes[0]),
                crate::size(bytes[1]),
                *series as f64 / size.workflows.max(1) as f64,
                bytes[0] as f64 / (*series).max(1) as f64,
                p50[0].p50(),
                p50[1].p50(),
            );
        }
    }
}
