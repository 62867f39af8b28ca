//! How runplane spells its API's enums in storage, metric labels and text, as
//! methods of the generated types, so that the stored value, the
//! `status`/`runner` label and what the CLI prints never drift apart.

use crate::token::v1::Scope;
use crate::workflowrun::v1::{DeploymentKind, DeploymentStatus, RunStatus, RunnerType};

impl RunStatus {
    /// `initialized`, `success`, `error`, `expired`, `canceled` (`unspecified`).
    pub fn label(self) -> &'static str {
        match self {
            RunStatus::Initialized => "initialized",
            RunStatus::Success => "success",
            RunStatus::Error => "error",
            RunStatus::Expired => "expired",
            RunStatus::Canceled => "canceled",
            RunStatus::Unspecified => "unspecified",
        }
    }

    /// A status read back from [`RunStatus::label`]; anything unknown is UNSPECIFIED.
    pub fn from_label(text: &str) -> Self {
        match text {
            "initialized" => RunStatus::Initialized,
            "success" => RunStatus::Success,
            "error" => RunStatus::Error,
            "expired" => RunStatus::Expired,
            "canceled" => RunStatus::Canceled,
            _ => RunStatus::Unspecified,
        }
    }
}

impl RunnerType {
    /// Chainloop's name of the runner (`GITHUB_ACTION`, …), `UNSPECIFIED` when unknown.
    pub fn label(self) -> &'static str {
        let name = self.as_str_name();
        name.strip_prefix("RUNNER_TYPE_").unwrap_or(name)
    }

    /// A runner read back from [`RunnerType::label`]; anything unknown is UNSPECIFIED.
    pub fn from_label(text: &str) -> Self {
        RunnerType::from_str_name(&format!("RUNNER_TYPE_{text}")).unwrap_or(RunnerType::Unspecified)
    }
}

impl DeploymentStatus {
    /// `success`, `failure` (`unspecified`).
    pub fn label(self) -> &'static str {
        match self {
            DeploymentStatus::Success => "success",
            DeploymentStatus::Failure => "failure",
            DeploymentStatus::Unspecified => "unspecified",
        }
    }

    /// A status read back from [`DeploymentStatus::label`]; anything unknown is UNSPECIFIED.
    pub fn from_label(text: &str) -> Self {
        match text {
            "success" => DeploymentStatus::Success,
            "failure" => DeploymentStatus::Failure,
            _ => DeploymentStatus::Unspecified,
        }
    }
}

impl DeploymentKind {
    /// `deploy`, `rollback`, `hotfix`.
    pub fn label(self) -> &'static str {
        match self {
            DeploymentKind::Unspecified => "deploy",
            DeploymentKind::Rollback => "rollback",
            DeploymentKind::Hotfix => "hotfix",
        }
    }

    /// A kind read back from [`DeploymentKind::label`]; `None` for anything else.
    pub fn from_label(text: &str) -> Option<Self> {
        match text {
            "deploy" => Some(DeploymentKind::Unspecified),
            "rollback" => Some(DeploymentKind::Rollback),
            "hotfix" => Some(DeploymentKind::Hotfix),
            _ => None,
        }
    }
}

impl Scope {
    /// `runs:write`, `metrics:read`: as the CLI, the storage and error messages spell it.
    pub fn label(self) -> &'static str {
        match self {
            Scope::RunsWrite => "runs:write",
            Scope::MetricsRead => "metrics:read",
            Scope::WorkflowsDelete => "workflows:delete",
            Scope::Unspecified => "unspecified",
        }
    }

    /// A scope read back from [`Scope::label`]; `None` for anything else.
    pub fn from_label(text: &str) -> Option<Self> {
        match text {
            "runs:write" => Some(Scope::RunsWrite),
            "metrics:read" => Some(Scope::MetricsRead),
            "workflows:delete" => Some(Scope::WorkflowsDelete),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip() {
        for status in [
            RunStatus::Initialized,
            RunStatus::Success,
            RunStatus::Error,
            RunStatus::Expired,
            RunStatus::Canceled,
        ] {
            assert_eq!(RunStatus::from_label(status.label()), status);
        }
        assert_eq!(RunStatus::from_label("bogus"), RunStatus::Unspecified);
        assert_eq!(RunnerType::GithubAction.label(), "GITHUB_ACTION");
        assert_eq!(RunnerType::Unspecified.label(), "UNSPECIFIED");
        for runner in [
            RunnerType::GitlabPipeline,
            RunnerType::TektonPipeline,
            RunnerType::Unspecified,
        ] {
            assert_eq!(RunnerType::from_label(runner.label()), runner);
        }
        for scope in [Scope::RunsWrite, Scope::MetricsRead, Scope::WorkflowsDelete] {
            assert_eq!(Scope::from_label(scope.label()), Some(scope));
        }
        assert_eq!(Scope::from_label("admin"), None);
    }
}
