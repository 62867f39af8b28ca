//! `runplane organization webhook …`: the secrets GitHub and GitLab send
//! their deliveries with, and the URLs to send them to.

use clap::{Subcommand, ValueEnum};
use runplane_api::time::from_timestamp;
use runplane_api::token::v1::token_service_client::TokenServiceClient;
use runplane_api::token::v1::{
    CreateWebhookRequest, ListWebhooksRequest, RevokeWebhookRequest, Webhook, WebhookProvider,
};
use runplane_auth::AdminCredential;
use runplane_client::with_bearer;
use serde::Serialize;

use crate::cli::Global;
use crate::exit::describe;
use crate::output::{format_time, print_json, time_of};

#[derive(Debug, Subcommand)]
pub(crate) enum WebhookCommand {
    /// Create a webhook: prints its secret (once) and the URL to give the CI system.
    Create {
        /// The organization whose runs the deliveries report.
        #[arg(long)]
        org: String,
        /// The CI system that sends the deliveries.
        #[arg(long, value_enum)]
        provider: Provider,
        /// Unique among the organization's live webhooks of the provider
        /// (default: the provider's name).
        #[arg(long)]
        name: Option<String>,
        /// ingest-service's public URL, as the CI system reaches it, e.g.
        /// `https://ci-hooks.example.com` (default: ingest-service's
        /// listen_addr in the config file, else http://127.0.0.1:8081).
        #[arg(long, env = "RUNPLANE_INGEST_URL", value_parser = parse_ingest_url)]
        ingest_url: Option<String>,
    },
    /// List an organization's webhooks (never their secrets).
    List {
        /// The organization whose webhooks to list.
        #[arg(long)]
        org: String,
        /// Include revoked webhooks.
        #[arg(long)]
        all: bool,
    },
    /// Revoke a webhook: deliveries with its secret are refused within ingest-service's
    /// webhook_secret_cache_ttl (5 s by default).
    Revoke {
        /// The organization it belongs to.
        #[arg(long)]
        org: String,
        /// The CI system it is for.
        #[arg(long, value_enum)]
        provider: Provider,
        /// Its name (default: the provider's name).
        #[arg(long)]
        name: Option<String>,
    },
}

/// A CI system that sends webhooks.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Provider {
    Github,
    Gitlab,
}

impl From<Provider> for WebhookProvider {
    fn from(p: Provider) -> Self {
        match p {
            Provider::Github => WebhookProvider::Github,
            Provider::Gitlab => WebhookProvider::Gitlab,
        }
    }
}

fn provider_name(provider: WebhookProvider) -> &'static str {
    match provider {
        WebhookProvider::Github => "github",
        WebhookProvider::Gitlab => "gitlab",
        WebhookProvider::Unspecified => "unknown",
    }
}

/// An ingest URL: http(s), with a host, and nothing a path can't follow.
fn parse_ingest_url(text: &str) -> Result<String, String> {
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"));
    let ok = rest.is_some_and(|r| {
        !r.is_empty()
            && !r.starts_with('/')
            && !r.contains(['?', '#'])
            && !r.chars().any(|c| c.is_whitespace() || c.is_control())
    });
    if ok {
        Ok(text.trim_end_matches('/').to_owned())
    } else {
        Err(format!(
            "{text:?} is not an ingest URL: give http(s)://HOST[:PORT][/PATH], as CI systems reach \
             ingest-service (no query or fragment)"
        ))
    }
}

/// ingest-service's URL when none is given: its listen address in the config
/// file, else its default.
fn default_ingest_url(global: &Global) -> anyhow::Result<String> {
    let member = runplane_server::suite::INGEST_SERVICE;
    let addr = match &global.config {
        Some(path) => crate::cli::section_setting(path, &member, "listen_addr")?,
        None => None,
    };
    Ok(format!(
        "http://{}",
        addr.as_deref().unwrap_or(member.default_addr)
    ))
}

/// Where a provider's deliveries for `org` go.
fn delivery_url(ingest_url: &str, provider: WebhookProvider, org: &str) -> String {
    format!(
        "{}/hooks/{}/{org}",
        ingest_url.trim_end_matches('/'),
        provider_name(provider)
    )
}

/// A webhook, for `--output json`.
#[derive(Serialize)]
struct WebhookJson {
    id: String,
    org: String,
    provider: &'static str,
    name: String,
    create_time: Option<String>,
    revoke_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

impl WebhookJson {
    fn new(w: &Webhook, url: Option<String>, secret: Option<String>) -> Self {
        WebhookJson {
            id: w.id.clone(),
            org: w.org_name.clone(),
            provider: provider_name(w.provider()),
            name: w.name.clone(),
            create_time: time_of(w.create_time.as_ref()),
            revoke_time: time_of(w.revoke_time.as_ref()),
            url,
            secret,
        }
    }
}

pub(crate) async fn run(
    global: &Global,
    admin: &AdminCredential,
    mut client: TokenServiceClient<runplane_client::Channel>,
    command: WebhookCommand,
) -> anyhow::Result<()> {
    let fail = |s: tonic::Status| describe(&s, "token-service", &global.token_service_addr);
    match command {
        WebhookCommand::Create {
            org,
            provider,
            name,
            ingest_url,
        } => {
            let provider = WebhookProvider::from(provider);
            let ingest_url = match ingest_url {
                Some(url) => url,
                None => default_ingest_url(global)?,
            };
            let response = client
                .create_webhook(with_bearer(
                    CreateWebhookRequest {
                        org_name: org.clone(),
                        provider: provider.into(),
                        name: name.unwrap_or_default(),
                    },
                    admin.secret(),
                ))
                .await
                .map_err(fail)?
                .into_inner();
            let webhook = response.webhook.unwrap_or_default();
            let url = delivery_url(&ingest_url, provider, &webhook.org_name);
            if global.json() {
                print_json(&WebhookJson::new(
                    &webhook,
                    Some(url),
                    Some(response.secret),
                ))?;
            } else if global.quiet {
                outln!("{}", response.secret);
            } else {
                outln!(
                    "Created {} webhook {:?} for organization {}.",
                    provider_name(provider),
                    webhook.name,
                    webhook.org_name
                );
                match provider {
                    WebhookProvider::Gitlab => {
                        outln!("In GitLab: Settings → Webhooks → Add new webhook:");
                        outln!("  URL:           {url}");
                        outln!("  Secret token:  the secret below");
                        outln!("  Trigger:       Pipeline events, Job events");
                    }
                    _ => {
                        outln!("In GitHub: Settings → Webhooks → Add webhook:");
                        outln!("  Payload URL:   {url}");
                        outln!("  Content type:  application/json");
                        outln!("  Secret:        the secret below");
                        outln!("  Events:        Workflow runs, Workflow jobs");
                    }
                }
                outln!("Copy the secret now: it is shown once and cannot be recovered.\n");
                outln!("{}", response.secret);
            }
        }
        WebhookCommand::List { org, all } => {
            let webhooks = client
                .list_webhooks(with_bearer(
                    ListWebhooksRequest {
                        org_name: org,
                        include_revoked: all,
                    },
                    admin.secret(),
                ))
                .await
                .map_err(fail)?
                .into_inner()
                .webhooks;
            if global.json() {
                let all: Vec<_> = webhooks
                    .iter()
                    .map(|w| WebhookJson::new(w, None, None))
                    .collect();
                print_json(&all)?;
            } else if global.quiet {
                webhooks.iter().for_each(|w| outln!("{}", w.name));
            } else {
                outln!(
                    "{:<8} {:<24} {:<22} {:<8} ID",
                    "PROVIDER",
                    "NAME",
                    "CREATED",
                    "STATE"
                );
                for w in webhooks {
                    let state = if w.revoke_time.is_some() {
                        "revoked"
                    } else {
                        "live"
                    };
                    outln!(
                        "{:<8} {:<24} {:<22} {:<8} {}",
                        provider_name(w.provider()),
                        w.name,
                        format_time(w.create_time.as_ref().map(from_timestamp)),
                        state,
                        w.id
                    );
                }
            }
        }
        WebhookCommand::Revoke {
            org,
            provider,
            name,
        } => {
            let provider = WebhookProvider::from(provider);
            let revoked = client
                .revoke_webhook(with_bearer(
                    RevokeWebhookRequest {
                        org_name: org.clone(),
                        provider: provider.into(),
                        name: name.unwrap_or_default(),
                    },
                    admin.secret(),
                ))
                .await
                .map_err(fail)?
                .into_inner()
                .webhook
                .unwrap_or_default();
            if global.json() {
                print_json(&WebhookJson::new(&revoked, None, None))?;
            } else if !global.quiet {
                outln!(
                    "Revoked {} webhook {:?} of organization {org}.",
                    provider_name(provider),
                    revoked.name
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_urls_are_bases_a_path_can_follow() {
        assert_eq!(
            parse_ingest_url("https://ci-hooks.example.com/").as_deref(),
            Ok("https://ci-hooks.example.com")
        );
        assert!(parse_ingest_url("http://10.0.0.1:8081/runplane").is_ok());
        for bad in [
            "not a url",
            "ftp://x",
            "https://",
            "https://h/?x=1",
            "https://h#f",
            "https:///x",
        ] {
            assert!(parse_ingest_url(bad).is_err(), "{bad}");
        }
    }
}
