//! A service behind metrics-service being down is a 503, never a 200 with
//! missing data; and everything recovers without restarting anything.

use crate::support::Suite;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_upstreams_are_503_and_recovery_needs_no_restart() {
    let mut suite = Suite::new("");
    for service in ["org-service", "token-service", "metrics-service"] {
        suite.start_service(service).await;
    }
    suite
        .cli(&["organization", "create", "--name", "cyberdyne"])
        .await
        .ok();
    let token = suite.token("cyberdyne", "prom", &[]).await;
    // Never used before token-service goes down, so workflow-run-service has not cached it.
    let runner = suite
        .token("cyberdyne", "runner", &["--scope", "runs:write"])
        .await;
    let auth = format!("Bearer {token}");

    // workflow-run-service was never started.
    let answer = suite.scrape("cyberdyne", Some(&auth)).await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert!(
        answer.body.contains("workflow-run-service"),
        "{}",
        answer.body
    );

    suite.start_service("workflow-run-service").await;
    assert_eq!(suite.scrape("cyberdyne", Some(&auth)).await.status, 200);

    // token-service stops: scrapes fail closed, with 503 rather than 401 or 200.
    assert!(suite.stop_service("token-service").await.success());
    let answer = suite.scrape("cyberdyne", Some(&auth)).await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert!(answer.body.contains("token-service"), "{}", answer.body);
    // Runners get UNAVAILABLE, and the CLI says which service is missing
    // (without its retries: tests/e2e/retries.rs covers those).
    let runner_env = [
        ("RUNPLANE_TOKEN", runner.as_str()),
        ("RUNPLANE_RETRY_FOR", "0s"),
    ];
    let started = suite
        .cli_with_env(&["run", "start", "--workflow", "w"], &runner_env)
        .await
        .err();
    assert!(
        started.contains("unavailable") && started.contains("authentication"),
        "{started}"
    );

    // It comes back on the same address: everyone reconnects by themselves.
    suite.start_service("token-service").await;
    assert_eq!(suite.scrape("cyberdyne", Some(&auth)).await.status, 200);
    suite
        .cli_with_env(&["run", "start", "--workflow", "w"], &runner_env)
        .await
        .ok();

    // org-service stops: 503 as well.
    assert!(suite.stop_service("org-service").await.success());
    assert_eq!(suite.scrape("cyberdyne", Some(&auth)).await.status, 503);
    suite.start_service("org-service").await;
    assert_eq!(suite.scrape("cyberdyne", Some(&auth)).await.status, 200);
}
