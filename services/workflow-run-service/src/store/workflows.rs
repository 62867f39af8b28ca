//! Workflows: found or created on first use, listed a page at a time.

use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::Store;
use crate::entity::workflow;
use crate::error::Error;

impl Store {
    /// The workflow `project/name` of an organization, created if it is new.
    pub async fn find_or_create_workflow(
        &self,
        org_id: &str,
        project: &str,
        name: &str,
    ) -> Result<workflow::Model, Error> {
        if let Some(found) = self.find_workflow(org_id, project, name).await? {
            return Ok(found);
        }
        let active = workflow::ActiveModel {
            id: Set(uuid::Uuid::now_v7().to_string()),
            org_id: Set(org_id.to_owned()),
            project: Set(project.to_owned()),
            name: Set(name.to_owned()),
            created_at_ms: Set(runplane_kit::time::now_ms()),
            last_run_status: Set(None),
            last_run_runner: Set(None),
            last_run_finished_at_ms: Set(None),
        };
        // Another caller may create it at the same moment: whoever loses reads the winner's row.
        workflow::Entity::insert(active)
            .on_conflict_do_nothing_on([
                workflow::Column::OrgId,
                workflow::Column::Project,
                workflow::Column::Name,
            ])
            .exec(&self.db)
            .await?;
        self.find_workflow(org_id, project, name)
            .await?
            .ok_or_else(|| {
                sea_orm::DbErr::RecordNotFound("workflow vanished after insert".into()).into()
            })
    }

    /// The workflow `project/name` of an organization, if it exists.
    pub async fn find_workflow(
        &self,
        org_id: &str,
        project: &str,
        name: &str,
    ) -> Result<Option<workflow::Model>, Error> {
        Ok(workflow::Entity::find()
            .filter(workflow::Column::OrgId.eq(org_id))
            .filter(workflow::Column::Project.eq(project))
            .filter(workflow::Column::Name.eq(name))
            .one(&self.db)
            .await?)
    }

    /// Up to `limit` of an organization's workflows after id `after`, in id order.
    pub async fn list_workflows(
        &self,
        org_id: &str,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<workflow::Model>, Error> {
        let mut query = workflow::Entity::find()
            .filter(workflow::Column::OrgId.eq(org_id))
            .order_by_asc(workflow::Column::Id)
            .limit(limit);
        if let Some(after) = after {
            query = query.filter(workflow::Column::Id.gt(after));
        }
        Ok(query.all(&self.db).await?)
    }

    /// The workflows with these ids (for naming them in run listings).
    pub async fn workflows_by_id(&self, ids: Vec<String>) -> Result<Vec<workflow::Model>, Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(workflow::Entity::find()
            .filter(workflow::Column::Id.is_in(ids))
            .all(&self.db)
            .await?)
    }
}
