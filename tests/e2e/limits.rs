//! Limits that keep the suite up under load and abuse: load shedding past the
//! concurrency limit, failed authentications limited per client address, and
//! the per-organization workflow limit.

use std::time::Duration;

use nix::sys::signal::Signal;
use runplane_api::token::v1::AuthenticateRequest;
use runplane_api::token::v1::token_service_client::TokenServiceClient;
use runplane_api::workflowrun::v1::StartRunRequest;
use runplane_api::workflowrun::v1::workflow_run_service_client::WorkflowRunServiceClient;
use runplane_auth::secret::{self, SecretKind};
use tonic::Code;

use crate::support::{Suite, bearer, channel, grpc_serving, own_metric, wait_in_flight};

fn start(workflow: &str) -> StartRunRequest {
    StartRunRequest {
        workflow: workflow.into(),
        ..Default::default()
    }
}

async fn get(url: &str, token: &str) -> (u16, Option<String>, String) {
    let response = reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("HTTP request");
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (
        response.status().as_u16(),
        retry_after,
        response.text().await.expect("body"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_refused_at_once_and_the_suite_recovers() {
    let mut suite = Suite::new(
        "metrics_service:\n  max_concurrent_requests: 2\n  upstream_timeout: 60s\n\
         workflow_run_service:\n  max_concurrent_requests: 2\n  upstream_timeout: 60s\n",
    );
    suite.up().await;
    suite
        .cli(&["organization", "create", "--name", "cyberdyne"])
        .await
        .ok();
    let prom = suite.token("cyberdyne", "prom", &[]).await;
    let runner = suite
        .token("cyberdyne", "runner", &["--scope", "runs:write"])
        .await;
    let url = suite.metrics_url("cyberdyne");
    assert_eq!(get(&url, &prom).await.0, 200);

    // HTTP: with workflow-run-service frozen, two scrapes hold metrics-service's
    // two slots; everything else is refused at once, probes excepted.
    suite.signal_service("workflow-run-service", Signal::SIGSTOP);
    let held: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn({
                let (url, prom) = (url.clone(), prom.clone());
                async move { get(&url, &prom).await }
            })
        })
        .collect();
    wait_in_flight(suite.addrs[3], 2).await;
    let refused = get(&url, &prom).await;
    assert_eq!(refused.0, 503, "{}", refused.2);
    assert_eq!(refused.1.as_deref(), Some("1"), "Retry-After");
    assert!(refused.2.contains("overloaded"), "{}", refused.2);
    let flood: Vec<_> = (0..300)
        .map(|_| {
            tokio::spawn({
                let (url, prom) = (url.clone(), prom.clone());
                async move { get(&url, &prom).await.0 }
            })
        })
        .collect();
    for answer in flood {
        assert_eq!(answer.await.expect("task"), 503);
    }
    for probe in ["healthz", "readyz", "metrics"] {
        let url = format!("http://{}/{probe}", suite.addrs[3]);
        assert_eq!(get(&url, "").await.0, 200, "{probe} during overload");
    }
    suite.signal_service("workflow-run-service", Signal::SIGCONT);
    for scrape in held {
        let (status, _, body) = scrape.await.expect("task");
        assert_eq!(status, 200, "a held scrape completes: {body}");
    }
    assert_eq!(get(&url, &prom).await.0, 200, "recovered");
    let shed_total = own_metric(suite.addrs[3], "runplane_requests_shed_total").await;
    assert!(shed_total >= 301.0, "{shed_total}");
    let rss = own_metric(suite.addrs[3], "process_resident_memory_bytes").await;
    assert!(rss < 64.0 * 1024.0 * 1024.0, "RSS after the flood: {rss}");
    eprintln!(
        "overload: {} HTTP requests shed, metrics-service RSS after the flood {:.1} MiB",
        shed_total,
        rss / 1024.0 / 1024.0
    );

    // gRPC: token-service frozen, two StartRuns hold workflow-run-service's
    // slots (the runner's token is not cached yet).
    suite.signal_service("token-service", Signal::SIGSTOP);
    let addr = suite.addrs[2];
    let held: Vec<_> = (0..2)
        .map(|n| {
            let runner = runner.clone();
            tokio::spawn(async move {
                let mut client = WorkflowRunServiceClient::new(channel(addr).await);
                client
                    .start_run(bearer(start(&format!("held-{n}")), &runner))
                    .await
            })
        })
        .collect();
    wait_in_flight(addr, 2).await;
    let shed = WorkflowRunServiceClient::new(channel(addr).await)
        .start_run(bearer(start("probe"), &runner))
        .await
        .expect_err("shed");
    assert_eq!(shed.code(), Code::ResourceExhausted, "{shed:?}");
    assert!(shed.message().contains("overloaded"), "{shed:?}");
    assert_eq!(
        shed.metadata()
            .get("grpc-retry-pushback-ms")
            .and_then(|v| v.to_str().ok()),
        Some("1000")
    );
    assert!(grpc_serving(addr, "").await, "health is never shed");
    // The CLI backs off and retries a shed call until the service has room.
    let cli = suite.spawn_cli(
        &["run", "start", "--workflow", "from-cli", "-q"],
        &[
            ("RUNPLANE_TOKEN", runner.as_str()),
            ("RUNPLANE_RETRY_FOR", "60s"),
        ],
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    suite.signal_service("token-service", Signal::SIGCONT);
    for start in held {
        start
            .await
            .expect("task")
            .expect("a held StartRun completes");
    }
    let output = tokio::task::spawn_blocking(move || cli.wait_with_output())
        .await
        .expect("join")
        .expect("output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("overloaded") && stderr.contains("retrying"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_limited_per_client_address() {
    let mut suite = Suite::new("auth_failures_per_minute: 3\n");
    suite.up().await;
    suite
        .cli(&["organization", "create", "--name", "cyberdyne"])
        .await
        .ok();
    let prom = suite.token("cyberdyne", "prom", &[]).await;
    let runner = suite
        .token("cyberdyne", "runner", &["--scope", "runs:write"])
        .await;
    let url = suite.metrics_url("cyberdyne");
    let wrong = || secret::generate(SecretKind::ApiToken).expect("rng");
    assert_eq!(get(&url, &prom).await.0, 200);

    // Scrapes: three wrong tokens are 401s, then the address is refused —
    // even with the right token, or the limit would confirm a guess.
    for _ in 0..3 {
        assert_eq!(get(&url, &wrong()).await.0, 401);
    }
    let (status, retry_after, body) = get(&url, &wrong()).await;
    assert_eq!(status, 429, "{body}");
    let retry_after: u64 = retry_after
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    assert_eq!(get(&url, &prom).await.0, 429);

    // The ingest path has its own count per address.
    let mut runs = suite.workflow_runs().await;
    let mut status_of = async |token: &str| {
        runs.start_run(bearer(start("build"), token))
            .await
            .map(|_| Code::Ok)
            .unwrap_or_else(|s| s.code())
    };
    assert_eq!(status_of(&runner).await, Code::Ok);
    for _ in 0..3 {
        assert_eq!(status_of(&wrong()).await, Code::Unauthenticated);
    }
    assert_eq!(status_of(&wrong()).await, Code::ResourceExhausted);
    assert_eq!(status_of(&runner).await, Code::ResourceExhausted);

    // token-service counts the wrong tokens of callers that are not runplane
    // services; the six above came through the services and did not count.
    let mut tokens = TokenServiceClient::new(channel(suite.addrs[1]).await);
    let mut authenticate = async |token: String| {
        tokens
            .authenticate(AuthenticateRequest { secret: token })
            .await
            .map(|_| Code::Ok)
            .unwrap_or_else(|s| s.code())
    };
    for _ in 0..3 {
        assert_eq!(authenticate(wrong()).await, Code::Unauthenticated);
    }
    assert_eq!(authenticate(wrong()).await, Code::ResourceExhausted);
    assert_eq!(authenticate(prom.clone()).await, Code::ResourceExhausted);

    assert_eq!(
        own_metric(suite.addrs[3], "runplane_auth_failures_total").await,
        3.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organization_cannot_create_workflows_past_its_limit() {
    let mut suite = Suite::new("workflow_run_service:\n  max_workflows_per_org: 2\n");
    suite.up().await;
    for org in ["cyberdyne", "acme-corp"] {
        suite
            .cli(&["organization", "create", "--name", org])
            .await
            .ok();
    }
    let runner = suite
        .token("cyberdyne", "runner", &["--scope", "runs:write"])
        .await;
    let env = [("RUNPLANE_TOKEN", runner.as_str())];
    for workflow in ["build", "deploy", "build"] {
        suite
            .cli_with_env(&["run", "start", "--workflow", workflow], &env)
            .await
            .ok();
    }
    let refused = suite
        .cli_with_env(&["run", "start", "--workflow", "lint"], &env)
        .await
        .err();
    assert!(
        refused.contains("limit of 2 workflows") && refused.contains("delete-workflow"),
        "{refused}"
    );
    assert!(!refused.contains("retrying"), "a limit is final: {refused}");

    // Another organization has its own budget, and deleting a workflow frees one.
    let other = suite
        .token("acme-corp", "runner", &["--scope", "runs:write"])
        .await;
    suite
        .cli_with_env(
            &["run", "start", "--workflow", "lint"],
            &[("RUNPLANE_TOKEN", other.as_str())],
        )
        .await
        .ok();
    suite
        .cli_with_env(&["run", "delete-workflow", "--workflow", "deploy"], &env)
        .await
        .ok();
    suite
        .cli_with_env(&["run", "start", "--workflow", "lint"], &env)
        .await
        .ok();
}
