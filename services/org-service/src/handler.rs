//! org-service's gRPC handlers: check the caller, call the store, shape the answer.

use std::sync::Arc;

use runplane_api::org::v1::organization_service_server::OrganizationService;
use runplane_api::org::v1::{
    CreateOrganizationRequest, CreateOrganizationResponse, DeleteOrganizationRequest,
    DeleteOrganizationResponse, GetOrganizationRequest, GetOrganizationResponse,
    ListOrganizationsRequest, ListOrganizationsResponse, Organization,
    get_organization_request::Lookup,
};
use runplane_auth::AdminCredential;
use runplane_server::pagination;
use tonic::{Request, Response, Status};

use crate::entity::organization;
use crate::error::Error;
use crate::reload::EnabledOrgs;
use crate::store::Store;

/// Serves `runplane.org.v1.OrganizationService`.
pub(crate) struct OrganizationHandler {
    store: Store,
    admin: Arc<AdminCredential>,
    metrics_enabled: EnabledOrgs,
}

impl OrganizationHandler {
    pub(crate) fn new(
        store: Store,
        admin: Arc<AdminCredential>,
        metrics_enabled: EnabledOrgs,
    ) -> Self {
        OrganizationHandler {
            store,
            admin,
            metrics_enabled,
        }
    }

    fn to_proto(&self, org: organization::Model) -> Organization {
        Organization {
            prometheus_metrics_enabled: self.metrics_enabled.borrow().contains(&org.name),
            id: org.id,
            name: org.name,
            create_time: Some(runplane_api::time::timestamp(org.created_at_ms)),
        }
    }
}

#[tonic::async_trait]
impl OrganizationService for OrganizationHandler {
    async fn create_organization(
        &self,
        request: Request<CreateOrganizationRequest>,
    ) -> Result<Response<CreateOrganizationResponse>, Status> {
        self.admin.check(&request).map_err(Error::from)?;
        let org = self.store.create(&request.into_inner().name).await?;
        tracing::info!(org = %org.name, id = %org.id, "organization created");
        Ok(Response::new(CreateOrganizationResponse {
            organization: Some(self.to_proto(org)),
        }))
    }

    async fn get_organization(
        &self,
        request: Request<GetOrganizationRequest>,
    ) -> Result<Response<GetOrganizationResponse>, Status> {
        self.admin.check(&request).map_err(Error::from)?;
        let org = match request.into_inner().lookup {
            Some(Lookup::Name(name)) => self.store.by_name(&name).await?,
            Some(Lookup::Id(id)) => self.store.by_id(&id).await?,
            None => {
                return Err(Error::InvalidArgument("set either name or id".into()).into());
            }
        };
        Ok(Response::new(GetOrganizationResponse {
            organization: Some(self.to_proto(org)),
        }))
    }

    async fn list_organizations(
        &self,
        request: Request<ListOrganizationsRequest>,
    ) -> Result<Response<ListOrganizationsResponse>, Status> {
        self.admin.check(&request).map_err(Error::from)?;
        let request = request.into_inner();
        let after = pagination::decode(&request.page_token).map_err(Error::from)?;
        let limit = pagination::page_size(request.page_size, 100, 1000);
        let orgs = self.store.list(after.as_deref(), limit).await?;
        let next_page_token = match orgs.last() {
            Some(last) if orgs.len() as u64 == limit => pagination::encode(&last.name),
            _ => String::new(),
        };
        Ok(Response::new(ListOrganizationsResponse {
            organizations: orgs.into_iter().map(|o| self.to_proto(o)).collect(),
            next_page_token,
        }))
    }

    async fn delete_organization(
        &self,
        request: Request<DeleteOrganizationRequest>,
    ) -> Result<Response<DeleteOrganizationResponse>, Status> {
        self.admin.check(&request).map_err(Error::from)?;
        let name = request.into_inner().name;
        self.store.delete(&name).await?;
        tracing::info!(org = %name, "organization deleted");
        Ok(Response::new(DeleteOrganizationResponse {}))
    }
}
