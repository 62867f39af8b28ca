//! The group commit that carries ingestion's writes on SQLite.
//!
//! SQLite has one writer, so concurrent requests queue for it anyway. Rather
//! than one transaction each, one writer task takes every write queued while
//! it was busy and commits them together: a batch costs about what a single
//! write costs (a few round trips to SQLite's worker thread and one commit),
//! so throughput grows with the queue instead of being capped by the round
//! trips of each write. Nothing waits for a batch to fill: a write that finds
//! no other in flight is written at once by its own request, without the hop
//! to the writer task and back (a lone client's every call). PostgreSQL has a
//! pool of connections and row locks; there each write is its own transaction.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use sea_orm::{DbBackend, DbErr};
use tokio::sync::{mpsc, oneshot};

use super::Store;
use super::run_writes::{Write, Written};
use crate::error::Error;

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 256;

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
    /// Writes called and not answered yet, queued or written directly.
    in_flight: AtomicUsize,
    /// The store, writing by itself: for a write with no other in flight.
    alone: Store,
}

/// One write counted in flight until it is answered (or its request dropped).
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    /// Counts a write in; says whether no other was in flight.
    fn enter(count: &'a AtomicUsize) -> (Self, bool) {
        let before = count.fetch_add(1, Ordering::AcqRel);
        (InFlight(count), before == 0)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

struct Job {
    write: Write,
    done: oneshot::Sender<Result<Written, Error>>,
}

impl GroupCommit {
    fn start(store: Store) -> Self {
        let (queue, mut jobs) = mpsc::unbounded_channel::<Job>();
        let alone = store.clone();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
                store.commit_batch(std::mem::take(&mut batch)).await;
            }
        });
        GroupCommit {
            queue,
            in_flight: AtomicUsize::new(0),
            alone,
        }
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
        let (_in_flight, alone) = InFlight::enter(&group.in_flight);
        if alone {
            // Writes arriving meanwhile queue for the writer task, which waits
            // for SQLite's one connection as this one did.
            return group.alone.write_one(write).await;
        }
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
}

#[cfg(test)]
mod tests {
    use runplane_api::workflowrun::v1::RunStatus;

    use super::*;
    use crate::store::run_writes::tests::{aggregate, finish, new_run};
    use crate::store::test_support::store_with_workflow;

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
                    write: Write::Start(Box::new(new_run(&wf.id, Some("key-1")))),
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
                        finished_at_ms: None,
                        trace_id: None,
                    })
                    .await
            });
        }
        while let Some(result) = tasks.join_next().await {
            result.expect("task").expect("start and finish");
        }
        assert_eq!(aggregate(&store).await, (200, 200, vec![200, 200]));
    }

    #[tokio::test]
    async fn a_whole_run_commits_at_once_and_a_taken_request_id_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, wf) = store_with_workflow(&dir, "build").await;
        let (writer, workflow) = (store.clone(), wf.clone());
        let whole_run = move |key: Option<&'static str>| {
            let (store, wf) = (writer.clone(), workflow.clone());
            async move {
                let new = crate::store::NewRun {
                    runner: runplane_api::workflowrun::v1::RunnerType::GithubAction,
                    request_id: key,
                    ..Default::default()
                };
                let finish = crate::store::Finish {
                    org_id: Some("org"),
                    run_id: "",
                    outcome: RunStatus::Success,
                    reason: "",
                    finished_at_ms: None,
                    trace_id: None,
                };
                store.start_finished(&wf, new, finish).await
            }
        };
        let run = whole_run(Some("key-1"))
            .await
            .expect("report")
            .expect("written at once");
        assert_eq!(run.status, "success");
        assert!(run.finished_at_ms.is_some_and(|at| at >= run.started_at_ms));
        // The same key again: nothing written, the caller goes the long way.
        assert!(whole_run(Some("key-1")).await.expect("repeat").is_none());
        // A key a start took first: the same.
        store
            .start_run(&wf, "GITHUB_ACTION", "", Some("key-2"))
            .await
            .expect("start");
        assert!(
            whole_run(Some("key-2"))
                .await
                .expect("after a start")
                .is_none()
        );
        assert_eq!(aggregate(&store).await, (1, 1, vec![1, 1]));

        // Whole runs and single writes from many requests share batches;
        // each request gets its own answers.
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..100 {
            let whole_run = whole_run.clone();
            let store = store.clone();
            let wf = wf.clone();
            tasks.spawn(async move {
                if n % 2 == 0 {
                    let run = whole_run(None).await?.expect("written at once");
                    assert_eq!(run.status, "success");
                } else {
                    let run = crate::store::test_support::finished_run(
                        &store,
                        &wf,
                        "GITHUB_ACTION",
                        RunStatus::Success,
                    )
                    .await;
                    assert_eq!(run.status, "success");
                }
                Ok::<_, Error>(())
            });
        }
        while let Some(result) = tasks.join_next().await {
            result
                .expect("task")
                .expect("whole run or start and finish");
        }
        assert_eq!(aggregate(&store).await, (101, 101, vec![101, 101]));
    }
}
