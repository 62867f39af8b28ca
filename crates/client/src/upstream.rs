//! What a failed call to another service means for its caller: one
//! classification of the callee's status, used by every service and the CLI,
//! so that the same failure is the same answer wherever it happens.
//!
//! | callee's status | [`Failure`] | a service answers | metrics-service answers |
//! |---|---|---|---|
//! | UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED, ABORTED | `Unavailable` | UNAVAILABLE | 503 |
//! | RESOURCE_EXHAUSTED with `grpc-retry-pushback-ms` (shed) | `Unavailable` | UNAVAILABLE | 503 |
//! | any status made by our own transport (the callee died mid-call, the connection broke: tonic says UNKNOWN "transport error", or INTERNAL for a reset stream) | `Unavailable` | UNAVAILABLE | 503 |
//! | RESOURCE_EXHAUSTED without pushback (a limit) | `LimitReached` | per caller | 503 |
//! | UNAUTHENTICATED | `Unauthenticated` | per caller | 401 |
//! | PERMISSION_DENIED | `PermissionDenied` | per caller | 403 |
//! | NOT_FOUND | `NotFound` | per caller | per caller |
//! | INVALID_ARGUMENT, ALREADY_EXISTS, FAILED_PRECONDITION, OUT_OF_RANGE | `Rejected` | per caller | 502 |
//! | UNKNOWN or INTERNAL sent by the callee, DATA_LOSS, UNIMPLEMENTED, OK | `Internal` | INTERNAL | 502 |
//!
//! `Unavailable` is the one class worth retrying as it is: the callee was
//! down, slow, overloaded or cut off, and the same call may succeed later.

use std::time::Duration;

use tonic::{Code, Status};

/// The gRPC metadata key (from gRFC A6) that tells a client when to retry.
pub const PUSHBACK_METADATA: &str = "grpc-retry-pushback-ms";

/// A failed call, as its caller should treat it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The callee was unreachable, slow, shedding load, or the connection
    /// failed mid-call: a retryable outage.
    Unavailable {
        /// How long the callee asked its callers to wait, if it said.
        retry_after: Option<Duration>,
    },
    /// A limit or quota of the callee's was reached; retrying at once will not help.
    LimitReached,
    /// The callee refused the credential presented.
    Unauthenticated,
    /// The credential is valid but may not do this.
    PermissionDenied,
    /// The callee has no such thing.
    NotFound,
    /// The callee refused the request as it was made.
    Rejected,
    /// The callee failed, or answered what the caller cannot make sense of:
    /// a bug or a version mismatch, not an outage.
    Internal,
}

impl Failure {
    /// Whether the same call may succeed if simply tried again.
    pub fn is_retryable(self) -> bool {
        matches!(self, Failure::Unavailable { .. })
    }
}

/// Classifies a callee's status (see the module's table).
pub fn classify(status: &Status) -> Failure {
    let unavailable = Failure::Unavailable {
        retry_after: pushback(status),
    };
    if made_by_transport(status) {
        return unavailable;
    }
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Aborted => unavailable,
        Code::ResourceExhausted if pushback(status).is_some() => unavailable,
        Code::ResourceExhausted => Failure::LimitReached,
        Code::Unauthenticated => Failure::Unauthenticated,
        Code::PermissionDenied => Failure::PermissionDenied,
        Code::NotFound => Failure::NotFound,
        Code::InvalidArgument
        | Code::AlreadyExists
        | Code::FailedPrecondition
        | Code::OutOfRange => Failure::Rejected,
        Code::Unknown | Code::Internal | Code::DataLoss | Code::Unimplemented | Code::Ok => {
            Failure::Internal
        }
    }
}

/// The retry pushback a shedding callee sent.
fn pushback(status: &Status) -> Option<Duration> {
    status
        .metadata()
        .get(PUSHBACK_METADATA)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
}

/// Whether the status was made on this side of the connection from a failed
/// transport rather than sent by the callee: a callee's own answers carry no
/// source error, while tonic attaches the transport's (hyper's, the socket's)
/// to the status it makes when the connection fails, whatever code it picks.
pub fn made_by_transport(status: &Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if error.is::<tonic::transport::Error>()
            || error.is::<hyper::Error>()
            || error.is::<std::io::Error>()
        {
            return true;
        }
        source = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(code: Code) -> Status {
        Status::new(code, "from the callee")
    }

    #[test]
    fn every_code_the_callee_can_send_has_one_class() {
        let unavailable = Failure::Unavailable { retry_after: None };
        let table = [
            (Code::Ok, Failure::Internal),
            (Code::Cancelled, unavailable),
            (Code::Unknown, Failure::Internal),
            (Code::InvalidArgument, Failure::Rejected),
            (Code::DeadlineExceeded, unavailable),
            (Code::NotFound, Failure::NotFound),
            (Code::AlreadyExists, Failure::Rejected),
            (Code::PermissionDenied, Failure::PermissionDenied),
            (Code::ResourceExhausted, Failure::LimitReached),
            (Code::FailedPrecondition, Failure::Rejected),
            (Code::Aborted, unavailable),
            (Code::OutOfRange, Failure::Rejected),
            (Code::Unimplemented, Failure::Internal),
            (Code::Internal, Failure::Internal),
            (Code::Unavailable, unavailable),
            (Code::DataLoss, Failure::Internal),
            (Code::Unauthenticated, Failure::Unauthenticated),
        ];
        for (code, expected) in table {
            assert_eq!(classify(&sent(code)), expected, "{code:?}");
            assert_eq!(
                classify(&sent(code)).is_retryable(),
                matches!(expected, Failure::Unavailable { .. }),
                "{code:?}"
            );
        }
    }

    #[test]
    fn a_shed_call_is_retryable_after_its_pushback_and_a_limit_is_not() {
        let mut shed = sent(Code::ResourceExhausted);
        shed.metadata_mut().insert(
            PUSHBACK_METADATA,
            tonic::metadata::MetadataValue::from_static("1000"),
        );
        assert_eq!(
            classify(&shed),
            Failure::Unavailable {
                retry_after: Some(Duration::from_secs(1))
            }
        );
        assert_eq!(
            classify(&sent(Code::ResourceExhausted)),
            Failure::LimitReached
        );
    }

    /// A callee that accepts the connection, reads the call, and dies
    /// without answering: tonic makes the status itself.
    async fn callee_that_dies_mid_call() -> std::net::SocketAddr {
        use tokio::io::AsyncReadExt as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = socket.read(&mut buf).await;
                drop(socket);
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_callee_that_dies_mid_call_is_an_outage_not_an_internal_error() {
        use runplane_api::org::v1::organization_service_client::OrganizationServiceClient;
        use runplane_api::org::v1::{GetOrganizationRequest, get_organization_request::Lookup};

        let addr = callee_that_dies_mid_call().await;
        let args = crate::UpstreamArgs {
            upstream_timeout: Duration::from_secs(5),
            tls: runplane_tls::ClientTlsArgs::default(),
        };
        let mut client = OrganizationServiceClient::new(
            crate::channel(&addr.to_string(), &args).expect("channel"),
        );
        let status = client
            .get_organization(GetOrganizationRequest {
                lookup: Some(Lookup::Name("cyberdyne".into())),
            })
            .await
            .expect_err("the callee died");
        // What tonic says on its own: not a code that reads as an outage.
        assert!(
            matches!(
                status.code(),
                Code::Unknown | Code::Internal | Code::Unavailable
            ),
            "{status:?}"
        );
        assert_eq!(
            classify(&status),
            Failure::Unavailable { retry_after: None },
            "{status:?}"
        );
        // A callee that sends UNKNOWN itself is a different matter.
        assert_eq!(classify(&sent(Code::Unknown)), Failure::Internal);
    }
}
