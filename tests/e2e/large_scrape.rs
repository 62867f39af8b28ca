//! An organization large enough that metrics-service streams its exposition
//! (estimated over 16 MiB): the body arrives in chunks, whole, in both
//! formats, and a scraper that hangs up midway leaves the service serving.
//!
//! The history is written straight into workflow-run-service's database
//! through its own data layer (as the benchmark seeds it): 10,000 runs through
//! the API would take most of a minute in a debug build.

use std::collections::BTreeSet;
use std::time::Duration;

use runplane_database::DatabaseArgs;
use workflow_run_service::testing::{SeedPlan, Storage};

use crate::support::{Suite, own_metric, promtool_check, without_scrape_duration};

/// Workflows of the organization, each with three outcomes (~9 KiB of text).
const WORKFLOWS: usize = 2_500;
const RUNS_PER_WORKFLOW: usize = 4;

async fn seed(suite: &Suite, org_id: &str) {
    let url = suite.database_url().unwrap_or_else(|| {
        format!(
            "sqlite://{}",
            suite.data_dir().join("workflow-run.db").display()
        )
    });
    let args = DatabaseArgs {
        database_url: url,
        db_max_connections: 2,
        db_connect_timeout: Duration::from_secs(10),
        db_acquire_timeout: Duration::from_secs(30),
        database_schema: None,
    };
    let storage = Storage::open(&args, "workflow_run_service")
        .await
        .expect("workflow-run-service's database");
    let runs = storage
        .seed_history(&SeedPlan {
            org_id: org_id.to_owned(),
            project: "default".into(),
            workflows: WORKFLOWS,
            runs_per_workflow: RUNS_PER_WORKFLOW,
            runner: "GITHUB_ACTION".into(),
        })
        .await
        .expect("seed");
    assert_eq!(runs, (WORKFLOWS * RUNS_PER_WORKFLOW) as u64);
}

/// The sum of a family's sample values.
fn total(exposition: &str, prefix: &str) -> f64 {
    exposition
        .lines()
        .filter(|line| line.starts_with(prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_exposition_is_streamed_whole_in_both_formats() {
    let mut suite = Suite::new("");
    suite.up().await;
    let org_id = suite
        .cli(&["organization", "create", "--name", "cyberdyne", "-q"])
        .await
        .ok();
    let token = suite
        .token("cyberdyne", "prometheus", &["--scope", "metrics:read"])
        .await;
    seed(&suite, org_id.trim()).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("http client");
    let url = suite.metrics_url("cyberdyne");
    let scrape = |accept: &'static str| {
        http.get(&url)
            .bearer_auth(&token)
            .header("accept", accept)
            .send()
    };

    let response = scrape("text/plain;version=0.0.4").await.expect("scrape");
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(
        headers.get("transfer-encoding").map(|v| v.as_bytes()),
        Some(&b"chunked"[..]),
        "streamed, not sent with a length: {headers:?}"
    );
    let text = response.text().await.expect("body");
    assert!(text.len() > 16 << 20, "{} bytes", text.len());
    let up = text
        .lines()
        .filter(|l| l.starts_with("chainloop_workflow_up{"))
        .count();
    assert_eq!(up, WORKFLOWS);
    // Every seeded run is counted once, whichever chunk its workflow fell in.
    assert_eq!(
        total(&text, "chainloop_workflow_runs_total{"),
        (WORKFLOWS * RUNS_PER_WORKFLOW) as f64
    );
    assert_eq!(
        total(&text, "chainloop_workflow_run_duration_seconds_count{"),
        (WORKFLOWS * RUNS_PER_WORKFLOW) as f64
    );
    // Each family once, in one piece.
    let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
    assert_eq!(
        types.len(),
        types.iter().collect::<BTreeSet<_>>().len(),
        "{types:?}"
    );
    assert!(
        text.lines()
            .last()
            .is_some_and(|l| l.starts_with("chainloop_scrape_duration_seconds{")),
        "the last family closes the body"
    );
    promtool_check(&text).expect("promtool accepts the streamed exposition");

    let openmetrics = scrape("application/openmetrics-text;version=1.0.0")
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    assert!(openmetrics.ends_with("\n# EOF\n"));
    assert_eq!(
        total(&openmetrics, "chainloop_workflow_runs_total{"),
        (WORKFLOWS * RUNS_PER_WORKFLOW) as f64
    );

    // A scraper that hangs up after the first chunk: the writing stops, and
    // the next scrape is whole.
    for _ in 0..3 {
        let mut response = scrape("text/plain").await.expect("scrape");
        assert!(response.chunk().await.expect("a chunk").is_some());
        drop(response);
    }
    let again = scrape("text/plain").await.expect("scrape");
    assert_eq!(again.status(), 200);
    let again = again.text().await.expect("body");
    assert_eq!(
        total(&again, "chainloop_workflow_runs_total{"),
        (WORKFLOWS * RUNS_PER_WORKFLOW) as f64
    );

    // gzip, as Prometheus asks: compressed as it streams, then kept
    // compressed (its text is too large to keep) and sent again from there.
    let hits = || {
        own_metric(
            suite.addrs[3],
            "runplane_scrape_cache_total{result=\"hit\"}",
        )
    };
    let before = hits().await;
    for _ in 0..2 {
        let response = http
            .get(&url)
            .bearer_auth(&token)
            .header("accept", "text/plain")
            .header("accept-encoding", "gzip")
            .send()
            .await
            .expect("scrape");
        assert_eq!(
            response
                .headers()
                .get("content-encoding")
                .map(|v| v.as_bytes()),
            Some(&b"gzip"[..])
        );
        let compressed = response.bytes().await.expect("body");
        assert!(
            compressed.len() < text.len() / 10,
            "{} bytes",
            compressed.len()
        );
        let mut inflated = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(&compressed[..]),
            &mut inflated,
        )
        .expect("one valid gzip member");
        assert_eq!(
            without_scrape_duration(&inflated),
            without_scrape_duration(&text)
        );
    }
    assert_eq!(hits().await, before + 1.0);
}
