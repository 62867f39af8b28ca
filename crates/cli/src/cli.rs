//! The command line: global options and every subcommand.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use runplane_config::parse_duration;
use runplane_server::suite;
use runplane_telemetry::LogArgs;

/// runplane: CI/CD operational health, as Prometheus metrics per organization.
#[derive(Debug, Parser)]
#[command(name = "runplane", version, about, propagate_version = true)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(flatten)]
    pub(crate) log: LogArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Where the services are and how to talk to them.
#[derive(Debug, Clone, Args)]
pub(crate) struct Global {
    /// Data directory of `runplane up`; the admin credential is read from DIR/admin-token.
    #[arg(
        long,
        global = true,
        env = "RUNPLANE_DATA_DIR",
        default_value = ".runplane"
    )]
    pub(crate) data_dir: PathBuf,
    /// org-service's address.
    #[arg(
        long,
        global = true,
        env = "RUNPLANE_ORG_SERVICE_ADDR",
        default_value = suite::ORG_SERVICE.default_addr
    )]
    pub(crate) org_service_addr: String,
    /// token-service's address.
    #[arg(
        long,
        global = true,
        env = "RUNPLANE_TOKEN_SERVICE_ADDR",
        default_value = suite::TOKEN_SERVICE.default_addr
    )]
    pub(crate) token_service_addr: String,
    /// workflow-run-service's address.
    #[arg(
        long,
        global = true,
        env = "RUNPLANE_WORKFLOW_RUN_SERVICE_ADDR",
        default_value = suite::WORKFLOW_RUN_SERVICE.default_addr
    )]
    pub(crate) workflow_run_service_addr: String,
    /// File with the admin credential (default: DATA_DIR/admin-token). RUNPLANE_ADMIN_TOKEN wins.
    #[arg(long, global = true, env = "RUNPLANE_ADMIN_TOKEN_FILE")]
    pub(crate) admin_token_file: Option<PathBuf>,
    /// Deadline for each call to a service.
    #[arg(long, global = true, env = "RUNPLANE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
    /// Print only the essential value (a token, a run id) on stdout, for scripts.
    #[arg(short, long, global = true)]
    pub(crate) quiet: bool,
    /// TLS towards the services (https:// addresses, or any of these set).
    #[command(flatten)]
    pub(crate) tls: runplane_tls::ClientTlsArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Start the whole suite locally (four service processes on SQLite) and supervise it.
    Up(crate::up::UpArgs),
    /// Manage organizations and their API tokens (needs the admin credential).
    #[command(subcommand, alias = "org")]
    Organization(crate::organization::OrganizationCommand),
    /// Report workflow runs from CI (needs an organization API token).
    #[command(subcommand)]
    Run(crate::run::RunCommand),
}

/// Runs the chosen command.
pub(crate) async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Up(args) => crate::up::up(&cli.global, args).await,
        Command::Organization(command) => {
            crate::organization::run(&cli.global, command).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(command) => crate::run::run(&cli.global, command).await,
    }
}
