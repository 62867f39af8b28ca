//! token-service's process entry point.

fn main() -> std::process::ExitCode {
    runplane_server::bootstrap::main(token_service::run)
}
