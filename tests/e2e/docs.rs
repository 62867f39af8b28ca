//! The README's configuration reference is the binaries' own: every setting a
//! service accepts is listed, and listed for exactly the services that have it.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use crate::support::{SERVICES, bin_dir};

/// A service's flags, from its `--help`.
fn flags_of(service: &str) -> BTreeSet<String> {
    let help = Command::new(bin_dir().join(service))
        .arg("--help")
        .output()
        .expect("--help");
    String::from_utf8_lossy(&help.stdout)
        .split_whitespace()
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| {
            w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
                .to_owned()
        })
        .filter(|w| !matches!(w.as_str(), "--help" | "--version"))
        .collect()
}

/// The README table's services column as binary names ("all" is every one).
fn services_of(column: &str) -> BTreeSet<&'static str> {
    let short = [
        ("org", "org-service"),
        ("token", "token-service"),
        ("workflow-run", "workflow-run-service"),
        ("metrics", "metrics-service"),
        ("ingest", "ingest-service"),
    ];
    column
        .split(',')
        .map(str::trim)
        .flat_map(|name| match name {
            "all" => SERVICES.to_vec(),
            other => short
                .iter()
                .filter(|(s, _)| *s == other)
                .map(|(_, binary)| *binary)
                .collect(),
        })
        .collect()
}

#[test]
fn readme_documents_every_service_setting_for_the_services_that_have_it() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README");
    // | `--flag` | `RUNPLANE_…` | services | default | meaning |
    let documented: BTreeMap<String, BTreeSet<&str>> = readme
        .lines()
        .filter(|line| line.starts_with("| `--"))
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let flag = cells.get(1)?.trim_matches('`').to_owned();
            Some((flag, services_of(cells.get(3)?)))
        })
        .collect();
    for service in SERVICES {
        let flags = flags_of(service);
        for flag in &flags {
            let listed = documented
                .get(flag)
                .unwrap_or_else(|| panic!("README does not document {service} {flag}"));
            assert!(
                listed.contains(service),
                "README lists {flag} without {service}, which has it"
            );
        }
        for (flag, listed) in &documented {
            if listed.contains(service) {
                assert!(
                    flags.contains(flag),
                    "README lists {flag} for {service}, which has no such setting"
                );
            }
        }
    }
}
