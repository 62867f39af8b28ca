//! Runs as long as CI has them: a run can carry its own timeout, an outcome
//! reported after expiry still counts (moving the run from `expired` to it),
//! and `run exec` never fails a job because of runplane.

use std::time::{Duration, Instant};

use crate::support::Suite;

/// Scrapes until `series` (a full line's start) is in the exposition.
async fn eventually(suite: &Suite, auth: &str, series: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let body = suite.scrape("cyberdyne", Some(auth)).await.body;
        if body.lines().any(|l| l.starts_with(series)) {
            return body;
        }
        assert!(Instant::now() < deadline, "no {series} in\n{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_run_expires_on_its_own_deadline_and_its_late_outcome_still_counts() {
    let mut suite = Suite::new("workflow_run_service:\n  sweep_interval: 100ms\n");
    suite.up().await;
    let (prom, runner) = suite.org_with_tokens("cyberdyne").await;
    let auth = format!("Bearer {prom}");
    let env = [("RUNPLANE_TOKEN", runner.as_str())];

    // Its own timeout, one second (the service's is an hour).
    let id = suite
        .cli_with_env(
            &[
                "run",
                "start",
                "--workflow",
                "nightly",
                "--timeout",
                "1s",
                "-q",
            ],
            &env,
        )
        .await
        .ok();
    let expired = eventually(
        &suite,
        &auth,
        "chainloop_workflow_runs_total{org=\"cyberdyne\",project=\"default\",runner=\"UNSPECIFIED\",status=\"expired\",workflow=\"nightly\"} 1",
    )
    .await;
    assert!(
        expired.contains("chainloop_workflow_up{org=\"cyberdyne\",project=\"default\",runner=\"UNSPECIFIED\",workflow=\"nightly\"} 0"),
        "{expired}"
    );

    // The pipeline succeeds after all: its finish is accepted and counted.
    let finished = suite
        .cli_with_env(&["run", "finish", &id, "--status", "success"], &env)
        .await
        .ok();
    assert!(finished.contains("finished: success"), "{finished}");
    let body = suite.scrape("cyberdyne", Some(&auth)).await.body;
    assert!(
        body.contains("chainloop_workflow_runs_total{org=\"cyberdyne\",project=\"default\",runner=\"UNSPECIFIED\",status=\"success\",workflow=\"nightly\"} 1"),
        "{body}"
    );
    assert!(
        !body.contains("status=\"expired\""),
        "moved, not added:\n{body}"
    );
    assert!(
        body.contains("chainloop_workflow_up{org=\"cyberdyne\",project=\"default\",runner=\"UNSPECIFIED\",workflow=\"nightly\"} 1"),
        "{body}"
    );
    // Its duration is its real one: past its second.
    let sum: f64 = body
        .lines()
        .find_map(|l| {
            l.strip_prefix("chainloop_workflow_run_duration_seconds_sum{")
                .filter(|l| l.contains("status=\"success\""))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse().ok())
        })
        .expect("a duration");
    assert!(sum >= 1.0, "{sum}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_exec_never_fails_a_job_because_of_runplane() {
    let suite = Suite::new("");
    // Nothing is running: the run cannot even be started.
    let env = [
        ("RUNPLANE_TOKEN", "rpt_not-a-real-token"),
        ("RUNPLANE_RETRY_FOR", "0s"),
    ];
    let out = suite
        .cli_with_env(
            &[
                "run",
                "exec",
                "--workflow",
                "w",
                "--",
                "sh",
                "-c",
                "echo ran",
            ],
            &env,
        )
        .await;
    assert!(out.status.success(), "{out:#?}");
    assert!(out.stdout.contains("ran"), "{out:#?}");
    assert!(out.stderr.contains("warning"), "{out:#?}");
    let out = suite
        .cli_with_env(
            &["run", "exec", "--workflow", "w", "--", "sh", "-c", "exit 3"],
            &env,
        )
        .await;
    assert_eq!(out.status.code(), Some(3), "{out:#?}");
}
