//! The ingest path does not pay a token-service hop per call: workflow-run-service
//! reuses token-service's answer for `auth_cache_ttl`, and no longer; deletes
//! and reads always ask.

use std::time::{Duration, Instant};

use runplane_api::workflowrun::v1::{DeleteWorkflowRequest, ListRunsRequest, StartRunRequest};
use tonic::Code;

use crate::support::{Suite, bearer};

fn start(workflow: &str) -> StartRunRequest {
    StartRunRequest {
        workflow: workflow.to_owned(),
        ..StartRunRequest::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runners_are_authenticated_from_a_short_lived_cache() {
    let mut suite = Suite::new("workflow_run_service:\n  auth_cache_ttl: 2s\n");
    for service in ["org-service", "token-service", "workflow-run-service"] {
        suite.start_service(service).await;
    }
    suite
        .cli(&["organization", "create", "--name", "cyberdyne"])
        .await
        .ok();
    let token = suite.token("cyberdyne", "ci", &[]).await;
    let everything = ["--scope", "runs:write,metrics:read,workflows:delete"];
    let revoked = suite.token("cyberdyne", "old", &everything).await;
    let mut client = suite.workflow_runs().await;
    for secret in [&token, &revoked] {
        client
            .start_run(bearer(start("build"), secret))
            .await
            .expect("first call asks token-service");
    }

    // A revoked token keeps working on this path for at most the cache's lifetime...
    suite
        .cli(&[
            "organization",
            "api-token",
            "revoke",
            "--name",
            "old",
            "--org",
            "cyberdyne",
        ])
        .await
        .ok();
    let revoked_at = Instant::now();
    client
        .start_run(bearer(start("build"), &revoked))
        .await
        .expect("reporting is served from the cache");
    // Deleting and reading are not: the revoked token is refused at once.
    let delete = DeleteWorkflowRequest {
        workflow: "build".into(),
        project: String::new(),
    };
    let status = client
        .delete_workflow(bearer(delete, &revoked))
        .await
        .expect_err("a revoked token deletes nothing");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let status = client
        .list_runs(bearer(ListRunsRequest::default(), &revoked))
        .await
        .expect_err("nor reads");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    // ... and with token-service gone, calls go on without a hop to it.
    assert!(suite.stop_service("token-service").await.success());
    let mut answered = 0;
    while revoked_at.elapsed() < Duration::from_millis(1500) {
        client
            .start_run(bearer(start("build"), &token))
            .await
            .expect("served from the cache");
        answered += 1;
    }
    assert!(answered > 0);

    // Once the answers are older than the TTL, token-service is asked again: it is
    // down, so the caller hears UNAVAILABLE rather than a stale yes.
    tokio::time::sleep(Duration::from_millis(2500).saturating_sub(revoked_at.elapsed())).await;
    let status = client
        .start_run(bearer(start("build"), &token))
        .await
        .expect_err("cache expired");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    // token-service back: the live token works, the revoked one is refused.
    suite.start_service("token-service").await;
    client
        .start_run(bearer(start("build"), &token))
        .await
        .expect("live token");
    let status = client
        .start_run(bearer(start("build"), &revoked))
        .await
        .expect_err("revoked");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
}
