//! `runplane job …`: jobs of a run (a CI system's units within a workflow
//! run), reported from inside the CI job itself.
//!
//! A job belongs to a run: the one `--run` (or RUNPLANE_RUN_ID) names, as
//! `run start` printed it, else this CI run as the CI system numbers it
//! (GITHUB_RUN_ID and GITHUB_RUN_ATTEMPT, CI_PIPELINE_ID, …), in the workflow
//! detected from the environment or given with `--workflow`. Its key is made
//! from the run and the job's name, so `job start` and `job finish` in two
//! steps name the same job without passing anything between them.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use runplane_api::time::Timestamp;
use runplane_api::workflowrun::v1::{Job, JobStatus, ReportJobRequest, RunStatus};

use crate::cli::Global;
use crate::output::{print_json, status_name};
use crate::run::{Outcome, Reporter, TokenArg};
use crate::runner_env;
use runplane_api::workflow_name::DEFAULT_PROJECT;

#[derive(Debug, Subcommand)]
pub(crate) enum JobCommand {
    /// Record that a job of a run started (in progress from now).
    Start {
        #[command(flatten)]
        job: JobArgs,
        /// When it was queued, waiting for a runner (RFC 3339), if known.
        #[arg(long, value_parser = crate::report::parse_time)]
        queued_at: Option<Timestamp>,
        #[command(flatten)]
        token: TokenArg,
    },
    /// Record a job's outcome.
    Finish {
        #[command(flatten)]
        job: JobArgs,
        /// How the job ended.
        #[arg(long, value_enum)]
        status: Outcome,
        #[command(flatten)]
        token: TokenArg,
    },
    /// Start a job, run COMMAND, finish the job with its outcome, and exit
    /// with its exit code (whatever happens to the reporting).
    Exec {
        #[command(flatten)]
        job: JobArgs,
        #[command(flatten)]
        token: TokenArg,
        /// The command to run, after `--`.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
}

/// Which job, of which run.
#[derive(Debug, Clone, Args)]
pub(crate) struct JobArgs {
    /// The job's name, e.g. `test` (its series carry it as the `job` label).
    #[arg(long = "job", value_name = "NAME")]
    name: String,
    /// The run the job belongs to: the id `run start` printed (default: this
    /// CI run, with --workflow).
    #[arg(long = "run", env = "RUNPLANE_RUN_ID", value_name = "RUN_ID")]
    run_id: Option<String>,
    /// The workflow of this CI run (default: the run's, with --run; else the
    /// CI's own name for it, as `run start` finds it).
    #[arg(long)]
    workflow: Option<String>,
    /// The workflow's project (default: the run's, with --run; else `default`).
    #[arg(long)]
    project: Option<String>,
    /// The job's key, when the default does not tell two jobs apart (default:
    /// made from the run, the job's name and the CI's own job id where it
    /// has one: CI_JOB_ID, SYSTEM_JOBID, CIRCLE_BUILD_NUM).
    #[arg(long)]
    key: Option<String>,
}

impl JobArgs {
    /// The report of this job, in `status`, but for its times and outcome.
    fn request(&self, status: JobStatus) -> anyhow::Result<ReportJobRequest> {
        let detected = runner_env::detect_from_process();
        let mut request = ReportJobRequest {
            name: self.name.clone(),
            status: status.into(),
            runner_type: detected.runner.into(),
            ..ReportJobRequest::default()
        };
        let given_run = self
            .run_id
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty());
        let run = match given_run {
            Some(run_id) => {
                request.run_id = run_id.to_owned();
                // The service checks them against the run's, when given.
                request.workflow = self.workflow.clone().unwrap_or_default();
                request.project = self.project.clone().unwrap_or_default();
                run_id.to_owned()
            }
            None => {
                let key = detected.run_key.ok_or_else(|| {
                    anyhow::anyhow!(
                        "which run? Give --run RUN_ID (or set RUNPLANE_RUN_ID; `run start -q` \
                         prints it), or run this inside a CI job"
                    )
                })?;
                request.workflow = self.workflow.clone().or(detected.workflow).ok_or_else(|| {
                    anyhow::anyhow!(
                        "which workflow? Give --workflow NAME (no CI workflow name found in the environment)"
                    )
                })?;
                request.project = self
                    .project
                    .clone()
                    .unwrap_or_else(|| DEFAULT_PROJECT.to_owned());
                request.run_request_id = key.clone();
                format!("{}\n{}\n{key}", request.project, request.workflow)
            }
        };
        request.job_key = match &self.key {
            Some(key) => key.clone(),
            None => job_key(&run, &self.name, detected.job_id.as_deref()),
        };
        Ok(request)
    }
}

/// The key of job `name` of `run` (in CI job `ci_job`, where the CI numbers
/// its jobs): the same in every step of the job, another for a retried job
/// or another job of the same name.
fn job_key(run: &str, name: &str, ci_job: Option<&str>) -> String {
    use sha2::Digest as _;
    let ci_job = ci_job.unwrap_or_default();
    let digest = sha2::Sha256::digest(format!("{run}\n{name}\n{ci_job}").as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("cli-job:{hex}")
}

fn now() -> Timestamp {
    runplane_api::time::timestamp(runplane_api::time::now_ms())
}

/// Runs a job command.
pub(crate) async fn run(global: &Global, command: JobCommand) -> anyhow::Result<ExitCode> {
    let best_effort = match &command {
        JobCommand::Start { token, .. }
        | JobCommand::Finish { token, .. }
        | JobCommand::Exec { token, .. } => token.best_effort,
    };
    match report(global, command).await {
        Err(e) if best_effort => {
            eprintln!("runplane: warning: {e:#} (--best-effort: not failing the job)");
            Ok(ExitCode::SUCCESS)
        }
        outcome => outcome,
    }
}

async fn report(global: &Global, command: JobCommand) -> anyhow::Result<ExitCode> {
    match command {
        JobCommand::Start {
            job,
            queued_at,
            token,
        } => {
            let reporter = Reporter::new(global, token)?;
            let request = ReportJobRequest {
                queue_time: queued_at,
                start_time: Some(now()),
                ..job.request(JobStatus::InProgress)?
            };
            print(global, &send(&reporter, request).await?)?;
        }
        JobCommand::Finish { job, status, token } => {
            let reporter = Reporter::new(global, token)?;
            let outcome = RunStatus::from(status);
            let request = finished(job.request(JobStatus::Completed)?, outcome);
            let stored = send(&reporter, request).await?;
            same_outcome(&stored, outcome)?;
            print(global, &stored)?;
        }
        JobCommand::Exec {
            job,
            token,
            command,
        } => {
            let reporter = Reporter::new(global, token);
            let request = job.request(JobStatus::InProgress);
            return exec(global, reporter, request, command).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Fails when the job had finished before with another outcome, which stays.
fn same_outcome(job: &Job, outcome: RunStatus) -> anyhow::Result<()> {
    if job.outcome() != outcome {
        anyhow::bail!(
            "job {} had already finished as {}; a finished job's outcome does not change \
             (to report another job of this name, give it its own --key)",
            job.name,
            status_name(job.outcome())
        );
    }
    Ok(())
}

/// `request` as the report of the job completed now with `outcome`.
fn finished(request: ReportJobRequest, outcome: RunStatus) -> ReportJobRequest {
    ReportJobRequest {
        outcome: outcome.into(),
        finish_time: Some(now()),
        ..request
    }
}

async fn send(reporter: &Reporter<'_>, request: ReportJobRequest) -> anyhow::Result<Job> {
    let reported = reporter
        .call(
            "reporting the job",
            request,
            |mut client, request| async move { client.report_job(request).await },
        )
        .await?;
    Ok(reported.job.unwrap_or_default())
}

/// A job as the service stored it: JSON, its key (`-q`), or a sentence.
fn print(global: &Global, job: &Job) -> anyhow::Result<()> {
    if global.json() {
        return print_json(job);
    }
    if global.quiet {
        outln!("{}", job.job_key);
        return Ok(());
    }
    let state = match job.status() {
        JobStatus::Completed => format!("finished: {}", status_name(job.outcome())),
        JobStatus::InProgress => "started".to_owned(),
        _ => "queued".to_owned(),
    };
    let workflow = if job.workflow.is_empty() {
        String::new()
    } else {
        format!(" of {}/{}", job.project, job.workflow)
    };
    outln!("Job {}{workflow} {state}.", job.name);
    Ok(())
}

/// `job exec`: as `run exec`, the command's own exit code is ours, and it
/// runs whatever happens to the reporting (no token, no run to belong to,
/// runplane unreachable).
async fn exec(
    global: &Global,
    reporter: anyhow::Result<Reporter<'_>>,
    request: anyhow::Result<ReportJobRequest>,
    command: Vec<String>,
) -> anyhow::Result<ExitCode> {
    let started = match (reporter, request) {
        (Ok(reporter), Ok(request)) => {
            let start = ReportJobRequest {
                start_time: Some(now()),
                ..request.clone()
            };
            send(&reporter, start)
                .await
                .map(|job| (reporter, request, job))
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    let reporting = match started {
        Ok((reporter, request, job)) => {
            if !global.quiet {
                eprintln!("runplane: started job {}", job.name);
            }
            Some((reporter, request))
        }
        Err(e) => {
            eprintln!("runplane: warning: {e:#}; running the command unreported");
            None
        }
    };
    let (status, reason, code) = crate::child::run(&command).await?;
    let Some((reporter, request)) = reporting else {
        return Ok(ExitCode::from(code));
    };
    let completed = finished(
        ReportJobRequest {
            status: JobStatus::Completed.into(),
            // The service keeps 100 characters of it.
            conclusion: reason.chars().take(100).collect(),
            ..request
        },
        status,
    );
    let reported = send(&reporter, completed)
        .await
        .and_then(|job| same_outcome(&job, status).map(|()| job));
    match reported {
        Ok(job) if !global.quiet => {
            let why = if reason.is_empty() {
                String::new()
            } else {
                format!(" ({reason})")
            };
            eprintln!(
                "runplane: job {} finished: {}{why}",
                job.name,
                status_name(status)
            );
        }
        Ok(_) => {}
        Err(e) => eprintln!("runplane: warning: {e:#}; the command's outcome stands"),
    }
    Ok(ExitCode::from(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jobs_key_is_its_runs_and_names_and_fits_the_services_limit() {
        let key = job_key("0193-run", "test", None);
        assert_eq!(
            key,
            job_key("0193-run", "test", None),
            "the same in every step"
        );
        assert_ne!(key, job_key("0193-run", "build", None));
        assert_ne!(key, job_key("0194-run", "test", None));
        // A retried GitLab job has a job id of its own.
        assert_ne!(
            job_key("gitlab:5", "test", Some("100")),
            job_key("gitlab:5", "test", Some("101"))
        );
        assert!(key.len() <= 100, "{key}");
        assert!(job_key("r", &"x".repeat(200), Some("1")).len() <= 100);
    }
}
