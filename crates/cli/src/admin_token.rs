//! `runplane admin-token generate`: a fresh admin credential for a deployment
//! (a Kubernetes Secret, a vault), minted as `runplane up` mints its own.

use std::io::Write as _;
use std::path::PathBuf;

use clap::Subcommand;
use runplane_auth::secret::{self, SecretKind};

use crate::cli::Global;
use crate::output::print_json;

#[derive(Debug, Subcommand)]
pub(crate) enum AdminTokenCommand {
    /// Print a new admin credential (`rpa_…`), or write it to a file readable
    /// by its owner only. Give the same one to every service.
    Generate {
        /// Write it here (created with mode 0600; an existing file is not
        /// overwritten) instead of printing it.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
}

pub(crate) fn run(global: &Global, command: AdminTokenCommand) -> anyhow::Result<()> {
    let AdminTokenCommand::Generate { file } = command;
    let credential = secret::generate(SecretKind::Admin)?;
    match file {
        None if global.json() => print_json(&serde_json::json!({ "credential": credential }))?,
        None => outln!("{credential}"),
        Some(path) => {
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::AlreadyExists => anyhow::anyhow!(
                        "{} exists: an existing credential is never overwritten",
                        path.display()
                    ),
                    _ => anyhow::Error::new(e).context(format!("cannot create {}", path.display())),
                })?;
            writeln!(file, "{credential}")?;
            if global.json() {
                print_json(&serde_json::json!({ "file": path }))?;
            }
            eprintln!(
                "Wrote a new admin credential to {} (readable by you only).",
                path.display()
            );
        }
    }
    Ok(())
}
