//! Who is calling: the admin credential, organization API tokens, and scopes.
//!
//! Management APIs (organizations, tokens) take the admin credential. Runners and
//! scrapers present an organization API token, which [`TokenAuthenticator`]
//! resolves through token-service to a [`Principal`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::client::Channel;
use runplane_api::token::v1::token_service_client::TokenServiceClient;
use runplane_api::token::v1::{AuthenticateRequest, Scope};
use tonic::{Code, Status};

use crate::auth_failures::{FailureLimiter, TooManyFailures};
use crate::secret::{self, SecretHash, SecretKind};

/// Environment variable that holds the admin credential itself; wins over the file.
pub const ADMIN_TOKEN_ENV: &str = "RUNPLANE_ADMIN_TOKEN";

/// Why a call is not allowed. Converted to a [`Status`] in one place.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No `authorization: Bearer …` on the call.
    #[error("missing credential: send `authorization: Bearer <token>`")]
    Missing,
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
    #[error("authentication is unavailable: {0}")]
    Unavailable(String),
    /// token-service answered something unexpected.
    #[error("authentication failed unexpectedly")]
    Internal(String),
}

impl From<AuthError> for Status {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Missing | AuthError::Invalid => Status::unauthenticated(e.to_string()),
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

/// The IP address a gRPC request came from, when the transport knows it.
pub fn client_ip<T>(request: &tonic::Request<T>) -> Option<IpAddr> {
    request.remote_addr().map(|a| a.ip())
}

/// The bearer secret of a gRPC request.
pub fn bearer<T>(request: &tonic::Request<T>) -> Result<&str, AuthError> {
    request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_from_header)
        .ok_or(AuthError::Missing)
}

/// The human name of a scope, as the CLI and error messages spell it.
pub fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::RunsWrite => "runs:write",
        Scope::MetricsRead => "metrics:read",
        Scope::Unspecified => "unspecified",
    }
}

/// Parses `runs:write` / `metrics:read`.
pub fn parse_scope(text: &str) -> Option<Scope> {
    match text {
        "runs:write" => Some(Scope::RunsWrite),
        "metrics:read" => Some(Scope::MetricsRead),
        _ => None,
    }
}

/// An authenticated organization API token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub token_id: String,
    pub org_id: String,
    pub org_name: String,
    pub scopes: Vec<Scope>,
}

impl Principal {
    /// Fails with PERMISSION_DENIED unless the token has `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), AuthError> {
        if self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(AuthError::Forbidden(format!(
                "this token lacks the `{}` scope",
                scope_name(scope)
            )))
        }
    }
}

/// Where a service finds the admin credential.
#[derive(Debug, Clone, clap::Args)]
pub struct AdminArgs {
    /// File holding the admin credential (`runplane up` writes it on first start).
    /// RUNPLANE_ADMIN_TOKEN, when set, holds the credential itself and wins.
    #[arg(
        long,
        env = "RUNPLANE_ADMIN_TOKEN_FILE",
        default_value = ".runplane/admin-token"
    )]
    pub admin_token_file: PathBuf,
}

/// The admin credential could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AdminCredentialError {
    #[error(
        "cannot read the admin credential from {path}: {cause} \
         (set RUNPLANE_ADMIN_TOKEN, or --admin-token-file, or start the suite with `runplane up`)"
    )]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "the admin credential in {origin} is malformed ({reason}): use one minted by `runplane up` \
         (rpa_…) or a random secret of at least 32 visible ASCII characters"
    )]
    Malformed {
        origin: String,
        reason: secret::MalformedSecret,
    },
}

/// The suite's admin credential. Callers are checked against its hash; the
/// secret itself is kept only to call peers that require it.
pub struct AdminCredential {
    secret: String,
    hash: SecretHash,
    failures: Arc<FailureLimiter>,
}

impl std::fmt::Debug for AdminCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminCredential(..)")
    }
}

impl AdminCredential {
    /// Loads the credential from RUNPLANE_ADMIN_TOKEN or the configured file.
    pub fn load(args: &AdminArgs) -> Result<Self, AdminCredentialError> {
        match std::env::var(ADMIN_TOKEN_ENV) {
            Ok(value) if !value.trim().is_empty() => {
                Self::from_secret(value.trim(), ADMIN_TOKEN_ENV)
            }
            _ => Self::from_file(&args.admin_token_file),
        }
    }

    /// Loads the credential from a file (surrounding white space ignored).
    pub fn from_file(path: &Path) -> Result<Self, AdminCredentialError> {
        let text = std::fs::read_to_string(path).map_err(|cause| AdminCredentialError::Read {
            path: path.to_owned(),
            cause,
        })?;
        Self::from_secret(text.trim(), &path.display().to_string())
    }

    /// Accepts a minted `rpa_…` credential, or one from an operator's own
    /// secret store (a Helm-generated Secret, say): at least 32 visible ASCII
    /// characters. An organization token (`rpt_…`) is never an admin credential.
    fn from_secret(secret: &str, origin: &str) -> Result<Self, AdminCredentialError> {
        let minted = secret::parse(SecretKind::Admin, secret);
        let operator_provided = secret.len() >= 32
            && secret.bytes().all(|b| b.is_ascii_graphic())
            && !secret.starts_with("rpt_")
            && !secret.starts_with("rpa_");
        if let Err(reason) = minted
            && !operator_provided
        {
            return Err(AdminCredentialError::Malformed {
                origin: origin.to_owned(),
                reason,
            });
        }
        Ok(AdminCredential {
            secret: secret.to_owned(),
            hash: SecretHash::of(secret),
            failures: Arc::new(FailureLimiter::off()),
        })
    }

    /// Limits wrong credentials per client address (see [`crate::auth_failures`]).
    pub fn with_failure_limit(mut self, failures: Arc<FailureLimiter>) -> Self {
        self.failures = failures;
        self
    }

    /// Allows the call only if it carries the admin credential.
    pub fn check<T>(&self, request: &tonic::Request<T>) -> Result<(), AuthError> {
        let presented = bearer(request)?;
        let client = client_ip(request);
        self.failures.check(client)?;
        if SecretHash::of(presented).matches(&self.hash) {
            Ok(())
        } else {
            self.failures.record_failure(client);
            Err(AuthError::Invalid)
        }
    }

    /// The secret, for calls to peers that require the admin credential.
    pub fn secret(&self) -> &str {
        &self.secret
    }
}

/// Resolves organization API tokens through token-service, optionally caching
/// answers for a short time so that the ingest path does not pay a network hop
/// per call. A cached answer means a revoked token may keep working for at most
/// `cache_ttl` on this path.
pub struct TokenAuthenticator {
    client: TokenServiceClient<Channel>,
    cache: Option<AnswerCache>,
    /// Presented to token-service: it marks this caller as a runplane
    /// service, which limits failures per client itself.
    service_credential: Arc<AdminCredential>,
    failures: Arc<FailureLimiter>,
}

struct AnswerCache {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<String, (Principal, Instant)>>,
}

impl TokenAuthenticator {
    /// An authenticator that asks token-service on every call, presenting
    /// `service_credential` (the suite's admin credential) as the caller.
    pub fn uncached(channel: Channel, service_credential: Arc<AdminCredential>) -> Self {
        TokenAuthenticator {
            client: TokenServiceClient::new(channel),
            cache: None,
            service_credential,
            failures: Arc::new(FailureLimiter::off()),
        }
    }

    /// An authenticator that remembers successful answers for `ttl`, holding at
    /// most `capacity` of them. A zero `ttl` disables the cache.
    pub fn cached(
        channel: Channel,
        service_credential: Arc<AdminCredential>,
        ttl: Duration,
        capacity: usize,
    ) -> Self {
        let cache = (!ttl.is_zero() && capacity > 0).then(|| AnswerCache {
            ttl,
            capacity,
            entries: Mutex::new(HashMap::new()),
        });
        TokenAuthenticator {
            cache,
            ..Self::uncached(channel, service_credential)
        }
    }

    /// Limits invalid tokens per client address (see [`crate::auth_failures`]).
    pub fn with_failure_limit(mut self, failures: Arc<FailureLimiter>) -> Self {
        self.failures = failures;
        self
    }

    /// Authenticates the request's bearer token and checks it has `scope`.
    pub async fn authorize<T>(
        &self,
        request: &tonic::Request<T>,
        scope: Scope,
    ) -> Result<Principal, AuthError> {
        let principal = self
            .authenticate(bearer(request)?, client_ip(request))
            .await?;
        principal.require(scope)?;
        Ok(principal)
    }

    /// Resolves a bearer secret presented by `client` to its principal, and
    /// names its organization on the request's span (its log line and trace).
    pub async fn authenticate(
        &self,
        presented: &str,
        client: Option<IpAddr>,
    ) -> Result<Principal, AuthError> {
        self.failures.check(client)?;
        let principal = match self.resolve(presented).await {
            Err(AuthError::Invalid) => {
                self.failures.record_failure(client);
                return Err(AuthError::Invalid);
            }
            result => result?,
        };
        crate::observe::record_org(&principal.org_name);
        Ok(principal)
    }

    async fn resolve(&self, presented: &str) -> Result<Principal, AuthError> {
        // A malformed secret cannot be valid: answer without a network hop.
        secret::parse(SecretKind::ApiToken, presented).map_err(|_| AuthError::Invalid)?;
        let key = SecretHash::of(presented).0;
        if let Some(principal) = self.cache.as_ref().and_then(|c| c.get(&key)) {
            return Ok(principal);
        }
        let response = self
            .client
            .clone()
            .authenticate(crate::client::with_bearer(
                AuthenticateRequest {
                    secret: presented.to_owned(),
                },
                self.service_credential.secret(),
            ))
            .await
            .map_err(|status| match status.code() {
                Code::Unauthenticated => AuthError::Invalid,
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
                    AuthError::Unavailable(status.message().to_owned())
                }
                code => AuthError::Internal(format!("{code:?}: {}", status.message())),
            })?
            .into_inner();
        let principal = Principal {
            scopes: response.scopes().collect(),
            token_id: response.token_id,
            org_id: response.org_id,
            org_name: response.org_name,
        };
        if let Some(cache) = &self.cache {
            cache.put(key, principal.clone());
        }
        Ok(principal)
    }
}

impl AnswerCache {
    fn get(&self, key: &str) -> Option<Principal> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(p, _)| p.clone())
    }

    fn put(&self, key: String, principal: Principal) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.capacity {
            let ttl = self.ttl;
            entries.retain(|_, (_, at)| at.elapsed() < ttl);
            if entries.len() >= self.capacity {
                // Still full of live answers: start over rather than grow without bound.
                entries.clear();
            }
        }
        entries.insert(key, (principal, Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer_from_header("Bearer abc"), Some("abc"));
        assert_eq!(bearer_from_header("bearer   abc "), Some("abc"));
        assert_eq!(bearer_from_header("Basic abc"), None);
        assert_eq!(bearer_from_header("Bearer"), None);
        assert_eq!(bearer_from_header("Bearer "), None);
        assert_eq!(bearer_from_header(""), None);
    }

    #[test]
    fn scopes_round_trip_and_are_enforced() {
        for scope in [Scope::RunsWrite, Scope::MetricsRead] {
            assert_eq!(parse_scope(scope_name(scope)), Some(scope));
        }
        assert_eq!(parse_scope("admin"), None);
        let principal = Principal {
            token_id: "t".into(),
            org_id: "o".into(),
            org_name: "cyberdyne".into(),
            scopes: vec![Scope::RunsWrite],
        };
        assert!(principal.require(Scope::RunsWrite).is_ok());
        let err = principal
            .require(Scope::MetricsRead)
            .expect_err("lacks scope");
        assert_eq!(Status::from(err).code(), Code::PermissionDenied);
    }

    #[test]
    fn wrong_admin_credentials_are_limited_per_client_address() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("admin-token");
        let secret = secret::generate(SecretKind::Admin).expect("rng");
        std::fs::write(&path, &secret).expect("write");
        let admin = AdminCredential::from_file(&path)
            .expect("load")
            .with_failure_limit(Arc::new(FailureLimiter::new(2)));
        let from = |credential: &str, last: u8| {
            let mut request = crate::client::with_bearer((), credential);
            let addr = std::net::SocketAddr::from(([192, 0, 2, last], 40000));
            request
                .extensions_mut()
                .insert(tonic::transport::server::TcpConnectInfo {
                    local_addr: None,
                    remote_addr: Some(addr),
                });
            request
        };
        for _ in 0..2 {
            assert!(matches!(
                admin.check(&from("rpa_nope", 1)),
                Err(AuthError::Invalid)
            ));
        }
        // Spent: refused before checking, the right credential too.
        assert!(matches!(
            admin.check(&from(&secret, 1)),
            Err(AuthError::TooManyFailures(_))
        ));
        assert!(admin.check(&from(&secret, 2)).is_ok(), "another address");
    }

    #[test]
    fn admin_credential_checks_requests() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("admin-token");
        let secret = secret::generate(SecretKind::Admin).expect("rng");
        std::fs::write(&path, format!("{secret}\n")).expect("write");
        let admin = AdminCredential::from_file(&path).expect("load");

        let ok = crate::client::with_bearer((), &secret);
        assert!(admin.check(&ok).is_ok());
        let wrong = crate::client::with_bearer((), "rpa_nope");
        assert!(matches!(admin.check(&wrong), Err(AuthError::Invalid)));
        assert!(matches!(
            admin.check(&tonic::Request::new(())),
            Err(AuthError::Missing)
        ));

        // An operator's own strong secret is accepted; short ones and tenant tokens are not.
        std::fs::write(&path, "Zx8q1hV4oWc9TbPp2LrN6sKe3YfAjG7m").expect("write");
        assert!(AdminCredential::from_file(&path).is_ok());
        let tenant = secret::generate(SecretKind::ApiToken).expect("rng");
        for bad in [
            "short-secret",
            tenant.as_str(),
            "rpa_broken-checksum-but-long-enough-to-pass",
        ] {
            std::fs::write(&path, bad).expect("write");
            assert!(AdminCredential::from_file(&path).is_err(), "{bad}");
        }
        assert!(AdminCredential::from_file(&dir.path().join("missing")).is_err());
    }
}
