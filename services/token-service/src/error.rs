//! token-service's errors, and the one place they become gRPC statuses.

use runplane_api::input::quoted;
use runplane_auth::AuthError;
use tonic::Status;

/// Everything that can go wrong in token-service.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("organization {} not found", quoted(.0))]
    OrgNotFound(String),
    #[error("organization {} has no live token named {}", quoted(.org), quoted(.name))]
    TokenNotFound { org: String, name: String },
    #[error(
        "organization {} already has a live token named {}; revoke it or pick another name",
        quoted(.org),
        quoted(.name)
    )]
    AlreadyExists { org: String, name: String },
    #[error(
        "organization {} has no live {provider} webhook named {}",
        quoted(.org),
        quoted(.name)
    )]
    WebhookNotFound {
        org: String,
        provider: String,
        name: String,
    },
    #[error(
        "organization {} already has a live {provider} webhook named {}; revoke it or pick another name (--name)",
        quoted(.org),
        quoted(.name)
    )]
    WebhookExists {
        org: String,
        provider: String,
        name: String,
    },
    /// A caller of Authenticate presented a credential that is not the suite's:
    /// a misconfigured service, not a client's wrong token.
    #[error(
        "the calling service's admin credential is wrong: give it the suite's \
         (RUNPLANE_ADMIN_TOKEN or --admin-token-file)"
    )]
    WrongServiceCredential,
    /// Authenticate is for runplane's services, which present the admin credential.
    #[error(
        "Authenticate answers runplane's services only: present the suite's admin credential \
         (authorization: Bearer <admin credential>)"
    )]
    ServiceCredentialMissing,
    #[error("org-service is unavailable: {0}")]
    OrgServiceUnavailable(String),
    #[error("org-service answered unexpectedly: {0}")]
    OrgService(String),
    #[error(transparent)]
    Random(#[from] runplane_auth::secret::RandomUnavailable),
    #[error("database error")]
    Database(#[from] sea_orm::DbErr),
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match e {
            Error::Auth(e) => e.into(),
            Error::InvalidArgument(_) => Status::invalid_argument(e.to_string()),
            Error::OrgNotFound(_) | Error::TokenNotFound { .. } | Error::WebhookNotFound { .. } => {
                Status::not_found(e.to_string())
            }
            Error::AlreadyExists { .. } | Error::WebhookExists { .. } => {
                Status::already_exists(e.to_string())
            }
            Error::WrongServiceCredential => Status::permission_denied(e.to_string()),
            Error::ServiceCredentialMissing => Status::unauthenticated(e.to_string()),
            Error::OrgServiceUnavailable(_) => Status::unavailable(e.to_string()),
            Error::OrgService(_) | Error::Random(_) => {
                tracing::error!(error = %e, "internal error");
                Status::internal("internal error (logged on the server)")
            }
            Error::Database(e) => runplane_database::status(&e),
        }
    }
}
