//! The README's configuration reference lists every setting the binaries accept.

use std::process::Command;

use crate::support::{SERVICES, bin_dir};

#[test]
fn readme_documents_every_service_flag() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README");
    let bin = bin_dir();
    for service in SERVICES {
        let help = Command::new(bin.join(service))
            .arg("--help")
            .output()
            .expect("--help");
        let help = String::from_utf8_lossy(&help.stdout);
        let flags = help
            .split_whitespace()
            .filter(|w| w.starts_with("--") && w.len() > 2)
            .map(|w| w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()))
            .filter(|w| !matches!(*w, "--help" | "--version"));
        for flag in flags {
            assert!(
                readme.contains(&format!("`{flag}`")),
                "README does not document {service} {flag}"
            );
        }
    }
}
