//! CI depth as the scrape shows it after known sequences: jobs queued, started
//! and completed (queue and duration from their own times), jobs reported out
//! of order or twice, retried attempts and flaky commits, the jobs and runs
//! waiting for a runner now, and the CLI's `job` commands.

use std::collections::BTreeMap;

use runplane_api::time::{Timestamp, now_ms, timestamp};
use runplane_api::workflowrun::v1::{
    JobStatus, ReportJobRequest, ReportRunRequest, RunStatus, RunnerType,
};

use crate::support::{Suite, bearer, text_samples};

fn at(ms: i64) -> Option<Timestamp> {
    Some(timestamp(ms))
}

/// A report of job `key` (named `name`) of workflow `ci` in run `run`.
fn job(key: &str, name: &str, run: &str, status: JobStatus) -> ReportJobRequest {
    ReportJobRequest {
        workflow: "ci".into(),
        run_request_id: run.into(),
        job_key: key.into(),
        name: name.into(),
        status: status.into(),
        runner_type: RunnerType::GithubAction.into(),
        ..Default::default()
    }
}

/// The scrape's samples of organization acme-corp.
async fn scrape(suite: &Suite, scraper: &str) -> (BTreeMap<String, f64>, String) {
    let scrape = suite
        .scrape("acme-corp", Some(&format!("Bearer {scraper}")))
        .await;
    assert_eq!(scrape.status, 200, "{}", scrape.body);
    crate::support::promtool_check(&scrape.body).expect("promtool accepts the exposition");
    (text_samples(&scrape.body), scrape.body)
}

/// `metric{job=…,org=acme-corp,project=default,[status=…,]workflow=ci}`.
fn job_series(metric: &str, name: &str, status: Option<&str>) -> String {
    match status {
        Some(status) => format!(
            "{metric}{{job={name},org=acme-corp,project=default,status={status},workflow=ci}}"
        ),
        None => format!("{metric}{{job={name},org=acme-corp,project=default,workflow=ci}}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_count_their_queue_and_duration_once_whatever_order_their_reports_arrive_in() {
    let mut suite = Suite::new("");
    suite.up().await;
    let (scraper, runner) = suite.org_with_tokens("acme-corp").await;
    let mut client = suite.workflow_runs().await;
    let queued_at = now_ms() - 600_000;

    // `build`: queued, then in progress 30 s later, then completed 2 min after.
    let mut queued = job("gh-job:1", "build", "gh:7:1", JobStatus::Queued);
    queued.queue_time = at(queued_at);
    client
        .report_job(bearer(queued.clone(), &runner))
        .await
        .expect("queued");
    // A second job of the same run waits too, and one of another run.
    for (key, run) in [("gh-job:2", "gh:7:1"), ("gh-job:3", "gh:8:1")] {
        let mut waiting = job(key, "lint", run, JobStatus::Queued);
        waiting.queue_time = at(queued_at);
        client
            .report_job(bearer(waiting, &runner))
            .await
            .expect("queued");
    }
    let (samples, body) = scrape(&suite, &scraper).await;
    let per_workflow =
        |metric: &str| format!("{metric}{{org=acme-corp,project=default,workflow=ci}}");
    assert_eq!(
        samples.get(&per_workflow("chainloop_workflow_jobs_queued")),
        Some(&3.0),
        "{body}"
    );
    assert_eq!(
        samples.get(&per_workflow("chainloop_workflow_runs_queued")),
        Some(&2.0),
        "{body}"
    );

    let mut started = job("gh-job:1", "build", "gh:7:1", JobStatus::InProgress);
    started.queue_time = at(queued_at);
    started.start_time = at(queued_at + 30_000);
    client
        .report_job(bearer(started.clone(), &runner))
        .await
        .expect("in progress");
    let mut completed = job("gh-job:1", "build", "gh:7:1", JobStatus::Completed);
    completed.outcome = RunStatus::Success.into();
    completed.queue_time = at(queued_at);
    completed.start_time = at(queued_at + 30_000);
    completed.finish_time = at(queued_at + 150_000);
    for _ in 0..2 {
        client
            .report_job(bearer(completed.clone(), &runner))
            .await
            .expect("completed, and redelivered");
    }
    // A stale delivery after the completion changes nothing.
    client
        .report_job(bearer(queued, &runner))
        .await
        .expect("stale");

    // `test`: completed (failed) first, its queued and started reports after.
    let mut failed = job("gh-job:4", "test", "gh:7:1", JobStatus::Completed);
    failed.outcome = RunStatus::Error.into();
    failed.queue_time = at(queued_at);
    failed.start_time = at(queued_at + 5_000);
    failed.finish_time = at(queued_at + 65_000);
    client
        .report_job(bearer(failed, &runner))
        .await
        .expect("completed first");
    for status in [JobStatus::Queued, JobStatus::InProgress] {
        let mut late = job("gh-job:4", "test", "gh:7:1", status);
        late.queue_time = at(queued_at);
        late.start_time = at(queued_at + 1_000).filter(|_| status == JobStatus::InProgress);
        client
            .report_job(bearer(late, &runner))
            .await
            .expect("late");
    }

    let (samples, body) = scrape(&suite, &scraper).await;
    let get = |key: String| samples.get(&key).copied();
    let expected = [
        (
            job_series("chainloop_workflow_jobs_total", "build", Some("success")),
            1.0,
        ),
        (
            job_series(
                "chainloop_workflow_job_duration_seconds_sum",
                "build",
                Some("success"),
            ),
            120.0,
        ),
        (
            job_series(
                "chainloop_workflow_job_duration_seconds_count",
                "build",
                Some("success"),
            ),
            1.0,
        ),
        (
            job_series("chainloop_workflow_job_queue_seconds_sum", "build", None),
            30.0,
        ),
        (
            job_series("chainloop_workflow_job_queue_seconds_count", "build", None),
            1.0,
        ),
        (job_series("chainloop_workflow_job_up", "build", None), 1.0),
        (
            job_series("chainloop_workflow_jobs_total", "test", Some("error")),
            1.0,
        ),
        (
            job_series(
                "chainloop_workflow_job_duration_seconds_sum",
                "test",
                Some("error"),
            ),
            60.0,
        ),
        (
            job_series("chainloop_workflow_job_queue_seconds_sum", "test", None),
            5.0,
        ),
        (job_series("chainloop_workflow_job_up", "test", None), 0.0),
        // build and test no longer wait; two lint jobs do, of two runs.
        (per_workflow("chainloop_workflow_jobs_queued"), 2.0),
        (per_workflow("chainloop_workflow_runs_queued"), 2.0),
    ];
    for (key, value) in expected {
        assert_eq!(get(key.clone()), Some(value), "{key} in\n{body}");
    }
    // Buckets from the default sets: 120 s is within le=120 and not le=90.
    let bucket = |le: &str| {
        format!(
            "chainloop_workflow_job_duration_seconds_bucket{{job=build,le={le},org=acme-corp,project=default,status=success,workflow=ci}}"
        )
    };
    assert_eq!(get(bucket("90")), Some(0.0), "{body}");
    assert_eq!(get(bucket("120")), Some(1.0), "{body}");
    // Only outcomes that happened have series.
    assert!(
        !body.contains("job=\"build\",org=\"acme-corp\",project=\"default\",status=\"error\""),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_attempt_that_passes_makes_its_commit_flaky_once_in_any_order() {
    let mut suite = Suite::new("");
    suite.up().await;
    let (scraper, runner) = suite.org_with_tokens("acme-corp").await;
    let mut client = suite.workflow_runs().await;
    let hour_ago = now_ms() - 3_600_000;
    let run = |workflow: &str, attempt: u32, status: RunStatus, commit: &str, started: i64| {
        ReportRunRequest {
            workflow: workflow.into(),
            runner_type: RunnerType::GithubAction.into(),
            request_id: format!("github:{commit}:{attempt}"),
            start_time: at(started),
            finish_time: at(started + 60_000),
            status: status.into(),
            attempt,
            commit_sha: commit.into(),
            ..Default::default()
        }
    };
    // In order: attempt 1 fails, attempt 2 passes.
    for report in [
        run("deploy", 1, RunStatus::Error, "aaaa", hour_ago),
        run("deploy", 2, RunStatus::Success, "aaaa", hour_ago + 120_000),
    ] {
        client
            .report_run(bearer(report, &runner))
            .await
            .expect("report");
    }
    // Out of order: the passing second attempt arrives before the failed first.
    for report in [
        run("release", 2, RunStatus::Success, "bbbb", hour_ago + 120_000),
        run("release", 1, RunStatus::Error, "bbbb", hour_ago),
        // A third attempt of the commit, and a failure after its first success:
        // the commit was flaky already.
        run("release", 3, RunStatus::Success, "bbbb", hour_ago + 240_000),
        run("release", 4, RunStatus::Error, "bbbb", hour_ago + 360_000),
    ] {
        client
            .report_run(bearer(report, &runner))
            .await
            .expect("report");
    }
    // Another commit that only ever passed is not flaky.
    client
        .report_run(bearer(
            run("release", 1, RunStatus::Success, "cccc", hour_ago + 1_000),
            &runner,
        ))
        .await
        .expect("report");

    let (samples, body) = scrape(&suite, &scraper).await;
    let get = |key: &str| samples.get(key).copied();
    let per = |metric: &str, workflow: &str| {
        format!("{metric}{{org=acme-corp,project=default,workflow={workflow}}}")
    };
    let attempt = |workflow: &str, n: &str| {
        format!(
            "chainloop_workflow_runs_by_attempt_total{{attempt={n},org=acme-corp,project=default,workflow={workflow}}}"
        )
    };
    assert_eq!(
        get(&per("chainloop_workflow_flaky_runs_total", "deploy")),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        get(&per("chainloop_workflow_flaky_runs_total", "release")),
        Some(1.0),
        "{body}"
    );
    assert_eq!(get(&attempt("deploy", "1")), Some(1.0), "{body}");
    assert_eq!(get(&attempt("deploy", "2")), Some(1.0), "{body}");
    assert_eq!(get(&attempt("release", "1")), Some(2.0), "{body}");
    assert_eq!(get(&attempt("release", "4+")), Some(1.0), "{body}");
    // `up` follows the newest finished attempt: deploy's passing retry, and
    // release's fourth attempt, which failed.
    let up = |workflow: &str| {
        format!(
            "chainloop_workflow_up{{org=acme-corp,project=default,runner=GITHUB_ACTION,workflow={workflow}}}"
        )
    };
    assert_eq!(get(&up("deploy")), Some(1.0), "{body}");
    assert_eq!(get(&up("release")), Some(0.0), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reports_jobs_of_its_run_or_of_the_ci_run_and_keeps_the_commands_exit_code() {
    let mut suite = Suite::new("");
    suite.up().await;
    let (scraper, runner) = suite.org_with_tokens("acme-corp").await;
    let token = [("RUNPLANE_TOKEN", runner.as_str())];

    // Outside CI: the run `run start` printed, through RUNPLANE_RUN_ID.
    let run_id = suite
        .cli_with_env(&["run", "start", "--workflow", "ci", "-q"], &token)
        .await
        .ok();
    let with_run = [
        ("RUNPLANE_TOKEN", runner.as_str()),
        ("RUNPLANE_RUN_ID", run_id.as_str()),
    ];
    let started = suite
        .cli_with_env(&["job", "start", "--job", "build"], &with_run)
        .await
        .ok();
    assert!(
        started.contains("Job build of default/ci started"),
        "{started}"
    );
    let finished = suite
        .cli_with_env(
            &[
                "job", "finish", "--job", "build", "--status", "success", "-o", "json",
            ],
            &with_run,
        )
        .await
        .ok();
    let job: serde_json::Value = serde_json::from_str(&finished).expect("json");
    assert_eq!(job["status"], "JOB_STATUS_COMPLETED", "{job}");
    assert_eq!(job["outcome"], "RUN_STATUS_SUCCESS", "{job}");

    // Inside a GitHub Actions job: the CI run's key and workflow, no --run.
    let github = [
        ("RUNPLANE_TOKEN", runner.as_str()),
        ("GITHUB_ACTIONS", "true"),
        ("GITHUB_WORKFLOW", "ci"),
        ("GITHUB_RUN_ID", "5001"),
        ("GITHUB_RUN_ATTEMPT", "1"),
    ];
    let exec = suite
        .cli_with_env(
            &["job", "exec", "--job", "test", "--", "sh", "-c", "exit 3"],
            &github,
        )
        .await;
    assert_eq!(exec.status.code(), Some(3), "{exec:?}");
    // A job with no run to belong to is refused, naming what to give.
    let outside = suite
        .cli_with_env(&["job", "start", "--job", "x"], &token)
        .await
        .err();
    assert!(outside.contains("--run"), "{outside}");
    // `exec` runs the command whatever happens to the reporting, and keeps
    // its exit code, best-effort or not: no run, no token at all.
    for (args, env) in [
        (&["job", "exec", "--job", "x"][..], &token[..]),
        (&["job", "exec", "--best-effort", "--job", "x"], &token),
        (&["job", "exec", "--job", "x"], &[]),
        (&["run", "exec", "--best-effort", "--workflow", "w"], &[]),
    ] {
        let marker = suite.dir.path().join("ran");
        let _ = std::fs::remove_file(&marker);
        let script = format!("touch {}; exit 4", marker.display());
        let mut argv = args.to_vec();
        argv.extend(["--", "sh", "-c", &script]);
        let ran = suite.cli_with_env(&argv, env).await;
        assert_eq!(ran.status.code(), Some(4), "{args:?}: {ran:?}");
        assert!(marker.exists(), "{args:?} did not run the command");
        assert!(
            ran.stderr.contains("running the command unreported"),
            "{ran:?}"
        );
    }
    // A GitLab job retried in its pipeline is another job (CI_JOB_ID): both count.
    for (job_id, command) in [("100", "false"), ("101", "true")] {
        let gitlab = [
            ("RUNPLANE_TOKEN", runner.as_str()),
            ("GITLAB_CI", "true"),
            ("CI_PIPELINE_ID", "5555"),
            ("CI_JOB_ID", job_id),
        ];
        suite
            .cli_with_env(&["job", "exec", "--job", "deploy", "--", command], &gitlab)
            .await;
    }
    // Finishing a finished job otherwise is refused: its outcome stays.
    let again = suite
        .cli_with_env(
            &["job", "finish", "--job", "build", "--status", "error"],
            &with_run,
        )
        .await
        .err();
    assert!(again.contains("already finished as success"), "{again}");

    let (samples, body) = scrape(&suite, &scraper).await;
    assert_eq!(
        samples.get(&job_series(
            "chainloop_workflow_jobs_total",
            "build",
            Some("success")
        )),
        Some(&1.0),
        "{body}"
    );
    assert_eq!(
        samples.get(&job_series(
            "chainloop_workflow_jobs_total",
            "test",
            Some("error")
        )),
        Some(&1.0),
        "{body}"
    );
    assert_eq!(
        samples.get(&job_series("chainloop_workflow_job_up", "test", None)),
        Some(&0.0),
        "{body}"
    );
    // The unnamed GitLab pipeline is its file, as its webhooks name it.
    for status in ["error", "success"] {
        let key = format!(
            "chainloop_workflow_jobs_total{{job=deploy,org=acme-corp,project=default,status={status},workflow=.gitlab-ci.yml}}"
        );
        assert_eq!(samples.get(&key), Some(&1.0), "{key} in\n{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_branch_label_default_the_default_branch_is_told_from_the_others() {
    let mut suite = Suite::new("branch_label: default\n");
    suite.up().await;
    let (scraper, runner) = suite.org_with_tokens("acme-corp").await;
    let mut client = suite.workflow_runs().await;
    let hour_ago = now_ms() - 3_600_000;
    let run = |key: &str, branch: &str, default_branch: &str, status: RunStatus, at_ms: i64| {
        ReportRunRequest {
            workflow: "ci".into(),
            runner_type: RunnerType::GithubAction.into(),
            request_id: key.into(),
            start_time: at(at_ms),
            finish_time: at(at_ms + 30_000),
            status: status.into(),
            branch: branch.into(),
            default_branch: default_branch.into(),
            ..Default::default()
        }
    };
    for report in [
        run("1", "trunk", "trunk", RunStatus::Success, hour_ago),
        run(
            "2",
            "feature/login",
            "trunk",
            RunStatus::Error,
            hour_ago + 60_000,
        ),
        // The default branch is remembered from earlier runs.
        run("3", "trunk", "", RunStatus::Success, hour_ago + 120_000),
        run("4", "fix/typo", "", RunStatus::Success, hour_ago + 30_000),
    ] {
        client
            .report_run(bearer(report, &runner))
            .await
            .expect("report");
    }
    let (samples, body) = scrape(&suite, &scraper).await;
    let get = |key: &str| samples.get(key).copied();
    let up = |branch: &str| {
        format!(
            "chainloop_workflow_up{{branch={branch},org=acme-corp,project=default,runner=GITHUB_ACTION,workflow=ci}}"
        )
    };
    let runs = |branch: &str, status: &str| {
        format!(
            "chainloop_workflow_runs_total{{branch={branch},org=acme-corp,project=default,runner=GITHUB_ACTION,status={status},workflow=ci}}"
        )
    };
    assert_eq!(get(&up("trunk")), Some(1.0), "{body}");
    // The newest run of the other branches (feature/login's failure) is what `other` shows.
    assert_eq!(get(&up("other")), Some(0.0), "{body}");
    assert_eq!(get(&runs("trunk", "success")), Some(2.0), "{body}");
    assert_eq!(get(&runs("other", "success")), Some(1.0), "{body}");
    assert_eq!(get(&runs("other", "error")), Some(1.0), "{body}");
    assert_eq!(
        get(
            "chainloop_workflow_run_duration_seconds_count{branch=trunk,org=acme-corp,project=default,runner=GITHUB_ACTION,status=success,workflow=ci}"
        ),
        Some(2.0),
        "{body}"
    );
    // Every run series is labelled: no workflow_up without a branch.
    assert!(!body.contains("chainloop_workflow_up{org="), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openmetrics_buckets_carry_the_newest_run_that_fell_in_them_with_its_trace() {
    let mut suite = Suite::new("");
    suite.up().await;
    let (scraper, runner) = suite.org_with_tokens("acme-corp").await;
    let mut client = suite.workflow_runs().await;
    let hour_ago = now_ms() - 3_600_000;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    // A run reported in a trace (as a CI job exporting TRACEPARENT would), 45 s long.
    let mut request = bearer(
        ReportRunRequest {
            workflow: "deploy".into(),
            runner_type: RunnerType::GithubAction.into(),
            request_id: "traced".into(),
            queue_time: at(hour_ago - 20_000),
            start_time: at(hour_ago),
            finish_time: at(hour_ago + 45_000),
            status: RunStatus::Success.into(),
            ..Default::default()
        },
        &runner,
    );
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace}-00f067aa0ba902b7-01")
            .parse()
            .expect("header"),
    );
    let traced = client
        .report_run(request)
        .await
        .expect("report")
        .into_inner()
        .run
        .expect("run");
    // The CLI passes the CI job's TRACEPARENT on: a run 5 s long, later.
    let cli_trace = "0af7651916cd43dd8448eb211c80319c";
    suite
        .cli_with_env(
            &[
                "run",
                "report",
                "--workflow",
                "deploy",
                "--runner",
                "GITHUB_ACTION",
                "--status",
                "success",
                "--started-at",
                &rfc3339(hour_ago + 60_000),
                "--finished-at",
                &rfc3339(hour_ago + 65_000),
            ],
            &[
                ("RUNPLANE_TOKEN", runner.as_str()),
                (
                    "TRACEPARENT",
                    &format!("00-{cli_trace}-b7ad6b7169203331-01"),
                ),
            ],
        )
        .await
        .ok();

    let om = suite
        .get_with(
            &suite.metrics_url("acme-corp"),
            &[
                ("authorization", &format!("Bearer {scraper}")),
                ("accept", "application/openmetrics-text; version=1.0.0"),
            ],
        )
        .await;
    assert_eq!(om.status, 200, "{}", om.body);
    let samples = crate::support::parse_openmetrics(&om.body)
        .unwrap_or_else(|e| panic!("prometheus_client refuses it: {e}\n{}", om.body));
    let exemplar_of = |name: &str, le: &str| {
        samples
            .iter()
            .find(|s| {
                s.name == name
                    && s.labels.get("le").map(String::as_str) == Some(le)
                    && s.labels.get("workflow").map(String::as_str) == Some("deploy")
            })
            .unwrap_or_else(|| panic!("no {name} le={le} in\n{}", om.body))
            .exemplar
            .as_ref()
    };
    // 45 s fell in le=60 (not le=30), 5 s in le=10.
    let slow = exemplar_of("chainloop_workflow_run_duration_seconds_bucket", "60.0")
        .expect("an exemplar on le=60");
    assert_eq!(slow.labels.get("run_id"), Some(&traced.id), "{}", om.body);
    assert_eq!(slow.labels.get("trace_id").map(String::as_str), Some(trace));
    assert_eq!(slow.value, 45.0);
    assert!(slow.timestamp.is_some());
    assert!(exemplar_of("chainloop_workflow_run_duration_seconds_bucket", "30.0").is_none());
    let fast = exemplar_of("chainloop_workflow_run_duration_seconds_bucket", "10.0")
        .expect("an exemplar on le=10");
    assert_eq!(
        fast.labels.get("trace_id").map(String::as_str),
        Some(cli_trace)
    );
    // The queue histogram's: 20 s waited, in le=30.
    let queued = exemplar_of("chainloop_workflow_run_queue_seconds_bucket", "30.0")
        .expect("an exemplar on the queue's le=30");
    assert_eq!(queued.labels.get("run_id"), Some(&traced.id));
    // The text format carries none.
    let (_, text) = scrape(&suite, &scraper).await;
    assert!(!text.contains(" # {"), "{text}");
}

fn rfc3339(ms: i64) -> String {
    humantime::format_rfc3339_millis(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).expect("ms")),
    )
    .to_string()
}

/// The series of a scrape, by family, and the organization's dropped count.
fn series_count(body: &str) -> usize {
    body.lines()
        .filter(|l| !l.starts_with('#') && l.starts_with("chainloop_workflow_"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cardinality_settings_drop_families_labels_and_workflows_past_the_budget() {
    // Two workflows: `a` (first created) has 20 series at the default
    // settings with one outcome, `b` likewise; a budget of 30 keeps `a` only.
    let mut suite = Suite::new(
        "metrics_service:\n  max_series_per_org: 30\n  drop_labels: [runner]\n  \
         disabled_metrics: [workflow_last_run_duration_seconds]\n",
    );
    suite.up().await;
    let (scraper, runner) = suite.org_with_tokens("acme-corp").await;
    let mut client = suite.workflow_runs().await;
    let hour_ago = now_ms() - 3_600_000;
    for (key, workflow, runner_type) in [
        ("1", "a", RunnerType::GithubAction),
        ("2", "a", RunnerType::JenkinsJob),
        ("3", "b", RunnerType::GithubAction),
    ] {
        let report = ReportRunRequest {
            workflow: workflow.into(),
            runner_type: runner_type.into(),
            request_id: key.into(),
            start_time: at(hour_ago),
            finish_time: at(hour_ago + 5_000),
            status: RunStatus::Success.into(),
            ..Default::default()
        };
        client
            .report_run(bearer(report, &runner))
            .await
            .expect("report");
    }
    let (samples, body) = scrape(&suite, &scraper).await;
    // `a`'s two runners are one series set: 20 series, less the disabled family's one.
    assert_eq!(series_count(&body), 19, "{body}");
    assert_eq!(
        samples.get(
            "chainloop_workflow_runs_total{org=acme-corp,project=default,status=success,workflow=a}"
        ),
        Some(&2.0),
        "{body}"
    );
    assert!(!body.contains("runner="), "{body}");
    assert!(
        !body.contains("workflow_last_run_duration_seconds"),
        "{body}"
    );
    assert!(!body.contains("workflow=\"b\""), "{body}");
    assert_eq!(
        samples.get("chainloop_org_series_dropped{org=acme-corp}"),
        Some(&19.0),
        "{body}"
    );
    assert_eq!(
        samples.get("chainloop_org_workflows{org=acme-corp}"),
        Some(&2.0),
        "{body}"
    );

    // A setting that names no family is refused at start, naming it.
    let bad = Suite::new("disabled_metrics: [workflow_nonsense]\n");
    let refused = bad.up_to_completion().await;
    assert!(!refused.status.success());
    assert!(refused.stderr.contains("workflow_nonsense"), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_limited_to_one_project_can_neither_take_over_nor_block_another_projects_job() {
    let mut suite = Suite::new("");
    suite.up().await;
    let (scraper, runner) = suite.org_with_tokens("acme-corp").await;
    let web = suite
        .token(
            "acme-corp",
            "web-ci",
            &["--scope", "runs:write", "--project", "web"],
        )
        .await;
    let mut client = suite.workflow_runs().await;
    let in_default = |status: JobStatus, outcome: RunStatus| ReportJobRequest {
        workflow: "deploy".into(),
        job_key: "github-job:777".into(),
        name: "release".into(),
        status: status.into(),
        outcome: outcome.into(),
        ..Default::default()
    };
    // The web team squats the key first, with a failure, in its own project.
    let squat = ReportJobRequest {
        project: "web".into(),
        ..in_default(JobStatus::Completed, RunStatus::Error)
    };
    client
        .report_job(bearer(squat.clone(), &web))
        .await
        .expect("web's own job");
    // Naming the other project is refused outright.
    let refused = client
        .report_job(bearer(
            in_default(JobStatus::Completed, RunStatus::Error),
            &web,
        ))
        .await
        .expect_err("another project");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    // The genuine job of project default is its own, and counts as it ended.
    let genuine = client
        .report_job(bearer(
            in_default(JobStatus::Completed, RunStatus::Success),
            &runner,
        ))
        .await
        .expect("default's job")
        .into_inner()
        .job
        .expect("job");
    assert_eq!(
        (genuine.project.as_str(), genuine.outcome()),
        ("default", RunStatus::Success)
    );
    let (samples, body) = scrape(&suite, &scraper).await;
    let total = |project: &str, status: &str| {
        samples
            .get(&format!("chainloop_workflow_jobs_total{{job=release,org=acme-corp,project={project},status={status},workflow=deploy}}"))
            .copied()
    };
    assert_eq!(total("default", "success"), Some(1.0), "{body}");
    assert_eq!(total("default", "error"), None, "{body}");
    assert_eq!(total("web", "error"), Some(1.0), "{body}");
}
