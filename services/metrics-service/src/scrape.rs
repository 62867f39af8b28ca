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
use bytes::Bytes;
use runplane_api::token::v1::Scope;
use runplane_api::workflowrun::v1::{WorkflowNow, decode_page};
use runplane_auth::secret::SecretHash;
use runplane_server::http::PeerAddr;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::cache::{ExpositionCache, Kept, Key, Revision, Source};
use crate::error::ScrapeError;
use crate::exposition::{self, Format, Gone};
use crate::gzip;
use crate::upstream::Upstreams;

/// What a scrape needs: the services behind it and how to write.
pub(crate) struct Scraper {
    pub(crate) upstreams: Upstreams,
    /// Header that names the client behind a proxy; else the peer address.
    pub(crate) client_address_header: Option<HeaderName>,
    /// Namespace and `_created` setting; the format is chosen per request.
    pub(crate) exposition: exposition::Options,
    /// Expositions kept while their aggregates are unchanged.
    pub(crate) cache: ExpositionCache,
    /// Tokens whose aggregates are read while they are checked.
    pub(crate) known_scrapers: KnownScrapers,
    pub(crate) counters: CacheCounters,
}

/// How often a scrape was answered from a kept exposition, and how often it
/// was written: the service's own `runplane_scrape_cache_total`.
pub(crate) struct CacheCounters {
    hits: prometheus::IntCounter,
    misses: prometheus::IntCounter,
    /// How the aggregates were read: whole, or only what is true now (their
    /// revision current): `runplane_scrape_aggregate_reads_total`.
    read_whole: prometheus::IntCounter,
    read_by_revision: prometheus::IntCounter,
}

impl CacheCounters {
    pub(crate) fn new() -> Self {
        let counters = runplane_telemetry::metrics::int_counter_vec(
            "runplane_scrape_cache_total",
            "Scrapes answered from an exposition kept since an earlier scrape (hit), \
             or written anew because the organization's aggregates changed or none was kept (miss).",
            &["result"],
        );
        let reads = runplane_telemetry::metrics::int_counter_vec(
            "runplane_scrape_aggregate_reads_total",
            "Scrapes that read the organization's aggregates whole (whole), or only what is true \
             now because the kept ones' revision was current (revision).",
            &["read"],
        );
        CacheCounters {
            hits: counters.with_label_values(&["hit"]),
            misses: counters.with_label_values(&["miss"]),
            read_whole: reads.with_label_values(&["whole"]),
            read_by_revision: reads.with_label_values(&["revision"]),
        }
    }

    fn hit(&self) {
        self.hits.inc();
    }

    fn miss(&self) {
        self.misses.inc();
    }

    /// A scrape read the aggregates whole, or by their revision.
    fn read(&self, whole: bool) {
        if whole {
            self.read_whole.inc();
        } else {
            self.read_by_revision.inc();
        }
    }
}

/// Tokens (their hashes) that passed every check of a scrape in the last
/// [`KnownScrapers::FOR`], with the projects they are limited to: Prometheus
/// scrapes with one token every interval.
pub(crate) struct KnownScrapers {
    seen: std::sync::Mutex<std::collections::HashMap<String, (Instant, Projects)>>,
}

/// A token's project limit (`None`: every project).
type Projects = Option<Vec<String>>;

impl KnownScrapers {
    const FOR: std::time::Duration = std::time::Duration::from_secs(300);
    /// Tokens remembered at most; past it the oldest half is forgotten.
    const MOST: usize = 10_000;

    pub(crate) fn new() -> Self {
        KnownScrapers {
            seen: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    fn seen(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, (Instant, Projects)>> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The projects of a token that passed a recent scrape.
    fn knows(&self, secret: &str) -> Option<Projects> {
        let hash = SecretHash::of(secret).0;
        self.seen()
            .get(&hash)
            .filter(|(at, _)| at.elapsed() < Self::FOR)
            .map(|(_, projects)| projects.clone())
    }

    fn remember(&self, secret: &str, projects: Projects) {
        let hash = SecretHash::of(secret).0;
        let mut seen = self.seen();
        if seen.len() >= Self::MOST {
            let mut ages: Vec<Instant> = seen.values().map(|(at, _)| *at).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            seen.retain(|_, (at, _)| *at > cut);
        }
        seen.insert(hash, (Instant::now(), projects));
    }

    fn forget(&self, secret: &str) {
        self.seen().remove(&SecretHash::of(secret).0);
    }
}

/// What a scrape read of an organization's aggregates, for `key`.
struct Read {
    source: Source,
    revision: Revision,
    /// The aggregates were read whole (else they are the kept entry's).
    whole: bool,
}

/// Reads `key`'s organization's aggregates with the scraper's token: only
/// what is true now while the kept entry's revision is current (see cache.rs).
async fn read(
    scraper: &Scraper,
    secret: &str,
    exemplars: bool,
    key: &Key,
) -> Result<Read, ScrapeError> {
    let known = scraper.cache.known_revision(key);
    let upstreams = &scraper.upstreams;
    let read_at = Instant::now();
    let fetched = upstreams
        .workflow_metrics(secret, exemplars, known.as_deref())
        .await?;
    let fetched = match fetched.aggregates {
        Some(_) => fetched,
        None => match scraper.cache.aggregates_at(key, &fetched.revision) {
            Some((aggregates, revision)) => {
                return Ok(Read {
                    source: Source {
                        aggregates,
                        now: fetched.now,
                    },
                    revision,
                    whole: false,
                });
            }
            // The entry went meanwhile: read them whole.
            None => upstreams.workflow_metrics(secret, exemplars, None).await?,
        },
    };
    Ok(Read {
        source: Source {
            aggregates: fetched.aggregates.unwrap_or_default(),
            now: fetched.now,
        },
        revision: Revision {
            value: fetched.revision,
            read_at,
        },
        whole: true,
    })
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
    // Every `Accept` line counts, as one list (RFC 9110).
    let accept: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|accept| accept.to_str().ok())
        .collect();
    let format = Format::negotiate((!accept.is_empty()).then(|| accept.join(",")).as_deref());
    let gzip = accepts_gzip(headers.get_all(header::ACCEPT_ENCODING));
    // For a token that passed every check of a recent scrape, the three
    // questions are asked at once; the answers are still judged in the
    // documented order, so nothing is sent before the token is. Any other
    // token is judged before its aggregates are read, so that wrong tokens
    // do not reach workflow-run-service through here (its failure limits are
    // for its own callers); a known token refused for any reason is
    // forgotten, so it reaches it at most with the requests already in
    // flight. The aggregates are read with the scraper's token, which
    // workflow-run-service checks and confines to its organization itself.
    let known = scraper.known_scrapers.knows(secret);
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
    // Only OpenMetrics and protobuf carry exemplars: text scrapes do not
    // fetch them.
    let exemplars = format != Format::Text;
    // A known token's key, as its last scrape had it.
    let guessed = known.map(|projects| Key {
        org: org.clone(),
        format,
        projects,
    });
    let (principal, organization, early) =
        tokio::join!(upstreams.authenticate(secret, client), org_lookup, async {
            match &guessed {
                Some(key) => Some(read(&scraper, secret, exemplars, key).await),
                None => None,
            }
        });
    // A token refused for any reason is no longer known.
    let principal = principal.inspect_err(|_| scraper.known_scrapers.forget(secret))?;
    judge(&principal, &org, organization?)
        .inspect_err(|_| scraper.known_scrapers.forget(secret))?;
    let projects = principal.project_limit().map(<[String]>::to_vec);
    let key = Key {
        org,
        format,
        projects: projects.clone(),
    };
    // Read for another key than the token's (its projects changed): again.
    let read = match early {
        Some(read) if guessed.as_ref() == Some(&key) => read?,
        _ => read(&scraper, secret, exemplars, &key).await?,
    };
    scraper.known_scrapers.remember(secret, projects);
    scraper.counters.read(read.whole);
    let options = exposition::Options {
        format,
        ..scraper.exposition.clone()
    };
    let Read {
        source,
        revision,
        whole,
    } = read;
    let kept = scraper.cache.get(&key, &source, whole.then_some(&revision));
    let body = match kept {
        Some(kept) if gzip && kept.gzip.is_some() || !gzip && kept.text.is_some() => {
            scraper.counters.hit();
            from_kept(&options, &key.org, &kept, gzip, started)
        }
        // Kept as text only: compressed now, kept compressed too.
        Some(kept) if gzip => {
            scraper.counters.hit();
            let text = kept.text.clone().unwrap_or_default();
            let head = tokio::task::spawn_blocking(move || gzip::head(&text))
                .await
                .map_err(|e| ScrapeError::Internal(e.to_string()))?;
            let tail = gzip::tail(&head, &exposition::tail(&options, &key.org, started));
            let body = two_parts(head.bytes.clone(), tail.into());
            let kept = Kept::new(
                source,
                kept.revision().clone(),
                kept.text.clone(),
                Some(head),
            );
            scraper.cache.put(key, kept);
            body
        }
        // Not kept, stale, or kept only in the other form (which stays).
        earlier => {
            scraper.counters.miss();
            written(
                scraper.clone(),
                options,
                key,
                (source, revision),
                earlier,
                gzip,
                started,
            )?
        }
    };
    let mut response = (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            ),
            // The format follows `Accept`, the compression `Accept-Encoding`.
            (
                header::VARY,
                HeaderValue::from_static("accept, accept-encoding"),
            ),
        ],
        body,
    )
        .into_response();
    if gzip {
        response
            .headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    Ok(response)
}

/// The documented checks after authentication, in order: the token's
/// organization is the one asked for, it may read metrics, and that
/// organization (the same one, not one recreated under its name) has the
/// integration on.
fn judge(
    principal: &runplane_auth::Principal,
    org: &str,
    organization: Option<runplane_api::org::v1::Organization>,
) -> Result<(), ScrapeError> {
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
    match organization {
        // Recreated under the same name since the token was issued: not its org.
        Some(o) if o.id != principal.org_id => Err(ScrapeError::Forbidden(
            "this token belongs to another organization",
        )),
        Some(o) if o.prometheus_metrics_enabled => Ok(()),
        _ => Err(ScrapeError::NotEnabled(org.to_owned())),
    }
}

/// Whether the client takes gzip (`Accept-Encoding`, RFC 9110: `gzip`,
/// `x-gzip` or `*` with a quality above zero, unless gzip is refused by name).
fn accepts_gzip(accept_encoding: http::header::GetAll<'_, HeaderValue>) -> bool {
    let (mut named, mut any): (Option<bool>, Option<bool>) = (None, None);
    let codings = accept_encoding
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','));
    for coding in codings {
        let mut parts = coding.split(';').map(str::trim);
        let name = parts.next().unwrap_or_default().to_ascii_lowercase();
        let quality = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
            .map_or(1.0, |(_, q)| q.trim().parse::<f32>().unwrap_or(0.0));
        match name.as_str() {
            // `x-gzip` is gzip: either named acceptable is enough.
            "gzip" | "x-gzip" => named = Some(named.unwrap_or(false) || quality > 0.0),
            "*" => any = Some(any.unwrap_or(false) || quality > 0.0),
            _ => {}
        }
    }
    named.or(any).unwrap_or(false)
}

/// A body in two parts, sent as they are (no copy).
fn two_parts(first: Bytes, second: Bytes) -> Body {
    Body::from_stream(tokio_stream::iter([
        Ok::<_, std::convert::Infallible>(first),
        Ok(second),
    ]))
}

/// A response from a kept exposition: its text or gzip form, then the tail.
fn from_kept(
    options: &exposition::Options,
    org: &str,
    kept: &Kept,
    gzip: bool,
    started: Instant,
) -> Body {
    let tail = exposition::tail(options, org, started);
    match (&kept.gzip, &kept.text) {
        (Some(head), _) if gzip => two_parts(head.bytes.clone(), gzip::tail(head, &tail).into()),
        (_, Some(text)) => two_parts(text.clone(), tail.into()),
        // Only called with the form asked for.
        _ => Body::empty(),
    }
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

/// The body of a scrape whose exposition is not kept: written from `source`
/// on a blocking thread (10,000 workflows take 60–120 ms of CPU in the
/// benchmark, which would hold one of the runtime's workers), then kept. A
/// large one is sent as it is written, so that its text is never held whole.
fn written(
    scraper: Arc<Scraper>,
    options: exposition::Options,
    key: Key,
    (source, revision): (Source, Revision),
    earlier: Option<Arc<Kept>>,
    gzip: bool,
    started: Instant,
) -> Result<Body, ScrapeError> {
    let mut page = decode_page(&source.aggregates).map_err(|e| ScrapeError::Upstream {
        upstream: "workflow-run-service",
        detail: e.to_string(),
    })?;
    // What is true now came apart (a workflow-run-service that says no
    // revision merged it into the workflows).
    if !revision.value.is_empty() {
        let now: std::collections::HashMap<&str, &WorkflowNow> = source
            .now
            .iter()
            .map(|n| (n.workflow_id.as_str(), n))
            .collect();
        for w in &mut page.workflows {
            let n = now.get(w.workflow_id.as_str());
            w.runs_in_progress = n.map_or(0, |n| n.runs_in_progress);
            w.jobs_queued = n.map_or(0, |n| n.jobs_queued);
            w.runs_queued = n.map_or(0, |n| n.runs_queued);
        }
    }
    let (sender, receiver) = mpsc::channel::<Result<Bytes, std::io::Error>>(CHUNKS_AHEAD);
    let on_failure = sender.clone();
    let writing = tokio::task::spawn_blocking(move || {
        let org = key.org.clone();
        let send = |chunk: Vec<u8>| {
            sender
                .blocking_send(Ok(Bytes::from(chunk)))
                .map_err(|_| Gone)
        };
        let (workflows, environments) = (&page.workflows, &page.environments);
        if exposition::estimated_len(workflows) <= STREAMED_FROM_BYTES {
            let mut text = exposition::families_of(&options, &org, workflows, environments);
            // Kept, and counted by its length: hold no more than it.
            text.shrink_to_fit();
            let text = Bytes::from(text);
            let head = gzip.then(|| gzip::head(&text));
            let tail = exposition::tail(&options, &org, started);
            let (first, second) = match &head {
                Some(head) => (head.bytes.clone(), gzip::tail(head, &tail)),
                None => (text.clone(), tail),
            };
            let kept =
                Kept::new(source, revision, Some(text), head).with_forms_of(earlier.as_deref());
            scraper.cache.put(key, kept);
            if sender.blocking_send(Ok(first)).is_ok() {
                let _ = send(second);
            }
            return;
        }
        let mut compressed = gzip.then(gzip::HeadWriter::new);
        exposition::render_chunked(
            &options,
            &org,
            workflows,
            environments,
            CHUNK_BYTES,
            |chunk| match &mut compressed {
                Some(writer) => {
                    writer.write(&chunk);
                    send(writer.unsent())
                }
                None => send(chunk),
            },
        );
        if sender.is_closed() {
            return;
        }
        let tail = exposition::tail(&options, &org, started);
        match compressed {
            // Kept compressed: the text of this many workflows is too large.
            Some(writer) => {
                let (head, rest) = writer.finish();
                let end = gzip::tail(&head, &tail);
                let kept =
                    Kept::new(source, revision, None, Some(head)).with_forms_of(earlier.as_deref());
                scraper.cache.put(key, kept);
                if send(rest).is_ok() {
                    let _ = send(end);
                }
            }
            None => {
                let _ = send(tail);
            }
        }
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
    Ok(Body::from_stream(ReceiverStream::new(receiver)))
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

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue, header};

    fn gzip(lines: &[&'static str]) -> bool {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(header::ACCEPT_ENCODING, HeaderValue::from_static(line));
        }
        super::accepts_gzip(headers.get_all(header::ACCEPT_ENCODING))
    }

    #[test]
    fn gzip_is_sent_to_whoever_accepts_it_by_name_or_wildcard() {
        for yes in [
            &["gzip"][..],
            &["identity, gzip;q=0.5"],
            &["GZIP"],
            &["x-gzip"],
            &["*"],
            &["br", "gzip"],
            &["gzip;q=0, x-gzip"],
            &["br;q=1.0, gzip;q=0.8, *;q=0.1"],
        ] {
            assert!(gzip(yes), "{yes:?}");
        }
        for no in [
            &[][..],
            &["identity"],
            &["gzip;q=0"],
            &["gzip; q=0.000"],
            &["*;q=0"],
            &["*, gzip;q=0"],
            &["br"],
            &["gzip;q=nonsense"],
        ] {
            assert!(!gzip(no), "{no:?}");
        }
    }
}
