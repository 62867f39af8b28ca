//! Retries are safe: StartRun takes an idempotency key; the CLI retries with
//! bounded backoff while runplane is unreachable; `--best-effort` never fails CI.

use std::time::Duration;

use runplane_api::workflowrun::v1::{ListRunsRequest, StartRunRequest};
use tonic::Code;

use crate::support::{Suite, bearer};

fn start(workflow: &str, request_id: &str) -> StartRunRequest {
    StartRunRequest {
        workflow: workflow.to_owned(),
        request_id: request_id.to_owned(),
        ..StartRunRequest::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_start_with_the_same_request_id_returns_the_same_run() {
    let mut suite = Suite::new("");
    suite.up().await;
    for org in ["cyberdyne", "acme-corp"] {
        suite
            .cli(&["organization", "create", "--name", org])
            .await
            .ok();
    }
    let token = suite.token("cyberdyne", "ci", &[]).await;
    let acme = suite.token("acme-corp", "ci", &[]).await;
    let client = suite.workflow_runs().await;

    let first = client
        .clone()
        .start_run(bearer(start("build", "job-42"), &token))
        .await
        .expect("start");
    let first = first.into_inner().run.expect("run");
    let again = client
        .clone()
        .start_run(bearer(start("build", "job-42"), &token))
        .await
        .expect("retry");
    assert_eq!(again.into_inner().run.expect("run").id, first.id);

    // A burst of concurrent retries still makes one run.
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (mut client, token) = (client.clone(), token.clone());
        burst.spawn(async move {
            client
                .start_run(bearer(start("deploy", "burst"), &token))
                .await
                .map(|r| r.into_inner().run.unwrap_or_default().id)
        });
    }
    let ids: std::collections::BTreeSet<String> = burst
        .join_all()
        .await
        .into_iter()
        .map(|r| r.expect("start"))
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");

    // Keys are per workflow (one CI run id may key several workflows' runs),
    // and another organization has its own keys.
    let other = client
        .clone()
        .start_run(bearer(start("other", "job-42"), &token))
        .await
        .expect("another workflow's key");
    assert_ne!(other.into_inner().run.expect("run").id, first.id);
    let theirs = client
        .clone()
        .start_run(bearer(start("build", "job-42"), &acme))
        .await
        .expect("own keys");
    assert_ne!(theirs.into_inner().run.expect("run").id, first.id);
    let bad = client
        .clone()
        .start_run(bearer(start("build", "line\nbreak"), &token))
        .await
        .expect_err("invalid");
    assert_eq!(bad.code(), Code::InvalidArgument);

    let runs = client
        .clone()
        .list_runs(bearer(ListRunsRequest::default(), &token))
        .await
        .expect("list");
    assert_eq!(
        runs.into_inner().runs.len(),
        3,
        "one run per workflow and key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_retries_while_runplane_is_down_and_best_effort_never_fails_the_job() {
    let mut suite = Suite::new("");
    suite.start_service("org-service").await;
    suite.start_service("token-service").await;
    suite
        .cli(&["organization", "create", "--name", "cyberdyne"])
        .await
        .ok();
    let token = suite.token("cyberdyne", "ci", &[]).await;
    let env = [("RUNPLANE_TOKEN", token.as_str())];

    // workflow-run-service is not running. Without --best-effort the CLI gives up
    // after its retry window — all of it — saying why...
    let tried_from = std::time::Instant::now();
    let failed = suite
        .cli_with_env(
            &["run", "start", "--workflow", "w", "--retry-for", "1s"],
            &env,
        )
        .await
        .err();
    assert!(
        tried_from.elapsed() >= Duration::from_secs(1),
        "gave up before --retry-for: {:?}",
        tried_from.elapsed()
    );
    assert!(
        failed.contains("retrying in") && failed.contains("cannot reach workflow-run-service"),
        "{failed}"
    );
    // ... with it, the job goes on: `run start` exits 0 and prints no id, and
    // `run exec` runs the command and exits with its code.
    let out = suite
        .cli_with_env(
            &[
                "run",
                "start",
                "--workflow",
                "w",
                "--retry-for",
                "1s",
                "--best-effort",
                "-q",
            ],
            &env,
        )
        .await;
    assert!(out.status.success() && out.stdout.is_empty(), "{out:#?}");
    assert!(out.stderr.contains("--best-effort"), "{out:#?}");
    let out = suite
        .cli_with_env(
            &[
                "run",
                "exec",
                "--workflow",
                "w",
                "--retry-for",
                "1s",
                "--best-effort",
                "--",
                "sh",
                "-c",
                "echo ran; exit 4",
            ],
            &env,
        )
        .await;
    assert_eq!(out.status.code(), Some(4), "{out:#?}");
    assert!(out.stdout.contains("ran"), "{out:#?}");

    // A runner that starts while runplane is down succeeds once it is back.
    let pending = suite.spawn_cli(
        &[
            "run",
            "start",
            "--workflow",
            "w",
            "--retry-for",
            "60s",
            "-q",
        ],
        &env,
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    suite.start_service("workflow-run-service").await;
    let output = tokio::task::spawn_blocking(move || pending.wait_with_output())
        .await
        .expect("join")
        .expect("output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("retrying in"), "it had to retry: {stderr}");
    let id = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let runs = suite.cli_with_env(&["run", "list", "-q"], &env).await.ok();
    assert_eq!(runs, id, "exactly the one run, however many attempts");
}
