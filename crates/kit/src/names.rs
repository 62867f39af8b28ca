//! How runplane spells its API's enums in storage, metric labels and text,
//! in one place so that the stored value, the `status`/`runner` label and what
//! the CLI prints never drift apart.

use runplane_api::workflowrun::v1::{RunStatus, RunnerType};

/// A run status: `initialized`, `success`, `error`, `expired`, `canceled`.
pub fn status(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Initialized => "initialized",
        RunStatus::Success => "success",
        RunStatus::Error => "error",
        RunStatus::Expired => "expired",
        RunStatus::Canceled => "canceled",
        RunStatus::Unspecified => "unspecified",
    }
}

/// A status read back from [`status`]; anything unknown is UNSPECIFIED.
pub fn parse_status(text: &str) -> RunStatus {
    match text {
        "initialized" => RunStatus::Initialized,
        "success" => RunStatus::Success,
        "error" => RunStatus::Error,
        "expired" => RunStatus::Expired,
        "canceled" => RunStatus::Canceled,
        _ => RunStatus::Unspecified,
    }
}

/// A runner type by Chainloop's names (`GITHUB_ACTION`, …), `UNSPECIFIED` when unknown.
pub fn runner(runner: RunnerType) -> &'static str {
    let name = runner.as_str_name();
    name.strip_prefix("RUNNER_TYPE_").unwrap_or(name)
}

/// A runner type read back from [`runner`]; anything unknown is UNSPECIFIED.
pub fn parse_runner(text: &str) -> RunnerType {
    RunnerType::from_str_name(&format!("RUNNER_TYPE_{text}")).unwrap_or(RunnerType::Unspecified)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in [
            RunStatus::Initialized,
            RunStatus::Success,
            RunStatus::Error,
            RunStatus::Expired,
            RunStatus::Canceled,
        ] {
            assert_eq!(parse_status(status(s)), s);
        }
        assert_eq!(parse_status("bogus"), RunStatus::Unspecified);
        assert_eq!(runner(RunnerType::GithubAction), "GITHUB_ACTION");
        assert_eq!(runner(RunnerType::Unspecified), "UNSPECIFIED");
        for r in [
            RunnerType::GitlabPipeline,
            RunnerType::TektonPipeline,
            RunnerType::Unspecified,
        ] {
            assert_eq!(parse_runner(runner(r)), r);
        }
    }
}
