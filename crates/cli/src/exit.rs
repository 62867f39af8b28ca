//! Turning a failed call into a message a person can act on.

use runplane_client::Failure;
use tonic::Status;

/// Describes a failed call to `service` at `addr`.
pub(crate) fn describe(status: &Status, service: &str, addr: &str) -> anyhow::Error {
    let message = status.message();
    match runplane_client::classify(status) {
        Failure::Unavailable { .. } => anyhow::anyhow!(
            "{service} at {addr} is unavailable ({message}); is the suite running? (`runplane up`)"
        ),
        Failure::Unauthenticated => anyhow::anyhow!("{service} refused the credential: {message}"),
        Failure::PermissionDenied => anyhow::anyhow!("not allowed: {message}"),
        Failure::LimitReached | Failure::NotFound | Failure::Rejected | Failure::Internal => {
            anyhow::anyhow!("{message}")
        }
    }
}
