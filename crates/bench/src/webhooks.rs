//! Webhook deliveries through ingest-service (signed as GitHub signs them,
//! verified, reported through workflow-run-service), and one client
//! reporting whole runs with ReportRun against StartRun + FinishRun.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use runplane_api::time::{now_ms, timestamp};
use runplane_api::workflowrun::v1::workflow_run_service_client::WorkflowRunServiceClient;
use runplane_api::workflowrun::v1::{ReportRunRequest, RunStatus, RunnerType};
use runplane_client::with_bearer;

use crate::stats::Latencies;
use crate::suite::channel;

/// Workflows the deliveries are spread over.
const WORKFLOWS: u64 = 50;

/// What one concurrency level of deliveries measured.
pub(crate) struct Deliveries {
    pub(crate) concurrency: usize,
    pub(crate) per_second: f64,
    pub(crate) latencies: Latencies,
    pub(crate) payload_bytes: usize,
}

/// A `workflow_run` `completed` delivery of run `id`, shaped like GitHub's
/// (the fields ingest-service reads, and the bulk of the rest).
fn payload(id: u64) -> String {
    let at = |ms: i64| {
        let since_epoch = Duration::from_millis(u64::try_from(ms).unwrap_or(0));
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + since_epoch).to_string()
    };
    let finished = now_ms() - 1_000;
    let user = serde_json::json!({
        "login": "octocat", "id": 1, "node_id": "MDQ6VXNlcjE=", "type": "User", "site_admin": false,
        "avatar_url": "https://github.com/images/error/octocat_happy.gif",
        "html_url": "https://github.com/octocat", "url": "https://api.github.com/users/octocat"
    });
    let repository = serde_json::json!({
        "id": 1296269, "node_id": "MDEwOlJlcG9zaXRvcnkxMjk2MjY5", "name": "Hello-World",
        "full_name": "octo-org/hello-world", "private": false, "owner": user,
        "html_url": "https://github.com/octo-org/hello-world",
        "description": "This your first repo!", "fork": false,
        "url": "https://api.github.com/repos/octo-org/hello-world",
        "default_branch": "main", "visibility": "public"
    });
    serde_json::json!({
        "action": "completed",
        "workflow_run": {
            "id": id, "name": format!("build-{}", id % WORKFLOWS), "node_id": "WFR_kwLOA",
            "head_branch": "main", "head_sha": "acb5820ced9479c074f688cc328bf03f341a511d",
            "path": ".github/workflows/build.yml", "run_number": id, "event": "push",
            "status": "completed", "conclusion": if id.is_multiple_of(5) { "failure" } else { "success" },
            "workflow_id": 159038, "check_suite_id": 414944374, "run_attempt": 1,
            "url": format!("https://api.github.com/repos/octo-org/hello-world/actions/runs/{id}"),
            "html_url": format!("https://github.com/octo-org/hello-world/actions/runs/{id}"),
            "created_at": at(finished - 95_000), "run_started_at": at(finished - 90_000),
            "updated_at": at(finished), "actor": user, "triggering_actor": user,
            "head_commit": {
                "id": "acb5820ced9479c074f688cc328bf03f341a511d", "tree_id": "d23f6eedb1e1b9610bbc754ddb5197bfe7271223",
                "message": "Create linter.yaml", "timestamp": at(finished - 100_000),
                "author": {"name": "Octo Cat", "email": "octocat@github.com"},
                "committer": {"name": "GitHub", "email": "noreply@github.com"}
            },
            "repository": repository, "head_repository": repository
        },
        "workflow": {"id": 159038, "name": "build", "path": ".github/workflows/build.yml", "state": "active"},
        "repository": repository,
        "sender": user
    })
    .to_string()
}

/// `concurrency` senders, each with its own connection, delivering signed
/// `workflow_run` completions of new runs back to back for `duration`.
pub(crate) async fn deliveries(
    addr: SocketAddr,
    org: &str,
    secret: &str,
    concurrency: usize,
    duration: Duration,
    first_id: u64,
) -> anyhow::Result<Deliveries> {
    let url = format!("http://{addr}/hooks/github/{org}");
    let payload_bytes = payload(first_id).len();
    let mut tasks = tokio::task::JoinSet::new();
    let began = Instant::now();
    for sender in 0..concurrency {
        let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
        let (url, secret) = (url.clone(), secret.to_owned());
        tasks.spawn(async move {
            let mut latencies = Latencies::default();
            let mut n = 0u64;
            while began.elapsed() < duration {
                let id = first_id + (sender as u64) * 100_000_000 + n;
                let body = payload(id);
                let signature = runplane_auth::webhook::github_signature(&secret, body.as_bytes());
                let t0 = Instant::now();
                let response = http
                    .post(&url)
                    .header("x-github-event", "workflow_run")
                    .header("x-hub-signature-256", signature)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?;
                let status = response.status();
                let _ = response.bytes().await?;
                anyhow::ensure!(status.is_success(), "delivery answered {status}");
                latencies.push(t0.elapsed());
                n += 1;
            }
            anyhow::Ok(latencies)
        });
    }
    let mut latencies = Latencies::default();
    for result in tasks.join_all().await {
        latencies.extend(result?);
    }
    Ok(Deliveries {
        concurrency,
        per_second: latencies.len() as f64 / began.elapsed().as_secs_f64(),
        latencies,
        payload_bytes,
    })
}

/// One client reporting whole runs with ReportRun, back to back: runs/s.
/// Request ids start at `first`, so that calls of another round are new runs.
pub(crate) async fn report_run_alone(
    addr: SocketAddr,
    token: &str,
    duration: Duration,
    first: u64,
) -> anyhow::Result<(f64, Latencies)> {
    let mut api = WorkflowRunServiceClient::new(channel(addr).await?);
    let mut latencies = Latencies::default();
    let began = Instant::now();
    let mut n = 0u64;
    while began.elapsed() < duration {
        let finished = now_ms() - 1_000;
        let request = ReportRunRequest {
            workflow: format!("report-{}", n % WORKFLOWS),
            runner_type: RunnerType::JenkinsJob.into(),
            request_id: format!("bench-{}", first + n),
            start_time: Some(timestamp(finished - 30_000)),
            finish_time: Some(timestamp(finished)),
            status: RunStatus::Success.into(),
            ..ReportRunRequest::default()
        };
        let t0 = Instant::now();
        api.report_run(with_bearer(request, token)).await?;
        latencies.push(t0.elapsed());
        n += 1;
    }
    Ok((n as f64 / began.elapsed().as_secs_f64(), latencies))
}
