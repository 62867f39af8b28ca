//! token-service's process entry point.

fn main() -> std::process::ExitCode {
    runplane_kit::service::main(token_service::run)
}
