//! What benchmarks and end-to-end tests reach directly, behind the
//! `test-support` feature: workflow-run-service's storage opened on its own
//! database, bulk history written a thousand rows per statement rather than
//! one call per run, and runs reported without the gRPC hop (the database
//! alone: the benchmark's floor).

use runplane_api::workflowrun::v1::{RunStatus, RunnerType};
use runplane_database::DatabaseArgs;
use sea_orm::{ActiveValue::Set, ConnectionTrait as _, DbBackend, EntityTrait, TransactionTrait};

use crate::aggregate::{self, DEFAULT_BUCKETS};
use crate::entity::{run, workflow};
use crate::error::Error;
use crate::store::{Finish, NewRun, Store, record};

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

/// workflow-run-service's storage, reached directly.
#[derive(Clone)]
pub struct Storage {
    store: Store,
}

impl Storage {
    /// Connects to the database and brings its schema up to date; on
    /// PostgreSQL the tables are in `schema` unless `args` names one. New
    /// histograms get the default buckets.
    pub async fn open(args: &DatabaseArgs, schema: &str) -> anyhow::Result<Self> {
        let db = runplane_database::connect_and_migrate::<crate::migration::Migrator>(args, schema)
            .await?;
        Ok(Storage {
            store: Store::new(db, DEFAULT_BUCKETS.to_vec()),
        })
    }

    /// Starts and finishes a run of the organization's workflow
    /// `default/{workflow}` (created on first use) with `outcome`, as
    /// StartRun and FinishRun would, without gRPC or authentication.
    pub async fn report_run(
        &self,
        org_id: &str,
        workflow: &str,
        outcome: RunStatus,
    ) -> anyhow::Result<()> {
        let workflow = self
            .store
            .find_or_create_workflow(org_id, "default", workflow)
            .await?;
        let started = self
            .store
            .start(
                &workflow,
                NewRun {
                    runner: RunnerType::GithubAction,
                    ..NewRun::default()
                },
            )
            .await?;
        self.store
            .finish(Finish {
                org_id: Some(org_id),
                run_id: &started.run.id,
                outcome,
                reason: "",
                finished_at_ms: None,
                trace_id: None,
            })
            .await?;
        Ok(())
    }

    /// Creates `plan.workflows` workflows with `plan.runs_per_workflow`
    /// finished runs each, as [`Store::seed_history`] does.
    pub async fn seed_history(&self, plan: &SeedPlan) -> anyhow::Result<u64> {
        Ok(self.store.seed_history(plan).await?)
    }
}

impl Store {
    /// Creates `plan.workflows` workflows with `plan.runs_per_workflow` finished
    /// runs each (outcomes and durations varied deterministically), counted in
    /// their workflows' records as finishing them would. Returns the number of
    /// runs written.
    async fn seed_history(&self, plan: &SeedPlan) -> Result<u64, Error> {
        let statuses = [
            RunStatus::Success,
            RunStatus::Success,
            RunStatus::Error,
            RunStatus::Canceled,
        ];
        let runner: RunnerType = RunnerType::from_label(&plan.runner);
        let start = runplane_api::time::now_ms() - 86_400_000;
        let mut written = 0u64;
        let mut workflows = Vec::with_capacity(plan.workflows);
        let mut runs = Vec::with_capacity(ROWS_PER_STATEMENT);
        let txn = self.db.begin().await?;
        for w in 0..plan.workflows {
            let workflow_id = uuid::Uuid::now_v7().to_string();
            let name = format!("workflow-{w:05}");
            let mut metrics = aggregate::new(&workflow_id, &plan.project, &name, start);
            for r in 0..plan.runs_per_workflow {
                let status = statuses[(w + r) % statuses.len()];
                let started = start + (r as i64) * 60_000;
                let duration_ms = 5_000 + ((w * 7919 + r * 104_729) % 600_000) as i64;
                let finished = started + duration_ms;
                aggregate::count(
                    &mut metrics,
                    aggregate::Finished {
                        status,
                        runner,
                        finished_at_ms: finished,
                        duration_ms: Some(duration_ms),
                        branch: "",
                        run_id: "",
                        trace_id: "",
                    },
                    self.buckets(),
                );
                runs.push(run::ActiveModel {
                    id: Set(uuid::Uuid::now_v7().to_string()),
                    org_id: Set(plan.org_id.clone()),
                    workflow_id: Set(workflow_id.clone()),
                    runner: Set(plan.runner.clone()),
                    run_url: Set(String::new()),
                    status: Set(status.label().to_owned()),
                    reason: Set(String::new()),
                    started_at_ms: Set(started),
                    finished_at_ms: Set(Some(finished)),
                    request_id: Set(None),
                    expires_at_ms: Set(None),
                    queued_at_ms: Set(None),
                    attempt: Set(0),
                    branch: Set(String::new()),
                    commit_sha: Set(String::new()),
                    trigger: Set(String::new()),
                    default_branch: Set(String::new()),
                    trace_id: Set(String::new()),
                });
                if runs.len() == ROWS_PER_STATEMENT {
                    written += runs.len() as u64;
                    run::Entity::insert_many(std::mem::take(&mut runs))
                        .exec(&txn)
                        .await?;
                }
            }
            let (last_status, last_runner, last_finished, last_duration) =
                record::last_run_columns(&metrics);
            workflows.push(workflow::ActiveModel {
                id: Set(workflow_id),
                org_id: Set(plan.org_id.clone()),
                project: Set(plan.project.clone()),
                name: Set(name),
                created_at_ms: Set(start),
                last_run_status: Set(last_status),
                last_run_runner: Set(last_runner),
                last_run_finished_at_ms: Set(last_finished),
                last_run_duration_ms: Set(last_duration),
                metrics: Set(record::encode(&metrics)),
                exemplars: Set(Vec::new()),
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
        // New workflows: a change of the organization's aggregates.
        crate::store::bump_revision(&txn, &plan.org_id, &plan.project).await?;
        txn.commit().await?;
        if self.db.get_database_backend() == DbBackend::Postgres {
            // A bulk load leaves PostgreSQL's planner statistics stale and its
            // visibility map empty. Autovacuum would catch up in the
            // background, competing with whatever runs next (a benchmark's
            // scrapes); a table that grew over months has had that done
            // already, so do it now.
            self.db
                .execute_unprepared("VACUUM (ANALYZE) runs, workflows")
                .await?;
        }
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
        let page = crate::store::test_support::org_metrics(&store).await;
        assert_eq!(page.len(), 3);
        for workflow in page {
            let durations = &workflow.durations;
            let count: u64 = durations.iter().map(|d| d.count).sum();
            assert_eq!(count, 7, "{}", workflow.workflow);
            let total: u64 = durations.iter().map(|d| d.runs_total).sum();
            assert_eq!(total, 7, "{}", workflow.workflow);
            let last = workflow.last_run.as_ref().expect("a last run");
            assert!(last.duration_seconds.is_some());
            let mine: Vec<_> = runs
                .iter()
                .filter(|r| r.workflow_id == workflow.workflow_id)
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
