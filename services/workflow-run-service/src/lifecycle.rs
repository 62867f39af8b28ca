//! A run's life: started (its workflow found, or created on first use),
//! finished once by its runner or expired by the sweeper, each step reported
//! as CI/CD metrics when those are on ([`crate::cicd`]). Handlers and the
//! sweeper go through here; the store only persists.

use std::sync::Arc;

use runplane_api::workflowrun::v1::{RunStatus, RunnerType};

use crate::cicd::{CicdMetrics, Pipeline};
use crate::entity::run;
use crate::error::Error;
use crate::store::{Finish, NewRun, Origin, Store, WorkflowRef};

/// The organization a call acts for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Org<'a> {
    pub(crate) id: &'a str,
    /// Known when a runner reports; the sweeper knows only ids.
    pub(crate) name: Option<&'a str>,
}

/// A run to start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Start<'a> {
    pub(crate) project: &'a str,
    pub(crate) workflow: &'a str,
    pub(crate) runner: RunnerType,
    pub(crate) run_url: &'a str,
    /// The runner's idempotency key: a repeated start returns the first run.
    pub(crate) request_id: Option<&'a str>,
    /// The run's own timeout, if its runner set one (else the service's).
    pub(crate) timeout: Option<std::time::Duration>,
    /// When it started and was queued, when the reporter said (validated).
    pub(crate) started_at_ms: Option<i64>,
    pub(crate) queued_at_ms: Option<i64>,
    /// Where it came from (validated).
    pub(crate) origin: Origin<'a>,
    /// The trace of the call that reported it, if any.
    pub(crate) trace_id: Option<&'a str>,
}

/// How a run ends, as its reporter said.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outcome<'a> {
    pub(crate) status: RunStatus,
    pub(crate) reason: &'a str,
    /// When it finished (validated); `None`: now.
    pub(crate) finished_at_ms: Option<i64>,
    /// The trace of the call that reported it, if any.
    pub(crate) trace_id: Option<&'a str>,
}

/// What a report did.
pub(crate) struct Reported {
    pub(crate) workflow: WorkflowRef,
    pub(crate) run: run::Model,
    /// False when it repeated a report already recorded.
    pub(crate) counted: bool,
}

/// Runs through their life, over the store.
#[derive(Clone)]
pub(crate) struct Lifecycle {
    store: Store,
    cicd: Option<Arc<CicdMetrics>>,
}

impl Lifecycle {
    pub(crate) fn new(store: Store, cicd: Option<Arc<CicdMetrics>>) -> Self {
        Lifecycle { store, cicd }
    }

    /// The store, for reads.
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Starts a run of `org`'s workflow, creating the workflow if it is new.
    /// A workflow remembered in memory may have been deleted since (through
    /// any replica): then it is forgotten and created afresh, once.
    pub(crate) async fn start(
        &self,
        org: Org<'_>,
        start: Start<'_>,
    ) -> Result<(WorkflowRef, run::Model), Error> {
        let mut attempts = 0;
        let (workflow, started) = loop {
            let workflow = self
                .store
                .find_or_create_workflow(org.id, start.project, start.workflow)
                .await?;
            let new = NewRun {
                runner: start.runner,
                run_url: start.run_url,
                request_id: start.request_id,
                timeout_ms: start.timeout.map(runplane_api::time::duration_ms),
                started_at_ms: start.started_at_ms,
                queued_at_ms: start.queued_at_ms,
                origin: start.origin,
                trace_id: start.trace_id,
            };
            match self.store.start(&workflow, new).await {
                Err(Error::WorkflowGone(_)) if attempts == 0 => {
                    self.store.forget_workflow(&workflow);
                    attempts += 1;
                }
                result => break (workflow, result?),
            }
        };
        if let (Some(cicd), true) = (&self.cicd, started.created) {
            cicd.started(&Pipeline {
                org_id: org.id,
                org_name: org.name,
                name: &pipeline_name(&workflow),
            });
        }
        Ok((workflow, started.run))
    }

    /// Finishes a run with its outcome: once (a repeat with the same outcome
    /// returns it unchanged, another outcome is refused). `org` is the
    /// caller's, whose runs alone it may finish; `None` (the sweeper) acts
    /// for every organization.
    pub(crate) async fn finish(
        &self,
        org: Option<Org<'_>>,
        run_id: &str,
        outcome: Outcome<'_>,
    ) -> Result<run::Model, Error> {
        Ok(self.finish_counted(org, run_id, outcome).await?.0)
    }

    /// Records a whole run, started and finished, in one call. With a request
    /// id it is idempotent, and finishes the run a start with the same key
    /// began (deliveries out of order): the run is counted once.
    pub(crate) async fn report(
        &self,
        org: Org<'_>,
        start: Start<'_>,
        outcome: Outcome<'_>,
    ) -> Result<Reported, Error> {
        let (workflow, run) = self.start(org, start).await?;
        let (run, counted) = self.finish_counted(Some(org), &run.id, outcome).await?;
        Ok(Reported {
            workflow,
            run,
            counted,
        })
    }

    /// [`Self::finish`], and whether this call counted the run.
    async fn finish_counted(
        &self,
        org: Option<Org<'_>>,
        run_id: &str,
        outcome: Outcome<'_>,
    ) -> Result<(run::Model, bool), Error> {
        let Outcome {
            status: outcome,
            reason,
            finished_at_ms,
            trace_id,
        } = outcome;
        let finished = self
            .store
            .finish(Finish {
                org_id: org.map(|o| o.id),
                run_id,
                outcome,
                reason,
                finished_at_ms,
                trace_id,
            })
            .await?;
        let run = finished.run;
        if let (Some(cicd), true) = (&self.cicd, finished.finished_now) {
            let workflows = self
                .store
                .workflow_refs(vec![run.workflow_id.clone()])
                .await?;
            let name = workflows
                .get(&run.workflow_id)
                .map(pipeline_name)
                .unwrap_or_default();
            // An expired run has no duration: it never reported an outcome.
            let seconds = match (outcome, run.finished_at_ms) {
                (RunStatus::Expired, _) | (_, None) => None,
                (_, Some(at)) => Some(crate::aggregate::seconds(at - run.started_at_ms)),
            };
            let pipeline = Pipeline {
                org_id: &run.org_id,
                org_name: org.and_then(|o| o.name),
                name: &name,
            };
            cicd.finished(&pipeline, outcome, seconds, finished.was_expired);
        }
        Ok((run, finished.finished_now))
    }

    /// Expires a run nobody finished (the sweeper).
    pub(crate) async fn expire(&self, run_id: &str, reason: &str) -> Result<run::Model, Error> {
        let outcome = Outcome {
            status: RunStatus::Expired,
            reason,
            finished_at_ms: None,
            trace_id: None,
        };
        self.finish(None, run_id, outcome).await
    }
}

/// A workflow as the CI/CD conventions name a pipeline: `project/workflow`.
fn pipeline_name(workflow: &WorkflowRef) -> String {
    format!("{}/{}", workflow.project, workflow.name)
}
