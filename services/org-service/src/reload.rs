//! `prometheus_org_metrics` without a restart: re-read on SIGHUP and whenever
//! the config file changes. The list is re-read the way it was read at start-up
//! (flags, environment, file), so the usual precedence still holds. A file that
//! does not parse, or names an invalid organization, changes nothing: the
//! previous list stays and the log says why.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::Config;

/// The organizations whose metrics are served, as last loaded.
pub(crate) type EnabledOrgs = watch::Receiver<Arc<BTreeSet<String>>>;

/// How often the config file's modification time is looked at.
const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Starts watching for SIGHUP and config file changes; returns the live list.
/// The SIGHUP handler is installed before this returns, so a SIGHUP never
/// kills the process (its default action) once the service is up.
pub(crate) fn watch(
    initial: BTreeSet<String>,
    config_file: Option<PathBuf>,
) -> anyhow::Result<EnabledOrgs> {
    let (tx, rx) = watch::channel(Arc::new(initial));
    let mut hangup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        let mut seen = config_file.as_deref().and_then(modified);
        let mut poll = tokio::time::interval(POLL_INTERVAL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let reason = tokio::select! {
                _ = hangup.recv() => "SIGHUP",
                _ = poll.tick() => {
                    let now = config_file.as_deref().and_then(modified);
                    if now == seen {
                        continue;
                    }
                    seen = now;
                    "config file changed"
                }
            };
            reload(&tx, reason);
        }
    });
    Ok(rx)
}

fn modified(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn reload(tx: &watch::Sender<Arc<BTreeSet<String>>>, reason: &str) {
    let loaded = runplane_server::bootstrap::load_config::<Config>()
        .map_err(anyhow::Error::from)
        .and_then(|config| crate::metrics_enabled_orgs(&config.prometheus_org_metrics));
    match loaded {
        Ok(orgs) if **tx.borrow() == orgs => {
            tracing::info!(reason, "prometheus_org_metrics reloaded: unchanged");
        }
        Ok(orgs) => {
            tracing::info!(reason, orgs = ?orgs, "prometheus_org_metrics reloaded: metrics enabled for {} organization(s)", orgs.len());
            tx.send_replace(Arc::new(orgs));
        }
        Err(e) => tracing::warn!(
            reason,
            error = format!("{e:#}"),
            "prometheus_org_metrics not reloaded; keeping the previous list"
        ),
    }
}
