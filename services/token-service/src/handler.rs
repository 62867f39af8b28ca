//! token-service's gRPC handlers.

use std::sync::Arc;

use runplane_api::time::{from_timestamp, now_ms};
use runplane_api::token::v1::token_service_server::TokenService;
use runplane_api::token::v1::{
    AuthenticateRequest, AuthenticateResponse, CreateTokenRequest, CreateTokenResponse,
    CreateWebhookRequest, CreateWebhookResponse, GetWebhookSecretsRequest,
    GetWebhookSecretsResponse, ListTokensRequest, ListTokensResponse, ListWebhooksRequest,
    ListWebhooksResponse, RevokeTokenRequest, RevokeTokenResponse, RevokeWebhookRequest,
    RevokeWebhookResponse, WebhookSecret,
};
use runplane_auth::secret::{self, SecretHash, SecretKind};
use runplane_auth::webhook::WebhookKey;
use runplane_auth::{AdminCredential, AuthError};
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::orgs::OrgDirectory;
use crate::store::{LAST_USE_PRECISION_MS, NewToken, Store};
use crate::token;
use crate::webhook::{self, name_or_default, provider_label, requested_provider};

/// Serves `runplane.token.v1.TokenService`.
pub(crate) struct TokenHandler {
    store: Store,
    orgs: OrgDirectory,
    admin: Arc<AdminCredential>,
    webhook_key: WebhookKey,
}

impl TokenHandler {
    pub(crate) fn new(
        store: Store,
        orgs: OrgDirectory,
        admin: Arc<AdminCredential>,
        webhook_key: WebhookKey,
    ) -> Self {
        TokenHandler {
            store,
            orgs,
            admin,
            webhook_key,
        }
    }

    /// Allows a call only from runplane's own services.
    fn check_service<T>(&self, request: &Request<T>) -> Result<(), Error> {
        self.admin.check(request).map_err(|e| match e {
            AuthError::Invalid => Error::WrongServiceCredential,
            AuthError::Missing | AuthError::NotBearer => Error::ServiceCredentialMissing,
            other => Error::Auth(other),
        })
    }

    /// The live token whose secret was presented, if its organization still
    /// exists: what the Authenticate call answers, once the caller is checked.
    async fn resolve_secret(&self, presented: &str) -> Result<AuthenticateResponse, Error> {
        secret::parse(SecretKind::ApiToken, presented).map_err(|_| AuthError::Invalid)?;
        let hash = SecretHash::of(presented);
        let token = self
            .store
            .by_secret_hash(&hash.0)
            .await?
            .filter(|t| SecretHash(t.secret_hash.clone()).matches(&hash))
            .filter(|t| token::is_live(t, now_ms()))
            .ok_or(AuthError::Invalid)?;
        if !self.orgs.exists(&token.org_id).await? {
            let revoked = self.store.revoke_all(&token.org_id).await?;
            tracing::info!(org_id = %token.org_id, revoked, "organization is gone; revoked its tokens");
            return Err(AuthError::Invalid.into());
        }
        let now = now_ms();
        if token
            .last_used_at_ms
            .is_none_or(|at| at < now - LAST_USE_PRECISION_MS)
            && let Err(e) = self.store.record_use(&token.id, now).await
        {
            // A last-use time is worth less than the call it would fail.
            tracing::warn!(error = %e, "cannot record the token's last use");
        }
        Ok(AuthenticateResponse {
            scopes: token::decode_scopes(&token.scopes)
                .into_iter()
                .map(i32::from)
                .collect(),
            projects: token::decode_projects(&token.projects),
            token_id: token.id,
            org_id: token.org_id,
            org_name: token.org_name,
        })
    }
}

#[tonic::async_trait]
impl TokenService for TokenHandler {
    async fn create_token(
        &self,
        request: Request<CreateTokenRequest>,
    ) -> Result<Response<CreateTokenResponse>, Status> {
        self.admin.check(&request).map_err(Error::from)?;
        let request = request.into_inner();
        token::validate_name(&request.name)?;
        token::validate_description(&request.description)?;
        let scopes = token::requested_scopes(&request.scopes)?;
        let projects = token::requested_projects(&request.projects)?;
        let expires_at_ms = request.expire_time.as_ref().map(from_timestamp);
        if expires_at_ms.is_some_and(|at| at <= now_ms()) {
            return Err(Error::InvalidArgument("expire_time must be in the future".into()).into());
        }
        let org = self.orgs.by_name(&request.org_name).await?;
        let (model, secret) = self
            .store
            .create(NewToken {
                org_id: org.id,
                org_name: org.name,
                name: request.name,
                description: request.description,
                scopes: token::encode_scopes(&scopes),
                expires_at_ms,
                projects: token::encode_projects(&projects),
            })
            .await?;
        tracing::info!(org = %model.org_name, token = %model.name, id = %model.id, "token created");
        Ok(Response::new(CreateTokenResponse {
            token: Some(token::to_proto(model)),
            secret,
        }))
    }

    async fn list_tokens(
        &self,
        request: Request<ListTokensRequest>,
    ) -> Result<Response<ListTokensResponse>, Status> {
        self.admin.check(&request).map_err(Error::from)?;
        let request = request.into_inner();
        let org = self.orgs.by_name(&request.org_name).await?;
        let now = now_ms();
        let tokens = self
            .store
            .list(&org.id, request.include_inactive)
            .await?
            .into_iter()
            .filter(|t| request.include_inactive || token::is_live(t, now))
            .map(token::to_proto)
            .collect();
        Ok(Response::new(ListTokensResponse { tokens }))
    }

    async fn revoke_token(
        &self,
        request: Request<RevokeTokenRequest>,
    ) -> Result<Response<RevokeTokenResponse>, Status> {
        self.admin.check(&request).map_err(Error::from)?;
        let request = request.into_inner();
        let org = self.orgs.by_name(&request.org_name).await?;
        let model = self.store.revoke(&org.id, &org.name, &request.name).await?;
        tracing::info!(org = %model.org_name, token = %model.name, id = %model.id, "token revoked");
        Ok(Response::new(RevokeTokenResponse {
            token: Some(token::to_proto(model)),
        }))
    }

    async fn authenticate(
        &self,
        request: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        // Only runplane's services may ask who a token belongs to: they present
        // the admin credential, and limit their own clients' failures. Anyone
        // else would learn a token's organization and scopes.
        self.check_service(&request)?;
        let answer = self.resolve_secret(&request.into_inner().secret).await?;
        runplane_telemetry::trace_context::record_org(&answer.org_name);
        Ok(Response::new(answer))
    }

    async fn create_webhook(
        &self,
        request: Request<CreateWebhookRequest>,
    ) -> Result<Response<CreateWebhookResponse>, Status> {
        self.admin.check(&request).map_err(Error::from)?;
        let request = request.into_inner();
        let provider = requested_provider(request.provider)?;
        let name = name_or_default(&request.name, provider)?;
        let org = self.orgs.by_name(&request.org_name).await?;
        let model = self
            .store
            .create_webhook(&org.id, &org.name, provider_label(provider), &name)
            .await?;
        tracing::info!(org = %model.org_name, provider = %model.provider, webhook = %model.name, id = %model.id, "webhook created");
        let secret = self.webhook_key.secret_for(&model.id);
        Ok(Response::new(CreateWebhookResponse {
            webhook: Some(webhook::to_proto(model)),
            secret,
        }))
    }

    async fn list_webhooks(
        &self,
        request: Request<ListWebhooksRequest>,
    ) -> Result<Response<ListWebhooksResponse>, Status> {
        self.admin.check(&request).map_err(Error::from)?;
        let request = request.into_inner();
        let org = self.orgs.by_name(&request.org_name).await?;
        let webhooks = self
            .store
            .list_webhooks(&org.id, request.include_revoked)
            .await?
            .into_iter()
            .map(webhook::to_proto)
            .collect();
        Ok(Response::new(ListWebhooksResponse { webhooks }))
    }

    async fn revoke_webhook(
        &self,
        request: Request<RevokeWebhookRequest>,
    ) -> Result<Response<RevokeWebhookResponse>, Status> {
        self.admin.check(&request).map_err(Error::from)?;
        let request = request.into_inner();
        let provider = requested_provider(request.provider)?;
        let name = name_or_default(&request.name, provider)?;
        let org = self.orgs.by_name(&request.org_name).await?;
        let model = self
            .store
            .revoke_webhook(&org.id, &org.name, provider_label(provider), &name)
            .await?;
        tracing::info!(org = %model.org_name, provider = %model.provider, webhook = %model.name, "webhook revoked");
        Ok(Response::new(RevokeWebhookResponse {
            webhook: Some(webhook::to_proto(model)),
        }))
    }

    async fn get_webhook_secrets(
        &self,
        request: Request<GetWebhookSecretsRequest>,
    ) -> Result<Response<GetWebhookSecretsResponse>, Status> {
        self.check_service(&request)?;
        let request = request.into_inner();
        let provider = requested_provider(request.provider)?;
        let org = self.orgs.by_name(&request.org_name).await?;
        let secrets = self
            .store
            .live_webhooks(&org.id, provider_label(provider))
            .await?
            .into_iter()
            .map(|w| WebhookSecret {
                secret: self.webhook_key.secret_for(&w.id),
                webhook_id: w.id,
                name: w.name,
            })
            .collect();
        Ok(Response::new(GetWebhookSecretsResponse {
            org_id: org.id,
            org_name: org.name,
            secrets,
        }))
    }
}
