//! `runplane organization …`: organizations and their API tokens.

use std::time::Duration;

use clap::Subcommand;
use runplane_api::org::v1::organization_service_client::OrganizationServiceClient;
use runplane_api::org::v1::{
    CreateOrganizationRequest, DeleteOrganizationRequest, GetOrganizationRequest,
    ListOrganizationsRequest, Organization, get_organization_request::Lookup,
};
use runplane_api::time::{from_timestamp, now_ms, timestamp};
use runplane_api::token::v1::token_service_client::TokenServiceClient;
use runplane_api::token::v1::{
    CreateTokenRequest, ListTokensRequest, RevokeTokenRequest, Scope, Token,
};
use runplane_auth::{AdminArgs, AdminCredential};
use runplane_client::{UpstreamArgs, channel, with_bearer};
use runplane_config::parse_duration;

use crate::cli::Global;
use crate::exit::describe;
use crate::output::{OrganizationJson, TokenJson, format_time, print_json, token_state};

#[derive(Debug, Subcommand)]
pub(crate) enum OrganizationCommand {
    /// Create an organization.
    Create {
        /// Lowercase DNS-1123 label, e.g. `cyberdyne`.
        #[arg(long)]
        name: String,
    },
    /// List organizations, and whether their Prometheus metrics are served.
    List,
    /// Show one organization.
    Get {
        /// The organization's name.
        #[arg(long)]
        name: String,
    },
    /// Delete an organization; its tokens stop working.
    Delete {
        /// The organization's name.
        #[arg(long)]
        name: String,
    },
    /// Manage an organization's API tokens.
    #[command(subcommand)]
    ApiToken(TokenCommand),
    /// Manage the webhooks GitHub and GitLab report runs through.
    #[command(subcommand)]
    Webhook(crate::webhook::WebhookCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Create a token; its secret is printed once and never again.
    Create {
        /// Unique among the organization's live tokens.
        #[arg(long)]
        name: String,
        /// The organization the token acts for.
        #[arg(long)]
        org: String,
        /// `runs:write`, `metrics:read` and/or `workflows:delete` (repeat or
        /// comma-separate; default: runs:write and metrics:read).
        #[arg(long = "scope", value_delimiter = ',', value_parser = scope_arg)]
        scopes: Vec<Scope>,
        /// Limit the token to this project (repeat for several; default: every
        /// project). Calls about another project are PERMISSION_DENIED.
        #[arg(long = "project")]
        projects: Vec<String>,
        /// Lifetime, e.g. `30d`, `12h` (default: never expires).
        #[arg(long, value_parser = parse_duration)]
        expires_in: Option<Duration>,
        /// Free text, e.g. who uses it.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List an organization's tokens (never their secrets), with when each was last used.
    List {
        /// The organization whose tokens to list.
        #[arg(long)]
        org: String,
        /// Include revoked and expired tokens.
        #[arg(long)]
        all: bool,
    },
    /// Revoke a token by name; it fails from the next call on.
    Revoke {
        /// The token's name.
        #[arg(long)]
        name: String,
        /// The organization it belongs to.
        #[arg(long)]
        org: String,
    },
}

fn scope_arg(text: &str) -> Result<Scope, String> {
    Scope::from_label(text).ok_or_else(|| {
        format!("unknown scope {text:?}: use runs:write, metrics:read or workflows:delete")
    })
}

/// Runs an organization command with the admin credential.
pub(crate) async fn run(global: &Global, command: OrganizationCommand) -> anyhow::Result<()> {
    let admin = AdminCredential::load(&AdminArgs {
        admin_token_file: global
            .admin_token_file
            .clone()
            .unwrap_or_else(|| global.data_dir.join("admin-token")),
    })?;
    let upstream = UpstreamArgs {
        upstream_timeout: global.call_timeout,
        tls: global.tls.clone(),
    };
    let token_client = || -> anyhow::Result<_> {
        Ok(TokenServiceClient::new(channel(
            &global.token_service_addr,
            &upstream,
        )?))
    };
    let command = match command {
        OrganizationCommand::ApiToken(command) => {
            return tokens(global, &admin, token_client()?, command).await;
        }
        OrganizationCommand::Webhook(command) => {
            return crate::webhook::run(global, &admin, token_client()?, command).await;
        }
        other => other,
    };
    let mut client = OrganizationServiceClient::new(channel(&global.org_service_addr, &upstream)?);
    let fail = |s: tonic::Status| describe(&s, "org-service", &global.org_service_addr);
    match command {
        OrganizationCommand::Create { name } => {
            let org = client
                .create_organization(with_bearer(
                    CreateOrganizationRequest { name },
                    admin.secret(),
                ))
                .await
                .map_err(fail)?
                .into_inner()
                .organization
                .unwrap_or_default();
            if global.json() {
                print_json(&OrganizationJson::from(&org))?;
            } else if global.quiet {
                outln!("{}", org.id);
            } else {
                outln!("Created organization {} (id {}).", org.name, org.id);
                if !org.prometheus_metrics_enabled {
                    outln!(
                        "Its Prometheus metrics are off: add `- org_name: {}` under prometheus_org_metrics in the config to serve them.",
                        org.name
                    );
                }
            }
        }
        OrganizationCommand::List => {
            let mut page_token = String::new();
            let mut rows = Vec::new();
            loop {
                let page = client
                    .list_organizations(with_bearer(
                        ListOrganizationsRequest {
                            page_size: 1000,
                            page_token,
                        },
                        admin.secret(),
                    ))
                    .await
                    .map_err(fail)?
                    .into_inner();
                rows.extend(page.organizations);
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            print_organizations(global, &rows)?;
        }
        OrganizationCommand::Get { name } => {
            let org = client
                .get_organization(with_bearer(
                    GetOrganizationRequest {
                        lookup: Some(Lookup::Name(name)),
                    },
                    admin.secret(),
                ))
                .await
                .map_err(fail)?
                .into_inner()
                .organization
                .unwrap_or_default();
            if global.json() {
                print_json(&OrganizationJson::from(&org))?;
            } else {
                print_organizations(global, std::slice::from_ref(&org))?;
            }
        }
        OrganizationCommand::Delete { name } => {
            client
                .delete_organization(with_bearer(
                    DeleteOrganizationRequest { name: name.clone() },
                    admin.secret(),
                ))
                .await
                .map_err(fail)?;
            if global.json() {
                print_json(&serde_json::json!({ "deleted_organization": name }))?;
            } else if !global.quiet {
                outln!("Deleted organization {name}.");
            }
        }
        // Handled above, before connecting to org-service.
        OrganizationCommand::ApiToken(_) | OrganizationCommand::Webhook(_) => {}
    }
    Ok(())
}

fn print_organizations(global: &Global, orgs: &[Organization]) -> anyhow::Result<()> {
    if global.json() {
        return print_json(&orgs.iter().map(OrganizationJson::from).collect::<Vec<_>>());
    }
    if global.quiet {
        orgs.iter().for_each(|o| outln!("{}", o.name));
        return Ok(());
    }
    outln!("{:<30} {:<8} {:<22} ID", "NAME", "METRICS", "CREATED");
    for o in orgs {
        let metrics = if o.prometheus_metrics_enabled {
            "on"
        } else {
            "off"
        };
        outln!(
            "{:<30} {:<8} {:<22} {}",
            o.name,
            metrics,
            format_time(o.create_time.as_ref().map(from_timestamp)),
            o.id
        );
    }
    Ok(())
}

async fn tokens(
    global: &Global,
    admin: &AdminCredential,
    mut client: TokenServiceClient<runplane_client::Channel>,
    command: TokenCommand,
) -> anyhow::Result<()> {
    let fail = |s: tonic::Status| describe(&s, "token-service", &global.token_service_addr);
    match command {
        TokenCommand::Create {
            name,
            org,
            scopes,
            expires_in,
            description,
            projects,
        } => {
            let expire_time = expires_in
                .map(|d| timestamp(now_ms().saturating_add(runplane_api::time::duration_ms(d))));
            let response = client
                .create_token(with_bearer(
                    CreateTokenRequest {
                        org_name: org,
                        name,
                        description,
                        scopes: scopes.into_iter().map(i32::from).collect(),
                        expire_time,
                        projects,
                    },
                    admin.secret(),
                ))
                .await
                .map_err(fail)?
                .into_inner();
            if global.json() {
                let token = response.token.unwrap_or_default();
                print_json(&TokenJson::new(&token, Some(response.secret)))?;
            } else if global.quiet {
                outln!("{}", response.secret);
            } else {
                let token = response.token.unwrap_or_default();
                outln!(
                    "Created token {:?} for organization {} (scopes: {}; projects: {}; expires: {}).",
                    token.name,
                    token.org_name,
                    scopes_text(&token),
                    projects_text(&token),
                    match &token.expire_time {
                        Some(at) => format_time(Some(from_timestamp(at))),
                        None => "never".to_owned(),
                    },
                );
                outln!("Copy it now: it is shown once and cannot be recovered.\n");
                outln!("{}", response.secret);
            }
        }
        TokenCommand::List { org, all } => {
            let tokens = client
                .list_tokens(with_bearer(
                    ListTokensRequest {
                        org_name: org,
                        include_inactive: all,
                    },
                    admin.secret(),
                ))
                .await
                .map_err(fail)?
                .into_inner()
                .tokens;
            if global.json() {
                print_json(
                    &tokens
                        .iter()
                        .map(|t| TokenJson::new(t, None))
                        .collect::<Vec<_>>(),
                )?;
            } else if global.quiet {
                tokens.iter().for_each(|t| outln!("{}", t.name));
            } else {
                outln!(
                    "{:<24} {:<26} {:<22} {:<22} {:<22} {:<8} PROJECTS",
                    "NAME",
                    "SCOPES",
                    "CREATED",
                    "EXPIRES",
                    "LAST USED",
                    "STATE"
                );
                for t in tokens {
                    outln!(
                        "{:<24} {:<26} {:<22} {:<22} {:<22} {:<8} {}",
                        t.name,
                        scopes_text(&t),
                        format_time(t.create_time.as_ref().map(from_timestamp)),
                        format_time(t.expire_time.as_ref().map(from_timestamp)),
                        format_time(t.last_used_time.as_ref().map(from_timestamp)),
                        token_state(&t),
                        projects_text(&t)
                    );
                }
            }
        }
        TokenCommand::Revoke { name, org } => {
            let revoked = client
                .revoke_token(with_bearer(
                    RevokeTokenRequest {
                        org_name: org.clone(),
                        name: name.clone(),
                    },
                    admin.secret(),
                ))
                .await
                .map_err(fail)?
                .into_inner()
                .token
                .unwrap_or_default();
            if global.json() {
                print_json(&TokenJson::new(&revoked, None))?;
            } else if !global.quiet {
                outln!("Revoked token {name:?} of organization {org}.");
            }
        }
    }
    Ok(())
}

fn projects_text(token: &Token) -> String {
    if token.projects.is_empty() {
        "all".to_owned()
    } else {
        token.projects.join(",")
    }
}

fn scopes_text(token: &Token) -> String {
    token
        .scopes()
        .map(Scope::label)
        .collect::<Vec<_>>()
        .join(",")
}
