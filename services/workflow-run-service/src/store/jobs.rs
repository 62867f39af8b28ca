//! Jobs of runs, as their CI systems report them: created on first report,
//! then moved forward only (queued → in progress → completed), so that
//! deliveries arriving out of order or twice leave the latest state. A job
//! is known by its key within its project (organization, project, key).
//!
//! A job belongs to a workflow once one is known: the one its report names
//! (created on first use, as a run's is), else its run's. Its report is a
//! write like a run's finish ([`super::run_writes`]): it locks the workflow's
//! record, then the job's row, and the first report that completes the job
//! counts it in the record ([`crate::aggregate::count_job`]) in the same
//! transaction, so redeliveries and concurrent deliveries count it once.

use std::collections::BTreeMap;

use runplane_api::workflowrun::v1::{JobStatus, RunStatus, RunnerType};
use sea_orm::sea_query::{Expr, Query};
use sea_orm::{
    ColumnTrait, DbBackend, DbErr, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QueryResult, QuerySelect, QueryTrait, Statement,
};

use super::Store;
use super::run_writes::{Write, Written};
use crate::aggregate::CompletedJob;
use crate::entity::{job, run};
use crate::error::Error;

/// A job as its reporter saw it.
#[derive(Debug, Clone)]
pub(crate) struct JobReport {
    pub(crate) org_id: String,
    pub(crate) job_key: String,
    pub(crate) project: String,
    pub(crate) workflow: String,
    pub(crate) run_request_id: String,
    pub(crate) name: String,
    pub(crate) status: JobStatus,
    /// Set with [`JobStatus::Completed`].
    pub(crate) outcome: Option<RunStatus>,
    pub(crate) conclusion: String,
    pub(crate) queued_at_ms: Option<i64>,
    pub(crate) started_at_ms: Option<i64>,
    pub(crate) finished_at_ms: Option<i64>,
    pub(crate) runner: RunnerType,
    pub(crate) runner_name: String,
    pub(crate) runner_labels: Vec<String>,
}

/// How far along a job is; a report never moves a job back.
fn rank(status: &str) -> u8 {
    match status {
        "queued" => 1,
        "in_progress" => 2,
        "completed" => 3,
        _ => 0,
    }
}

pub(crate) fn status_label(status: JobStatus) -> &'static str {
    match status {
        JobStatus::Queued => "queued",
        JobStatus::InProgress => "in_progress",
        JobStatus::Completed => "completed",
        JobStatus::Unspecified => "unspecified",
    }
}

pub(crate) fn status_from_label(label: &str) -> JobStatus {
    match label {
        "queued" => JobStatus::Queued,
        "in_progress" => JobStatus::InProgress,
        "completed" => JobStatus::Completed,
        _ => JobStatus::Unspecified,
    }
}

/// `old` with what `report` adds: its state if it is as far along or further,
/// and whatever it knows that `old` did not. The job's workflow is the one it
/// had, else `workflow_id`.
fn merge(old: Option<&job::Model>, report: &JobReport, workflow_id: &str) -> job::Model {
    let text = |new: &str, old: Option<&String>| {
        if new.is_empty() {
            old.cloned().unwrap_or_default()
        } else {
            new.to_owned()
        }
    };
    let status = status_label(report.status);
    // A report as far along moves the job too (a later in-progress report
    // says more), but a completed job keeps its outcome: it was counted so.
    let forward = old.is_none_or(|o| {
        rank(status) > rank(&o.status)
            || (rank(status) == rank(&o.status) && o.status != status_label(JobStatus::Completed))
    });
    // A report behind the stored state only fills in what is missing.
    let newer = |reported: Option<i64>, stored: Option<i64>| {
        if forward {
            reported.or(stored)
        } else {
            stored.or(reported)
        }
    };
    let (status, outcome, conclusion) = match (forward, old) {
        (false, Some(o)) => (o.status.clone(), o.outcome.clone(), o.conclusion.clone()),
        _ => (
            status.to_owned(),
            report
                .outcome
                .map(|o| o.label().to_owned())
                .unwrap_or_default(),
            report.conclusion.clone(),
        ),
    };
    let labels = if report.runner_labels.is_empty() {
        old.map(|o| o.runner_labels.clone()).unwrap_or_default()
    } else {
        report.runner_labels.join("\n")
    };
    job::Model {
        id: old
            .map(|o| o.id.clone())
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
        org_id: report.org_id.clone(),
        job_key: report.job_key.clone(),
        // Part of the job's key: the same as the stored job's.
        project: report.project.clone(),
        workflow: text(&report.workflow, old.map(|o| &o.workflow)),
        run_request_id: text(&report.run_request_id, old.map(|o| &o.run_request_id)),
        workflow_id: match old {
            Some(o) if !o.workflow_id.is_empty() => o.workflow_id.clone(),
            _ => workflow_id.to_owned(),
        },
        name: text(&report.name, old.map(|o| &o.name)),
        status,
        outcome,
        conclusion,
        queued_at_ms: newer(report.queued_at_ms, old.and_then(|o| o.queued_at_ms)),
        started_at_ms: newer(report.started_at_ms, old.and_then(|o| o.started_at_ms)),
        finished_at_ms: newer(report.finished_at_ms, old.and_then(|o| o.finished_at_ms)),
        runner: match report.runner {
            RunnerType::Unspecified => old
                .map(|o| o.runner.clone())
                .unwrap_or_else(|| report.runner.label().to_owned()),
            runner => runner.label().to_owned(),
        },
        runner_name: text(&report.runner_name, old.map(|o| &o.runner_name)),
        runner_labels: labels,
        version: old.map_or(0, |o| o.version + 1),
    }
}

/// How many times a report is tried when a concurrent one created the job first.
const ATTEMPTS: usize = 5;

/// A job report, with the workflow it counts in ("" while none is known).
#[derive(Debug, Clone)]
pub(super) struct JobWrite {
    pub(super) report: JobReport,
    pub(super) workflow_id: String,
}

impl JobWrite {
    /// The statements that read what the report changes, in the lock order of
    /// every write: the workflow's record (none for ""), then the job's row.
    pub(super) fn lookups(&self, backend: DbBackend) -> [Statement; 2] {
        let record = super::run_writes::record_of_workflow(backend, &self.workflow_id);
        let job = job::Entity::find()
            .filter(job::Column::OrgId.eq(&self.report.org_id))
            .filter(job::Column::Project.eq(&self.report.project))
            .filter(job::Column::JobKey.eq(&self.report.job_key))
            .lock_exclusive()
            .build(backend);
        [record, job]
    }
}

/// The jobs one transaction writes, each as the last of its reports left it.
#[derive(Default)]
pub(super) struct JobBatch {
    /// By (organization, project, key): the job, whether its row exists,
    /// whether it changed.
    jobs: BTreeMap<(String, String, String), (job::Model, bool, bool)>,
}

impl JobBatch {
    /// Merges `write`'s report into its job as this batch left it, else as
    /// `stored` (its row, read by [`JobWrite::lookups`]). Returns the job, and
    /// whether this report completed it in the workflow `write` locked (so it
    /// counts there now).
    pub(super) fn merge(
        &mut self,
        write: &JobWrite,
        stored: Option<&QueryResult>,
    ) -> Result<(job::Model, bool), DbErr> {
        let key = (
            write.report.org_id.clone(),
            write.report.project.clone(),
            write.report.job_key.clone(),
        );
        let (old, exists) = match self.jobs.get(&key) {
            Some((job, exists, _)) => (Some(job.clone()), *exists),
            None => match stored {
                Some(row) => (Some(job::Model::from_query_result(row, "")?), true),
                None => (None, false),
            },
        };
        let merged = merge(old.as_ref(), &write.report, &write.workflow_id);
        if let Some(old) = old.as_ref().filter(|old| unchanged(old, &merged)) {
            return Ok((old.clone(), false));
        }
        // A job counts once: when it is completed and its workflow known,
        // whichever of the two came last.
        let newly_completed = old.as_ref().is_none_or(|o| o.status != merged.status);
        let newly_attributed = old.as_ref().is_some_and(|o| o.workflow_id.is_empty());
        let completed_now = merged.status == status_label(JobStatus::Completed)
            && (newly_completed || newly_attributed)
            && !merged.workflow_id.is_empty()
            && merged.workflow_id == write.workflow_id;
        self.jobs.insert(key, (merged.clone(), exists, true));
        Ok((merged, completed_now))
    }

    /// The inserts and updates of the jobs that changed.
    pub(super) fn statements(self, backend: DbBackend) -> Vec<Statement> {
        self.jobs
            .into_values()
            .filter(|(_, _, changed)| *changed)
            .map(|(job, exists, _)| {
                if exists {
                    job_update(backend, &job)
                } else {
                    job_insert(backend, &job)
                }
            })
            .collect()
    }
}

/// A completed job, as its workflow counts it.
pub(super) fn completed(job: &job::Model) -> CompletedJob<'_> {
    let status = RunStatus::from_label(&job.outcome);
    let finished_at_ms = job
        .finished_at_ms
        .unwrap_or_else(runplane_api::time::now_ms);
    let between = |from: Option<i64>, to: Option<i64>| match (from, to) {
        (Some(from), Some(to)) if to >= from => Some(to - from),
        _ => None,
    };
    CompletedJob {
        name: &job.name,
        status,
        finished_at_ms,
        duration_ms: between(job.started_at_ms, job.finished_at_ms),
        queue_ms: between(job.queued_at_ms, job.started_at_ms),
    }
}

fn job_insert(backend: DbBackend, job: &job::Model) -> Statement {
    let insert = Query::insert()
        .into_table(job::Entity)
        .columns([
            job::Column::Id,
            job::Column::OrgId,
            job::Column::JobKey,
            job::Column::Project,
            job::Column::Workflow,
            job::Column::RunRequestId,
            job::Column::WorkflowId,
            job::Column::Name,
            job::Column::Status,
            job::Column::Outcome,
            job::Column::Conclusion,
            job::Column::QueuedAtMs,
            job::Column::StartedAtMs,
            job::Column::FinishedAtMs,
            job::Column::Runner,
            job::Column::RunnerName,
            job::Column::RunnerLabels,
            job::Column::Version,
        ])
        .values_panic([
            job.id.clone().into(),
            job.org_id.clone().into(),
            job.job_key.clone().into(),
            job.project.clone().into(),
            job.workflow.clone().into(),
            job.run_request_id.clone().into(),
            job.workflow_id.clone().into(),
            job.name.clone().into(),
            job.status.clone().into(),
            job.outcome.clone().into(),
            job.conclusion.clone().into(),
            job.queued_at_ms.into(),
            job.started_at_ms.into(),
            job.finished_at_ms.into(),
            job.runner.clone().into(),
            job.runner_name.clone().into(),
            job.runner_labels.clone().into(),
            job.version.into(),
        ])
        .to_owned();
    backend.build(&insert)
}

fn job_update(backend: DbBackend, job: &job::Model) -> Statement {
    job::Entity::update_many()
        .col_expr(job::Column::Project, Expr::value(&job.project))
        .col_expr(job::Column::Workflow, Expr::value(&job.workflow))
        .col_expr(job::Column::RunRequestId, Expr::value(&job.run_request_id))
        .col_expr(job::Column::WorkflowId, Expr::value(&job.workflow_id))
        .col_expr(job::Column::Name, Expr::value(&job.name))
        .col_expr(job::Column::Status, Expr::value(&job.status))
        .col_expr(job::Column::Outcome, Expr::value(&job.outcome))
        .col_expr(job::Column::Conclusion, Expr::value(&job.conclusion))
        .col_expr(job::Column::QueuedAtMs, Expr::value(job.queued_at_ms))
        .col_expr(job::Column::StartedAtMs, Expr::value(job.started_at_ms))
        .col_expr(job::Column::FinishedAtMs, Expr::value(job.finished_at_ms))
        .col_expr(job::Column::Runner, Expr::value(&job.runner))
        .col_expr(job::Column::RunnerName, Expr::value(&job.runner_name))
        .col_expr(job::Column::RunnerLabels, Expr::value(&job.runner_labels))
        .col_expr(job::Column::Version, Expr::value(job.version))
        .filter(job::Column::Id.eq(&job.id))
        .build(backend)
}

impl Store {
    /// Records a job report: the job as stored after it.
    pub(crate) async fn report_job(&self, report: JobReport) -> Result<job::Model, Error> {
        let workflow_id = self.job_workflow(&report).await?;
        let mut attempt = 0;
        loop {
            let write = JobWrite {
                report: report.clone(),
                workflow_id: workflow_id.clone(),
            };
            match self.write(Write::Job(Box::new(write))).await {
                Ok(Written::Job(job)) => return Ok(*job),
                Ok(_) => {
                    return Err(Error::Database(DbErr::Custom(
                        "a job report was answered as another write".into(),
                    )));
                }
                // Created meanwhile by a concurrent report: merge into it.
                Err(Error::Database(e))
                    if runplane_database::is_unique_violation(&e) && attempt + 1 < ATTEMPTS =>
                {
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The workflow a job counts in: the one it was given before, else the
    /// one its report names (created if new), else its run's in its project;
    /// "" while none is known.
    async fn job_workflow(&self, report: &JobReport) -> Result<String, Error> {
        let known: Option<String> = job::Entity::find()
            .select_only()
            .column(job::Column::WorkflowId)
            .filter(job::Column::OrgId.eq(&report.org_id))
            .filter(job::Column::Project.eq(&report.project))
            .filter(job::Column::JobKey.eq(&report.job_key))
            .into_tuple()
            .one(&self.db)
            .await?;
        if let Some(id) = known.filter(|id| !id.is_empty()) {
            return Ok(id);
        }
        if !report.workflow.is_empty() {
            let workflow = self
                .find_or_create_workflow(&report.org_id, &report.project, &report.workflow)
                .await?;
            return Ok(workflow.id);
        }
        if report.run_request_id.is_empty() {
            return Ok(String::new());
        }
        // Keys are per workflow: the run of this key in the job's project.
        let candidates: Vec<String> = run::Entity::find()
            .select_only()
            .column(run::Column::WorkflowId)
            .filter(run::Column::OrgId.eq(&report.org_id))
            .filter(run::Column::RequestId.eq(&report.run_request_id))
            .order_by_desc(run::Column::Id)
            .limit(20)
            .into_tuple()
            .all(&self.db)
            .await?;
        let workflows = self.workflow_refs(candidates.clone()).await?;
        Ok(candidates
            .into_iter()
            .find(|id| {
                workflows
                    .get(id)
                    .is_some_and(|w| w.project == report.project)
            })
            .unwrap_or_default())
    }

    /// Deletes up to `limit` jobs first reported before `before_ms`, oldest
    /// first, and says how many it deleted; as with runs, their counts stay
    /// in the aggregates.
    pub(crate) async fn delete_old_jobs(&self, before_ms: i64, limit: u64) -> Result<u64, Error> {
        let oldest = Query::select()
            .column(job::Column::Id)
            .from(job::Entity)
            .and_where(job::Column::Id.lt(super::runs::uuid_v7_floor(before_ms)))
            .order_by(job::Column::Id, sea_orm::Order::Asc)
            .limit(limit)
            .to_owned();
        let result = job::Entity::delete_many()
            .filter(job::Column::Id.in_subquery(oldest))
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected)
    }

    /// Up to `limit` of an organization's jobs older than id `before`, newest first.
    pub(crate) async fn list_jobs(
        &self,
        org_id: &str,
        projects: Option<&[String]>,
        run_request_id: Option<&str>,
        before: Option<&str>,
        limit: u64,
    ) -> Result<Vec<job::Model>, Error> {
        let mut query = job::Entity::find()
            .filter(job::Column::OrgId.eq(org_id))
            .order_by_desc(job::Column::Id)
            .limit(limit);
        if let Some(projects) = projects {
            query = query.filter(job::Column::Project.is_in(projects.iter().map(String::as_str)));
        }
        if let Some(run) = run_request_id {
            query = query.filter(job::Column::RunRequestId.eq(run));
        }
        if let Some(before) = before {
            query = query.filter(job::Column::Id.lt(before));
        }
        Ok(query.all(&self.db).await?)
    }
}

/// Whether a merge changed nothing but the version.
fn unchanged(old: &job::Model, merged: &job::Model) -> bool {
    job::Model {
        version: old.version,
        ..merged.clone()
    } == *old
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::store;

    fn report(status: JobStatus) -> JobReport {
        JobReport {
            org_id: "org".into(),
            job_key: "github-job:1".into(),
            project: "o/r".into(),
            workflow: "CI".into(),
            run_request_id: "github:9:1".into(),
            name: "build".into(),
            status,
            outcome: None,
            conclusion: String::new(),
            queued_at_ms: None,
            started_at_ms: None,
            finished_at_ms: None,
            runner: RunnerType::GithubAction,
            runner_name: String::new(),
            runner_labels: Vec::new(),
        }
    }

    /// (name, runs_total by outcome, durations counted, queue waits counted)
    /// of each job counted in organization `org`'s workflows.
    async fn counted_jobs(store: &Store) -> Vec<(String, Vec<(String, u64)>, u64, u64)> {
        crate::store::test_support::org_metrics(store)
            .await
            .iter()
            .flat_map(|w| w.jobs.clone())
            .map(|j| {
                let outcomes = j
                    .durations
                    .iter()
                    .map(|d| (d.status().label().to_owned(), d.runs_total))
                    .collect();
                let counted = j.durations.iter().map(|d| d.count).sum();
                (j.name, outcomes, counted, j.queue.map_or(0, |q| q.count))
            })
            .collect()
    }

    #[tokio::test]
    async fn a_completed_job_counts_once_however_its_reports_arrive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir).await;
        let completed = JobReport {
            outcome: Some(RunStatus::Error),
            queued_at_ms: Some(1_000),
            started_at_ms: Some(4_000),
            finished_at_ms: Some(9_000),
            ..report(JobStatus::Completed)
        };
        // Redelivered and delivered concurrently, around a stale queued one.
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..8 {
            let (store, report) = (store.clone(), completed.clone());
            let stale = JobReport {
                queued_at_ms: Some(1_000),
                ..super::tests::report(JobStatus::Queued)
            };
            tasks.spawn(async move {
                let report = if i % 3 == 0 { stale } else { report };
                store.report_job(report).await
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("task").expect("report");
        }
        store.report_job(completed).await.expect("again");
        assert_eq!(
            counted_jobs(&store).await,
            [("build".to_owned(), vec![("error".to_owned(), 1)], 1, 1)]
        );
    }

    #[tokio::test]
    async fn a_job_without_a_workflow_counts_in_its_runs_once_that_is_known() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir).await;
        // A GitLab job names only its pipeline's key, whose run is not known yet.
        let completed = JobReport {
            workflow: String::new(),
            run_request_id: "gitlab:5".into(),
            outcome: Some(RunStatus::Success),
            ..report(JobStatus::Completed)
        };
        let stored = store.report_job(completed.clone()).await.expect("report");
        assert_eq!(stored.workflow_id, "");
        assert!(counted_jobs(&store).await.is_empty());

        // The run of that key, in another project and then in the job's.
        for project in ["other/project", "o/r"] {
            let workflow = store
                .find_or_create_workflow("org", project, ".gitlab-ci.yml")
                .await
                .expect("workflow");
            store
                .start_run(&workflow, "GITLAB_PIPELINE", "", Some("gitlab:5"))
                .await
                .expect("start");
        }
        let attributed = store.report_job(completed.clone()).await.expect("again");
        let workflow = store
            .find_workflow("org", "o/r", ".gitlab-ci.yml")
            .await
            .expect("find")
            .expect("the job's project's workflow");
        assert_eq!(attributed.workflow_id, workflow.id);
        let counted = vec![("build".to_owned(), vec![("success".to_owned(), 1)], 0, 0)];
        assert_eq!(counted_jobs(&store).await, counted);
        store.report_job(completed).await.expect("once more");
        assert_eq!(counted_jobs(&store).await, counted, "counted once");
    }

    #[tokio::test]
    async fn one_key_in_two_projects_is_two_jobs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir).await;
        // Another project reports the key first (a public GitHub job id), failed.
        let squatter = JobReport {
            project: "web".into(),
            outcome: Some(RunStatus::Error),
            ..report(JobStatus::Completed)
        };
        store.report_job(squatter).await.expect("web's job");
        let genuine = JobReport {
            outcome: Some(RunStatus::Success),
            ..report(JobStatus::Completed)
        };
        let stored = store.report_job(genuine).await.expect("o/r's job");
        assert_eq!(
            (stored.project.as_str(), stored.outcome.as_str()),
            ("o/r", "success")
        );
        let counted = counted_jobs(&store).await;
        assert_eq!(counted.len(), 2, "{counted:?}");
    }

    #[tokio::test]
    async fn jobs_only_move_forward_and_keep_what_any_report_said() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir).await;
        // Completed arrives first, then the queued and in-progress deliveries.
        let completed = JobReport {
            outcome: Some(RunStatus::Error),
            conclusion: "failure".into(),
            started_at_ms: Some(2_000),
            finished_at_ms: Some(9_000),
            runner_name: "runner-7".into(),
            runner_labels: vec!["ubuntu-latest".into(), "x64".into()],
            ..report(JobStatus::Completed)
        };
        store
            .report_job(completed.clone())
            .await
            .expect("completed");
        let queued = JobReport {
            queued_at_ms: Some(1_000),
            // A stale delivery's start does not replace the completed one's.
            started_at_ms: Some(5_000),
            ..report(JobStatus::Queued)
        };
        store.report_job(queued).await.expect("queued");
        let stored = store
            .report_job(report(JobStatus::InProgress))
            .await
            .expect("in progress");
        assert_eq!(stored.status, "completed");
        assert_eq!(stored.outcome, "error");
        assert_eq!(
            (
                stored.queued_at_ms,
                stored.started_at_ms,
                stored.finished_at_ms
            ),
            (Some(1_000), Some(2_000), Some(9_000))
        );
        assert_eq!(stored.runner_labels, "ubuntu-latest\nx64");
        // Redelivered: nothing changes, not even the version.
        let again = store.report_job(completed.clone()).await.expect("again");
        assert_eq!(again, stored);
        // Reported completed otherwise: the first outcome stays, as counted.
        let otherwise = JobReport {
            outcome: Some(RunStatus::Success),
            conclusion: "success".into(),
            ..completed
        };
        let again = store.report_job(otherwise).await.expect("otherwise");
        assert_eq!(
            (again.outcome.as_str(), again.conclusion.as_str()),
            ("error", "failure")
        );
        let listed = store
            .list_jobs("org", None, Some("github:9:1"), None, 10)
            .await
            .expect("list");
        assert_eq!(listed, vec![stored]);
    }
}
