//! Webhooks from GitHub and GitLab, and the run API as HTTP/JSON, through the
//! real ingest-service: GitHub's published example payloads signed by
//! @octokit/webhooks-methods (npm), GitLab's documented ones (tests/e2e/payloads).

use std::path::PathBuf;

use runplane_api::workflowrun::v1::{JobStatus, ListJobsRequest, ListRunsRequest, RunStatus};

use crate::support::{Suite, bearer, own_metric, text_samples};

/// One signed delivery of GitHub's examples.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Delivery {
    event: String,
    index: usize,
    action: Option<String>,
    body: String,
    signature: String,
}

/// GitHub's example deliveries of `events`, signed with `secret` by
/// @octokit/webhooks-methods (installed by scripts/test in RUNPLANE_TEST_NPM).
pub(crate) fn github_examples(secret: &str, events: &[&str]) -> Vec<Delivery> {
    let npm = std::env::var("RUNPLANE_TEST_NPM").unwrap_or_else(|_| {
        panic!(
            "RUNPLANE_TEST_NPM must name a directory holding node_modules/@octokit/webhooks-examples \
             and webhooks-methods (scripts/test installs them in target/npm)"
        )
    });
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("e2e/scripts/github_deliveries.mjs");
    let code = std::fs::read_to_string(script).expect("script");
    let output = std::process::Command::new("node")
        .args(["--input-type=module", "-e", &code])
        .args(events)
        .current_dir(npm)
        .env("WEBHOOK_SECRET", secret)
        .output()
        .expect("run node");
    assert!(
        output.status.success(),
        "node: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("delivery"))
        .collect()
}

pub(crate) fn gitlab_payload(name: &str) -> String {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("e2e/payloads/gitlab/{name}.json"));
    std::fs::read_to_string(path).expect("payload")
}

/// An HTTP answer's status and body.
pub(crate) async fn post(
    suite: &Suite,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> (u16, serde_json::Value) {
    let client = reqwest::Client::new();
    let mut request = client.post(suite.ingest_url(path)).body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("POST");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, json)
}

pub(crate) async fn deliver(
    suite: &Suite,
    org: &str,
    delivery: &Delivery,
) -> (u16, serde_json::Value) {
    post(
        suite,
        &format!("/hooks/github/{org}"),
        &[
            ("x-github-event", &delivery.event),
            ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            ("x-hub-signature-256", &delivery.signature),
            ("content-type", "application/json"),
        ],
        delivery.body.clone(),
    )
    .await
}

fn series(samples: &std::collections::BTreeMap<String, f64>, key: &str) -> Option<f64> {
    samples.get(key).copied()
}

const TEST_YML: &str = "org=acme-corp,project=octo-org/octo-repo,runner=GITHUB_ACTION,status=success,workflow=.github/workflows/test.yml";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn githubs_example_deliveries_count_once_in_any_order_and_meet_cli_runs() {
    let mut suite = Suite::new("");
    suite.up().await;
    let (scraper, runner) = suite.org_with_tokens("acme-corp").await;
    let secret = suite
        .cli(&[
            "organization",
            "webhook",
            "create",
            "--org",
            "acme-corp",
            "--provider",
            "github",
            "-q",
        ])
        .await
        .ok();
    assert!(secret.starts_with("rpw_"), "{secret}");
    let runs = github_examples(&secret, &["workflow_run", "workflow_job", "ping"]);
    let run = |action: &str, conclusion_success: bool| {
        runs.iter()
            .find(|d| {
                d.event == "workflow_run"
                    && d.action.as_deref() == Some(action)
                    && d.body.contains("octo-org/octo-repo")
                    && (d.body.contains("\"conclusion\":\"success\"") == conclusion_success)
            })
            .unwrap_or_else(|| panic!("no {action} example"))
    };

    // Out of order: the run completes before it is requested; then GitHub
    // redelivers the completion. One run, counted once, not in progress.
    let (status, answer) = deliver(&suite, "acme-corp", run("completed", true)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["counted"], true, "{answer}");
    let (status, answer) = deliver(&suite, "acme-corp", run("requested", false)).await;
    assert_eq!(
        (status, answer["run_status"].as_str()),
        (200, Some("success")),
        "{answer}"
    );
    let (status, answer) = deliver(&suite, "acme-corp", run("completed", true)).await;
    assert_eq!(
        (status, &answer["counted"]),
        (200, &serde_json::json!(false)),
        "{answer}"
    );
    // The run says where it came from, as the payload does.
    let mut client = suite.workflow_runs().await;
    let listed = client
        .list_runs(bearer(
            ListRunsRequest {
                project: "octo-org/octo-repo".into(),
                ..Default::default()
            },
            &scraper,
        ))
        .await
        .expect("list runs")
        .into_inner()
        .runs;
    let [only] = listed.as_slice() else {
        panic!("one run: {listed:#?}");
    };
    assert_eq!(
        (
            only.attempt,
            only.branch.as_str(),
            only.commit_sha.as_str(),
            only.trigger.as_str()
        ),
        (
            1,
            "master",
            "3484a3fb816e0859fd6e1cea078d76385ff50625",
            "repository_dispatch"
        )
    );
    assert!(only.queue_time.is_some(), "{only:#?}");
    // GitHub's default content type, a form with the JSON in `payload`, signed
    // as sent: the same run again, counted nothing.
    let completed = run("completed", true);
    let form = format!("payload={}", percent_encoded(&completed.body));
    let (status, answer) = post(
        &suite,
        "/hooks/github/acme-corp",
        &[
            ("x-github-event", "workflow_run"),
            ("x-hub-signature-256", &sign_with_node(&secret, &form)),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        form.clone(),
    )
    .await;
    assert_eq!(
        (status, &answer["counted"]),
        (200, &serde_json::json!(false)),
        "{answer}"
    );
    // The example of a completed run without a conclusion ends nothing.
    let manual = runs
        .iter()
        .find(|d| d.body.contains("Manually triggered workflow"))
        .expect("manual example");
    let (status, answer) = deliver(&suite, "acme-corp", manual).await;
    assert_eq!(status, 202, "{answer}");
    let ping = runs.iter().find(|d| d.event == "ping").expect("ping");
    assert_eq!(deliver(&suite, "acme-corp", ping).await.0, 200);

    // Every example job is accepted and stored, the latest state kept.
    for job in runs.iter().filter(|d| d.event == "workflow_job") {
        let (status, answer) = deliver(&suite, "acme-corp", job).await;
        assert_eq!(status, 200, "job example {}: {answer}", job.index);
    }
    let jobs = client
        .list_jobs(bearer(
            ListJobsRequest {
                project: "Codertocat/Hello-World".into(),
                run_request_id: "github:2202229078:1".into(),
                ..Default::default()
            },
            &scraper,
        ))
        .await
        .expect("list jobs")
        .into_inner()
        .jobs;
    let linters = jobs
        .iter()
        .find(|j| j.job_key == "github-job:289782451")
        .unwrap_or_else(|| panic!("no job 289782451 in {jobs:#?}"));
    assert_eq!(linters.status(), JobStatus::Completed);
    assert!(
        linters.start_time.is_some() && linters.finish_time.is_some(),
        "{linters:#?}"
    );
    assert!(!linters.runner_labels.is_empty(), "{linters:#?}");
    // The job counts in its workflow's metrics once, from the payload's times
    // (queued 10:33:58, started 10:34:58, completed 10:38:16), the first
    // completion's outcome kept though another example says it passed.
    let body = suite
        .scrape("acme-corp", Some(&format!("Bearer {scraper}")))
        .await
        .body;
    let samples = text_samples(&body);
    let linters = |metric: &str, status: &str| {
        format!(
            "{metric}{{job=linters,org=acme-corp,project=Codertocat/Hello-World,{status}workflow=CodeQL}}"
        )
    };
    for (key, value) in [
        (
            linters("chainloop_workflow_jobs_total", "status=error,"),
            1.0,
        ),
        (
            linters(
                "chainloop_workflow_job_duration_seconds_sum",
                "status=error,",
            ),
            198.0,
        ),
        (
            linters("chainloop_workflow_job_queue_seconds_sum", ""),
            60.0,
        ),
        (linters("chainloop_workflow_job_up", ""), 0.0),
    ] {
        assert_eq!(series(&samples, &key), Some(value), "{key} in\n{body}");
    }
    assert!(!body.contains("job=\"linters\",org=\"acme-corp\",project=\"Codertocat/Hello-World\",status=\"success\""), "{body}");

    // A run of the same workflow reported by the CLI lands in the same series.
    suite
        .cli_with_env(
            &[
                "run",
                "report",
                "--workflow",
                ".github/workflows/test.yml",
                "--project",
                "octo-org/octo-repo",
                "--runner",
                "GITHUB_ACTION",
                "--status",
                "success",
                "--started-at",
                "2026-01-01T00:00:00Z",
                "--finished-at",
                "2026-01-01T00:01:00Z",
            ],
            &[("RUNPLANE_TOKEN", runner.as_str())],
        )
        .await
        .ok();
    let body = suite
        .scrape("acme-corp", Some(&format!("Bearer {scraper}")))
        .await
        .body;
    let samples = text_samples(&body);
    assert_eq!(
        series(
            &samples,
            &format!("chainloop_workflow_runs_total{{{TEST_YML}}}")
        ),
        Some(2.0),
        "{body}"
    );
    assert_eq!(
        series(
            &samples,
            "chainloop_workflow_runs_in_progress{org=acme-corp,project=octo-org/octo-repo,workflow=.github/workflows/test.yml}"
        ),
        Some(0.0),
        "{body}"
    );
    // The payloads' times: 0 s for GitHub's example, 60 s for the CLI's run.
    assert_eq!(
        series(
            &samples,
            &format!("chainloop_workflow_run_duration_seconds_sum{{{TEST_YML}}}")
        ),
        Some(60.0),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_revoked_oversized_and_malformed_deliveries_are_refused_and_store_nothing() {
    // Secrets asked for every delivery: a revoked one is refused at once.
    let mut suite = Suite::new("ingest_service:\n  webhook_secret_cache_ttl: 0s\n");
    suite.up().await;
    let (scraper, _) = suite.org_with_tokens("acme-corp").await;
    let create = [
        "organization",
        "webhook",
        "create",
        "--org",
        "acme-corp",
        "--provider",
        "github",
        "-q",
    ];
    let secret = suite.cli(&create).await.ok();
    let examples = github_examples(&secret, &["workflow_run"]);
    let completed = examples
        .iter()
        .find(|d| {
            d.action.as_deref() == Some("completed")
                && d.body.contains("\"conclusion\":\"success\"")
        })
        .expect("completed example");
    let signed_elsewhere = github_examples("rpw_not-the-secret", &["workflow_run"]);
    let forged = signed_elsewhere
        .iter()
        .find(|d| d.body == completed.body)
        .expect("same payload");
    let hook = "/hooks/github/acme-corp";
    let with = |event: &'static str, signature: &str| {
        vec![
            ("x-github-event", event.to_owned()),
            ("x-hub-signature-256", signature.to_owned()),
        ]
    };
    let send = |headers: Vec<(&'static str, String)>, body: String, path: &'static str| {
        let suite = &suite;
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            post(suite, path, &headers, body).await
        }
    };
    // Wrong secret, no signature, a tampered body, an unknown organization:
    // all the same 401.
    let mut tampered = completed.body.clone();
    tampered = tampered.replacen("success", "failure", 1);
    for (case, (headers, body, path)) in [
        (
            with("workflow_run", &forged.signature),
            completed.body.clone(),
            hook,
        ),
        (
            vec![("x-github-event", "workflow_run".to_owned())],
            completed.body.clone(),
            hook,
        ),
        (with("workflow_run", &completed.signature), tampered, hook),
        (
            with("workflow_run", &completed.signature),
            completed.body.clone(),
            "/hooks/github/no-such-org",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let (status, answer) = send(headers, body, path).await;
        assert_eq!(status, 401, "case {case}: {answer}");
        assert_eq!(answer["error"]["status"], "UNAUTHENTICATED", "{answer}");
    }
    // Signed, but not JSON: 400, and the body is not echoed.
    let garbage = "not json: SECRET-PAYLOAD-MARKER".to_owned();
    let signature = {
        let examples = github_examples(&secret, &[]);
        assert!(examples.is_empty());
        sign_with_node(&secret, &garbage)
    };
    let (status, answer) = send(with("workflow_run", &signature), garbage.clone(), hook).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        !answer.to_string().contains("SECRET-PAYLOAD-MARKER"),
        "{answer}"
    );
    // Signed, an event not handled: accepted, ignored.
    let issues = r#"{"action":"opened","issue":{}}"#.to_owned();
    let signature = sign_with_node(&secret, &issues);
    let (status, answer) = send(with("issues", &signature), issues, hook).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (202, Some("ignored")),
        "{answer}"
    );
    // Over GitHub's 25 MB: 413 before anything is read (curl, as a client
    // that waits for `100 Continue` before sending a large body).
    let huge = suite.dir.path().join("huge.json");
    std::fs::write(&huge, "x".repeat(30 * 1024 * 1024)).expect("write");
    let output = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
        .args(["-H", "x-github-event: workflow_run", "-H"])
        .arg(format!("x-hub-signature-256: {}", completed.signature))
        .arg("--data-binary")
        .arg(format!("@{}", huge.display()))
        .arg(suite.ingest_url(hook))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "413");
    // Revoked: the next delivery is refused.
    assert_eq!(
        send(
            with("workflow_run", &completed.signature),
            completed.body.clone(),
            hook
        )
        .await
        .0,
        200
    );
    suite
        .cli(&[
            "organization",
            "webhook",
            "revoke",
            "--org",
            "acme-corp",
            "--provider",
            "github",
        ])
        .await
        .ok();
    assert_eq!(
        send(
            with("workflow_run", &completed.signature),
            completed.body.clone(),
            hook
        )
        .await
        .0,
        401
    );

    let body = suite
        .scrape("acme-corp", Some(&format!("Bearer {scraper}")))
        .await
        .body;
    let samples = text_samples(&body);
    // The one genuine delivery, and nothing of the refused ones.
    assert_eq!(
        series(
            &samples,
            &format!("chainloop_workflow_runs_total{{{TEST_YML}}}")
        ),
        Some(1.0),
        "{body}"
    );
    assert!(!body.contains("status=\"error\""), "{body}");
    assert!(
        !suite.log().contains("SECRET-PAYLOAD-MARKER"),
        "a payload was logged"
    );
    assert!(!suite.log().contains(&secret), "a secret was logged");
    // ingest-service's own metrics count what became of each delivery.
    let counted = |outcome: &str| {
        format!(
            "runplane_webhook_deliveries_total{{event=\"workflow_run\",outcome=\"{outcome}\",provider=\"github\"}}"
        )
    };
    assert_eq!(own_metric(suite.addrs[4], &counted("recorded")).await, 1.0);
    // Four forged, one not JSON, one oversized, one revoked.
    assert_eq!(own_metric(suite.addrs[4], &counted("refused")).await, 7.0);

    // A forged signature retried in a loop is told to back off (429 with
    // Retry-After), and a genuine delivery from the same address still passes.
    let second = suite
        .cli(&[
            "organization",
            "webhook",
            "create",
            "--org",
            "acme-corp",
            "--provider",
            "github",
            "--name",
            "second",
            "-q",
        ])
        .await
        .ok();
    let mut last = 0;
    for _ in 0..35 {
        last = send(
            with("workflow_run", &forged.signature),
            completed.body.clone(),
            hook,
        )
        .await
        .0;
    }
    assert_eq!(last, 429, "a forged signature retried in a loop");
    let genuine = sign_with_node(&second, &completed.body);
    let (status, answer) = send(with("workflow_run", &genuine), completed.body.clone(), hook).await;
    assert_eq!(status, 200, "{answer}");
}

/// `text` as a form value (every byte but letters and digits escaped).
fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `body` signed with `secret` by @octokit/webhooks-methods.
fn sign_with_node(secret: &str, body: &str) -> String {
    let npm = std::env::var("RUNPLANE_TEST_NPM").expect("RUNPLANE_TEST_NPM");
    let output = std::process::Command::new("node")
        .args([
            "--input-type=module",
            "-e",
            "import { sign } from '@octokit/webhooks-methods'; process.stdout.write(await sign(process.env.WEBHOOK_SECRET, process.env.BODY));",
        ])
        .current_dir(npm)
        .env("WEBHOOK_SECRET", secret)
        .env("BODY", body)
        .output()
        .expect("node");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_pipelines_and_jobs_are_runs_and_jobs_with_their_own_times() {
    let mut suite = Suite::new("");
    suite.up().await;
    let (scraper, _) = suite.org_with_tokens("acme-corp").await;
    let secret = suite
        .cli(&[
            "organization",
            "webhook",
            "create",
            "--org",
            "acme-corp",
            "--provider",
            "gitlab",
            "-q",
        ])
        .await
        .ok();
    let hook = "/hooks/gitlab/acme-corp";
    let send = |event: &'static str, token: String, payload: &'static str| {
        let suite = &suite;
        async move {
            post(
                suite,
                hook,
                &[
                    ("x-gitlab-event", event),
                    ("x-gitlab-token", &token),
                    ("content-type", "application/json"),
                ],
                gitlab_payload(payload),
            )
            .await
        }
    };
    // Pending is not a run yet; running starts it; success finishes it;
    // success again (a redelivery) and running late change nothing.
    let (status, _) = send("Pipeline Hook", secret.clone(), "pipeline_pending").await;
    assert_eq!(status, 202);
    for payload in [
        "pipeline_running",
        "pipeline_success",
        "pipeline_success",
        "pipeline_running",
    ] {
        let (status, answer) = send("Pipeline Hook", secret.clone(), payload).await;
        assert_eq!(status, 200, "{payload}: {answer}");
    }
    let (status, answer) = send("Pipeline Hook", secret.clone(), "pipeline_named_failed").await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = send("Job Hook", secret.clone(), "job_success").await;
    assert_eq!(status, 200, "{answer}");
    // A runner with more tags than the API keeps: the job is recorded all the
    // same (GitLab would not send it again), its labels cut.
    let mut tagged: serde_json::Value =
        serde_json::from_str(&gitlab_payload("job_success")).expect("payload");
    tagged["build_id"] = serde_json::json!(99_001);
    tagged["runner"]["tags"] = (0..60).map(|i| format!("tag-{i}")).collect();
    let (status, answer) = post(
        &suite,
        hook,
        &[
            ("x-gitlab-event", "Job Hook"),
            ("x-gitlab-token", &secret),
            ("content-type", "application/json"),
        ],
        tagged.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let (status, _) = send("Pipeline Hook", "rpw_wrong".into(), "pipeline_success").await;
    assert_eq!(status, 401);
    // One organization's secret opens nothing of another's.
    let (cyberdyne_scraper, _) = suite.org_with_tokens("cyberdyne").await;
    suite
        .cli(&[
            "organization",
            "webhook",
            "create",
            "--org",
            "cyberdyne",
            "--provider",
            "gitlab",
        ])
        .await
        .ok();
    let (status, answer) = post(
        &suite,
        "/hooks/gitlab/cyberdyne",
        &[
            ("x-gitlab-event", "Pipeline Hook"),
            ("x-gitlab-token", &secret),
        ],
        gitlab_payload("pipeline_named_failed"),
    )
    .await;
    assert_eq!(status, 401, "{answer}");
    let other = suite
        .scrape("cyberdyne", Some(&format!("Bearer {cyberdyne_scraper}")))
        .await
        .body;
    assert!(!other.contains("gitlab-org"), "{other}");
    let (status, _) = send("Pipeline Hook", "rpw_wrong".into(), "pipeline_success").await;
    assert_eq!(status, 401);
    let (status, answer) = send("Push Hook", secret.clone(), "pipeline_success").await;
    assert_eq!(status, 202, "{answer}");

    let body = suite
        .scrape("acme-corp", Some(&format!("Bearer {scraper}")))
        .await
        .body;
    let samples = text_samples(&body);
    let unnamed = "org=acme-corp,project=gitlab-org/gitlab-test,runner=GITLAB_PIPELINE,status=success,workflow=.gitlab-ci.yml";
    assert_eq!(
        series(
            &samples,
            &format!("chainloop_workflow_runs_total{{{unnamed}}}")
        ),
        Some(1.0),
        "{body}"
    );
    // The pipeline's own duration (169 s), not the time between deliveries.
    assert_eq!(
        series(
            &samples,
            &format!("chainloop_workflow_run_duration_seconds_sum{{{unnamed}}}")
        ),
        Some(169.0),
        "{body}"
    );
    let nightly = "org=acme-corp,project=gitlab-org/gitlab-test,runner=GITLAB_PIPELINE,status=error,workflow=nightly";
    assert_eq!(
        series(
            &samples,
            &format!("chainloop_workflow_run_duration_seconds_sum{{{nightly}}}")
        ),
        Some(540.0),
        "{body}"
    );

    let mut client = suite.workflow_runs().await;
    let jobs = client
        .list_jobs(bearer(
            ListJobsRequest {
                run_request_id: "gitlab:31".into(),
                ..Default::default()
            },
            &scraper,
        ))
        .await
        .expect("jobs")
        .into_inner()
        .jobs;
    assert_eq!(jobs.len(), 2, "{jobs:#?}");
    let job = |key: &str| {
        jobs.iter()
            .find(|j| j.job_key == key)
            .unwrap_or_else(|| panic!("no {key} in {jobs:#?}"))
    };
    let documented = job("gitlab-job:1977");
    assert_eq!(
        (documented.name.as_str(), documented.outcome()),
        ("test", RunStatus::Success)
    );
    assert_eq!(documented.runner_labels, ["linux", "docker"]);
    assert_eq!(
        documented.runner_name,
        "shared-runners-manager-6.gitlab.com"
    );
    assert_eq!(job("gitlab-job:99001").runner_labels.len(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_api_speaks_json_over_http() {
    let mut suite = Suite::new("");
    suite.up().await;
    let (scraper, runner) = suite.org_with_tokens("acme-corp").await;
    let auth = format!("Bearer {runner}");
    let json = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let (status, started) = post(
        &suite,
        "/v1/runs:start",
        &json,
        r#"{"workflow": "deploy", "project": "web", "runnerType": "RUNNER_TYPE_JENKINS_JOB", "startTime": "2026-01-01T10:00:00Z"}"#,
    )
    .await;
    assert_eq!(status, 200, "{started}");
    let id = started["run"]["id"].as_str().expect("run id").to_owned();
    assert_eq!(started["run"]["status"], "RUN_STATUS_INITIALIZED");
    let (status, finished) = post(
        &suite,
        &format!("/v1/runs/{id}:finish"),
        &json,
        r#"{"status": "RUN_STATUS_SUCCESS", "finishTime": "2026-01-01T10:02:30Z"}"#,
    )
    .await;
    assert_eq!(status, 200, "{finished}");
    assert_eq!(finished["run"]["status"], "RUN_STATUS_SUCCESS");
    let report = r#"{"workflow": "deploy", "project": "web", "runnerType": "RUNNER_TYPE_JENKINS_JOB", "status": "RUN_STATUS_ERROR", "startTime": "2026-01-02T10:00:00Z", "finishTime": "2026-01-02T10:00:10Z", "requestId": "jenkins-42"}"#;
    let (status, reported) = post(&suite, "/v1/runs:report", &json, report).await;
    assert_eq!(
        (status, &reported["counted"]),
        (200, &serde_json::json!(true)),
        "{reported}"
    );
    let (status, again) = post(&suite, "/v1/runs:report", &json, report).await;
    // proto3 JSON leaves out false: the repeat was not counted.
    assert_eq!((status, again.get("counted")), (200, None), "{again}");

    // The gRPC codes, as HTTP statuses, with Google's JSON error shape.
    for (path, headers, body, expected) in [
        (
            "/v1/runs:start",
            vec![("content-type", "application/json")],
            r#"{"workflow": "w"}"#,
            401,
        ),
        (
            "/v1/runs:start",
            vec![("authorization", auth.as_str())],
            r#"{"workflow": "w"}"#,
            415,
        ),
        ("/v1/runs:start", json.to_vec(), r#"{"workflw": "w"}"#, 400),
        ("/v1/runs:start", json.to_vec(), r#"{"workflow": ""}"#, 400),
        (
            "/v1/runs/01a20c9e-010e-7721-aa18-340c41e1eeee:finish",
            json.to_vec(),
            r#"{"status": "RUN_STATUS_SUCCESS"}"#,
            404,
        ),
        ("/v1/runs/x:cancel", json.to_vec(), "{}", 404),
        ("/v2/nothing", json.to_vec(), "{}", 404),
    ] {
        let (status, answer) = post(&suite, path, &headers, body).await;
        assert_eq!(status, expected, "{path} {body}: {answer}");
        assert!(answer["error"]["message"].is_string(), "{answer}");
    }
    let (status, answer) = post(&suite, "/v1/runs:report", &json, "x".repeat(100 * 1024)).await;
    assert_eq!(status, 413);
    assert_eq!(answer["error"]["status"], "OUT_OF_RANGE", "{answer}");

    let body = suite
        .scrape("acme-corp", Some(&format!("Bearer {scraper}")))
        .await
        .body;
    let samples = text_samples(&body);
    let series_of = |status: &str| {
        format!(
            "chainloop_workflow_run_duration_seconds_sum{{org=acme-corp,project=web,runner=JENKINS_JOB,status={status},workflow=deploy}}"
        )
    };
    assert_eq!(
        series(&samples, &series_of("success")),
        Some(150.0),
        "{body}"
    );
    assert_eq!(series(&samples, &series_of("error")), Some(10.0), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_secrets_are_remembered_a_new_one_counts_at_once_and_a_revoked_one_stops() {
    let mut suite = Suite::new("ingest_service:\n  webhook_secret_cache_ttl: 2s\n");
    suite.up().await;
    suite.org_with_tokens("acme-corp").await;
    let webhook = |verb: &'static str| {
        let mut args = vec![
            "organization",
            "webhook",
            verb,
            "--org",
            "acme-corp",
            "--provider",
            "github",
        ];
        if verb == "create" {
            args.push("-q");
        }
        args
    };
    let completed = |secret: &str| {
        github_examples(secret, &["workflow_run"])
            .into_iter()
            .find(|d| {
                d.action.as_deref() == Some("completed")
                    && d.body.contains("\"conclusion\":\"success\"")
            })
            .expect("completed example")
    };
    let asked = || async {
        own_metric(
            suite.addrs[4],
            "grpc_client_handled_total{grpc_code=\"OK\",grpc_method=\"GetWebhookSecrets\",grpc_service=\"runplane.token.v1.TokenService\"}",
        )
        .await
    };
    let first = completed(&suite.cli(&webhook("create")).await.ok());
    for _ in 0..3 {
        assert_eq!(deliver(&suite, "acme-corp", &first).await.0, 200);
    }
    assert_eq!(
        asked().await,
        1.0,
        "three deliveries, one question to token-service"
    );

    // Rotated: a delivery signed with the new secret passes at once (the
    // remembered secrets match nothing, so they are asked for again), and
    // the old secret is refused from then on.
    suite.cli(&webhook("revoke")).await.ok();
    let second = completed(&suite.cli(&webhook("create")).await.ok());
    assert_eq!(deliver(&suite, "acme-corp", &second).await.0, 200);
    assert_eq!(deliver(&suite, "acme-corp", &first).await.0, 401);

    // Revoked with nothing to rotate to: refused once the 2 s have passed.
    suite.cli(&webhook("revoke")).await.ok();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while deliver(&suite, "acme-corp", &second).await.0 == 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "a revoked secret still verified deliveries 30 s later"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(deliver(&suite, "acme-corp", &second).await.0, 401);
}
