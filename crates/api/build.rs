//! Generates the Rust code for `proto/` at build time into OUT_DIR.
//!
//! protoc comes from the `protoc-bin-vendored` crate so that a fresh machine
//! needs no system install; a `PROTOC` set in the environment still wins.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "runplane/org/v1/org.proto",
    "runplane/token/v1/token.proto",
    "runplane/workflowrun/v1/workflow_run.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_path()?);
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let files: Vec<PathBuf> = PROTOS.iter().map(|p| proto_root.join(p)).collect();
    let descriptor_path = out_dir.join("runplane_descriptor.bin");
    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptor_path)
        // The well-known types with their JSON mapping (RFC 3339 timestamps,
        // "1.5s" durations), which prost-types lacks.
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        // Written by hand: its workflows stay encoded (see the module).
        .extern_path(
            ".runplane.workflowrun.v1.ListWorkflowMetricsResponse",
            "crate::workflow_metrics_page::ListWorkflowMetricsResponse",
        )
        .compile_with_config(config, &files, std::slice::from_ref(&proto_root))?;
    // serde for the run API, which ingest-service also serves as HTTP/JSON.
    let descriptors = std::fs::read(&descriptor_path)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        .exclude([".runplane.workflowrun.v1.ListWorkflowMetricsResponse"])
        .build(&[".runplane.workflowrun.v1"])?;
    // Prometheus' own exposition format, for metrics-service's protobuf
    // scrapes: messages only, and not part of the reflected descriptor set.
    let vendored = proto_root.join("vendor/prometheus");
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_path()?);
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_with_config(
            config,
            &[vendored.join("io/prometheus/client/metrics.proto")],
            &[vendored, proto_root.clone()],
        )?;
    println!("cargo:rerun-if-changed={}", proto_root.display());
    println!("cargo:rerun-if-env-changed=PROTOC");
    Ok(())
}

/// `PROTOC` from the environment, or the vendored protoc.
fn protoc_path() -> Result<PathBuf, Box<dyn std::error::Error>> {
    Ok(match std::env::var_os("PROTOC") {
        Some(path) => PathBuf::from(path),
        None => protoc_bin_vendored::protoc_bin_path()?,
    })
}
