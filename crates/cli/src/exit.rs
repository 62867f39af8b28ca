//! Turning a failed call into a message a person can act on.

use runplane_client::Failure;
use tonic::{Code, Status};

/// Describes a failed call to `service` at `addr`.
pub(crate) fn describe(status: &Status, service: &str, addr: &str) -> anyhow::Error {
    let message = status.message();
    // The setting that names the address, to check when it is the wrong one.
    let flag = format!("--{service}-addr");
    if status.code() == Code::Unimplemented {
        let answer = if message.contains("HTTP status") {
            format!("it answered as an HTTP server, not gRPC: {message}")
        } else {
            "it answered UNIMPLEMENTED: another service is there".to_owned()
        };
        return anyhow::anyhow!(
            "{addr} does not serve {service}'s API ({answer}); check {flag} (or the config file's address for {service})"
        );
    }
    match runplane_client::classify(status) {
        // It answered: what it depends on is what is missing.
        Failure::Unavailable { .. } if !runplane_client::upstream::made_by_transport(status) => {
            anyhow::anyhow!("{service} at {addr} cannot answer now: {message}")
        }
        Failure::Unavailable { .. } => anyhow::anyhow!(
            "cannot reach {service} at {addr} ({message}); is the suite running (`runplane up`), and is {flag} its address?"
        ),
        Failure::Unauthenticated => anyhow::anyhow!("{service} refused the credential: {message}"),
        Failure::PermissionDenied => anyhow::anyhow!("not allowed: {message}"),
        Failure::LimitReached | Failure::NotFound | Failure::Rejected | Failure::Internal => {
            anyhow::anyhow!("{message}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_address_is_named_with_the_setting_to_check() {
        let other_service = describe(&Status::unimplemented(""), "org-service", "127.0.0.1:1");
        let text = other_service.to_string();
        assert!(
            text.contains("127.0.0.1:1") && text.contains("--org-service-addr"),
            "{text}"
        );
        let http = describe(
            &Status::unimplemented("grpc-status header missing, mapped from HTTP status code 404"),
            "org-service",
            "127.0.0.1:2",
        );
        assert!(http.to_string().contains("HTTP server, not gRPC"), "{http}");
        // A service that answered it cannot serve is not "unreachable".
        let answered = describe(
            &Status::unavailable("authentication is unavailable: token-service: tcp connect error"),
            "workflow-run-service",
            "127.0.0.1:3",
        );
        let text = answered.to_string();
        assert!(
            text.contains("cannot answer now") && text.contains("token-service"),
            "{text}"
        );
    }
}
