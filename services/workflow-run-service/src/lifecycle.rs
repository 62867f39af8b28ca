//! A run's life: started (its workflow found, or created on first use),
//! finished once by its runner or expired by the sweeper, each step reported
//! as CI/CD metrics when those are on ([`crate::cicd`]). Handlers and the
//! sweeper go through here; the store only persists.

use std::sync::Arc;

use runplane_api::workflowrun::v1::{DeploymentKind, DeploymentStatus, RunStatus, RunnerType};

use crate::cicd::{CicdMetrics, Pipeline};
use crate::deploy_workflows::DeployWorkflows;
use crate::entity::run;
use crate::error::Error;
use crate::store::{Finish, FinishedRun, NewDeployment, NewRun, Origin, Store, WorkflowRef};

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
    /// When its commit was made, if the reporter said (validated).
    pub(crate) committed_at_ms: Option<i64>,
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

impl Start<'_> {
    fn new_run(&self) -> NewRun<'_> {
        NewRun {
            runner: self.runner,
            run_url: self.run_url,
            request_id: self.request_id,
            timeout_ms: self.timeout.map(runplane_api::time::duration_ms),
            started_at_ms: self.started_at_ms,
            queued_at_ms: self.queued_at_ms,
            origin: self.origin,
            trace_id: self.trace_id,
        }
    }
}

impl<'a> Outcome<'a> {
    fn finish(&self, org: Option<Org<'a>>, run_id: &'a str) -> Finish<'a> {
        Finish {
            org_id: org.map(|o| o.id),
            run_id,
            outcome: self.status,
            reason: self.reason,
            finished_at_ms: self.finished_at_ms,
            trace_id: self.trace_id,
        }
    }
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
    deploy_workflows: Arc<DeployWorkflows>,
}

impl Lifecycle {
    pub(crate) fn new(store: Store, cicd: Option<Arc<CicdMetrics>>) -> Self {
        Lifecycle {
            store,
            cicd,
            deploy_workflows: Arc::default(),
        }
    }

    /// Records the runs of these workflows as deployments too.
    pub(crate) fn with_deploy_workflows(mut self, deploy_workflows: DeployWorkflows) -> Self {
        self.deploy_workflows = Arc::new(deploy_workflows);
        self
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
            match self.store.start(&workflow, start.new_run()).await {
                Err(Error::WorkflowGone(_)) if attempts == 0 => {
                    self.store.forget_workflow(&workflow);
                    attempts += 1;
                }
                result => break (workflow, result?),
            }
        };
        if started.created {
            self.count_started(org, &workflow);
        }
        self.remember_commit(org, &start).await?;
        Ok((workflow, started.run))
    }

    /// Keeps the time of the run's commit, when its reporter said.
    async fn remember_commit(&self, org: Org<'_>, start: &Start<'_>) -> Result<(), Error> {
        match (start.origin.commit_sha, start.committed_at_ms) {
            (sha, Some(at)) if !sha.is_empty() => {
                self.store
                    .remember_commit(org.id, start.project, sha, at)
                    .await
            }
            _ => Ok(()),
        }
    }

    /// Records a finished run of a `deploy_workflows` workflow as its
    /// deployment (once: keyed by the run), when it succeeded or failed.
    async fn record_if_deployment(
        &self,
        org_id: &str,
        workflow: &WorkflowRef,
        run: &run::Model,
    ) -> Result<(), Error> {
        let Some(environment) = self
            .deploy_workflows
            .environment_of(&workflow.project, &workflow.name)
        else {
            return Ok(());
        };
        let status = match RunStatus::from_label(&run.status) {
            RunStatus::Success => DeploymentStatus::Success,
            RunStatus::Error => DeploymentStatus::Failure,
            _ => return Ok(()),
        };
        let Some(finished_at_ms) = run.finished_at_ms else {
            return Ok(());
        };
        let request_id = format!("run:{}", run.id);
        let deployment = NewDeployment {
            project: &workflow.project,
            environment,
            commit_sha: &run.commit_sha,
            committed_at_ms: None,
            started_at_ms: Some(run.started_at_ms),
            finished_at_ms,
            status,
            kind: DeploymentKind::Unspecified,
            url: &run.run_url,
            run_id: &run.id,
            request_id: Some(&request_id),
        };
        match self.store.record_deployment(org_id, deployment).await {
            // A run is not refused over a deployment that no retry would
            // record: the run counts, the environment is past the limit.
            Err(e @ Error::EnvironmentLimit { .. }) => {
                tracing::warn!(run = %run.id, environment, error = %e, "deployment not recorded");
                Ok(())
            }
            result => result.map(drop),
        }
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
        let workflow = self
            .store
            .find_or_create_workflow(org.id, start.project, start.workflow)
            .await?;
        let at_once = self
            .store
            .start_finished(&workflow, start.new_run(), outcome.finish(Some(org), ""))
            .await?;
        if let Some(run) = at_once {
            let finished = FinishedRun {
                run,
                finished_now: true,
                was_expired: false,
            };
            self.count_started(org, &workflow);
            self.count_finished(Some(org), &finished, outcome.status, &workflow);
            self.remember_commit(org, &start).await?;
            self.record_if_deployment(org.id, &workflow, &finished.run)
                .await?;
            return Ok(Reported {
                workflow,
                run: finished.run,
                counted: true,
            });
        }
        // In two steps, each of which deals with a repeated request id and a
        // workflow deleted meanwhile.
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
        let finished = self.store.finish(outcome.finish(org, run_id)).await?;
        // A repeated finish records the deployment too: a report retried
        // after the deployment failed to be recorded is not lost.
        let deploys = !self.deploy_workflows.is_empty() && outcome.status != RunStatus::Expired;
        if self.cicd.is_some() && finished.finished_now || deploys {
            let workflow_id = &finished.run.workflow_id;
            let mut workflows = self.store.workflow_refs(vec![workflow_id.clone()]).await?;
            if let Some(workflow) = workflows.remove(workflow_id) {
                if finished.finished_now {
                    self.count_finished(org, &finished, outcome.status, &workflow);
                }
                if deploys {
                    let run = &finished.run;
                    self.record_if_deployment(&run.org_id, &workflow, run)
                        .await?;
                }
            }
        }
        let run = finished.run;
        Ok((run, finished.finished_now))
    }

    /// Counts a run started in the CI/CD metrics, when those are on.
    fn count_started(&self, org: Org<'_>, workflow: &WorkflowRef) {
        if let Some(cicd) = &self.cicd {
            cicd.started(&Pipeline {
                org_id: org.id,
                org_name: org.name,
                name: &pipeline_name(workflow),
            });
        }
    }

    /// Counts a run finished in the CI/CD metrics, when those are on.
    fn count_finished(
        &self,
        org: Option<Org<'_>>,
        finished: &FinishedRun,
        outcome: RunStatus,
        workflow: &WorkflowRef,
    ) {
        let Some(cicd) = &self.cicd else {
            return;
        };
        let run = &finished.run;
        // An expired run has no duration: it never reported an outcome.
        let seconds = match (outcome, run.finished_at_ms) {
            (RunStatus::Expired, _) | (_, None) => None,
            (_, Some(at)) => Some(crate::aggregate::seconds(at - run.started_at_ms)),
        };
        let pipeline = Pipeline {
            org_id: &run.org_id,
            org_name: org.and_then(|o| o.name),
            name: &pipeline_name(workflow),
        };
        cicd.finished(&pipeline, outcome, seconds, finished.was_expired);
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
