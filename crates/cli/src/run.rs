//! `runplane run …`: what CI runners call to report their runs.

use std::future::Future;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand, ValueEnum};
use runplane_api::workflowrun::v1::workflow_run_service_client::WorkflowRunServiceClient;
use runplane_api::workflowrun::v1::{
    DeleteWorkflowRequest, FinishRunRequest, GetRunRequest, ListRunsRequest, Run, RunStatus,
    RunnerType, StartRunRequest,
};
use runplane_client::{UpstreamArgs, channel, with_bearer};

use runplane_api::time::from_timestamp;
use runplane_client::Channel;

use crate::cli::Global;
use crate::exit::describe;
use crate::output::{RunJson, format_time, print_json, run_duration_ms, status_name};
use crate::runner_env;
use runplane_api::workflow_name::DEFAULT_PROJECT;

#[derive(Debug, Subcommand)]
pub(crate) enum RunCommand {
    /// Record that a workflow run started; prints its run id.
    Start {
        #[command(flatten)]
        run: StartArgs,
        #[command(flatten)]
        token: TokenArg,
    },
    /// Record a run's outcome.
    Finish {
        /// The id `run start` printed.
        run_id: String,
        /// How the run ended.
        #[arg(long, value_enum)]
        status: Outcome,
        /// Why, in a few words (e.g. the failing step).
        #[arg(long, default_value = "")]
        reason: String,
        /// When it finished, if not now (RFC 3339, e.g. 2026-11-25T10:04:00Z).
        #[arg(long, value_parser = crate::report::parse_time)]
        finished_at: Option<runplane_api::time::Timestamp>,
        #[command(flatten)]
        token: TokenArg,
    },
    /// Record a whole run, started and finished, at its own times (e.g.
    /// after the fact); reporting the same run again counts it once.
    Report {
        #[command(flatten)]
        run: crate::report::ReportArgs,
        #[command(flatten)]
        token: TokenArg,
    },
    /// Backfill history: report every run of a JSON-lines file (see
    /// `run import --help` for the format); importing again counts nothing twice.
    Import {
        #[command(flatten)]
        import: crate::report::ImportArgs,
        #[command(flatten)]
        token: TokenArg,
    },
    /// Start a run, run COMMAND, finish the run with its outcome, and exit with its exit code.
    Exec {
        #[command(flatten)]
        run: StartArgs,
        #[command(flatten)]
        token: TokenArg,
        /// The command to run, after `--`.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Show one run: its state, times, runner, link and reason.
    Get {
        /// The run's id.
        run_id: String,
        #[command(flatten)]
        token: TokenArg,
    },
    /// List recent runs, newest first (needs `metrics:read`).
    List {
        /// Only this workflow's runs (in --project, default `default`).
        #[arg(long)]
        workflow: Option<String>,
        /// Only runs of this project's workflows.
        #[arg(long)]
        project: Option<String>,
        /// Only runs in this state, as the list prints it.
        #[arg(long, value_enum)]
        status: Option<ListStatus>,
        /// At most this many runs (1 to 1000).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i32).range(1..=1000))]
        limit: i32,
        #[command(flatten)]
        token: TokenArg,
    },
    /// Delete a workflow with all its runs; its series leave the next scrape.
    /// Needs a token with the `workflows:delete` scope.
    DeleteWorkflow {
        /// Workflow name.
        #[arg(long)]
        workflow: String,
        /// Its project (default: `default`).
        #[arg(long)]
        project: Option<String>,
        #[command(flatten)]
        token: TokenArg,
    },
}

/// Which run, of which workflow, from where.
#[derive(Debug, Clone, Args)]
pub(crate) struct StartArgs {
    /// Workflow name, e.g. `backend-release-production` (default, in a CI that
    /// is detected: its own name for it, GITHUB_WORKFLOW, CI_PIPELINE_NAME or
    /// `.gitlab-ci.yml`, JOB_NAME, BUILD_DEFINITIONNAME, CIRCLE_JOB,
    /// TEAMCITY_BUILDCONF_NAME).
    #[arg(long)]
    workflow: Option<String>,
    /// Project the workflow belongs to.
    #[arg(long, default_value = "default")]
    project: String,
    /// CI system (default: detected from its environment variables).
    #[arg(long, value_parser = runner_env::parse_runner)]
    runner: Option<RunnerType>,
    /// Link to this run in the CI system (default: detected where the CI sets one).
    #[arg(long)]
    run_url: Option<String>,
    /// Idempotency key: starting again with the same key returns the same run
    /// (default: one per invocation, so this command's own retries are safe).
    #[arg(long)]
    request_id: Option<String>,
    /// How long this run may take before it is marked expired, e.g. `6h` (at
    /// most 30d; default: the service's run_timeout). An outcome reported
    /// after expiry still replaces it.
    #[arg(long, value_parser = runplane_config::parse_duration)]
    timeout: Option<Duration>,
    /// When the run started, if not now (RFC 3339, e.g. 2026-11-25T10:00:00Z).
    #[arg(long, value_parser = crate::report::parse_time)]
    started_at: Option<runplane_api::time::Timestamp>,
    /// When the run was queued, waiting for a runner (RFC 3339), if known.
    #[arg(long, value_parser = crate::report::parse_time)]
    queued_at: Option<runplane_api::time::Timestamp>,
    #[command(flatten)]
    origin: runner_env::OriginArgs,
}

/// How a runner talks to runplane: its token, and how hard it tries.
#[derive(Debug, Clone, Args)]
pub(crate) struct TokenArg {
    /// Organization API token (prefer the environment variable: flags show in `ps`).
    #[arg(long, env = "RUNPLANE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Keep retrying a call that failed because runplane was unreachable or slow
    /// (UNAVAILABLE, DEADLINE_EXCEEDED) for this long, with exponential backoff.
    #[arg(long, env = "RUNPLANE_RETRY_FOR", default_value = "30s", value_parser = runplane_config::parse_duration)]
    retry_for: Duration,
    /// Never fail the CI job because of runplane: report failures as warnings and
    /// exit 0. (`run exec` always does: it runs the command and exits with its
    /// code, whatever happens to the reporting.)
    #[arg(long, env = "RUNPLANE_BEST_EFFORT")]
    pub(crate) best_effort: bool,
}

/// A run's reportable outcome.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Outcome {
    Success,
    Error,
    Canceled,
}

impl From<Outcome> for RunStatus {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Success => RunStatus::Success,
            Outcome::Error => RunStatus::Error,
            Outcome::Canceled => RunStatus::Canceled,
        }
    }
}

/// A run state to list, named as the list prints it.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ListStatus {
    /// Started, not finished yet.
    #[value(alias = "initialized", alias = "in-progress")]
    Running,
    Success,
    Error,
    Expired,
    Canceled,
}

impl From<ListStatus> for RunStatus {
    fn from(s: ListStatus) -> Self {
        match s {
            ListStatus::Running => RunStatus::Initialized,
            ListStatus::Success => RunStatus::Success,
            ListStatus::Error => RunStatus::Error,
            ListStatus::Expired => RunStatus::Expired,
            ListStatus::Canceled => RunStatus::Canceled,
        }
    }
}

pub(crate) struct Reporter<'a> {
    global: &'a Global,
    client: WorkflowRunServiceClient<Channel>,
    token: String,
    retry_for: Duration,
}

impl Reporter<'_> {
    fn fail(&self, status: tonic::Status) -> anyhow::Error {
        describe(
            &status,
            "workflow-run-service",
            &self.global.workflow_run_service_addr,
        )
    }

    /// Calls `attempt` until it succeeds, fails for good, or `retry_for` has
    /// passed: exponential backoff from 100 ms to 5 s, with jitter so that many
    /// runners do not retry in step.
    async fn with_retries<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T, tonic::Status>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let deadline = Instant::now() + self.retry_for;
        let mut delay = Duration::from_millis(100);
        loop {
            match attempt().await {
                Err(status)
                    if runplane_client::classify(&status).is_retryable()
                        && Instant::now() < deadline =>
                {
                    // The last pause ends at the deadline, for one more try.
                    let pause =
                        jittered(delay).min(deadline.saturating_duration_since(Instant::now()));
                    eprintln!(
                        "runplane: {what}: {} (retrying in {} ms)",
                        status.message(),
                        pause.as_millis()
                    );
                    tokio::time::sleep(pause).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                result => return result,
            }
        }
    }

    /// Sends `request` with the runner's token through `method`, retrying
    /// outages (see [`Reporter::with_retries`]); a final failure is described
    /// for a person.
    pub(crate) async fn call<Req, Resp, Fut>(
        &self,
        what: &str,
        request: Req,
        method: impl Fn(WorkflowRunServiceClient<Channel>, tonic::Request<Req>) -> Fut,
    ) -> anyhow::Result<Resp>
    where
        Req: Clone,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        self.with_retries(what, || {
            method(
                self.client.clone(),
                runner_request(request.clone(), &self.token),
            )
        })
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| self.fail(status))
    }

    async fn start(&mut self, args: StartArgs) -> anyhow::Result<Run> {
        let detected = runner_env::detect_from_process();
        let workflow = args.workflow.or(detected.workflow).ok_or_else(|| {
            anyhow::anyhow!(
                "which workflow? Give --workflow NAME (no CI workflow name found in the environment)"
            )
        })?;
        let origin = args.origin.resolve(detected.origin);
        let request = StartRunRequest {
            workflow,
            project: args.project,
            runner_type: args.runner.unwrap_or(detected.runner).into(),
            run_url: args.run_url.or(detected.run_url).unwrap_or_default(),
            request_id: args.request_id.unwrap_or_else(invocation_id),
            timeout: args.timeout.map(runplane_api::time::proto_duration),
            start_time: args.started_at,
            queue_time: args.queued_at,
            attempt: origin.attempt,
            branch: origin.branch,
            commit_sha: origin.commit_sha,
            trigger: origin.trigger,
            default_branch: origin.default_branch,
            commit_time: origin.commit_time,
        };
        let started = self
            .call(
                "starting the run",
                request,
                |mut client, request| async move { client.start_run(request).await },
            )
            .await?;
        Ok(started.run.unwrap_or_default())
    }

    /// Finishing is idempotent, so retrying it is always safe.
    async fn finish(
        &mut self,
        run_id: String,
        status: RunStatus,
        reason: String,
        finish_time: Option<runplane_api::time::Timestamp>,
    ) -> anyhow::Result<Run> {
        let request = FinishRunRequest {
            run_id,
            status: status.into(),
            reason,
            finish_time,
        };
        let finished = self
            .call(
                "finishing the run",
                request,
                |mut client, request| async move { client.finish_run(request).await },
            )
            .await?;
        Ok(finished.run.unwrap_or_default())
    }
}

impl<'a> Reporter<'a> {
    /// A reporter calling workflow-run-service with `token`'s credential.
    pub(crate) fn new(global: &'a Global, token: TokenArg) -> anyhow::Result<Self> {
        let upstream = UpstreamArgs {
            upstream_timeout: global.call_timeout,
            tls: global.tls.clone(),
        };
        let secret = token
            .token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no token: set RUNPLANE_TOKEN (or --token) to an organization API token"
                )
            })?;
        if !secret.chars().all(|c| c.is_ascii_graphic()) {
            anyhow::bail!(
                "the token holds characters no token has (spaces, non-ASCII or control \
                 characters): check RUNPLANE_TOKEN (or --token)"
            );
        }
        Ok(Reporter {
            global,
            client: WorkflowRunServiceClient::new(channel(
                &global.workflow_run_service_addr,
                &upstream,
            )?),
            token: secret.to_owned(),
            retry_for: token.retry_for,
        })
    }
}

/// Runs a run command.
pub(crate) async fn run(global: &Global, command: RunCommand) -> anyhow::Result<ExitCode> {
    let best_effort = match &command {
        RunCommand::Start { token, .. }
        | RunCommand::Finish { token, .. }
        | RunCommand::Report { token, .. }
        | RunCommand::Import { token, .. }
        | RunCommand::Exec { token, .. }
        | RunCommand::Get { token, .. }
        | RunCommand::List { token, .. }
        | RunCommand::DeleteWorkflow { token, .. } => token.best_effort,
    };
    let outcome = report(global, command).await;
    match outcome {
        Err(e) if best_effort => {
            eprintln!("runplane: warning: {e:#} (--best-effort: not failing the job)");
            Ok(ExitCode::SUCCESS)
        }
        outcome => outcome,
    }
}

async fn report(global: &Global, command: RunCommand) -> anyhow::Result<ExitCode> {
    match command {
        RunCommand::Start { run, token } => {
            let started = Reporter::new(global, token)?.start(run).await?;
            if global.json() {
                print_json(&RunJson::from(&started))?;
            } else if global.quiet {
                outln!("{}", started.id);
            } else {
                outln!(
                    "Started run {} of {}/{} ({}).",
                    started.id,
                    started.project,
                    started.workflow,
                    started.runner_type().label()
                );
            }
        }
        RunCommand::Finish {
            run_id,
            status,
            reason,
            finished_at,
            token,
        } => {
            let finished = Reporter::new(global, token)?
                .finish(run_id, status.into(), reason, finished_at)
                .await?;
            if global.json() {
                print_json(&RunJson::from(&finished))?;
            } else if !global.quiet {
                outln!(
                    "Run {} finished: {}.",
                    finished.id,
                    status_name(finished.status())
                );
            }
        }
        RunCommand::Report { run, token } => {
            crate::report::report(global, Reporter::new(global, token)?, run).await?;
        }
        RunCommand::Import { import, token } => {
            return crate::report::import(global, Reporter::new(global, token)?, import).await;
        }
        RunCommand::Exec {
            run,
            token,
            command,
        } => return exec(global, Reporter::new(global, token), run, command).await,
        RunCommand::Get { run_id, token } => {
            let run = Reporter::new(global, token)?
                .call(
                    "reading the run",
                    GetRunRequest { run_id },
                    |mut client, request| async move { client.get_run(request).await },
                )
                .await?
                .run
                .unwrap_or_default();
            print_run(global, &run)?;
        }
        RunCommand::DeleteWorkflow {
            workflow,
            project,
            token,
        } => {
            let request = DeleteWorkflowRequest {
                workflow: workflow.clone(),
                project: project.clone().unwrap_or_default(),
            };
            let deleted = Reporter::new(global, token)?
                .call(
                    "deleting a workflow",
                    request,
                    |mut client, request| async move { client.delete_workflow(request).await },
                )
                .await?
                .deleted_runs;
            if global.json() {
                let project = project.as_deref().unwrap_or(DEFAULT_PROJECT);
                print_json(&serde_json::json!({
                    "project": project,
                    "workflow": workflow,
                    "deleted_runs": deleted,
                }))?;
            } else if !global.quiet {
                let project = project.as_deref().unwrap_or(DEFAULT_PROJECT);
                outln!("Deleted workflow {project}/{workflow} and its {deleted} run(s).");
            }
        }
        RunCommand::List {
            workflow,
            project,
            status,
            limit,
            token,
        } => {
            let request = ListRunsRequest {
                workflow: workflow.unwrap_or_default(),
                project: project.unwrap_or_default(),
                status: status.map(RunStatus::from).unwrap_or_default().into(),
                page_size: limit,
                page_token: String::new(),
            };
            let runs = Reporter::new(global, token)?
                .call("listing runs", request, |mut client, request| async move {
                    client.list_runs(request).await
                })
                .await?
                .runs;
            print_runs(global, &runs)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One run: JSON, its id (`-q`), or a field a line.
fn print_run(global: &Global, run: &Run) -> anyhow::Result<()> {
    if global.json() {
        return print_json(&RunJson::from(run));
    }
    if global.quiet {
        outln!("{}", run.id);
        return Ok(());
    }
    let time =
        |at: &Option<runplane_api::time::Timestamp>| format_time(at.as_ref().map(from_timestamp));
    let or_dash = |text: &str| {
        if text.is_empty() {
            "-".to_owned()
        } else {
            text.to_owned()
        }
    };
    outln!("Run:       {}", run.id);
    outln!("Workflow:  {}/{}", run.project, run.workflow);
    outln!("Status:    {}", status_name(run.status()));
    outln!("Runner:    {}", run.runner_type().label());
    outln!("Started:   {}", time(&run.start_time));
    outln!("Finished:  {}", time(&run.finish_time));
    outln!("Duration:  {}", duration_text(run));
    if run.expire_time.is_some() && run.finish_time.is_none() {
        outln!("Expires:   {}", time(&run.expire_time));
    }
    if run.queue_time.is_some() {
        outln!("Queued:    {}", time(&run.queue_time));
    }
    if run.attempt > 0 {
        outln!("Attempt:   {}", run.attempt);
    }
    for (label, value) in [
        ("Branch:   ", &run.branch),
        ("Commit:   ", &run.commit_sha),
        ("Trigger:  ", &run.trigger),
    ] {
        if !value.is_empty() {
            outln!("{label} {value}");
        }
    }
    outln!("URL:       {}", or_dash(&run.run_url));
    outln!("Reason:    {}", or_dash(&run.reason));
    Ok(())
}

/// Runs: a JSON array, their ids (`-q`), or a table.
fn print_runs(global: &Global, runs: &[Run]) -> anyhow::Result<()> {
    if global.json() {
        return print_json(&runs.iter().map(RunJson::from).collect::<Vec<_>>());
    }
    if global.quiet {
        runs.iter().for_each(|run| outln!("{}", run.id));
        return Ok(());
    }
    outln!(
        "{:<38} {:<9} {:<22} {:>10}  {:<18} {:<30} {:<40} REASON",
        "RUN",
        "STATUS",
        "STARTED",
        "DURATION",
        "RUNNER",
        "WORKFLOW",
        "URL"
    );
    for run in runs {
        outln!(
            "{:<38} {:<9} {:<22} {:>10}  {:<18} {:<30} {:<40} {}",
            run.id,
            status_name(run.status()),
            format_time(run.start_time.as_ref().map(from_timestamp)),
            duration_text(run),
            run.runner_type().label(),
            format!("{}/{}", run.project, run.workflow),
            if run.run_url.is_empty() {
                "-"
            } else {
                &run.run_url
            },
            run.reason
        );
    }
    Ok(())
}

fn duration_text(run: &Run) -> String {
    match run_duration_ms(run) {
        Some(ms) => format!("{:.1}s", ms as f64 / 1000.0),
        None => "-".to_owned(),
    }
}

/// `run exec`: the command's own exit code is ours, so CI sees what it would
/// have seen without runplane.
async fn exec(
    global: &Global,
    reporter: anyhow::Result<Reporter<'_>>,
    args: StartArgs,
    command: Vec<String>,
) -> anyhow::Result<ExitCode> {
    // The command runs whatever happens to its reporting, a missing token
    // included: a CI job must not fail, nor pass without running, because
    // runplane could not be told about it.
    let started = match reporter {
        Ok(mut reporter) => match reporter.start(args).await {
            Ok(run) => Ok((reporter, run)),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    let (reporter, run) = match started {
        Ok((reporter, run)) => (Some(reporter), Some(run)),
        Err(e) => {
            eprintln!("runplane: warning: {e:#}; running the command unreported");
            (None, None)
        }
    };
    if let (Some(run), false) = (&run, global.quiet) {
        eprintln!(
            "runplane: started run {} of {}/{}",
            run.id, run.project, run.workflow
        );
    }
    let (status, reason, code) = crate::child::run(&command).await?;
    let (Some(mut reporter), Some(run)) = (reporter, run) else {
        return Ok(ExitCode::from(code));
    };
    match reporter.finish(run.id, status, reason.clone(), None).await {
        Ok(finished) if !global.quiet => {
            let why = if reason.is_empty() {
                String::new()
            } else {
                format!(" ({reason})")
            };
            eprintln!(
                "runplane: run {} finished: {}{why}",
                finished.id,
                status_name(status)
            );
        }
        Ok(_) => {}
        // The command's own exit code matters more to CI than our failure to report it.
        Err(e) => eprintln!("runplane: warning: {e:#}; the command's outcome stands"),
    }
    Ok(ExitCode::from(code))
}

/// An idempotency key for this invocation: its retries reuse it, a new
/// invocation gets another.
fn invocation_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("cli-{}-{nanos:x}", std::process::id())
}

/// Somewhere between half of `delay` and all of it, so that many runners do not
/// retry in step. (Spread, not secrecy: the clock's nanoseconds will do.)
fn jittered(delay: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let half = delay / 2;
    let spread = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX).max(1);
    half + Duration::from_nanos(u64::from(nanos) % spread)
}

/// A request with the runner's token, joined to the CI job's trace when the
/// runner exports one as `TRACEPARENT` (the W3C convention CI tools use).
fn runner_request<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = with_bearer(message, token);
    if let Some(value) = std::env::var("TRACEPARENT")
        .ok()
        .and_then(|v| v.trim().parse().ok())
    {
        request.metadata_mut().insert("traceparent", value);
    }
    request
}
