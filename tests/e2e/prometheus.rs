//! A real Prometheus server, configured from deploy/prometheus/, scrapes the suite;
//! the dashboard's queries run against what it ingested.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use runplane_api::time::{now_ms, timestamp};
use runplane_api::workflowrun::v1::{ReportRunRequest, RunStatus, RunnerType};

use crate::support::{Suite, bearer, free_port};

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy");

/// A Prometheus server on loopback, stopped when dropped.
struct Prometheus {
    child: Child,
    url: String,
    http: reqwest::Client,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    async fn start(dir: &Path, config: &str) -> Self {
        Self::start_with(dir, config, &[]).await
    }

    /// Started with more flags (`--enable-feature=…`).
    async fn start_with(dir: &Path, config: &str, flags: &[&str]) -> Self {
        let config_file = dir.join("prometheus.yml");
        std::fs::write(&config_file, config).expect("write prometheus.yml");
        let addr = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
            .arg(format!("--web.listen-address={addr}"))
            .args(flags)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus is required: install the Debian package `prometheus` (scripts/test does)");
        let server = Prometheus {
            child,
            url: format!("http://{addr}"),
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !matches!(server.http.get(format!("{}/-/ready", server.url)).send().await, Ok(r) if r.status() == 200)
        {
            assert!(
                Instant::now() < deadline,
                "prometheus did not start: {}",
                read(&dir.join("prometheus.log"))
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }

    /// Runs an instant query and returns its result vector; fails on a query error.
    async fn query(&self, expr: &str) -> Vec<Value> {
        let body: Value = self
            .http
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", expr)])
            .send()
            .await
            .expect("query")
            .json()
            .await
            .expect("json");
        assert_eq!(body["status"], "success", "{expr}: {body}");
        body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// `label → value` of each series an instant query returns, keyed by `label`.
    async fn values_by(&self, expr: &str, label: &str) -> BTreeMap<String, String> {
        self.query(expr)
            .await
            .iter()
            .map(|s| {
                (
                    s["metric"][label].as_str().unwrap_or_default().to_owned(),
                    s["value"][1].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// Polls `expr` until `done` holds for its result.
    async fn wait_for(&self, expr: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let result = self.query(expr).await;
            if done(&result) {
                return result;
            }
            assert!(
                Instant::now() < deadline,
                "{expr} never returned what was expected: {result:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_with_the_seed_config_and_the_seed_alert_finds_the_failing_workflows() {
    // Branches labelled, so that the default-branch panel has its series.
    let mut suite = Suite::new("branch_label: default\n");
    suite.up().await;
    let (scraper, runner) = suite.org_with_tokens("cyberdyne").await;
    let env = [
        ("RUNPLANE_TOKEN", runner.as_str()),
        ("GITHUB_ACTIONS", "true"),
    ];
    for (workflow, outcomes) in [
        ("deploy-ok", &["success"][..]),
        ("deploy-broken", &["error"]),
        ("nightly", &["success", "error"]),
    ] {
        for outcome in outcomes {
            let id = suite
                .cli_with_env(&["run", "start", "--workflow", workflow, "-q"], &env)
                .await
                .ok();
            suite
                .cli_with_env(&["run", "finish", &id, "--status", outcome], &env)
                .await
                .ok();
        }
    }

    // A run that says when it was queued: the queue-time family is exposed.
    let queued_at =
        humantime::format_rfc3339_seconds(std::time::SystemTime::now() - Duration::from_secs(90))
            .to_string();
    let id = suite
        .cli_with_env(
            &[
                "run",
                "start",
                "--workflow",
                "deploy-ok",
                "--queued-at",
                &queued_at,
                "-q",
            ],
            &env,
        )
        .await
        .ok();
    suite
        .cli_with_env(&["run", "finish", &id, "--status", "success"], &env)
        .await
        .ok();

    // A failed deployment and its hotfix: the DORA families.
    for (status, kind) in [("failure", "deploy"), ("success", "hotfix")] {
        suite
            .cli_with_env(
                &[
                    "deployment",
                    "record",
                    "--environment",
                    "production",
                    "--status",
                    status,
                    "--kind",
                    kind,
                    "--commit",
                    "abc123",
                    "--commit-time",
                    &queued_at,
                ],
                &env,
            )
            .await
            .ok();
    }

    // A run with jobs, one of which waited for a runner: the job families.
    let id = suite
        .cli_with_env(&["run", "start", "--workflow", "deploy-ok", "-q"], &env)
        .await
        .ok();
    let with_run = [
        ("RUNPLANE_TOKEN", runner.as_str()),
        ("RUNPLANE_RUN_ID", id.as_str()),
    ];
    suite
        .cli_with_env(
            &["job", "start", "--job", "build", "--queued-at", &queued_at],
            &with_run,
        )
        .await
        .ok();
    for (job, status) in [("build", "success"), ("test", "error")] {
        suite
            .cli_with_env(
                &["job", "finish", "--job", job, "--status", status],
                &with_run,
            )
            .await
            .ok();
    }
    suite
        .cli_with_env(&["run", "finish", &id, "--status", "success"], &env)
        .await
        .ok();

    // A commit of the default branch that failed, then passed: the flaky
    // family is exposed, and the branch label.
    for (attempt, outcome) in [("1", "error"), ("2", "success")] {
        let id = suite
            .cli_with_env(
                &[
                    "run",
                    "start",
                    "--workflow",
                    "e2e",
                    "--commit",
                    "abc123",
                    "--attempt",
                    attempt,
                    "--branch",
                    "main",
                    "--default-branch",
                    "main",
                    "-q",
                ],
                &env,
            )
            .await
            .ok();
        suite
            .cli_with_env(&["run", "finish", &id, "--status", outcome], &env)
            .await
            .ok();
    }

    // The seed's scrape job as shipped, pointed at this suite, plus one with a wrong token.
    let metrics = suite.addrs[3].to_string();
    let scrape_job = read(&Path::new(DEPLOY).join("prometheus/scrape-config.yaml"))
        .replace("runplane-metrics-service:8080", &metrics)
        .replace("REPLACE_WITH_A_METRICS_READ_TOKEN", &scraper);
    assert!(
        scrape_job.contains("metrics_path: /prom/cyberdyne/metrics")
            && scrape_job.contains("bearer_token:")
    );
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {DEPLOY}/prometheus/alerts.yaml\n  - {DEPLOY}/prometheus/dora.yaml\n{scrape_job}\
         \x20 - job_name: runplane-wrong-token\n    metrics_path: /prom/cyberdyne/metrics\n    bearer_token: rpt_not-a-real-token\n\
         \x20   static_configs:\n      - targets: ['{metrics}']\n"
    );
    let prometheus = Prometheus::start(suite.dir.path(), &config).await;

    // Prometheus ingests the right chainloop_workflow_up values.
    prometheus
        .wait_for("chainloop_workflow_up", |r| r.len() == 4)
        .await;
    let up = prometheus
        .values_by("chainloop_workflow_up", "workflow")
        .await;
    let expected: BTreeMap<String, String> = [
        ("deploy-broken", "0"),
        ("deploy-ok", "1"),
        ("e2e", "1"),
        ("nightly", "0"),
    ]
    .map(|(w, v)| (w.to_owned(), v.to_owned()))
    .into();
    assert_eq!(up, expected);
    let series = prometheus
        .query("chainloop_workflow_up{workflow=\"deploy-ok\"}")
        .await;
    let labels = &series[0]["metric"];
    assert_eq!(
        (
            labels["org"].as_str(),
            labels["project"].as_str(),
            labels["runner"].as_str()
        ),
        (Some("cyberdyne"), Some("default"), Some("GITHUB_ACTION"))
    );
    assert_eq!(labels["job"].as_str(), Some("runplane-cyberdyne"));

    // The job with a wrong token is down; the real one is up.
    prometheus
        .wait_for("up{job=\"runplane-wrong-token\"}", |r| r.len() == 1)
        .await;
    let jobs = prometheus.values_by("up", "job").await;
    assert_eq!(
        jobs.get("runplane-wrong-token").map(String::as_str),
        Some("0"),
        "{jobs:?}"
    );
    assert_eq!(
        jobs.get("runplane-cyberdyne").map(String::as_str),
        Some("1"),
        "{jobs:?}"
    );

    // The seed's alert expression returns exactly the failing workflows.
    let failing = prometheus
        .values_by(
            "sum by (org, workflow) (avg_over_time(chainloop_workflow_up[30m])) == 0",
            "workflow",
        )
        .await;
    assert_eq!(
        failing.keys().map(String::as_str).collect::<Vec<_>>(),
        ["deploy-broken", "nightly"]
    );

    // The alert rules load in a real server.
    let rules: Value = prometheus
        .http
        .get(format!("{}/api/v1/rules", prometheus.url))
        .send()
        .await
        .expect("rules")
        .json()
        .await
        .expect("json");
    let names: Vec<&str> = rules["data"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .filter_map(|r| r["name"].as_str())
        .collect();
    for alert in [
        "WorkflowDown",
        "WorkflowFailingRepeatedly",
        "WorkflowNotRun",
        "WorkflowSlowerThanUsual",
        "WorkflowQueueTimeHigh",
        "WorkflowFlakyRateHigh",
        "DefaultBranchRed",
        "RunplaneSeriesDropped",
        "RunplaneScrapeFailing",
    ] {
        assert!(names.contains(&alert), "{alert} not loaded: {names:?}");
    }
    for rule in [
        "org_project_environment:chainloop_deployment_change_failure:ratio_30d",
        "org_project_environment:chainloop_dora_time_to_restore:tier",
    ] {
        assert!(names.contains(&rule), "{rule} not loaded: {names:?}");
    }

    // Every dashboard query is valid PromQL over what Prometheus ingested, and
    // names only metrics and labels that the live exposition contains.
    let exposition = suite
        .scrape("cyberdyne", Some(&format!("Bearer {scraper}")))
        .await
        .body;
    let dashboard: Value = serde_json::from_str(&read(
        &Path::new(DEPLOY).join("grafana/runplane-dashboard.json"),
    ))
    .expect("dashboard JSON");
    let mut exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .collect();
    assert!(exprs.len() >= 6, "{exprs:?}");
    let org_query = dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
        .iter()
        .find(|v| v["name"] == "org")
        .and_then(|v| v["definition"].as_str())
        .expect("org variable");
    assert_eq!(org_query, "label_values(chainloop_workflow_up, org)");
    let orgs: Value = prometheus
        .http
        .get(format!("{}/api/v1/label/org/values", prometheus.url))
        .query(&[("match[]", "chainloop_workflow_up")])
        .send()
        .await
        .expect("labels")
        .json()
        .await
        .expect("json");
    assert_eq!(orgs["data"], serde_json::json!(["cyberdyne"]));
    exprs.push("chainloop_workflow_up".to_owned());
    for expr in exprs {
        let concrete = expr
            .replace("$org", "cyberdyne")
            .replace("$__rate_interval", "1m")
            .replace("$__range", "5m");
        prometheus.query(&concrete).await;
        // A recording rule's series (the DORA row): a rule Prometheus loaded.
        for rule in identifiers(&expr).filter(|w| w.contains(':')) {
            assert!(
                names.contains(&rule.as_str()),
                "dashboard uses {rule}, not a loaded rule"
            );
        }
        for metric in identifiers(&expr).filter(|w| w.starts_with("chainloop_")) {
            let base = ["_bucket", "_count", "_sum"]
                .iter()
                .fold(metric.as_str(), |m, s| m.strip_suffix(s).unwrap_or(m));
            assert!(
                exposition.contains(&format!("# TYPE {base} ")),
                "dashboard uses {metric}, not exposed"
            );
        }
        for label in labels_used(&expr) {
            assert!(
                exposition.contains(&format!("{label}=\"")),
                "dashboard uses label {label}, not exposed"
            );
        }
    }
}

/// A suite with `extra` settings where `deploy` ran 100 times, lasting 1 s,
/// 2 s, … 100 s, scraped by a Prometheus with native histograms on; and the
/// native series' quantiles checked to be within a native bucket (2^(1/8),
/// ~9%) of the truth.
async fn scraped_with_native_histograms(extra: &str) -> (Suite, Prometheus) {
    let mut suite = Suite::new(extra);
    suite.up().await;
    let (scraper, runner) = suite.org_with_tokens("cyberdyne").await;
    let mut client = suite.workflow_runs().await;
    let started = now_ms() - 3_600_000;
    for seconds in 1..=100 {
        let report = ReportRunRequest {
            workflow: "deploy".into(),
            runner_type: RunnerType::GithubAction.into(),
            request_id: format!("native-{seconds}"),
            start_time: Some(timestamp(started)),
            finish_time: Some(timestamp(started + seconds * 1_000)),
            status: RunStatus::Success.into(),
            ..Default::default()
        };
        client
            .report_run(bearer(report, &runner))
            .await
            .expect("report");
    }
    let metrics = suite.addrs[3].to_string();
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: runplane\n    \
         metrics_path: /prom/cyberdyne/metrics\n    bearer_token: {scraper}\n    \
         static_configs:\n      - targets: ['{metrics}']\n"
    );
    let prometheus = Prometheus::start_with(
        suite.dir.path(),
        &config,
        &["--enable-feature=native-histograms"],
    )
    .await;
    let native = "chainloop_workflow_run_duration_seconds{workflow=\"deploy\"}";
    prometheus.wait_for(native, |r| r.len() == 1).await;
    for (q, truth) in [(0.5, 50.0), (0.9, 90.0), (0.99, 99.0)] {
        let result = prometheus
            .query(&format!("histogram_quantile({q}, {native})"))
            .await;
        let value: f64 = result[0]["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
            .expect("a quantile");
        assert!(
            (value - truth).abs() <= truth * 0.09,
            "q{q}: {value}, expected about {truth}"
        );
    }
    let count = prometheus
        .query(&format!("histogram_count({native})"))
        .await;
    assert_eq!(count[0]["value"][1], "100");
    (suite, prometheus)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_with_native_histograms_gets_them_and_keeps_the_classic_series() {
    let (_suite, prometheus) = scraped_with_native_histograms("").await;
    // The classic series are still there, for Chainloop's dashboard.
    let buckets = prometheus
        .wait_for(
            "chainloop_workflow_run_duration_seconds_bucket{workflow=\"deploy\"}",
            |r| !r.is_empty(),
        )
        .await;
    assert_eq!(buckets.len(), 12, "11 bounds and +Inf: {buckets:?}");
    let le: Vec<&str> = buckets
        .iter()
        .filter_map(|b| b["metric"]["le"].as_str())
        .collect();
    assert!(
        le.contains(&"10") && le.contains(&"+Inf"),
        "`le` as the text format writes it: {le:?}"
    );
    // Chainloop's quantile over them: the runs' bounds fall on 30, 60 and
    // 90, so the interpolation is exact.
    for (q, truth) in [(0.5, "50"), (0.9, "90")] {
        let classic = prometheus
            .query(&format!(
                "histogram_quantile({q}, sum by (le) (chainloop_workflow_run_duration_seconds_bucket))"
            ))
            .await;
        assert_eq!(classic[0]["value"][1], truth, "classic q{q}");
    }
    let count = prometheus
        .query("chainloop_workflow_run_duration_seconds_count")
        .await;
    assert_eq!(count[0]["value"][1], "100");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_protobuf_histograms_native_a_histogram_is_one_series() {
    let (_suite, prometheus) =
        scraped_with_native_histograms("metrics_service:\n  protobuf_histograms: native\n").await;
    let series = prometheus
        .query("{__name__=~\"chainloop_workflow_run_duration_seconds.*\",workflow=\"deploy\"}")
        .await;
    let names: Vec<&str> = series
        .iter()
        .filter_map(|s| s["metric"]["__name__"].as_str())
        .collect();
    assert_eq!(names, ["chainloop_workflow_run_duration_seconds"]);
}

/// The identifiers in a PromQL expression.
fn identifiers(expr: &str) -> impl Iterator<Item = String> + '_ {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
}

/// Label names used in `by (...)` clauses and `{label=...}` matchers.
fn labels_used(expr: &str) -> Vec<String> {
    let mut labels = Vec::new();
    for (i, _) in expr.match_indices("by (") {
        let list = &expr[i + 4..];
        let list = &list[..list.find(')').unwrap_or(list.len())];
        labels.extend(list.split(',').map(|l| l.trim().to_owned()));
    }
    for (i, _) in expr.match_indices('{') {
        let matchers = &expr[i + 1..];
        let matchers = &matchers[..matchers.find('}').unwrap_or(matchers.len())];
        labels.extend(
            matchers
                .split(',')
                .filter_map(|m| m.split(['=', '!', '~']).next())
                .map(|l| l.trim().to_owned()),
        );
    }
    labels.retain(|l| !l.is_empty() && !l.starts_with('$'));
    labels
}
