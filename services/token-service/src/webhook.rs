//! Webhooks as token-service keeps them: a provider, a name, and a secret
//! derived from the webhook's id (never stored; see `runplane_auth::webhook`).

use runplane_api::time::timestamp;
use runplane_api::token::v1::{Webhook, WebhookProvider};
use runplane_auth::webhook::WebhookKey;

use crate::entity::webhook;
use crate::error::Error;

/// Most live webhooks an organization may have per provider: a delivery is
/// checked against each, so their number bounds a delivery's cost.
pub(crate) const MAX_LIVE_PER_PROVIDER: usize = 10;

/// A provider as stored and printed.
pub(crate) fn provider_label(provider: WebhookProvider) -> &'static str {
    match provider {
        WebhookProvider::Github => "github",
        WebhookProvider::Gitlab => "gitlab",
        WebhookProvider::Unspecified => "unspecified",
    }
}

/// The provider a request names: GitHub or GitLab.
pub(crate) fn requested_provider(raw: i32) -> Result<WebhookProvider, Error> {
    match WebhookProvider::try_from(raw) {
        Ok(provider @ (WebhookProvider::Github | WebhookProvider::Gitlab)) => Ok(provider),
        _ => Err(Error::InvalidArgument(
            "provider must be GITHUB or GITLAB".into(),
        )),
    }
}

/// A webhook's name: the one asked for, else the provider's.
pub(crate) fn name_or_default(name: &str, provider: WebhookProvider) -> Result<String, Error> {
    if name.is_empty() {
        return Ok(provider_label(provider).to_owned());
    }
    crate::token::validate_name(name).map_err(|_| {
        Error::InvalidArgument(format!(
            "invalid webhook name {}: use 1 to 63 characters of letters, digits, '-', '_' and '.'",
            runplane_api::input::quoted(name)
        ))
    })?;
    Ok(name.to_owned())
}

/// Where webhook secrets come from: the configured key file, else the suite's
/// admin credential.
pub(crate) fn key(
    key_file: Option<&std::path::Path>,
    admin: &runplane_auth::AdminCredential,
) -> anyhow::Result<WebhookKey> {
    let Some(path) = key_file else {
        return Ok(WebhookKey::from_material(admin.key_material()));
    };
    let material = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("cannot read the webhook key {}: {e}", path.display()))?;
    let material = material.trim_ascii();
    if material.len() < 32 {
        anyhow::bail!(
            "the webhook key {} is too short: give at least 32 random bytes (e.g. `openssl rand -base64 48`)",
            path.display()
        );
    }
    Ok(WebhookKey::from_material(material))
}

pub(crate) fn to_proto(model: webhook::Model) -> Webhook {
    let provider = match model.provider.as_str() {
        "github" => WebhookProvider::Github,
        "gitlab" => WebhookProvider::Gitlab,
        _ => WebhookProvider::Unspecified,
    };
    Webhook {
        id: model.id,
        org_id: model.org_id,
        org_name: model.org_name,
        provider: provider.into(),
        name: model.name,
        create_time: Some(timestamp(model.created_at_ms)),
        revoke_time: model.revoked_at_ms.map(timestamp),
    }
}
