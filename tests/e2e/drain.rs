//! Rolling restarts lose nothing: a replica told to stop reports NOT_SERVING
//! first (while still serving, for the shutdown delay), then finishes the
//! requests it is working on before it exits 0, while the other replica
//! carries on.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use runplane_api::workflowrun::v1::workflow_run_service_client::WorkflowRunServiceClient;
use runplane_api::workflowrun::v1::{ListRunsRequest, StartRunRequest};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::support::{SERVICES, Suite, bearer, channel, free_port, wait_in_flight};

const HELD: usize = 5;

async fn health(client: &mut HealthClient<tonic::transport::Channel>) -> Option<ServingStatus> {
    client
        .check(HealthCheckRequest::default())
        .await
        .ok()
        .map(|r| r.into_inner().status())
}

/// Stops the replica at `addr` (the first started under the name) while it
/// holds `HELD` StartRuns, and checks the promise of the module.
async fn restart_with_requests_in_flight(suite: &mut Suite, addr: SocketAddr, token: &str) {
    // token-service frozen: StartRuns with a token the replica has not cached
    // wait in Authenticate, in flight.
    suite.signal_service("token-service", Signal::SIGSTOP);
    let held: Vec<_> = (0..HELD)
        .map(|n| {
            let token = token.to_owned();
            tokio::spawn(async move {
                WorkflowRunServiceClient::new(channel(addr).await)
                    .start_run(bearer(
                        StartRunRequest {
                            workflow: "deploy".into(),
                            request_id: format!("{addr}-{n}"),
                            ..Default::default()
                        },
                        &token,
                    ))
                    .await
            })
        })
        .collect();
    wait_in_flight(addr, HELD).await;

    let mut probe = HealthClient::new(channel(addr).await);
    assert_eq!(health(&mut probe).await, Some(ServingStatus::Serving));
    suite.signal_service("workflow-run-service", Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while health(&mut probe).await != Some(ServingStatus::NotServing) {
        assert!(Instant::now() < deadline, "never reported NOT_SERVING");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    suite.signal_service("token-service", Signal::SIGCONT);
    for start in held {
        let run = start
            .await
            .expect("task")
            .expect("an in-flight StartRun completes");
        assert!(run.into_inner().run.is_some());
    }
    let status = suite.stop_service("workflow-run-service").await;
    assert!(status.success(), "exits 0 after draining: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_finishes_requests_in_flight() {
    let mut suite = Suite::new(
        "workflow_run_service:\n  shutdown_delay: 1s\n  upstream_timeout: 60s\n  auth_cache_ttl: 0s\n",
    );
    suite.start_service("org-service").await;
    suite.start_service("token-service").await;
    let peers = [suite.addrs[0], suite.addrs[1], suite.addrs[2]];
    let (a, b) = (suite.addrs[2], free_port());
    suite.start_instance("workflow-run-service", a, peers).await;
    suite.start_instance("workflow-run-service", b, peers).await;
    suite
        .cli(&["organization", "create", "--name", "cyberdyne"])
        .await
        .ok();
    let token = suite
        .token(
            "cyberdyne",
            "runner",
            &["--scope", "runs:write", "--scope", "metrics:read"],
        )
        .await;

    // Replica A restarts while B serves, then B while the new A serves.
    restart_with_requests_in_flight(&mut suite, a, &token).await;
    let mut survivor = WorkflowRunServiceClient::new(channel(b).await);
    survivor
        .start_run(bearer(
            StartRunRequest {
                workflow: "deploy".into(),
                ..Default::default()
            },
            &token,
        ))
        .await
        .expect("the other replica serves meanwhile");
    suite.start_instance("workflow-run-service", a, peers).await;
    restart_with_requests_in_flight(&mut suite, b, &token).await;

    let runs = WorkflowRunServiceClient::new(channel(a).await)
        .list_runs(bearer(
            ListRunsRequest {
                page_size: 100,
                ..Default::default()
            },
            &token,
        ))
        .await
        .expect("ListRuns")
        .into_inner()
        .runs;
    assert_eq!(runs.len(), 2 * HELD + 1, "every acknowledged run is stored");
}

/// metrics-service drains the same way: on SIGTERM it closes its listener (a
/// new connection is refused, so a balancer's retry goes elsewhere) and still
/// answers the scrape it was serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_service_stops_accepting_and_finishes_the_scrape_in_flight() {
    let mut suite = Suite::new("metrics_service:\n  upstream_timeout: 60s\n");
    for service in SERVICES {
        suite.start_service(service).await;
    }
    let (scraper, _) = suite.org_with_tokens("cyberdyne").await;
    let addr = suite.addrs[3];

    // token-service frozen: the scrape waits in Authenticate, in flight.
    suite.signal_service("token-service", Signal::SIGSTOP);
    let url = suite.metrics_url("cyberdyne");
    let held = tokio::spawn(async move {
        reqwest::Client::new()
            .get(url)
            .bearer_auth(scraper)
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    wait_in_flight(addr, 1).await;

    suite.signal_service("metrics-service", Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(addr).is_ok() {
        assert!(
            Instant::now() < deadline,
            "still accepting connections after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    suite.signal_service("token-service", Signal::SIGCONT);
    assert_eq!(
        held.await
            .expect("task")
            .expect("the scrape in flight is answered"),
        200
    );
    let status = suite.stop_service("metrics-service").await;
    assert!(status.success(), "exits 0 after draining: {status}");
}
