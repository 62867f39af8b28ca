//! Workflows: found or created on first use, listed a page at a time.
//!
//! A workflow's identity (id, organization, project, name) never changes once
//! created, so it is remembered in memory: starting a run of a known workflow,
//! and naming the workflows of finished runs, costs no query. A deletion
//! through another replica is noticed when a run's insert finds the workflow
//! gone (see `Store::start_run`), and the identity is forgotten then.

use std::collections::HashMap;

use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};

use super::{Store, record};
use crate::entity::{job, run, workflow};
use crate::error::Error;

/// Who a workflow is: what never changes about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WorkflowRef {
    pub(crate) id: String,
    pub(crate) org_id: String,
    pub(crate) project: String,
    pub(crate) name: String,
}

impl From<&workflow::Model> for WorkflowRef {
    fn from(w: &workflow::Model) -> Self {
        WorkflowRef {
            id: w.id.clone(),
            org_id: w.org_id.clone(),
            project: w.project.clone(),
            name: w.name.clone(),
        }
    }
}

/// Most workflow identities kept in memory; past it, the map starts over.
const MAX_IDENTITIES: usize = 100_000;

/// Workflow identities by (organization, project, name) and by id.
#[derive(Default)]
pub(crate) struct Identities {
    by_key: HashMap<(String, String, String), WorkflowRef>,
    by_id: HashMap<String, WorkflowRef>,
}

impl Identities {
    fn remember(&mut self, w: WorkflowRef) {
        if self.by_id.len() >= MAX_IDENTITIES {
            self.by_key.clear();
            self.by_id.clear();
        }
        let key = (w.org_id.clone(), w.project.clone(), w.name.clone());
        self.by_id.insert(w.id.clone(), w.clone());
        self.by_key.insert(key, w);
    }

    fn forget(&mut self, w: &WorkflowRef) {
        self.by_key
            .remove(&(w.org_id.clone(), w.project.clone(), w.name.clone()));
        self.by_id.remove(&w.id);
    }
}

impl Store {
    fn identities(&self) -> std::sync::MutexGuard<'_, Identities> {
        self.identities.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The workflow `project/name` of an organization, created if it is new.
    pub(crate) async fn find_or_create_workflow(
        &self,
        org_id: &str,
        project: &str,
        name: &str,
    ) -> Result<WorkflowRef, Error> {
        let key = (org_id.to_owned(), project.to_owned(), name.to_owned());
        if let Some(known) = self.identities().by_key.get(&key) {
            return Ok(known.clone());
        }
        if let Some(found) = self.find_workflow(org_id, project, name).await? {
            let found = WorkflowRef::from(&found);
            self.identities().remember(found.clone());
            return Ok(found);
        }
        if let Some(limit) = self.max_workflows_per_org {
            let count = workflow::Entity::find()
                .filter(workflow::Column::OrgId.eq(org_id))
                .count(&self.db)
                .await?;
            if count >= limit {
                return Err(Error::WorkflowLimit { limit });
            }
        }
        let (id, created_at_ms) = (
            uuid::Uuid::now_v7().to_string(),
            runplane_api::time::now_ms(),
        );
        let active = workflow::ActiveModel {
            metrics: Set(record::encode(&crate::aggregate::new(
                &id,
                project,
                name,
                created_at_ms,
            ))),
            exemplars: Set(Vec::new()),
            id: Set(id.clone()),
            org_id: Set(org_id.to_owned()),
            project: Set(project.to_owned()),
            name: Set(name.to_owned()),
            created_at_ms: Set(created_at_ms),
            last_run_status: Set(None),
            last_run_runner: Set(None),
            last_run_finished_at_ms: Set(None),
            last_run_duration_ms: Set(None),
        };
        // Another caller may create it at the same moment: whoever loses reads
        // the winner's row. A new workflow is a change of the organization's
        // aggregates (see `super::revisions`).
        let txn = self.db.begin().await?;
        let inserted = workflow::Entity::insert(active)
            .on_conflict_do_nothing_on([
                workflow::Column::OrgId,
                workflow::Column::Project,
                workflow::Column::Name,
            ])
            .exec_without_returning(&txn)
            .await?;
        if matches!(inserted, sea_orm::TryInsertResult::Inserted(n) if n > 0) {
            super::revisions::bump(&txn, org_id, &id).await?;
        }
        txn.commit().await?;
        let created = self
            .find_workflow(org_id, project, name)
            .await?
            .map(|w| WorkflowRef::from(&w))
            .ok_or_else(|| {
                sea_orm::DbErr::RecordNotFound("workflow vanished after insert".into())
            })?;
        self.identities().remember(created.clone());
        Ok(created)
    }

    /// The workflow `project/name` of an organization, if it exists.
    pub(crate) async fn find_workflow(
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

    /// Up to `limit` of an organization's workflows after id `after`, in id
    /// order; only those in `projects` when it is given.
    pub(crate) async fn list_workflows(
        &self,
        org_id: &str,
        projects: Option<&[String]>,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<workflow::Model>, Error> {
        let mut query = workflow::Entity::find()
            .filter(workflow::Column::OrgId.eq(org_id))
            .order_by_asc(workflow::Column::Id)
            .limit(limit);
        if let Some(projects) = projects {
            query =
                query.filter(workflow::Column::Project.is_in(projects.iter().map(String::as_str)));
        }
        if let Some(after) = after {
            query = query.filter(workflow::Column::Id.gt(after));
        }
        Ok(query.all(&self.db).await?)
    }

    /// The identities of the workflows with these ids (for naming them in run
    /// listings), from memory where known.
    pub(crate) async fn workflow_refs(
        &self,
        ids: Vec<String>,
    ) -> Result<HashMap<String, WorkflowRef>, Error> {
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        {
            let identities = self.identities();
            for id in ids {
                match identities.by_id.get(&id) {
                    Some(w) => {
                        found.insert(id, w.clone());
                    }
                    None => missing.push(id),
                }
            }
        }
        if !missing.is_empty() {
            let rows = workflow::Entity::find()
                .filter(workflow::Column::Id.is_in(missing))
                .all(&self.db)
                .await?;
            let mut identities = self.identities();
            for row in rows {
                let w = WorkflowRef::from(&row);
                identities.remember(w.clone());
                found.insert(w.id.clone(), w);
            }
        }
        Ok(found)
    }

    /// Forgets a remembered workflow identity (it was deleted).
    pub(crate) fn forget_workflow(&self, w: &WorkflowRef) {
        self.identities().forget(w);
    }

    /// Deletes an organization's workflow `project/name` (its row holds its
    /// aggregates) with its runs and jobs, in one transaction; its series leave the next scrape.
    /// Returns how many runs went with it.
    pub(crate) async fn delete_workflow(
        &self,
        org_id: &str,
        project: &str,
        name: &str,
    ) -> Result<u64, Error> {
        let Some(found) = self.find_workflow(org_id, project, name).await? else {
            return Err(Error::WorkflowNotFound {
                project: project.to_owned(),
                workflow: name.to_owned(),
            });
        };
        let txn = self.db.begin().await?;
        // The workflow row goes first: a concurrent StartRun's insert checks for
        // it, so no run can be added once this transaction commits.
        workflow::Entity::delete_by_id(found.id.clone())
            .exec(&txn)
            .await?;
        let runs = run::Entity::delete_many()
            .filter(run::Column::WorkflowId.eq(&found.id))
            .exec(&txn)
            .await?
            .rows_affected;
        job::Entity::delete_many()
            .filter(job::Column::WorkflowId.eq(&found.id))
            .exec(&txn)
            .await?;
        super::revisions::bump(&txn, org_id, &found.id).await?;
        txn.commit().await?;
        self.identities().forget(&WorkflowRef::from(&found));
        Ok(runs)
    }
}

#[cfg(test)]
mod tests {
    use runplane_api::workflowrun::v1::RunStatus;

    use super::*;
    use crate::store::test_support::{finished_run, store};

    #[tokio::test]
    async fn deleting_a_workflow_takes_its_runs_and_aggregates_even_from_another_replica() {
        let dir = tempfile::tempdir().expect("tempdir");
        let replica_a = store(&dir).await;
        // A second store over the same file: another replica with its own memory.
        let replica_b = Store::new(replica_a.db.clone(), vec![10.0]);
        let wf = replica_a
            .find_or_create_workflow("org", "default", "build")
            .await
            .expect("wf");
        finished_run(&replica_a, &wf, "UNSPECIFIED", RunStatus::Success).await;
        replica_a
            .start_run(&wf, "UNSPECIFIED", "", None)
            .await
            .expect("start");

        assert!(matches!(
            replica_b.delete_workflow("other", "default", "build").await,
            Err(Error::WorkflowNotFound { .. })
        ));
        assert_eq!(
            replica_b
                .delete_workflow("org", "default", "build")
                .await
                .expect("delete"),
            2
        );
        assert!(
            crate::store::test_support::org_metrics(&replica_a)
                .await
                .is_empty()
        );
        // Replica A still remembers the workflow: its insert finds it gone.
        assert!(matches!(
            replica_a.start_run(&wf, "UNSPECIFIED", "", None).await,
            Err(Error::WorkflowGone(_))
        ));
        replica_a.forget_workflow(&wf);
        let again = replica_a
            .find_or_create_workflow("org", "default", "build")
            .await
            .expect("wf");
        assert_ne!(again.id, wf.id, "a new workflow, with a fresh history");
    }

    #[tokio::test]
    async fn new_workflows_past_the_limit_are_refused_per_organization() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir).await.with_workflow_limit(2);
        for name in ["a", "b"] {
            store
                .find_or_create_workflow("org", "default", name)
                .await
                .expect("under the limit");
        }
        assert!(matches!(
            store.find_or_create_workflow("org", "default", "c").await,
            Err(Error::WorkflowLimit { limit: 2 })
        ));
        // Existing workflows still work, and other organizations have their own budget.
        store
            .find_or_create_workflow("org", "default", "a")
            .await
            .expect("existing");
        store
            .find_or_create_workflow("other", "default", "c")
            .await
            .expect("another org");
        // Deleting one makes room.
        store
            .delete_workflow("org", "default", "b")
            .await
            .expect("delete");
        store
            .find_or_create_workflow("org", "default", "c")
            .await
            .expect("room again");
    }
}
