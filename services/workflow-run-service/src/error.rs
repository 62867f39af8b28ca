//! workflow-run-service's errors, and the one place they become gRPC statuses.

use runplane_api::input::quoted;
use runplane_auth::AuthError;
use tonic::Status;

/// Everything that can go wrong in workflow-run-service.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{0}")]
    InvalidArgument(String),
    /// Also the answer for another organization's run: existence is not leaked.
    #[error("run {} not found", quoted(.0))]
    RunNotFound(String),
    #[error(
        "run {} already finished as {status}; a finished run's outcome cannot change",
        quoted(.run_id)
    )]
    AlreadyFinished {
        run_id: String,
        status: &'static str,
    },
    /// Internal: a remembered workflow was deleted meanwhile; the caller retries.
    #[error("workflow {0:?} was deleted")]
    WorkflowGone(String),
    #[error("workflow {}/{} not found", quoted(.project), quoted(.workflow))]
    WorkflowNotFound { project: String, workflow: String },
    #[error(
        "this organization has reached its limit of {limit} workflows: delete unused ones \
         (`runplane run delete-workflow`) or raise max_workflows_per_org"
    )]
    WorkflowLimit { limit: u64 },
    #[error(
        "this organization has reached its limit of {limit} deployment environments: \
         deploy to the environments it has"
    )]
    EnvironmentLimit { limit: u64 },
    #[error("environment {}/{} not found", quoted(.project), quoted(.environment))]
    EnvironmentNotFound {
        project: String,
        environment: String,
    },
    #[error(
        "request_id {} already recorded a {status} deployment of commit {}: a repeat must \
         say the same, another deployment needs another key",
        quoted(.request_id),
        quoted(.commit_sha)
    )]
    DeploymentKeyTaken {
        request_id: String,
        status: String,
        commit_sha: String,
    },
    #[error(transparent)]
    InvalidPageToken(#[from] runplane_server::pagination::InvalidPageToken),
    #[error(transparent)]
    CorruptRecord(#[from] crate::store::record::CorruptRecord),
    #[error("database error")]
    Database(#[from] sea_orm::DbErr),
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match e {
            Error::Auth(e) => e.into(),
            Error::InvalidArgument(_) | Error::InvalidPageToken(_) => {
                Status::invalid_argument(e.to_string())
            }
            Error::RunNotFound(_)
            | Error::WorkflowNotFound { .. }
            | Error::EnvironmentNotFound { .. } => Status::not_found(e.to_string()),
            // Retried by the handler; reaching a client means it kept happening.
            Error::WorkflowGone(_) => Status::aborted(e.to_string()),
            Error::AlreadyFinished { .. } | Error::DeploymentKeyTaken { .. } => {
                Status::failed_precondition(e.to_string())
            }
            Error::WorkflowLimit { .. } | Error::EnvironmentLimit { .. } => {
                Status::resource_exhausted(e.to_string())
            }
            Error::CorruptRecord(_) => {
                tracing::error!(error = %e, "internal error");
                Status::internal("internal error (logged on the server)")
            }
            Error::Database(e) => runplane_database::status(&e),
        }
    }
}
