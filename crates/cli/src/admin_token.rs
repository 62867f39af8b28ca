//! `runplane admin-token generate`: a fresh admin credential for a deployment
//! (a Kubernetes Secret, a vault), minted as `runplane up` mints its own.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use runplane_auth::secret::{self, SecretKind};

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

pub(crate) fn run(command: AdminTokenCommand) -> anyhow::Result<()> {
    let AdminTokenCommand::Generate { file } = command;
    let credential = secret::generate(SecretKind::Admin)?;
    match file {
        None => println!("{credential}"),
        Some(path) => {
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| {
                    format!(
                        "cannot create {} (an existing credential is never overwritten)",
                        path.display()
                    )
                })?;
            writeln!(file, "{credential}")?;
            eprintln!(
                "Wrote a new admin credential to {} (readable by you only).",
                path.display()
            );
        }
    }
    Ok(())
}
