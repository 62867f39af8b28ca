//! `runplane up` supervises: if one service dies, the others are stopped and
//! `up` exits non-zero.

use std::time::Duration;

use crate::support::{Suite, grpc_serving};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_service_dying_stops_the_suite_with_a_failure() {
    let mut suite = Suite::new("");
    suite.up().await;
    let victim = suite.pid_of("workflow-run-service");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill workflow-run-service");
    let status = suite.wait_up_exit(Duration::from_secs(30)).await;
    assert!(!status.success(), "up must fail when a service dies");
    assert!(
        suite.log().contains("workflow-run-service exited"),
        "{}",
        suite.log()
    );
    // The others were stopped, not left running.
    assert!(
        !grpc_serving(suite.addrs[0], "").await,
        "org-service still running"
    );
    assert!(
        !grpc_serving(suite.addrs[1], "").await,
        "token-service still running"
    );
    assert!(
        std::net::TcpStream::connect(suite.addrs[3]).is_err(),
        "metrics-service still running"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_file_fails_fast_with_a_clear_message() {
    let suite = Suite::new("metrics_service:\n  listen_adress: 127.0.0.1:1\n");
    let out = suite.up_to_completion().await;
    assert!(!out.status.success());
    assert!(out.stderr.contains("listen_adress"), "{}", out.stderr);
    // A bad organization name in prometheus_org_metrics is refused at start-up too.
    std::fs::write(
        &suite.config,
        "prometheus_org_metrics:\n  - org_name: Not_Valid\n",
    )
    .expect("write");
    let out = suite.up_to_completion().await;
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("Not_Valid") && out.stderr.contains("DNS-1123"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_up_on_the_same_ports_is_refused_and_the_first_keeps_serving() {
    let mut suite = Suite::new("");
    suite.up().await;
    let out = suite.up_to_completion().await;
    assert!(!out.status.success());
    let first = suite.addrs[0].to_string();
    assert!(
        out.stderr
            .contains(&format!("org-service cannot listen on {first}"))
            && out.stderr.contains("another `runplane up`"),
        "{}",
        out.stderr
    );
    // Nothing of the second was started, so nothing of the first was disturbed.
    assert!(!out.stderr.contains("exited"), "{}", out.stderr);
    for addr in &suite.addrs[..3] {
        assert!(grpc_serving(*addr, "").await, "{addr} stopped serving");
    }
    suite
        .cli(&["organization", "create", "--name", "cyberdyne"])
        .await
        .ok();
}
