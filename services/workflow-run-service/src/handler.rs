//! workflow-run-service's gRPC handlers: authorize, validate, call the
//! lifecycle (writes) or the store (reads), shape the answer.

use std::collections::HashMap;

use runplane_api::time::timestamp;
use runplane_api::token::v1::Scope;
use runplane_api::workflowrun::v1::workflow_run_service_server::WorkflowRunService;
use runplane_api::workflowrun::v1::{
    DeleteEnvironmentRequest, DeleteEnvironmentResponse, DeleteWorkflowRequest,
    DeleteWorkflowResponse, Deployment, DeploymentKind, DeploymentStatus, FinishRunRequest,
    FinishRunResponse, GetRunRequest, GetRunResponse, Job, JobStatus, ListDeploymentsRequest,
    ListDeploymentsResponse, ListJobsRequest, ListJobsResponse, ListRunsRequest, ListRunsResponse,
    ListWorkflowMetricsRequest, ListWorkflowMetricsResponse, ListWorkflowsRequest,
    ListWorkflowsResponse, RecordDeploymentRequest, RecordDeploymentResponse, ReportJobRequest,
    ReportJobResponse, ReportRunRequest, ReportRunResponse, Run, RunStatus, RunnerType,
    StartRunRequest, StartRunResponse, Workflow,
};
use runplane_auth::{AuthError, Principal, TokenAuthenticator};
use runplane_server::pagination;
use tonic::{Request, Response, Status};

use crate::entity::{deployment, job, run, workflow};
use crate::error::Error;
use crate::lifecycle::{Lifecycle, Org, Outcome, Start};
use crate::store::{
    DeploymentFilter, JobReport, NewDeployment, Origin, RunFilter, Store, WorkflowRef,
    job_status_from_label,
};
use crate::validation::{
    project_or_default, reportable_outcome, reported_time, run_timeout, times_in_order,
    validate_name, validate_origin, validate_reason, validate_run_id, validate_run_url,
    validate_url,
};

/// Serves `runplane.workflowrun.v1.WorkflowRunService`.
pub(crate) struct WorkflowRunHandler {
    lifecycle: Lifecycle,
    auth: TokenAuthenticator,
}

impl WorkflowRunHandler {
    pub(crate) fn new(lifecycle: Lifecycle, auth: TokenAuthenticator) -> Self {
        WorkflowRunHandler { lifecycle, auth }
    }

    fn store(&self) -> &Store {
        self.lifecycle.store()
    }

    /// For the hot paths (reporting, and the scrape's pages, whose token
    /// metrics-service has just checked): a cached answer will do.
    async fn authorize<T>(&self, request: &Request<T>, scope: Scope) -> Result<Principal, Error> {
        Ok(self.auth.authorize(request, scope).await?)
    }

    /// For deletes and reads: a revoked token is refused at once.
    async fn authorize_fresh<T>(
        &self,
        request: &Request<T>,
        scope: Scope,
    ) -> Result<Principal, Error> {
        Ok(self.auth.authorize_fresh(request, scope).await?)
    }

    /// For reads a runner may also do: any scope will do.
    async fn authorize_any<T>(&self, request: &Request<T>) -> Result<Principal, Error> {
        let principal = self
            .auth
            .authenticate(
                runplane_auth::bearer(request)?,
                runplane_auth::client_ip(request),
                runplane_auth::Freshness::Fresh,
            )
            .await?;
        if principal.scopes.is_empty() {
            return Err(AuthError::Forbidden("this token has no scopes".into()).into());
        }
        Ok(principal)
    }

    /// Fails with PERMISSION_DENIED when a project-limited token reports on a
    /// run of another project. A run that does not exist passes, for the
    /// call to say NOT_FOUND itself.
    async fn require_run_project(&self, principal: &Principal, run_id: &str) -> Result<(), Error> {
        if principal.project_limit().is_none() {
            return Ok(());
        }
        let run = match self.store().get_run(&principal.org_id, run_id).await {
            Ok(run) => run,
            Err(Error::RunNotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let refs = self.store().workflow_refs(vec![run.workflow_id]).await?;
        match refs.into_values().next() {
            Some(workflow) => Ok(principal.require_project(&workflow.project)?),
            None => Ok(()),
        }
    }

    /// A job report that names its run by id gets the run's project,
    /// workflow and key (a workflow it names must be the run's).
    async fn name_jobs_run(
        &self,
        principal: &Principal,
        request: &mut ReportJobRequest,
    ) -> Result<(), Error> {
        validate_run_id(&request.run_id)?;
        let run = self
            .store()
            .get_run(&principal.org_id, &request.run_id)
            .await?;
        let workflow = self
            .store()
            .workflow_refs(vec![run.workflow_id.clone()])
            .await?
            .remove(&run.workflow_id)
            .ok_or_else(|| Error::RunNotFound(request.run_id.clone()))?;
        principal.require_project(&workflow.project)?;
        let named = |given: &str, actual: &str| given.is_empty() || given == actual;
        if !named(&request.workflow, &workflow.name)
            || !named(project_or_default(&request.project), &workflow.project)
        {
            return Err(Error::InvalidArgument(format!(
                "run {} is of workflow {}/{}, not the one the job names",
                request.run_id, workflow.project, workflow.name
            )));
        }
        request.project = workflow.project;
        request.workflow = workflow.name;
        request.run_request_id = run.request_id.unwrap_or(run.id);
        Ok(())
    }

    /// Runs in their wire form, named after their workflows.
    async fn runs_to_proto(&self, runs: Vec<run::Model>) -> Result<Vec<Run>, Error> {
        let mut ids: Vec<String> = runs.iter().map(|r| r.workflow_id.clone()).collect();
        ids.sort_unstable();
        ids.dedup();
        let workflows: HashMap<String, WorkflowRef> = self.store().workflow_refs(ids).await?;
        Ok(runs
            .into_iter()
            .map(|r| {
                let workflow = workflows.get(&r.workflow_id);
                run_to_proto(r, workflow)
            })
            .collect())
    }
}

fn run_to_proto(run: run::Model, workflow: Option<&WorkflowRef>) -> Run {
    Run {
        project: workflow.map(|w| w.project.clone()).unwrap_or_default(),
        workflow: workflow.map(|w| w.name.clone()).unwrap_or_default(),
        runner_type: RunnerType::from_label(&run.runner).into(),
        status: RunStatus::from_label(&run.status).into(),
        start_time: Some(timestamp(run.started_at_ms)),
        finish_time: run.finished_at_ms.map(timestamp),
        expire_time: run.expires_at_ms.map(timestamp),
        queue_time: run.queued_at_ms.map(timestamp),
        attempt: u32::try_from(run.attempt).unwrap_or_default(),
        branch: run.branch,
        commit_sha: run.commit_sha,
        trigger: run.trigger,
        default_branch: run.default_branch,
        id: run.id,
        workflow_id: run.workflow_id,
        run_url: run.run_url,
        reason: run.reason,
    }
}

fn job_to_proto(j: job::Model) -> Job {
    Job {
        status: job_status_from_label(&j.status).into(),
        outcome: if j.outcome.is_empty() {
            RunStatus::Unspecified
        } else {
            RunStatus::from_label(&j.outcome)
        }
        .into(),
        queue_time: j.queued_at_ms.map(timestamp),
        start_time: j.started_at_ms.map(timestamp),
        finish_time: j.finished_at_ms.map(timestamp),
        runner_type: RunnerType::from_label(&j.runner).into(),
        runner_labels: j
            .runner_labels
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        id: j.id,
        project: j.project,
        workflow: j.workflow,
        run_request_id: j.run_request_id,
        job_key: j.job_key,
        name: j.name,
        conclusion: j.conclusion,
        runner_name: j.runner_name,
    }
}

/// A job report as a request asked it, checked.
fn checked_job(principal: &Principal, request: ReportJobRequest) -> Result<JobReport, Error> {
    let project = project_or_default(&request.project).to_owned();
    validate_name("project", &project)?;
    principal.require_project(&project)?;
    validate_name("job", &request.name)?;
    if !request.workflow.is_empty() {
        validate_name("workflow", &request.workflow)?;
    }
    for (what, key) in [
        ("job_key", &request.job_key),
        ("run_request_id", &request.run_request_id),
    ] {
        if key.is_empty() && what == "run_request_id" {
            continue;
        }
        if let Some(problem) = runplane_api::workflow_name::problem(key) {
            return Err(Error::InvalidArgument(format!("{what} {problem}")));
        }
        if key.chars().count() > 100 {
            return Err(Error::InvalidArgument(format!(
                "{what} is longer than 100 characters"
            )));
        }
    }
    let status = match JobStatus::try_from(request.status) {
        Ok(status @ (JobStatus::Queued | JobStatus::InProgress | JobStatus::Completed)) => status,
        _ => {
            return Err(Error::InvalidArgument(
                "status must be QUEUED, IN_PROGRESS or COMPLETED".into(),
            ));
        }
    };
    let outcome = match status {
        JobStatus::Completed => Some(reportable_outcome(request.outcome)?),
        _ => None,
    };
    if request.conclusion.chars().count() > 100 || request.runner_name.chars().count() > 200 {
        return Err(Error::InvalidArgument(
            "conclusion (100) or runner_name (200 characters) is too long".into(),
        ));
    }
    if request.runner_labels.len() > 50
        || request
            .runner_labels
            .iter()
            .any(|l| l.chars().count() > 200 || l.contains('\n'))
    {
        return Err(Error::InvalidArgument(
            "runner_labels: at most 50 labels of at most 200 characters, on one line each".into(),
        ));
    }
    let queued_at_ms = reported_time("queue_time", request.queue_time.as_ref())?;
    let started_at_ms = reported_time("start_time", request.start_time.as_ref())?;
    let finished_at_ms = reported_time("finish_time", request.finish_time.as_ref())?;
    times_in_order(queued_at_ms, started_at_ms, finished_at_ms)?;
    let runner = RunnerType::try_from(request.runner_type).map_err(|_| {
        Error::InvalidArgument(format!("unknown runner_type {}", request.runner_type))
    })?;
    Ok(JobReport {
        org_id: principal.org_id.clone(),
        job_key: request.job_key,
        project,
        workflow: request.workflow,
        run_request_id: request.run_request_id,
        name: request.name,
        status,
        outcome,
        conclusion: request.conclusion,
        queued_at_ms,
        started_at_ms,
        finished_at_ms,
        runner,
        runner_name: request.runner_name,
        runner_labels: request.runner_labels,
    })
}

fn workflow_to_proto(w: workflow::Model) -> Workflow {
    Workflow {
        last_run_status: w
            .last_run_status
            .as_deref()
            .map(RunStatus::from_label)
            .unwrap_or(RunStatus::Unspecified)
            .into(),
        last_run_finish_time: w.last_run_finished_at_ms.map(timestamp),
        create_time: Some(timestamp(w.created_at_ms)),
        id: w.id,
        project: w.project,
        name: w.name,
    }
}

/// A start as a request asked it, checked: names, the caller's projects, the
/// URL, the idempotency key and the runner type.
fn checked_start<'a>(
    principal: &Principal,
    mut start: Start<'a>,
    runner_type: i32,
    request_id: &'a str,
) -> Result<Start<'a>, Error> {
    validate_name("workflow", start.workflow)?;
    validate_name("project", start.project)?;
    principal.require_project(start.project)?;
    validate_run_url(start.run_url)?;
    validate_origin(&start.origin)?;
    if !request_id.is_empty() {
        validate_name("request_id", request_id)?;
        if request_id.chars().count() > 100 {
            return Err(Error::InvalidArgument(
                "request_id is longer than 100 characters".into(),
            ));
        }
        start.request_id = Some(request_id);
    }
    start.runner = RunnerType::try_from(runner_type)
        .map_err(|_| Error::InvalidArgument(format!("unknown runner_type {runner_type}")))?;
    Ok(start)
}

/// How the deployments runplane records itself are keyed (ingest-service's
/// webhooks, `deploy_workflows`): refused from an organization's token.
const RESERVED_DEPLOYMENT_KEYS: &[&str] = &["github-", "gitlab-", "run:"];

/// A reported commit time, checked: it needs the commit it is of.
fn commit_time(
    commit_sha: &str,
    at: Option<&runplane_api::time::Timestamp>,
) -> Result<Option<i64>, Error> {
    let committed_at_ms = reported_time("commit_time", at)?;
    if committed_at_ms.is_some() && commit_sha.is_empty() {
        return Err(Error::InvalidArgument(
            "commit_time needs commit_sha: it is the time of that commit".into(),
        ));
    }
    Ok(committed_at_ms)
}

fn deployment_to_proto(d: deployment::Model) -> Deployment {
    Deployment {
        id: d.id,
        project: d.project,
        environment: d.environment,
        commit_sha: d.commit_sha,
        commit_time: d.committed_at_ms.map(timestamp),
        start_time: d.started_at_ms.map(timestamp),
        finish_time: Some(timestamp(d.finished_at_ms)),
        status: DeploymentStatus::from_label(&d.status).into(),
        kind: DeploymentKind::from_label(&d.kind)
            .unwrap_or_default()
            .into(),
        url: d.url,
        run_id: d.run_id,
    }
}

/// The organization a caller acts for, as the lifecycle names it.
fn org(principal: &Principal) -> Org<'_> {
    Org {
        id: &principal.org_id,
        name: Some(&principal.org_name),
    }
}

/// The next page token: the last item's id, when the page was full.
/// The trace a request belongs to, if it carried or started one.
fn trace_of<T>(request: &Request<T>) -> Option<String> {
    request
        .extensions()
        .get::<runplane_telemetry::trace_context::TraceId>()
        .map(|id| id.0.clone())
}

fn next_token<T>(items: &[T], limit: u64, id: impl Fn(&T) -> &str) -> String {
    match items.last() {
        Some(last) if items.len() as u64 == limit => pagination::encode(id(last)),
        _ => String::new(),
    }
}

#[tonic::async_trait]
impl WorkflowRunService for WorkflowRunHandler {
    async fn start_run(
        &self,
        request: Request<StartRunRequest>,
    ) -> Result<Response<StartRunResponse>, Status> {
        let principal = self.authorize(&request, Scope::RunsWrite).await?;
        let trace_id = trace_of(&request);
        let request = request.into_inner();
        let started_at_ms = reported_time("start_time", request.start_time.as_ref())?;
        let queued_at_ms = reported_time("queue_time", request.queue_time.as_ref())?;
        times_in_order(queued_at_ms, started_at_ms, None)?;
        let committed_at_ms = commit_time(&request.commit_sha, request.commit_time.as_ref())?;
        let start = Start {
            project: project_or_default(&request.project),
            workflow: &request.workflow,
            runner: RunnerType::Unspecified,
            run_url: &request.run_url,
            request_id: None,
            timeout: request.timeout.as_ref().map(run_timeout).transpose()?,
            started_at_ms,
            queued_at_ms,
            origin: Origin {
                attempt: request.attempt,
                branch: &request.branch,
                commit_sha: &request.commit_sha,
                trigger: &request.trigger,
                default_branch: &request.default_branch,
            },
            committed_at_ms,
            trace_id: trace_id.as_deref(),
        };
        let start = checked_start(&principal, start, request.runner_type, &request.request_id)?;
        let (workflow, run) = self.lifecycle.start(org(&principal), start).await?;
        tracing::debug!(run = %run.id, workflow = %workflow.name, "run started");
        Ok(Response::new(StartRunResponse {
            run: Some(run_to_proto(run, Some(&workflow))),
        }))
    }

    async fn report_run(
        &self,
        request: Request<ReportRunRequest>,
    ) -> Result<Response<ReportRunResponse>, Status> {
        let principal = self.authorize(&request, Scope::RunsWrite).await?;
        let trace_id = trace_of(&request);
        let request = request.into_inner();
        let required = |what: &str| {
            Error::InvalidArgument(format!("{what} is required: a report is of a finished run"))
        };
        let started_at_ms = reported_time("start_time", request.start_time.as_ref())?
            .ok_or_else(|| required("start_time"))?;
        let finished_at_ms = reported_time("finish_time", request.finish_time.as_ref())?
            .ok_or_else(|| required("finish_time"))?;
        let queued_at_ms = reported_time("queue_time", request.queue_time.as_ref())?;
        times_in_order(queued_at_ms, Some(started_at_ms), Some(finished_at_ms))?;
        let committed_at_ms = commit_time(&request.commit_sha, request.commit_time.as_ref())?;
        let status = reportable_outcome(request.status)?;
        validate_reason(&request.reason)?;
        let start = Start {
            project: project_or_default(&request.project),
            workflow: &request.workflow,
            runner: RunnerType::Unspecified,
            run_url: &request.run_url,
            request_id: None,
            timeout: None,
            started_at_ms: Some(started_at_ms),
            queued_at_ms,
            origin: Origin {
                attempt: request.attempt,
                branch: &request.branch,
                commit_sha: &request.commit_sha,
                trigger: &request.trigger,
                default_branch: &request.default_branch,
            },
            committed_at_ms,
            trace_id: trace_id.as_deref(),
        };
        let start = checked_start(&principal, start, request.runner_type, &request.request_id)?;
        let outcome = Outcome {
            status,
            reason: &request.reason,
            finished_at_ms: Some(finished_at_ms),
            trace_id: trace_id.as_deref(),
        };
        let reported = self
            .lifecycle
            .report(org(&principal), start, outcome)
            .await?;
        tracing::debug!(run = %reported.run.id, counted = reported.counted, "run reported");
        Ok(Response::new(ReportRunResponse {
            run: Some(run_to_proto(reported.run, Some(&reported.workflow))),
            counted: reported.counted,
        }))
    }

    async fn finish_run(
        &self,
        request: Request<FinishRunRequest>,
    ) -> Result<Response<FinishRunResponse>, Status> {
        let principal = self.authorize(&request, Scope::RunsWrite).await?;
        let trace_id = trace_of(&request);
        let request = request.into_inner();
        validate_run_id(&request.run_id)?;
        let status = reportable_outcome(request.status)?;
        validate_reason(&request.reason)?;
        let finished_at_ms = reported_time("finish_time", request.finish_time.as_ref())?;
        self.require_run_project(&principal, &request.run_id)
            .await?;
        let outcome = Outcome {
            status,
            reason: &request.reason,
            finished_at_ms,
            trace_id: trace_id.as_deref(),
        };
        let run = self
            .lifecycle
            .finish(Some(org(&principal)), &request.run_id, outcome)
            .await?;
        tracing::debug!(run = %run.id, status = %run.status, "run finished");
        let run = self.runs_to_proto(vec![run]).await?.pop();
        Ok(Response::new(FinishRunResponse { run }))
    }

    async fn get_run(
        &self,
        request: Request<GetRunRequest>,
    ) -> Result<Response<GetRunResponse>, Status> {
        let principal = self.authorize_any(&request).await?;
        let run_id = request.into_inner().run_id;
        validate_run_id(&run_id)?;
        let run = self.store().get_run(&principal.org_id, &run_id).await?;
        let run = self.runs_to_proto(vec![run]).await?.pop();
        if let Some(run) = &run {
            principal
                .require_project(&run.project)
                .map_err(Error::from)?;
        }
        Ok(Response::new(GetRunResponse { run }))
    }

    async fn list_runs(
        &self,
        request: Request<ListRunsRequest>,
    ) -> Result<Response<ListRunsResponse>, Status> {
        let principal = self.authorize_fresh(&request, Scope::MetricsRead).await?;
        let request = request.into_inner();
        let before = pagination::decode(&request.page_token).map_err(Error::from)?;
        let limit = pagination::page_size(request.page_size, 50, 1000);
        let mut filter = RunFilter {
            projects: principal.project_limit().map(<[String]>::to_vec),
            ..RunFilter::default()
        };
        if !request.workflow.is_empty() {
            let project = project_or_default(&request.project);
            principal.require_project(project).map_err(Error::from)?;
            match self
                .store()
                .find_workflow(&principal.org_id, project, &request.workflow)
                .await?
            {
                Some(w) => filter.workflow_id = Some(w.id),
                None => return Ok(Response::new(ListRunsResponse::default())),
            }
        } else if !request.project.is_empty() {
            validate_name("project", &request.project)?;
            principal
                .require_project(&request.project)
                .map_err(Error::from)?;
            filter.projects = Some(vec![request.project.clone()]);
        }
        filter.status = match RunStatus::try_from(request.status) {
            Ok(RunStatus::Unspecified) => None,
            Ok(status) => Some(status),
            Err(_) => {
                return Err(
                    Error::InvalidArgument(format!("unknown status {}", request.status)).into(),
                );
            }
        };
        let runs = self
            .store()
            .list_runs(&principal.org_id, &filter, before.as_deref(), limit)
            .await?;
        let next_page_token = next_token(&runs, limit, |r| &r.id);
        Ok(Response::new(ListRunsResponse {
            runs: self.runs_to_proto(runs).await?,
            next_page_token,
        }))
    }

    async fn list_workflows(
        &self,
        request: Request<ListWorkflowsRequest>,
    ) -> Result<Response<ListWorkflowsResponse>, Status> {
        let principal = self.authorize_fresh(&request, Scope::MetricsRead).await?;
        let request = request.into_inner();
        let after = pagination::decode(&request.page_token).map_err(Error::from)?;
        let limit = pagination::page_size(request.page_size, 100, 1000);
        let only_project;
        let projects = if request.project.is_empty() {
            principal.project_limit()
        } else {
            validate_name("project", &request.project)?;
            principal
                .require_project(&request.project)
                .map_err(Error::from)?;
            only_project = [request.project];
            Some(&only_project[..])
        };
        let workflows = self
            .store()
            .list_workflows(&principal.org_id, projects, after.as_deref(), limit)
            .await?;
        let next_page_token = next_token(&workflows, limit, |w| &w.id);
        Ok(Response::new(ListWorkflowsResponse {
            workflows: workflows.into_iter().map(workflow_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn delete_workflow(
        &self,
        request: Request<DeleteWorkflowRequest>,
    ) -> Result<Response<DeleteWorkflowResponse>, Status> {
        let principal = self
            .authorize_fresh(&request, Scope::WorkflowsDelete)
            .await?;
        let request = request.into_inner();
        let project = project_or_default(&request.project);
        validate_name("workflow", &request.workflow)?;
        validate_name("project", project)?;
        principal.require_project(project).map_err(Error::from)?;
        let deleted_runs = self
            .store()
            .delete_workflow(&principal.org_id, project, &request.workflow)
            .await?;
        tracing::info!(project, workflow = %request.workflow, deleted_runs, "workflow deleted");
        Ok(Response::new(DeleteWorkflowResponse { deleted_runs }))
    }

    async fn list_workflow_metrics(
        &self,
        request: Request<ListWorkflowMetricsRequest>,
    ) -> Result<Response<ListWorkflowMetricsResponse>, Status> {
        let principal = self.authorize(&request, Scope::MetricsRead).await?;
        let request = request.into_inner();
        let after = pagination::decode(&request.page_token).map_err(Error::from)?;
        let limit = pagination::page_size(request.page_size, 500, 5000);
        let store = self.store();
        let org_id = principal.org_id.as_str();
        let projects = principal.project_limit();
        let first_page = after.is_none();
        // Read before the aggregates (see `store::revisions`), with what is
        // true now.
        let (revision, now) = if first_page && request.now_apart {
            let (revision, now) = store.revision_and_now(org_id, projects).await?;
            (Some(revision), now)
        } else {
            (None, Vec::new())
        };
        if let Some(revision) = revision.as_ref().filter(|r| **r == request.known_revision) {
            // What the caller holds is current: only what is true now.
            let mut reply = ListWorkflowMetricsResponse::default();
            reply.revision.clone_from(revision);
            reply.unchanged = true;
            reply.now = now;
            return Ok(Response::new(reply));
        }
        // The environments go on the first page, read beside it.
        let environments = async {
            if first_page {
                store.environment_metrics(org_id, projects).await
            } else {
                Ok(Vec::new())
            }
        };
        let (page, environments) = tokio::try_join!(
            store.workflow_metrics(
                org_id,
                projects,
                after.as_deref(),
                limit,
                request.exemplars,
                request.now_apart,
            ),
            environments
        )?;
        let mut reply = page.workflows;
        for environment in &environments {
            reply.push_environment(environment);
        }
        reply.revision = revision.unwrap_or_default();
        reply.now = now;
        reply.next_page_token = page
            .more_after
            .as_deref()
            .map(pagination::encode)
            .unwrap_or_default();
        Ok(Response::new(reply))
    }

    async fn record_deployment(
        &self,
        request: Request<RecordDeploymentRequest>,
    ) -> Result<Response<RecordDeploymentResponse>, Status> {
        let principal = self.authorize(&request, Scope::RunsWrite).await?;
        let request = request.into_inner();
        let project = project_or_default(&request.project);
        validate_name("project", project)?;
        validate_name("environment", &request.environment)?;
        principal.require_project(project).map_err(Error::from)?;
        if request.commit_sha.is_empty() {
            return Err(Error::InvalidArgument(
                "commit_sha is required: a deployment deploys a commit".into(),
            )
            .into());
        }
        validate_origin(&Origin {
            commit_sha: &request.commit_sha,
            ..Origin::default()
        })?;
        validate_url("url", &request.url)?;
        let finished_at_ms = reported_time("finish_time", request.finish_time.as_ref())?
            .ok_or_else(|| {
                Error::InvalidArgument(
                    "finish_time is required: a deployment is recorded when it has finished".into(),
                )
            })?;
        let started_at_ms = reported_time("start_time", request.start_time.as_ref())?;
        times_in_order(None, started_at_ms, Some(finished_at_ms))?;
        let committed_at_ms = reported_time("commit_time", request.commit_time.as_ref())?;
        if committed_at_ms.is_some_and(|at| at > finished_at_ms) {
            return Err(Error::InvalidArgument(
                "commit_time is after finish_time: a deployment deploys a commit made before it"
                    .into(),
            )
            .into());
        }
        let status = match DeploymentStatus::try_from(request.status) {
            Ok(status @ (DeploymentStatus::Success | DeploymentStatus::Failure)) => status,
            Ok(DeploymentStatus::Unspecified) => {
                return Err(Error::InvalidArgument(
                    "status is required: DEPLOYMENT_STATUS_SUCCESS or DEPLOYMENT_STATUS_FAILURE"
                        .into(),
                )
                .into());
            }
            Err(_) => {
                return Err(Error::InvalidArgument(format!(
                    "unknown status {}: DEPLOYMENT_STATUS_SUCCESS or DEPLOYMENT_STATUS_FAILURE",
                    request.status
                ))
                .into());
            }
        };
        let kind = DeploymentKind::try_from(request.kind)
            .map_err(|_| Error::InvalidArgument(format!("unknown kind {}", request.kind)))?;
        let request_id = match request.request_id.as_str() {
            "" => None,
            id if id.chars().count() > 100 => {
                return Err(Error::InvalidArgument(
                    "request_id is longer than 100 characters".into(),
                )
                .into());
            }
            // The keys runplane makes: a caller's own would take their place.
            id if !principal.token_id.is_empty()
                && RESERVED_DEPLOYMENT_KEYS.iter().any(|p| id.starts_with(p)) =>
            {
                return Err(Error::InvalidArgument(format!(
                    "request_id {} starts like the keys of webhooks and deploy_workflows \
                     ({}): choose another",
                    runplane_api::input::quoted(id),
                    RESERVED_DEPLOYMENT_KEYS.join(", ")
                ))
                .into());
            }
            id => {
                validate_name("request_id", id)?;
                Some(id)
            }
        };
        let deployment = NewDeployment {
            project,
            environment: &request.environment,
            commit_sha: &request.commit_sha,
            committed_at_ms,
            started_at_ms,
            finished_at_ms,
            status,
            kind,
            url: &request.url,
            run_id: "",
            request_id,
        };
        let (deployment, counted) = self
            .store()
            .record_deployment(&principal.org_id, deployment)
            .await?;
        tracing::debug!(deployment = %deployment.id, counted, "deployment recorded");
        Ok(Response::new(RecordDeploymentResponse {
            deployment: Some(deployment_to_proto(deployment)),
            counted,
        }))
    }

    async fn delete_environment(
        &self,
        request: Request<DeleteEnvironmentRequest>,
    ) -> Result<Response<DeleteEnvironmentResponse>, Status> {
        let principal = self
            .authorize_fresh(&request, Scope::WorkflowsDelete)
            .await?;
        let request = request.into_inner();
        let project = project_or_default(&request.project);
        validate_name("environment", &request.environment)?;
        validate_name("project", project)?;
        principal.require_project(project).map_err(Error::from)?;
        let deleted_deployments = self
            .store()
            .delete_environment(&principal.org_id, project, &request.environment)
            .await?;
        tracing::info!(project, environment = %request.environment, deleted_deployments, "environment deleted");
        Ok(Response::new(DeleteEnvironmentResponse {
            deleted_deployments,
        }))
    }

    async fn list_deployments(
        &self,
        request: Request<ListDeploymentsRequest>,
    ) -> Result<Response<ListDeploymentsResponse>, Status> {
        let principal = self.authorize_fresh(&request, Scope::MetricsRead).await?;
        let request = request.into_inner();
        let before = pagination::decode(&request.page_token).map_err(Error::from)?;
        let limit = pagination::page_size(request.page_size, 50, 1000);
        let mut filter = DeploymentFilter {
            projects: principal.project_limit().map(<[String]>::to_vec),
            ..DeploymentFilter::default()
        };
        if !request.project.is_empty() {
            validate_name("project", &request.project)?;
            principal
                .require_project(&request.project)
                .map_err(Error::from)?;
            filter.project = Some(request.project);
        }
        if !request.environment.is_empty() {
            validate_name("environment", &request.environment)?;
            filter.environment = Some(request.environment);
        }
        let deployments = self
            .store()
            .list_deployments(&principal.org_id, &filter, before.as_deref(), limit)
            .await?;
        let next_page_token = next_token(&deployments, limit, |d| &d.id);
        Ok(Response::new(ListDeploymentsResponse {
            deployments: deployments.into_iter().map(deployment_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn report_job(
        &self,
        request: Request<ReportJobRequest>,
    ) -> Result<Response<ReportJobResponse>, Status> {
        let principal = self.authorize(&request, Scope::RunsWrite).await?;
        let mut request = request.into_inner();
        if !request.run_id.is_empty() {
            self.name_jobs_run(&principal, &mut request).await?;
        }
        let report = checked_job(&principal, request)?;
        let job = self.store().report_job(report).await?;
        tracing::debug!(job = %job.job_key, status = %job.status, "job reported");
        Ok(Response::new(ReportJobResponse {
            job: Some(job_to_proto(job)),
        }))
    }

    async fn list_jobs(
        &self,
        request: Request<ListJobsRequest>,
    ) -> Result<Response<ListJobsResponse>, Status> {
        let principal = self.authorize_fresh(&request, Scope::MetricsRead).await?;
        let request = request.into_inner();
        let before = pagination::decode(&request.page_token).map_err(Error::from)?;
        let limit = pagination::page_size(request.page_size, 50, 1000);
        let only_project;
        let projects = if request.project.is_empty() {
            principal.project_limit()
        } else {
            validate_name("project", &request.project)?;
            principal
                .require_project(&request.project)
                .map_err(Error::from)?;
            only_project = [request.project];
            Some(&only_project[..])
        };
        let run = Some(request.run_request_id.as_str()).filter(|r| !r.is_empty());
        let jobs = self
            .store()
            .list_jobs(&principal.org_id, projects, run, before.as_deref(), limit)
            .await?;
        let next_page_token = next_token(&jobs, limit, |j| &j.id);
        Ok(Response::new(ListJobsResponse {
            jobs: jobs.into_iter().map(job_to_proto).collect(),
            next_page_token,
        }))
    }
}
