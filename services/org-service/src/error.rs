//! org-service's errors, and the one place they become gRPC statuses.

use runplane_api::input::quoted;
use runplane_auth::AuthError;
use tonic::Status;

use runplane_api::org_name::InvalidName;

/// Everything that can go wrong in org-service.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("organization {} already exists", quoted(.0))]
    AlreadyExists(String),
    #[error("organization {} not found", quoted(.0))]
    NotFound(String),
    #[error("no organization has the id {}", quoted(.0))]
    IdNotFound(String),
    #[error(transparent)]
    InvalidPageToken(#[from] runplane_server::pagination::InvalidPageToken),
    #[error("database error")]
    Database(#[from] sea_orm::DbErr),
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match e {
            Error::Auth(e) => e.into(),
            Error::InvalidName(_) | Error::InvalidArgument(_) | Error::InvalidPageToken(_) => {
                Status::invalid_argument(e.to_string())
            }
            Error::AlreadyExists(_) => Status::already_exists(e.to_string()),
            Error::NotFound(_) | Error::IdNotFound(_) => Status::not_found(e.to_string()),
            Error::Database(e) => runplane_database::status(&e),
        }
    }
}
