//! The per-workflow aggregates a scrape reads: one workflow row and one
//! histogram row per (status, runner), never the runs themselves.

use std::collections::HashMap;

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::Store;
use crate::entity::{run_duration, workflow};
use crate::error::Error;

impl Store {
    /// A page of an organization's workflows with their duration histograms.
    pub async fn workflow_metrics(
        &self,
        org_id: &str,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<(workflow::Model, Vec<run_duration::Model>)>, Error> {
        let workflows = self.list_workflows(org_id, after, limit).await?;
        if workflows.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = workflows.iter().map(|w| w.id.clone()).collect();
        let mut by_workflow: HashMap<String, Vec<run_duration::Model>> = HashMap::new();
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
            .map(|w| {
                let durations = by_workflow.remove(&w.id).unwrap_or_default();
                (w, durations)
            })
            .collect())
    }
}
