//! Hostile input, end to end: odd organization path segments, over-long and
//! control-character names, unicode, oversized and malformed protobuf, huge
//! headers. Each gets a clear refusal with the right code, nothing leaks, and
//! the suite keeps serving.

use runplane_api::workflowrun::v1::StartRunRequest;
use tonic::Code;

use crate::support::{Suite, bearer, channel};

/// Sends `body` as the raw message of a unary gRPC call: bytes that need not
/// be a valid protobuf encoding.
async fn raw_call(
    addr: std::net::SocketAddr,
    path: &'static str,
    body: Vec<u8>,
    token: &str,
) -> tonic::Status {
    #[derive(Clone, Default)]
    struct RawCodec;
    struct RawEncoder;
    struct RawDecoder;
    impl tonic::codec::Encoder for RawEncoder {
        type Item = Vec<u8>;
        type Error = tonic::Status;
        fn encode(
            &mut self,
            item: Vec<u8>,
            dst: &mut tonic::codec::EncodeBuf<'_>,
        ) -> Result<(), tonic::Status> {
            use bytes::BufMut as _;
            dst.put_slice(&item);
            Ok(())
        }
    }
    impl tonic::codec::Decoder for RawDecoder {
        type Item = Vec<u8>;
        type Error = tonic::Status;
        fn decode(
            &mut self,
            src: &mut tonic::codec::DecodeBuf<'_>,
        ) -> Result<Option<Vec<u8>>, tonic::Status> {
            use bytes::Buf as _;
            Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
        }
    }
    impl tonic::codec::Codec for RawCodec {
        type Encode = Vec<u8>;
        type Decode = Vec<u8>;
        type Encoder = RawEncoder;
        type Decoder = RawDecoder;
        fn encoder(&mut self) -> RawEncoder {
            RawEncoder
        }
        fn decoder(&mut self) -> RawDecoder {
            RawDecoder
        }
    }
    let mut grpc = tonic::client::Grpc::new(channel(addr).await);
    grpc.ready().await.expect("ready");
    grpc.unary(
        bearer(body, token),
        http::uri::PathAndQuery::from_static(path),
        RawCodec,
    )
    .await
    .expect_err("refused")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_is_refused_clearly_and_the_suite_keeps_serving() {
    let mut suite = Suite::new("");
    suite.up().await;
    suite
        .cli(&["organization", "create", "--name", "cyberdyne"])
        .await
        .ok();
    let token = suite
        .token(
            "cyberdyne",
            "all",
            &["--scope", "runs:write", "--scope", "metrics:read"],
        )
        .await;
    let auth = format!("Bearer {token}");
    let base = format!("http://{}", suite.addrs[3]);

    // The organization path segment: traversal, encoded slashes, NUL, unicode,
    // over-long. With a valid token: never data, never a server error; a
    // token of cyberdyne is refused for anything that is not cyberdyne.
    let long = "a".repeat(5000);
    // (A bare `..` segment is resolved by every URL parser before sending.)
    for segment in [
        "..%2F..%2Fetc%2Fpasswd",
        "%2F",
        "cyberdyne%2F..%2Fcyberdyne",
        "cyberdyne%00",
        "cyb%C3%ABrdyne",
        "CYBERDYNE",
        "%E2%80%AEenydrebyc",
        long.as_str(),
    ] {
        let answer = suite
            .get(&format!("{base}/prom/{segment}/metrics"), Some(&auth))
            .await;
        assert!(
            [403, 404].contains(&answer.status),
            "/prom/{segment}/metrics: {} {}",
            answer.status,
            answer.body
        );
        assert!(
            !answer.body.contains("chainloop_"),
            "{segment}: data leaked"
        );
        let anonymous = suite
            .get(&format!("{base}/prom/{segment}/metrics"), None)
            .await;
        assert!(
            [401, 404].contains(&anonymous.status),
            "/prom/{segment}/metrics without a token: {}",
            anonymous.status
        );
    }
    // A header block past the limit is refused by the HTTP layer.
    let huge = "x".repeat(100 * 1024);
    let answer = suite
        .get_with(
            &suite.metrics_url("cyberdyne"),
            &[
                ("authorization", auth.as_str()),
                ("x-padding", huge.as_str()),
            ],
        )
        .await;
    assert_eq!(answer.status, 431, "{}", answer.body);
    // A body on a GET past the body limit: 413.
    let response = reqwest::Client::new()
        .get(suite.metrics_url("cyberdyne"))
        .header("authorization", &auth)
        .body(vec![b'x'; 1024 * 1024])
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 413);

    // Names: over-long, control characters, empty are INVALID_ARGUMENT with a
    // reason; unicode and dots are just names.
    let mut runs = suite.workflow_runs().await;
    for (workflow, reason) in [
        ("", "empty"),
        (&"w".repeat(201)[..], "longer than 200"),
        ("build\nchainloop_workflow_up 1", "control characters"),
        ("build\u{0}", "control characters"),
        ("\u{7f}", "control characters"),
    ] {
        let status = runs
            .start_run(bearer(
                StartRunRequest {
                    workflow: workflow.into(),
                    ..Default::default()
                },
                &token,
            ))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{workflow:?}");
        assert!(
            status.message().contains(reason),
            "{workflow:?}: {status:?}"
        );
    }
    for workflow in ["ビルド", "../../etc/passwd", "build \"quoted\" \\ back"] {
        runs.start_run(bearer(
            StartRunRequest {
                workflow: workflow.into(),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap_or_else(|s| panic!("{workflow:?}: {s:?}"));
    }
    // Those names come back intact, escaped, in a valid exposition.
    let scrape = suite.scrape("cyberdyne", Some(&auth)).await;
    assert_eq!(scrape.status, 200);
    assert!(
        scrape.body.contains(r#"workflow="ビルド""#),
        "{}",
        scrape.body
    );
    assert!(
        scrape
            .body
            .contains(r#"workflow="build \"quoted\" \\ back""#),
        "{}",
        scrape.body
    );
    crate::support::promtool_check(&scrape.body).expect("promtool accepts it");

    // Protobuf: a message past the size limit, and bytes that are not protobuf.
    let start_run = "/runplane.workflowrun.v1.WorkflowRunService/StartRun";
    let oversized = StartRunRequest {
        workflow: "w".repeat(1024 * 1024),
        ..Default::default()
    };
    let status = raw_call(
        suite.addrs[2],
        start_run,
        prost::Message::encode_to_vec(&oversized),
        &token,
    )
    .await;
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(status.message().contains("too large"), "{status:?}");
    let status = raw_call(suite.addrs[2], start_run, vec![0xff; 64], &token).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("decode"), "{status:?}");

    // Still serving, with nothing lost.
    let scrape_after = suite.scrape("cyberdyne", Some(&auth)).await;
    assert_eq!(scrape_after.stable_body(), scrape.stable_body());
}

/// Oversized input in an id or a name is refused with the right code, and the
/// error quotes at most a short prefix of it: echoed whole, a 100,000-character
/// input made a gRPC trailer the client refused (RESOURCE_EXHAUSTED).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_input_is_refused_without_being_echoed() {
    use runplane_api::org::v1::organization_service_client::OrganizationServiceClient;
    use runplane_api::org::v1::{
        CreateOrganizationRequest, DeleteOrganizationRequest, GetOrganizationRequest,
        get_organization_request::Lookup,
    };
    use runplane_api::token::v1::token_service_client::TokenServiceClient;
    use runplane_api::token::v1::{CreateTokenRequest, RevokeTokenRequest};
    use runplane_api::workflowrun::v1::{FinishRunRequest, GetRunRequest, RunStatus};

    let mut suite = Suite::new("");
    suite.up().await;
    let (_, runner) = suite.org_with_tokens("cyberdyne").await;
    let admin = std::fs::read_to_string(suite.data_dir().join("admin-token")).expect("admin");
    let admin = admin.trim();
    let huge = "x".repeat(100_000);
    let refused = |status: tonic::Status, code: Code| {
        assert_eq!(status.code(), code, "{:.300}", status.message());
        assert!(
            status.message().len() < 400,
            "the error echoes the input: {} bytes",
            status.message().len()
        );
    };

    let mut runs = suite.workflow_runs().await;
    refused(
        refusal(
            runs.get_run(bearer(
                GetRunRequest {
                    run_id: huge.clone(),
                },
                &runner,
            ))
            .await,
        ),
        Code::InvalidArgument,
    );
    refused(
        refusal(
            runs.finish_run(bearer(
                FinishRunRequest {
                    run_id: huge.clone(),
                    status: RunStatus::Success.into(),
                    reason: String::new(),
                    ..Default::default()
                },
                &runner,
            ))
            .await,
        ),
        Code::InvalidArgument,
    );

    let mut orgs = OrganizationServiceClient::new(channel(suite.addrs[0]).await);
    refused(
        refusal(
            orgs.create_organization(bearer(
                CreateOrganizationRequest { name: huge.clone() },
                admin,
            ))
            .await,
        ),
        Code::InvalidArgument,
    );
    refused(
        refusal(
            orgs.get_organization(bearer(
                GetOrganizationRequest {
                    lookup: Some(Lookup::Name(huge.clone())),
                },
                admin,
            ))
            .await,
        ),
        Code::NotFound,
    );
    refused(
        refusal(
            orgs.get_organization(bearer(
                GetOrganizationRequest {
                    lookup: Some(Lookup::Id(huge.clone())),
                },
                admin,
            ))
            .await,
        ),
        Code::NotFound,
    );
    refused(
        refusal(
            orgs.delete_organization(bearer(
                DeleteOrganizationRequest { name: huge.clone() },
                admin,
            ))
            .await,
        ),
        Code::NotFound,
    );

    let mut tokens = TokenServiceClient::new(channel(suite.addrs[1]).await);
    refused(
        refusal(
            tokens
                .create_token(bearer(
                    CreateTokenRequest {
                        org_name: huge.clone(),
                        name: "ci".into(),
                        ..CreateTokenRequest::default()
                    },
                    admin,
                ))
                .await,
        ),
        Code::InvalidArgument,
    );
    refused(
        refusal(
            tokens
                .create_token(bearer(
                    CreateTokenRequest {
                        org_name: "cyberdyne".into(),
                        name: huge.clone(),
                        ..CreateTokenRequest::default()
                    },
                    admin,
                ))
                .await,
        ),
        Code::InvalidArgument,
    );
    refused(
        refusal(
            tokens
                .revoke_token(bearer(
                    RevokeTokenRequest {
                        org_name: "cyberdyne".into(),
                        name: huge.clone(),
                    },
                    admin,
                ))
                .await,
        ),
        Code::NotFound,
    );

    // Still serving.
    runs.start_run(bearer(
        StartRunRequest {
            workflow: "after".into(),
            ..StartRunRequest::default()
        },
        &runner,
    ))
    .await
    .expect("a run starts");
}

/// The refusal of a call that must be refused.
fn refusal<T>(result: Result<tonic::Response<T>, tonic::Status>) -> tonic::Status {
    match result {
        Ok(_) => panic!("accepted"),
        Err(status) => status,
    }
}
