//! ingest-service's process entry point.

fn main() -> std::process::ExitCode {
    runplane_server::bootstrap::main(ingest_service::run)
}
