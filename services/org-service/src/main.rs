//! org-service's process entry point.

fn main() -> std::process::ExitCode {
    runplane_server::bootstrap::main(org_service::run)
}
