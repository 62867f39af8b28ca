//! `runplane`: manage organizations and tokens, report CI runs, and `up` the
//! whole suite on a laptop.

mod cli;
mod exit;
mod organization;
mod run;
mod runner_env;
mod up;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
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
