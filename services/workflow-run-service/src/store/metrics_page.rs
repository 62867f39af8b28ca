//! A scrape's page: an organization's workflows' metrics records (see
//! [`super::record`]), joined into one value by the database and passed on
//! as they are stored, and what is true now (runs in progress, jobs queued:
//! found through the (org, status) indexes, so finished history is never
//! read), read with the organization's revision in one statement.

use std::collections::{HashMap, HashSet};

use prost::Message as _;
use runplane_api::workflowrun::v1::{
    JobStatus, ListWorkflowMetricsResponse, RunStatus, WorkflowMetrics, WorkflowNow,
};
use sea_orm::{ConnectionTrait, DbBackend, Statement};

use super::{Store, record};
use crate::error::Error;

/// The page query. On SQLite it returns one row, one value holding the page's
/// records joined: rows crossing sqlx's SQLite driver are expensive (each is
/// copied out of SQLite, allocated, and handed from the database thread to
/// the caller, waking it), the database's own work is not. On PostgreSQL rows
/// come off the socket cheaply and `string_agg` costs more than it saves
/// (a page of 1,000 read in 1.5 ms as rows, 2.5 ms joined), so it returns
/// the records as rows.
///
/// With `exemplars`, each record's exemplars (stored apart, see
/// [`super::record::encode_split`]) come as a second value (column).
fn page_sql(backend: DbBackend, after: bool, projects: usize, exemplars: bool) -> String {
    let mut bound = 0;
    let mut next = || match backend {
        DbBackend::Postgres => {
            bound += 1;
            format!("${bound}")
        }
        _ => "?".to_owned(),
    };
    let columns = if exemplars {
        "metrics, exemplars"
    } else {
        "metrics"
    };
    let mut page = format!("SELECT {columns} FROM workflows WHERE org_id = {}", next());
    if projects > 0 {
        let list: Vec<String> = (0..projects).map(|_| next()).collect();
        page.push_str(&format!(" AND project IN ({})", list.join(", ")));
    }
    if after {
        page.push_str(&format!(" AND id > {}", next()));
    }
    page.push_str(&format!(" ORDER BY id LIMIT {}", next()));
    match backend {
        DbBackend::Postgres => page,
        // group_concat joins the bytes as they are but calls the result text;
        // the cast calls it a blob again.
        _ if exemplars => format!(
            "SELECT CAST(group_concat(metrics, '') AS BLOB), \
             CAST(group_concat(exemplars, '') AS BLOB) FROM ({page}) AS page"
        ),
        _ => format!("SELECT CAST(group_concat(metrics, '') AS BLOB) FROM ({page}) AS page"),
    }
}

/// The statement of [`Store::revision_and_now`] and its values: rows of
/// (kind, workflow id, number, run), kind 0 a revision counter, 1 a
/// workflow's runs in progress, 2 a job queued now and its run.
fn revision_and_now_sql(
    backend: DbBackend,
    org_id: &str,
    projects: Option<&[String]>,
    since_ms: i64,
) -> (String, Vec<sea_orm::Value>) {
    let mut values: Vec<sea_orm::Value> = Vec::new();
    let mut bind = |value: sea_orm::Value| {
        values.push(value);
        match backend {
            DbBackend::Postgres => format!("${}", values.len()),
            _ => "?".to_owned(),
        }
    };
    let org = bind(org_id.into());
    let mut sql = format!(
        "SELECT CAST(0 AS BIGINT) AS kind, '' AS workflow_id, revision AS n, '' AS run \
         FROM org_revisions WHERE org_id = {org}"
    );
    let in_projects = |bind: &mut dyn FnMut(sea_orm::Value) -> String| match projects {
        None => String::new(),
        Some(projects) => {
            let org = bind(org_id.into());
            let list: Vec<String> = projects.iter().map(|p| bind(p.as_str().into())).collect();
            format!(
                " AND workflow_id IN (SELECT id FROM workflows WHERE org_id = {org} \
                 AND project IN ({}))",
                list.join(", ")
            )
        }
    };
    let org = bind(org_id.into());
    let initialized = bind(RunStatus::Initialized.label().into());
    let only = in_projects(&mut bind);
    sql.push_str(&format!(
        " UNION ALL SELECT 1, workflow_id, COUNT(*), '' FROM runs \
         WHERE org_id = {org} AND status = {initialized}{only} GROUP BY workflow_id"
    ));
    let org = bind(org_id.into());
    let queued = bind(super::jobs::status_label(JobStatus::Queued).into());
    let since = bind(since_ms.into());
    let floor = bind(super::runs::uuid_v7_floor(since_ms).into());
    let only = in_projects(&mut bind);
    sql.push_str(&format!(
        " UNION ALL SELECT 2, workflow_id, CAST(1 AS BIGINT), run_request_id FROM jobs \
         WHERE org_id = {org} AND status = {queued} \
         AND (queued_at_ms >= {since} OR (queued_at_ms IS NULL AND id >= {floor})){only}"
    ));
    (sql, values)
}

/// A page of an organization's workflows with their aggregates.
#[derive(Debug)]
pub(crate) struct MetricsPage {
    /// The workflows in id order, encoded as the reply carries them.
    pub(crate) workflows: ListWorkflowMetricsResponse,
    /// The last workflow's id, when more follow it.
    pub(crate) more_after: Option<String>,
}

impl Store {
    /// A page of at most `limit` of an organization's workflows with their
    /// aggregates, after the workflow `after`; only those in `projects` when
    /// it is given; with their histograms' exemplars when `exemplars`.
    pub(crate) async fn workflow_metrics(
        &self,
        org_id: &str,
        projects: Option<&[String]>,
        after: Option<&str>,
        limit: u64,
        exemplars: bool,
        now_apart: bool,
    ) -> Result<MetricsPage, Error> {
        let backend = self.db.get_database_backend();
        let projects = projects.unwrap_or_default();
        let mut values: Vec<sea_orm::Value> = vec![org_id.into()];
        values.extend(projects.iter().map(|p| p.as_str().into()));
        if let Some(after) = after {
            values.push(after.into());
        }
        // One more than the page, to know without another call whether a
        // page follows.
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        values.push(
            i64::try_from(limit.saturating_add(1))
                .unwrap_or(i64::MAX)
                .into(),
        );
        let rows = self
            .db
            .query_all_raw(Statement::from_sql_and_values(
                backend,
                page_sql(backend, after.is_some(), projects.len(), exemplars),
                values,
            ))
            .await?;
        let column = |index: usize| {
            rows.iter()
                .filter_map(|row| row.try_get_by_index::<Option<Vec<u8>>>(index).transpose())
                .collect::<Result<Vec<_>, _>>()
        };
        let values = column(0)?;
        let mut records = Vec::new();
        for value in &values {
            record::split_page(value, &mut records)?;
        }
        let exemplar_values = if exemplars { column(1)? } else { Vec::new() };
        let mut stored_exemplars = Vec::new();
        for value in &exemplar_values {
            record::split_page(value, &mut stored_exemplars)?;
        }
        let exemplars_of: HashMap<&str, &[u8]> = stored_exemplars
            .iter()
            .map(|e| (e.workflow_id, e.message))
            .collect();
        // The aggregate's order is the database's choice; the page's is ours.
        records.sort_unstable_by_key(|r| r.workflow_id);
        let more_after = if records.len() > limit {
            records.truncate(limit);
            records.last().map(|r| r.workflow_id.to_owned())
        } else {
            None
        };
        if records.is_empty() {
            return Ok(MetricsPage {
                workflows: ListWorkflowMetricsResponse::default(),
                more_after: None,
            });
        }

        // What is true now goes apart, or is appended to each record as more
        // encoded fields (for a caller that did not ask for it apart).
        let now = if now_apart {
            Vec::new()
        } else {
            self.revision_and_now(org_id, Some(projects).filter(|p| !p.is_empty()))
                .await?
                .1
        };
        let now_of: HashMap<&str, &WorkflowNow> =
            now.iter().map(|n| (n.workflow_id.as_str(), n)).collect();
        let mut workflows = ListWorkflowMetricsResponse::default();
        let mut more = Vec::new();
        for stored in &records {
            more.clear();
            if let Some(n) = now_of.get(stored.workflow_id) {
                WorkflowMetrics {
                    runs_in_progress: n.runs_in_progress,
                    jobs_queued: n.jobs_queued,
                    runs_queued: n.runs_queued,
                    ..WorkflowMetrics::default()
                }
                .encode_raw(&mut more);
            }
            if let Some(exemplars) = exemplars_of.get(stored.workflow_id) {
                more.extend_from_slice(exemplars);
            }
            workflows.push_encoded(stored.message, &more);
        }
        Ok(MetricsPage {
            workflows,
            more_after,
        })
    }
}

/// A workflow's jobs waiting for a runner now, and the runs they belong to.
#[derive(Debug, Default)]
struct Queued {
    jobs: usize,
    runs: HashSet<String>,
}

impl Store {
    /// A scrape's first questions, in one statement (one round trip; on
    /// SQLite each statement is a wake-up of its thread both ways): the
    /// organization's revision (`super::revisions`), and what is true now
    /// of its workflows (of `projects`, when given) that have runs in
    /// progress or jobs queued.
    pub(crate) async fn revision_and_now(
        &self,
        org_id: &str,
        projects: Option<&[String]>,
    ) -> Result<(String, Vec<WorkflowNow>), Error> {
        let backend = self.db.get_database_backend();
        let since_ms = runplane_api::time::now_ms().saturating_sub(self.job_queue_window_ms);
        let (sql, values) = revision_and_now_sql(backend, org_id, projects, since_ms);
        let rows = self
            .db
            .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?;
        let mut revision = 0i64;
        let mut in_progress: HashMap<String, i64> = HashMap::new();
        let mut queued: HashMap<String, Queued> = HashMap::new();
        for row in rows {
            let kind: i64 = row.try_get_by_index(0)?;
            let workflow_id: String = row.try_get_by_index(1)?;
            let n: i64 = row.try_get_by_index(2)?;
            let run: String = row.try_get_by_index(3)?;
            match kind {
                0 => revision = revision.wrapping_add(n),
                1 => {
                    in_progress.insert(workflow_id, n);
                }
                _ => {
                    let q = queued.entry(workflow_id).or_default();
                    q.jobs += 1;
                    if !run.is_empty() {
                        q.runs.insert(run);
                    }
                }
            }
        }
        let ids: std::collections::BTreeSet<&String> =
            in_progress.keys().chain(queued.keys()).collect();
        let now = ids
            .into_iter()
            .map(|id| {
                let (jobs_queued, runs_queued) =
                    queued.get(id).map_or((0, 0), |q| (q.jobs, q.runs.len()));
                WorkflowNow {
                    workflow_id: id.clone(),
                    runs_in_progress: u32::try_from(in_progress.get(id).copied().unwrap_or(0))
                        .unwrap_or(u32::MAX),
                    jobs_queued: u32::try_from(jobs_queued).unwrap_or(u32::MAX),
                    runs_queued: u32::try_from(runs_queued).unwrap_or(u32::MAX),
                }
            })
            .collect();
        Ok((super::revisions::revision_of(org_id, revision), now))
    }
}

#[cfg(test)]
mod tests {
    use runplane_api::workflowrun::v1::{JobStatus, RunnerType};

    use crate::store::JobReport;

    fn queued(key: &str, run: &str, queued_at_ms: i64) -> JobReport {
        JobReport {
            org_id: "org".into(),
            job_key: key.into(),
            project: "default".into(),
            workflow: "ci".into(),
            run_request_id: run.into(),
            name: key.into(),
            status: JobStatus::Queued,
            outcome: None,
            conclusion: String::new(),
            queued_at_ms: Some(queued_at_ms),
            started_at_ms: None,
            finished_at_ms: None,
            runner: RunnerType::GithubAction,
            runner_name: String::new(),
            runner_labels: Vec::new(),
        }
    }

    #[tokio::test]
    async fn jobs_queued_now_are_counted_with_the_runs_they_hold_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::test_support::store(&dir)
            .await
            .with_job_queue_window(std::time::Duration::from_secs(3600));
        let now = runplane_api::time::now_ms();
        for report in [
            queued("a", "run-1", now - 1_000),
            queued("b", "run-1", now - 2_000),
            queued("c", "run-2", now),
            // Reported queued two hours ago and never since: not waiting now.
            queued("lost", "run-0", now - 7_200_000),
            // Started: no longer waiting.
            JobReport {
                status: JobStatus::InProgress,
                started_at_ms: Some(now),
                ..queued("d", "run-2", now - 5_000)
            },
        ] {
            store.report_job(report).await.expect("report");
        }
        let page = crate::store::test_support::org_metrics(&store).await;
        let counts: Vec<(u32, u32)> = page
            .iter()
            .map(|w| (w.jobs_queued, w.runs_queued))
            .collect();
        assert_eq!(counts, [(3, 2)]);

        // Once they start, nothing waits.
        for key in ["a", "b", "c"] {
            let started = JobReport {
                status: JobStatus::InProgress,
                started_at_ms: Some(now),
                ..queued(key, "", now)
            };
            store.report_job(started).await.expect("report");
        }
        let page = crate::store::test_support::org_metrics(&store).await;
        assert_eq!((page[0].jobs_queued, page[0].runs_queued), (0, 0));
    }

    #[tokio::test]
    async fn runs_in_progress_are_counted_on_every_page_and_only_for_the_org() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::test_support::store(&dir).await;
        // Interleaved creation: the other organization's workflows fall inside
        // this one's id ranges.
        let mut expected = Vec::new();
        for (i, name) in ["a", "b", "c", "d", "e"].into_iter().enumerate() {
            let ours = store
                .find_or_create_workflow("org", "default", name)
                .await
                .expect("workflow");
            let theirs = store
                .find_or_create_workflow("other", "default", name)
                .await
                .expect("workflow");
            for _ in 0..i {
                store
                    .start_run(&ours, "UNSPECIFIED", "", None)
                    .await
                    .expect("start");
            }
            store
                .start_run(&theirs, "UNSPECIFIED", "", None)
                .await
                .expect("start");
            expected.push((ours.id.clone(), u32::try_from(i).expect("small")));
        }
        expected.sort();
        for limit in [1, 2, 5, 6] {
            let mut counted = Vec::new();
            let mut after: Option<String> = None;
            let mut calls = 0;
            loop {
                let page = store
                    .workflow_metrics("org", None, after.as_deref(), limit, false, false)
                    .await
                    .expect("page");
                calls += 1;
                let workflows = page.workflows.workflows().expect("decode");
                assert!(workflows.len() as u64 <= limit);
                counted.extend(
                    workflows
                        .iter()
                        .map(|w| (w.workflow_id.clone(), w.runs_in_progress)),
                );
                match page.more_after {
                    Some(last) => {
                        assert_eq!(Some(&last), workflows.last().map(|w| &w.workflow_id));
                        after = Some(last);
                    }
                    None => break,
                }
            }
            // A full last page says no page follows: no empty call after it.
            assert_eq!(calls, 5u64.div_ceil(limit), "pages of {limit}");
            assert_eq!(counted, expected, "pages of {limit}");
        }
    }
}
