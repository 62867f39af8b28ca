//! The suite's admin credential: it manages organizations and tokens, and the
//! services present it to each other.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::failures::FailureLimiter;
use crate::secret::{self, SecretHash, SecretKind};
use crate::{AuthError, bearer, client_ip};

/// Environment variable that holds the admin credential itself; wins over the file.
pub const ADMIN_TOKEN_ENV: &str = "RUNPLANE_ADMIN_TOKEN";

/// Where a service finds the admin credential.
#[derive(Debug, Clone, clap::Args)]
pub struct AdminArgs {
    /// File holding the admin credential (`runplane up` writes it on first start).
    /// RUNPLANE_ADMIN_TOKEN, when set, holds the credential itself and wins.
    #[arg(
        long,
        env = "RUNPLANE_ADMIN_TOKEN_FILE",
        default_value = ".runplane/admin-token"
    )]
    pub admin_token_file: PathBuf,
}

/// The admin credential could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AdminCredentialError {
    #[error(
        "cannot read the admin credential from {path}: {cause} \
         (set RUNPLANE_ADMIN_TOKEN, or --admin-token-file, or start the suite with `runplane up`)"
    )]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "the admin credential in {origin} is malformed ({reason}): use one minted by `runplane up` \
         (rpa_…) or a random secret of at least 32 visible ASCII characters"
    )]
    Malformed {
        origin: String,
        reason: secret::MalformedSecret,
    },
}

/// The suite's admin credential. Callers are checked against its hash; the
/// secret itself is kept only to call peers that require it.
pub struct AdminCredential {
    secret: String,
    hash: SecretHash,
    failures: Arc<FailureLimiter>,
}

impl std::fmt::Debug for AdminCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminCredential(..)")
    }
}

impl AdminCredential {
    /// Loads the credential from RUNPLANE_ADMIN_TOKEN or the configured file.
    pub fn load(args: &AdminArgs) -> Result<Self, AdminCredentialError> {
        match std::env::var(ADMIN_TOKEN_ENV) {
            Ok(value) if !value.trim().is_empty() => {
                Self::from_secret(value.trim(), ADMIN_TOKEN_ENV)
            }
            _ => Self::from_file(&args.admin_token_file),
        }
    }

    /// Loads the credential from a file (surrounding white space ignored).
    pub fn from_file(path: &Path) -> Result<Self, AdminCredentialError> {
        let text = std::fs::read_to_string(path).map_err(|cause| AdminCredentialError::Read {
            path: path.to_owned(),
            cause,
        })?;
        Self::from_secret(text.trim(), &path.display().to_string())
    }

    /// Accepts a minted `rpa_…` credential, or one from an operator's own
    /// secret store (a Helm-generated Secret, say): at least 32 visible ASCII
    /// characters. An organization token (`rpt_…`) is never an admin credential.
    fn from_secret(secret: &str, origin: &str) -> Result<Self, AdminCredentialError> {
        let minted = secret::parse(SecretKind::Admin, secret);
        let operator_provided = secret.len() >= 32
            && secret.bytes().all(|b| b.is_ascii_graphic())
            && !secret.starts_with("rpt_")
            && !secret.starts_with("rpa_");
        if let Err(reason) = minted
            && !operator_provided
        {
            return Err(AdminCredentialError::Malformed {
                origin: origin.to_owned(),
                reason,
            });
        }
        Ok(AdminCredential {
            secret: secret.to_owned(),
            hash: SecretHash::of(secret),
            failures: Arc::new(FailureLimiter::off()),
        })
    }

    /// Limits wrong credentials, each by its own failures (see [`crate::failures`]).
    pub fn with_failure_limit(mut self, failures: Arc<FailureLimiter>) -> Self {
        self.failures = failures;
        self
    }

    /// Allows the call only if it carries the admin credential.
    pub fn check<T>(&self, request: &tonic::Request<T>) -> Result<(), AuthError> {
        let presented = SecretHash::of(bearer(request)?);
        self.failures.check(&presented)?;
        if presented.matches(&self.hash) {
            Ok(())
        } else {
            self.failures
                .record_failure(&presented, client_ip(request))?;
            Err(AuthError::Invalid)
        }
    }

    /// Whether `presented` is this credential (in constant time).
    pub fn is(&self, presented: &str) -> bool {
        SecretHash::of(presented).matches(&self.hash)
    }

    /// Key material for secrets derived from this credential (webhook
    /// secrets, when no key of their own is configured).
    pub fn key_material(&self) -> &[u8] {
        self.secret.as_bytes()
    }

    /// The secret, for calls to peers that require the admin credential.
    pub fn secret(&self) -> &str {
        &self.secret
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_admin_credential_is_limited_and_the_right_one_never_is() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("admin-token");
        let secret = secret::generate(SecretKind::Admin).expect("rng");
        std::fs::write(&path, &secret).expect("write");
        let admin = AdminCredential::from_file(&path)
            .expect("load")
            .with_failure_limit(Arc::new(FailureLimiter::new(2)));
        let from = |credential: &str| {
            let mut request = runplane_client::with_bearer((), credential);
            let addr = std::net::SocketAddr::from(([192, 0, 2, 1], 40000));
            request
                .extensions_mut()
                .insert(tonic::transport::server::TcpConnectInfo {
                    local_addr: None,
                    remote_addr: Some(addr),
                });
            request
        };
        for _ in 0..2 {
            assert!(matches!(
                admin.check(&from("rpa_nope")),
                Err(AuthError::Invalid)
            ));
        }
        // Spent: refused before it is checked.
        assert!(matches!(
            admin.check(&from("rpa_nope")),
            Err(AuthError::TooManyFailures(_))
        ));
        // The right credential, from the same address, is never refused.
        assert!(admin.check(&from(&secret)).is_ok());
    }

    #[test]
    fn admin_credential_checks_requests() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("admin-token");
        let secret = secret::generate(SecretKind::Admin).expect("rng");
        std::fs::write(&path, format!("{secret}\n")).expect("write");
        let admin = AdminCredential::from_file(&path).expect("load");

        let ok = runplane_client::with_bearer((), &secret);
        assert!(admin.check(&ok).is_ok());
        let wrong = runplane_client::with_bearer((), "rpa_nope");
        assert!(matches!(admin.check(&wrong), Err(AuthError::Invalid)));
        assert!(matches!(
            admin.check(&tonic::Request::new(())),
            Err(AuthError::Missing)
        ));

        // An operator's own strong secret is accepted; short ones and tenant tokens are not.
        std::fs::write(&path, "Zx8q1hV4oWc9TbPp2LrN6sKe3YfAjG7m").expect("write");
        assert!(AdminCredential::from_file(&path).is_ok());
        let tenant = secret::generate(SecretKind::ApiToken).expect("rng");
        for bad in [
            "short-secret",
            tenant.as_str(),
            "rpa_broken-checksum-but-long-enough-to-pass",
        ] {
            std::fs::write(&path, bad).expect("write");
            assert!(AdminCredential::from_file(&path).is_err(), "{bad}");
        }
        assert!(AdminCredential::from_file(&dir.path().join("missing")).is_err());
    }
}
