//! The gRPC API itself, as any client sees it: codes, isolation, scopes, paging.

use runplane_api::org::v1::organization_service_client::OrganizationServiceClient;
use runplane_api::org::v1::{
    GetOrganizationRequest, ListOrganizationsRequest, get_organization_request::Lookup,
};
use runplane_api::token::v1::token_service_client::TokenServiceClient;
use runplane_api::token::v1::{AuthenticateRequest, ListTokensRequest};
use runplane_api::workflowrun::v1::{
    DeleteWorkflowRequest, FinishRunRequest, GetRunRequest, ListRunsRequest,
    ListWorkflowMetricsRequest, ListWorkflowsRequest, RunStatus, RunnerType, StartRunRequest,
};
use tonic::Code;

use crate::support::{Suite, bearer, channel};

fn start(workflow: &str) -> StartRunRequest {
    StartRunRequest {
        workflow: workflow.to_owned(),
        project: String::new(),
        runner_type: RunnerType::GitlabPipeline.into(),
        run_url: "https://gitlab.example/jobs/1".to_owned(),
        request_id: String::new(),
        timeout: None,
        ..Default::default()
    }
}

/// The code of a call that must fail.
fn code<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Code {
    match result {
        Ok(_) => panic!("the call should have failed"),
        Err(status) => status.code(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organizations_are_isolated_and_scopes_and_inputs_are_enforced() {
    let mut suite = Suite::new("");
    suite.up().await;
    for org in ["cyberdyne", "acme-corp"] {
        suite
            .cli(&["organization", "create", "--name", org])
            .await
            .ok();
    }
    let cyberdyne = suite.token("cyberdyne", "ci", &[]).await;
    let acme = suite
        .token(
            "acme-corp",
            "ci",
            &["--scope", "runs:write,metrics:read,workflows:delete"],
        )
        .await;
    let reader = suite
        .token("cyberdyne", "reader", &["--scope", "metrics:read"])
        .await;
    let writer = suite
        .token("cyberdyne", "writer", &["--scope", "runs:write"])
        .await;
    let mut client = suite.workflow_runs().await;

    let run = client
        .start_run(bearer(start("build"), &cyberdyne))
        .await
        .expect("start")
        .into_inner()
        .run
        .expect("run");
    assert_eq!(
        (run.project.as_str(), run.workflow.as_str()),
        ("default", "build")
    );
    assert_eq!(run.status(), RunStatus::Initialized);
    assert_eq!(run.runner_type(), RunnerType::GitlabPipeline);

    // Another organization cannot see, finish or list cyberdyne's run: NOT_FOUND, as for a run that does not exist.
    assert_eq!(
        code(
            client
                .get_run(bearer(
                    GetRunRequest {
                        run_id: run.id.clone()
                    },
                    &acme
                ))
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            client
                .get_run(bearer(
                    GetRunRequest {
                        run_id: "01a20c9e-010e-7721-aa18-340c41e1eeee".into()
                    },
                    &acme
                ))
                .await
        ),
        Code::NotFound
    );
    // Something that is not a run id at all is refused before any lookup.
    assert_eq!(
        code(
            client
                .get_run(bearer(
                    GetRunRequest {
                        run_id: "missing".into()
                    },
                    &acme
                ))
                .await
        ),
        Code::InvalidArgument
    );
    let finish = |token: &str, status: RunStatus| {
        bearer(
            FinishRunRequest {
                run_id: run.id.clone(),
                status: status.into(),
                reason: String::new(),
                ..Default::default()
            },
            token,
        )
    };
    assert_eq!(
        code(client.finish_run(finish(&acme, RunStatus::Success)).await),
        Code::NotFound
    );
    let listed = client
        .list_runs(bearer(ListRunsRequest::default(), &acme))
        .await
        .expect("list")
        .into_inner();
    assert!(listed.runs.is_empty());
    let workflows = client
        .list_workflows(bearer(ListWorkflowsRequest::default(), &acme))
        .await
        .expect("list")
        .into_inner();
    assert!(workflows.workflows.is_empty());
    let aggregates = client
        .list_workflow_metrics(bearer(ListWorkflowMetricsRequest::default(), &acme))
        .await
        .expect("metrics")
        .into_inner();
    assert!(aggregates.is_empty(), "no aggregate of another org");
    // Deleting "build" as acme-corp finds nothing, like a workflow that does not exist,
    // and leaves cyberdyne's alone.
    let delete = |token: &str| {
        bearer(
            DeleteWorkflowRequest {
                workflow: "build".into(),
                project: String::new(),
            },
            token,
        )
    };
    assert_eq!(
        code(client.delete_workflow(delete(&acme)).await),
        Code::NotFound
    );
    // Starting a run of the same name as acme-corp makes acme-corp's own workflow.
    let theirs = client
        .start_run(bearer(start("build"), &acme))
        .await
        .expect("start")
        .into_inner()
        .run
        .expect("run");
    assert_ne!(theirs.workflow_id, run.workflow_id);
    // An organization token is no admin credential: management is refused.
    let mut orgs = OrganizationServiceClient::new(channel(suite.addrs[0]).await);
    assert_eq!(
        code(
            orgs.list_organizations(bearer(ListOrganizationsRequest::default(), &acme))
                .await
        ),
        Code::Unauthenticated
    );
    let mut tokens = TokenServiceClient::new(channel(suite.addrs[1]).await);
    assert_eq!(
        code(
            tokens
                .list_tokens(bearer(
                    ListTokensRequest {
                        org_name: "cyberdyne".into(),
                        include_inactive: true,
                    },
                    &acme,
                ))
                .await
        ),
        Code::Unauthenticated
    );
    // A caller of Authenticate that presents a wrong admin credential is a
    // misconfigured service: told so, not mistaken for a client's wrong token.
    let misconfigured = tokens
        .authenticate(bearer(
            AuthenticateRequest {
                secret: acme.clone(),
            },
            "not-the-suites-admin-credential-but-long-enough",
        ))
        .await
        .expect_err("refused");
    assert_eq!(misconfigured.code(), Code::PermissionDenied);
    assert!(
        misconfigured.message().contains("admin credential"),
        "{misconfigured:?}"
    );
    // Without the admin credential, Authenticate says nothing of a token, not
    // even a valid one's organization and scopes.
    let outsider = tokens
        .authenticate(AuthenticateRequest {
            secret: acme.clone(),
        })
        .await
        .expect_err("refused");
    assert_eq!(outsider.code(), Code::Unauthenticated);
    assert!(!outsider.message().contains("acme"), "{outsider:?}");

    // Scopes: reading needs metrics:read, reporting needs runs:write.
    assert_eq!(
        code(client.start_run(bearer(start("build"), &reader)).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(
            client
                .list_runs(bearer(ListRunsRequest::default(), &writer))
                .await
        ),
        Code::PermissionDenied
    );
    client
        .get_run(bearer(
            GetRunRequest {
                run_id: run.id.clone(),
            },
            &writer,
        ))
        .await
        .expect("a runner may read its run");
    // Deleting a workflow and its history is a scope of its own.
    let refused = client
        .delete_workflow(bearer(
            DeleteWorkflowRequest {
                workflow: "build".into(),
                project: String::new(),
            },
            &cyberdyne,
        ))
        .await
        .expect_err("runs:write and metrics:read may not delete");
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(
        refused.message().contains("workflows:delete"),
        "{refused:?}"
    );

    // Credentials: none, malformed, unknown.
    assert_eq!(
        code(client.start_run(tonic::Request::new(start("build"))).await),
        Code::Unauthenticated
    );
    assert_eq!(
        code(client.start_run(bearer(start("build"), "nonsense")).await),
        Code::Unauthenticated
    );
    let unknown =
        runplane_auth::secret::generate(runplane_auth::secret::SecretKind::ApiToken).expect("rng");
    assert_eq!(
        code(client.start_run(bearer(start("build"), &unknown)).await),
        Code::Unauthenticated
    );

    // Bad input: INVALID_ARGUMENT with a reason; nothing is stored.
    for bad in [
        start(""),
        start(" padded"),
        start("line\nbreak"),
        start(&"x".repeat(201)),
    ] {
        let status = client
            .start_run(bearer(bad, &cyberdyne))
            .await
            .expect_err("invalid");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("workflow name"), "{status:?}");
    }
    let mut bad_runner = start("build");
    bad_runner.runner_type = 99;
    assert_eq!(
        code(client.start_run(bearer(bad_runner, &cyberdyne)).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            client
                .finish_run(finish(&cyberdyne, RunStatus::Initialized))
                .await
        ),
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            client
                .finish_run(finish(&cyberdyne, RunStatus::Expired))
                .await
        ),
        Code::InvalidArgument
    );
    let bad_page = ListRunsRequest {
        page_token: "%%%".into(),
        ..ListRunsRequest::default()
    };
    assert_eq!(
        code(client.list_runs(bearer(bad_page, &cyberdyne)).await),
        Code::InvalidArgument
    );

    // Finishing: once, idempotently; a different outcome is FAILED_PRECONDITION.
    client
        .finish_run(finish(&cyberdyne, RunStatus::Error))
        .await
        .expect("finish");
    client
        .finish_run(finish(&cyberdyne, RunStatus::Error))
        .await
        .expect("retry");
    assert_eq!(
        code(
            client
                .finish_run(finish(&cyberdyne, RunStatus::Success))
                .await
        ),
        Code::FailedPrecondition
    );

    // Paging: 5 more runs, 2 per page, newest first, nothing repeated or lost.
    for _ in 0..5 {
        client
            .start_run(bearer(start("build"), &cyberdyne))
            .await
            .expect("start");
    }
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_runs(bearer(
                ListRunsRequest {
                    page_size: 2,
                    page_token,
                    ..ListRunsRequest::default()
                },
                &cyberdyne,
            ))
            .await
            .expect("page")
            .into_inner();
        assert!(page.runs.len() <= 2);
        seen.extend(page.runs.into_iter().map(|r| r.id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(seen.len(), 6);
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted, "newest first");
    let in_progress = ListRunsRequest {
        status: RunStatus::Initialized.into(),
        ..ListRunsRequest::default()
    };
    assert_eq!(
        client
            .list_runs(bearer(in_progress, &cyberdyne))
            .await
            .expect("list")
            .into_inner()
            .runs
            .len(),
        5
    );

    // org-service requires the admin credential; a tenant token is not it.
    let mut orgs = OrganizationServiceClient::new(channel(suite.addrs[0]).await);
    assert_eq!(
        code(
            orgs.list_organizations(tonic::Request::new(ListOrganizationsRequest::default()))
                .await
        ),
        Code::Unauthenticated
    );
    assert_eq!(
        code(
            orgs.list_organizations(bearer(ListOrganizationsRequest::default(), &cyberdyne))
                .await
        ),
        Code::Unauthenticated
    );
    let admin = std::fs::read_to_string(suite.data_dir().join("admin-token")).expect("admin");
    let found = orgs
        .get_organization(bearer(
            GetOrganizationRequest {
                lookup: Some(Lookup::Name("cyberdyne".into())),
            },
            admin.trim(),
        ))
        .await
        .expect("get")
        .into_inner()
        .organization
        .expect("org");
    assert!(found.prometheus_metrics_enabled);
    let empty = orgs
        .get_organization(bearer(
            GetOrganizationRequest { lookup: None },
            admin.trim(),
        ))
        .await;
    assert_eq!(code(empty), Code::InvalidArgument);
}

/// A token limited to projects acts only on their workflows: reporting,
/// reading, listing, deleting and scraping outside them is PERMISSION_DENIED
/// or leaves the others out of the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_limited_tokens_act_only_within_their_projects() {
    let mut suite = Suite::new("");
    suite.up().await;
    suite
        .cli(&["organization", "create", "--name", "cyberdyne"])
        .await
        .ok();
    let everything = ["--scope", "runs:write,metrics:read,workflows:delete"];
    let org_wide = suite.token("cyberdyne", "org-wide", &everything).await;
    let web = suite
        .token(
            "cyberdyne",
            "web-team",
            &[&everything[..], &["--project", "web", "--project", "docs"]].concat(),
        )
        .await;
    let mut client = suite.workflow_runs().await;
    let start_in = |project: &str, token: &str| {
        bearer(
            StartRunRequest {
                project: project.to_owned(),
                ..start("build")
            },
            token,
        )
    };

    let api_run = client
        .start_run(start_in("api", &org_wide))
        .await
        .expect("an org-wide token reports on any project")
        .into_inner()
        .run
        .expect("run");
    let web_run = client
        .start_run(start_in("web", &web))
        .await
        .expect("a limited token reports on its project")
        .into_inner()
        .run
        .expect("run");

    let refused = client
        .start_run(start_in("api", &web))
        .await
        .expect_err("another project");
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(
        refused.message().contains("\"web\"") && refused.message().contains("\"api\""),
        "{refused:?}"
    );
    // An idempotency key another project used is no business of this token:
    // it starts its own run, learning nothing of the other.
    let keyed = |project: &str, token: &str| {
        bearer(
            StartRunRequest {
                project: project.to_owned(),
                request_id: "gh-123-1".to_owned(),
                ..start("build")
            },
            token,
        )
    };
    let api_keyed = client
        .start_run(keyed("api", &org_wide))
        .await
        .expect("api's key")
        .into_inner()
        .run
        .expect("run");
    let web_keyed = client
        .start_run(keyed("web", &web))
        .await
        .expect("the same key in web")
        .into_inner()
        .run
        .expect("run");
    assert_ne!(api_keyed.id, web_keyed.id);
    // The default project is a project like any other.
    assert_eq!(
        code(client.start_run(bearer(start("build"), &web)).await),
        Code::PermissionDenied
    );
    let finish = |run_id: &str| {
        bearer(
            FinishRunRequest {
                run_id: run_id.to_owned(),
                status: RunStatus::Success.into(),
                reason: String::new(),
                ..Default::default()
            },
            &web,
        )
    };
    assert_eq!(
        code(client.finish_run(finish(&api_run.id)).await),
        Code::PermissionDenied
    );
    let get = |run_id: &str| {
        bearer(
            GetRunRequest {
                run_id: run_id.to_owned(),
            },
            &web,
        )
    };
    assert_eq!(
        code(client.get_run(get(&api_run.id)).await),
        Code::PermissionDenied
    );
    client.get_run(get(&web_run.id)).await.expect("its own run");
    client
        .finish_run(finish(&web_run.id))
        .await
        .expect("its own run");

    // Listings hold only its projects; naming another is refused.
    let runs = client
        .list_runs(bearer(ListRunsRequest::default(), &web))
        .await
        .expect("list")
        .into_inner()
        .runs;
    assert_eq!(
        runs.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        [web_keyed.id.as_str(), web_run.id.as_str()]
    );
    let all_runs = client
        .list_runs(bearer(ListRunsRequest::default(), &org_wide))
        .await
        .expect("list")
        .into_inner()
        .runs;
    assert_eq!(all_runs.len(), 4, "{all_runs:?}");
    assert_eq!(
        code(
            client
                .list_runs(bearer(
                    ListRunsRequest {
                        workflow: "build".into(),
                        project: "api".into(),
                        ..ListRunsRequest::default()
                    },
                    &web,
                ))
                .await
        ),
        Code::PermissionDenied
    );
    let workflows = client
        .list_workflows(bearer(ListWorkflowsRequest::default(), &web))
        .await
        .expect("list")
        .into_inner()
        .workflows;
    assert_eq!(
        workflows
            .iter()
            .map(|w| w.project.as_str())
            .collect::<Vec<_>>(),
        ["web"]
    );
    let metrics = client
        .list_workflow_metrics(bearer(ListWorkflowMetricsRequest::default(), &web))
        .await
        .expect("metrics")
        .into_inner()
        .workflows()
        .expect("decode");
    assert_eq!(
        metrics
            .iter()
            .map(|w| w.project.as_str())
            .collect::<Vec<_>>(),
        ["web"]
    );
    // A team's Prometheus scraping with its token sees its projects alone.
    let scrape = suite
        .scrape("cyberdyne", Some(&format!("Bearer {web}")))
        .await;
    assert_eq!(scrape.status, 200, "{}", scrape.body);
    assert!(scrape.body.contains("project=\"web\""), "{}", scrape.body);
    assert!(!scrape.body.contains("project=\"api\""), "{}", scrape.body);

    let delete = |project: &str| {
        bearer(
            DeleteWorkflowRequest {
                workflow: "build".into(),
                project: project.to_owned(),
            },
            &web,
        )
    };
    assert_eq!(
        code(client.delete_workflow(delete("api")).await),
        Code::PermissionDenied
    );
    assert_eq!(
        client
            .delete_workflow(delete("web"))
            .await
            .expect("its own workflow")
            .into_inner()
            .deleted_runs,
        2
    );

    // The limits are shown, and bad ones refused when the token is made.
    let listed = suite
        .cli(&["organization", "api-token", "list", "--org", "cyberdyne"])
        .await
        .ok();
    let line = |name: &str| {
        listed
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(line("web-team").ends_with("web,docs"), "{listed}");
    assert!(line("org-wide").ends_with("all"), "{listed}");
    let bad = suite
        .cli(&[
            "organization",
            "api-token",
            "create",
            "--org",
            "cyberdyne",
            "--name",
            "bad",
            "--project",
            " web",
        ])
        .await
        .err();
    assert!(bad.contains("project name"), "{bad}");
}
