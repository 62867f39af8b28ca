//! Runs: started, finished (once), expired by the sweeper, listed newest first.

use runplane_api::workflowrun::v1::{RunStatus, RunnerType};
use sea_orm::sea_query::{Order, Query};
use sea_orm::{
    ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
};

use super::Store;
use super::run_writes::{Claim, Report, Write, Written};
use crate::entity::{run, workflow};
use crate::error::Error;

/// What to list in [`Store::list_runs`].
#[derive(Debug, Default)]
pub(crate) struct RunFilter {
    pub(crate) workflow_id: Option<String>,
    pub(crate) status: Option<RunStatus>,
    /// Only runs of workflows in these projects (a project-limited token's).
    pub(crate) projects: Option<Vec<String>>,
}

/// How a run ends.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Finish<'a> {
    /// The caller's organization; `None` for the sweeper, which acts for all.
    pub(crate) org_id: Option<&'a str>,
    pub(crate) run_id: &'a str,
    pub(crate) outcome: RunStatus,
    pub(crate) reason: &'a str,
    /// When it finished, as its reporter said (validated); `None`: now.
    pub(crate) finished_at_ms: Option<i64>,
    /// The trace of the call that finishes it, if any.
    pub(crate) trace_id: Option<&'a str>,
}

/// A run to start, beyond its workflow.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct NewRun<'a> {
    pub(crate) runner: RunnerType,
    pub(crate) run_url: &'a str,
    /// The runner's idempotency key: a repeated start returns the first run.
    pub(crate) request_id: Option<&'a str>,
    /// The run's own timeout, when its runner set one; otherwise the sweeper
    /// applies the service's run timeout.
    pub(crate) timeout_ms: Option<i64>,
    /// When it started, as its reporter said (validated); `None`: now.
    pub(crate) started_at_ms: Option<i64>,
    /// When it was queued, if its reporter knew.
    pub(crate) queued_at_ms: Option<i64>,
    /// Where it came from, as its reporter said (validated).
    pub(crate) origin: Origin<'a>,
    /// The trace of the call that started it, if it belonged to one.
    pub(crate) trace_id: Option<&'a str>,
}

/// Where a run came from: which attempt of its CI run, its branch and commit,
/// and what triggered it; empty (0) where the reporter did not say.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Origin<'a> {
    pub(crate) attempt: u32,
    pub(crate) branch: &'a str,
    pub(crate) commit_sha: &'a str,
    pub(crate) trigger: &'a str,
    /// The default branch of the run's repository.
    pub(crate) default_branch: &'a str,
}

/// A run as a start left it.
#[derive(Debug)]
pub(crate) struct StartedRun {
    pub(crate) run: run::Model,
    /// Whether this call created it, rather than answering a repeated request id.
    pub(crate) created: bool,
}

/// A run as a finish left it.
#[derive(Debug)]
pub(crate) struct FinishedRun {
    pub(crate) run: run::Model,
    /// Whether this call finished it, rather than repeating a finish already recorded.
    pub(crate) finished_now: bool,
    /// It had been marked expired, and this call's outcome replaced that.
    pub(crate) was_expired: bool,
}

/// The row of a run `new` starts in `workflow`.
fn new_run(workflow: &super::WorkflowRef, new: NewRun<'_>) -> run::Model {
    let started_at_ms = new.started_at_ms.unwrap_or_else(runplane_api::time::now_ms);
    run::Model {
        id: match new.started_at_ms {
            Some(at) => run_id_started_at(at),
            // Now: ids of runs started in one millisecond still in order.
            None => uuid::Uuid::now_v7().to_string(),
        },
        org_id: workflow.org_id.clone(),
        workflow_id: workflow.id.clone(),
        runner: new.runner.label().to_owned(),
        run_url: new.run_url.to_owned(),
        status: RunStatus::Initialized.label().to_owned(),
        reason: String::new(),
        started_at_ms,
        finished_at_ms: None,
        request_id: new.request_id.map(str::to_owned),
        expires_at_ms: new.timeout_ms.map(|ms| started_at_ms.saturating_add(ms)),
        queued_at_ms: new.queued_at_ms,
        attempt: i32::try_from(new.origin.attempt).unwrap_or(i32::MAX),
        branch: new.origin.branch.to_owned(),
        commit_sha: new.origin.commit_sha.to_owned(),
        trigger: new.origin.trigger.to_owned(),
        default_branch: new.origin.default_branch.to_owned(),
        trace_id: new.trace_id.unwrap_or_default().to_owned(),
    }
}

impl Finish<'_> {
    /// The write that claims the run for this finish.
    fn claim(&self) -> Claim {
        Claim {
            org_id: self.org_id.map(str::to_owned),
            run_id: self.run_id.to_owned(),
            outcome: self.outcome,
            reason: self.reason.to_owned(),
            now_ms: self
                .finished_at_ms
                .unwrap_or_else(runplane_api::time::now_ms),
            explicit_time: self.finished_at_ms.is_some(),
            trace_id: self.trace_id.map(str::to_owned),
        }
    }
}

impl Store {
    /// Records a new run of `workflow`, in progress. With a `request_id`, a
    /// repeated call returns the run the first one created (idempotent start);
    /// keys are per workflow.
    pub(crate) async fn start(
        &self,
        workflow: &super::WorkflowRef,
        new: NewRun<'_>,
    ) -> Result<StartedRun, Error> {
        let request_id = new.request_id;
        let repeated = |run| StartedRun {
            run,
            created: false,
        };
        if let Some(key) = request_id
            && let Some(existing) = self.run_by_request_id(&workflow.id, key).await?
        {
            return Ok(repeated(existing));
        }
        let model = new_run(workflow, new);
        match self.write(Write::Start(Box::new(model))).await {
            Ok(Written::Started(Some(run))) => Ok(StartedRun { run, created: true }),
            // Deleted since we remembered it (by this replica or another).
            Ok(_) => Err(Error::WorkflowGone(workflow.id.clone())),
            // A concurrent retry with the same key won: answer with its run.
            Err(Error::Database(e))
                if runplane_database::is_unique_violation(&e) && request_id.is_some() =>
            {
                let key = request_id.unwrap_or_default();
                let existing = self
                    .run_by_request_id(&workflow.id, key)
                    .await?
                    .ok_or(Error::Database(e))?;
                Ok(repeated(existing))
            }
            Err(e) => Err(e),
        }
    }

    /// Records a new run of `workflow`, already finished, in one
    /// transaction with its counting: a whole run reported at once costs one
    /// commit rather than two and a lookup. `None` when nothing was written,
    /// for the caller to start and finish in two steps, which handle each
    /// case: the request id is taken (a repeat, or a start that came first:
    /// the run it began is the one to finish; a taken id does not fail the
    /// transaction, so it costs the writes batched with it nothing); the
    /// workflow is gone.
    /// `finish.run_id` is not read (the run is the new one); its outcome is
    /// a runner's (success, error, cancelled), never an expiry.
    pub(crate) async fn start_finished(
        &self,
        workflow: &super::WorkflowRef,
        new: NewRun<'_>,
        finish: Finish<'_>,
    ) -> Result<Option<run::Model>, Error> {
        let mut run = new_run(workflow, new);
        let claim = Finish {
            run_id: &run.id,
            ..finish
        }
        .claim();
        run.status = claim.outcome.label().to_owned();
        run.reason.clone_from(&claim.reason);
        run.finished_at_ms = Some(claim.now_ms.max(run.started_at_ms));
        match self
            .write(Write::Report(Box::new(Report { run, claim })))
            .await
        {
            Ok(Written::Reported(reported)) => Ok(reported),
            Ok(_) => Err(Error::Database(sea_orm::DbErr::Custom(
                "a report was answered as another write".into(),
            ))),
            Err(Error::Database(e))
                if runplane_database::is_unique_violation(&e) && new.request_id.is_some() =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    async fn run_by_request_id(
        &self,
        workflow_id: &str,
        request_id: &str,
    ) -> Result<Option<run::Model>, Error> {
        Ok(run::Entity::find()
            .filter(run::Column::WorkflowId.eq(workflow_id))
            .filter(run::Column::RequestId.eq(request_id))
            .one(&self.db)
            .await?)
    }

    /// An organization's run; another organization's run is "not found" too.
    pub(crate) async fn get_run(&self, org_id: &str, run_id: &str) -> Result<run::Model, Error> {
        run::Entity::find_by_id(run_id.to_owned())
            .one(&self.db)
            .await?
            .filter(|r| r.org_id == org_id)
            .ok_or_else(|| Error::RunNotFound(run_id.to_owned()))
    }

    /// Ends a run: its outcome, its workflow's last run, and its duration
    /// histogram change together or not at all. Finishing again with the same
    /// outcome returns the run unchanged; with another, fails.
    pub(crate) async fn finish(&self, finish: Finish<'_>) -> Result<FinishedRun, Error> {
        match self.write(Write::Finish(finish.claim())).await? {
            Written::Finished(Some(claimed)) => Ok(FinishedRun {
                run: claimed.run,
                finished_now: true,
                was_expired: claimed.was_expired,
            }),
            _ => Ok(FinishedRun {
                run: self.already_finished(&finish).await?,
                finished_now: false,
                was_expired: false,
            }),
        }
    }

    /// Why a run could not be claimed: it is not the caller's (not found), or it
    /// already finished (with this outcome: a harmless retry; otherwise refused).
    async fn already_finished(&self, finish: &Finish<'_>) -> Result<run::Model, Error> {
        let run = run::Entity::find_by_id(finish.run_id.to_owned())
            .one(&self.db)
            .await?
            .filter(|r| finish.org_id.is_none_or(|org| r.org_id == org))
            .ok_or_else(|| Error::RunNotFound(finish.run_id.to_owned()))?;
        let status = RunStatus::from_label(&run.status);
        if let Some(at) = finish.finished_at_ms
            && at < run.started_at_ms
            && matches!(status, RunStatus::Initialized | RunStatus::Expired)
        {
            return Err(Error::InvalidArgument(format!(
                "finish_time {} is before the run's start_time {}",
                crate::validation::rfc3339(at),
                crate::validation::rfc3339(run.started_at_ms)
            )));
        }
        match status {
            done if done == finish.outcome => Ok(run),
            // Still in progress yet not claimable: it was not ours to claim.
            RunStatus::Initialized => Err(Error::RunNotFound(finish.run_id.to_owned())),
            done => Err(Error::AlreadyFinished {
                run_id: run.id,
                status: done.label(),
            }),
        }
    }

    /// Up to `limit` of an organization's runs older than id `before`, newest first.
    pub(crate) async fn list_runs(
        &self,
        org_id: &str,
        filter: &RunFilter,
        before: Option<&str>,
        limit: u64,
    ) -> Result<Vec<run::Model>, Error> {
        let mut query = run::Entity::find()
            .filter(run::Column::OrgId.eq(org_id))
            .order_by_desc(run::Column::Id)
            .limit(limit);
        if let Some(workflow_id) = &filter.workflow_id {
            query = query.filter(run::Column::WorkflowId.eq(workflow_id));
        }
        if let Some(status) = filter.status {
            query = query.filter(run::Column::Status.eq(status.label()));
        }
        if let Some(projects) = &filter.projects {
            query = query.filter(
                run::Column::WorkflowId.in_subquery(
                    workflow::Entity::find()
                        .select_only()
                        .column(workflow::Column::Id)
                        .filter(workflow::Column::OrgId.eq(org_id))
                        .filter(
                            workflow::Column::Project.is_in(projects.iter().map(String::as_str)),
                        )
                        .into_query(),
                ),
            );
        }
        if let Some(before) = before {
            query = query.filter(run::Column::Id.lt(before));
        }
        Ok(query.all(&self.db).await?)
    }

    /// Deletes up to `limit` runs that finished before `finished_before_ms`,
    /// oldest first, and says how many it deleted. The aggregates are left as
    /// they are: the metrics keep counting every run ever finished.
    pub(crate) async fn delete_finished_runs(
        &self,
        finished_before_ms: i64,
        limit: u64,
    ) -> Result<u64, Error> {
        let oldest = Query::select()
            .column(run::Column::Id)
            .from(run::Entity)
            .and_where(run::Column::FinishedAtMs.lt(finished_before_ms))
            .order_by(run::Column::FinishedAtMs, Order::Asc)
            .limit(limit)
            .to_owned();
        let result = run::Entity::delete_many()
            .filter(run::Column::Id.in_subquery(oldest))
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected)
    }

    /// Ids of up to `limit` runs still in progress past their deadline at
    /// `now_ms`: their own, else having started before `started_before_ms`.
    pub(crate) async fn stale_runs(
        &self,
        started_before_ms: i64,
        now_ms: i64,
        limit: u64,
    ) -> Result<Vec<String>, Error> {
        let past_deadline = Condition::any()
            .add(
                Condition::all()
                    .add(run::Column::ExpiresAtMs.is_null())
                    .add(run::Column::StartedAtMs.lt(started_before_ms)),
            )
            .add(run::Column::ExpiresAtMs.lt(now_ms));
        let ids = run::Entity::find()
            .select_only()
            .column(run::Column::Id)
            .filter(run::Column::Status.eq(RunStatus::Initialized.label()))
            .filter(past_deadline)
            .limit(limit)
            .into_tuple::<String>()
            .all(&self.db)
            .await?;
        Ok(ids)
    }
}

/// The least UUIDv7 of millisecond `at_ms`: ids from it on were made then or later.
pub(super) fn uuid_v7_floor(at_ms: i64) -> String {
    let ms = u64::try_from(at_ms).unwrap_or(0) & 0xFFFF_FFFF_FFFF;
    let bits = (u128::from(ms) << 80) | (0x7 << 76) | (0b10 << 62);
    uuid::Uuid::from_u128(bits).to_string()
}

/// The id of a run reported with its own start time: a UUIDv7 of that time,
/// so that ordering runs by id is ordering them by start even when they are
/// reported after the fact.
fn run_id_started_at(started_at_ms: i64) -> String {
    let ms = u64::try_from(started_at_ms).unwrap_or(0);
    let at = uuid::Timestamp::from_unix(uuid::NoContext, ms / 1000, (ms % 1000) as u32 * 1_000_000);
    uuid::Uuid::new_v7(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::store_with_workflow;

    #[tokio::test]
    async fn an_outcome_after_expiry_can_make_its_commit_flaky() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, wf) = store_with_workflow(&dir, "e2e").await;
        let start = |attempt| NewRun {
            origin: Origin {
                attempt,
                commit_sha: "abc",
                ..Origin::default()
            },
            ..NewRun::default()
        };
        let finish = |run_id, outcome, org_id| Finish {
            org_id,
            run_id,
            outcome,
            reason: "",
            finished_at_ms: None,
            trace_id: None,
        };
        // Attempt 1 fails; attempt 2 expires, then reports success.
        let first = store.start(&wf, start(1)).await.expect("start").run;
        store
            .finish(finish(&first.id, RunStatus::Error, Some("org")))
            .await
            .expect("error");
        let second = store.start(&wf, start(2)).await.expect("start").run;
        store
            .finish(finish(&second.id, RunStatus::Expired, None))
            .await
            .expect("expired");
        let flaky = |store: Store| async move {
            crate::store::test_support::org_metrics(&store).await[0].flaky_runs
        };
        assert_eq!(flaky(store.clone()).await, 0, "an expiry is no success");
        store
            .finish(finish(&second.id, RunStatus::Success, Some("org")))
            .await
            .expect("success after expiry");
        assert_eq!(flaky(store.clone()).await, 1);
    }

    #[tokio::test]
    async fn whole_runs_reported_out_of_order_make_their_commit_flaky_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, wf) = store_with_workflow(&dir, "release").await;
        let hour_ago = runplane_api::time::now_ms() - 3_600_000;
        let report = |attempt: u32, outcome, started: i64| {
            let store = store.clone();
            let wf = wf.clone();
            async move {
                let key = format!("github:bbbb:{attempt}");
                let new = NewRun {
                    request_id: Some(&key),
                    started_at_ms: Some(started),
                    origin: Origin {
                        attempt,
                        commit_sha: "bbbb",
                        ..Origin::default()
                    },
                    ..NewRun::default()
                };
                let finish = Finish {
                    org_id: Some("org"),
                    run_id: "",
                    outcome,
                    reason: "",
                    finished_at_ms: Some(started + 60_000),
                    trace_id: None,
                };
                let run = store
                    .start_finished(&wf, new, finish)
                    .await
                    .expect("report")
                    .expect("written at once");
                // Stored as reported, not only answered so.
                let stored = store.get_run("org", &run.id).await.expect("stored");
                assert_eq!(stored.status, outcome.label());
                assert_eq!(stored.finished_at_ms, Some(started + 60_000));
                assert_eq!(stored.request_id.as_deref(), Some(key.as_str()));
            }
        };
        let flaky =
            || async { crate::store::test_support::org_metrics(&store).await[0].flaky_runs };
        // The passing second attempt arrives before the failed first.
        report(2, RunStatus::Success, hour_ago + 120_000).await;
        assert_eq!(flaky().await, 0);
        report(1, RunStatus::Error, hour_ago).await;
        assert_eq!(flaky().await, 1);
        // Flaky already: later attempts count nothing more.
        report(3, RunStatus::Success, hour_ago + 240_000).await;
        report(4, RunStatus::Error, hour_ago + 360_000).await;
        assert_eq!(flaky().await, 1);
    }

    #[test]
    fn the_uuid_v7_floor_of_a_millisecond_orders_before_every_id_made_then() {
        let at = 1_764_000_000_123;
        let floor = uuid_v7_floor(at);
        assert_eq!(
            uuid::Uuid::parse_str(&floor)
                .expect("uuid")
                .get_version_num(),
            7
        );
        for _ in 0..100 {
            let id = run_id_started_at(at);
            assert!(floor <= id, "{floor} > {id}");
            assert!(run_id_started_at(at - 1) < floor);
        }
    }

    async fn run_finished(store: &Store, id: &str) -> Option<i64> {
        store.get_run("org", id).await.expect("run").finished_at_ms
    }

    #[tokio::test]
    async fn finishing_is_once_and_idempotent_and_updates_aggregates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, wf) = store_with_workflow(&dir, "build").await;
        let again = store
            .find_or_create_workflow("org", "default", "build")
            .await
            .expect("wf");
        assert_eq!(wf.id, again.id);

        let a = store
            .start_run(&wf, "GITHUB_ACTION", "", None)
            .await
            .expect("start");
        let b = store
            .start_run(&wf, "GITHUB_ACTION", "", None)
            .await
            .expect("start");
        let finish = |id, outcome| Finish {
            org_id: Some("org"),
            run_id: id,
            outcome,
            reason: "",
            finished_at_ms: None,
            trace_id: None,
        };

        // Another organization cannot finish (or see) the run.
        let other = Finish {
            org_id: Some("other"),
            ..finish(&a.id, RunStatus::Success)
        };
        assert!(matches!(
            store.finish_run(other).await,
            Err(Error::RunNotFound(_))
        ));

        let done = store
            .finish_run(finish(&a.id, RunStatus::Success))
            .await
            .expect("finish");
        assert_eq!(done.status, "success");
        let retry = store
            .finish_run(finish(&a.id, RunStatus::Success))
            .await
            .expect("retry");
        assert_eq!(retry.finished_at_ms, done.finished_at_ms);
        assert!(matches!(
            store.finish_run(finish(&a.id, RunStatus::Error)).await,
            Err(Error::AlreadyFinished {
                status: "success",
                ..
            })
        ));
        store
            .finish_run(finish(&b.id, RunStatus::Error))
            .await
            .expect("finish b");

        let page = crate::store::test_support::org_metrics(&store).await;
        assert_eq!(page.len(), 1);
        let workflow = &page[0];
        assert_eq!(
            workflow.last_run.as_ref().map(|l| l.status()),
            Some(RunStatus::Error)
        );
        assert_eq!(workflow.runs_in_progress, 0);
        // One histogram per status, each counting exactly once despite the retry.
        let counts: Vec<(RunStatus, u64, u64)> = workflow
            .durations
            .iter()
            .map(|d| (d.status(), d.count, d.runs_total))
            .collect();
        assert_eq!(
            counts,
            [(RunStatus::Error, 1, 1), (RunStatus::Success, 1, 1)]
        );

        // The newest run is listed first, and filters apply.
        let runs = store
            .list_runs("org", &RunFilter::default(), None, 10)
            .await
            .expect("list");
        assert_eq!(
            runs.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            [b.id.as_str(), a.id.as_str()]
        );
        let failed = RunFilter {
            status: Some(RunStatus::Error),
            ..RunFilter::default()
        };
        assert_eq!(
            store
                .list_runs("org", &failed, None, 10)
                .await
                .expect("list")
                .len(),
            1
        );
        assert!(
            store
                .list_runs("other", &RunFilter::default(), None, 10)
                .await
                .expect("list")
                .is_empty()
        );
    }

    #[tokio::test]
    async fn stale_runs_expire_without_touching_the_histogram() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, wf) = store_with_workflow(&dir, "deploy").await;
        let run = store
            .start_run(&wf, "UNSPECIFIED", "", None)
            .await
            .expect("start");
        let stale = store
            .stale_runs(
                runplane_api::time::now_ms() + 1,
                runplane_api::time::now_ms(),
                10,
            )
            .await
            .expect("stale");
        assert_eq!(stale, std::slice::from_ref(&run.id));
        let expired = store
            .finish_run(Finish {
                org_id: None,
                run_id: &run.id,
                outcome: RunStatus::Expired,
                reason: "timeout",
                finished_at_ms: None,
                trace_id: None,
            })
            .await
            .expect("expire");
        assert_eq!(expired.status, "expired");
        let page = crate::store::test_support::org_metrics(&store).await;
        let last = page[0].last_run.as_ref().expect("a last run");
        assert_eq!(last.status(), RunStatus::Expired);
        assert_eq!(last.duration_seconds, None);
        // Counted, with no duration observed.
        let expired = &page[0].durations;
        assert_eq!(expired.len(), 1);
        assert_eq!((expired[0].runs_total, expired[0].count), (1, 0));
        assert_eq!(
            expired[0]
                .last_finish_time
                .as_ref()
                .map(runplane_api::time::from_timestamp),
            run_finished(&store, &run.id).await
        );
        assert!(
            store
                .stale_runs(
                    runplane_api::time::now_ms() + 1,
                    runplane_api::time::now_ms(),
                    10
                )
                .await
                .expect("stale")
                .is_empty()
        );
    }

    #[tokio::test]
    async fn out_of_order_finishes_and_runs_in_progress() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, wf) = store_with_workflow(&dir, "deploy").await;
        let first = store
            .start_run(&wf, "UNSPECIFIED", "", None)
            .await
            .expect("start");
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        let second = store
            .start_run(&wf, "UNSPECIFIED", "", None)
            .await
            .expect("start");
        let _open = store
            .start_run(&wf, "UNSPECIFIED", "", None)
            .await
            .expect("start");
        let finish = |id, outcome| Finish {
            org_id: Some("org"),
            run_id: id,
            outcome,
            reason: "",
            finished_at_ms: None,
            trace_id: None,
        };
        // The later-started run finishes first; the earlier one finishes last.
        store
            .finish_run(finish(&second.id, RunStatus::Success))
            .await
            .expect("finish");
        let last = store
            .finish_run(finish(&first.id, RunStatus::Error))
            .await
            .expect("finish");
        let page = crate::store::test_support::org_metrics(&store).await;
        assert_eq!(page[0].runs_in_progress, 1);
        let last_run = page[0].last_run.as_ref().expect("a last run");
        assert_eq!(last_run.status(), RunStatus::Error);
        let took_ms = last.finished_at_ms.map(|f| f - first.started_at_ms);
        assert_eq!(
            last_run.duration_seconds,
            took_ms.map(|ms| ms as f64 / 1000.0)
        );
        assert!(took_ms >= Some(30));
        // The workflow's listing tells the same last run.
        let listed = store
            .list_workflows("org", None, None, 10)
            .await
            .expect("workflows");
        assert_eq!(listed[0].last_run_status.as_deref(), Some("error"));
        assert_eq!(listed[0].last_run_duration_ms, took_ms);
    }

    #[tokio::test]
    async fn a_run_has_its_own_deadline_and_an_outcome_after_expiry_replaces_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, wf) = store_with_workflow(&dir, "release").await;
        let now = runplane_api::time::now_ms();
        let long = store
            .start(
                &wf,
                NewRun {
                    runner: RunnerType::GithubAction,
                    timeout_ms: Some(3_600_000),
                    ..NewRun::default()
                },
            )
            .await
            .expect("start")
            .run;
        let short = store
            .start(
                &wf,
                NewRun {
                    runner: RunnerType::GithubAction,
                    timeout_ms: Some(1),
                    ..NewRun::default()
                },
            )
            .await
            .expect("start")
            .run;
        assert_eq!(long.expires_at_ms, Some(long.started_at_ms + 3_600_000));
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        // With the service's timeout long past for every run: only the one
        // whose own deadline has come is stale, whatever the service's says.
        let stale = store
            .stale_runs(now - 86_400_000, runplane_api::time::now_ms(), 10)
            .await
            .expect("stale");
        assert_eq!(stale, std::slice::from_ref(&short.id));

        // The short run expires, then its runner reports success after all.
        let finish = |outcome, org: Option<&'static str>| Finish {
            org_id: org,
            run_id: "",
            outcome,
            reason: "",
            finished_at_ms: None,
            trace_id: None,
        };
        let expired = store
            .finish(Finish {
                run_id: &short.id,
                ..finish(RunStatus::Expired, None)
            })
            .await
            .expect("expire");
        assert!(expired.finished_now && !expired.was_expired);
        let late = store
            .finish(Finish {
                run_id: &short.id,
                ..finish(RunStatus::Success, Some("org"))
            })
            .await
            .expect("an outcome after expiry");
        assert!(late.finished_now && late.was_expired);
        assert_eq!(late.run.status, "success");
        // Exactly once: the same outcome again is a no-op, another is refused,
        // and the sweeper cannot expire it again.
        let again = store
            .finish(Finish {
                run_id: &short.id,
                ..finish(RunStatus::Success, Some("org"))
            })
            .await
            .expect("idempotent");
        assert!(!again.finished_now);
        assert!(matches!(
            store
                .finish(Finish {
                    run_id: &short.id,
                    ..finish(RunStatus::Error, Some("org"))
                })
                .await,
            Err(Error::AlreadyFinished { .. })
        ));
        let page = crate::store::test_support::org_metrics(&store).await;
        let outcomes: Vec<(RunStatus, u64)> = page[0]
            .durations
            .iter()
            .map(|d| (d.status(), d.runs_total))
            .collect();
        assert_eq!(outcomes, [(RunStatus::Success, 1)], "moved, not added");
        assert_eq!(
            store.get_run("org", &short.id).await.expect("run").status,
            "success"
        );
    }
}
