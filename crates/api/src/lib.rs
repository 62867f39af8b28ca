//! runplane's protobuf contract, generated from `proto/` at build time.
//!
//! Each module mirrors one protobuf package. Services depend on this crate, never
//! on each other: the generated clients are how they talk. Conversions live on
//! the generated types themselves (`RunStatus::label`, `Scope::from_label`) and
//! in [`time`] (wire timestamps as runplane's milliseconds).

/// `runplane.org.v1`: organizations.
pub mod org {
    /// Version 1 of the organization API.
    pub mod v1 {
        tonic::include_proto!("runplane.org.v1");
    }
}

/// `runplane.token.v1`: organization API tokens.
pub mod token {
    /// Version 1 of the token API.
    pub mod v1 {
        tonic::include_proto!("runplane.token.v1");
    }
}

/// `runplane.workflowrun.v1`: workflows, runs and their aggregates.
pub mod workflowrun {
    /// Version 1 of the workflow-run API.
    pub mod v1 {
        tonic::include_proto!("runplane.workflowrun.v1");
        include!(concat!(
            env!("OUT_DIR"),
            "/runplane.workflowrun.v1.serde.rs"
        ));
        pub use crate::workflow_metrics_page::{
            DecodedPage, ListWorkflowMetricsResponse, decode_page, decode_workflows,
        };
    }
}

/// `io.prometheus.client`: Prometheus' protobuf exposition format
/// (`MetricFamily`, native histograms included), generated from its
/// `metrics.proto` as vendored in `proto/vendor/prometheus`.
pub mod prometheus_client {
    #![allow(missing_docs)]
    tonic::include_proto!("io.prometheus.client");
}

pub mod input;
mod names;
pub mod org_name;
pub mod time;
mod workflow_metrics_page;
pub mod workflow_name;

/// Encoded `FileDescriptorSet` of every runplane proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("runplane_descriptor");

/// A generated gRPC server that bounds the size of the messages it decodes, so
/// that the one serve path every service shares sets that bound for all.
pub trait DecodingLimit {
    /// The server, refusing messages over `max_bytes` with RESOURCE_EXHAUSTED.
    fn with_decoding_limit(self, max_bytes: usize) -> Self;
}

macro_rules! decoding_limit {
    ($($server:ident <T: $handler:path>),* $(,)?) => {$(
        impl<T: $handler> DecodingLimit for $server<T> {
            fn with_decoding_limit(self, max_bytes: usize) -> Self {
                self.max_decoding_message_size(max_bytes)
            }
        }
    )*};
}

use org::v1::organization_service_server::OrganizationServiceServer;
use token::v1::token_service_server::TokenServiceServer;
use workflowrun::v1::workflow_run_service_server::WorkflowRunServiceServer;

decoding_limit!(
    OrganizationServiceServer<T: org::v1::organization_service_server::OrganizationService>,
    TokenServiceServer<T: token::v1::token_service_server::TokenService>,
    WorkflowRunServiceServer<T: workflowrun::v1::workflow_run_service_server::WorkflowRunService>,
);
