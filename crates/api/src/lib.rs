//! runplane's protobuf contract, generated from `proto/` at build time.
//!
//! Each module mirrors one protobuf package. Services depend on this crate, never
//! on each other: the generated clients are how they talk.

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
        pub use crate::workflow_metrics_page::ListWorkflowMetricsResponse;
    }
}

mod workflow_metrics_page;

/// Encoded `FileDescriptorSet` of every runplane proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("runplane_descriptor");
