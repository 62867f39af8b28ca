//! Moves each workflow's aggregates from `run_durations` (one row per outcome,
//! its histogram as comma-separated text) into the workflow's metrics record
//! (`store::record`), then drops `run_durations`.

use std::collections::HashMap;

use runplane_api::time::timestamp;
use runplane_api::workflowrun::v1::{DurationHistogram, RunStatus, RunnerType};
use sea_orm::{ConnectionTrait, DbBackend, QueryResult, Statement};
use sea_orm_migration::{prelude::*, schema::*};

use crate::store::record;

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
            let mut outcomes: HashMap<String, Vec<DurationHistogram>> = HashMap::new();
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
                let (workflow_id, outcome) = outcome(&row)?;
                outcomes.entry(workflow_id).or_default().push(outcome);
            }
            for row in &workflows {
                let id: String = row.try_get("", "id")?;
                let mut metrics = record::new(
                    &id,
                    &row.try_get::<String>("", "project")?,
                    &row.try_get::<String>("", "name")?,
                    row.try_get("", "created_at_ms")?,
                );
                metrics.last_run = record::last_run_from_columns(
                    row.try_get::<Option<String>>("", "last_run_status")?
                        .as_deref(),
                    row.try_get::<Option<String>>("", "last_run_runner")?
                        .as_deref(),
                    row.try_get("", "last_run_finished_at_ms")?,
                    row.try_get("", "last_run_duration_ms")?,
                );
                metrics.durations = outcomes.remove(&id).unwrap_or_default();
                record::sort_outcomes(&mut metrics.durations);
                db.execute_raw(Statement::from_sql_and_values(
                    backend,
                    placeholders(backend, "UPDATE workflows SET metrics = ? WHERE id = ?"),
                    [record::encode(&metrics).into(), id.into()],
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

/// One `run_durations` row as a histogram of its workflow's record.
fn outcome(row: &QueryResult) -> Result<(String, DurationHistogram), DbErr> {
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
    let histogram = DurationHistogram {
        status: RunStatus::from_label(&row.try_get::<String>("", "status")?).into(),
        runner_type: RunnerType::from_label(&row.try_get::<String>("", "runner")?).into(),
        count: unsigned("count")?,
        sum_seconds: row.try_get("", "sum_seconds")?,
        bucket_bounds: bounds,
        bucket_counts: counts,
        runs_total: unsigned("runs_total")?,
        last_finish_time: row
            .try_get::<Option<i64>>("", "last_finished_at_ms")?
            .map(timestamp),
    };
    Ok((workflow_id, histogram))
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
        let db = runplane_database::connect(&url, &args(), "main")
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
        let db = runplane_database::connect(&url, &args(), &schema)
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

    fn args() -> DatabaseArgs {
        DatabaseArgs {
            db_max_connections: 2,
            db_connect_timeout: Duration::from_secs(5),
            db_acquire_timeout: Duration::from_secs(5),
            database_schema: None,
        }
    }
}
