//! Logging set-up shared by every process.

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per event, for log pipelines.
    Json,
}

/// Logging settings every service and the CLI accept.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log filter, in `RUST_LOG` syntax. sqlx is quiet by default: it logs every statement at INFO.
    #[arg(long, env = "RUNPLANE_LOG", default_value = "info,sqlx=warn")]
    pub log: String,
    /// Log line format.
    #[arg(long, env = "RUNPLANE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Installs the global subscriber, writing to stderr, tagged with the service's name.
/// An invalid filter falls back to the default and says so.
pub fn init(service: &'static str, args: &LogArgs) {
    let (filter, bad_filter) = match EnvFilter::try_new(&args.log) {
        Ok(filter) => (filter, None),
        Err(e) => (EnvFilter::new("info,sqlx=warn"), Some(e)),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    // A second init (tests) keeps the first subscriber; that is fine.
    let _ = match args.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    if let Some(e) = bad_filter {
        tracing::warn!(filter = %args.log, error = %e, "invalid log filter; using info,sqlx=warn");
    }
    tracing::debug!(service, "logging initialised");
}
