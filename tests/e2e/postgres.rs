//! Production persistence: replicas over one PostgreSQL database, migrations
//! under concurrency, and failing fast on a wrong database URL.
//!
//! The PostgreSQL tests need a server: scripts/test sets RUNPLANE_TEST_POSTGRES
//! and runs them with `--include-ignored`.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runplane_api::time::from_timestamp;
use runplane_api::workflowrun::v1::workflow_run_service_client::WorkflowRunServiceClient;
use runplane_api::workflowrun::v1::{FinishRunRequest, RunStatus, RunnerType, StartRunRequest};
use tonic::transport::Channel;

use crate::support::{POSTGRES_ENV, SERVICES, Suite, bearer, bin_dir, channel, free_port};

const WORKFLOWS: usize = 4;
const RUNS_PER_WORKFLOW: usize = 40;

fn require_postgres(suite: &Suite) {
    assert!(
        suite.database_url().is_some(),
        "set {POSTGRES_ENV}=postgres://USER@HOST:PORT to run this test"
    );
}

/// Sample values of one metric, keyed by the given labels' values.
fn samples(body: &str, metric: &str, keys: &[&str]) -> BTreeMap<Vec<String>, f64> {
    body.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(metric)?.strip_prefix('{')?;
            let (labels, value) = rest.rsplit_once("} ")?;
            let label = |name: &str| {
                let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
                Some(labels[start..].split('"').next()?.to_owned())
            };
            let key = keys.iter().map(|k| label(k)).collect::<Option<Vec<_>>>()?;
            Some((key, value.parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: set RUNPLANE_TEST_POSTGRES (scripts/test does)"]
async fn replicas_over_one_database_agree_and_lose_no_update() {
    let mut suite = Suite::new("");
    require_postgres(&suite);
    suite.start_service("org-service").await;
    suite.start_service("token-service").await;
    let [org, token, wrs_a, metrics_a, _] = suite.addrs;
    let (wrs_b, metrics_b) = (free_port(), free_port());
    suite
        .start_instances("workflow-run-service", &[wrs_a, wrs_b], [org, token, wrs_a])
        .await;
    suite
        .start_instance("metrics-service", metrics_a, [org, token, wrs_a])
        .await;
    suite
        .start_instance("metrics-service", metrics_b, [org, token, wrs_b])
        .await;
    suite
        .cli(&["organization", "create", "--name", "cyberdyne"])
        .await
        .ok();
    let secret = suite.token("cyberdyne", "ci", &[]).await;
    let clients: [WorkflowRunServiceClient<Channel>; 2] = [
        WorkflowRunServiceClient::new(channel(wrs_a).await),
        WorkflowRunServiceClient::new(channel(wrs_b).await),
    ];

    // Start every run at once, alternating replicas.
    let mut starts = tokio::task::JoinSet::new();
    for i in 0..WORKFLOWS * RUNS_PER_WORKFLOW {
        let mut client = clients[i % 2].clone();
        let secret = secret.clone();
        starts.spawn(async move {
            let request = StartRunRequest {
                workflow: format!("w{}", i % WORKFLOWS),
                project: String::new(),
                runner_type: RunnerType::GithubAction.into(),
                run_url: String::new(),
                request_id: String::new(),
                timeout: None,
                ..Default::default()
            };
            let run = client
                .start_run(bearer(request, &secret))
                .await
                .expect("start")
                .into_inner()
                .run
                .expect("run");
            (i, run.id)
        });
    }
    let mut started: Vec<(usize, String)> = starts.join_all().await;
    // Finish them all at once, in an order unrelated to the start order, each on
    // the other replica than its start; every fifth is also retried on both.
    started.sort_by_key(|(i, _)| (i * 7919) % 101);
    let outcomes = [RunStatus::Success, RunStatus::Error, RunStatus::Canceled];
    let mut finishes = tokio::task::JoinSet::new();
    for (i, run_id) in started {
        let replicas: &[usize] = if i % 5 == 0 {
            &[0, 1]
        } else if i % 2 == 0 {
            &[1]
        } else {
            &[0]
        };
        for replica in replicas {
            let mut client = clients[*replica].clone();
            let (secret, run_id) = (secret.clone(), run_id.clone());
            finishes.spawn(async move {
                let status = outcomes[i % 3];
                let request = FinishRunRequest {
                    run_id,
                    status: status.into(),
                    reason: String::new(),
                    ..Default::default()
                };
                let run = client
                    .finish_run(bearer(request, &secret))
                    .await
                    .expect("finish")
                    .into_inner()
                    .run
                    .expect("run");
                (
                    run.id,
                    i % WORKFLOWS,
                    status,
                    from_timestamp(run.finish_time.as_ref().expect("finished")),
                )
            });
        }
    }
    let finished = finishes.join_all().await;

    // What the metrics must say: every run counted once per (workflow, status),
    // and up from whichever run finished last (either, when two tie to the ms).
    let mut counts: BTreeMap<Vec<String>, f64> = BTreeMap::new();
    let mut last: BTreeMap<usize, (i64, BTreeSet<&str>)> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for (run_id, workflow, status, at) in &finished {
        let name = status.label();
        if !seen.insert(run_id) {
            continue; // the retried finish of a run already counted
        }
        *counts
            .entry(vec![format!("w{workflow}"), name.to_owned()])
            .or_default() += 1.0;
        let entry = last.entry(*workflow).or_insert((i64::MIN, BTreeSet::new()));
        if *at > entry.0 {
            *entry = (*at, BTreeSet::from([name]));
        } else if *at == entry.0 {
            entry.1.insert(name);
        }
    }
    assert_eq!(
        counts.values().sum::<f64>(),
        (WORKFLOWS * RUNS_PER_WORKFLOW) as f64
    );

    let auth = format!("Bearer {secret}");
    let mut bodies = Vec::new();
    for metrics in [metrics_a, metrics_b] {
        let scrape = suite
            .get(
                &format!("http://{metrics}/prom/cyberdyne/metrics"),
                Some(&auth),
            )
            .await;
        assert_eq!(scrape.status, 200, "{}", scrape.body);
        let got = samples(
            &scrape.body,
            "chainloop_workflow_run_duration_seconds_count",
            &["workflow", "status"],
        );
        assert_eq!(got, counts, "histogram counts on {metrics}");
        let up = samples(&scrape.body, "chainloop_workflow_up", &["workflow"]);
        for (workflow, (_, statuses)) in &last {
            let value = up[&vec![format!("w{workflow}")]];
            let expected: Vec<f64> = statuses
                .iter()
                .map(|s| if *s == "success" { 1.0 } else { 0.0 })
                .collect();
            assert!(
                expected.contains(&value),
                "w{workflow}: up {value}, last finished {statuses:?}"
            );
        }
        bodies.push(scrape.stable_body());
    }
    assert_eq!(
        bodies[0], bodies[1],
        "both metrics replicas must answer the same"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: set RUNPLANE_TEST_POSTGRES (scripts/test does)"]
async fn migrations_run_once_when_replicas_start_together() {
    let mut suite = Suite::new("");
    require_postgres(&suite);
    let peers = [suite.addrs[0], suite.addrs[1], suite.addrs[2]];
    for (service, schema, migrations) in [
        ("org-service", "org_service", 1),
        ("token-service", "token_service", 4),
        ("workflow-run-service", "workflow_run_service", 16),
    ] {
        let replicas = [free_port(), free_port(), free_port()];
        suite.start_instances(service, &replicas, peers).await;
        let applied = suite.sql(&format!(
            "SELECT count(*) FROM {schema}.{schema}_migrations"
        ));
        assert_eq!(applied, migrations.to_string(), "{service}");
    }
    // Each service's tables live in its own schema, none in public.
    let public =
        suite.sql("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'");
    assert_eq!(public, "0");
}

#[test]
fn a_wrong_database_url_fails_fast_and_names_the_host() {
    let dir = tempfile::tempdir().expect("tempdir");
    let admin = dir.path().join("admin-token");
    let secret =
        runplane_auth::secret::generate(runplane_auth::secret::SecretKind::Admin).expect("rng");
    std::fs::write(&admin, secret).expect("admin token");
    // All three at once: each waits out the default 5 s connect timeout.
    let children: Vec<_> = SERVICES[..3]
        .iter()
        .map(|service| {
            let child = Command::new(bin_dir().join(service))
                .args(["--database-url", "postgres://runplane@127.0.0.1:1/runplane"])
                .args(["--listen-addr", &free_port().to_string()])
                .env("RUNPLANE_ADMIN_TOKEN_FILE", &admin)
                .env_remove("RUNPLANE_CONFIG")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn");
            (service, child)
        })
        .collect();
    for (service, mut child) in children {
        // It must give up well before 30 s.
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().expect("try_wait").is_none() {
            assert!(
                Instant::now() < deadline,
                "{service} still waiting for a closed port"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let output = child.wait_with_output().expect("output");
        assert!(!output.status.success(), "{service} must fail");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("127.0.0.1:1") && stderr.contains("Connection refused"),
            "{service}: {stderr}"
        );
    }
}

/// DeleteWorkflow and FinishRun take their locks in one order (the workflow's
/// row first, then its runs), so deletes racing many concurrent finishes never
/// deadlock: every finish succeeds, or is NOT_FOUND because its workflow is
/// gone; nothing is INTERNAL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: set RUNPLANE_TEST_POSTGRES (scripts/test does)"]
async fn deletes_racing_concurrent_finishes_never_deadlock() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use runplane_api::workflowrun::v1::DeleteWorkflowRequest;
    use tonic::Code;

    const WORKFLOWS: usize = 8;
    const RUNS: usize = 800;
    const CALLERS: usize = 32;

    let mut suite = Suite::new("workflow_run_service:\n  auth_cache_ttl: 60s\n");
    require_postgres(&suite);
    for service in SERVICES {
        suite.start_service(service).await;
    }
    let (_, runner) = suite.org_with_tokens("cyberdyne").await;
    let deleter = suite
        .token("cyberdyne", "cleanup", &["--scope", "workflows:delete"])
        .await;
    let client = suite.workflow_runs().await;

    // Runs of the workflows interleaved, so that every workflow has finishes
    // in flight all along.
    let mut run_ids = Vec::with_capacity(RUNS);
    for n in 0..RUNS {
        let request = StartRunRequest {
            workflow: format!("w{}", n % WORKFLOWS),
            ..StartRunRequest::default()
        };
        let run = client
            .clone()
            .start_run(bearer(request, &runner))
            .await
            .expect("start")
            .into_inner()
            .run
            .expect("a run");
        run_ids.push(run.id);
    }

    let finished = Arc::new(AtomicUsize::new(0));
    let mut finishes = tokio::task::JoinSet::new();
    for caller in 0..CALLERS {
        let ids: Vec<String> = run_ids
            .iter()
            .skip(caller)
            .step_by(CALLERS)
            .cloned()
            .collect();
        let (mut client, runner, finished) = (client.clone(), runner.clone(), finished.clone());
        finishes.spawn(async move {
            let mut codes = Vec::new();
            for run_id in ids {
                let request = FinishRunRequest {
                    run_id,
                    status: RunStatus::Success.into(),
                    reason: String::new(),
                    ..Default::default()
                };
                let code = match client.finish_run(bearer(request, &runner)).await {
                    Ok(_) => Code::Ok,
                    Err(status) => status.code(),
                };
                finished.fetch_add(1, Ordering::SeqCst);
                codes.push(code);
            }
            codes
        });
    }
    // Each workflow is deleted while finishes of it are in flight.
    let mut deletes = Vec::new();
    for w in 0..WORKFLOWS {
        while finished.load(Ordering::SeqCst) < (w + 1) * RUNS / (WORKFLOWS + 2) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let request = DeleteWorkflowRequest {
            workflow: format!("w{w}"),
            project: String::new(),
        };
        deletes.push(
            client
                .clone()
                .delete_workflow(bearer(request, &deleter))
                .await,
        );
    }

    let mut codes = BTreeMap::new();
    for caller in finishes.join_all().await {
        for code in caller {
            *codes.entry(format!("{code:?}")).or_insert(0) += 1;
        }
    }
    for (w, deleted) in deletes.iter().enumerate() {
        assert!(deleted.is_ok(), "delete of w{w}: {deleted:?}");
    }
    assert!(
        codes.keys().all(|code| code == "Ok" || code == "NotFound"),
        "finishes: {codes:?}"
    );
    assert_eq!(codes.values().sum::<usize>(), RUNS);
}

/// The server's refusal is given in its own words, without the "at line N"
/// of PostgreSQL's source that sqlx appends (it reads like a line of the
/// operator's config).
#[test]
#[ignore = "needs PostgreSQL: set RUNPLANE_TEST_POSTGRES (scripts/test does)"]
fn a_missing_database_is_named_in_postgres_words_without_its_source_line() {
    let Ok(server) = std::env::var(crate::support::POSTGRES_ENV) else {
        panic!("set {}", crate::support::POSTGRES_ENV);
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let admin = dir.path().join("admin-token");
    let secret =
        runplane_auth::secret::generate(runplane_auth::secret::SecretKind::Admin).expect("rng");
    std::fs::write(&admin, secret).expect("admin token");
    let output = Command::new(bin_dir().join("org-service"))
        .args([
            "--database-url",
            &format!("{}/runplane_no_such_database", server.trim_end_matches('/')),
        ])
        .args(["--listen-addr", &free_port().to_string()])
        .env("RUNPLANE_ADMIN_TOKEN_FILE", &admin)
        .env_remove("RUNPLANE_CONFIG")
        .output()
        .expect("run org-service");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("runplane_no_such_database")
            && stderr.contains("does not exist (SQLSTATE 3D000)"),
        "{stderr}"
    );
    assert!(!stderr.contains("at line"), "{stderr}");
}
