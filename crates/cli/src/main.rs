//! `runplane`: manage organizations and tokens, report CI runs, and `up` the
//! whole suite on a laptop.

/// `println!` that ends the process quietly once stdout's reader has gone
/// (`runplane run list | head -1`), as Unix tools do, instead of panicking.
macro_rules! outln {
    () => {
        $crate::output::write_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::output::write_line(format_args!($($arg)*))
    };
}

mod admin_token;
mod child;
mod cli;
mod deployment;
mod exit;
mod job;
mod organization;
mod output;
mod report;
mod run;
mod runner_env;
mod up;
mod webhook;
mod workflow;

use std::process::ExitCode;

use runplane_server::bootstrap::EXIT_BAD_CONFIG;

fn main() -> ExitCode {
    let layout = runplane_server::suite::cli_layout();
    let loaded =
        runplane_config::load_explicit_from::<cli::Cli>(&layout, std::env::args_os().collect())
            .and_then(|mut loaded| {
                loaded.config.global.resolve_from_file(&loaded.explicit)?;
                Ok(loaded)
            });
    let cli = match loaded {
        Ok(loaded) => loaded.config,
        Err(e) => {
            // A wrong flag is answered as clap answers it (usage, exit 2).
            eprintln!("error: {}", e.exit_on_usage());
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let log = cli.log.clone();
    match runplane_server::bootstrap::run_process("runplane", &log, || cli::dispatch(cli)) {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}
