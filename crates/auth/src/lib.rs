//! Who is calling: the admin credential, organization API tokens, and scopes.
//!
//! Management APIs (organizations, tokens) take the admin credential
//! ([`admin`]). Runners and scrapers present an organization API token, which
//! [`token::TokenAuthenticator`] resolves through token-service to a
//! [`Principal`]. Credentials are minted and hashed by [`secret`]; wrong ones
//! are limited per client address ([`failures`]).

pub mod admin;
pub mod failures;
pub mod secret;
pub mod token;
pub mod webhook;

use std::net::IpAddr;

use runplane_api::token::v1::Scope;
use tonic::Status;

pub use admin::{ADMIN_TOKEN_ENV, AdminArgs, AdminCredential, AdminCredentialError};
pub use failures::{AuthFailureArgs, FailureLimiter, TooManyFailures};
pub use token::{ACT_FOR_ORG_ID, ACT_FOR_ORG_NAME, Freshness, TokenAuthenticator, act_for};

/// Why a call is not allowed. Converted to a [`Status`] in one place.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No `authorization: Bearer …` on the call.
    #[error("missing credential: send `authorization: Bearer <token>`")]
    Missing,
    /// A credential in another scheme (`Basic …`).
    #[error("only Bearer credentials are accepted: send `authorization: Bearer <token>`")]
    NotBearer,
    /// Malformed, unknown, expired or revoked: the caller learns nothing more.
    #[error("invalid, expired or revoked token")]
    Invalid,
    /// Authenticated, but not allowed to do this.
    #[error("{0}")]
    Forbidden(String),
    /// This client address failed too often lately; nothing was checked.
    #[error(transparent)]
    TooManyFailures(#[from] TooManyFailures),
    /// token-service could not be reached or did not answer in time.
    #[error("authentication is unavailable: token-service: {0}")]
    Unavailable(String),
    /// token-service answered something unexpected.
    #[error("authentication failed unexpectedly")]
    Internal(String),
}

impl From<AuthError> for Status {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Missing | AuthError::NotBearer | AuthError::Invalid => {
                Status::unauthenticated(e.to_string())
            }
            AuthError::Forbidden(_) => Status::permission_denied(e.to_string()),
            AuthError::TooManyFailures(_) => Status::resource_exhausted(e.to_string()),
            AuthError::Unavailable(_) => Status::unavailable(e.to_string()),
            AuthError::Internal(ref detail) => {
                tracing::error!(%detail, "authentication failed unexpectedly");
                Status::internal(e.to_string())
            }
        }
    }
}

/// The bearer secret of an `Authorization` header value, if it has one.
/// The scheme is case-insensitive, as HTTP says.
pub fn bearer_from_header(value: &str) -> Option<&str> {
    let (scheme, secret) = value.trim().split_once(' ')?;
    let secret = secret.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !secret.is_empty()).then_some(secret)
}

/// Whether an `Authorization` header value uses a scheme other than Bearer
/// (`Basic …`): worth telling its sender that only Bearer is accepted.
pub fn is_other_scheme(value: &str) -> bool {
    let scheme = value.trim().split(' ').next().unwrap_or_default();
    !scheme.is_empty() && !scheme.eq_ignore_ascii_case("bearer")
}

/// The IP address a gRPC request came from, when the transport knows it.
pub fn client_ip<T>(request: &tonic::Request<T>) -> Option<IpAddr> {
    request.remote_addr().map(|a| a.ip())
}

/// The bearer secret of a gRPC request.
pub fn bearer<T>(request: &tonic::Request<T>) -> Result<&str, AuthError> {
    let value = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or(AuthError::Missing)?;
    bearer_from_header(value).ok_or(if is_other_scheme(value) {
        AuthError::NotBearer
    } else {
        AuthError::Missing
    })
}

/// An authenticated organization API token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub token_id: String,
    pub org_id: String,
    pub org_name: String,
    pub scopes: Vec<Scope>,
    /// The projects the token is limited to; empty: every project.
    pub projects: Vec<String>,
}

impl Principal {
    /// Fails with PERMISSION_DENIED unless the token has `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), AuthError> {
        if self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(AuthError::Forbidden(format!(
                "this token lacks the `{}` scope",
                scope.label()
            )))
        }
    }

    /// Whether the token may act on `project`.
    pub fn may_act_on(&self, project: &str) -> bool {
        self.projects.is_empty() || self.projects.iter().any(|p| p == project)
    }

    /// Fails with PERMISSION_DENIED unless the token may act on `project`.
    pub fn require_project(&self, project: &str) -> Result<(), AuthError> {
        if self.may_act_on(project) {
            return Ok(());
        }
        let allowed: Vec<String> = self
            .projects
            .iter()
            .take(5)
            .map(|p| runplane_api::input::quoted(p).to_string())
            .collect();
        let more = if self.projects.len() > 5 { ", …" } else { "" };
        Err(AuthError::Forbidden(format!(
            "this token is limited to the projects {}{more}, not {}",
            allowed.join(", "),
            runplane_api::input::quoted(project)
        )))
    }

    /// The projects to confine a listing to: `None` for every project.
    pub fn project_limit(&self) -> Option<&[String]> {
        (!self.projects.is_empty()).then_some(self.projects.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer_from_header("Bearer abc"), Some("abc"));
        assert_eq!(bearer_from_header("bearer   abc "), Some("abc"));
        assert_eq!(bearer_from_header("Basic abc"), None);
        assert_eq!(bearer_from_header("Bearer"), None);
        assert_eq!(bearer_from_header("Bearer "), None);
        assert_eq!(bearer_from_header(""), None);
        assert!(is_other_scheme("Basic dXNlcjpwYXNz"));
        assert!(!is_other_scheme("bearer abc") && !is_other_scheme(""));
    }

    #[test]
    fn scopes_are_enforced() {
        let principal = Principal {
            token_id: "t".into(),
            org_id: "o".into(),
            org_name: "cyberdyne".into(),
            scopes: vec![Scope::RunsWrite],
            projects: Vec::new(),
        };
        assert!(principal.require(Scope::RunsWrite).is_ok());
        let err = principal
            .require(Scope::MetricsRead)
            .expect_err("lacks scope");
        assert_eq!(Status::from(err).code(), Code::PermissionDenied);
        assert!(principal.require_project("anything").is_ok());
        assert_eq!(principal.project_limit(), None);

        let limited = Principal {
            projects: vec!["web".into()],
            ..principal
        };
        assert!(limited.require_project("web").is_ok());
        let err = limited.require_project("api").expect_err("another project");
        assert!(err.to_string().contains("\"web\""), "{err}");
        assert_eq!(Status::from(err).code(), Code::PermissionDenied);
        assert_eq!(limited.project_limit(), Some(&["web".to_owned()][..]));
    }
}
