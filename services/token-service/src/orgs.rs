//! Organizations as token-service sees them: looked up in org-service, with
//! the existence of an organization cached briefly for Authenticate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runplane_api::org::v1::organization_service_client::OrganizationServiceClient;
use runplane_api::org::v1::{GetOrganizationRequest, get_organization_request::Lookup};
use runplane_auth::AdminCredential;
use runplane_client::{Channel, Failure, with_bearer};

use crate::error::Error;

/// The identity of an organization.
#[derive(Debug, Clone)]
pub(crate) struct OrgRef {
    pub(crate) id: String,
    pub(crate) name: String,
}

/// org-service, asked with the admin credential.
pub(crate) struct OrgDirectory {
    client: OrganizationServiceClient<Channel>,
    admin: Arc<AdminCredential>,
    ttl: Duration,
    /// org id → when org-service last said it exists. Bounded by the number of
    /// organizations, which is small and administered.
    seen: Mutex<HashMap<String, Instant>>,
}

impl OrgDirectory {
    pub(crate) fn new(channel: Channel, admin: Arc<AdminCredential>, ttl: Duration) -> Self {
        OrgDirectory {
            client: OrganizationServiceClient::new(channel),
            admin,
            ttl,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// The organization called `name`.
    pub(crate) async fn by_name(&self, name: &str) -> Result<OrgRef, Error> {
        // A name that breaks the rule names no organization: refused here,
        // without a call, and without echoing an oversized name.
        runplane_api::org_name::validate(name)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        self.get(Lookup::Name(name.to_owned()))
            .await?
            .ok_or_else(|| Error::OrgNotFound(name.to_owned()))
    }

    /// Whether the organization with `id` still exists (cached for the TTL when it does).
    pub(crate) async fn exists(&self, id: &str) -> Result<bool, Error> {
        {
            let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if seen.get(id).is_some_and(|at| at.elapsed() < self.ttl) {
                return Ok(true);
            }
        }
        let found = self.get(Lookup::Id(id.to_owned())).await?.is_some();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if found {
            seen.insert(id.to_owned(), Instant::now());
        } else {
            seen.remove(id);
        }
        Ok(found)
    }

    async fn get(&self, lookup: Lookup) -> Result<Option<OrgRef>, Error> {
        let request = with_bearer(
            GetOrganizationRequest {
                lookup: Some(lookup),
            },
            self.admin.secret(),
        );
        let status = match self.client.clone().get_organization(request).await {
            Ok(response) => {
                return Ok(response.into_inner().organization.map(|o| OrgRef {
                    id: o.id,
                    name: o.name,
                }));
            }
            Err(status) => status,
        };
        match runplane_client::classify(&status) {
            Failure::NotFound => Ok(None),
            Failure::Unavailable { .. } | Failure::LimitReached => {
                Err(Error::OrgServiceUnavailable(status.message().to_owned()))
            }
            // org-service refusing this service's own credential, or answering
            // nonsense: a misconfiguration or a bug.
            Failure::Unauthenticated
            | Failure::PermissionDenied
            | Failure::Rejected
            | Failure::Internal => Err(Error::OrgService(format!(
                "{:?}: {}",
                status.code(),
                status.message()
            ))),
        }
    }
}
