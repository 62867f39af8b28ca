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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let telemetry = {
        let _entered = runtime.enter();
        runplane_kit::telemetry::init("runplane", &cli.log)
    };
    let code = match runtime.block_on(cli::dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    };
    drop(telemetry);
    code
}
