//! Bulk history, for benchmarks and tools: many finished runs and the
//! aggregates that FinishRun would have left, written a thousand rows per
//! statement rather than one call per run.

use std::collections::HashMap;

use runplane_api::workflowrun::v1::RunStatus;
use sea_orm::{ActiveValue::Set, EntityTrait, TransactionTrait};

use super::Store;
use crate::entity::{run, run_duration, workflow};
use crate::error::Error;
use crate::histogram::Histogram;
use crate::run::status_name;

/// Rows per INSERT statement (well under SQLite's and PostgreSQL's parameter limits).
const ROWS_PER_STATEMENT: usize = 500;

/// What to seed.
#[derive(Debug, Clone)]
pub struct SeedPlan {
    pub org_id: String,
    pub project: String,
    pub workflows: usize,
    pub runs_per_workflow: usize,
    pub runner: String,
}

impl Store {
    /// Creates `plan.workflows` workflows with `plan.runs_per_workflow` finished
    /// runs each (outcomes and durations varied deterministically), their last
    /// runs, and their duration histograms. Returns the number of runs written.
    pub async fn seed_history(&self, plan: &SeedPlan) -> Result<u64, Error> {
        let statuses = [
            RunStatus::Success,
            RunStatus::Success,
            RunStatus::Error,
            RunStatus::Canceled,
        ];
        let start = runplane_kit::time::now_ms() - 86_400_000;
        let mut written = 0u64;
        let mut workflows = Vec::with_capacity(plan.workflows);
        let mut histograms: HashMap<(String, &'static str), (Histogram, i64)> = HashMap::new();
        let mut runs = Vec::with_capacity(ROWS_PER_STATEMENT);
        let txn = self.db.begin().await?;
        for w in 0..plan.workflows {
            let workflow_id = uuid::Uuid::now_v7().to_string();
            let mut last = None;
            for r in 0..plan.runs_per_workflow {
                let status = status_name(statuses[(w + r) % statuses.len()]);
                let started = start + (r as i64) * 60_000;
                let duration_ms = 5_000 + ((w * 7919 + r * 104_729) % 600_000) as i64;
                let finished = started + duration_ms;
                let (histogram, last_finished) = histograms
                    .entry((workflow_id.clone(), status))
                    .or_insert_with(|| (Histogram::empty(&self.buckets), finished));
                histogram.observe(duration_ms as f64 / 1000.0);
                *last_finished = finished;
                last = Some((status, finished, duration_ms));
                runs.push(run::ActiveModel {
                    id: Set(uuid::Uuid::now_v7().to_string()),
                    org_id: Set(plan.org_id.clone()),
                    workflow_id: Set(workflow_id.clone()),
                    runner: Set(plan.runner.clone()),
                    run_url: Set(String::new()),
                    status: Set(status.to_owned()),
                    reason: Set(String::new()),
                    started_at_ms: Set(started),
                    finished_at_ms: Set(Some(finished)),
                    request_id: Set(None),
                });
                if runs.len() == ROWS_PER_STATEMENT {
                    written += runs.len() as u64;
                    run::Entity::insert_many(std::mem::take(&mut runs))
                        .exec(&txn)
                        .await?;
                }
            }
            workflows.push(workflow::ActiveModel {
                id: Set(workflow_id),
                org_id: Set(plan.org_id.clone()),
                project: Set(plan.project.clone()),
                name: Set(format!("workflow-{w:05}")),
                created_at_ms: Set(start),
                last_run_status: Set(last.map(|(s, _, _)| s.to_owned())),
                last_run_runner: Set(last.map(|_| plan.runner.clone())),
                last_run_finished_at_ms: Set(last.map(|(_, at, _)| at)),
                last_run_duration_ms: Set(last.map(|(_, _, ms)| ms)),
            });
        }
        if !runs.is_empty() {
            written += runs.len() as u64;
            run::Entity::insert_many(runs).exec(&txn).await?;
        }
        for chunk in workflows.chunks(ROWS_PER_STATEMENT) {
            workflow::Entity::insert_many(chunk.to_vec())
                .exec(&txn)
                .await?;
        }
        let rows: Vec<run_duration::ActiveModel> = histograms
            .into_iter()
            .map(
                |((workflow_id, status), (h, last_finished))| run_duration::ActiveModel {
                    workflow_id: Set(workflow_id),
                    status: Set(status.to_owned()),
                    runner: Set(plan.runner.clone()),
                    count: Set(i64::try_from(h.count).unwrap_or(i64::MAX)),
                    sum_seconds: Set(h.sum),
                    bucket_bounds: Set(h.encode_bounds()),
                    bucket_counts: Set(h.encode_counts()),
                    runs_total: Set(i64::try_from(h.count).unwrap_or(i64::MAX)),
                    last_finished_at_ms: Set(Some(last_finished)),
                },
            )
            .collect();
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            run_duration::Entity::insert_many(chunk.to_vec())
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RunFilter;
    use crate::store::test_support::store;

    #[tokio::test]
    async fn seeded_history_matches_what_finishing_runs_would_leave() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir).await;
        let plan = SeedPlan {
            org_id: "org".into(),
            project: "default".into(),
            workflows: 3,
            runs_per_workflow: 7,
            runner: "GITHUB_ACTION".into(),
        };
        assert_eq!(store.seed_history(&plan).await.expect("seed"), 21);
        let runs = store
            .list_runs("org", &RunFilter::default(), None, 100)
            .await
            .expect("runs");
        assert_eq!(runs.len(), 21);
        let page = store
            .workflow_metrics("org", None, 10)
            .await
            .expect("metrics");
        assert_eq!(page.len(), 3);
        for aggregates in page {
            let (workflow, durations) = (aggregates.workflow, aggregates.outcomes);
            let count: i64 = durations.iter().map(|d| d.count).sum();
            assert_eq!(count, 7, "{}", workflow.name);
            let total: i64 = durations.iter().map(|d| d.runs_total).sum();
            assert_eq!(total, 7, "{}", workflow.name);
            assert!(workflow.last_run_duration_ms.is_some());
            assert!(workflow.last_run_status.is_some());
            let mine: Vec<_> = runs
                .iter()
                .filter(|r| r.workflow_id == workflow.id)
                .collect();
            let sum: f64 = mine
                .iter()
                .map(|r| (r.finished_at_ms.unwrap_or(0) - r.started_at_ms) as f64 / 1000.0)
                .sum();
            let seeded: f64 = durations.iter().map(|d| d.sum_seconds).sum();
            assert!((sum - seeded).abs() < 1e-6, "{sum} vs {seeded}");
        }
    }
}
