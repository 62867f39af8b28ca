//! metrics-service's process entry point.

fn main() -> std::process::ExitCode {
    runplane_kit::service::main(metrics_service::run)
}
