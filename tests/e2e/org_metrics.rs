//! runplane's per-organization metrics beyond Chainloop's two, after a known
//! sequence of runs: out-of-order finishes, a run in progress, a deleted
//! workflow, and the same workflow name in two projects. Checked in both
//! formats, each by an independent parser (promtool; Python's prometheus_client
//! for OpenMetrics), and gzip-compressed when asked.

use std::collections::BTreeMap;

use runplane_api::time::from_timestamp;
use runplane_api::workflowrun::v1::{
    DeleteWorkflowRequest, FinishRunRequest, GetRunRequest, Run, RunStatus, RunnerType,
    StartRunRequest,
};

use crate::support::{
    Suite, bearer, key, parse_openmetrics, promtool_check, text_samples, without_scrape_duration,
};

const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_after_a_known_history_in_both_formats() {
    let mut suite = Suite::new("");
    suite.up().await;
    suite
        .cli(&["organization", "create", "--name", "cyberdyne"])
        .await
        .ok();
    let token = suite
        .token(
            "cyberdyne",
            "ci",
            &["--scope", "runs:write,metrics:read,workflows:delete"],
        )
        .await;
    let mut client = suite.workflow_runs().await;
    let start = |workflow: &str, project: &str, runner: RunnerType| {
        bearer(
            StartRunRequest {
                workflow: workflow.into(),
                project: project.into(),
                runner_type: runner.into(),
                ..StartRunRequest::default()
            },
            &token,
        )
    };
    let finish = |run: &Run, status: RunStatus| {
        bearer(
            FinishRunRequest {
                run_id: run.id.clone(),
                status: status.into(),
                reason: String::new(),
                ..Default::default()
            },
            &token,
        )
    };
    let started = |r: tonic::Response<runplane_api::workflowrun::v1::StartRunResponse>| {
        r.into_inner().run.expect("run")
    };

    // default/build: A starts, B starts, B succeeds, A fails (finishing last), C stays open.
    let a = started(
        client
            .start_run(start("build", "", RunnerType::GithubAction))
            .await
            .expect("start"),
    );
    let b = started(
        client
            .start_run(start("build", "", RunnerType::GithubAction))
            .await
            .expect("start"),
    );
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    client
        .finish_run(finish(&b, RunStatus::Success))
        .await
        .expect("finish");
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    client
        .finish_run(finish(&a, RunStatus::Error))
        .await
        .expect("finish");
    let _c = started(
        client
            .start_run(start("build", "", RunnerType::GithubAction))
            .await
            .expect("start"),
    );
    // other/build: same name, another project, another runner.
    let d = started(
        client
            .start_run(start("build", "other", RunnerType::GitlabPipeline))
            .await
            .expect("start"),
    );
    client
        .finish_run(finish(&d, RunStatus::Canceled))
        .await
        .expect("finish");
    // default/deploy: runs once, then is deleted.
    let e = started(
        client
            .start_run(start("deploy", "", RunnerType::GithubAction))
            .await
            .expect("start"),
    );
    client
        .finish_run(finish(&e, RunStatus::Success))
        .await
        .expect("finish");
    let auth = format!("Bearer {token}");
    assert!(
        suite
            .scrape("cyberdyne", Some(&auth))
            .await
            .body
            .contains("workflow=\"deploy\"")
    );
    let deleted = client
        .delete_workflow(bearer(
            DeleteWorkflowRequest {
                workflow: "deploy".into(),
                project: String::new(),
            },
            &token,
        ))
        .await
        .expect("delete");
    assert_eq!(deleted.into_inner().deleted_runs, 1);
    let again = client
        .delete_workflow(bearer(
            DeleteWorkflowRequest {
                workflow: "deploy".into(),
                project: String::new(),
            },
            &token,
        ))
        .await
        .expect_err("gone");
    assert_eq!(again.code(), tonic::Code::NotFound, "{again:?}");

    let run = |run: &Run| {
        let mut client = client.clone();
        let id = run.id.clone();
        let token = token.clone();
        async move {
            client
                .get_run(bearer(GetRunRequest { run_id: id }, &token))
                .await
                .expect("get")
                .into_inner()
                .run
                .expect("run")
        }
    };
    let (a, b) = (run(&a).await, run(&b).await);
    let seconds = |r: &Run, f: fn(&Run) -> Option<&runplane_api::time::Timestamp>| {
        f(r).map(from_timestamp).expect("time") as f64 / 1000.0
    };
    let a_finished = seconds(&a, |r| r.finish_time.as_ref());
    let b_finished = seconds(&b, |r| r.finish_time.as_ref());
    let a_duration = a_finished - seconds(&a, |r| r.start_time.as_ref());

    // The text format, checked by promtool.
    let text = suite.scrape("cyberdyne", Some(&auth)).await;
    assert_eq!(text.status, 200);
    assert_eq!(
        text.content_type,
        "text/plain; version=0.0.4; charset=utf-8"
    );
    promtool_check(&text.body).expect("promtool accepts the text exposition");
    assert!(!text.body.contains("# EOF"));

    // OpenMetrics, as Prometheus asks for it, checked by prometheus_client.
    let om = suite
        .get_with(
            &suite.metrics_url("cyberdyne"),
            &[("authorization", &auth), ("accept", PROMETHEUS_ACCEPT)],
        )
        .await;
    assert_eq!(om.status, 200, "{}", om.body);
    assert_eq!(
        om.content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let samples = parse_openmetrics(&om.body).expect("a valid OpenMetrics exposition");
    assert!(
        samples.iter().all(|s| s.timestamp.is_none()),
        "no sample timestamps"
    );
    assert!(!samples.iter().any(|s| s.name.ends_with("_created")));
    let runs_family: Vec<_> = samples
        .iter()
        .filter(|s| s.family == "chainloop_workflow_runs")
        .collect();
    assert!(
        runs_family
            .iter()
            .all(|s| s.kind == "counter" && s.name == "chainloop_workflow_runs_total")
    );

    // Both formats say the same, and it is the history above.
    let from_text = text_samples(&text.body);
    let from_om: BTreeMap<String, f64> = samples
        .iter()
        .map(|s| (key(&s.name, &s.labels), s.value))
        .collect();
    for (series, expected) in [
        (
            "chainloop_workflow_up{org=cyberdyne,project=default,runner=GITHUB_ACTION,workflow=build}",
            0.0,
        ),
        (
            "chainloop_workflow_up{org=cyberdyne,project=other,runner=GITLAB_PIPELINE,workflow=build}",
            0.0,
        ),
        (
            "chainloop_workflow_runs_in_progress{org=cyberdyne,project=default,workflow=build}",
            1.0,
        ),
        (
            "chainloop_workflow_runs_in_progress{org=cyberdyne,project=other,workflow=build}",
            0.0,
        ),
        (
            "chainloop_workflow_last_run_timestamp_seconds{org=cyberdyne,project=default,status=success,workflow=build}",
            b_finished,
        ),
        (
            "chainloop_workflow_last_run_timestamp_seconds{org=cyberdyne,project=default,status=error,workflow=build}",
            a_finished,
        ),
        (
            "chainloop_workflow_last_run_duration_seconds{org=cyberdyne,project=default,workflow=build}",
            a_duration,
        ),
        (
            "chainloop_workflow_runs_total{org=cyberdyne,project=default,runner=GITHUB_ACTION,status=success,workflow=build}",
            1.0,
        ),
        (
            "chainloop_workflow_runs_total{org=cyberdyne,project=default,runner=GITHUB_ACTION,status=error,workflow=build}",
            1.0,
        ),
        (
            "chainloop_workflow_runs_total{org=cyberdyne,project=other,runner=GITLAB_PIPELINE,status=canceled,workflow=build}",
            1.0,
        ),
        (
            "chainloop_workflow_run_duration_seconds_count{org=cyberdyne,project=default,runner=GITHUB_ACTION,status=error,workflow=build}",
            1.0,
        ),
        ("chainloop_org_workflows{org=cyberdyne}", 2.0),
    ] {
        for (format, parsed) in [("text", &from_text), ("openmetrics", &from_om)] {
            let value = parsed
                .get(series)
                .unwrap_or_else(|| panic!("{format}: no {series} in\n{parsed:#?}"));
            assert!(
                (value - expected).abs() < 1e-6,
                "{format}: {series} = {value}, expected {expected}"
            );
        }
    }
    for parsed in [&from_text, &from_om] {
        assert!(
            !parsed.keys().any(|k| k.contains("workflow=deploy")),
            "deleted workflow still shown"
        );
        let took = parsed["chainloop_scrape_duration_seconds{org=cyberdyne}"];
        assert!(took > 0.0 && took < 60.0, "{took}");
        // Exactly the series listed above per workflow, and no more.
        let in_progress = parsed
            .keys()
            .filter(|k| k.starts_with("chainloop_workflow_runs_in_progress{"))
            .count();
        assert_eq!(in_progress, 2);
    }
    assert!(text.body.contains("# HELP chainloop_workflow_up Indicate if the last run was successful. A run still in progress does not count"));

    // The answer depends on both headers, and says so to caches between.
    assert_eq!(text.vary.as_deref(), Some("accept, accept-encoding"));

    // gzip when the client accepts it; the same exposition inside.
    let compressed = suite
        .get_raw(
            &suite.metrics_url("cyberdyne"),
            &[("authorization", &auth), ("accept-encoding", "gzip")],
        )
        .await;
    assert_eq!(compressed.0.as_deref(), Some("gzip"));
    let mut inflated = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(&compressed.1[..]),
        &mut inflated,
    )
    .expect("gunzip");
    assert_eq!(
        without_scrape_duration(&inflated),
        without_scrape_duration(&text.body)
    );

    // A namespace of one's own.
    drop(client);
    assert!(suite.stop_up().await.success());
    std::fs::write(
        &suite.config,
        std::fs::read_to_string(&suite.config).expect("config")
            + "metrics_service:\n  metrics_namespace: ci\n",
    )
    .expect("config");
    suite.up().await;
    let renamed = suite.scrape("cyberdyne", Some(&auth)).await.body;
    assert!(renamed.contains("\nci_workflow_runs_in_progress{org=\"cyberdyne\",project=\"default\",workflow=\"build\"} 1\n"), "{renamed}");
    assert!(!renamed.contains("chainloop_"), "{renamed}");
}
