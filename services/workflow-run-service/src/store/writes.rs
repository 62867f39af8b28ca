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

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, OnceLock};

use runplane_api::workflowrun::v1::RunStatus;
use sea_orm::sea_query::{Condition, Expr, OnConflict, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait as _, DbBackend, DbErr, EntityTrait,
    FromQueryResult, QueryFilter, QuerySelect, QueryTrait, Statement,
};
use tokio::sync::{mpsc, oneshot};

use super::Store;
use super::batch::WriteTxn;
use crate::entity::{run, run_duration, workflow};
use crate::error::Error;
use crate::histogram::Histogram;
use crate::run::status_name;

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

    /// Carries out `writes` in one transaction, in order: first the runs
    /// started and the runs claimed (with the aggregates they count in), then
    /// the aggregates first used, then the workflows' last runs and the
    /// aggregates, counted in memory so that two finishes of one batch into
    /// the same aggregate both count.
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
                    first.push(aggregate_of_run(backend, &claim.run_id, claim.status()));
                }
            }
        }
        let mut rows = txn.query(first).await?.into_iter();
        let mut next = || {
            rows.next()
                .ok_or_else(|| DbErr::Custom("a batch result is missing".into()))
        };

        let mut written = Vec::with_capacity(writes.len());
        let mut claimed: Vec<(run::Model, &Claim)> = Vec::new();
        let mut aggregates: HashMap<AggregateKey, run_duration::Model> = HashMap::new();
        for write in &writes {
            match write {
                Write::Start(run) => {
                    let inserted = !next()?.is_empty();
                    written.push(Written::Started(inserted.then(|| run.clone())));
                }
                Write::Finish(claim) => {
                    let (run_rows, aggregate_rows) = (next()?, next()?);
                    let Some(row) = run_rows.first() else {
                        written.push(Written::Finished(None));
                        continue;
                    };
                    let run = run::Model::from_query_result(row, "")?;
                    if let Some(row) = aggregate_rows.first() {
                        // A batch's earlier finish may have counted in it already.
                        let key = AggregateKey::of(&run, claim);
                        if let Entry::Vacant(entry) = aggregates.entry(key) {
                            entry.insert(run_duration::Model::from_query_result(row, "")?);
                        }
                    }
                    written.push(Written::Finished(Some(run.clone())));
                    claimed.push((run, claim));
                }
            }
        }

        let mut missing: Vec<AggregateKey> = claimed
            .iter()
            .map(|(run, claim)| AggregateKey::of(run, claim))
            .filter(|key| !aggregates.contains_key(key))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            let statements = missing
                .iter()
                .flat_map(|key| self.create_aggregate(backend, key))
                .collect();
            let mut rows = txn.query(statements).await?.into_iter();
            for key in missing {
                let _created = rows.next();
                let row = rows
                    .next()
                    .and_then(|rows| rows.into_iter().next())
                    .ok_or_else(|| {
                        DbErr::RecordNotFound("aggregate row vanished after insert".into())
                    })?;
                aggregates.insert(key, run_duration::Model::from_query_result(&row, "")?);
            }
        }

        let mut last = Vec::with_capacity(claimed.len() + aggregates.len());
        for (run, claim) in &claimed {
            let outcome = Outcome::of(run, claim);
            last.push(last_run_update(backend, run, claim.status(), &outcome));
            if let Some(aggregate) = aggregates.get_mut(&AggregateKey::of(run, claim)) {
                outcome.count_in(aggregate)?;
            }
        }
        last.extend(
            aggregates
                .values()
                .map(|a| aggregate_update(a).build(backend)),
        );
        txn.commit_after(last).await?;
        Ok(written)
    }

    /// Creates an empty aggregate with the configured buckets (unless a
    /// concurrent first finish just did), then reads it, locked.
    fn create_aggregate(&self, backend: DbBackend, key: &AggregateKey) -> [Statement; 2] {
        let empty = Histogram::empty(&self.buckets);
        let (workflow_id, status, runner) = key.clone().0;
        let create = run_duration::Entity::insert(run_duration::ActiveModel {
            workflow_id: Set(workflow_id),
            status: Set(status),
            runner: Set(runner),
            count: Set(0),
            sum_seconds: Set(0.0),
            bucket_bounds: Set(empty.encode_bounds()),
            bucket_counts: Set(empty.encode_counts()),
            runs_total: Set(0),
            last_finished_at_ms: Set(None),
        })
        .on_conflict(
            OnConflict::columns([
                run_duration::Column::WorkflowId,
                run_duration::Column::Status,
                run_duration::Column::Runner,
            ])
            .do_nothing()
            .to_owned(),
        )
        .build(backend);
        let read = run_duration::Entity::find_by_id(key.clone().0)
            .lock_exclusive()
            .build(backend);
        [create, read]
    }
}

impl Claim {
    fn status(&self) -> &'static str {
        status_name(self.outcome)
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
            .filter(run::Column::Status.eq(status_name(RunStatus::Initialized)));
        if let Some(org_id) = &self.org_id {
            claim = claim.filter(run::Column::OrgId.eq(org_id));
        }
        backend.build(claim.into_query().returning_all())
    }
}

/// (workflow, status, runner): the aggregate a finished run counts in.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct AggregateKey((String, String, String));

impl AggregateKey {
    fn of(run: &run::Model, claim: &Claim) -> Self {
        AggregateKey((
            run.workflow_id.clone(),
            claim.status().to_owned(),
            run.runner.clone(),
        ))
    }
}

/// One finished run, as its workflow and its aggregate count it.
struct Outcome {
    finished_at_ms: i64,
    /// `None` for an expired run: counted, but not in the duration histogram.
    duration_ms: Option<i64>,
}

impl Outcome {
    fn of(run: &run::Model, claim: &Claim) -> Self {
        let finished_at_ms = run.finished_at_ms.unwrap_or(claim.now_ms);
        Outcome {
            finished_at_ms,
            duration_ms: (claim.outcome != RunStatus::Expired)
                .then(|| finished_at_ms - run.started_at_ms),
        }
    }

    /// Counts this outcome in `aggregate`, in memory.
    fn count_in(&self, aggregate: &mut run_duration::Model) -> Result<(), Error> {
        aggregate.runs_total = aggregate.runs_total.saturating_add(1);
        aggregate.last_finished_at_ms = Some(
            aggregate
                .last_finished_at_ms
                .map_or(self.finished_at_ms, |at| at.max(self.finished_at_ms)),
        );
        if let Some(duration_ms) = self.duration_ms {
            let mut histogram = Histogram::decode(
                &aggregate.bucket_bounds,
                &aggregate.bucket_counts,
                aggregate.count,
                aggregate.sum_seconds,
            )?;
            histogram.observe(duration_ms as f64 / 1000.0);
            aggregate.count = i64::try_from(histogram.count).unwrap_or(i64::MAX);
            aggregate.sum_seconds = histogram.sum;
            aggregate.bucket_counts = histogram.encode_counts();
        }
        Ok(())
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

/// The aggregate that run `run_id` counts in when it finishes as `status`,
/// locked; no row if it is the first run to finish so.
fn aggregate_of_run(backend: DbBackend, run_id: &str, status: &str) -> Statement {
    let field_of_run = |column: run::Column| {
        Query::select()
            .column(column)
            .from(run::Entity)
            .and_where(run::Column::Id.eq(run_id))
            .to_owned()
    };
    run_duration::Entity::find()
        .filter(run_duration::Column::WorkflowId.in_subquery(field_of_run(run::Column::WorkflowId)))
        .filter(run_duration::Column::Status.eq(status))
        .filter(run_duration::Column::Runner.in_subquery(field_of_run(run::Column::Runner)))
        .lock_exclusive()
        .build(backend)
}

/// The workflow's last run is the one that finished last, whatever order the
/// finishes arrive in. An expired run has no duration to report.
fn last_run_update(
    backend: DbBackend,
    run: &run::Model,
    status: &str,
    outcome: &Outcome,
) -> Statement {
    let mut update = workflow::Entity::update_many()
        .col_expr(workflow::Column::LastRunStatus, Expr::value(status))
        .col_expr(workflow::Column::LastRunRunner, Expr::value(&run.runner))
        .col_expr(
            workflow::Column::LastRunFinishedAtMs,
            Expr::value(outcome.finished_at_ms),
        );
    if let Some(duration_ms) = outcome.duration_ms {
        update = update.col_expr(
            workflow::Column::LastRunDurationMs,
            Expr::value(duration_ms),
        );
    }
    update
        .filter(workflow::Column::Id.eq(&run.workflow_id))
        .filter(
            Condition::any()
                .add(workflow::Column::LastRunFinishedAtMs.is_null())
                .add(workflow::Column::LastRunFinishedAtMs.lte(outcome.finished_at_ms)),
        )
        .build(backend)
}

/// Writes an aggregate's counts, read and counted under the transaction's lock.
fn aggregate_update(aggregate: &run_duration::Model) -> sea_orm::UpdateMany<run_duration::Entity> {
    run_duration::Entity::update_many()
        .col_expr(run_duration::Column::Count, Expr::value(aggregate.count))
        .col_expr(
            run_duration::Column::SumSeconds,
            Expr::value(aggregate.sum_seconds),
        )
        .col_expr(
            run_duration::Column::BucketCounts,
            Expr::value(&aggregate.bucket_counts),
        )
        .col_expr(
            run_duration::Column::RunsTotal,
            Expr::value(aggregate.runs_total),
        )
        .col_expr(
            run_duration::Column::LastFinishedAtMs,
            Expr::value(aggregate.last_finished_at_ms),
        )
        .filter(run_duration::Column::WorkflowId.eq(&aggregate.workflow_id))
        .filter(run_duration::Column::Status.eq(&aggregate.status))
        .filter(run_duration::Column::Runner.eq(&aggregate.runner))
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
            now_ms: runplane_kit::time::now_ms(),
        })
    }

    fn new_run(workflow_id: &str, request_id: Option<&str>) -> run::Model {
        run::Model {
            id: uuid::Uuid::now_v7().to_string(),
            org_id: "org".into(),
            workflow_id: workflow_id.into(),
            runner: "GITHUB_ACTION".into(),
            run_url: String::new(),
            status: status_name(RunStatus::Initialized).into(),
            reason: String::new(),
            started_at_ms: runplane_kit::time::now_ms(),
            finished_at_ms: None,
            request_id: request_id.map(str::to_owned),
        }
    }

    /// (count, runs_total, bucket_counts) of the workflow's one aggregate.
    async fn aggregate(store: &Store) -> (i64, i64, String) {
        let page = store
            .workflow_metrics("org", None, 10)
            .await
            .expect("metrics");
        let outcome = &page[0].outcomes[0];
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
        assert_eq!(aggregate(&store).await, (3, 3, "3,3".to_owned()));

        // A later batch counts on from what the first wrote.
        let more = store
            .start_run(&wf, "GITHUB_ACTION", "", None)
            .await
            .expect("start");
        store.write_all(vec![finish(&more)]).await.expect("finish");
        assert_eq!(aggregate(&store).await, (4, 4, "4,4".to_owned()));
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
            Err(Error::Database(e)) => assert!(runplane_kit::database::is_unique_violation(&e)),
            _ => panic!("the duplicate request id was accepted"),
        }
        assert!(matches!(
            finished.await.expect("answered"),
            Ok(Written::Finished(Some(_)))
        ));
        assert_eq!(aggregate(&store).await, (1, 1, "1,1".to_owned()));
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
        assert_eq!(aggregate(&store).await, (200, 200, "200,200".to_owned()));
    }
}
