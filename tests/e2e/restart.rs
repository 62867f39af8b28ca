//! Everything acknowledged survives a restart of every process.

use crate::support::Suite;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_restarting_the_suite() {
    let mut suite = Suite::new("");
    suite.up().await;
    suite
        .cli(&["organization", "create", "--name", "cyberdyne"])
        .await
        .ok();
    let token = suite.token("cyberdyne", "prom", &[]).await;
    let env = [("RUNPLANE_TOKEN", token.as_str())];
    for (workflow, status) in [
        ("build", "success"),
        ("deploy", "error"),
        ("build", "canceled"),
    ] {
        let id = suite
            .cli_with_env(&["run", "start", "--workflow", workflow, "-q"], &env)
            .await
            .ok();
        suite
            .cli_with_env(&["run", "finish", &id, "--status", status], &env)
            .await
            .ok();
    }
    let in_progress = suite
        .cli_with_env(&["run", "start", "--workflow", "deploy", "-q"], &env)
        .await
        .ok();
    let auth = format!("Bearer {token}");
    let before = suite.scrape("cyberdyne", Some(&auth)).await;
    assert_eq!(before.status, 200);
    assert!(before.body.contains("chainloop_workflow_up{org=\"cyberdyne\",project=\"default\",runner=\"UNSPECIFIED\",workflow=\"build\"} 0\n"), "{}", before.body);
    let admin_before =
        std::fs::read_to_string(suite.data_dir().join("admin-token")).expect("admin");

    assert!(suite.stop_up().await.success(), "{}", suite.log());
    suite.up().await;

    // Same credential, same token, same metrics, same runs.
    let admin_after = std::fs::read_to_string(suite.data_dir().join("admin-token")).expect("admin");
    assert_eq!(
        admin_before, admin_after,
        "the admin credential is generated once"
    );
    let after = suite.scrape("cyberdyne", Some(&auth)).await;
    assert_eq!(after.status, 200);
    assert_eq!(after.stable_body(), before.stable_body());
    let runs = suite.cli_with_env(&["run", "list", "-q"], &env).await.ok();
    assert_eq!(runs.lines().count(), 4, "{runs}");
    // The run left in progress can still be finished after the restart.
    suite
        .cli_with_env(
            &["run", "finish", &in_progress, "--status", "success"],
            &env,
        )
        .await
        .ok();
    let finished = suite.scrape("cyberdyne", Some(&auth)).await.body;
    assert!(finished.contains("workflow=\"deploy\"} 1\n"), "{finished}");
    assert!(
        suite
            .cli(&["organization", "list", "-q"])
            .await
            .ok()
            .contains("cyberdyne")
    );
}
