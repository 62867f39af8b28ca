//! The README walkthrough, end to end: `runplane up`, an organization, tokens,
//! runs reported by the CLI, and a scrape whose numbers are checked against
//! the runs themselves.

use runplane_api::time::from_timestamp;
use runplane_api::workflowrun::v1::{GetRunRequest, Run};

use crate::support::{Suite, bearer, grpc_serving, promtool_check};

/// Histogram bounds chosen so that a ~1 s run and an instant one land in different buckets.
const BUCKETS: &str = "workflow_run_service:\n  run_duration_buckets: [0.5, 5, 60]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walkthrough_on_the_embedded_default() {
    let mut suite = Suite::new(BUCKETS);
    suite.up().await;

    // Every service reports SERVING, for the server and for its own service name.
    for (addr, name) in suite.addrs[..3].iter().zip([
        "runplane.org.v1.OrganizationService",
        "runplane.token.v1.TokenService",
        "runplane.workflowrun.v1.WorkflowRunService",
    ]) {
        assert!(grpc_serving(*addr, "").await, "{addr} not serving");
        assert!(grpc_serving(*addr, name).await, "{name} not serving");
    }
    assert_eq!(
        suite
            .get(&format!("http://{}/healthz", suite.addrs[3]), None)
            .await
            .status,
        200
    );

    // The admin credential was generated on first start, readable by its owner only.
    let admin_file = suite.data_dir().join("admin-token");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&admin_file)
            .expect("admin-token")
            .permissions(),
    );
    assert_eq!(
        mode & 0o077,
        0,
        "admin-token must not be readable by others"
    );
    // So are the data directory and, on SQLite, every organization's data.
    let private = |path: std::path::PathBuf| {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).expect("exists").permissions(),
        );
        assert_eq!(mode & 0o077, 0, "{} is readable by others", path.display());
    };
    private(suite.data_dir());
    if suite.database_url().is_none() {
        for file in ["org.db", "token.db", "workflow-run.db"] {
            private(suite.data_dir().join(file));
        }
    }

    let created = suite
        .cli(&["organization", "create", "--name", "cyberdyne"])
        .await
        .ok();
    assert!(
        created.contains("Created organization cyberdyne"),
        "{created}"
    );
    let listed = suite.cli(&["organization", "list"]).await.ok();
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("cyberdyne") && l.contains(" on ")),
        "{listed}"
    );

    // A token is printed once; with -q, alone on stdout.
    let human = suite
        .cli(&[
            "organization",
            "api-token",
            "create",
            "--name",
            "prom",
            "--org",
            "cyberdyne",
        ])
        .await
        .ok();
    let secret = human.lines().last().expect("secret line").to_owned();
    assert!(
        secret.starts_with("rpt_") && human.contains("shown once"),
        "{human}"
    );
    let token = suite.token("cyberdyne", "ci", &[]).await;
    assert!(
        token.starts_with("rpt_") && !token.contains(char::is_whitespace),
        "{token:?}"
    );
    let tokens = suite
        .cli(&["organization", "api-token", "list", "--org", "cyberdyne"])
        .await
        .ok();
    assert!(tokens.contains("prom") && tokens.contains("ci"), "{tokens}");
    assert!(
        !tokens.contains(&token) && !tokens.contains(&secret),
        "secrets must never be listed"
    );

    // A GitHub Actions runner reports a successful run; the runner type and run URL come from its environment.
    let github = [
        ("RUNPLANE_TOKEN", token.as_str()),
        ("GITHUB_ACTIONS", "true"),
        ("GITHUB_SERVER_URL", "https://github.com"),
        ("GITHUB_REPOSITORY", "cyberdyne/skynet"),
        ("GITHUB_RUN_ID", "1997"),
    ];
    let run_id = suite
        .cli_with_env(
            &[
                "run",
                "start",
                "--workflow",
                "backend-release-production",
                "-q",
            ],
            &github,
        )
        .await
        .ok();
    suite
        .cli_with_env(&["run", "finish", &run_id, "--status", "success"], &github)
        .await
        .ok();
    // A retry with the same outcome is harmless; another outcome is refused.
    suite
        .cli_with_env(&["run", "finish", &run_id, "--status", "success"], &github)
        .await
        .ok();
    let refused = suite
        .cli_with_env(&["run", "finish", &run_id, "--status", "error"], &github)
        .await
        .err();
    assert!(refused.contains("already finished as success"), "{refused}");

    // `run exec` reports a command's outcome and exits with its code.
    let env = [("RUNPLANE_TOKEN", token.as_str())];
    let exec = suite
        .cli_with_env(
            &[
                "run",
                "exec",
                "--workflow",
                "integration-tests",
                "--project",
                "skynet",
                "--",
                "sh",
                "-c",
                "sleep 1; exit 3",
            ],
            &env,
        )
        .await;
    assert_eq!(exec.status.code(), Some(3), "{exec:#?}");
    let exec = suite
        .cli_with_env(
            &[
                "run",
                "exec",
                "--workflow",
                "integration-tests",
                "--project",
                "skynet",
                "--",
                "true",
            ],
            &env,
        )
        .await;
    assert_eq!(exec.status.code(), Some(0), "{exec:#?}");

    // The scrape: Chainloop-compatible series, text format 0.0.4.
    let scrape = suite
        .scrape("cyberdyne", Some(&format!("Bearer {token}")))
        .await;
    assert_eq!(scrape.status, 200, "{}", scrape.body);
    assert_eq!(
        scrape.content_type,
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let body = scrape.body;
    assert!(
        body.contains("# HELP chainloop_workflow_up Indicate if the last run was successful. "),
        "{body}"
    );
    assert!(
        body.contains("# TYPE chainloop_workflow_up gauge\n"),
        "{body}"
    );
    assert!(body.contains(
        "chainloop_workflow_up{org=\"cyberdyne\",project=\"default\",runner=\"GITHUB_ACTION\",workflow=\"backend-release-production\"} 1\n"
    ), "{body}");
    // The last *finished* run of integration-tests succeeded.
    assert!(body.contains(
        "chainloop_workflow_up{org=\"cyberdyne\",project=\"skynet\",runner=\"UNSPECIFIED\",workflow=\"integration-tests\"} 1\n"
    ), "{body}");
    assert!(body.contains("# HELP chainloop_workflow_run_duration_seconds Duration of a workflow runs in seconds.\n"), "{body}");
    assert!(
        body.contains("# TYPE chainloop_workflow_run_duration_seconds histogram\n"),
        "{body}"
    );
    promtool_check(&body)
        .unwrap_or_else(|e| panic!("promtool rejected the exposition: {e}\n{body}"));

    // The histogram equals what was reported: compare with the runs themselves.
    let runs = suite
        .cli_with_env(
            &[
                "run",
                "list",
                "--workflow",
                "integration-tests",
                "--project",
                "skynet",
                "-q",
            ],
            &[("RUNPLANE_TOKEN", &token)],
        )
        .await
        .ok();
    let mut client = suite.workflow_runs().await;
    let mut by_status: Vec<(String, Run)> = Vec::new();
    for id in runs.lines() {
        let run = client
            .get_run(bearer(
                GetRunRequest {
                    run_id: id.to_owned(),
                },
                &token,
            ))
            .await
            .expect("get run")
            .into_inner()
            .run
            .expect("run");
        let status = if run.reason.contains("exit code 3") {
            "error"
        } else {
            "success"
        };
        by_status.push((status.to_owned(), run));
    }
    assert_eq!(by_status.len(), 2, "{runs}");
    for (status, run) in &by_status {
        let seconds = (from_timestamp(run.finish_time.as_ref().expect("finished"))
            - from_timestamp(run.start_time.as_ref().expect("started")))
            as f64
            / 1000.0;
        let labels = format!(
            "org=\"cyberdyne\",project=\"skynet\",runner=\"UNSPECIFIED\",status=\"{status}\",workflow=\"integration-tests\""
        );
        let sample = |suffix: &str, extra: &str| -> f64 {
            let prefix =
                format!("chainloop_workflow_run_duration_seconds{suffix}{{{labels}{extra}}} ");
            body.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .unwrap_or_else(|| panic!("no sample {prefix} in\n{body}"))
                .parse()
                .expect("number")
        };
        assert_eq!(sample("_count", ""), 1.0);
        assert!(
            (sample("_sum", "") - seconds).abs() < 1e-9,
            "sum {} vs {seconds}",
            sample("_sum", "")
        );
        for bound in ["0.5", "5", "60"] {
            let expected = if seconds <= bound.parse::<f64>().expect("bound") {
                1.0
            } else {
                0.0
            };
            assert_eq!(
                sample("_bucket", &format!(",le=\"{bound}\"")),
                expected,
                "{status} {seconds}s le={bound}"
            );
        }
        assert_eq!(sample("_bucket", ",le=\"+Inf\""), 1.0);
    }
    // The failed run slept a second: it really lands above the first bound.
    assert!(
        body.contains("status=\"error\",workflow=\"integration-tests\",le=\"0.5\"} 0\n"),
        "{body}"
    );

    // The data lives in real SQLite files under the data directory, or in each
    // service's own schema of the PostgreSQL database.
    if suite.database_url().is_some() {
        assert_eq!(
            suite.sql("SELECT name FROM org_service.organizations"),
            "cyberdyne"
        );
        assert_eq!(
            suite.sql("SELECT count(*) FROM token_service.api_tokens"),
            "2"
        );
        assert_eq!(
            suite.sql("SELECT count(*) FROM workflow_run_service.runs"),
            "3"
        );
    } else {
        for db in ["org.db", "token.db", "workflow-run.db"] {
            assert!(suite.data_dir().join(db).is_file(), "{db} missing");
        }
    }
    // Ctrl-C stops all four cleanly.
    assert!(suite.stop_up().await.success(), "{}", suite.log());
}
