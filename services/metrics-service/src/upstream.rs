//! The three questions a scrape asks, each of another service: who is this
//! token (token-service), is this organization's integration on (org-service),
//! and what are its workflows' aggregates (workflow-run-service).

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use runplane_api::org::v1::organization_service_client::OrganizationServiceClient;
use runplane_api::org::v1::{
    GetOrganizationRequest, Organization, get_organization_request::Lookup,
};
use runplane_api::workflowrun::v1::workflow_run_service_client::WorkflowRunServiceClient;
use runplane_api::workflowrun::v1::{ListWorkflowMetricsRequest, WorkflowNow};
use runplane_auth::{AdminCredential, AuthError, Principal, TokenAuthenticator};
use runplane_client::{Channel, Failure, with_bearer};
use tonic::Status;

use crate::error::ScrapeError;

/// Workflows per ListWorkflowMetrics page.
const PAGE_SIZE: i32 = 1000;

/// Clients for the scrape's upstream services.
pub(crate) struct Upstreams {
    /// Uncached: a revoked token fails on the very next scrape.
    pub(crate) tokens: TokenAuthenticator,
    pub(crate) orgs: OrganizationServiceClient<Channel>,
    pub(crate) workflow_runs: WorkflowRunServiceClient<Channel>,
    pub(crate) admin: Arc<AdminCredential>,
}

impl Upstreams {
    /// Who the bearer token belongs to.
    pub(crate) async fn authenticate(
        &self,
        secret: &str,
        client: Option<IpAddr>,
    ) -> Result<Principal, ScrapeError> {
        self.tokens
            .authenticate(secret, client, runplane_auth::Freshness::Fresh)
            .await
            .map_err(|e| match e {
                AuthError::TooManyFailures(e) => ScrapeError::TooManyFailures(e),
                AuthError::Missing | AuthError::NotBearer | AuthError::Invalid => {
                    ScrapeError::InvalidToken
                }
                AuthError::Forbidden(_) => {
                    ScrapeError::Forbidden("this token may not read metrics")
                }
                AuthError::Unavailable(detail) => ScrapeError::Unavailable {
                    upstream: "token-service",
                    detail,
                    retry_after: None,
                },
                AuthError::Internal(detail) => ScrapeError::Upstream {
                    upstream: "token-service",
                    detail,
                },
            })
    }

    /// The organization called `name`, or `None` if there is none.
    pub(crate) async fn organization(
        &self,
        name: &str,
    ) -> Result<Option<Organization>, ScrapeError> {
        let request = with_bearer(
            GetOrganizationRequest {
                lookup: Some(Lookup::Name(name.to_owned())),
            },
            self.admin.secret(),
        );
        match self.orgs.clone().get_organization(request).await {
            Ok(response) => Ok(response.into_inner().organization),
            Err(status) if runplane_client::classify(&status) == Failure::NotFound => Ok(None),
            Err(status) => Err(upstream_error("org-service", status)),
        }
    }

    /// Every workflow's aggregates, a page at a time, read with the scraper's token
    /// so that workflow-run-service confines the answer to its organization;
    /// with their histograms' exemplars when `exemplars` (OpenMetrics,
    /// protobuf); what is true now apart. With `known`, the revision of the
    /// aggregates an exposition was written from: while it is current, only
    /// what is true now comes back.
    pub(crate) async fn workflow_metrics(
        &self,
        secret: &str,
        exemplars: bool,
        known: Option<&str>,
    ) -> Result<Fetched, ScrapeError> {
        let mut client = self.workflow_runs.clone();
        let mut page_token = String::new();
        let mut joined = Vec::new();
        let mut fetched = Fetched::default();
        loop {
            let first = page_token.is_empty();
            let request = with_bearer(
                ListWorkflowMetricsRequest {
                    page_size: PAGE_SIZE,
                    page_token,
                    exemplars,
                    // Apart on later pages only if the first page's replica
                    // did so too (an older one merges it; see `written`).
                    now_apart: first || !fetched.revision.is_empty(),
                    known_revision: known.filter(|_| first).unwrap_or_default().to_owned(),
                },
                secret,
            );
            let mut page = client
                .list_workflow_metrics(request)
                .await
                .map_err(|status| upstream_error("workflow-run-service", status))?
                .into_inner();
            if first {
                fetched.revision = std::mem::take(&mut page.revision);
                fetched.now = std::mem::take(&mut page.now);
                if page.unchanged {
                    return Ok(fetched);
                }
            }
            let next = std::mem::take(&mut page.next_page_token);
            if joined.is_empty() {
                // The first page is taken as it is, not copied.
                joined = page.into_encoded_workflows();
            } else {
                joined.extend_from_slice(page.encoded_workflows());
            }
            if next.is_empty() {
                // It may be kept (see cache.rs), counted by its length.
                joined.shrink_to_fit();
                fetched.aggregates = Some(Bytes::from(joined));
                return Ok(fetched);
            }
            page_token = next;
        }
    }
}

/// What a scrape read of an organization's aggregates.
#[derive(Debug, Default)]
pub(crate) struct Fetched {
    /// The pages' workflows and environments as they came
    /// (`decode_page` reads them); `None` when the known revision was current.
    pub(crate) aggregates: Option<Bytes>,
    /// The revision they were read at; empty from a workflow-run-service
    /// that does not say (then what is true now is in the workflows).
    pub(crate) revision: String,
    pub(crate) now: Vec<WorkflowNow>,
}

fn upstream_error(upstream: &'static str, status: Status) -> ScrapeError {
    let detail = status.message().to_owned();
    match runplane_client::classify(&status) {
        Failure::Unavailable { retry_after } => ScrapeError::Unavailable {
            upstream,
            detail,
            retry_after,
        },
        Failure::LimitReached => ScrapeError::Unavailable {
            upstream,
            detail,
            retry_after: None,
        },
        // The token was revoked between the two calls.
        Failure::Unauthenticated => ScrapeError::InvalidToken,
        Failure::PermissionDenied => ScrapeError::Forbidden("this token may not read metrics"),
        Failure::NotFound | Failure::Rejected | Failure::Internal => {
            ScrapeError::Upstream { upstream, detail }
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::response::IntoResponse as _;

    use super::*;

    fn retry_after(status: Status) -> Option<String> {
        let response = upstream_error("workflow-run-service", status).into_response();
        assert_eq!(response.status(), 503);
        response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    #[test]
    fn a_shed_upstream_call_is_a_503_with_the_upstreams_pushback() {
        let mut shed = Status::resource_exhausted("server overloaded");
        shed.metadata_mut().insert(
            runplane_client::upstream::PUSHBACK_METADATA,
            tonic::metadata::MetadataValue::from_static("1000"),
        );
        assert_eq!(retry_after(shed).as_deref(), Some("1"));
        // An outage that gave no time of its own.
        assert_eq!(
            retry_after(Status::unavailable("connection refused")).as_deref(),
            Some("5")
        );
        assert_eq!(
            retry_after(Status::resource_exhausted("a limit")).as_deref(),
            Some("5")
        );
    }
}
