use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum RunDurations {
    Table,
    RunsTotal,
    LastFinishedAtMs,
}

#[derive(DeriveIden)]
enum Workflows {
    Table,
    LastRunDurationMs,
}

/// Backfills the new columns from the runs still kept (retention may have
/// deleted older ones: their outcomes are counted from the histograms).
const BACKFILL: &[&str] = &[
    "UPDATE run_durations SET runs_total = count",
    "UPDATE run_durations SET last_finished_at_ms = (SELECT MAX(r.finished_at_ms) FROM runs r \
     WHERE r.workflow_id = run_durations.workflow_id AND r.status = run_durations.status \
     AND r.runner = run_durations.runner)",
    // Expired runs never had a histogram row: they get one with an empty histogram.
    "INSERT INTO run_durations (workflow_id, status, runner, count, sum_seconds, bucket_bounds, \
     bucket_counts, runs_total, last_finished_at_ms) \
     SELECT workflow_id, status, runner, 0, 0.0, '', '', COUNT(*), MAX(finished_at_ms) \
     FROM runs WHERE status = 'expired' GROUP BY workflow_id, status, runner",
    "UPDATE workflows SET last_run_duration_ms = (SELECT MAX(r.finished_at_ms - r.started_at_ms) \
     FROM runs r WHERE r.workflow_id = workflows.id \
     AND r.finished_at_ms = workflows.last_run_finished_at_ms AND r.status <> 'expired')",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Per (workflow, status, runner): every finished run counted (expired
        // ones too, which the histogram leaves out) and when the last finished.
        // One ALTER per column: SQLite adds only one at a time.
        manager
            .alter_table(
                Table::alter()
                    .table(RunDurations::Table)
                    .add_column(big_integer(RunDurations::RunsTotal).default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(RunDurations::Table)
                    .add_column(big_integer_null(RunDurations::LastFinishedAtMs))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Workflows::Table)
                    .add_column(big_integer_null(Workflows::LastRunDurationMs))
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        for statement in BACKFILL {
            db.execute_unprepared(statement).await?;
        }
        Ok(())
    }
}
