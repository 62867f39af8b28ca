//! Moves each workflow's aggregates from `run_durations` (one row per outcome,
//! its histogram as comma-separated text) into the workflow's metrics record,
//! then drops `run_durations`.
//!
//! Frozen: what it writes is the record as it was defined when it was written
//! ([`at_the_time`]), whatever the live code (`store::record`, the API crate)
//! becomes; it depends on no code of the service's.

use std::collections::HashMap;

use prost::Message as _;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend, QueryResult, Statement};
use sea_orm_migration::{prelude::*, schema::*};

use at_the_time::{DurationHistogram, Record, WorkflowMetrics};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Workflows {
    Table,
    Metrics,
}

/// Workflows converted per round of statements.
const WORKFLOWS_PER_ROUND: u64 = 500;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        let empty = match backend {
            DbBackend::Postgres => "''::bytea",
            _ => "x''",
        };
        manager
            .alter_table(
                Table::alter()
                    .table(Workflows::Table)
                    .add_column(blob(Workflows::Metrics).default(Expr::cust(empty)))
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        let mut after = String::new();
        loop {
            let workflows = db
                .query_all_raw(Statement::from_sql_and_values(
                    backend,
                    placeholders(
                        backend,
                        "SELECT id, project, name, created_at_ms, last_run_status, \
                         last_run_runner, last_run_finished_at_ms, last_run_duration_ms \
                         FROM workflows WHERE id > ? ORDER BY id LIMIT ?",
                    ),
                    [after.clone().into(), WORKFLOWS_PER_ROUND.into()],
                ))
                .await?;
            let (Some(first), Some(last)) = (workflows.first(), workflows.last()) else {
                break;
            };
            let first: String = first.try_get("", "id")?;
            after = last.try_get("", "id")?;
            // The round's workflows are those between its first and last id
            // (with other organizations' workflows in between).
            let mut outcomes: HashMap<String, Vec<(OutcomeKey, DurationHistogram)>> =
                HashMap::new();
            for row in db
                .query_all_raw(Statement::from_sql_and_values(
                    backend,
                    placeholders(
                        backend,
                        "SELECT workflow_id, status, runner, count, sum_seconds, bucket_bounds, \
                         bucket_counts, runs_total, last_finished_at_ms FROM run_durations \
                         WHERE workflow_id >= ? AND workflow_id <= ?",
                    ),
                    [first.into(), after.clone().into()],
                ))
                .await?
            {
                let (workflow_id, key, outcome) = outcome(&row)?;
                outcomes
                    .entry(workflow_id)
                    .or_default()
                    .push((key, outcome));
            }
            for row in &workflows {
                let id: String = row.try_get("", "id")?;
                let last_run = at_the_time::last_run(
                    row.try_get::<Option<String>>("", "last_run_status")?
                        .as_deref(),
                    row.try_get::<Option<String>>("", "last_run_runner")?
                        .as_deref(),
                    row.try_get("", "last_run_finished_at_ms")?,
                    row.try_get("", "last_run_duration_ms")?,
                );
                // In (status, runner) label order, as the scrape lists them.
                let mut durations = outcomes.remove(&id).unwrap_or_default();
                durations.sort_by(|(a, _), (b, _)| a.cmp(b));
                let metrics = WorkflowMetrics {
                    project: row.try_get("", "project")?,
                    workflow: row.try_get("", "name")?,
                    last_run,
                    durations: durations.into_iter().map(|(_, h)| h).collect(),
                    create_time: Some(at_the_time::timestamp(row.try_get("", "created_at_ms")?)),
                    workflow_id: id.clone(),
                };
                let record = Record {
                    workflows: vec![metrics],
                }
                .encode_to_vec();
                db.execute_raw(Statement::from_sql_and_values(
                    backend,
                    placeholders(backend, "UPDATE workflows SET metrics = ? WHERE id = ?"),
                    [record.into(), id.into()],
                ))
                .await?;
            }
        }
        db.execute_unprepared("DROP TABLE run_durations").await?;
        Ok(())
    }
}

/// `sql` with PostgreSQL's numbered placeholders where it needs them.
fn placeholders(backend: DbBackend, sql: &str) -> String {
    if backend != DbBackend::Postgres {
        return sql.to_owned();
    }
    let mut numbered = String::with_capacity(sql.len() + 8);
    for (i, part) in sql.split('?').enumerate() {
        if i > 0 {
            numbered.push_str(&format!("${i}"));
        }
        numbered.push_str(part);
    }
    numbered
}

/// An outcome's (status, runner) labels.
type OutcomeKey = (String, String);

/// One `run_durations` row as a histogram of its workflow's record.
fn outcome(row: &QueryResult) -> Result<(String, OutcomeKey, DurationHistogram), DbErr> {
    let workflow_id: String = row.try_get("", "workflow_id")?;
    let corrupt = |what: &str| {
        DbErr::Custom(format!(
            "run_durations of workflow {workflow_id}: corrupt {what}"
        ))
    };
    let bounds: Vec<f64> =
        comma_separated(row, "bucket_bounds")?.ok_or_else(|| corrupt("bucket bounds"))?;
    let counts: Vec<u64> =
        comma_separated(row, "bucket_counts")?.ok_or_else(|| corrupt("bucket counts"))?;
    if bounds.len() != counts.len() {
        return Err(corrupt("histogram (as many counts as bounds)"));
    }
    let unsigned = |column: &str| -> Result<u64, DbErr> {
        Ok(<u64 as TryFrom<i64>>::try_from(row.try_get("", column)?).unwrap_or(0))
    };
    let status: String = row.try_get("", "status")?;
    let runner: String = row.try_get("", "runner")?;
    let histogram = DurationHistogram {
        status: at_the_time::status(&status),
        runner_type: at_the_time::runner(&runner),
        count: unsigned("count")?,
        sum_seconds: row.try_get("", "sum_seconds")?,
        bucket_bounds: bounds,
        bucket_counts: counts,
        runs_total: unsigned("runs_total")?,
        last_finish_time: row
            .try_get::<Option<i64>>("", "last_finished_at_ms")?
            .map(at_the_time::timestamp),
    };
    Ok((workflow_id, (status, runner), histogram))
}

/// A comma-separated list column, `None` if an item does not parse.
fn comma_separated<T: std::str::FromStr>(
    row: &QueryResult,
    column: &str,
) -> Result<Option<Vec<T>>, DbErr> {
    let text: String = row.try_get("", column)?;
    Ok(text
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|item| item.parse().ok())
        .collect())
}

/// `runplane.workflowrun.v1` as this migration wrote it: a record is a
/// `ListWorkflowMetricsResponse` holding one `WorkflowMetrics`. Field numbers
/// and types are those of `proto/` at the time; enums are their numbers.
mod at_the_time {
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Record {
        #[prost(message, repeated, tag = "1")]
        pub(super) workflows: Vec<WorkflowMetrics>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct WorkflowMetrics {
        #[prost(string, tag = "1")]
        pub(super) workflow_id: String,
        #[prost(string, tag = "2")]
        pub(super) project: String,
        #[prost(string, tag = "3")]
        pub(super) workflow: String,
        #[prost(message, optional, tag = "4")]
        pub(super) last_run: Option<LastRun>,
        #[prost(message, repeated, tag = "5")]
        pub(super) durations: Vec<DurationHistogram>,
        // 6, runs_in_progress, is never stored.
        #[prost(message, optional, tag = "7")]
        pub(super) create_time: Option<Timestamp>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct LastRun {
        #[prost(int32, tag = "1")]
        pub(super) status: i32,
        #[prost(int32, tag = "2")]
        pub(super) runner_type: i32,
        #[prost(message, optional, tag = "3")]
        pub(super) finish_time: Option<Timestamp>,
        #[prost(double, optional, tag = "4")]
        pub(super) duration_seconds: Option<f64>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct DurationHistogram {
        #[prost(int32, tag = "1")]
        pub(super) status: i32,
        #[prost(int32, tag = "2")]
        pub(super) runner_type: i32,
        #[prost(uint64, tag = "3")]
        pub(super) count: u64,
        #[prost(double, tag = "4")]
        pub(super) sum_seconds: f64,
        #[prost(double, repeated, tag = "5")]
        pub(super) bucket_bounds: Vec<f64>,
        #[prost(uint64, repeated, tag = "6")]
        pub(super) bucket_counts: Vec<u64>,
        #[prost(uint64, tag = "7")]
        pub(super) runs_total: u64,
        #[prost(message, optional, tag = "8")]
        pub(super) last_finish_time: Option<Timestamp>,
    }

    /// `google.protobuf.Timestamp`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Timestamp {
        #[prost(int64, tag = "1")]
        pub(super) seconds: i64,
        #[prost(int32, tag = "2")]
        pub(super) nanos: i32,
    }

    /// Milliseconds since the epoch as a timestamp.
    pub(super) fn timestamp(ms: i64) -> Timestamp {
        Timestamp {
            seconds: ms.div_euclid(1000),
            nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
        }
    }

    /// `RunStatus`'s number for a stored status label (0, UNSPECIFIED, if unknown).
    pub(super) fn status(label: &str) -> i32 {
        [
            "unspecified",
            "initialized",
            "success",
            "error",
            "expired",
            "canceled",
        ]
        .iter()
        .position(|l| *l == label)
        .and_then(|n| i32::try_from(n).ok())
        .unwrap_or(0)
    }

    /// `RunnerType`'s number for a stored runner label (0, UNSPECIFIED, if unknown).
    pub(super) fn runner(label: &str) -> i32 {
        [
            "UNSPECIFIED",
            "GITHUB_ACTION",
            "GITLAB_PIPELINE",
            "AZURE_PIPELINE",
            "JENKINS_JOB",
            "CIRCLECI_BUILD",
            "DAGGER_PIPELINE",
            "TEAMCITY_PIPELINE",
            "TEKTON_PIPELINE",
        ]
        .iter()
        .position(|l| *l == label)
        .and_then(|n| i32::try_from(n).ok())
        .unwrap_or(0)
    }

    /// A workflow's last run, from its row's columns.
    pub(super) fn last_run(
        status: Option<&str>,
        runner: Option<&str>,
        finished_at_ms: Option<i64>,
        duration_ms: Option<i64>,
    ) -> Option<LastRun> {
        let (status, finished_at_ms) = (status?, finished_at_ms?);
        Some(LastRun {
            status: self::status(status),
            runner_type: runner.map(self::runner).unwrap_or(0),
            finish_time: Some(timestamp(finished_at_ms)),
            duration_seconds: duration_ms.map(|ms| ms as f64 / 1000.0),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use runplane_api::time::timestamp;
    use runplane_api::workflowrun::v1::{RunStatus, RunnerType};
    use runplane_database::DatabaseArgs;
    use sea_orm::DatabaseConnection;

    use super::*;
    use crate::migration::Migrator;
    use crate::store::Store;
    use crate::store::test_support::finished_run;

    /// The schema before this migration, with two workflows of `org` (one with
    /// a success histogram and an expired run, one with nothing finished) and
    /// one of another organization whose id falls between theirs.
    const BEFORE: &[&str] = &[
        "INSERT INTO workflows (id, org_id, project, name, created_at_ms, last_run_status, \
         last_run_runner, last_run_finished_at_ms, last_run_duration_ms) VALUES \
         ('w1', 'org', 'default', 'build', 1000, 'expired', 'GITHUB_ACTION', 9000, 20500), \
         ('w2', 'other', 'default', 'build', 1000, NULL, NULL, NULL, NULL), \
         ('w3', 'org', 'p', 'deploy', 2000, NULL, NULL, NULL, NULL)",
        "INSERT INTO run_durations (workflow_id, status, runner, count, sum_seconds, \
         bucket_bounds, bucket_counts, runs_total, last_finished_at_ms) VALUES \
         ('w1', 'success', 'GITHUB_ACTION', 2, 35.5, '10,60', '1,2', 2, 8000), \
         ('w1', 'expired', 'GITHUB_ACTION', 0, 0.0, '', '', 1, 9000), \
         ('w2', 'error', 'GITHUB_ACTION', 1, 1.0, '10,60', '1,1', 1, 5000)",
    ];

    async fn upgrade_keeps_every_aggregate(db: DatabaseConnection) {
        Migrator::up(&db, Some(4)).await.expect("migrations 1-4");
        for statement in BEFORE {
            db.execute_unprepared(statement).await.expect("old rows");
        }
        Migrator::up(&db, None).await.expect("migration 5");
        assert!(
            db.execute_unprepared("SELECT 1 FROM run_durations")
                .await
                .is_err(),
            "run_durations is dropped"
        );

        let store = Store::new(db, vec![10.0, 60.0]);
        let page = crate::store::test_support::org_metrics(&store).await;
        assert_eq!(
            page.iter()
                .map(|w| w.workflow_id.as_str())
                .collect::<Vec<_>>(),
            ["w1", "w3"]
        );
        let w1 = &page[0];
        assert_eq!(
            (w1.project.as_str(), w1.workflow.as_str()),
            ("default", "build")
        );
        assert_eq!(w1.create_time, Some(timestamp(1000)));
        let last = w1.last_run.as_ref().expect("last run");
        assert_eq!(
            (last.status(), last.runner_type(), last.duration_seconds),
            (RunStatus::Expired, RunnerType::GithubAction, Some(20.5))
        );
        assert_eq!(last.finish_time, Some(timestamp(9000)));
        let outcomes: Vec<_> = w1
            .durations
            .iter()
            .map(|d| {
                (
                    d.status(),
                    d.count,
                    d.sum_seconds,
                    d.bucket_bounds.clone(),
                    d.bucket_counts.clone(),
                    d.runs_total,
                    d.last_finish_time,
                )
            })
            .collect();
        assert_eq!(
            outcomes,
            [
                (
                    RunStatus::Expired,
                    0,
                    0.0,
                    vec![],
                    vec![],
                    1,
                    Some(timestamp(9000))
                ),
                (
                    RunStatus::Success,
                    2,
                    35.5,
                    vec![10.0, 60.0],
                    vec![1, 2],
                    2,
                    Some(timestamp(8000))
                ),
            ]
        );
        let w3 = &page[1];
        assert!(w3.last_run.is_none() && w3.durations.is_empty());

        // The records count on from there.
        let workflow = store
            .find_or_create_workflow("org", "default", "build")
            .await
            .expect("workflow");
        finished_run(&store, &workflow, "GITHUB_ACTION", RunStatus::Success).await;
        let page = crate::store::test_support::org_metrics(&store).await;
        let success = &page[0].durations[1];
        assert_eq!((success.count, success.runs_total), (3, 3));
        assert_eq!(success.bucket_counts, [2, 3]);
    }

    #[tokio::test]
    async fn upgrade_keeps_every_aggregate_on_sqlite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("old.db").display());
        let db = runplane_database::connect(&args(url), "main")
            .await
            .expect("open");
        upgrade_keeps_every_aggregate(db).await;
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL: set RUNPLANE_TEST_POSTGRES (scripts/test does)"]
    async fn upgrade_keeps_every_aggregate_on_postgres() {
        let server = std::env::var("RUNPLANE_TEST_POSTGRES").expect("RUNPLANE_TEST_POSTGRES");
        let url = format!("{server}/postgres");
        let schema = format!("migration_test_{}", uuid::Uuid::now_v7().simple());
        let db = runplane_database::connect(&args(url), &schema)
            .await
            .expect("connect");
        db.execute_unprepared(&format!("CREATE SCHEMA {schema}"))
            .await
            .expect("schema");
        upgrade_keeps_every_aggregate(db.clone()).await;
        db.execute_unprepared(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .expect("drop schema");
    }

    fn args(database_url: String) -> DatabaseArgs {
        DatabaseArgs {
            database_url,
            db_max_connections: 2,
            db_connect_timeout: Duration::from_secs(5),
            db_acquire_timeout: Duration::from_secs(5),
            database_schema: None,
        }
    }
}
