//! The gRPC server every service runs: its services plus `grpc.health.v1`
//! health and server reflection (v1 and v1alpha, for grpcurl and grpcio),
//! request timeouts, the service's own Prometheus metrics on `GET /metrics`
//! (same port, plain HTTP/1.1), every request measured, traced and logged by
//! [`crate::observe::GrpcServerLayer`], load shedding past a concurrency limit
//! ([`crate::admission`]), bounded message and header sizes, TLS or mutual
//! TLS when configured ([`runplane_tls`]), and a graceful drain on shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use runplane_api::DecodingLimit;
use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic_health::ServingStatus;

/// Server settings every gRPC service accepts.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Longest time one request may take before it fails with DEADLINE_EXCEEDED.
    #[arg(long, env = "RUNPLANE_REQUEST_TIMEOUT", default_value = "30s", value_parser = runplane_config::parse_duration)]
    pub request_timeout: Duration,
    /// On SIGTERM, how long to keep serving while reporting NOT_SERVING (and,
    /// over HTTP, failing /readyz), so that load balancers and meshes stop
    /// sending new requests before the listener closes.
    #[arg(long, env = "RUNPLANE_SHUTDOWN_DELAY", default_value = "0s", value_parser = runplane_config::parse_duration)]
    pub shutdown_delay: Duration,
    /// Then, how long in-flight requests may take to finish before the process exits.
    #[arg(long, env = "RUNPLANE_DRAIN_TIMEOUT", default_value = "10s", value_parser = runplane_config::parse_duration)]
    pub drain_timeout: Duration,
    /// Requests worked on at once; past it, requests are refused at once
    /// (RESOURCE_EXHAUSTED / HTTP 503) rather than queued. Probes are exempt.
    #[arg(long, env = "RUNPLANE_MAX_CONCURRENT_REQUESTS", default_value_t = 256)]
    pub max_concurrent_requests: usize,
    #[command(flatten)]
    pub tls: runplane_tls::ServerTlsArgs,
}

/// The services every gRPC port serves besides its own, as reflection names them.
const HEALTH_SERVICE: &str = "grpc.health.v1.Health";
const REFLECTION_V1: &str = "grpc.reflection.v1.ServerReflection";
const REFLECTION_V1ALPHA: &str = "grpc.reflection.v1alpha.ServerReflection";

/// The largest request message a server accepts. runplane's requests are a
/// few hundred bytes; anything near this is an attack or a bug.
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;

/// The largest header block a server accepts (HTTP/2 and HTTP/1).
pub const MAX_HEADER_BYTES: u32 = 16 * 1024;

/// Binds the listening socket up front, so that a taken port fails start-up with
/// a message that names it.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

/// Serves `service` plus health and reflection on `listener` until SIGTERM or
/// SIGINT; then reports NOT_SERVING, keeps serving for the shutdown delay,
/// stops accepting, and lets in-flight requests finish for at most the drain
/// timeout. Requests over [`MAX_REQUEST_BYTES`] are refused.
pub async fn serve<S>(listener: TcpListener, service: S, args: &ServerArgs) -> anyhow::Result<()>
where
    S: tower::Service<http::Request<tonic::body::Body>, Error = Infallible>
        + NamedService
        + DecodingLimit
        + Clone
        + Send
        + Sync
        + 'static,
    S::Response: axum::response::IntoResponse,
    S::Future: Send + 'static,
{
    let service_names = [S::NAME];
    let routes = Routes::new(service.with_decoding_limit(MAX_REQUEST_BYTES));
    let addr = listener
        .local_addr()
        .context("listening socket has no address")?;
    let acceptor = crate::listener::Acceptor::new(runplane_tls::server_config(&args.tls)?);
    let (health, health_service) = tonic_health::server::health_reporter();
    for name in service_names {
        health
            .set_service_status(name, ServingStatus::Serving)
            .await;
    }
    // Reflection lists what this port serves, not every service of the contract.
    let reflection = || {
        service_names.iter().fold(
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(runplane_api::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .with_service_name(HEALTH_SERVICE),
            |builder, name| builder.with_service_name(*name),
        )
    };
    let reflection_v1 = reflection()
        .with_service_name(REFLECTION_V1)
        .build_v1()
        .context("building reflection (v1)")?;
    let reflection_v1alpha = reflection()
        .with_service_name(REFLECTION_V1ALPHA)
        .build_v1alpha()
        .context("building reflection (v1alpha)")?;
    let routes: Routes = routes
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .into_axum_router()
        .route(
            "/metrics",
            axum::routing::get(|| async {
                (
                    [(
                        http::header::CONTENT_TYPE,
                        runplane_telemetry::metrics::CONTENT_TYPE,
                    )],
                    runplane_telemetry::metrics::render(),
                )
            }),
        )
        .into();

    let (drain_started_tx, drain_started_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown_delay = args.shutdown_delay;
    let stop = async move {
        let signal = crate::shutdown::signal().await;
        tracing::info!(
            signal,
            ?shutdown_delay,
            "shutting down: reporting NOT_SERVING"
        );
        // "" is the whole server, as a mesh or Kubernetes probe asks for it.
        for name in std::iter::once("").chain(service_names) {
            health
                .set_service_status(name, ServingStatus::NotServing)
                .await;
        }
        tokio::time::sleep(shutdown_delay).await;
        tracing::info!("no longer accepting; draining requests in flight");
        let _ = drain_started_tx.send(());
    };

    let tls = acceptor.is_tls();
    let mutual_tls = args.tls.tls_client_ca.is_some();
    let incoming = crate::listener::incoming(listener, acceptor);
    let server = Server::builder()
        .timeout(args.request_timeout)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_max_header_list_size(Some(MAX_HEADER_BYTES))
        .max_concurrent_streams(Some(1024))
        // For Prometheus' plain-HTTP GET /metrics; gRPC stays on HTTP/2.
        .accept_http1(true)
        // Outermost: a shed request is still measured, traced and logged.
        .layer(crate::observe::GrpcServerLayer::new())
        .layer(crate::admission::AdmissionLayer::new(
            args.max_concurrent_requests,
            crate::admission::Protocol::Grpc,
        ))
        .layer(crate::malformed::MalformedRequestLayer)
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, stop);
    tracing::info!(%addr, tls, mutual_tls, "gRPC server listening");

    let drain_timeout = args.drain_timeout;
    let deadline = async move {
        if drain_started_rx.await.is_ok() {
            tokio::time::sleep(drain_timeout).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = server => result.context("gRPC server failed")?,
        () = deadline => tracing::warn!(?drain_timeout, "drain timeout reached; exiting with requests still in flight"),
    }
    runplane_telemetry::summary::requests().log();
    tracing::info!("stopped");
    Ok(())
}
