//! workflow-run-service's process entry point.

fn main() -> std::process::ExitCode {
    runplane_server::bootstrap::main(workflow_run_service::run)
}
