//! Server reflection, as grpcurl and grpcio clients use it: v1 and v1alpha.

use tonic_reflection::pb::{v1, v1alpha};

use crate::support::{Suite, channel};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_grpc_service_lists_itself_and_health_over_both_reflection_versions_and_nothing_else()
{
    let mut suite = Suite::new("");
    suite.up().await;
    let expected = [
        "runplane.org.v1.OrganizationService",
        "runplane.token.v1.TokenService",
        "runplane.workflowrun.v1.WorkflowRunService",
    ];
    for (addr, own) in suite.addrs[..3].iter().zip(expected) {
        let request = v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            )),
        };
        let mut client =
            v1::server_reflection_client::ServerReflectionClient::new(channel(*addr).await);
        let mut answers = client
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .expect("reflection v1")
            .into_inner();
        let answer = answers
            .message()
            .await
            .expect("answer")
            .expect("one answer");
        let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
            answer.message_response
        else {
            panic!("unexpected v1 answer from {addr}");
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        assert!(
            names.iter().any(|n| n == own),
            "{own} missing from {names:?}"
        );
        assert!(
            names.iter().any(|n| n == "grpc.health.v1.Health"),
            "health missing from {names:?}"
        );
        // Only what this port serves: not the other services of the contract.
        for other in expected.iter().filter(|s| **s != own) {
            assert!(
                !names.iter().any(|n| n == other),
                "{other} listed at {own}'s port: {names:?}"
            );
        }

        let request = v1alpha::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
            ),
        };
        let mut client =
            v1alpha::server_reflection_client::ServerReflectionClient::new(channel(*addr).await);
        let mut answers = client
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .expect("reflection v1alpha")
            .into_inner();
        let answer = answers
            .message()
            .await
            .expect("answer")
            .expect("one answer");
        let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
            answer.message_response
        else {
            panic!("unexpected v1alpha answer from {addr}");
        };
        assert!(
            list.service.iter().any(|s| s.name == own),
            "{own} missing over v1alpha"
        );
    }
}
