//! The suite: its member services, as `runplane up`, the shared config file
//! and the services' own defaults name them.
//!
//! A member's settings are its own (its `Config` in its crate). What the suite
//! says here is only what its members must agree on: who is a member, what
//! each is called, where it listens by default, and which settings may be
//! written once at the top of the shared file ([`layout`]).

use clap::Args;
use runplane_config::Layout;

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
    /// Its own settings that may also be written at the top of the file.
    pub top_level_keys: &'static [&'static str],
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
    // At the top, as in Chainloop's values.yaml.
    top_level_keys: &["prometheus_org_metrics"],
};

pub const TOKEN_SERVICE: Member = Member {
    name: "token-service",
    section: "token_service",
    default_addr: "127.0.0.1:50052",
    protocol: Protocol::Grpc,
    sqlite_file: Some("token.db"),
    top_level_keys: &[],
};

pub const WORKFLOW_RUN_SERVICE: Member = Member {
    name: "workflow-run-service",
    section: "workflow_run_service",
    default_addr: "127.0.0.1:50053",
    protocol: Protocol::Grpc,
    sqlite_file: Some("workflow-run.db"),
    top_level_keys: &[],
};

pub const METRICS_SERVICE: Member = Member {
    name: "metrics-service",
    section: "metrics_service",
    default_addr: "127.0.0.1:8080",
    protocol: Protocol::Http,
    sqlite_file: None,
    top_level_keys: &[],
};

/// Every member, in the order `runplane up` starts them.
pub const MEMBERS: [Member; 4] = [
    ORG_SERVICE,
    TOKEN_SERVICE,
    WORKFLOW_RUN_SERVICE,
    METRICS_SERVICE,
];

/// The shared file as `member` reads it. Settings shared by the suite, and so
/// allowed at the top: those of the groups every service that has them takes
/// the same way (logging, the admin credential, failure limits, TLS, calls to
/// peers), the peers' addresses, and the members' own top-level keys. The
/// defaults that are the suite's to give: where the member listens, its
/// database file, and where its peers listen.
pub fn layout(member: &Member) -> Layout {
    let groups = [
        flags::<runplane_telemetry::LogArgs>(),
        flags::<runplane_auth::AdminArgs>(),
        flags::<runplane_auth::AuthFailureArgs>(),
        flags::<runplane_tls::ServerTlsArgs>(),
        flags::<runplane_client::UpstreamArgs>(),
    ];
    let mut shared_keys: Vec<String> = groups.into_iter().flatten().collect();
    shared_keys.extend(MEMBERS.iter().filter_map(Member::address_key));
    shared_keys.extend(
        MEMBERS
            .iter()
            .flat_map(|m| m.top_level_keys.iter().map(|k| (*k).to_owned())),
    );
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
        section: member.section.to_owned(),
        sections: MEMBERS.iter().map(|m| m.section.to_owned()).collect(),
        shared_keys,
        defaults,
    }
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
    fn the_shared_keys_are_the_groups_settings_the_addresses_and_the_orgs() {
        let mut keys = layout(&METRICS_SERVICE).shared_keys;
        keys.sort();
        let mut expected = vec![
            "prometheus_org_metrics",
            "admin_token_file",
            "log",
            "log_format",
            "org_service_addr",
            "token_service_addr",
            "workflow_run_service_addr",
            "upstream_timeout",
            "auth_failures_per_minute",
            "tls_cert",
            "tls_key",
            "tls_client_ca",
            "upstream_tls_ca",
            "upstream_tls_cert",
            "upstream_tls_key",
        ];
        expected.sort_unstable();
        assert_eq!(keys, expected);
        assert_eq!(
            layout(&ORG_SERVICE).sections,
            [
                "org_service",
                "token_service",
                "workflow_run_service",
                "metrics_service"
            ]
        );
    }
}
