//! Waiting for the signal that tells a process to stop.

/// Resolves when the process receives SIGTERM (Kubernetes, `runplane up`) or
/// SIGINT (Ctrl-C), and returns the signal's name for the log.
pub async fn signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the only way out is being killed; wait forever.
        tracing::warn!("could not install signal handlers; graceful shutdown is unavailable");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
