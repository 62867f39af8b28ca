//! The DORA series after known sequences, through the real suite: deployments
//! recorded by the CLI, the HTTP/JSON API and a `deploy_workflows` workflow's
//! runs, commit times reported by runs, a failure and its hotfix, a rollback;
//! and GitHub's example `deployment_status` deliveries (signed by
//! @octokit/webhooks-methods) and GitLab's Deployment Hook, commit times from
//! their runs.

use std::collections::BTreeMap;

use runplane_api::time::{Timestamp, now_ms, timestamp};
use runplane_api::workflowrun::v1::{ReportRunRequest, RunStatus, RunnerType};

use crate::support::{Suite, bearer, text_samples};
use crate::webhooks::{deliver, github_examples, gitlab_payload, post};

const H: i64 = 3_600_000;

fn rfc3339(ms: i64) -> String {
    let at =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).expect("ms"));
    humantime::format_rfc3339_seconds(at).to_string()
}

fn at(ms: i64) -> Option<Timestamp> {
    Some(timestamp(ms))
}

/// A whole run of `project`'s `workflow` for `commit` made at `committed`.
fn run(
    project: &str,
    workflow: &str,
    commit: &str,
    committed: i64,
    finished: i64,
) -> ReportRunRequest {
    ReportRunRequest {
        workflow: workflow.into(),
        project: project.into(),
        runner_type: RunnerType::GithubAction.into(),
        request_id: format!("{workflow}-{commit}"),
        start_time: at(finished - 60_000),
        finish_time: at(finished),
        status: RunStatus::Success.into(),
        commit_sha: commit.into(),
        commit_time: at(committed),
        ..Default::default()
    }
}

/// `runplane deployment record --project web ARGS` with `token`: its output.
async fn record(suite: &Suite, token: &str, args: &[&str]) -> String {
    let mut all = vec!["deployment", "record", "--project", "web"];
    all.extend_from_slice(args);
    suite
        .cli_with_env(&all, &[("RUNPLANE_TOKEN", token)])
        .await
        .ok()
}

async fn scrape(suite: &Suite, org: &str, scraper: &str) -> (BTreeMap<String, f64>, String) {
    let scrape = suite.scrape(org, Some(&format!("Bearer {scraper}"))).await;
    assert_eq!(scrape.status, 200, "{}", scrape.body);
    crate::support::promtool_check(&scrape.body).expect("promtool accepts the exposition");
    (text_samples(&scrape.body), scrape.body)
}

/// `metric{environment=…,org=…,project=…[,status=…]}`.
fn series(
    metric: &str,
    org: &str,
    project: &str,
    environment: &str,
    status: Option<&str>,
) -> String {
    match status {
        Some(status) => format!(
            "{metric}{{environment={environment},org={org},project={project},status={status}}}"
        ),
        None => format!("{metric}{{environment={environment},org={org},project={project}}}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_sequences_give_exact_dora_series() {
    let mut suite = Suite::new(
        "workflow_run_service:\n  deploy_workflows:\n    - project: web\n      workflow: Deploy\n      environment: staging\n",
    );
    suite.up().await;
    let (scraper, runner) = suite.org_with_tokens("acme-corp").await;
    let mut client = suite.workflow_runs().await;
    // Whole seconds: the CLI takes times in RFC 3339 seconds.
    let now = now_ms() / 1000 * 1000;

    // A CI run of commit aaaa, made 9 h ago, says when it was made.
    client
        .report_run(bearer(
            run("web", "ci", "aaaa", now - 9 * H, now - 8 * H),
            &runner,
        ))
        .await
        .expect("ci run");
    // Production: aaaa deployed 4 h ago (its commit time found from the run:
    // lead time 5 h), recorded twice with one key.
    let first = rfc3339(now - 4 * H);
    for again in [false, true] {
        let out = record(
            &suite,
            &runner,
            &[
                "--environment",
                "production",
                "--status",
                "success",
                "--commit",
                "aaaa",
                "--finished-at",
                &first,
                "--request-id",
                "deploy-aaaa",
            ],
        )
        .await;
        assert!(out.contains("Recorded deployment"), "{out}");
        assert_eq!(
            out.contains("already recorded: counted once"),
            again,
            "{out}"
        );
    }
    // bbbb fails to deploy 3 h ago (HTTP/JSON API).
    let (status, answer) = post(
        &suite,
        "/v1/deployments:record",
        &[
            ("authorization", &format!("Bearer {runner}")),
            ("content-type", "application/json"),
        ],
        serde_json::json!({
            "project": "web", "environment": "production", "commitSha": "bbbb",
            "commitTime": rfc3339(now - 4 * H), "finishTime": rfc3339(now - 3 * H),
            "status": "DEPLOYMENT_STATUS_FAILURE",
        })
        .to_string(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["counted"], true, "{answer}");
    // A hotfix cccc (made 2 h ago) restores it 1 h ago: restore 2 h, lead 1 h.
    record(
        &suite,
        &runner,
        &[
            "--environment",
            "production",
            "--status",
            "success",
            "--commit",
            "cccc",
            "--kind",
            "hotfix",
            "--commit-time",
            &rfc3339(now - 2 * H),
            "--finished-at",
            &rfc3339(now - H),
        ],
    )
    .await;

    // Staging, by the `Deploy` workflow's runs: dddd made 50 min before its
    // run finished 30 min ago (lead 20 min)…
    client
        .report_run(bearer(
            run(
                "web",
                "Deploy",
                "dddd",
                now - 50 * 60_000,
                now - 30 * 60_000,
            ),
            &runner,
        ))
        .await
        .expect("deploy run");
    // …then rolled back now: dddd's change failed; restored at once (30 min).
    record(
        &suite,
        &runner,
        &[
            "--environment",
            "staging",
            "--status",
            "success",
            "--commit",
            "aaaa",
            "--kind",
            "rollback",
            "--finished-at",
            &rfc3339(now),
        ],
    )
    .await;
    // A canceled run of the deploy workflow deployed nothing.
    let mut canceled = run("web", "Deploy", "eeee", now - H, now - 10 * 60_000);
    canceled.status = RunStatus::Canceled.into();
    client
        .report_run(bearer(canceled, &runner))
        .await
        .expect("canceled deploy run");

    let (samples, body) = scrape(&suite, "acme-corp", &scraper).await;
    let get = |metric: &str, environment: &str, status: Option<&str>| {
        samples
            .get(&series(metric, "acme-corp", "web", environment, status))
            .copied()
    };
    let expected = [
        (
            "chainloop_deployments_total",
            "production",
            Some("success"),
            2.0,
        ),
        (
            "chainloop_deployments_total",
            "production",
            Some("failure"),
            1.0,
        ),
        (
            "chainloop_deployment_change_failures_total",
            "production",
            None,
            1.0,
        ),
        (
            "chainloop_deployment_lead_time_seconds_count",
            "production",
            None,
            2.0,
        ),
        (
            "chainloop_deployment_lead_time_seconds_sum",
            "production",
            None,
            6.0 * 3600.0,
        ),
        (
            "chainloop_deployment_time_to_restore_seconds_count",
            "production",
            None,
            1.0,
        ),
        (
            "chainloop_deployment_time_to_restore_seconds_sum",
            "production",
            None,
            2.0 * 3600.0,
        ),
        ("chainloop_environment_up", "production", None, 1.0),
        (
            "chainloop_deployments_total",
            "staging",
            Some("success"),
            2.0,
        ),
        (
            "chainloop_deployments_total",
            "staging",
            Some("failure"),
            0.0,
        ),
        (
            "chainloop_deployment_change_failures_total",
            "staging",
            None,
            1.0,
        ),
        (
            "chainloop_deployment_lead_time_seconds_count",
            "staging",
            None,
            1.0,
        ),
        (
            "chainloop_deployment_lead_time_seconds_sum",
            "staging",
            None,
            20.0 * 60.0,
        ),
        (
            "chainloop_deployment_time_to_restore_seconds_sum",
            "staging",
            None,
            30.0 * 60.0,
        ),
        ("chainloop_environment_up", "staging", None, 1.0),
    ];
    for (metric, environment, status, value) in expected {
        assert_eq!(
            get(metric, environment, status),
            Some(value),
            "{metric} {environment} {status:?}\n{body}"
        );
    }
    // The 5 h lead time is in the ≤ 12 h bucket, not the ≤ 4 h one.
    let bucket = |le: &str| {
        samples
            .get(&format!(
                "chainloop_deployment_lead_time_seconds_bucket{{environment=production,le={le},org=acme-corp,project=web}}"
            ))
            .copied()
    };
    assert_eq!(
        (bucket("14400"), bucket("43200")),
        (Some(1.0), Some(2.0)),
        "{body}"
    );
    assert_eq!(
        get(
            "chainloop_deployment_last_timestamp_seconds",
            "production",
            Some("failure")
        ),
        Some(((now - 3 * H) / 1000) as f64),
        "{body}"
    );

    // Listed, newest first, with the commit times found.
    let out = suite
        .cli_with_env(
            &[
                "deployment",
                "list",
                "--environment",
                "production",
                "-o",
                "json",
            ],
            &[("RUNPLANE_TOKEN", &scraper)],
        )
        .await
        .ok();
    let listed: Vec<serde_json::Value> = serde_json::from_str(&out).expect("json");
    let commits: Vec<&str> = listed
        .iter()
        .filter_map(|d| d["commit_sha"].as_str())
        .collect();
    assert_eq!(commits, ["cccc", "bbbb", "aaaa"], "{out}");
    assert_eq!(listed[2]["commit_time"], rfc3339(now - 9 * H), "{out}");
    assert_eq!(listed[0]["kind"], "hotfix", "{out}");

    // Mistakes are named: no finish, an unknown status, a failure of an
    // environment name.
    let mut grpc = suite.workflow_runs().await;
    let refused = grpc
        .record_deployment(bearer(
            runplane_api::workflowrun::v1::RecordDeploymentRequest {
                environment: "production".into(),
                commit_sha: "aaaa".into(),
                status: 1,
                ..Default::default()
            },
            &runner,
        ))
        .await
        .expect_err("no finish_time");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().contains("finish_time is required"),
        "{refused:?}"
    );
    let out = suite
        .cli_with_env(
            &[
                "deployment",
                "record",
                "--environment",
                "",
                "--status",
                "success",
                "--commit",
                "aa",
            ],
            &[("RUNPLANE_TOKEN", &runner)],
        )
        .await
        .err();
    assert!(out.contains("environment name"), "{out}");
    // The webhooks' keys are theirs; one key, one deployment.
    let out = suite
        .cli_with_env(
            &[
                "deployment",
                "record",
                "--environment",
                "production",
                "--status",
                "success",
                "--commit",
                "aaaa",
                "--request-id",
                "github-deployment:1",
            ],
            &[("RUNPLANE_TOKEN", &runner)],
        )
        .await
        .err();
    assert!(out.contains("starts like the keys of webhooks"), "{out}");
    let out = suite
        .cli_with_env(
            &[
                "deployment",
                "record",
                "--project",
                "web",
                "--environment",
                "production",
                "--status",
                "failure",
                "--commit",
                "aaaa",
                "--request-id",
                "deploy-aaaa",
            ],
            &[("RUNPLANE_TOKEN", &runner)],
        )
        .await
        .err();
    assert!(
        out.contains("already recorded a success deployment"),
        "{out}"
    );
    // A metrics-only token may not record.
    let out = suite
        .cli_with_env(
            &[
                "deployment",
                "record",
                "--environment",
                "e",
                "--status",
                "success",
                "--commit",
                "aa",
            ],
            &[("RUNPLANE_TOKEN", &scraper)],
        )
        .await
        .err();
    assert!(out.contains("runs:write"), "{out}");

    // An environment recorded by mistake goes, with its series.
    record(
        &suite,
        &runner,
        &[
            "--environment",
            "prodution",
            "--status",
            "success",
            "--commit",
            "aaaa",
        ],
    )
    .await;
    let (samples, body) = scrape(&suite, "acme-corp", &scraper).await;
    assert!(body.contains("environment=\"prodution\""), "{body}");
    let deleter = suite
        .token("acme-corp", "deleter", &["--scope", "workflows:delete"])
        .await;
    let out = suite
        .cli_with_env(
            &[
                "deployment",
                "delete-environment",
                "--project",
                "web",
                "--environment",
                "prodution",
            ],
            &[("RUNPLANE_TOKEN", &deleter)],
        )
        .await
        .ok();
    assert!(
        out.contains("Deleted environment web/prodution and its 1 deployments"),
        "{out}"
    );
    let (after, body) = scrape(&suite, "acme-corp", &scraper).await;
    assert!(!body.contains("prodution"), "{body}");
    let without = |samples: BTreeMap<String, f64>| -> BTreeMap<String, f64> {
        samples
            .into_iter()
            .filter(|(k, _)| !k.contains("prodution") && !k.contains("scrape_duration"))
            .collect()
    };
    assert_eq!(without(after), without(samples), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_and_gitlab_deployments_become_dora_series_with_their_runs_commit_times() {
    let mut suite = Suite::new("");
    suite.up().await;
    let (scraper, runner) = suite.org_with_tokens("acme-corp").await;
    let webhook_secret = |provider: &'static str| {
        let suite = &suite;
        async move {
            suite
                .cli(&[
                    "organization",
                    "webhook",
                    "create",
                    "--org",
                    "acme-corp",
                    "--provider",
                    provider,
                    "-q",
                ])
                .await
                .ok()
        }
    };
    let github = webhook_secret("github").await;
    let gitlab = webhook_secret("gitlab").await;

    // GitHub's example deployment was of f95f852…, deployed 2019-05-15
    // 15:20:55Z; a run of that commit said it was made five hours before.
    let mut client = suite.workflow_runs().await;
    let deployed = runplane_api::time::parse_rfc3339("2019-05-15T15:20:55Z").expect("time");
    let deployed = runplane_api::time::from_timestamp(&deployed);
    client
        .report_run(bearer(
            run(
                "Codertocat/Hello-World",
                "ci",
                "f95f852bd8fca8fcc58a9a2d6c842781e32a215e",
                deployed - 5 * H,
                deployed - 4 * H,
            ),
            &runner,
        ))
        .await
        .expect("run of the deployed commit");
    let deliveries = github_examples(&github, &["deployment_status"]);
    assert!(deliveries.len() >= 2, "{deliveries:?}");
    let mut answers = Vec::new();
    for delivery in &deliveries {
        let (status, answer) = deliver(&suite, "acme-corp", delivery).await;
        assert!(status == 200 || status == 202, "{status} {answer}");
        answers.push(answer["status"].as_str().unwrap_or_default().to_owned());
    }
    // One `in_progress` status is not an end; the three `success` ones are
    // the same deployment, counted once.
    assert!(answers.contains(&"ignored".to_owned()), "{answers:?}");

    // GitLab: the pipeline of bcbb5ec… said when it was made (15:23:28Z);
    // its deployment succeeded an hour later. A running one is no end.
    let hook = "/hooks/gitlab/acme-corp";
    for (event, payload, expected) in [
        ("Pipeline Hook", "pipeline_success", 200),
        ("Deployment Hook", "deployment_running", 202),
        ("Deployment Hook", "deployment_success", 200),
        ("Deployment Hook", "deployment_success", 200),
    ] {
        let (status, answer) = post(
            &suite,
            hook,
            &[
                ("x-gitlab-event", event),
                ("x-gitlab-token", &gitlab),
                ("content-type", "application/json"),
            ],
            gitlab_payload(payload),
        )
        .await;
        assert_eq!(status, expected, "{payload}: {answer}");
    }

    let (samples, body) = scrape(&suite, "acme-corp", &scraper).await;
    let get = |metric: &str, project: &str, status: Option<&str>| {
        samples
            .get(&series(metric, "acme-corp", project, "production", status))
            .copied()
    };
    for (project, lead) in [
        ("Codertocat/Hello-World", 5.0 * 3600.0),
        ("gitlab-org/gitlab-test", 3600.0),
    ] {
        assert_eq!(
            get("chainloop_deployments_total", project, Some("success")),
            Some(1.0),
            "{project}\n{body}"
        );
        assert_eq!(
            get("chainloop_deployment_lead_time_seconds_sum", project, None),
            Some(lead),
            "{project}\n{body}"
        );
    }
}
