//! Scrapes: `/prom/{org}/metrics` for organizations of growing size and
//! history, and floor (b), the same bytes served from memory.

use std::net::SocketAddr;
use std::time::Instant;

use axum::body::Bytes;
use axum::http::header;

use crate::stats::{Latencies, Repeated};

/// What scraping one organization measured.
pub(crate) struct Scrapes {
    pub(crate) latencies: Repeated,
    pub(crate) bytes: usize,
}

/// How a scrape asks for its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Identity,
    /// `Accept-Encoding: gzip`, as Prometheus sends; the body is read as it
    /// comes, compressed.
    Gzip,
}

/// One scrape of `url`, checked: its body, as sent.
pub(crate) async fn fetch(
    http: &reqwest::Client,
    url: &str,
    secret: Option<&str>,
    encoding: Encoding,
) -> anyhow::Result<Bytes> {
    fetch_as(http, url, secret, encoding, None).await
}

/// [`fetch`], asking for a format with `accept` (none: the text format).
pub(crate) async fn fetch_as(
    http: &reqwest::Client,
    url: &str,
    secret: Option<&str>,
    encoding: Encoding,
    accept: Option<&str>,
) -> anyhow::Result<Bytes> {
    let mut request = http.get(url);
    if let Some(secret) = secret {
        request = request.bearer_auth(secret);
    }
    if let Some(accept) = accept {
        request = request.header(header::ACCEPT, accept);
    }
    let asked = match encoding {
        Encoding::Identity => "identity",
        Encoding::Gzip => "gzip",
    };
    let response = request
        .header(header::ACCEPT_ENCODING, asked)
        .send()
        .await?;
    anyhow::ensure!(response.status() == 200, "{url}: {}", response.status());
    let gzipped = response
        .headers()
        .get(header::CONTENT_ENCODING)
        .is_some_and(|e| e == "gzip");
    anyhow::ensure!(
        gzipped == (encoding == Encoding::Gzip),
        "{url}: asked for {asked}, got gzip: {gzipped}"
    );
    Ok(response.bytes().await?)
}

/// A gzip body, decompressed (which also checks it is whole and valid).
pub(crate) fn gunzip(body: &[u8]) -> anyhow::Result<String> {
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::MultiGzDecoder::new(body), &mut text)?;
    Ok(text)
}

/// Samples (series) in a text exposition.
pub(crate) fn series(text: &str) -> usize {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count()
}

/// `count` scrapes of `url` back to back, as Prometheus would make them.
pub(crate) async fn batch(
    http: &reqwest::Client,
    url: &str,
    secret: Option<&str>,
    encoding: Encoding,
    count: usize,
) -> anyhow::Result<Latencies> {
    batch_as(http, url, secret, encoding, None, count).await
}

/// [`batch`], asking for a format with `accept`.
pub(crate) async fn batch_as(
    http: &reqwest::Client,
    url: &str,
    secret: Option<&str>,
    encoding: Encoding,
    accept: Option<&str>,
    count: usize,
) -> anyhow::Result<Latencies> {
    let mut latencies = Latencies::default();
    for _ in 0..count {
        let t0 = Instant::now();
        fetch_as(http, url, secret, encoding, accept).await?;
        latencies.push(t0.elapsed());
    }
    Ok(latencies)
}

/// A floor: an HTTP server that returns `body` from memory, as a scrape
/// would (with `Content-Encoding: gzip` when it is compressed).
pub(crate) async fn serve_from_memory(
    body: Bytes,
    encoding: Encoding,
) -> anyhow::Result<SocketAddr> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let body = body.clone();
            async move {
                let mut response = axum::response::Response::new(axum::body::Body::from(body));
                let headers = response.headers_mut();
                headers.insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                if encoding == Encoding::Gzip {
                    headers.insert(
                        header::CONTENT_ENCODING,
                        header::HeaderValue::from_static("gzip"),
                    );
                }
                response
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

/// The services that answer a scrape, in the suite's address order.
pub(crate) const SERVICES: [&str; 4] = [
    "org-service",
    "token-service",
    "workflow-run-service",
    "metrics-service",
];

/// The calls metrics-service makes for a scrape.
pub(crate) const UPSTREAM_CALLS: [&str; 3] =
    ["Authenticate", "GetOrganization", "ListWorkflowMetrics"];

/// Counters from the services' own `/metrics` that break a scrape down: the
/// seconds metrics-service spent waiting on each upstream call, and each
/// service's CPU seconds.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counters {
    pub(crate) upstream_seconds: [f64; 3],
    pub(crate) cpu_seconds: [f64; 4],
}

impl Counters {
    /// Reads them now. Each gRPC port also serves `GET /metrics`.
    pub(crate) async fn read(http: &reqwest::Client, addrs: &[SocketAddr]) -> anyhow::Result<Self> {
        let mut counters = Counters::default();
        // The four services a scrape involves.
        for (i, addr) in addrs.iter().take(4).enumerate() {
            let text = http
                .get(format!("http://{addr}/metrics"))
                .send()
                .await?
                .text()
                .await?;
            for line in text.lines() {
                let value = || {
                    line.rsplit(' ')
                        .next()
                        .and_then(|v| v.parse::<f64>().ok())
                        .unwrap_or(0.0)
                };
                if line.starts_with("process_cpu_seconds_total ") {
                    counters.cpu_seconds[i] = value();
                }
                if i == 3 && line.starts_with("grpc_client_handling_seconds_sum{") {
                    for (call, seconds) in UPSTREAM_CALLS.iter().zip(&mut counters.upstream_seconds)
                    {
                        if line.contains(&format!("grpc_method=\"{call}\"")) {
                            *seconds += value();
                        }
                    }
                }
            }
        }
        Ok(counters)
    }

    /// Milliseconds per scrape between `self` (before) and `after`.
    pub(crate) fn per_scrape_ms(&self, after: &Counters, scrapes: usize) -> Counters {
        let per = |before: f64, after: f64| (after - before) * 1000.0 / scrapes.max(1) as f64;
        let mut out = Counters::default();
        for i in 0..3 {
            out.upstream_seconds[i] = per(self.upstream_seconds[i], after.upstream_seconds[i]);
        }
        for i in 0..4 {
            out.cpu_seconds[i] = per(self.cpu_seconds[i], after.cpu_seconds[i]);
        }
        out
    }
}
