//! The writes of ingestion, runs started and runs finished, and the group
//! commit that carries them on SQLite.
//!
//! SQLite has one writer, so concurrent requests queue for it anyway. Rather
//! than one transaction each, one writer task takes every write queued while
//! it was busy and commits them together: a batch costs about what a single
//! write costs (a few round trips to SQLite's worker thread and one commit),
//! so throughput grows with the queue instead of being capped by the round
//! trips of each write. Nothing waits for a batch to fill: a write that finds
//! the writer idle goes at once. PostgreSQL has a pool of connections and
//! row locks; there each write is its own transaction.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::sync::{Arc, OnceLock};

use runplane_api::workflowrun::v1::{RunStatus, RunnerType, WorkflowMetrics};
use sea_orm::sea_query::{Expr, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait as _, DbBackend, DbErr, EntityTrait, FromQueryResult, QueryFilter,
    QuerySelect, QueryTrait, Statement,
};
use tokio::sync::{mpsc, oneshot};

use super::batch::WriteTxn;
use super::{Store, record};
use crate::entity::{run, workflow};
use crate::error::Error;

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 256;

/// One write of ingestion.
#[derive(Clone)]
pub(super) enum Write {
    /// A new run, inserted only if its workflow still exists.
    Start(run::Model),
    Finish(Claim),
}

/// What a write did.
pub(super) enum Written {
    /// The run, or `None` if its workflow was deleted meanwhile.
    Started(Option<run::Model>),
    /// The run as finished, or `None` if it was not in progress (or not the
    /// caller's): the caller finds out which.
    Finished(Option<run::Model>),
}

/// A run to finish, as the request asked it.
#[derive(Clone)]
pub(super) struct Claim {
    pub(super) org_id: Option<String>,
    pub(super) run_id: String,
    pub(super) outcome: RunStatus,
    pub(super) reason: String,
    /// When the request arrived.
    pub(super) now_ms: i64,
}

/// How a store writes: itself, or through the group commit's writer task.
#[derive(Clone)]
pub(super) enum WritePath {
    Direct,
    /// Started on the first write (it needs the runtime the store is used on).
    Grouped(Arc<OnceLock<GroupCommit>>),
}

impl WritePath {
    pub(super) fn for_backend(backend: DbBackend) -> Self {
        match backend {
            DbBackend::Sqlite => WritePath::Grouped(Arc::default()),
            _ => WritePath::Direct,
        }
    }
}

/// The queue to the writer task. The task ends when the last store that
/// writes through it is dropped. The queue needs no bound of its own: each
/// entry is a request in flight, and the server's admission limit bounds those.
pub(super) struct GroupCommit {
    queue: mpsc::UnboundedSender<Job>,
}

struct Job {
    write: Write,
    done: oneshot::Sender<Result<Written, Error>>,
}

impl GroupCommit {
    fn start(store: Store) -> Self {
        let (queue, mut jobs) = mpsc::unbounded_channel::<Job>();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
                store.commit_batch(std::mem::take(&mut batch)).await;
            }
        });
        GroupCommit { queue }
    }
}

impl Store {
    /// Carries out one write, together with whatever else is queued on SQLite.
    pub(super) async fn write(&self, write: Write) -> Result<Written, Error> {
        let WritePath::Grouped(group) = &self.writes else {
            return self.write_one(write).await;
        };
        let group = group.get_or_init(|| {
            GroupCommit::start(Store {
                writes: WritePath::Direct,
                ..self.clone()
            })
        });
        let (done, written) = oneshot::channel();
        let stopped = || Error::Database(DbErr::Custom("the database writer stopped".into()));
        group
            .queue
            .send(Job { write, done })
            .map_err(|_| stopped())?;
        written.await.map_err(|_| stopped())?
    }

    /// Commits `jobs` in one transaction and answers each. If that fails, each
    /// is tried alone, so that one bad write (a duplicate request id, a
    /// corrupt row) fails only its own request.
    async fn commit_batch(&self, jobs: Vec<Job>) {
        let (writes, answers): (Vec<_>, Vec<_>) =
            jobs.into_iter().map(|job| (job.write, job.done)).unzip();
        if writes.len() > 1 {
            // The writes are needed again if the batch fails; they are small.
            match self.write_all(writes.clone()).await {
                Ok(written) => {
                    for (done, written) in answers.into_iter().zip(written) {
                        let _ = done.send(Ok(written));
                    }
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, writes = writes.len(), "batch failed; writing one at a time");
                }
            }
        }
        for (write, done) in writes.into_iter().zip(answers) {
            let _ = done.send(self.write_one(write).await);
        }
    }

    async fn write_one(&self, write: Write) -> Result<Written, Error> {
        let mut written = self.write_all(vec![write]).await?;
        written
            .pop()
            .ok_or_else(|| Error::Database(DbErr::Custom("a write went unanswered".into())))
    }

    /// Carries out `writes` in one transaction, in two batches of
    /// statements: first the runs started, and the runs claimed with their
    /// workflows' records; then the records, counted in memory (so that two
    /// finishes of one batch in one workflow both count), and the commit.
    async fn write_all(&self, writes: Vec<Write>) -> Result<Vec<Written>, Error> {
        let backend = self.db.get_database_backend();
        if let [Write::Start(run)] = writes.as_slice()
            && backend != DbBackend::Sqlite
        {
            // One statement: with a pool, a transaction around it would only
            // add a BEGIN and a COMMIT, two round trips.
            let statement = insert_run_of_existing_workflow(backend, run)?;
            let inserted = !self.db.query_all_raw(statement).await?.is_empty();
            return Ok(vec![Written::Started(inserted.then(|| run.clone()))]);
        }
        let mut txn = WriteTxn::begin(&self.db).await?;
        let mut first = Vec::with_capacity(writes.len() * 2);
        for write in &writes {
            match write {
                Write::Start(run) => first.push(insert_run_of_existing_workflow(backend, run)?),
                Write::Finish(claim) => {
                    first.push(claim.statement(backend));
                    first.push(record_of_run(backend, &claim.run_id));
                }
            }
        }
        let mut rows = txn.query(first).await?.into_iter();
        let mut next = || {
            rows.next()
                .ok_or_else(|| DbErr::Custom("a batch result is missing".into()))
        };

        let mut written = Vec::with_capacity(writes.len());
        // The records the batch's finishes count in, by workflow id.
        let mut records: BTreeMap<String, WorkflowMetrics> = BTreeMap::new();
        for write in &writes {
            match write {
                Write::Start(run) => {
                    let inserted = !next()?.is_empty();
                    written.push(Written::Started(inserted.then(|| run.clone())));
                }
                Write::Finish(claim) => {
                    let (run_rows, record_rows) = (next()?, next()?);
                    let Some(row) = run_rows.first() else {
                        written.push(Written::Finished(None));
                        continue;
                    };
                    let run = run::Model::from_query_result(row, "")?;
                    // No record: the workflow was deleted, and its aggregates with it.
                    if let Some(row) = record_rows.first() {
                        let record = match records.entry(run.workflow_id.clone()) {
                            // A batch's earlier finish may have counted in it already.
                            Entry::Occupied(entry) => entry.into_mut(),
                            Entry::Vacant(entry) => {
                                let stored: Vec<u8> = row.try_get("", "metrics")?;
                                entry.insert(record::decode(&stored)?)
                            }
                        };
                        record::count(record, finished(&run, claim), &self.buckets);
                    }
                    written.push(Written::Finished(Some(run)));
                }
            }
        }
        let updates = records
            .iter()
            .map(|(workflow_id, record)| record_update(backend, workflow_id, record))
            .collect();
        txn.commit_after(updates).await?;
        Ok(written)
    }
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
    fn statement(&self, backend: DbBackend) -> Statement {
        let mut claim = run::Entity::update_many()
            .col_expr(run::Column::Status, Expr::value(self.status()))
            .col_expr(run::Column::Reason, Expr::value(&self.reason))
            .col_expr(
                run::Column::FinishedAtMs,
                finished_at_no_earlier_than_start(self.now_ms),
            )
            .filter(run::Column::Id.eq(&self.run_id))
            .filter(run::Column::Status.eq(RunStatus::Initialized.label()));
        if let Some(org_id) = &self.org_id {
            claim = claim.filter(run::Column::OrgId.eq(org_id));
        }
        backend.build(claim.into_query().returning_all())
    }
}

/// A claimed run, as its workflow's record counts it.
fn finished(run: &run::Model, claim: &Claim) -> record::Finished {
    let finished_at_ms = run.finished_at_ms.unwrap_or(claim.now_ms);
    record::Finished {
        status: claim.outcome,
        runner: RunnerType::from_label(&run.runner),
        finished_at_ms,
        duration_ms: (claim.outcome != RunStatus::Expired)
            .then(|| finished_at_ms - run.started_at_ms),
    }
}

/// `INSERT INTO runs … SELECT … WHERE EXISTS (the workflow) RETURNING id`:
/// one statement, so a run never outlives a workflow deleted a moment before;
/// a row comes back if the run was written.
fn insert_run_of_existing_workflow(
    backend: DbBackend,
    run: &run::Model,
) -> Result<Statement, Error> {
    let workflow_exists = Query::select()
        .expr(Expr::val(1))
        .from(workflow::Entity)
        .and_where(workflow::Column::Id.eq(&run.workflow_id))
        .to_owned();
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
            Expr::val(run.request_id.clone()),
        ])
        .and_where(Expr::exists(workflow_exists))
        .to_owned();
    let insert = Query::insert()
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
            run::Column::RequestId,
        ])
        .select_from(values)
        .map_err(|e| DbErr::Custom(e.to_string()))?
        .returning_col(run::Column::Id)
        .to_owned();
    Ok(backend.build(&insert))
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
        .filter(workflow::Column::Id.in_subquery(workflow_of_run))
        .lock_exclusive()
        .build(backend)
}

/// Writes a workflow's record, read and counted under the transaction's lock,
/// and its last run's columns.
fn record_update(backend: DbBackend, workflow_id: &str, record: &WorkflowMetrics) -> Statement {
    let (status, runner, finished_at_ms, duration_ms) = record::last_run_columns(record);
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
        .col_expr(
            workflow::Column::Metrics,
            Expr::value(record::encode(record)),
        )
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
mod tests {
    use super::*;
    use crate::store::test_support::store_with_workflow;

    fn finish(run: &run::Model) -> Write {
        Write::Finish(Claim {
            org_id: Some(run.org_id.clone()),
            run_id: run.id.clone(),
            outcome: RunStatus::Success,
            reason: String::new(),
            now_ms: runplane_api::time::now_ms(),
        })
    }

    fn new_run(workflow_id: &str, request_id: Option<&str>) -> run::Model {
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
        }
    }

    /// (count, runs_total, bucket_counts) of the workflow's one outcome.
    async fn aggregate(store: &Store) -> (u64, u64, Vec<u64>) {
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
                Write::Start(new_run(&wf.id, None)),
                Write::Start(new_run("no-such-workflow", None)),
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
    async fn a_write_that_fails_its_batch_fails_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, wf) = store_with_workflow(&dir, "build").await;
        store
            .start_run(&wf, "GITHUB_ACTION", "", Some("key-1"))
            .await
            .expect("start");
        let other = store
            .start_run(&wf, "GITHUB_ACTION", "", None)
            .await
            .expect("start");
        // A second run with the same request id breaks the unique index, and
        // with it the batch; the finish beside it must still be written.
        let (duplicate_done, duplicate) = oneshot::channel();
        let (finish_done, finished) = oneshot::channel();
        store
            .commit_batch(vec![
                Job {
                    write: Write::Start(new_run(&wf.id, Some("key-1"))),
                    done: duplicate_done,
                },
                Job {
                    write: finish(&other),
                    done: finish_done,
                },
            ])
            .await;
        match duplicate.await.expect("answered") {
            Err(Error::Database(e)) => assert!(runplane_database::is_unique_violation(&e)),
            _ => panic!("the duplicate request id was accepted"),
        }
        assert!(matches!(
            finished.await.expect("answered"),
            Ok(Written::Finished(Some(_)))
        ));
        assert_eq!(aggregate(&store).await, (1, 1, vec![1, 1]));
    }

    #[tokio::test]
    async fn concurrent_requests_through_the_writer_all_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, wf) = store_with_workflow(&dir, "build").await;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..200 {
            let (store, wf) = (store.clone(), wf.clone());
            tasks.spawn(async move {
                let run = store.start_run(&wf, "GITHUB_ACTION", "", None).await?;
                store
                    .finish_run(crate::store::Finish {
                        org_id: Some("org"),
                        run_id: &run.id,
                        outcome: RunStatus::Success,
                        reason: "",
                    })
                    .await
            });
        }
        while let Some(result) = tasks.join_next().await {
            result.expect("task").expect("start and finish");
        }
        assert_eq!(aggregate(&store).await, (200, 200, vec![200, 200]));
    }
}
