//! The per-workflow aggregates a scrape reads: one workflow row and one
//! aggregate row per (status, runner), plus the runs still in progress (found
//! through the (org, status) index, so finished history is never read).

use std::collections::HashMap;

use runplane_api::workflowrun::v1::RunStatus;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};

use super::Store;
use crate::entity::{run, run_duration, workflow};
use crate::error::Error;
use crate::run::status_name;

/// One workflow's row in a scrape.
#[derive(Debug, PartialEq)]
pub struct WorkflowAggregates {
    pub workflow: workflow::Model,
    pub outcomes: Vec<run_duration::Model>,
    pub runs_in_progress: u32,
}

impl Store {
    /// A page of an organization's workflows with their aggregates.
    pub async fn workflow_metrics(
        &self,
        org_id: &str,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<WorkflowAggregates>, Error> {
        let workflows = self.list_workflows(org_id, after, limit).await?;
        if workflows.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = workflows.iter().map(|w| w.id.clone()).collect();
        let mut by_workflow: HashMap<String, Vec<run_duration::Model>> = HashMap::new();
        let in_progress: HashMap<String, i64> = run::Entity::find()
            .select_only()
            .column(run::Column::WorkflowId)
            .column_as(run::Column::Id.count(), "runs")
            .filter(run::Column::OrgId.eq(org_id))
            .filter(run::Column::Status.eq(status_name(RunStatus::Initialized)))
            .filter(run::Column::WorkflowId.is_in(ids.clone()))
            .group_by(run::Column::WorkflowId)
            .into_tuple::<(String, i64)>()
            .all(&self.db)
            .await?
            .into_iter()
            .collect();
        for row in run_duration::Entity::find()
            .filter(run_duration::Column::WorkflowId.is_in(ids))
            .all(&self.db)
            .await?
        {
            by_workflow
                .entry(row.workflow_id.clone())
                .or_default()
                .push(row);
        }
        Ok(workflows
            .into_iter()
            .map(|w| WorkflowAggregates {
                outcomes: by_workflow.remove(&w.id).unwrap_or_default(),
                runs_in_progress: in_progress
                    .get(&w.id)
                    .map_or(0, |n| u32::try_from(*n).unwrap_or(u32::MAX)),
                workflow: w,
            })
            .collect())
    }
}
