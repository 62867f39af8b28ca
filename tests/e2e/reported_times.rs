//! Runs reported with their own times: ReportRun, explicit start and finish
//! times, and the CLI's `run report` and `run import`, as the scrape sees them.

use runplane_api::time::{Timestamp, now_ms, timestamp};
use runplane_api::workflowrun::v1::{
    FinishRunRequest, ReportRunRequest, RunStatus, RunnerType, StartRunRequest,
};
use tonic::Code;

use crate::support::{Suite, bearer, text_samples};

fn at(ms: i64) -> Option<Timestamp> {
    Some(timestamp(ms))
}

fn report(workflow: &str, key: &str, started: i64, finished: i64) -> ReportRunRequest {
    ReportRunRequest {
        workflow: workflow.to_owned(),
        runner_type: RunnerType::GithubAction.into(),
        request_id: key.to_owned(),
        start_time: at(started),
        finish_time: at(finished),
        status: RunStatus::Success.into(),
        ..Default::default()
    }
}

fn series(workflow: &str, metric: &str, status: &str) -> String {
    format!(
        "{metric}{{org=acme-corp,project=default,runner=GITHUB_ACTION,status={status},workflow={workflow}}}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reported_times_are_the_metrics_times_and_a_run_counts_once_in_any_order() {
    let mut suite = Suite::new("");
    suite.up().await;
    let (scraper, runner) = suite.org_with_tokens("acme-corp").await;
    let mut client = suite.workflow_runs().await;
    let hour_ago = now_ms() - 3_600_000;

    // A whole run in one call: its duration is its own times', to the millisecond.
    let first = client
        .report_run(bearer(
            report("deploy", "gh:1:1", hour_ago, hour_ago + 754_250),
            &runner,
        ))
        .await
        .expect("report")
        .into_inner();
    assert!(first.counted);
    let run = first.run.expect("run");
    assert_eq!(run.status(), RunStatus::Success);
    assert_eq!(run.start_time, at(hour_ago));
    // Redelivered: the same run, counted nothing twice.
    let again = client
        .report_run(bearer(
            report("deploy", "gh:1:1", hour_ago, hour_ago + 754_250),
            &runner,
        ))
        .await
        .expect("repeat")
        .into_inner();
    assert!(!again.counted);
    assert_eq!(again.run.expect("run").id, run.id);
    // A start delivered after the run's end changes nothing either.
    let late_start = StartRunRequest {
        workflow: "deploy".into(),
        runner_type: RunnerType::GithubAction.into(),
        request_id: "gh:1:1".into(),
        start_time: at(hour_ago),
        ..Default::default()
    };
    let late = client
        .start_run(bearer(late_start, &runner))
        .await
        .expect("late start")
        .into_inner()
        .run
        .expect("run");
    assert_eq!(
        (late.id.as_str(), late.status()),
        (run.id.as_str(), RunStatus::Success)
    );

    // In order: started at its time, then reported finished under the same key.
    let started = client
        .start_run(bearer(
            StartRunRequest {
                workflow: "deploy".into(),
                runner_type: RunnerType::GithubAction.into(),
                request_id: "gh:2:1".into(),
                queue_time: at(hour_ago - 30_000),
                start_time: at(hour_ago),
                ..Default::default()
            },
            &runner,
        ))
        .await
        .expect("start")
        .into_inner()
        .run
        .expect("run");
    assert_eq!(started.queue_time, at(hour_ago - 30_000));
    let finished = client
        .report_run(bearer(
            report("deploy", "gh:2:1", hour_ago, hour_ago + 5_500),
            &runner,
        ))
        .await
        .expect("finish by report")
        .into_inner();
    assert!(finished.counted);
    assert_eq!(finished.run.expect("run").id, started.id);

    // FinishRun at an explicit time; one before the run's start is refused.
    let third = client
        .start_run(bearer(
            StartRunRequest {
                workflow: "deploy".into(),
                runner_type: RunnerType::GithubAction.into(),
                start_time: at(hour_ago),
                ..Default::default()
            },
            &runner,
        ))
        .await
        .expect("start")
        .into_inner()
        .run
        .expect("run");
    let finish = |finish_ms| FinishRunRequest {
        run_id: third.id.clone(),
        status: RunStatus::Error.into(),
        finish_time: at(finish_ms),
        ..Default::default()
    };
    let early = client
        .finish_run(bearer(finish(hour_ago - 1_000), &runner))
        .await
        .expect_err("before its start");
    assert_eq!(early.code(), Code::InvalidArgument);
    assert!(
        early.message().contains("before the run's start_time"),
        "{}",
        early.message()
    );
    client
        .finish_run(bearer(finish(hour_ago + 2_000), &runner))
        .await
        .expect("finish at a time");

    let body = suite
        .scrape("acme-corp", Some(&format!("Bearer {scraper}")))
        .await
        .body;
    let samples = text_samples(&body);
    let value = |name: &str, status: &str| {
        let key = series("deploy", name, status);
        *samples
            .get(&key)
            .unwrap_or_else(|| panic!("no {key} in\n{body}"))
    };
    assert_eq!(value("chainloop_workflow_runs_total", "success"), 2.0);
    assert_eq!(
        value("chainloop_workflow_run_duration_seconds_count", "success"),
        2.0
    );
    assert_eq!(
        value("chainloop_workflow_run_duration_seconds_sum", "success"),
        759.75
    );
    assert_eq!(
        value("chainloop_workflow_run_duration_seconds_sum", "error"),
        2.0
    );
    // The one run whose reporter said when it was queued waited 30 s.
    let queue = |suffix: &str| {
        let key = format!(
            "chainloop_workflow_run_queue_seconds_{suffix}{{org=acme-corp,project=default,workflow=deploy}}"
        );
        *samples
            .get(&key)
            .unwrap_or_else(|| panic!("no {key} in\n{body}"))
    };
    assert_eq!((queue("count"), queue("sum")), (1.0, 30.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn times_that_cannot_be_are_refused_and_nothing_is_stored() {
    let mut suite = Suite::new("");
    suite.up().await;
    let (scraper, runner) = suite.org_with_tokens("acme-corp").await;
    let mut client = suite.workflow_runs().await;
    let now = now_ms();
    let cases = [
        (
            report("w", "", now, now + 3_600_000),
            "finish_time",
            "in the future",
        ),
        (
            report("w", "", now - 10_000, now - 20_000),
            "finish_time",
            "before start_time",
        ),
        (report("w", "", 0, now), "start_time", "after 2000-01-01"),
        (
            ReportRunRequest {
                queue_time: at(now - 1_000),
                ..report("w", "", now - 5_000, now)
            },
            "queue_time",
            "after start_time",
        ),
        (
            ReportRunRequest {
                finish_time: None,
                ..report("w", "", now - 5_000, now)
            },
            "finish_time",
            "required",
        ),
        (
            ReportRunRequest {
                status: RunStatus::Initialized.into(),
                ..report("w", "", now - 5_000, now)
            },
            "status",
            "SUCCESS, ERROR or CANCELED",
        ),
    ];
    for (request, field, words) in cases {
        let status = client
            .report_run(bearer(request, &runner))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
        assert!(
            status.message().contains(field) && status.message().contains(words),
            "{field}: {}",
            status.message()
        );
    }
    let body = suite
        .scrape("acme-corp", Some(&format!("Bearer {scraper}")))
        .await
        .body;
    assert!(!body.contains("workflow=\"w\""), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reports_and_imports_history_once() {
    let mut suite = Suite::new("");
    suite.up().await;
    let (scraper, runner) = suite.org_with_tokens("acme-corp").await;
    let env = [("RUNPLANE_TOKEN", runner.as_str())];
    let reported = suite
        .cli_with_env(
            &[
                "run",
                "report",
                "--workflow",
                "nightly",
                "--status",
                "error",
                "--started-at",
                "2026-01-02T03:00:00Z",
                "--finished-at",
                "2026-01-02T04:00:30+01:00",
                "--runner",
                "JENKINS_JOB",
            ],
            &env,
        )
        .await
        .ok();
    assert!(reported.contains("Reported run"), "{reported}");
    // Where a run came from: from flags, else from the CI's own variables.
    let id = suite
        .cli_with_env(
            &[
                "run",
                "report",
                "--workflow",
                "nightly",
                "--status",
                "success",
                "--started-at",
                "2026-01-05T03:00:00Z",
                "--finished-at",
                "2026-01-05T03:00:09Z",
                "--branch",
                "release/1.2",
                "-q",
            ],
            &[
                ("RUNPLANE_TOKEN", runner.as_str()),
                ("GITHUB_ACTIONS", "true"),
                ("GITHUB_RUN_ATTEMPT", "3"),
                ("GITHUB_REF_NAME", "main"),
                ("GITHUB_SHA", "acb5820ced9479c074f688cc328bf03f341a511d"),
                ("GITHUB_EVENT_NAME", "schedule"),
            ],
        )
        .await
        .ok();
    let shown = suite
        .cli_with_env(&["run", "get", &id, "-o", "json"], &env)
        .await
        .ok();
    let shown: serde_json::Value = serde_json::from_str(&shown).expect("json");
    assert_eq!(
        (
            &shown["attempt"],
            &shown["branch"],
            &shown["commit_sha"],
            &shown["trigger"]
        ),
        (
            &serde_json::json!(3),
            &serde_json::json!("release/1.2"),
            &serde_json::json!("acb5820ced9479c074f688cc328bf03f341a511d"),
            &serde_json::json!("schedule")
        ),
        "{shown}"
    );
    // Flaky: a commit that failed, then passed on a later attempt, counts
    // once; another success of it, or of another commit, does not.
    for (attempt, status, commit, day) in [
        ("1", "error", "aaaa1111", "10"),
        ("2", "success", "aaaa1111", "11"),
        ("3", "success", "aaaa1111", "12"),
        ("1", "success", "bbbb2222", "13"),
        ("1", "error", "cccc3333", "14"),
    ] {
        let started = format!("2026-01-{day}T03:00:00Z");
        let finished = format!("2026-01-{day}T03:00:05Z");
        suite
            .cli_with_env(
                &[
                    "run",
                    "report",
                    "--workflow",
                    "flaky",
                    "--status",
                    status,
                    "--attempt",
                    attempt,
                    "--commit",
                    commit,
                    "--started-at",
                    &started,
                    "--finished-at",
                    &finished,
                ],
                &env,
            )
            .await
            .ok();
    }
    let body = suite
        .scrape("acme-corp", Some(&format!("Bearer {scraper}")))
        .await
        .body;
    assert!(
        body.contains("\nchainloop_workflow_flaky_runs_total{org=\"acme-corp\",project=\"default\",workflow=\"flaky\"} 1\n"),
        "{body}"
    );
    assert!(!body.contains("chainloop_workflow_flaky_runs_total{org=\"acme-corp\",project=\"default\",workflow=\"nightly\"}"), "{body}");
    let bad = suite
        .cli_with_env(
            &[
                "run",
                "report",
                "--workflow",
                "nightly",
                "--status",
                "success",
                "--started-at",
                "2026-01-06T03:00:00Z",
                "--finished-at",
                "2026-01-06T03:00:09Z",
                "--commit",
                "not-hex",
            ],
            &env,
        )
        .await
        .err();
    assert!(bad.contains("commit_sha") && bad.contains("hex"), "{bad}");
    // A finish before the start is the server's clear refusal, exit 1.
    let refused = suite
        .cli_with_env(
            &[
                "run",
                "report",
                "--workflow",
                "nightly",
                "--status",
                "error",
                "--started-at",
                "2026-01-02T03:00:00Z",
                "--finished-at",
                "2026-01-02T02:00:00Z",
            ],
            &env,
        )
        .await
        .err();
    assert!(refused.contains("before start_time"), "{refused}");

    let file = suite.data_dir().join("history.jsonl");
    std::fs::write(
        &file,
        [
            r#"{"workflow": "nightly", "status": "RUN_STATUS_SUCCESS", "startTime": "2026-01-03T03:00:00Z", "finishTime": "2026-01-03T03:01:00Z", "runnerType": "RUNNER_TYPE_JENKINS_JOB"}"#,
            "",
            r#"{"workflow": "nightly", "status": "RUN_STATUS_SUCCESS", "startTime": "2026-01-04T03:00:00Z", "finishTime": "2026-01-04T03:02:00Z", "runnerType": "RUNNER_TYPE_JENKINS_JOB"}"#,
            r#"{"workflow": "nightly", "stattus": "SUCCESS"}"#,
        ]
        .join("\n"),
    )
    .expect("write history");
    let path = file.to_str().expect("path");
    let first = suite.cli_with_env(&["run", "import", path], &env).await;
    assert!(!first.status.success(), "a line failed: {first:#?}");
    assert!(
        first.stderr.contains("line 4") && first.stderr.contains("stattus"),
        "{first:#?}"
    );
    assert!(
        first
            .stdout
            .contains("Imported 2 run(s); 0 already recorded; 1 failed."),
        "{first:#?}"
    );
    // The run reported above, written otherwise, is recognised too.
    let again = suite.data_dir().join("again.jsonl");
    std::fs::write(
        &again,
        r#"{"finish_time": "2026-01-02T03:00:30Z", "start_time": "2026-01-02T04:00:00+01:00", "workflow": "nightly", "project": "default", "status": "RUN_STATUS_ERROR"}"#,
    )
    .expect("write");
    let repeat = suite
        .cli_with_env(&["run", "import", again.to_str().expect("path")], &env)
        .await
        .ok();
    assert!(
        repeat.contains("Imported 0 run(s); 1 already recorded; 0 failed."),
        "{repeat}"
    );
    let second = suite.cli_with_env(&["run", "import", path], &env).await;
    assert!(
        second
            .stdout
            .contains("Imported 0 run(s); 2 already recorded; 1 failed."),
        "{second:#?}"
    );

    let body = suite
        .scrape("acme-corp", Some(&format!("Bearer {scraper}")))
        .await
        .body;
    let samples = text_samples(&body);
    let sum = |status: &str| {
        samples[&format!(
            "chainloop_workflow_run_duration_seconds_sum{{org=acme-corp,project=default,runner=JENKINS_JOB,status={status},workflow=nightly}}"
        )]
    };
    assert_eq!(sum("error"), 30.0);
    assert_eq!(sum("success"), 180.0);
}
