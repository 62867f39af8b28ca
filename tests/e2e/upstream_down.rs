//! A service behind metrics-service being down is a 503, never a 200 with
//! missing data; and everything recovers without restarting anything.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use runplane_api::workflowrun::v1::StartRunRequest;
use tonic::Code;

use crate::support::{SERVICES, Suite, bearer};

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

    // workflow-run-service was never started. Every 503 says when to come back.
    let answer = suite.scrape("cyberdyne", Some(&auth)).await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(answer.retry_after.as_deref(), Some("5"));
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
    assert_eq!(answer.retry_after.as_deref(), Some("5"));
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

/// A callee that dies in the middle of a call is an outage like any other
/// (UNAVAILABLE, 503), never an internal error (INTERNAL, 502), although
/// tonic reports the broken connection as UNKNOWN "transport error".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callee_that_dies_mid_call_is_unavailable_not_an_internal_error() {
    let mut suite = Suite::new("workflow_run_service:\n  auth_cache_ttl: 0s\n");
    for service in SERVICES {
        suite.start_service(service).await;
    }
    let (metrics_token, runner_token) = suite.org_with_tokens("cyberdyne").await;
    let auth = format!("Bearer {metrics_token}");
    // The services' connections to each other are open and idle.
    let mut runs = suite.workflow_runs().await;
    runs.start_run(bearer(start("build"), &runner_token))
        .await
        .expect("a run starts");
    assert_eq!(suite.scrape("cyberdyne", Some(&auth)).await.status, 200);

    // token-service freezes, receives workflow-run-service's Authenticate, and dies.
    suite.signal_service("token-service", Signal::SIGSTOP);
    let call =
        tokio::spawn(async move { runs.start_run(bearer(start("build"), &runner_token)).await });
    wait_unread_request(suite.addrs[1]).await;
    suite.kill_service("token-service").await;
    let status = call.await.expect("task").expect_err("token-service died");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    // workflow-run-service freezes, receives the scrape's ListWorkflowMetrics, and dies.
    suite.start_service("token-service").await;
    assert_eq!(suite.scrape("cyberdyne", Some(&auth)).await.status, 200);
    suite.signal_service("workflow-run-service", Signal::SIGSTOP);
    let url = suite.metrics_url("cyberdyne");
    let scrape = tokio::spawn(async move {
        reqwest::Client::new()
            .get(url)
            .header("authorization", auth)
            .send()
            .await
    });
    wait_unread_request(suite.addrs[2]).await;
    suite.kill_service("workflow-run-service").await;
    let answer = scrape.await.expect("task").expect("an answer");
    assert_eq!(answer.status(), 503);
    assert!(answer.headers().contains_key("retry-after"));
    let body = answer.text().await.expect("body");
    assert!(
        body.contains("workflow-run-service is unavailable"),
        "{body}"
    );
}

/// A scrape that outlives metrics-service's request timeout is a 503 that
/// says when to come back, like every other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_past_the_request_timeout_is_a_503_with_retry_after() {
    let mut suite = Suite::new("metrics_service:\n  request_timeout: 1s\n");
    for service in SERVICES {
        suite.start_service(service).await;
    }
    let (metrics_token, _) = suite.org_with_tokens("cyberdyne").await;
    let auth = format!("Bearer {metrics_token}");
    assert_eq!(suite.scrape("cyberdyne", Some(&auth)).await.status, 200);
    suite.signal_service("workflow-run-service", Signal::SIGSTOP);
    let answer = suite.scrape("cyberdyne", Some(&auth)).await;
    suite.signal_service("workflow-run-service", Signal::SIGCONT);
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(answer.retry_after.as_deref(), Some("1"));
}

fn start(workflow: &str) -> StartRunRequest {
    StartRunRequest {
        workflow: workflow.into(),
        ..StartRunRequest::default()
    }
}

/// Waits until a connection to `addr` holds bytes its (frozen) server has not
/// read: a call has reached it. Read from the kernel's own socket table.
async fn wait_unread_request(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !has_unread_bytes(addr.port()) {
        assert!(Instant::now() < deadline, "no call reached {addr}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether an established connection on local `port` has bytes in its
/// receive queue (`/proc/net/tcp`: `local_address` is `IP:PORT`, hex; `st`
/// 01 is ESTABLISHED; `tx_queue:rx_queue`, hex).
fn has_unread_bytes(port: u16) -> bool {
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
        std::fs::read_to_string(table)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let local_port = fields
                    .get(1)
                    .and_then(|a| a.rsplit(':').next())
                    .and_then(|p| u16::from_str_radix(p, 16).ok());
                let unread = fields
                    .get(4)
                    .and_then(|q| q.split(':').nth(1))
                    .and_then(|rx| u64::from_str_radix(rx, 16).ok());
                local_port == Some(port) && fields.get(3) == Some(&"01") && unread > Some(0)
            })
    })
}
