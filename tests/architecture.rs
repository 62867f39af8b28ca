//! The crates' dependency rules (docs/architecture.md), checked against the
//! manifests as cargo reads them: dependencies point one way, no service
//! depends on another, a tool reaches a service only through its
//! `test-support` feature, and the CLI links no database code.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Which of our crates each crate may depend on (normal dependencies).
const ALLOWED: &[(&str, &[&str])] = &[
    ("runplane-api", &[]),
    ("runplane-config", &[]),
    ("runplane-telemetry", &[]),
    ("runplane-tls", &[]),
    (
        "runplane-client",
        &["runplane-config", "runplane-telemetry", "runplane-tls"],
    ),
    (
        "runplane-auth",
        &["runplane-api", "runplane-client", "runplane-telemetry"],
    ),
    (
        "runplane-server",
        &[
            "runplane-api",
            "runplane-auth",
            "runplane-client",
            "runplane-config",
            "runplane-telemetry",
            "runplane-tls",
        ],
    ),
    (
        "runplane-database",
        &["runplane-config", "runplane-telemetry"],
    ),
];

const SHARED: &[&str] = &[
    "runplane-api",
    "runplane-config",
    "runplane-telemetry",
    "runplane-tls",
    "runplane-client",
    "runplane-auth",
    "runplane-server",
    "runplane-database",
];

const SERVICES: &[&str] = &[
    "org-service",
    "token-service",
    "workflow-run-service",
    "metrics-service",
    "ingest-service",
];

/// Crates that may reach into a service, through its `test-support` feature.
const TOOLS: &[&str] = &["runplane-bench", "runplane-e2e"];

/// A dependency between two of our crates, as a manifest declares it.
#[derive(Debug)]
struct Dependency {
    from: String,
    to: String,
    dev: bool,
    features: Vec<String>,
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    command
}

/// Every dependency of one workspace crate on another.
fn workspace_dependencies() -> Vec<Dependency> {
    let output = cargo()
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .output()
        .expect("cargo metadata");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let packages = metadata["packages"].as_array().expect("packages");
    let ours: BTreeSet<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    let mut dependencies = Vec::new();
    for package in packages {
        let from = package["name"].as_str().unwrap_or_default();
        for dependency in package["dependencies"].as_array().into_iter().flatten() {
            let to = dependency["name"].as_str().unwrap_or_default();
            if !ours.contains(to) || to == from {
                continue;
            }
            dependencies.push(Dependency {
                from: from.to_owned(),
                to: to.to_owned(),
                dev: dependency["kind"].as_str() == Some("dev"),
                features: dependency["features"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|f| f.as_str().map(str::to_owned))
                    .collect(),
            });
        }
    }
    dependencies
}

#[test]
fn shared_crates_depend_only_on_the_crates_below_them() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    for dependency in workspace_dependencies() {
        let Some(permitted) = allowed.get(dependency.from.as_str()) else {
            continue;
        };
        assert!(
            dependency.dev && !SERVICES.contains(&dependency.to.as_str())
                || permitted.contains(&dependency.to.as_str()),
            "{} may not depend on {} (docs/architecture.md)",
            dependency.from,
            dependency.to
        );
    }
}

#[test]
fn services_are_reached_only_by_tools_through_their_test_support_feature() {
    for dependency in workspace_dependencies() {
        if !SERVICES.contains(&dependency.to.as_str()) {
            continue;
        }
        assert!(
            TOOLS.contains(&dependency.from.as_str()),
            "{} depends on the service {}: services talk over gRPC only",
            dependency.from,
            dependency.to
        );
        assert!(
            dependency.features.iter().any(|f| f == "test-support"),
            "{} reaches {} without its test-support feature",
            dependency.from,
            dependency.to
        );
    }
}

#[test]
fn services_depend_on_shared_crates_only() {
    for dependency in workspace_dependencies() {
        if SERVICES.contains(&dependency.from.as_str()) {
            assert!(
                SHARED.contains(&dependency.to.as_str()),
                "{} depends on {}",
                dependency.from,
                dependency.to
            );
        }
    }
}

#[test]
fn the_cli_links_no_service_and_no_database_code() {
    let output = cargo()
        .args([
            "tree",
            "--offline",
            "--locked",
            "-p",
            "runplane-cli",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .output()
        .expect("cargo tree");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8_lossy(&output.stdout);
    let linked: BTreeSet<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    for forbidden in ["sea-orm", "sea-orm-migration", "sqlx", "runplane-database"]
        .into_iter()
        .chain(SERVICES.iter().copied())
    {
        assert!(
            !linked.contains(forbidden),
            "the runplane CLI links {forbidden}"
        );
    }
    assert!(linked.contains("runplane-server"), "{tree}");
}
