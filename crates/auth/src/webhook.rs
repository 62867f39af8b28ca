//! Webhook secrets: how token-service derives them, and how a delivery is
//! checked against them (GitHub's HMAC signature, GitLab's token).
//!
//! A webhook's secret is never stored: it is `rpw_` and the base64url
//! HMAC-SHA256 of the webhook's id under the suite's webhook key. GitHub's
//! signature is an HMAC of the body *under the secret itself*, so a hash of
//! the secret (what API tokens keep) could not check it; deriving the secret
//! keeps the database free of it all the same. docs/architecture.md says why
//! this rather than encrypting secrets at rest.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Prefix of every webhook secret, so that scanners and people can tell one.
pub const SECRET_PREFIX: &str = "rpw_";

/// The key webhook secrets are derived from.
pub struct WebhookKey([u8; 32]);

impl std::fmt::Debug for WebhookKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookKey(..)")
    }
}

impl WebhookKey {
    /// A key from key material (a configured key file's bytes, or the admin
    /// credential): its HMAC under a fixed label, so that the material itself
    /// is never used directly as a key for anything else.
    pub fn from_material(material: &[u8]) -> Self {
        WebhookKey(hmac_sha256(material, b"runplane webhook key v1"))
    }

    /// The secret of webhook `webhook_id`.
    pub fn secret_for(&self, webhook_id: &str) -> String {
        let mac = hmac_sha256(&self.0, webhook_id.as_bytes());
        format!("{SECRET_PREFIX}{}", URL_SAFE_NO_PAD.encode(mac))
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// GitHub's `X-Hub-Signature-256` header value for `body` signed with
/// `secret` (`sha256=<hex>`), as a sender computes it.
pub fn github_signature(secret: &str, body: &[u8]) -> String {
    let mac = hmac_sha256(secret.as_bytes(), body);
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Whether GitHub's `X-Hub-Signature-256` header (`sha256=<hex>`) is the
/// HMAC-SHA256 of `body` under `secret`, compared in constant time.
pub fn github_signature_matches(secret: &str, body: &[u8], header: &str) -> bool {
    let Some(hex) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Some(presented) = decode_hex(hex) else {
        return false;
    };
    let expected = hmac_sha256(secret.as_bytes(), body);
    presented.len() == expected.len() && bool::from(presented.ct_eq(&expected))
}

/// Whether GitLab's `X-Gitlab-Token` header is `secret`, compared in
/// constant time (over their digests, so that the length leaks nothing).
pub fn gitlab_token_matches(secret: &str, header: &str) -> bool {
    let expected = hmac_sha256(b"gitlab token", secret.as_bytes());
    let presented = hmac_sha256(b"gitlab token", header.trim().as_bytes());
    bool::from(presented.ct_eq(&expected))
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() != 64 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(hex.get(at..at + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_derived_per_webhook_and_per_key() {
        let key = WebhookKey::from_material(b"material");
        let a = key.secret_for("webhook-a");
        assert!(
            a.starts_with(SECRET_PREFIX) && a.len() == SECRET_PREFIX.len() + 43,
            "{a}"
        );
        assert_eq!(a, key.secret_for("webhook-a"), "stable");
        assert_ne!(a, key.secret_for("webhook-b"));
        assert_ne!(
            a,
            WebhookKey::from_material(b"other").secret_for("webhook-a")
        );
    }

    #[test]
    fn githubs_documented_example_signature_is_checked() {
        // GitHub's docs: secret "It's a Secret to Everybody", payload "Hello, World!".
        let header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let secret = "It's a Secret to Everybody";
        assert!(github_signature_matches(secret, b"Hello, World!", header));
        assert!(!github_signature_matches(secret, b"Hello, World?", header));
        assert!(!github_signature_matches(
            "another secret",
            b"Hello, World!",
            header
        ));
        for bad in ["", "sha256=", "sha1=757107ea", &header[..70], "sha256=zz"] {
            assert!(
                !github_signature_matches(secret, b"Hello, World!", bad),
                "{bad}"
            );
        }
        assert_eq!(github_signature(secret, b"Hello, World!"), header);
        let upper = header.to_uppercase().replace("SHA256=", "sha256=");
        assert!(github_signature_matches(secret, b"Hello, World!", &upper));
    }

    #[test]
    fn gitlab_tokens_are_compared_whole() {
        assert!(gitlab_token_matches("rpw_abc", "rpw_abc"));
        assert!(!gitlab_token_matches("rpw_abc", "rpw_ab"));
        assert!(!gitlab_token_matches("rpw_abc", ""));
    }
}
