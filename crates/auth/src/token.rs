//! Organization API tokens, resolved through token-service.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runplane_api::token::v1::token_service_client::TokenServiceClient;
use runplane_api::token::v1::{AuthenticateRequest, Scope};
use runplane_client::{Channel, Failure};

use crate::admin::AdminCredential;
use crate::failures::FailureLimiter;
use crate::secret::{self, SecretHash, SecretKind};
use crate::{AuthError, Principal, bearer, client_ip};

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

    /// Limits invalid tokens, each by its own failures (see [`crate::failures`]).
    pub fn with_failure_limit(mut self, failures: Arc<FailureLimiter>) -> Self {
        self.failures = failures;
        self
    }

    /// Authenticates the request's bearer token and checks it has `scope`,
    /// from the cache when it holds a recent answer (the hot reporting path).
    ///
    /// A runplane service may report runs for an organization it has
    /// verified itself (ingest-service, for a webhook whose signature it
    /// checked): it presents the suite's credential and names the
    /// organization in [`ACT_FOR_ORG_ID`] and [`ACT_FOR_ORG_NAME`].
    pub async fn authorize<T>(
        &self,
        request: &tonic::Request<T>,
        scope: Scope,
    ) -> Result<Principal, AuthError> {
        let presented = bearer(request)?;
        if self.service_credential.is(presented) {
            return acting_for(request, scope);
        }
        let principal = self
            .authenticate(bearer(request)?, client_ip(request), Freshness::Cached)
            .await?;
        principal.require(scope)?;
        Ok(principal)
    }

    /// [`TokenAuthenticator::authorize`], asking token-service whatever the
    /// cache holds: for deletes and reads, which a revoked token must not
    /// make even for the cache's few seconds.
    pub async fn authorize_fresh<T>(
        &self,
        request: &tonic::Request<T>,
        scope: Scope,
    ) -> Result<Principal, AuthError> {
        let principal = self
            .authenticate(bearer(request)?, client_ip(request), Freshness::Fresh)
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
        freshness: Freshness,
    ) -> Result<Principal, AuthError> {
        let hash = SecretHash::of(presented);
        self.failures.check(&hash)?;
        let principal = match self.resolve(presented, &hash, freshness).await {
            Err(AuthError::Invalid) => {
                self.failures.record_failure(&hash, client)?;
                return Err(AuthError::Invalid);
            }
            result => result?,
        };
        runplane_telemetry::trace_context::record_org(&principal.org_name);
        Ok(principal)
    }

    async fn resolve(
        &self,
        presented: &str,
        hash: &SecretHash,
        freshness: Freshness,
    ) -> Result<Principal, AuthError> {
        // A malformed secret cannot be valid: answer without a network hop.
        secret::parse(SecretKind::ApiToken, presented).map_err(|_| AuthError::Invalid)?;
        let key = hash.0.clone();
        let cached = match freshness {
            Freshness::Cached => self.cache.as_ref().and_then(|c| c.get(&key)),
            Freshness::Fresh => None,
        };
        if let Some(principal) = cached {
            return Ok(principal);
        }
        let response = self
            .client
            .clone()
            .authenticate(runplane_client::with_bearer(
                AuthenticateRequest {
                    secret: presented.to_owned(),
                },
                self.service_credential.secret(),
            ))
            .await
            .map_err(|status| match runplane_client::classify(&status) {
                Failure::Unauthenticated => AuthError::Invalid,
                Failure::Unavailable { .. } | Failure::LimitReached => {
                    AuthError::Unavailable(status.message().to_owned())
                }
                // token-service refusing the service's own credential, or
                // answering nonsense: a misconfiguration or a bug.
                Failure::PermissionDenied
                | Failure::NotFound
                | Failure::Rejected
                | Failure::Internal => {
                    AuthError::Internal(format!("{:?}: {}", status.code(), status.message()))
                }
            })?
            .into_inner();
        let principal = Principal {
            scopes: response.scopes().collect(),
            projects: response.projects,
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

/// Metadata naming the organization (id) a runplane service reports for.
pub const ACT_FOR_ORG_ID: &str = "runplane-act-for-org-id";
/// Metadata naming the organization (name) a runplane service reports for.
pub const ACT_FOR_ORG_NAME: &str = "runplane-act-for-org-name";

/// A request from a runplane service, reporting for the organization it names.
fn acting_for<T>(request: &tonic::Request<T>, scope: Scope) -> Result<Principal, AuthError> {
    if scope != Scope::RunsWrite {
        return Err(AuthError::Forbidden(
            "the suite's credential only reports runs for an organization here".into(),
        ));
    }
    let named = |key: &'static str| {
        request
            .metadata()
            .get(key)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| {
                AuthError::Forbidden(
                    "the suite's admin credential is not an organization token: use an \
                     organization API token"
                        .into(),
                )
            })
    };
    let principal = Principal {
        token_id: String::new(),
        org_id: named(ACT_FOR_ORG_ID)?,
        org_name: named(ACT_FOR_ORG_NAME)?,
        scopes: vec![Scope::RunsWrite],
        projects: Vec::new(),
    };
    runplane_telemetry::trace_context::record_org(&principal.org_name);
    Ok(principal)
}

/// Sets the organization a runplane service reports for on `request` (see
/// [`TokenAuthenticator::authorize`]); `None` if a value cannot be metadata.
pub fn act_for<T>(
    mut request: tonic::Request<T>,
    org_id: &str,
    org_name: &str,
) -> Option<tonic::Request<T>> {
    let metadata = request.metadata_mut();
    metadata.insert(ACT_FOR_ORG_ID, org_id.parse().ok()?);
    metadata.insert(ACT_FOR_ORG_NAME, org_name.parse().ok()?);
    Some(request)
}

/// Whether an answer may come from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// A recent answer will do (a revoked token works for the cache's TTL).
    Cached,
    /// Ask token-service.
    Fresh,
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
