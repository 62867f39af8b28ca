//! `GET /prom/{org}/metrics`: authenticate, authorize, then render.
//!
//! Checks run in a fixed order so that nothing reaches a caller without a valid
//! token: 401 (no, malformed, unknown, expired or revoked token), 403 (another
//! organization's token, or no `metrics:read`), 404 (integration off), 503 (a
//! service behind this one is unreachable: never a 200 with missing data).

use std::sync::Arc;
use std::time::Instant;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use runplane_api::token::v1::Scope;
use runplane_api::workflowrun::v1::WorkflowMetrics;
use runplane_server::http::PeerAddr;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::error::ScrapeError;
use crate::exposition::{self, Format, Gone};
use crate::upstream::Upstreams;

/// What a scrape needs: the services behind it and how to write.
pub(crate) struct Scraper {
    pub(crate) upstreams: Upstreams,
    /// Header that names the client behind a proxy; else the peer address.
    pub(crate) client_address_header: Option<HeaderName>,
    /// Namespace and `_created` setting; the format is chosen per request.
    pub(crate) exposition: exposition::Options,
}

/// Serves one scrape.
pub(crate) async fn handle(
    State(scraper): State<Arc<Scraper>>,
    Path(org): Path<String>,
    peer: Option<Extension<PeerAddr>>,
    headers: HeaderMap,
) -> Result<Response, ScrapeError> {
    let started = Instant::now();
    let upstreams = &scraper.upstreams;
    tracing::Span::current().record("org", org.as_str());
    let secret = bearer(&headers)?;
    // The organization lookup does not depend on the token: ask both at once,
    // then judge the answers in the documented order.
    let org_lookup = async {
        if runplane_api::org_name::validate(&org).is_ok() {
            upstreams.organization(&org).await
        } else {
            Ok(None)
        }
    };
    let client = runplane_server::http::client_ip(
        scraper.client_address_header.as_ref(),
        &headers,
        peer.map(|Extension(PeerAddr(addr))| addr.ip()),
    );
    let (principal, organization) =
        tokio::join!(upstreams.authenticate(secret, client), org_lookup);
    let principal = principal?;
    if principal.org_name != org {
        return Err(ScrapeError::Forbidden(
            "this token belongs to another organization",
        ));
    }
    if !principal.scopes.contains(&Scope::MetricsRead) {
        return Err(ScrapeError::Forbidden(
            "this token lacks the `metrics:read` scope",
        ));
    }
    match organization? {
        // Recreated under the same name since the token was issued: not its org.
        Some(o) if o.id != principal.org_id => {
            return Err(ScrapeError::Forbidden(
                "this token belongs to another organization",
            ));
        }
        Some(o) if o.prometheus_metrics_enabled => {}
        _ => return Err(ScrapeError::NotEnabled(org)),
    }
    let format = Format::negotiate(
        headers
            .get(header::ACCEPT)
            .and_then(|accept| accept.to_str().ok()),
    );
    // Only OpenMetrics carries exemplars: other scrapes do not fetch them.
    let workflows = upstreams
        .workflow_metrics(secret, format == Format::OpenMetrics)
        .await?;
    let options = exposition::Options {
        format,
        ..scraper.exposition.clone()
    };
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        )],
        body(options, org, workflows, started),
    )
        .into_response())
}

/// A large exposition's chunks: each is sent while the next is written.
const CHUNK_BYTES: usize = 1024 * 1024;
/// Chunks written ahead of the socket, at most.
const CHUNKS_AHEAD: usize = 2;
/// Expositions estimated larger than this are streamed. Measured (see
/// docs/benchmarks.md): at 1,000 workflows (7 MiB) streaming cost 1–2 ms
/// more CPU than one buffer; at 10,000 (72 MiB) it saved 40–50 ms of CPU,
/// most likely because one buffer that large is mapped fresh from the
/// kernel on every scrape (glibc maps anything over 32 MiB; not profiled).
const STREAMED_FROM_BYTES: usize = 16 * 1024 * 1024;

/// The response body. A large exposition is written on a blocking thread
/// (10,000 workflows take 60–120 ms of CPU in the benchmark, which would hold
/// one of the runtime's workers) and sent as it is written, so it is never
/// held whole.
fn body(
    options: exposition::Options,
    org: String,
    workflows: Vec<WorkflowMetrics>,
    started: Instant,
) -> Body {
    if exposition::estimated_len(&workflows) <= STREAMED_FROM_BYTES {
        return Body::from(exposition::render(&options, &org, &workflows, started));
    }
    let (sender, receiver) = mpsc::channel::<Result<String, std::io::Error>>(CHUNKS_AHEAD);
    let on_failure = sender.clone();
    let writing = tokio::task::spawn_blocking(move || {
        exposition::render_chunked(&options, &org, &workflows, started, CHUNK_BYTES, |chunk| {
            sender.blocking_send(Ok(chunk)).map_err(|_| Gone)
        });
    });
    tokio::spawn(async move {
        // A body that ends early must not look complete: an error aborts
        // the response instead of ending it.
        if let Err(e) = writing.await {
            tracing::error!(error = %e, "writing an exposition failed");
            let _ = on_failure
                .send(Err(std::io::Error::other("the exposition was not written")))
                .await;
        }
    });
    Body::from_stream(ReceiverStream::new(receiver))
}

/// The bearer secret of the request.
fn bearer(headers: &HeaderMap) -> Result<&str, ScrapeError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(ScrapeError::MissingToken)?
        .to_str()
        .map_err(|_| ScrapeError::InvalidToken)?;
    runplane_auth::bearer_from_header(value).ok_or(if runplane_auth::is_other_scheme(value) {
        ScrapeError::NotBearer
    } else {
        ScrapeError::InvalidToken
    })
}
