//! How servers accept connections: plain TCP, or TLS when configured
//! ([`runplane_tls`]). Both the gRPC and the HTTP server go through here, so a
//! connection is set up the same way whatever it carries.
//!
//! A TLS handshake runs in the connection's own task, bounded by
//! [`HANDSHAKE_TIMEOUT`]: a slow or silent client delays only itself, never the
//! accept loop.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// How long a client may take to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Turns accepted TCP streams into [`Connection`]s.
#[derive(Clone)]
pub struct Acceptor {
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Acceptor {
    /// An acceptor that speaks TLS with `config`, or plain TCP without one.
    pub fn new(config: Option<Arc<rustls::ServerConfig>>) -> Self {
        Acceptor {
            tls: config.map(tokio_rustls::TlsAcceptor::from),
        }
    }

    /// Whether connections are TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Completes a connection accepted on a listener: no delay on small
    /// writes, then the TLS handshake if there is one.
    pub async fn complete(&self, stream: TcpStream) -> io::Result<Connection> {
        let info = TcpConnectInfo {
            local_addr: stream.local_addr().ok(),
            remote_addr: stream.peer_addr().ok(),
        };
        let _ = stream.set_nodelay(true);
        let io = match &self.tls {
            None => Io::Plain(stream),
            Some(tls) => {
                let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await;
                let stream = handshake.map_err(|_| {
                    io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")
                })??;
                Io::Tls(Box::new(stream))
            }
        };
        Ok(Connection { io, info })
    }
}

/// An accepted connection, plain or TLS, that knows its addresses.
pub struct Connection {
    io: Io,
    info: TcpConnectInfo,
}

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connection {
    /// The client's address.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.info.remote_addr
    }
}

/// Its addresses reach handlers as tonic's own TCP connect info, so that
/// `Request::remote_addr` works the same over TLS.
impl Connected for Connection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Accepts connections on `listener`, completing each in a task of its own
/// (tonic takes the stream as its incoming connections; the HTTP server reads
/// it too). Never yields an error: a failed handshake is logged here. Dropping
/// the stream closes the listener.
pub fn incoming(
    listener: TcpListener,
    acceptor: Acceptor,
) -> impl tokio_stream::Stream<Item = io::Result<Connection>> {
    let (ready, connections) = tokio::sync::mpsc::channel::<io::Result<Connection>>(64);
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors, say: back off instead of spinning.
                        tracing::warn!(error = %e, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = ready.closed() => break,
            };
            let acceptor = acceptor.clone();
            let ready = ready.clone();
            tokio::spawn(async move {
                let peer = stream.peer_addr().ok();
                match acceptor.complete(stream).await {
                    Ok(connection) => {
                        let _ = ready.send(Ok(connection)).await;
                    }
                    Err(e) => tracing::info!(?peer, error = %e, "TLS handshake failed"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(connections)
}
