//! Kept expositions: a repeated scrape is answered with what an earlier one
//! wrote (metrics-service's `runplane_scrape_cache_total` says so), and any
//! change to what a scrape shows is in the very next scrape — a run started
//! or finished, a workflow deleted — in both formats, gzipped or not, for each
//! organization and each token's view apart.

use std::collections::BTreeMap;

use runplane_api::workflowrun::v1::{
    DeleteWorkflowRequest, FinishRunRequest, RunStatus, StartRunRequest,
};

use crate::support::{Suite, bearer, own_metric, promtool_check, text_samples};

const OPENMETRICS: &str = "application/openmetrics-text;version=1.0.0";
const TEXT: &str = "text/plain;version=0.0.4";

/// One scrape's samples, without the one that changes every time; gzip is
/// asked for (as Prometheus does) unless `plain`.
async fn samples(suite: &Suite, org: &str, token: &str, accept: &str, plain: bool) -> String {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("authorization", auth.as_str()), ("accept", accept)];
    if !plain {
        headers.push(("accept-encoding", "gzip"));
    }
    let (encoding, body) = suite.get_raw(&suite.metrics_url(org), &headers).await;
    let text = if plain {
        assert_eq!(encoding, None);
        String::from_utf8(body).expect("utf-8")
    } else {
        assert_eq!(
            encoding.as_deref(),
            Some("gzip"),
            "{}",
            String::from_utf8_lossy(&body)
        );
        let mut text = String::new();
        // One gzip member, its CRC and length checked.
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&body[..]), &mut text)
            .expect("a valid gzip body");
        text
    };
    if accept == TEXT {
        promtool_check(&text).expect("promtool accepts it");
    } else {
        assert!(text.ends_with("\n# EOF\n"), "{text}");
    }
    assert!(text.contains("_scrape_duration_seconds{org="), "{text}");
    crate::support::without_scrape_duration(&text)
}

fn value(exposition: &str, series: &str) -> Option<f64> {
    let all: BTreeMap<String, f64> = text_samples(&exposition.replace("# EOF\n", ""));
    all.get(series).copied()
}

async fn cache(suite: &Suite, result: &str) -> f64 {
    own_metric(
        suite.addrs[3],
        &format!("runplane_scrape_cache_total{{result=\"{result}\"}}"),
    )
    .await
}

/// How often metrics-service read the aggregates `how`: whole, or by revision.
async fn reads(suite: &Suite, how: &str) -> f64 {
    own_metric(
        suite.addrs[3],
        &format!("runplane_scrape_aggregate_reads_total{{read=\"{how}\"}}"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_exposition_is_sent_again_only_while_nothing_it_shows_changed() {
    let mut suite = Suite::new("");
    suite.up().await;
    let (prom, runner) = suite.org_with_tokens("cyberdyne").await;
    let web_only = suite
        .token(
            "cyberdyne",
            "web-dashboard",
            &["--scope", "metrics:read", "--project", "web"],
        )
        .await;
    let mut runs = suite.workflow_runs().await;
    let start = |workflow: &str, project: &str| {
        bearer(
            StartRunRequest {
                workflow: workflow.into(),
                project: project.into(),
                ..StartRunRequest::default()
            },
            &runner,
        )
    };
    let finish = |run_id: String, status: RunStatus| {
        bearer(
            FinishRunRequest {
                run_id,
                status: status.into(),
                ..FinishRunRequest::default()
            },
            &runner,
        )
    };
    for (workflow, project) in [("build", "default"), ("site", "web")] {
        let run = runs
            .start_run(start(workflow, project))
            .await
            .expect("start")
            .into_inner()
            .run
            .expect("run");
        runs.finish_run(finish(run.id, RunStatus::Success))
            .await
            .expect("finish");
    }
    let up =
        "chainloop_workflow_up{org=cyberdyne,project=default,runner=UNSPECIFIED,workflow=build}";
    let in_progress =
        "chainloop_workflow_runs_in_progress{org=cyberdyne,project=default,workflow=build}";

    // Written once, then sent again: same content, counted as a hit; the
    // aggregates are not read again (their revision is current).
    let first = samples(&suite, "cyberdyne", &prom, TEXT, false).await;
    let hits = cache(&suite, "hit").await;
    let (whole, by_revision) = (
        reads(&suite, "whole").await,
        reads(&suite, "revision").await,
    );
    let again = samples(&suite, "cyberdyne", &prom, TEXT, false).await;
    assert_eq!(again, first);
    assert_eq!(cache(&suite, "hit").await, hits + 1.0);
    assert_eq!(reads(&suite, "revision").await, by_revision + 1.0);
    assert_eq!(reads(&suite, "whole").await, whole);
    assert_eq!(value(&again, up), Some(1.0));
    // The same kept text, uncompressed.
    assert_eq!(samples(&suite, "cyberdyne", &prom, TEXT, true).await, first);
    assert_eq!(cache(&suite, "hit").await, hits + 2.0);

    // A run started: in progress on the very next scrape, both formats.
    let run = runs
        .start_run(start("build", "default"))
        .await
        .expect("start")
        .into_inner()
        .run
        .expect("run");
    let misses = cache(&suite, "miss").await;
    let started = samples(&suite, "cyberdyne", &prom, TEXT, false).await;
    assert_eq!(value(&started, in_progress), Some(1.0));
    assert_eq!(cache(&suite, "miss").await, misses + 1.0);
    let openmetrics = samples(&suite, "cyberdyne", &prom, OPENMETRICS, false).await;
    assert!(
        openmetrics.contains(
            "chainloop_workflow_runs_in_progress{org=\"cyberdyne\",project=\"default\",workflow=\"build\"} 1"
        ),
        "{openmetrics}"
    );

    // Finished as a failure: down, counted; the aggregates read whole again.
    runs.finish_run(finish(run.id, RunStatus::Error))
        .await
        .expect("finish");
    let whole = reads(&suite, "whole").await;
    let failed = samples(&suite, "cyberdyne", &prom, TEXT, false).await;
    assert_eq!(reads(&suite, "whole").await, whole + 1.0);
    assert_eq!(value(&failed, up), Some(0.0));
    assert_eq!(value(&failed, in_progress), Some(0.0));
    assert_eq!(
        value(
            &failed,
            "chainloop_workflow_runs_total{org=cyberdyne,project=default,runner=UNSPECIFIED,status=error,workflow=build}"
        ),
        Some(1.0)
    );
    // Plain text after a gzip scrape of the same data: the same again.
    assert_eq!(
        samples(&suite, "cyberdyne", &prom, TEXT, true).await,
        failed
    );

    // Another token's view of the same organization is its own: the web
    // project's token never gets what the whole organization's token got.
    let web = samples(&suite, "cyberdyne", &web_only, TEXT, false).await;
    assert!(
        web.contains("workflow=\"site\"") && !web.contains("workflow=\"build\""),
        "{web}"
    );
    let whole = samples(&suite, "cyberdyne", &prom, TEXT, false).await;
    assert_eq!(whole, failed);
    assert_eq!(
        samples(&suite, "cyberdyne", &web_only, TEXT, false).await,
        web
    );

    // Another organization with workflows of the same names.
    let (other_prom, other_runner) = suite.org_with_tokens("acme-corp").await;
    let other = runs
        .start_run(bearer(
            StartRunRequest {
                workflow: "build".into(),
                ..StartRunRequest::default()
            },
            &other_runner,
        ))
        .await
        .expect("start")
        .into_inner()
        .run
        .expect("run");
    drop(other);
    let acme = samples(&suite, "acme-corp", &other_prom, TEXT, false).await;
    assert!(
        acme.contains("org=\"acme-corp\"") && !acme.contains("cyberdyne"),
        "{acme}"
    );
    assert_eq!(
        samples(&suite, "cyberdyne", &prom, TEXT, false).await,
        failed
    );

    // A workflow deleted: gone from the next scrape.
    runs.delete_workflow(bearer(
        DeleteWorkflowRequest {
            workflow: "build".into(),
            ..DeleteWorkflowRequest::default()
        },
        &suite
            .token("cyberdyne", "admin", &["--scope", "workflows:delete"])
            .await,
    ))
    .await
    .expect("delete");
    let deleted = samples(&suite, "cyberdyne", &prom, TEXT, false).await;
    assert!(!deleted.contains("workflow=\"build\""), "{deleted}");
    assert!(deleted.contains("workflow=\"site\""), "{deleted}");

    // The scraper's token, known from all these scrapes (its aggregates are
    // now asked for while it is checked), revoked: refused at once, nothing
    // kept is sent.
    suite
        .cli(&[
            "organization",
            "api-token",
            "revoke",
            "--org",
            "cyberdyne",
            "--name",
            "prometheus",
        ])
        .await
        .ok();
    for _ in 0..2 {
        let refused = suite
            .scrape("cyberdyne", Some(&format!("Bearer {prom}")))
            .await;
        assert_eq!(refused.status, 401, "{}", refused.body);
        assert!(!refused.body.contains("chainloop_"), "{}", refused.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_cache_every_scrape_is_written_anew() {
    let mut suite = Suite::new("metrics_service:\n  scrape_cache_mib: 0\n");
    suite.up().await;
    let (prom, _) = suite.org_with_tokens("cyberdyne").await;
    let first = samples(&suite, "cyberdyne", &prom, TEXT, false).await;
    assert_eq!(
        samples(&suite, "cyberdyne", &prom, TEXT, false).await,
        first
    );
    assert_eq!(cache(&suite, "hit").await, 0.0);
    assert_eq!(cache(&suite, "miss").await, 2.0);
}
