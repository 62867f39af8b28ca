//! Durability under crashes: runners report runs while every service in turn
//! is killed with SIGKILL and restarted, several times. At the end every
//! acknowledged run is there with its outcome, nothing is there twice, and the
//! metrics equal the acknowledged history exactly.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use runplane_api::workflowrun::v1::workflow_run_service_client::WorkflowRunServiceClient;
use runplane_api::workflowrun::v1::{
    FinishRunRequest, ListRunsRequest, RunStatus, StartRunRequest,
};
use tonic::Code;
use tonic::transport::Channel;

use crate::support::{Suite, bearer};

const CLIENTS: usize = 4;
const ROUNDS: usize = 3;
const WORKFLOWS: usize = 5;

/// What one runner was told: run ids whose start was acknowledged, and the
/// outcome of those whose finish was.
#[derive(Default)]
struct Acknowledged {
    started: Vec<String>,
    finished: Vec<(String, String, RunStatus)>,
}

/// A connection that reconnects by itself after a service restarts.
fn lazy_client(addr: std::net::SocketAddr) -> WorkflowRunServiceClient<Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(1))
        .connect_lazy();
    WorkflowRunServiceClient::new(channel)
}

/// Whether a failed call may be retried: everything a crash can cause. The
/// answers that mean a lost or inconsistent run are not, and fail the test.
fn retryable(code: Code) -> bool {
    !matches!(
        code,
        Code::InvalidArgument
            | Code::NotFound
            | Code::FailedPrecondition
            | Code::AlreadyExists
            | Code::PermissionDenied
            | Code::Unauthenticated
    )
}

async fn until_acknowledged<T, F, Fut>(what: &str, mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match call().await {
            Ok(response) => return response.into_inner(),
            Err(status) if retryable(status.code()) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("{what}: {status:?}"),
        }
    }
}

/// One runner: start, then finish, each retried (the start with the same
/// request id) until acknowledged, until told to stop.
async fn runner(
    id: usize,
    addr: std::net::SocketAddr,
    token: String,
    stop: Arc<AtomicBool>,
) -> Acknowledged {
    let client = lazy_client(addr);
    let mut acknowledged = Acknowledged::default();
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        let workflow = format!("wf-{}", (id + n) % WORKFLOWS);
        let request_id = format!("runner-{id}-run-{n}");
        let run = until_acknowledged("StartRun", || {
            let mut client = client.clone();
            let request = bearer(
                StartRunRequest {
                    workflow: workflow.clone(),
                    request_id: request_id.clone(),
                    ..Default::default()
                },
                &token,
            );
            async move { client.start_run(request).await }
        })
        .await
        .run
        .expect("a run");
        acknowledged.started.push(run.id.clone());
        let outcome = if n % 3 == 0 {
            RunStatus::Error
        } else {
            RunStatus::Success
        };
        until_acknowledged("FinishRun", || {
            let mut client = client.clone();
            let request = bearer(
                FinishRunRequest {
                    run_id: run.id.clone(),
                    status: outcome.into(),
                    reason: String::new(),
                    ..Default::default()
                },
                &token,
            );
            async move { client.finish_run(request).await }
        })
        .await;
        acknowledged.finished.push((run.id, workflow, outcome));
        n += 1;
    }
    acknowledged
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_run_is_lost_or_counted_twice_when_services_are_killed() {
    let mut suite = Suite::new("");
    for service in [
        "org-service",
        "token-service",
        "workflow-run-service",
        "metrics-service",
    ] {
        suite.start_service(service).await;
    }
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

    let stop = Arc::new(AtomicBool::new(false));
    let runners: Vec<_> = (0..CLIENTS)
        .map(|id| tokio::spawn(runner(id, suite.addrs[2], token.clone(), stop.clone())))
        .collect();
    let mut kills = 0;
    for _ in 0..ROUNDS {
        for service in [
            "workflow-run-service",
            "token-service",
            "org-service",
            "workflow-run-service",
            "metrics-service",
        ] {
            tokio::time::sleep(Duration::from_millis(400)).await;
            suite.kill_service(service).await;
            kills += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            suite.start_service(service).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop.store(true, Ordering::SeqCst);
    let mut acknowledged = Acknowledged::default();
    for runner in runners {
        let mut one = runner.await.expect("runner");
        acknowledged.started.append(&mut one.started);
        acknowledged.finished.append(&mut one.finished);
    }
    assert!(
        acknowledged.finished.len() >= CLIENTS * ROUNDS,
        "the runners made progress between kills: {}",
        acknowledged.finished.len()
    );

    // Every acknowledged run is stored once, with its acknowledged outcome.
    let mut client = lazy_client(suite.addrs[2]);
    let mut stored: HashMap<String, (String, RunStatus)> = HashMap::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_runs(bearer(
                ListRunsRequest {
                    page_size: 1000,
                    page_token: page_token.clone(),
                    ..Default::default()
                },
                &token,
            ))
            .await
            .expect("ListRuns")
            .into_inner();
        for run in page.runs {
            let status = run.status();
            assert!(
                stored
                    .insert(run.id.clone(), (run.workflow, status))
                    .is_none(),
                "run {} listed twice",
                run.id
            );
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(
        stored.len(),
        acknowledged.started.len(),
        "one stored run per acknowledged start: retried starts created no second run"
    );
    for (id, workflow, outcome) in &acknowledged.finished {
        assert_eq!(
            stored.get(id),
            Some(&(workflow.clone(), *outcome)),
            "acknowledged run {id}"
        );
    }

    // The metrics equal the acknowledged history exactly.
    let mut expected: BTreeMap<(String, String), u64> = BTreeMap::new();
    for (_, workflow, outcome) in &acknowledged.finished {
        let status = match outcome {
            RunStatus::Error => "error",
            _ => "success",
        };
        *expected
            .entry((workflow.clone(), status.to_owned()))
            .or_default() += 1;
    }
    let scrape = suite
        .scrape("cyberdyne", Some(&format!("Bearer {token}")))
        .await;
    assert_eq!(scrape.status, 200, "{}", scrape.body);
    let mut counted: BTreeMap<(String, String), u64> = BTreeMap::new();
    for line in scrape
        .body
        .lines()
        .filter(|l| l.starts_with("chainloop_workflow_runs_total{"))
    {
        let label = |name: &str| {
            line.split(&format!("{name}=\""))
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_default()
                .to_owned()
        };
        let value: u64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .expect("a count");
        *counted
            .entry((label("workflow"), label("status")))
            .or_default() += value;
    }
    assert_eq!(counted, expected, "runs_total per workflow and status");
    let in_progress: u64 = scrape
        .body
        .lines()
        .filter(|l| l.starts_with("chainloop_workflow_runs_in_progress{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(in_progress, 0, "every started run was finished");
    eprintln!(
        "chaos: {kills} kills survived, {} runs acknowledged, none lost or doubled",
        acknowledged.finished.len()
    );
}
