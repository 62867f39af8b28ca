//! Ingestion: run start+finish pairs through the real gRPC API and token
//! authentication, and the same writes done by the database alone (floor c).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use runplane_api::workflowrun::v1::workflow_run_service_client::WorkflowRunServiceClient;
use runplane_api::workflowrun::v1::{FinishRunRequest, RunStatus, RunnerType, StartRunRequest};
use runplane_client::with_bearer;
use workflow_run_service::testing::Storage;

use crate::stats::Latencies;
use crate::suite::channel;

/// Workflows the load is spread over.
pub(crate) const WORKFLOWS: usize = 50;

/// What one concurrency level measured.
pub(crate) struct Ingestion {
    pub(crate) clients: usize,
    pub(crate) pairs_per_second: f64,
    pub(crate) start: Latencies,
    pub(crate) finish: Latencies,
}

/// `clients` runners, each with its own connection, reporting start+finish
/// pairs back to back for `duration`.
pub(crate) async fn through_api(
    addr: SocketAddr,
    secret: &str,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Ingestion> {
    let mut tasks = tokio::task::JoinSet::new();
    let began = Instant::now();
    for client in 0..clients {
        let mut api = WorkflowRunServiceClient::new(channel(addr).await?);
        let secret = secret.to_owned();
        tasks.spawn(async move {
            let (mut start, mut finish, mut pairs) =
                (Latencies::default(), Latencies::default(), 0u64);
            while began.elapsed() < duration {
                let request = StartRunRequest {
                    workflow: format!("ingest-{}", (client + pairs as usize) % WORKFLOWS),
                    project: String::new(),
                    runner_type: RunnerType::GithubAction.into(),
                    run_url: String::new(),
                    request_id: String::new(),
                    timeout: None,
                    ..Default::default()
                };
                let t0 = Instant::now();
                let run = api
                    .start_run(with_bearer(request, &secret))
                    .await?
                    .into_inner()
                    .run
                    .unwrap_or_default();
                let t1 = Instant::now();
                let request = FinishRunRequest {
                    run_id: run.id,
                    status: RunStatus::Success.into(),
                    reason: String::new(),
                    ..Default::default()
                };
                api.finish_run(with_bearer(request, &secret)).await?;
                start.push(t1 - t0);
                finish.push(t1.elapsed());
                pairs += 1;
            }
            anyhow::Ok((start, finish, pairs))
        });
    }
    let (mut start, mut finish, mut pairs) = (Latencies::default(), Latencies::default(), 0u64);
    for result in tasks.join_all().await {
        let (s, f, p) = result?;
        start.extend(s);
        finish.extend(f);
        pairs += p;
    }
    Ok(Ingestion {
        clients,
        pairs_per_second: pairs as f64 / began.elapsed().as_secs_f64(),
        start,
        finish,
    })
}

/// Floor (c): the same inserts and updates, straight through the service's data
/// layer on its own database: no gRPC, no authentication, no process hop.
pub(crate) async fn database_alone(
    store: Storage,
    org_id: &str,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let store = Arc::new(store);
    let mut tasks = tokio::task::JoinSet::new();
    let began = Instant::now();
    for client in 0..clients {
        let (store, org_id) = (store.clone(), org_id.to_owned());
        tasks.spawn(async move {
            let mut pairs = 0u64;
            while began.elapsed() < duration {
                let name = format!("ingest-{}", (client + pairs as usize) % WORKFLOWS);
                store.report_run(&org_id, &name, RunStatus::Success).await?;
                pairs += 1;
            }
            anyhow::Ok(pairs)
        });
    }
    let mut pairs = 0u64;
    for result in tasks.join_all().await {
        pairs += result?;
    }
    Ok(pairs as f64 / began.elapsed().as_secs_f64())
}

/// Floor (a): one-hop gRPC round trips (`grpc.health.v1` Check) to one service.
pub(crate) async fn health_round_trips(
    addr: SocketAddr,
    count: usize,
) -> anyhow::Result<Latencies> {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let mut client = HealthClient::new(channel(addr).await?);
    let mut latencies = Latencies::default();
    for _ in 0..count {
        let t0 = Instant::now();
        client
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await?;
        latencies.push(t0.elapsed());
    }
    Ok(latencies)
}
