//! Jobs of runs, as their CI systems report them: created on first report,
//! then moved forward only (queued → in progress → completed), so that
//! deliveries arriving out of order or twice leave the latest state.

use runplane_api::workflowrun::v1::{JobStatus, RunStatus, RunnerType};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::Store;
use crate::entity::job;
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
/// and whatever it knows that `old` did not.
fn merge(old: Option<&job::Model>, report: &JobReport) -> job::Model {
    let text = |new: &str, old: Option<&String>| {
        if new.is_empty() {
            old.cloned().unwrap_or_default()
        } else {
            new.to_owned()
        }
    };
    let status = status_label(report.status);
    let forward = old.is_none_or(|o| rank(status) >= rank(&o.status));
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
        project: text(&report.project, old.map(|o| &o.project)),
        workflow: text(&report.workflow, old.map(|o| &o.workflow)),
        run_request_id: text(&report.run_request_id, old.map(|o| &o.run_request_id)),
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

/// How many times a report is retried when another changes the job meanwhile.
const ATTEMPTS: usize = 5;

impl Store {
    /// Records a job report: the job as stored after it.
    pub(crate) async fn report_job(&self, report: JobReport) -> Result<job::Model, Error> {
        for _ in 0..ATTEMPTS {
            let old = job::Entity::find()
                .filter(job::Column::OrgId.eq(&report.org_id))
                .filter(job::Column::JobKey.eq(&report.job_key))
                .one(&self.db)
                .await?;
            let merged = merge(old.as_ref(), &report);
            match old {
                None => {
                    let active = job::ActiveModel {
                        id: Set(merged.id.clone()),
                        org_id: Set(merged.org_id.clone()),
                        job_key: Set(merged.job_key.clone()),
                        project: Set(merged.project.clone()),
                        workflow: Set(merged.workflow.clone()),
                        run_request_id: Set(merged.run_request_id.clone()),
                        name: Set(merged.name.clone()),
                        status: Set(merged.status.clone()),
                        outcome: Set(merged.outcome.clone()),
                        conclusion: Set(merged.conclusion.clone()),
                        queued_at_ms: Set(merged.queued_at_ms),
                        started_at_ms: Set(merged.started_at_ms),
                        finished_at_ms: Set(merged.finished_at_ms),
                        runner: Set(merged.runner.clone()),
                        runner_name: Set(merged.runner_name.clone()),
                        runner_labels: Set(merged.runner_labels.clone()),
                        version: Set(merged.version),
                    };
                    match job::Entity::insert(active).exec(&self.db).await {
                        Ok(_) => return Ok(merged),
                        // Reported concurrently: merge into that one.
                        Err(e) if runplane_database::is_unique_violation(&e) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                Some(old) if unchanged(&old, &merged) => return Ok(old),
                Some(old) => {
                    let updated = job::Entity::update_many()
                        .col_expr(job::Column::Project, Expr::value(&merged.project))
                        .col_expr(job::Column::Workflow, Expr::value(&merged.workflow))
                        .col_expr(
                            job::Column::RunRequestId,
                            Expr::value(&merged.run_request_id),
                        )
                        .col_expr(job::Column::Name, Expr::value(&merged.name))
                        .col_expr(job::Column::Status, Expr::value(&merged.status))
                        .col_expr(job::Column::Outcome, Expr::value(&merged.outcome))
                        .col_expr(job::Column::Conclusion, Expr::value(&merged.conclusion))
                        .col_expr(job::Column::QueuedAtMs, Expr::value(merged.queued_at_ms))
                        .col_expr(job::Column::StartedAtMs, Expr::value(merged.started_at_ms))
                        .col_expr(
                            job::Column::FinishedAtMs,
                            Expr::value(merged.finished_at_ms),
                        )
                        .col_expr(job::Column::Runner, Expr::value(&merged.runner))
                        .col_expr(job::Column::RunnerName, Expr::value(&merged.runner_name))
                        .col_expr(
                            job::Column::RunnerLabels,
                            Expr::value(&merged.runner_labels),
                        )
                        .col_expr(job::Column::Version, Expr::value(merged.version))
                        .filter(job::Column::Id.eq(&old.id))
                        .filter(job::Column::Version.eq(old.version))
                        .exec(&self.db)
                        .await?;
                    if updated.rows_affected == 1 {
                        return Ok(merged);
                    }
                }
            }
        }
        Err(Error::Database(sea_orm::DbErr::Custom(
            "a job kept changing under concurrent reports".into(),
        )))
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
        let again = store.report_job(completed).await.expect("again");
        assert_eq!(again, stored);
        let listed = store
            .list_jobs("org", None, Some("github:9:1"), None, 10)
            .await
            .expect("list");
        assert_eq!(listed, vec![stored]);
    }
}
