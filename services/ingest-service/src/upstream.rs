//! ingest-service's callees: token-service for webhook secrets, and
//! workflow-run-service where runs and jobs are reported.

use std::sync::Arc;

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
}

impl Upstreams {
    /// The organization called `org` and its live webhooks' secrets for
    /// `provider`; `None` when there is no such organization.
    pub(crate) async fn webhook_secrets(
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
