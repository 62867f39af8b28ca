//! Scrapes: `/prom/{org}/metrics` for organizations of growing size and
//! history, and floor (b), the same bytes served from memory.

use std::net::SocketAddr;
use std::time::Instant;

use axum::body::Bytes;
use axum::http::header;

use crate::stats::Latencies;

/// What scraping one organization measured.
pub(crate) struct Scrapes {
    pub(crate) latencies: Latencies,
    pub(crate) bytes: usize,
    pub(crate) body: Bytes,
}

/// Scrapes `url` `count` times back to back (after one warm-up), as Prometheus would.
pub(crate) async fn scrape(
    http: &reqwest::Client,
    url: &str,
    secret: Option<&str>,
    count: usize,
) -> anyhow::Result<Scrapes> {
    let get = || {
        let mut request = http.get(url);
        if let Some(secret) = secret {
            request = request.bearer_auth(secret);
        }
        request
    };
    let warm = get().send().await?;
    anyhow::ensure!(warm.status() == 200, "{url}: {}", warm.status());
    let body = warm.bytes().await?;
    let mut latencies = Latencies::default();
    for _ in 0..count {
        let t0 = Instant::now();
        let response = get().send().await?;
        anyhow::ensure!(response.status() == 200, "{url}: {}", response.status());
        response.bytes().await?;
        latencies.push(t0.elapsed());
    }
    Ok(Scrapes {
        latencies,
        bytes: body.len(),
        body,
    })
}

/// Floor (b): an HTTP server that returns `body` from memory, as a scrape would.
pub(crate) async fn serve_from_memory(body: Bytes) -> anyhow::Result<SocketAddr> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let body = body.clone();
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    body,
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}
