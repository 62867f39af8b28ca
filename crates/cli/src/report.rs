//! `runplane run report` and `runplane run import`: whole runs, at their own
//! times, in one call each (after the fact, or backfilling history).

use std::io::BufRead;
use std::path::PathBuf;

use clap::Args;
use runplane_api::time::Timestamp;
use runplane_api::workflowrun::v1::{ReportRunRequest, ReportRunResponse, RunStatus, RunnerType};

use crate::cli::Global;
use crate::output::{RunJson, print_json, status_name};
use crate::run::{Outcome, Reporter};
use crate::runner_env;

/// A whole run to report.
#[derive(Debug, Clone, Args)]
pub(crate) struct ReportArgs {
    /// Workflow name (default: the CI's own name for it, as for `run start`).
    #[arg(long)]
    workflow: Option<String>,
    /// Project the workflow belongs to.
    #[arg(long, default_value = "default")]
    project: String,
    /// How the run ended.
    #[arg(long, value_enum)]
    status: Outcome,
    /// When it started: RFC 3339, e.g. `2026-11-25T10:00:00Z` or `…+01:00`.
    #[arg(long, value_parser = parse_time)]
    started_at: Timestamp,
    /// When it finished (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    finished_at: Timestamp,
    /// When it was queued, waiting for a runner (RFC 3339), if known.
    #[arg(long, value_parser = parse_time)]
    queued_at: Option<Timestamp>,
    /// CI system (default: detected from its environment variables).
    #[arg(long, value_parser = runner_env::parse_runner)]
    runner: Option<RunnerType>,
    /// Link to the run in the CI system.
    #[arg(long)]
    run_url: Option<String>,
    /// Why, in a few words (e.g. the failing step).
    #[arg(long, default_value = "")]
    reason: String,
    /// Idempotency key: reporting again with the same key counts nothing twice
    /// (default: derived from the project, workflow and times, as `run import`
    /// derives it, so a repeated report of the same run is recognised).
    #[arg(long)]
    request_id: Option<String>,
    #[command(flatten)]
    origin: runner_env::OriginArgs,
}

/// Runs to import.
#[derive(Debug, Clone, Args)]
pub(crate) struct ImportArgs {
    /// A file of JSON lines, `-` for standard input: one ReportRunRequest per
    /// line in the proto3 JSON mapping, e.g. `{"workflow": "build", "status":
    /// "RUN_STATUS_SUCCESS", "startTime": "2026-11-25T10:00:00Z", "finishTime":
    /// "2026-11-25T10:04:00Z"}` (runnerType: RUNNER_TYPE_GITHUB_ACTION, …).
    /// A line without `requestId` is keyed by the run it describes (project,
    /// workflow, start, finish), so importing again counts nothing twice.
    file: PathBuf,
    /// Reports in flight at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrency: u16,
}

/// `run report`.
pub(crate) async fn report(
    global: &Global,
    reporter: Reporter<'_>,
    args: ReportArgs,
) -> anyhow::Result<()> {
    let detected = runner_env::detect_from_process();
    let workflow = args.workflow.or(detected.workflow).ok_or_else(|| {
        anyhow::anyhow!(
            "which workflow? Give --workflow NAME (no CI workflow name found in the environment)"
        )
    })?;
    let origin = args.origin.resolve(detected.origin);
    let mut request = ReportRunRequest {
        workflow,
        project: args.project,
        runner_type: args.runner.unwrap_or(detected.runner).into(),
        run_url: args.run_url.or(detected.run_url).unwrap_or_default(),
        request_id: args.request_id.unwrap_or_default(),
        queue_time: args.queued_at,
        start_time: Some(args.started_at),
        finish_time: Some(args.finished_at),
        status: RunStatus::from(args.status).into(),
        reason: args.reason,
        attempt: origin.attempt,
        branch: origin.branch,
        commit_sha: origin.commit_sha,
        trigger: origin.trigger,
        default_branch: origin.default_branch,
        commit_time: origin.commit_time,
    };
    if request.request_id.is_empty() {
        request.request_id = run_key(&request);
    }
    let reported = send(&reporter, request).await?;
    let run = reported.run.unwrap_or_default();
    if global.json() {
        print_json(&RunJson::from(&run))?;
    } else if global.quiet {
        outln!("{}", run.id);
    } else {
        let again = if reported.counted {
            ""
        } else {
            " (already recorded: counted once)"
        };
        outln!(
            "Reported run {} of {}/{}: {}{again}.",
            run.id,
            run.project,
            run.workflow,
            status_name(run.status())
        );
    }
    Ok(())
}

/// `run import`: every line reported, failures named by line and summed up.
pub(crate) async fn import(
    global: &Global,
    reporter: Reporter<'_>,
    args: ImportArgs,
) -> anyhow::Result<std::process::ExitCode> {
    let mut input: Box<dyn BufRead> = if args.file.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(&args.file)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", args.file.display()))?;
        Box::new(std::io::BufReader::new(file))
    };
    let reporter = &reporter;
    let mut counts = Counts::default();
    let mut in_flight = Vec::new();
    let mut buffer = Vec::new();
    for number in 1.. {
        buffer.clear();
        let read = input
            .read_until(b'\n', &mut buffer)
            .map_err(|e| anyhow::anyhow!("line {number}: cannot read: {e}"))?;
        if read == 0 {
            break;
        }
        let parsed = match std::str::from_utf8(&buffer) {
            Err(_) => Err(anyhow::anyhow!("not UTF-8 text")),
            Ok(line) if line.trim().is_empty() => continue,
            Ok(line) if line.len() > MAX_LINE_BYTES => Err(anyhow::anyhow!(
                "longer than {} KiB: not a run",
                MAX_LINE_BYTES / 1024
            )),
            Ok(line) => parse_line(line),
        };
        let request = match parsed {
            Ok(request) => request,
            Err(e) => {
                eprintln!("runplane: line {number}: {e}");
                counts.failed += 1;
                continue;
            }
        };
        in_flight.push(async move { (number, send(reporter, request).await) });
        if in_flight.len() >= usize::from(args.concurrency) {
            counts.add(futures_util::future::join_all(std::mem::take(&mut in_flight)).await);
        }
    }
    counts.add(futures_util::future::join_all(in_flight).await);
    if global.json() {
        print_json(&serde_json::json!({
            "counted": counts.counted,
            "already_recorded": counts.repeated,
            "failed": counts.failed,
        }))?;
    } else if !global.quiet {
        outln!(
            "Imported {} run(s); {} already recorded; {} failed.",
            counts.counted,
            counts.repeated,
            counts.failed
        );
    }
    Ok(if counts.failed == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

#[derive(Default)]
struct Counts {
    counted: u64,
    repeated: u64,
    failed: u64,
}

impl Counts {
    fn add(&mut self, results: Vec<(usize, anyhow::Result<ReportRunResponse>)>) {
        for (number, result) in results {
            match result {
                Ok(r) if r.counted => self.counted += 1,
                Ok(_) => self.repeated += 1,
                Err(e) => {
                    eprintln!("runplane: line {number}: {e:#}");
                    self.failed += 1;
                }
            }
        }
    }
}

/// The longest line an import takes: a run is small.
const MAX_LINE_BYTES: usize = 64 * 1024;

/// One line of an import: a ReportRunRequest in the proto3 JSON mapping, keyed
/// by the run it describes when it names no key.
fn parse_line(line: &str) -> anyhow::Result<ReportRunRequest> {
    let mut request: ReportRunRequest = serde_json::from_str(line).map_err(|e| {
        anyhow::anyhow!("not a ReportRunRequest in JSON ({e}); expected e.g. {{\"workflow\": \"build\", \"status\": \"RUN_STATUS_SUCCESS\", \"startTime\": \"2026-11-25T10:00:00Z\", \"finishTime\": \"2026-11-25T10:04:00Z\"}}")
    })?;
    if request.request_id.is_empty() {
        request.request_id = run_key(&request);
    }
    Ok(request)
}

async fn send(
    reporter: &Reporter<'_>,
    request: ReportRunRequest,
) -> anyhow::Result<ReportRunResponse> {
    reporter
        .call(
            "reporting the run",
            request,
            |mut client, request| async move { client.report_run(request).await },
        )
        .await
}

/// The idempotency key of a report that names none: the run it describes
/// (its project, workflow, start and finish), however it is written, so that
/// `run report` and `run import` of one run, or an import reformatted, count
/// it once.
fn run_key(request: &ReportRunRequest) -> String {
    use sha2::Digest as _;
    let project = if request.project.is_empty() {
        runplane_api::workflow_name::DEFAULT_PROJECT
    } else {
        &request.project
    };
    let ms = |t: &Option<Timestamp>| t.as_ref().map(runplane_api::time::from_timestamp);
    let run = format!(
        "{project}\n{}\n{:?}\n{:?}",
        request.workflow,
        ms(&request.start_time),
        ms(&request.finish_time)
    );
    let digest = sha2::Sha256::digest(run.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("report-{hex}")
}

/// An RFC 3339 time, as a flag takes it.
pub(crate) fn parse_time(text: &str) -> Result<Timestamp, String> {
    runplane_api::time::parse_rfc3339(text).ok_or_else(|| {
        format!("`{text}` is not an RFC 3339 time such as 2026-11-25T10:00:00Z or 2026-11-25T11:00:00+01:00")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_lines_are_proto3_json_keyed_by_content() {
        let line = r#"{"workflow": "build", "project": "web", "status": "RUN_STATUS_ERROR", "startTime": "2026-11-25T10:00:00Z", "finishTime": "2026-11-25T10:04:00.5Z", "runnerType": "RUNNER_TYPE_GITHUB_ACTION"}"#;
        let request = parse_line(line).expect("parse");
        assert_eq!(request.workflow, "build");
        assert_eq!(request.status(), RunStatus::Error);
        assert_eq!(request.runner_type(), RunnerType::GithubAction);
        assert_eq!(request.finish_time.expect("finish").nanos, 500_000_000);
        assert!(request.request_id.starts_with("report-"));
        // The same run written otherwise: the same key.
        let rewritten = r#"{"finish_time":"2026-11-25T11:04:00.500+01:00","start_time":"2026-11-25T10:00:00Z","workflow":"build","project":"web","status":"RUN_STATUS_SUCCESS"}"#;
        assert_eq!(
            parse_line(rewritten).expect("rewritten").request_id,
            request.request_id
        );
        // In the default project, named or not.
        let unnamed = r#"{"workflow": "w", "startTime": "2026-11-25T10:00:00Z", "finishTime": "2026-11-25T10:01:00Z"}"#;
        let named = r#"{"workflow": "w", "project": "default", "startTime": "2026-11-25T10:00:00Z", "finishTime": "2026-11-25T10:01:00Z"}"#;
        assert_eq!(
            parse_line(unnamed).expect("unnamed").request_id,
            parse_line(named).expect("named").request_id
        );
        let err = parse_line(r#"{"workflw": "build"}"#).expect_err("unknown field");
        assert!(err.to_string().contains("workflw"), "{err}");
    }
}
