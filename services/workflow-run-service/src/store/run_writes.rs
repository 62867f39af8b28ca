//! The writes of ingestion, runs started, runs finished and jobs reported, as
//! statements: each finish claims its run, reads its workflow's record under a
//! lock, and rewrites the record with the run counted ([`crate::aggregate`]),
//! in one transaction with whatever else is written with it
//! ([`super::group_commit`]); a job report does the same with its job.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use runplane_api::workflowrun::v1::{RunStatus, RunnerType, WorkflowMetrics};
use sea_orm::sea_query::{Expr, LockType, OnConflict, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait as _, DbBackend, DbErr, EntityTrait, FromQueryResult, QueryFilter,
    QuerySelect, QueryTrait, Statement,
};

use super::jobs::{JobBatch, JobWrite, completed};
use super::revisions::Bumps;
use super::write_txn::WriteTxn;
use super::{Store, record};
use crate::aggregate;
use crate::entity::{job, run, workflow};
use crate::error::Error;

/// One write of ingestion.
#[derive(Clone)]
pub(super) enum Write {
    /// A new run, inserted only if its workflow still exists.
    Start(Box<run::Model>),
    Finish(Claim),
    /// A whole run, inserted finished and counted at once, only if its
    /// workflow still exists.
    Report(Box<Report>),
    /// A job report ([`super::jobs`]).
    Job(Box<JobWrite>),
}

/// What a write did.
pub(super) enum Written {
    /// The run, or `None` if its workflow was deleted meanwhile.
    Started(Option<run::Model>),
    /// The run as finished, or `None` if it was not in progress nor expired
    /// (or not the caller's): the caller finds out which.
    Finished(Option<Claimed>),
    /// The run as reported, or `None` if its workflow was deleted meanwhile
    /// or its request id is taken.
    Reported(Option<run::Model>),
    /// The job as the report left it.
    Job(Box<job::Model>),
}

/// A run reported whole: its row, already finished, and how it finished.
#[derive(Clone)]
pub(super) struct Report {
    pub(super) run: run::Model,
    pub(super) claim: Claim,
}

/// A run a finish claimed.
pub(super) struct Claimed {
    pub(super) run: run::Model,
    /// It had been marked expired, and its runner's outcome replaced that.
    pub(super) was_expired: bool,
}

/// A run to finish, as the request asked it.
#[derive(Clone)]
pub(super) struct Claim {
    pub(super) org_id: Option<String>,
    pub(super) run_id: String,
    pub(super) outcome: RunStatus,
    pub(super) reason: String,
    /// When the run finished: when the request arrived, or the time it gave.
    pub(super) now_ms: i64,
    /// `now_ms` is the reporter's: a run that started after it is not claimed
    /// (and the caller is told why) rather than given a finish before its start.
    pub(super) explicit_time: bool,
    /// The trace of the call that finishes it, if any.
    pub(super) trace_id: Option<String>,
}

impl Store {
    /// Carries out `writes` in one transaction, in two batches of
    /// statements: first the runs started, and the runs claimed with their
    /// workflows' records; then the records, counted in memory (so that two
    /// finishes of one batch in one workflow both count), and the commit.
    pub(super) async fn write_all(&self, writes: Vec<Write>) -> Result<Vec<Written>, Error> {
        let backend = self.db.get_database_backend();
        if let [Write::Start(run)] = writes.as_slice()
            && backend != DbBackend::Sqlite
        {
            // One statement: with a pool, a transaction around it would only
            // add a BEGIN and a COMMIT, two round trips.
            let statement = insert_run_of_existing_workflow(backend, run, Taken::Fail)?;
            let inserted = !self.db.query_all_raw(statement).await?.is_empty();
            return Ok(vec![Written::Started(
                inserted.then(|| run.as_ref().clone()),
            )]);
        }
        let mut txn = WriteTxn::begin(&self.db).await?;
        let mut first = Vec::with_capacity(writes.len() * 2);
        for write in &writes {
            match write {
                Write::Start(run) => {
                    first.push(insert_run_of_existing_workflow(backend, run, Taken::Fail)?);
                }
                Write::Finish(claim) => {
                    // The workflow's row, then the run's: the lock order of
                    // every write (see the store's module doc).
                    first.push(record_of_run(backend, &claim.run_id));
                    first.push(claim.statement(backend, RunStatus::Initialized));
                    // A runner's outcome after its run expired replaces the
                    // expiry; it is tried only if the first claim found nothing.
                    first.push(claim.statement(backend, RunStatus::Expired));
                }
                Write::Report(report) => {
                    // The same lock order: the workflow's row, then the run.
                    first.push(record_of_workflow(backend, &report.run.workflow_id));
                    // A request id already taken (a start came first, or a
                    // repeat) must not fail the batch: the caller goes on
                    // from the run that has it.
                    first.push(insert_run_of_existing_workflow(
                        backend,
                        &report.run,
                        Taken::Skip,
                    )?);
                }
                Write::Job(job) => first.extend(job.lookups(backend)),
            }
        }
        let mut rows = txn.query(first).await?.into_iter();
        let mut next = || {
            rows.next()
                .ok_or_else(|| DbErr::Custom("a batch result is missing".into()))
        };

        let mut written = Vec::with_capacity(writes.len());
        // The runs this batch claims that are not counted yet (see the flaky rule).
        let mut uncounted: std::collections::HashSet<String> = writes
            .iter()
            .filter_map(|w| match w {
                Write::Finish(claim) => Some(claim.run_id.clone()),
                Write::Report(report) => Some(report.run.id.clone()),
                _ => None,
            })
            .collect();
        // The records the batch's finishes count in, by workflow id.
        let mut records: BTreeMap<String, WorkflowMetrics> = BTreeMap::new();
        // The organizations whose aggregates the batch changes.
        let mut bumps = Bumps::default();
        let mut jobs = JobBatch::default();
        for write in &writes {
            match write {
                Write::Start(run) => {
                    let inserted = !next()?.is_empty();
                    written.push(Written::Started(inserted.then(|| run.as_ref().clone())));
                }
                Write::Finish(claim) => {
                    let (record_rows, in_progress, expired) = (next()?, next()?, next()?);
                    let (row, was_expired) = match (in_progress.first(), expired.first()) {
                        (Some(row), _) => (row, false),
                        (None, Some(row)) => (row, true),
                        (None, None) => {
                            written.push(Written::Finished(None));
                            continue;
                        }
                    };
                    let run = run::Model::from_query_result(row, "")?;
                    uncounted.remove(&run.id);
                    // No record: the workflow was deleted, and its aggregates with it.
                    if let Some(row) = record_rows.first() {
                        bumps.add(&run.org_id, &run.workflow_id);
                        let record = record_in_batch(&mut records, &run.workflow_id, row)?;
                        let counting = Counting {
                            run: &run,
                            claim,
                            was_expired,
                        };
                        self.count(&mut txn, record, counting, &uncounted).await?;
                    }
                    written.push(Written::Finished(Some(Claimed { run, was_expired })));
                }
                Write::Report(report) => {
                    let (record_rows, inserted) = (next()?, next()?);
                    let (Some(row), false) = (record_rows.first(), inserted.is_empty()) else {
                        written.push(Written::Reported(None));
                        continue;
                    };
                    let run = &report.run;
                    uncounted.remove(&run.id);
                    bumps.add(&run.org_id, &run.workflow_id);
                    let record = record_in_batch(&mut records, &run.workflow_id, row)?;
                    let counting = Counting {
                        run,
                        claim: &report.claim,
                        was_expired: false,
                    };
                    self.count(&mut txn, record, counting, &uncounted).await?;
                    written.push(Written::Reported(Some(run.clone())));
                }
                Write::Job(write) => {
                    let (record_rows, job_rows) = (next()?, next()?);
                    let (job, completed_now) = jobs.merge(write, job_rows.first())?;
                    // No record: the workflow was deleted meanwhile.
                    if let (true, Some(row)) = (completed_now, record_rows.first()) {
                        bumps.add(&job.org_id, &job.workflow_id);
                        let record = record_in_batch(&mut records, &job.workflow_id, row)?;
                        aggregate::count_job(
                            record,
                            completed(&job),
                            &self.buckets,
                            &self.queue_buckets,
                        );
                    }
                    written.push(Written::Job(Box::new(job)));
                }
            }
        }
        let mut updates: Vec<Statement> = records
            .iter_mut()
            .map(|(workflow_id, record)| record_update(backend, workflow_id, record))
            .collect();
        updates.extend(jobs.statements(backend));
        // Last: see `super::revisions`.
        updates.extend(bumps.statements(backend));
        txn.commit_after(updates).await?;
        Ok(written)
    }
    /// Counts a finished run in its workflow's record: its outcome and
    /// duration, its attempt and queue time, whether it makes its commit
    /// flaky. `uncounted` are the runs of the batch not counted yet.
    async fn count(
        &self,
        txn: &mut WriteTxn,
        record: &mut WorkflowMetrics,
        counting: Counting<'_>,
        uncounted: &std::collections::HashSet<String>,
    ) -> Result<(), Error> {
        let Counting {
            run,
            claim,
            was_expired,
        } = counting;
        let backend = self.db.get_database_backend();
        if !run.default_branch.is_empty() {
            record.default_branch.clone_from(&run.default_branch);
        }
        let branch = self
            .branch_label
            .label(record, &run.branch, &run.default_branch);
        let counted = finished(run, claim, &branch);
        if was_expired {
            // Its wait was counted when it expired.
            aggregate::replace_expiry(record, counted, &self.buckets);
        } else {
            aggregate::count(record, counted, &self.buckets);
            aggregate::count_attempt(record, run.attempt);
            if let Some(queued_at_ms) = run.queued_at_ms {
                let waited = run.started_at_ms - queued_at_ms;
                aggregate::count_queue(record, &counted, waited, &self.queue_buckets);
            }
        }
        // An outcome that replaced an expiry may make its commit
        // flaky too: the expiry itself never counted as a failure.
        let decisive = matches!(claim.outcome, RunStatus::Success | RunStatus::Error);
        if decisive && !run.commit_sha.is_empty() {
            let rows = txn.query(vec![commit_outcomes(backend, run)]).await?;
            let mut others = Vec::new();
            for row in rows.into_iter().flatten() {
                let id: String = row.try_get("", "id")?;
                // Finishes of this batch not counted yet
                // count after this one, as if they came later.
                if uncounted.contains(&id) {
                    continue;
                }
                let status: String = row.try_get("", "status")?;
                let at: Option<i64> = row.try_get("", "finished_at_ms")?;
                others.push((RunStatus::from_label(&status), at.unwrap_or(0)));
            }
            let this = (claim.outcome, counted.finished_at_ms);
            if aggregate::makes_flaky(this, &others) {
                record.flaky_runs += 1;
            }
        }
        Ok(())
    }
}

/// A finished run to count, and how it finished.
struct Counting<'a> {
    run: &'a run::Model,
    claim: &'a Claim,
    /// It had been counted as expired: its outcome replaces that.
    was_expired: bool,
}

impl Claim {
    fn status(&self) -> &'static str {
        self.outcome.label()
    }

    /// Claims the run in one statement: only an in-progress run of the
    /// caller's organization changes, and the run is returned if it did. In a
    /// transaction that starts with it, this takes the write lock (or the row
    /// lock) first, so concurrent finishes queue rather than deadlock, and a
    /// retry sees the first one's outcome.
    ///
    /// `from` is the state the run must be in: in progress, or, for a
    /// runner's outcome (never the sweeper's), expired.
    fn statement(&self, backend: DbBackend, from: RunStatus) -> Statement {
        let from = match (from, &self.org_id, self.outcome) {
            (RunStatus::Expired, Some(_), outcome) if outcome != RunStatus::Expired => from,
            // Nothing else may claim an expired run: a statement that matches no row.
            (RunStatus::Expired, _, _) => RunStatus::Unspecified,
            (from, _, _) => from,
        };
        let mut claim = run::Entity::update_many()
            .col_expr(run::Column::Status, Expr::value(self.status()))
            .col_expr(run::Column::Reason, Expr::value(&self.reason))
            .col_expr(
                run::Column::FinishedAtMs,
                finished_at_no_earlier_than_start(self.now_ms),
            )
            .filter(run::Column::Id.eq(&self.run_id))
            .filter(run::Column::Status.eq(from.label()));
        if self.explicit_time {
            claim = claim.filter(run::Column::StartedAtMs.lte(self.now_ms));
        }
        if let Some(org_id) = &self.org_id {
            claim = claim.filter(run::Column::OrgId.eq(org_id));
        }
        backend.build(claim.into_query().returning_all())
    }
}

/// A claimed run, as its workflow's record counts it under branch label
/// `branch`: its exemplars name the trace it started in, else the finish's.
fn finished<'a>(run: &'a run::Model, claim: &'a Claim, branch: &'a str) -> aggregate::Finished<'a> {
    let finished_at_ms = run.finished_at_ms.unwrap_or(claim.now_ms);
    let trace_id = match (run.trace_id.as_str(), &claim.trace_id) {
        ("", Some(finish)) => finish.as_str(),
        (start, _) => start,
    };
    aggregate::Finished {
        status: claim.outcome,
        runner: RunnerType::from_label(&run.runner),
        finished_at_ms,
        duration_ms: (claim.outcome != RunStatus::Expired)
            .then(|| finished_at_ms - run.started_at_ms),
        branch,
        run_id: &run.id,
        trace_id,
    }
}

/// `INSERT INTO runs … SELECT … FROM workflows WHERE id = … FOR KEY SHARE
/// RETURNING id`: one statement that holds the workflow's row (on
/// PostgreSQL) while the run is added, so a run never outlives a workflow
/// deleted a moment before, and takes its locks in the order every write
/// does; a row comes back if the run was written. On [`Taken::Skip`], a run
/// whose request id the workflow has already is not written either (no row
/// comes back, and no error breaks the transaction); on [`Taken::Fail`] it
/// is a unique violation.
fn insert_run_of_existing_workflow(
    backend: DbBackend,
    run: &run::Model,
    taken: Taken,
) -> Result<Statement, Error> {
    let values = Query::select()
        .exprs([
            Expr::val(&run.id),
            Expr::val(&run.org_id),
            Expr::val(&run.workflow_id),
            Expr::val(&run.runner),
            Expr::val(&run.run_url),
            Expr::val(&run.status),
            Expr::val(&run.reason),
            Expr::val(run.started_at_ms),
            Expr::val(run.finished_at_ms),
            Expr::val(run.request_id.clone()),
            Expr::val(run.expires_at_ms),
            Expr::val(run.queued_at_ms),
            Expr::val(run.attempt),
            Expr::val(&run.branch),
            Expr::val(&run.commit_sha),
            Expr::val(&run.trigger),
            Expr::val(&run.default_branch),
            Expr::val(&run.trace_id),
        ])
        .from(workflow::Entity)
        .and_where(workflow::Column::Id.eq(&run.workflow_id))
        .lock(LockType::KeyShare)
        .to_owned();
    let mut insert = Query::insert()
        .into_table(run::Entity)
        .columns([
            run::Column::Id,
            run::Column::OrgId,
            run::Column::WorkflowId,
            run::Column::Runner,
            run::Column::RunUrl,
            run::Column::Status,
            run::Column::Reason,
            run::Column::StartedAtMs,
            run::Column::FinishedAtMs,
            run::Column::RequestId,
            run::Column::ExpiresAtMs,
            run::Column::QueuedAtMs,
            run::Column::Attempt,
            run::Column::Branch,
            run::Column::CommitSha,
            run::Column::Trigger,
            run::Column::DefaultBranch,
            run::Column::TraceId,
        ])
        .select_from(values)
        .map_err(|e| DbErr::Custom(e.to_string()))?
        .returning_col(run::Column::Id)
        .to_owned();
    if let Taken::Skip = taken {
        // No target: the one unique index a new run can meet is its request id's.
        insert.on_conflict(OnConflict::new().do_nothing().to_owned());
    }
    Ok(backend.build(&insert))
}

/// What an insert does with a request id its workflow has already.
#[derive(Debug, Clone, Copy)]
enum Taken {
    Fail,
    Skip,
}

/// How the other runs of `run`'s workflow and commit ended (errors and
/// successes, when), for telling whether it makes the commit flaky.
fn commit_outcomes(backend: DbBackend, run: &run::Model) -> Statement {
    run::Entity::find()
        .select_only()
        .column(run::Column::Id)
        .column(run::Column::Status)
        .column(run::Column::FinishedAtMs)
        .filter(run::Column::WorkflowId.eq(&run.workflow_id))
        .filter(run::Column::CommitSha.eq(&run.commit_sha))
        .filter(run::Column::Id.ne(&run.id))
        .filter(run::Column::Status.is_in([RunStatus::Error.label(), RunStatus::Success.label()]))
        .build(backend)
}

/// The record of workflow `workflow_id` as this batch left it, else as stored
/// in `row` (read under the transaction's lock).
fn record_in_batch<'a>(
    records: &'a mut BTreeMap<String, WorkflowMetrics>,
    workflow_id: &str,
    row: &sea_orm::QueryResult,
) -> Result<&'a mut WorkflowMetrics, Error> {
    Ok(match records.entry(workflow_id.to_owned()) {
        // A batch's earlier write may have counted in it already.
        Entry::Occupied(entry) => entry.into_mut(),
        Entry::Vacant(entry) => {
            let metrics: Vec<u8> = row.try_get("", "metrics")?;
            let exemplars: Vec<u8> = row.try_get("", "exemplars")?;
            entry.insert(record::decode_with_exemplars(&metrics, &exemplars)?)
        }
    })
}

/// The metrics record of workflow `workflow_id`, locked; no row if there is
/// no such workflow.
pub(super) fn record_of_workflow(backend: DbBackend, workflow_id: &str) -> Statement {
    workflow::Entity::find()
        .select_only()
        .column(workflow::Column::Metrics)
        .column(workflow::Column::Exemplars)
        .filter(workflow::Column::Id.eq(workflow_id))
        .lock_exclusive()
        .build(backend)
}

/// The metrics record of run `run_id`'s workflow, locked; no row if the
/// workflow is gone.
fn record_of_run(backend: DbBackend, run_id: &str) -> Statement {
    let workflow_of_run = Query::select()
        .column(run::Column::WorkflowId)
        .from(run::Entity)
        .and_where(run::Column::Id.eq(run_id))
        .to_owned();
    workflow::Entity::find()
        .select_only()
        .column(workflow::Column::Metrics)
        .column(workflow::Column::Exemplars)
        .filter(workflow::Column::Id.in_subquery(workflow_of_run))
        .lock_exclusive()
        .build(backend)
}

/// Writes a workflow's record (and its exemplars), read and counted under
/// the transaction's lock, and its last run's columns.
pub(super) fn record_update(
    backend: DbBackend,
    workflow_id: &str,
    record: &mut WorkflowMetrics,
) -> Statement {
    let (status, runner, finished_at_ms, duration_ms) = record::last_run_columns(record);
    let (metrics, exemplars) = record::encode_split(record);
    workflow::Entity::update_many()
        .col_expr(workflow::Column::LastRunStatus, Expr::value(status))
        .col_expr(workflow::Column::LastRunRunner, Expr::value(runner))
        .col_expr(
            workflow::Column::LastRunFinishedAtMs,
            Expr::value(finished_at_ms),
        )
        .col_expr(
            workflow::Column::LastRunDurationMs,
            Expr::value(duration_ms),
        )
        .col_expr(workflow::Column::Metrics, Expr::value(metrics))
        .col_expr(workflow::Column::Exemplars, Expr::value(exemplars))
        .filter(workflow::Column::Id.eq(workflow_id))
        .build(backend)
}

/// `CASE WHEN started_at_ms > now THEN started_at_ms ELSE now END`: a run never
/// finishes before it started, even across replicas whose clocks disagree.
fn finished_at_no_earlier_than_start(now: i64) -> Expr {
    Expr::case(
        run::Column::StartedAtMs.gt(now),
        Expr::col(run::Column::StartedAtMs),
    )
    .finally(now)
    .into()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::store::test_support::store_with_workflow;

    pub(in crate::store) fn finish(run: &run::Model) -> Write {
        Write::Finish(Claim {
            org_id: Some(run.org_id.clone()),
            run_id: run.id.clone(),
            outcome: RunStatus::Success,
            reason: String::new(),
            now_ms: runplane_api::time::now_ms(),
            explicit_time: false,
            trace_id: None,
        })
    }

    pub(in crate::store) fn new_run(workflow_id: &str, request_id: Option<&str>) -> run::Model {
        run::Model {
            id: uuid::Uuid::now_v7().to_string(),
            org_id: "org".into(),
            workflow_id: workflow_id.into(),
            runner: "GITHUB_ACTION".into(),
            run_url: String::new(),
            status: RunStatus::Initialized.label().into(),
            reason: String::new(),
            started_at_ms: runplane_api::time::now_ms(),
            finished_at_ms: None,
            request_id: request_id.map(str::to_owned),
            expires_at_ms: None,
            queued_at_ms: None,
            attempt: 0,
            branch: String::new(),
            commit_sha: String::new(),
            trigger: String::new(),
            default_branch: String::new(),
            trace_id: String::new(),
        }
    }

    /// (count, runs_total, bucket_counts) of the workflow's one outcome.
    pub(in crate::store) async fn aggregate(store: &Store) -> (u64, u64, Vec<u64>) {
        let page = crate::store::test_support::org_metrics(store).await;
        let outcome = &page[0].durations[0];
        (
            outcome.count,
            outcome.runs_total,
            outcome.bucket_counts.clone(),
        )
    }

    #[tokio::test]
    async fn one_batch_counts_each_finish_once_in_a_shared_aggregate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, wf) = store_with_workflow(&dir, "build").await;
        let mut runs = Vec::new();
        for _ in 0..3 {
            runs.push(
                store
                    .start_run(&wf, "GITHUB_ACTION", "", None)
                    .await
                    .expect("start"),
            );
        }
        // Three finishes into one new aggregate, one of them sent twice, a
        // start, and a start of a workflow that does not exist: one transaction.
        let written = store
            .write_all(vec![
                finish(&runs[0]),
                finish(&runs[1]),
                finish(&runs[0]),
                Write::Start(Box::new(new_run(&wf.id, None))),
                Write::Start(Box::new(new_run("no-such-workflow", None))),
                finish(&runs[2]),
            ])
            .await
            .expect("batch");
        let shape: Vec<&str> = written
            .iter()
            .map(|w| match w {
                Written::Finished(Some(_)) => "finished",
                Written::Finished(None) => "not claimed",
                Written::Started(Some(_)) => "started",
                Written::Started(None) => "workflow gone",
                Written::Reported(Some(_)) => "reported",
                Written::Reported(None) => "report's workflow gone",
                Written::Job(_) => "job",
            })
            .collect();
        assert_eq!(
            shape,
            [
                "finished",
                "finished",
                "not claimed",
                "started",
                "workflow gone",
                "finished"
            ]
        );
        // Every duration is under the first bound (10 s).
        assert_eq!(aggregate(&store).await, (3, 3, vec![3, 3]));

        // A later batch counts on from what the first wrote.
        let more = store
            .start_run(&wf, "GITHUB_ACTION", "", None)
            .await
            .expect("start");
        store.write_all(vec![finish(&more)]).await.expect("finish");
        assert_eq!(aggregate(&store).await, (4, 4, vec![4, 4]));
    }

    #[tokio::test]
    async fn a_report_whose_request_id_is_taken_writes_nothing_and_fails_no_batch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, wf) = store_with_workflow(&dir, "build").await;
        let started = store
            .start_run(&wf, "GITHUB_ACTION", "", Some("github:1:1"))
            .await
            .expect("start");
        let other = store
            .start_run(&wf, "GITHUB_ACTION", "", None)
            .await
            .expect("start");
        let mut run = new_run(&wf.id, Some("github:1:1"));
        run.status = RunStatus::Success.label().into();
        run.finished_at_ms = Some(run.started_at_ms);
        let claim = Claim {
            run_id: run.id.clone(),
            ..match finish(&run) {
                Write::Finish(claim) => claim,
                _ => unreachable!("a finish"),
            }
        };
        let written = store
            .write_all(vec![
                Write::Report(Box::new(Report { run, claim })),
                finish(&other),
            ])
            .await
            .expect("one transaction, not failed by the taken request id");
        assert!(matches!(
            written.as_slice(),
            [Written::Reported(None), Written::Finished(Some(_))]
        ));
        // Only the other run counted; the started one is still in progress.
        assert_eq!(aggregate(&store).await, (1, 1, vec![1, 1]));
        assert_eq!(
            store.get_run("org", &started.id).await.expect("run").status,
            "initialized"
        );
    }
}
