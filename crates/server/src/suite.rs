//! The suite: its member services, as `runplane up`, the shared config file
//! and the services' own defaults name them.
//!
//! A member's settings are its own (its `Config` in its crate). What the suite
//! says here is what its members must agree on: who is a member, what each is
//! called, where it listens by default, and which settings each has, so that
//! each can tell a key at the top of the shared file that is another member's
//! from one no member has ([`layout`]). The list of a member's settings is a
//! copy, checked against its `Config` by [`check_settings`] in its own tests.

use clap::Args;
use runplane_config::Layout;

use crate::CommonArgs;

/// How a member is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    Http,
}

/// One member of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// Its name, as in logs, the process list and its binary.
    pub name: &'static str,
    /// Its section of the shared config file.
    pub section: &'static str,
    /// Where it listens unless told otherwise (its peers' default for it too).
    pub default_addr: &'static str,
    pub protocol: Protocol,
    /// Its SQLite file (the embedded default's database), for the stateful ones.
    pub sqlite_file: Option<&'static str>,
    /// Its settings beyond those every service has ([`CommonArgs`]), as
    /// file keys; checked by [`check_settings`].
    pub settings: &'static [&'static str],
}

impl Member {
    /// The setting by which its peers name its address (`org_service_addr`),
    /// for a member reached over gRPC.
    pub fn address_key(&self) -> Option<String> {
        (self.protocol == Protocol::Grpc).then(|| format!("{}_addr", self.section))
    }
}

pub const ORG_SERVICE: Member = Member {
    name: "org-service",
    section: "org_service",
    default_addr: "127.0.0.1:50051",
    protocol: Protocol::Grpc,
    sqlite_file: Some("org.db"),
    settings: &[
        "prometheus_org_metrics",
        "database_url",
        "db_max_connections",
        "db_connect_timeout",
        "db_acquire_timeout",
        "database_schema",
    ],
};

pub const TOKEN_SERVICE: Member = Member {
    name: "token-service",
    section: "token_service",
    default_addr: "127.0.0.1:50052",
    protocol: Protocol::Grpc,
    sqlite_file: Some("token.db"),
    settings: &[
        "org_service_addr",
        "org_cache_ttl",
        "webhook_key_file",
        "upstream_timeout",
        "upstream_tls_ca",
        "upstream_tls_cert",
        "upstream_tls_key",
        "database_url",
        "db_max_connections",
        "db_connect_timeout",
        "db_acquire_timeout",
        "database_schema",
    ],
};

pub const WORKFLOW_RUN_SERVICE: Member = Member {
    name: "workflow-run-service",
    section: "workflow_run_service",
    default_addr: "127.0.0.1:50053",
    protocol: Protocol::Grpc,
    sqlite_file: Some("workflow-run.db"),
    settings: &[
        "token_service_addr",
        "auth_cache_ttl",
        "auth_cache_capacity",
        "max_workflows_per_org",
        "otel_cicd_metrics",
        "run_timeout",
        "sweep_interval",
        "run_retention",
        "retention_interval",
        "run_duration_buckets",
        "queue_duration_buckets",
        "branch_label",
        "deploy_workflows",
        "upstream_timeout",
        "upstream_tls_ca",
        "upstream_tls_cert",
        "upstream_tls_key",
        "database_url",
        "db_max_connections",
        "db_connect_timeout",
        "db_acquire_timeout",
        "database_schema",
    ],
};

pub const METRICS_SERVICE: Member = Member {
    name: "metrics-service",
    section: "metrics_service",
    default_addr: "127.0.0.1:8080",
    protocol: Protocol::Http,
    sqlite_file: None,
    settings: &[
        "org_service_addr",
        "token_service_addr",
        "workflow_run_service_addr",
        "metrics_namespace",
        "openmetrics_created_series",
        "protobuf_histograms",
        "disabled_metrics",
        "drop_labels",
        "max_series_per_org",
        "scrape_cache_mib",
        "client_address_header",
        "upstream_timeout",
        "upstream_tls_ca",
        "upstream_tls_cert",
        "upstream_tls_key",
    ],
};

pub const INGEST_SERVICE: Member = Member {
    name: "ingest-service",
    section: "ingest_service",
    default_addr: "127.0.0.1:8081",
    protocol: Protocol::Http,
    sqlite_file: None,
    settings: &[
        "token_service_addr",
        "workflow_run_service_addr",
        "client_address_header",
        "webhook_secret_cache_ttl",
        "upstream_timeout",
        "upstream_tls_ca",
        "upstream_tls_cert",
        "upstream_tls_key",
    ],
};

/// Every member, in the order `runplane up` starts them.
pub const MEMBERS: [Member; 5] = [
    ORG_SERVICE,
    TOKEN_SERVICE,
    WORKFLOW_RUN_SERVICE,
    METRICS_SERVICE,
    INGEST_SERVICE,
];

/// Settings every service has that differ per service: a section's only.
const SECTION_ONLY: &[&str] = &["listen_addr", "config"];

/// The keys the top of the shared file may hold: every setting of some member
/// (each applies those it has), but those that must differ per service.
pub fn top_level_keys() -> Vec<String> {
    let mut keys: std::collections::BTreeSet<String> = flags::<CommonArgs>().into_iter().collect();
    keys.extend(
        MEMBERS
            .iter()
            .flat_map(|m| m.settings.iter().map(|k| (*k).to_owned())),
    );
    keys.retain(|k| !SECTION_ONLY.contains(&k.as_str()));
    keys.into_iter().collect()
}

/// The shared file as `member` reads it: its section, the top-level keys,
/// and the defaults that are the suite's to give (where the member listens,
/// its database file, where its peers listen).
pub fn layout(member: &Member) -> Layout {
    let mut defaults = vec![("listen_addr".to_owned(), member.default_addr.to_owned())];
    if let Some(file) = member.sqlite_file {
        defaults.push((
            "database_url".to_owned(),
            format!("sqlite://.runplane/{file}"),
        ));
    }
    defaults.extend(
        MEMBERS
            .iter()
            .filter_map(|m| Some((m.address_key()?, m.default_addr.to_owned()))),
    );
    Layout {
        section: Some(member.section.to_owned()),
        sections: MEMBERS.iter().map(|m| m.section.to_owned()).collect(),
        top_level_keys: top_level_keys(),
        defaults,
    }
}

/// The shared file as the `runplane` CLI reads it: the top-level keys it has
/// (the services' addresses, the admin credential file, TLS towards them,
/// logging), so that they are set once for the suite and the CLI alike.
pub fn cli_layout() -> Layout {
    Layout {
        section: None,
        sections: MEMBERS.iter().map(|m| m.section.to_owned()).collect(),
        top_level_keys: top_level_keys(),
        defaults: Vec::new(),
    }
}

/// Panics unless `C`'s settings beyond [`CommonArgs`] are exactly those its
/// member lists, so the suite's copy cannot drift from the service's `Config`
/// (each service's tests call this).
pub fn check_settings<C: crate::ServiceConfig>() {
    let common: std::collections::BTreeSet<String> = flags::<CommonArgs>().into_iter().collect();
    let declared: std::collections::BTreeSet<String> = C::command()
        .get_arguments()
        .map(|arg| arg.get_id().to_string())
        .filter(|id| !common.contains(id) && !matches!(id.as_str(), "help" | "version"))
        .collect();
    let listed: std::collections::BTreeSet<String> =
        C::MEMBER.settings.iter().map(|k| (*k).to_owned()).collect();
    assert_eq!(
        declared,
        listed,
        "{}'s settings differ from runplane_server::suite's list of them",
        C::MEMBER.name
    );
}

/// The settings (file keys) of an argument group.
fn flags<A: Args>() -> Vec<String> {
    A::augment_args(clap::Command::new("group"))
        .get_arguments()
        .map(|arg| arg.get_id().to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_but_the_per_service_ones_may_be_written_at_the_top() {
        let keys = top_level_keys();
        for key in [
            "prometheus_org_metrics",
            "run_timeout",
            "database_url",
            "request_timeout",
            "max_workflows_per_org",
            "org_service_addr",
            "log_format",
            "tls_cert",
            "upstream_tls_ca",
            "auth_failures_per_minute",
            "admin_token_file",
        ] {
            assert!(keys.iter().any(|k| k == key), "{key} at the top");
        }
        for key in ["listen_addr", "config", "help"] {
            assert!(!keys.iter().any(|k| k == key), "{key} is not");
        }
        assert_eq!(
            layout(&ORG_SERVICE).sections,
            [
                "org_service",
                "token_service",
                "workflow_run_service",
                "metrics_service",
                "ingest_service"
            ]
        );
    }
}
