//! The command line: global options and every subcommand.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use runplane_config::parse_duration;
use runplane_server::suite::{self, Member};
use runplane_telemetry::LogArgs;

use crate::output::Format;

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
    /// Shared YAML configuration file (README: Configuration). The CLI reads
    /// the services' addresses and the admin credential file from it too,
    /// unless given here.
    #[arg(long, global = true, env = "RUNPLANE_CONFIG")]
    pub(crate) config: Option<PathBuf>,
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
    #[arg(long, global = true, env = "RUNPLANE_CALL_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub(crate) call_timeout: Duration,
    /// Print only the essential value (a token, a run id, names) on stdout, for scripts.
    #[arg(short, long, global = true)]
    pub(crate) quiet: bool,
    /// How to print results: `text` for people, `json` for scripts (one JSON
    /// value on stdout: an object, or an array for a list).
    #[arg(short, long, global = true, env = "RUNPLANE_OUTPUT", value_enum, default_value_t = Format::Text)]
    pub(crate) output: Format,
    /// TLS towards the services (https:// addresses, or any of these set).
    #[command(flatten)]
    pub(crate) tls: runplane_tls::ClientTlsArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Start the whole suite locally (five service processes on SQLite) and supervise it.
    Up(crate::up::UpArgs),
    /// Manage organizations and their API tokens (needs the admin credential).
    #[command(subcommand, alias = "org")]
    Organization(crate::organization::OrganizationCommand),
    /// Report workflow runs from CI, and read them (needs an organization API token).
    #[command(subcommand)]
    Run(crate::run::RunCommand),
    /// Report the jobs of a run from CI (needs an organization API token).
    #[command(subcommand)]
    Job(crate::job::JobCommand),
    /// Record deployments to an environment, and list them (needs an organization API token).
    #[command(subcommand)]
    Deployment(crate::deployment::DeploymentCommand),
    /// List an organization's workflows (needs an organization API token).
    #[command(subcommand)]
    Workflow(crate::workflow::WorkflowCommand),
    /// Generate an admin credential for a deployment.
    #[command(subcommand)]
    AdminToken(crate::admin_token::AdminTokenCommand),
    /// Print a shell completion script, e.g. `runplane completion bash > /etc/bash_completion.d/runplane`.
    Completion {
        /// The shell to complete in.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

impl Global {
    /// Whether to print JSON: `--output json`, unless `-q` asks for the bare
    /// value (so `ID=$(runplane run start … -q)` holds the id whatever
    /// RUNPLANE_OUTPUT says).
    pub(crate) fn json(&self) -> bool {
        self.output == Format::Json && !self.quiet
    }

    /// Where each gRPC service listens, as the suite will be started: a flag
    /// or environment variable, else the service's section of the config file
    /// (`listen_addr`), else its top-level `<service>_addr`, else the default.
    /// The admin credential file likewise: else org-service's section, else
    /// the top level. `explicit` names what the command line or the
    /// environment gave.
    pub(crate) fn resolve_from_file(
        &mut self,
        explicit: &BTreeSet<String>,
    ) -> Result<(), runplane_config::ConfigError> {
        let Some(path) = self.config.clone() else {
            return Ok(());
        };
        let addresses = [
            (suite::ORG_SERVICE, &mut self.org_service_addr),
            (suite::TOKEN_SERVICE, &mut self.token_service_addr),
            (
                suite::WORKFLOW_RUN_SERVICE,
                &mut self.workflow_run_service_addr,
            ),
        ];
        for (member, addr) in addresses {
            let key = member.address_key().unwrap_or_default();
            if explicit.contains(&key) {
                continue;
            }
            if let Some(listen) = section_setting(&path, &member, "listen_addr")? {
                *addr = listen;
            }
        }
        if !explicit.contains("admin_token_file")
            && let Some(file) = section_setting(&path, &suite::ORG_SERVICE, "admin_token_file")?
        {
            self.admin_token_file = Some(PathBuf::from(file));
        }
        Ok(())
    }
}

/// What the config file at `path` gives `key` in `member`'s section (or, for
/// a top-level key, at the top).
pub(crate) fn section_setting(
    path: &Path,
    member: &Member,
    key: &str,
) -> Result<Option<String>, runplane_config::ConfigError> {
    Ok(
        runplane_config::file_settings(path, &suite::layout(member))?
            .into_iter()
            .find(|setting| setting.key == key)
            .map(|setting| setting.value),
    )
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
        Command::Job(command) => crate::job::run(&cli.global, command).await,
        Command::Workflow(command) => crate::workflow::run(&cli.global, command).await,
        Command::Deployment(command) => crate::deployment::run(&cli.global, command).await,
        Command::AdminToken(command) => {
            crate::admin_token::run(&cli.global, command)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Completion { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "runplane", &mut script);
            match std::io::Write::write_all(&mut std::io::stdout().lock(), &script) {
                // Piped into `head` or the like: what was read is enough.
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
                _ => Ok(ExitCode::SUCCESS),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every command and every flag of every command.
    fn walk(command: &clap::Command, path: &str, visit: &mut impl FnMut(&str, &clap::Command)) {
        let path = format!("{path} {}", command.get_name());
        visit(&path, command);
        for sub in command.get_subcommands() {
            walk(sub, &path, visit);
        }
    }

    #[test]
    fn every_command_and_flag_says_what_it_is_for() {
        let mut missing = Vec::new();
        walk(&Cli::command(), "", &mut |path, command| {
            if command.get_about().is_none() && !path.ends_with(" help") && path != " runplane" {
                missing.push(format!("{path}: no description"));
            }
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if id != "help" && id != "version" && arg.get_help().is_none() {
                    missing.push(format!("{path} {id}: no help"));
                }
            }
        });
        assert!(missing.is_empty(), "{missing:#?}");
    }

    #[test]
    fn usage_lines_show_no_global_or_environment_backed_flag_as_required() {
        let mut required = Vec::new();
        walk(&Cli::command(), "", &mut |path, command| {
            for arg in command.get_arguments() {
                if arg.is_required_set() && (arg.is_global_set() || arg.get_env().is_some()) {
                    required.push(format!("{path} {}", arg.get_id()));
                }
            }
        });
        assert!(required.is_empty(), "{required:#?}");
    }

    #[test]
    fn no_command_reuses_a_global_flag_for_something_else() {
        let command = Cli::command();
        let globals: Vec<String> = command
            .get_arguments()
            .filter(|a| a.is_global_set())
            .map(|a| a.get_id().to_string())
            .collect();
        let mut clashes = Vec::new();
        for sub in command.get_subcommands() {
            walk(sub, "", &mut |path, command| {
                for arg in command.get_arguments() {
                    if globals.iter().any(|g| g == arg.get_id().as_str()) {
                        clashes.push(format!("{path} {}", arg.get_id()));
                    }
                }
            });
        }
        assert!(clashes.is_empty(), "{clashes:#?}");
        command.debug_assert();
    }

    #[test]
    fn up_help_shows_every_default() {
        let mut command = Cli::command();
        let up = command
            .find_subcommand_mut("up")
            .expect("up")
            .clone()
            .render_long_help()
            .to_string();
        for arg in Cli::command()
            .find_subcommand("up")
            .expect("up")
            .get_arguments()
        {
            let takes_value = arg.get_num_args().is_none_or(|n| n.takes_values());
            let id = arg.get_id().as_str();
            if !takes_value || matches!(id, "help" | "version") {
                continue;
            }
            let help = arg
                .get_long_help()
                .or(arg.get_help())
                .map(ToString::to_string);
            let says_default = !arg.get_default_values().is_empty()
                || help.is_some_and(|h| h.contains("default") || h.contains("Default"));
            assert!(says_default, "up --{id} does not say its default:\n{up}");
        }
    }
}
