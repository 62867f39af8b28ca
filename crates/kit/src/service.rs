//! The shape of every service's `main`: load config, start logging, run, and
//! turn the outcome into an exit code.

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::grpc::ServerArgs;
use crate::telemetry::LogArgs;

/// Exit code for a configuration the service cannot start with (BSD `EX_USAGE`).
pub const EXIT_BAD_CONFIG: u8 = 64;

/// Settings every service accepts: the shared file, server limits, logging.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Shared YAML configuration file (see README: Configuration).
    #[arg(long, env = "RUNPLANE_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub auth_failures: crate::auth_failures::AuthFailureArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

/// What [`main`] needs to know about a service's configuration type.
pub trait ServiceConfig: clap::Parser {
    /// The service's name, as in logs and the process list.
    const NAME: &'static str;
    /// Its section in the shared config file.
    const SECTION: &'static str;
    /// The settings every service has.
    fn common(&self) -> &CommonArgs;
}

/// Runs a service: parses its configuration (exit 64 with a clear message when
/// it is wrong), initialises logging, and runs `serve` on a multi-threaded tokio
/// runtime until it returns. An error is logged with its causes and exits 1.
pub fn main<C, F, Fut>(serve: F) -> ExitCode
where
    C: ServiceConfig,
    F: FnOnce(C) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let config = match crate::config::load::<C>(C::SECTION) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{}: {e}", C::NAME);
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{}: cannot start the async runtime: {e}", C::NAME);
            return ExitCode::FAILURE;
        }
    };
    // Inside the runtime: the OTLP exporter's channel runs on it. Dropped
    // (flushing spans) before the runtime is.
    let telemetry = {
        let _entered = runtime.enter();
        crate::telemetry::init(C::NAME, &config.common().log)
    };
    let code = match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "{} failed", C::NAME);
            ExitCode::FAILURE
        }
    };
    drop(telemetry);
    code
}
