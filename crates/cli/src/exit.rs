//! Turning a failed call into a message a person can act on.

use tonic::{Code, Status};

/// Describes a failed call to `service` at `addr`.
pub(crate) fn describe(status: &Status, service: &str, addr: &str) -> anyhow::Error {
    let message = status.message();
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded => anyhow::anyhow!(
            "{service} at {addr} is unavailable ({message}); is the suite running? (`runplane up`)"
        ),
        Code::Unauthenticated => anyhow::anyhow!("{service} refused the credential: {message}"),
        Code::PermissionDenied => anyhow::anyhow!("not allowed: {message}"),
        _ => anyhow::anyhow!("{message}"),
    }
}
