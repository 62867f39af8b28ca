//! Retention deletes old finished runs and leaves the metrics as they were.

use std::time::{Duration, Instant};

use crate::support::Suite;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_old_runs_and_leaves_the_metrics_alone() {
    let mut suite =
        Suite::new("workflow_run_service:\n  run_retention: 1s\n  retention_interval: 100ms\n");
    suite.up().await;
    suite
        .cli(&["organization", "create", "--name", "cyberdyne"])
        .await
        .ok();
    let token = suite.token("cyberdyne", "ci", &[]).await;
    let env = [("RUNPLANE_TOKEN", token.as_str())];
    for status in ["success", "error", "success"] {
        let id = suite
            .cli_with_env(&["run", "start", "--workflow", "build", "-q"], &env)
            .await
            .ok();
        suite
            .cli_with_env(&["run", "finish", &id, "--status", status], &env)
            .await
            .ok();
    }
    let in_progress = suite
        .cli_with_env(&["run", "start", "--workflow", "build", "-q"], &env)
        .await
        .ok();
    let auth = format!("Bearer {token}");
    let before = suite.scrape("cyberdyne", Some(&auth)).await.stable_body();
    assert!(before.contains("chainloop_workflow_run_duration_seconds_count{org=\"cyberdyne\",project=\"default\",runner=\"UNSPECIFIED\",status=\"success\",workflow=\"build\"} 2\n"), "{before}");

    // The finished runs go within a few retention rounds; the one in progress stays.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let runs = suite.cli_with_env(&["run", "list", "-q"], &env).await.ok();
        if runs == in_progress {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "finished runs were not deleted: {runs}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if suite.database_url().is_some() {
        assert_eq!(
            suite.sql("SELECT count(*) FROM workflow_run_service.runs"),
            "1"
        );
    }
    let after = suite.scrape("cyberdyne", Some(&auth)).await.stable_body();
    assert_eq!(after, before, "retention must not change the metrics");
}
