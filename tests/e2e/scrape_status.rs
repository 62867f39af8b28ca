//! Every status code of `GET /prom/{org}/metrics`, in the order they are checked.

use std::time::{Duration, Instant};

use crate::support::Suite;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_answers_each_failure_with_the_right_status() {
    let mut suite = Suite::new("");
    suite.up().await;
    for org in ["cyberdyne", "acme-corp", "umbrella"] {
        suite
            .cli(&["organization", "create", "--name", org])
            .await
            .ok();
    }
    let token = suite.token("cyberdyne", "prom", &[]).await;
    let acme = suite.token("acme-corp", "prom", &[]).await;
    let umbrella = suite.token("umbrella", "prom", &[]).await;
    let runs_only = suite
        .token("cyberdyne", "runner", &["--scope", "runs:write"])
        .await;
    let bearer = |t: &str| format!("Bearer {t}");

    // 200 for the organization's own token, even with no runs yet: no workflow series.
    let ok = suite.scrape("cyberdyne", Some(&bearer(&token))).await;
    assert_eq!(ok.status, 200);
    assert_eq!(
        ok.stable_body(),
        "# HELP chainloop_org_workflows Workflows of the organization.\n\
         # TYPE chainloop_org_workflows gauge\n\
         chainloop_org_workflows{org=\"cyberdyne\"} 0\n\
         # HELP chainloop_org_series_dropped Series of the organization left out of this response \
         by the max_series_per_org budget: whole deployment environments (counted first, in name \
         order) and whole workflows, the most recently created first.\n\
         # TYPE chainloop_org_series_dropped gauge\n\
         chainloop_org_series_dropped{org=\"cyberdyne\"} 0\n"
    );

    // 401: no credential, a malformed one, an unknown token; with WWW-Authenticate.
    for auth in [
        None,
        Some("Basic dXNlcjpwYXNz"),
        Some("Bearer"),
        Some("Bearer rpt_unknown"),
    ] {
        let answer = suite.scrape("cyberdyne", auth).await;
        assert_eq!(answer.status, 401, "{auth:?}: {}", answer.body);
        let challenge = answer.www_authenticate.expect("WWW-Authenticate");
        assert!(challenge.starts_with("Bearer"), "{challenge}");
        assert_eq!(
            answer.body.lines().count(),
            1,
            "one plain line: {:?}",
            answer.body
        );
        if auth.is_some_and(|a| a.starts_with("Basic")) {
            assert!(answer.body.contains("only Bearer"), "{}", answer.body);
        }
    }
    // One character of the secret changed: the checksum catches it before any lookup.
    let mut forged = token.clone().into_bytes();
    forged[10] = if forged[10] == b'x' { b'y' } else { b'x' };
    let forged = String::from_utf8(forged).expect("ascii");
    assert_eq!(
        suite
            .scrape("cyberdyne", Some(&bearer(&forged)))
            .await
            .status,
        401
    );
    // The admin credential is never accepted on the scrape path.
    let admin = std::fs::read_to_string(suite.data_dir().join("admin-token")).expect("admin");
    assert_eq!(
        suite
            .scrape("cyberdyne", Some(&bearer(admin.trim())))
            .await
            .status,
        401
    );

    // 403: another organization's token, and a token without metrics:read.
    let other = suite.scrape("cyberdyne", Some(&bearer(&acme))).await;
    assert_eq!(other.status, 403, "{}", other.body);
    assert!(
        other.body.contains("another organization"),
        "{}",
        other.body
    );
    assert_eq!(
        suite
            .scrape("cyberdyne", Some(&bearer(&runs_only)))
            .await
            .status,
        403
    );
    // ... also for a path that names no organization at all: nothing leaks without the right token.
    // (`..` and `%2E%2E` are resolved by URL parsers before sending; encoded slashes arrive as-is.)
    for path in [
        "does-not-exist",
        "%2F",
        "a%2Fb",
        "UPPER",
        "&x=1",
        "-cyberdyne",
        "cyberdyne-",
    ] {
        assert_eq!(
            suite.scrape(path, Some(&bearer(&acme))).await.status,
            403,
            "{path}"
        );
    }

    // 404: the organization's own token, but its integration is off.
    let off = suite.scrape("umbrella", Some(&bearer(&umbrella))).await;
    assert_eq!(off.status, 404, "{}", off.body);
    assert!(off.body.contains("not enabled"), "{}", off.body);

    // A revoked token fails on the very next scrape.
    suite
        .cli(&[
            "organization",
            "api-token",
            "revoke",
            "--name",
            "prom",
            "--org",
            "cyberdyne",
        ])
        .await
        .ok();
    assert_eq!(
        suite
            .scrape("cyberdyne", Some(&bearer(&token)))
            .await
            .status,
        401
    );

    // An expired token fails once its time is up.
    let short = suite
        .token("cyberdyne", "short", &["--expires-in", "2s"])
        .await;
    assert_eq!(
        suite
            .scrape("cyberdyne", Some(&bearer(&short)))
            .await
            .status,
        200
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while suite
        .scrape("cyberdyne", Some(&bearer(&short)))
        .await
        .status
        != 401
    {
        assert!(Instant::now() < deadline, "expired token still accepted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Deleting an organization stops its tokens (the test config caches nothing).
    suite
        .cli(&["organization", "delete", "--name", "acme-corp"])
        .await
        .ok();
    assert_eq!(
        suite.scrape("acme-corp", Some(&bearer(&acme))).await.status,
        401
    );
    // Re-creating the name does not revive the old tokens.
    suite
        .cli(&["organization", "create", "--name", "acme-corp"])
        .await
        .ok();
    assert_eq!(
        suite.scrape("acme-corp", Some(&bearer(&acme))).await.status,
        401
    );
    let fresh = suite.token("acme-corp", "prom", &[]).await;
    assert_eq!(
        suite
            .scrape("acme-corp", Some(&bearer(&fresh)))
            .await
            .status,
        200
    );

    // The service's own metrics are on a separate, unauthenticated path.
    let own = suite
        .get(&format!("http://{}/metrics", suite.addrs[3]), None)
        .await;
    assert_eq!(own.status, 200);
    assert!(
        own.body
            .contains("runplane_http_requests_total{code=\"401\",route=\"/prom/{org}/metrics\"}"),
        "{}",
        own.body
    );
    assert!(
        !own.body.contains("cyberdyne"),
        "own metrics must not carry tenant names"
    );

    // Refusals are logged one by one; scrapes that went well are not, but
    // summed (here, when the suite stops).
    assert!(suite.stop_up().await.success());
    let log = suite.log();
    let requests: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" request ") && l.contains("/prom/{org}/metrics"))
        .collect();
    assert!(requests.iter().any(|l| l.contains("status=401")), "{log}");
    assert!(!requests.iter().any(|l| l.contains("status=200")), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("requests served since the last summary")
                && l.contains("/prom/{org}/metrics 200")),
        "{log}"
    );
    assert!(
        !log.contains("trace_id=\"\""),
        "an empty trace id is left out"
    );
}
