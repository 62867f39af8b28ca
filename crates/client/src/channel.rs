//! Channels to peer services: lazy (a peer that is down does not stop start-up),
//! with a connect timeout and a deadline on every call, over TLS for
//! `https://` peers ([`runplane_tls`]).

use std::time::Duration;

use runplane_tls::{ClientTlsArgs, TlsError};
use tonic::transport::Endpoint;

use crate::observed::ObservedChannel;

/// What clients of other services are built over: a lazily connecting channel
/// that measures and traces each call (see [`crate::observed`]).
pub type Channel = ObservedChannel;

/// Settings for calls to other runplane services.
#[derive(Debug, Clone, clap::Args)]
pub struct UpstreamArgs {
    /// Deadline for each call to another runplane service.
    #[arg(long, env = "RUNPLANE_UPSTREAM_TIMEOUT", default_value = "5s", value_parser = runplane_config::parse_duration)]
    pub upstream_timeout: Duration,
    #[command(flatten)]
    pub tls: ClientTlsArgs,
}

/// A peer that cannot be reached as configured, reported at start-up.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error(
        "invalid service address {addr:?}: {reason} (expected host:port, http://host:port or https://host:port)"
    )]
    InvalidAddress { addr: String, reason: String },
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// A lazily connecting channel to `addr` (`host:port`, `http://host:port`,
/// `https://host:port`; `host:port` is https when client TLS is configured).
/// Connection failures surface per call as UNAVAILABLE, and the channel
/// reconnects by itself when the peer comes back.
pub fn channel(addr: &str, args: &UpstreamArgs) -> Result<Channel, ChannelError> {
    let uri = if addr.contains("://") {
        addr.to_owned()
    } else if args.tls.is_set() {
        format!("https://{addr}")
    } else {
        format!("http://{addr}")
    };
    let invalid = |reason: String| ChannelError::InvalidAddress {
        addr: addr.to_owned(),
        reason,
    };
    let mut endpoint = Endpoint::from_shared(uri).map_err(|e| invalid(e.to_string()))?;
    if endpoint.uri().scheme_str() == Some("https") {
        endpoint = endpoint
            .tls_config(runplane_tls::client_config(&args.tls)?)
            .map_err(|e| invalid(format!("TLS: {e}")))?;
    }
    Ok(ObservedChannel::new(
        endpoint
            .connect_timeout(args.upstream_timeout.min(Duration::from_secs(3)))
            .timeout(args.upstream_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true)
            .connect_lazy(),
    ))
}

/// Wraps `message` in a request that carries `secret` as its bearer credential.
pub fn with_bearer<T>(message: T, secret: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    match format!("Bearer {secret}").parse() {
        Ok(value) => {
            request.metadata_mut().insert("authorization", value);
        }
        // A secret that cannot be a header value cannot be valid either; sending
        // the request without it gets the same UNAUTHENTICATED answer.
        Err(_) => tracing::debug!("credential is not a valid header value; sending none"),
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> UpstreamArgs {
        UpstreamArgs {
            upstream_timeout: Duration::from_secs(1),
            tls: ClientTlsArgs::default(),
        }
    }

    #[tokio::test]
    async fn accepts_host_port_and_urls_and_rejects_garbage() {
        assert!(channel("127.0.0.1:50051", &args()).is_ok());
        assert!(channel("http://org-service:50051", &args()).is_ok());
        assert!(channel("https://org-service:50051", &args()).is_ok());
        assert!(channel("not a uri", &args()).is_err());
    }

    #[tokio::test]
    async fn a_missing_ca_file_is_named() {
        let args = UpstreamArgs {
            tls: ClientTlsArgs {
                upstream_tls_ca: Some("/nonexistent/ca.pem".into()),
                ..ClientTlsArgs::default()
            },
            ..args()
        };
        let error = channel("org-service:50051", &args)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            error.starts_with("cannot read upstream-tls-ca file /nonexistent/ca.pem"),
            "{error}"
        );
    }

    #[test]
    fn bearer_metadata_is_set() {
        let request = with_bearer((), "rpt_abc");
        assert_eq!(
            request
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer rpt_abc")
        );
    }
}
