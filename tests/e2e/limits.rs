//! Limits that keep the suite up under load and abuse: load shedding past the
//! concurrency limit, failed authentications limited per failing credential,
//! and the per-organization workflow limit.

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

/// A failing credential spends its own budget and nobody else's. From one
/// address: a job scraping with a revoked token beside one with a valid token
/// gets 429 once its budget is spent while the valid one gets 200 every time;
/// the same for runners; sprays of distinct wrong tokens are told to back off
/// while valid tokens still pass; wrong credentials never lock out the
/// services' own calls; a forged client-address header locks no one out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_credential_is_limited_and_nobody_else() {
    let mut suite = Suite::new(
        "auth_failures_per_minute: 3\n\
         metrics_service:\n  client_address_header: x-forwarded-for\n\
         workflow_run_service:\n  auth_cache_ttl: 0s\n",
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
    let stale = suite.token("cyberdyne", "stale", &[]).await;
    suite
        .cli(&[
            "organization",
            "api-token",
            "revoke",
            "--org",
            "cyberdyne",
            "--name",
            "stale",
        ])
        .await
        .ok();
    let url = suite.metrics_url("cyberdyne");
    let wrong = || secret::generate(SecretKind::ApiToken).expect("rng");

    // Two scrape jobs on one address, every 100 ms: the revoked token's three
    // failures are 401, then it is refused from memory with Retry-After; the
    // valid token is answered every time.
    let mut stale_answers = Vec::new();
    for _ in 0..8 {
        let (status, retry_after, _) = get(&url, &stale).await;
        stale_answers.push((status, retry_after.is_some()));
        assert_eq!(get(&url, &prom).await.0, 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        stale_answers,
        [
            (401, false),
            (401, false),
            (401, false),
            (429, true),
            (429, true),
            (429, true),
            (429, true),
            (429, true)
        ]
    );

    // The same for two runners on one address.
    let mut runs = suite.workflow_runs().await;
    let mut status_of = async |token: &str| {
        runs.start_run(bearer(start("build"), token))
            .await
            .map(|_| Code::Ok)
            .unwrap_or_else(|s| s.code())
    };
    for attempt in 0..6 {
        let expected = if attempt < 3 {
            Code::Unauthenticated
        } else {
            Code::ResourceExhausted
        };
        assert_eq!(status_of(&stale).await, expected, "attempt {attempt}");
        assert_eq!(status_of(&runner).await, Code::Ok);
    }

    // A spray of distinct wrong tokens on the ingest path: told to back off
    // past its budget; the runner's valid token still passes, and so do the
    // scrapes metrics-service makes through workflow-run-service from the
    // same address.
    let sprayed: Vec<Code> = {
        let mut codes = Vec::new();
        for _ in 0..5 {
            codes.push(status_of(&wrong()).await);
        }
        codes
    };
    assert_eq!(sprayed[..2], [Code::Unauthenticated, Code::Unauthenticated]);
    assert!(
        sprayed[2..].iter().all(|c| *c == Code::ResourceExhausted),
        "{sprayed:?}"
    );
    assert_eq!(status_of(&runner).await, Code::Ok);
    assert_eq!(get(&url, &prom).await.0, 200);

    // Wrong admin credentials at token-service, from the suite's own address:
    // the services' own calls (Authenticate with the right one) go on.
    let mut tokens = TokenServiceClient::new(channel(suite.addrs[1]).await);
    for _ in 0..10 {
        let refused = tokens
            .authenticate(bearer(
                AuthenticateRequest {
                    secret: prom.clone(),
                },
                &secret::generate(SecretKind::Admin).expect("rng"),
            ))
            .await
            .expect_err("a wrong admin credential");
        assert_ne!(refused.code(), Code::Ok);
    }
    assert_eq!(get(&url, &prom).await.0, 200);
    assert_eq!(status_of(&runner).await, Code::Ok);

    // A forged client-address header names the address of the valid job:
    // its sender earns 429s, the valid job is untouched.
    let forge = |token: String| {
        let url = url.clone();
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .header("x-forwarded-for", "127.0.0.1")
                .send()
                .await
                .expect("HTTP request")
                .status()
                .as_u16()
        }
    };
    for _ in 0..5 {
        assert!([401, 429].contains(&forge(wrong()).await));
    }
    assert_eq!(forge(prom.clone()).await, 200);
    assert_eq!(get(&url, &prom).await.0, 200);

    // metrics-service checked and counted the revoked token three times and
    // the forged scrapes' five; the refused ones cost no lookup.
    assert_eq!(
        own_metric(suite.addrs[3], "runplane_auth_failures_total").await,
        8.0
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
    let cleanup = suite
        .token("cyberdyne", "cleanup", &["--scope", "workflows:delete"])
        .await;
    suite
        .cli_with_env(
            &["run", "delete-workflow", "--workflow", "deploy"],
            &[("RUNPLANE_TOKEN", cleanup.as_str())],
        )
        .await
        .ok();
    suite
        .cli_with_env(&["run", "start", "--workflow", "lint"], &env)
        .await
        .ok();
}
