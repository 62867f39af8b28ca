//! The HTTP server a service runs (metrics-service's scrape endpoint): the
//! axum app behind the limits a public endpoint needs — a deadline for the
//! request headers (slow-loris), a bounded header block and request body,
//! load shedding past a concurrency limit ([`crate::admission`]) — TLS or
//! mutual TLS when configured ([`runplane_tls`]), and the same graceful drain as
//! the gRPC servers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use axum::response::IntoResponse as _;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_stream::StreamExt as _;
use tower::ServiceExt as _;

use crate::admission::{AdmissionLayer, Protocol};
use crate::grpc::{MAX_HEADER_BYTES, ServerArgs};

/// How long a client may take to send its request headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest request body a service accepts unless it says otherwise (413
/// past it): the scrape endpoint is GET only and never reads one.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Refuses a request whose target and headers together exceed
/// [`MAX_HEADER_BYTES`] with 431. hyper's own buffer limit only applies when a
/// header block arrives in several reads; this holds however it arrives.
async fn limit_header_block(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |t| t.as_str().len());
    let size = target
        + request
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum::<usize>();
    if size > MAX_HEADER_BYTES as usize {
        return (
            http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("request headers too large: {size} bytes, at most {MAX_HEADER_BYTES}\n"),
        )
            .into_response();
    }
    next.run(request).await
}

/// Every 503 says when to come back: the handler's or admission's own
/// `Retry-After` where they set one (a shed upstream's pushback, say), else
/// [`RETRY_AFTER_SECONDS`](crate::admission::RETRY_AFTER_SECONDS) (a request
/// timeout, a draining server).
async fn with_retry_after(mut response: axum::response::Response) -> axum::response::Response {
    if response.status() == http::StatusCode::SERVICE_UNAVAILABLE
        && !response.headers().contains_key(http::header::RETRY_AFTER)
    {
        response.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from(crate::admission::RETRY_AFTER_SECONDS),
        );
    }
    response
}

/// The address of the connection a request came on (a request extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// The client's address: the last entry of the configured header
/// (the one the proxy in front added), else the connection's peer.
pub fn client_ip(
    header: Option<&http::HeaderName>,
    headers: &http::HeaderMap,
    peer: Option<std::net::IpAddr>,
) -> Option<std::net::IpAddr> {
    let Some(header) = header else {
        return peer;
    };
    // Only the very last entry: everything before it came from the client.
    headers
        .get_all(header)
        .iter()
        .next_back()
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.rsplit(',').next())
        .and_then(|last| last.trim().parse().ok())
        .or(peer)
}

/// Serves `app` on `listener` until SIGTERM or SIGINT; then sets `draining`
/// (so `/readyz` can fail), keeps serving for the shutdown delay, stops
/// accepting, lets in-flight requests finish for at most the drain timeout,
/// and returns. Bodies over `max_body_bytes` are refused with 413.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    args: &ServerArgs,
    draining: Arc<AtomicBool>,
    max_body_bytes: usize,
) -> anyhow::Result<()> {
    let addr = listener
        .local_addr()
        .context("listening socket has no address")?;
    let app = app
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            max_body_bytes,
        ))
        .layer(axum::middleware::from_fn(limit_header_block))
        .layer(AdmissionLayer::new(
            args.max_concurrent_requests,
            Protocol::Http,
        ))
        .layer(axum::middleware::map_response(with_retry_after));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES as usize * 4);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES)
        .max_concurrent_streams(256);
    let acceptor = crate::listener::Acceptor::new(runplane_tls::server_config(&args.tls)?);
    let connections = hyper_util::server::graceful::GracefulShutdown::new();
    tracing::info!(
        %addr,
        tls = acceptor.is_tls(),
        mutual_tls = args.tls.tls_client_ca.is_some(),
        "HTTP server listening"
    );

    let shutdown_delay = args.shutdown_delay;
    let stop = async {
        let signal = crate::shutdown::signal().await;
        tracing::info!(signal, ?shutdown_delay, "shutting down: /readyz now fails");
        draining.store(true, Ordering::SeqCst);
        // Still accepting, so that nothing is refused while balancers notice.
        tokio::time::sleep(shutdown_delay).await;
        tracing::info!("no longer accepting; draining requests in flight");
    };
    tokio::pin!(stop);
    // The gRPC servers' accept path: TLS handshakes in tasks of their own.
    let mut incoming = Box::pin(crate::listener::incoming(listener, acceptor));
    loop {
        let connection = tokio::select! {
            next = incoming.next() => match next {
                Some(Ok(connection)) => connection,
                // Failed connections are logged where they fail.
                Some(Err(_)) => continue,
                None => break,
            },
            () = &mut stop => break,
        };
        let peer = connection.peer_addr();
        let service =
            app.clone()
                .map_request(move |mut request: http::Request<hyper::body::Incoming>| {
                    if let Some(peer) = peer {
                        request.extensions_mut().insert(PeerAddr(peer));
                    }
                    request
                });
        let connection = builder
            .serve_connection(TokioIo::new(connection), TowerToHyperService::new(service))
            .into_owned();
        let connection = connections.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(?peer, error = %e, "connection ended with an error");
            }
        });
    }
    // Stops accepting (the listener closes with the stream).
    drop(incoming);

    let drain_timeout = args.drain_timeout;
    tokio::select! {
        () = connections.shutdown() => {}
        () = tokio::time::sleep(drain_timeout) => {
            tracing::warn!(?drain_timeout, "drain timeout reached; exiting with requests in flight");
        }
    }
    runplane_telemetry::summary::requests().log();
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderName, HeaderValue};
    use std::net::IpAddr;

    #[test]
    fn the_client_is_the_last_entry_of_the_configured_header_else_the_peer() {
        let peer = Some(IpAddr::from([10, 0, 0, 9]));
        let forwarded = HeaderName::from_static("x-forwarded-for");
        let mut headers = HeaderMap::new();
        headers.append(
            &forwarded,
            HeaderValue::from_static("203.0.113.7, 198.51.100.1"),
        );
        assert_eq!(client_ip(None, &headers, peer), peer, "not configured");
        assert_eq!(
            client_ip(Some(&forwarded), &headers, peer),
            Some(IpAddr::from([198, 51, 100, 1]))
        );
        // A second header line (added by the proxy) wins over the client's own.
        headers.append(&forwarded, HeaderValue::from_static("2001:db8::1"));
        assert_eq!(
            client_ip(Some(&forwarded), &headers, peer),
            "2001:db8::1".parse().ok()
        );
        // Garbage or absence: the peer address.
        headers.append(
            &forwarded,
            HeaderValue::from_static("198.51.100.1, not-an-ip"),
        );
        assert_eq!(client_ip(Some(&forwarded), &headers, peer), peer);
        assert_eq!(client_ip(Some(&forwarded), &HeaderMap::new(), peer), peer);
    }
}
