//! The shape of every runplane process's `main`: load config, start the
//! runtime and telemetry, run, and turn the outcome into an exit code.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use runplane_auth::{AdminArgs, AuthFailureArgs};
use runplane_telemetry::LogArgs;

use crate::grpc::ServerArgs;
use crate::suite::Member;

/// Exit code for a configuration the service cannot start with (BSD `EX_USAGE`).
pub const EXIT_BAD_CONFIG: u8 = 64;

/// Settings every service accepts: the shared file, where it listens, server
/// limits, the admin credential, limits on wrong credentials, logging.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Shared YAML configuration file (see README: Configuration).
    #[arg(long, env = "RUNPLANE_CONFIG")]
    pub config: Option<PathBuf>,
    // Its default is each service's own, given at load time (`suite::layout`).
    /// Address the server listens on.
    #[arg(long, env = "RUNPLANE_LISTEN_ADDR")]
    pub listen_addr: SocketAddr,
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(flatten)]
    pub auth_failures: AuthFailureArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

/// What [`main`] needs to know about a service's configuration type.
pub trait ServiceConfig: clap::Parser {
    /// The service, as a member of the suite.
    const MEMBER: Member;
    /// The settings every service has.
    fn common(&self) -> &CommonArgs;
}

/// Parses a service's configuration from its flags, environment and the
/// shared file (exits with clap's usage message on bad flags).
pub fn load_config<C: ServiceConfig>() -> Result<C, runplane_config::ConfigError> {
    runplane_config::load::<C>(&crate::suite::layout(&C::MEMBER))
}

/// Runs a service: parses its configuration (exit 64 with a clear message when
/// it is wrong), and runs `serve` until it returns (see [`run_process`]). An
/// error is logged with its causes and exits 1.
pub fn main<C, F, Fut>(serve: F) -> ExitCode
where
    C: ServiceConfig,
    F: FnOnce(C) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let name = C::MEMBER.name;
    let config = match load_config::<C>() {
        Ok(config) => config,
        Err(e) => {
            // A wrong flag is answered as clap answers it (usage, exit 2).
            eprintln!("{name}: {}", e.exit_on_usage());
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let log = config.common().log.clone();
    let served = run_process(name, &log, || async {
        let served = serve(config).await;
        if let Err(e) = &served {
            tracing::error!(error = format!("{e:#}"), "{name} failed");
        }
        served
    });
    match served {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(_)) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("{name}: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `work` on a multi-threaded tokio runtime, with logging and tracing
/// started inside it (the OTLP exporter's channel runs on it) and flushed
/// before the runtime stops. Callers turn the output into an exit code.
pub fn run_process<Fut: Future>(
    name: &'static str,
    log: &LogArgs,
    work: impl FnOnce() -> Fut,
) -> std::io::Result<Fut::Output> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let telemetry = {
        let _entered = runtime.enter();
        runplane_telemetry::init(name, log)
    };
    runtime.spawn(runplane_telemetry::memory::give_back_freed_memory());
    let output = runtime.block_on(work());
    drop(telemetry);
    Ok(output)
}
