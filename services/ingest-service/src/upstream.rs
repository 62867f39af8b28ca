//! ingest-service's callees: token-service for webhook secrets, and
//! workflow-run-service where runs and jobs are reported.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runplane_api::token::v1::token_service_client::TokenServiceClient;
use runplane_api::token::v1::{GetWebhookSecretsRequest, WebhookProvider, WebhookSecret};
use runplane_api::workflowrun::v1::workflow_run_service_client::WorkflowRunServiceClient;
use runplane_auth::AdminCredential;
use runplane_client::{Channel, Failure, with_bearer};

use crate::error::IngestError;

pub(crate) const TOKEN_SERVICE: &str = "token-service";
pub(crate) const WORKFLOW_RUN_SERVICE: &str = "workflow-run-service";

/// An organization a delivery was verified for.
#[derive(Debug, Clone)]
pub(crate) struct Org {
    pub(crate) id: String,
    pub(crate) name: String,
}

pub(crate) struct Upstreams {
    pub(crate) tokens: TokenServiceClient<Channel>,
    pub(crate) runs: WorkflowRunServiceClient<Channel>,
    pub(crate) admin: Arc<AdminCredential>,
    pub(crate) secrets: SecretCache,
}

/// An organization and its live webhooks' secrets for one provider.
#[derive(Debug)]
pub(crate) struct OrgSecrets {
    pub(crate) org: Org,
    pub(crate) secrets: Vec<WebhookSecret>,
}

/// [`OrgSecrets`], shared between the cache and the deliveries using them.
pub(crate) type Secrets = Arc<OrgSecrets>;

/// Organizations' webhook secrets as token-service last gave them, each for
/// `ttl`: a delivery then costs no call to token-service. Only organizations
/// with secrets are kept (deliveries for others ask every time, and their
/// failures are limited), at most [`SecretCache::CAPACITY`] of them.
pub(crate) struct SecretCache {
    ttl: Duration,
    entries: Mutex<HashMap<(String, i32), (Secrets, Instant)>>,
}

impl SecretCache {
    /// Most organizations remembered; past it, the oldest half is forgotten.
    const CAPACITY: usize = 10_000;

    pub(crate) fn new(ttl: Duration) -> Self {
        SecretCache {
            ttl,
            entries: Mutex::default(),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<(String, i32), (Secrets, Instant)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, org: &str, provider: WebhookProvider) -> Option<Secrets> {
        let key = (org.to_owned(), i32::from(provider));
        let mut entries = self.entries();
        match entries.get(&key) {
            Some((secrets, at)) if at.elapsed() < self.ttl => Some(secrets.clone()),
            Some(_) => {
                entries.remove(&key);
                None
            }
            None => None,
        }
    }

    fn put(&self, org: &str, provider: WebhookProvider, secrets: &Secrets) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries();
        if entries.len() >= Self::CAPACITY {
            let mut ages: Vec<Instant> = entries.values().map(|(_, at)| *at).collect();
            ages.sort_unstable();
            let cutoff = ages[ages.len() / 2];
            entries.retain(|_, (_, at)| *at > cutoff);
        }
        entries.insert(
            (org.to_owned(), i32::from(provider)),
            (secrets.clone(), Instant::now()),
        );
    }
}

/// Where webhook secrets may come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Freshness {
    /// As remembered, within the cache's ttl.
    Remembered,
    /// From token-service now.
    Fresh,
}

impl Upstreams {
    /// The organization called `org` and its live webhooks' secrets for
    /// `provider`, remembered or asked for; `None` when there is no such
    /// organization. Says which it was.
    pub(crate) async fn webhook_secrets(
        &self,
        org: &str,
        provider: WebhookProvider,
        freshness: Freshness,
    ) -> Result<Option<(Secrets, Freshness)>, IngestError> {
        if freshness == Freshness::Remembered
            && let Some(secrets) = self.secrets.get(org, provider)
        {
            return Ok(Some((secrets, Freshness::Remembered)));
        }
        let Some((found, secrets)) = self.ask_webhook_secrets(org, provider).await? else {
            return Ok(None);
        };
        let secrets = Arc::new(OrgSecrets {
            org: found,
            secrets,
        });
        if !secrets.secrets.is_empty() {
            self.secrets.put(org, provider, &secrets);
        }
        Ok(Some((secrets, Freshness::Fresh)))
    }

    /// token-service's answer for [`Self::webhook_secrets`].
    async fn ask_webhook_secrets(
        &self,
        org: &str,
        provider: WebhookProvider,
    ) -> Result<Option<(Org, Vec<WebhookSecret>)>, IngestError> {
        let request = GetWebhookSecretsRequest {
            org_name: org.to_owned(),
            provider: provider.into(),
        };
        match self
            .tokens
            .clone()
            .get_webhook_secrets(with_bearer(request, self.admin.secret()))
            .await
        {
            Ok(response) => {
                let response = response.into_inner();
                let org = Org {
                    id: response.org_id,
                    name: response.org_name,
                };
                Ok(Some((org, response.secrets)))
            }
            Err(status)
                if matches!(
                    runplane_client::classify(&status),
                    Failure::NotFound | Failure::Rejected
                ) =>
            {
                Ok(None)
            }
            Err(status) => Err(IngestError::upstream(TOKEN_SERVICE)(status)),
        }
    }

    /// `message` as a call to workflow-run-service on behalf of `org`, which
    /// this service has verified itself.
    pub(crate) fn for_org<T>(
        &self,
        message: T,
        org: &Org,
    ) -> Result<tonic::Request<T>, IngestError> {
        runplane_auth::act_for(
            with_bearer(message, self.admin.secret()),
            &org.id,
            &org.name,
        )
        .ok_or_else(|| IngestError::BadRequest("the organization's name cannot be sent".into()))
    }

    /// A workflow-run-service client.
    pub(crate) fn runs(&self) -> WorkflowRunServiceClient<Channel> {
        self.runs.clone()
    }
}
