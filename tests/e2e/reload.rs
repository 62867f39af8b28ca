//! `prometheus_org_metrics` changes without a restart: on SIGHUP, and when the
//! config file changes; a bad file keeps the previous list and the log says why.

use std::time::{Duration, Instant};

use crate::support::Suite;

/// Scrapes until the answer's status is `want` (reloads are asynchronous).
async fn eventually(suite: &Suite, auth: &str, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = suite.scrape("umbrella", Some(auth)).await.status;
        if status == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "scrape stayed {status}, expected {want}\n{}",
            suite.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_enabled_organizations_reload_on_sighup_and_file_change_and_a_bad_file_changes_nothing()
{
    let mut suite = Suite::new("");
    suite.up().await;
    suite
        .cli(&["organization", "create", "--name", "umbrella"])
        .await
        .ok();
    let auth = format!("Bearer {}", suite.token("umbrella", "prom", &[]).await);
    assert_eq!(suite.scrape("umbrella", Some(&auth)).await.status, 404);
    let original = std::fs::read_to_string(&suite.config).expect("config");

    // Enabled, then SIGHUP: served without a restart.
    let org_service = suite.pid_of("org-service");
    std::fs::write(
        &suite.config,
        original.replace(
            "prometheus_org_metrics:\n",
            "prometheus_org_metrics:\n  - org_name: umbrella\n",
        ),
    )
    .expect("write config");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(org_service),
        nix::sys::signal::Signal::SIGHUP,
    )
    .expect("SIGHUP");
    eventually(&suite, &auth, 200).await;
    assert_eq!(suite.pid_of("org-service"), org_service, "not restarted");

    // A broken file: the previous list stays, and the log says why.
    std::fs::write(&suite.config, "prometheus_org_metrics: [unclosed\n").expect("write config");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !suite.log().contains("prometheus_org_metrics not reloaded") {
        assert!(
            Instant::now() < deadline,
            "no complaint in\n{}",
            suite.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(suite.log().contains("not valid YAML"), "{}", suite.log());
    assert_eq!(suite.scrape("umbrella", Some(&auth)).await.status, 200);

    // A value another setting cannot take: the same, and org-service (and
    // with it the suite) keeps running.
    std::fs::write(
        &suite.config,
        original.replace(
            "prometheus_org_metrics:\n",
            "auth_failures_per_minute: lots\nprometheus_org_metrics:\n",
        ),
    )
    .expect("write config");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !suite.log().contains("`auth_failures_per_minute`") {
        assert!(
            Instant::now() < deadline,
            "no complaint in\n{}",
            suite.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(suite.pid_of("org-service"), org_service, "still running");
    assert_eq!(suite.scrape("umbrella", Some(&auth)).await.status, 200);

    // A valid file without it: noticed by itself, no signal needed.
    std::fs::write(&suite.config, &original).expect("write config");
    eventually(&suite, &auth, 404).await;
    assert_eq!(suite.pid_of("org-service"), org_service);
}
