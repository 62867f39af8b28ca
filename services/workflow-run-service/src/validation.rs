//! Runs and workflows as the domain sees them: statuses, runner types, and the
//! rules for what a runner may send.

use std::time::Duration;

use runplane_api::workflowrun::v1::RunStatus;

use crate::error::Error;

/// The project a workflow belongs to when the runner names none.
pub(crate) use runplane_api::workflow_name::DEFAULT_PROJECT;
/// Longest run URL, in bytes.
pub(crate) const MAX_URL: usize = 2048;
/// Longest finish reason, in characters.
pub(crate) const MAX_REASON: usize = 1000;

/// The project a request names, `default` when it names none.
pub(crate) fn project_or_default(project: &str) -> &str {
    if project.is_empty() {
        DEFAULT_PROJECT
    } else {
        project
    }
}

/// Checks a workflow or project name: 1 to 200 characters, no control characters,
/// no leading or trailing white space.
pub(crate) fn validate_name(what: &str, name: &str) -> Result<(), Error> {
    match runplane_api::workflow_name::problem(name) {
        Some(problem) => Err(Error::InvalidArgument(format!("{what} name {problem}"))),
        None => Ok(()),
    }
}

/// Checks an optional run URL: empty, or an http(s) URL of at most 2048 bytes.
pub(crate) fn validate_run_url(url: &str) -> Result<(), Error> {
    if url.is_empty() {
        return Ok(());
    }
    let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
    if !scheme_ok || url.len() > MAX_URL || url.chars().any(|c| c.is_control() || c == ' ') {
        return Err(Error::InvalidArgument(
            "run_url must be an http:// or https:// URL of at most 2048 bytes without spaces"
                .into(),
        ));
    }
    Ok(())
}

/// Checks a run id: runs have UUIDs, so anything else names no run, and is
/// refused before it reaches the database.
pub(crate) fn validate_run_id(run_id: &str) -> Result<(), Error> {
    if uuid::Uuid::try_parse(run_id).is_ok() {
        return Ok(());
    }
    Err(Error::InvalidArgument(format!(
        "run_id {} is not a run id: pass the id `run start` printed (StartRun returned)",
        runplane_api::input::quoted(run_id)
    )))
}

/// The longest a runner may set a run's own timeout to.
pub(crate) const MAX_RUN_TIMEOUT: Duration = Duration::from_secs(30 * 86_400);

/// A run's own timeout, as its runner sent it: above zero, at most 30 days.
pub(crate) fn run_timeout(timeout: &prost_types::Duration) -> Result<Duration, Error> {
    let invalid = || {
        Error::InvalidArgument(format!(
            "timeout must be above zero and at most {} (30 days); leave it unset for the \
             service's run timeout",
            humantime::format_duration(MAX_RUN_TIMEOUT)
        ))
    };
    let timeout = Duration::try_from(*timeout).map_err(|_| invalid())?;
    if timeout.is_zero() || timeout > MAX_RUN_TIMEOUT {
        return Err(invalid());
    }
    Ok(timeout)
}

/// Checks a finish reason's length.
pub(crate) fn validate_reason(reason: &str) -> Result<(), Error> {
    if reason.chars().count() > MAX_REASON {
        return Err(Error::InvalidArgument(format!(
            "reason is longer than {MAX_REASON} characters"
        )));
    }
    Ok(())
}

/// The outcome a runner may report: SUCCESS, ERROR or CANCELED.
pub(crate) fn reportable_outcome(raw: i32) -> Result<RunStatus, Error> {
    match RunStatus::try_from(raw) {
        Ok(status @ (RunStatus::Success | RunStatus::Error | RunStatus::Canceled)) => Ok(status),
        _ => Err(Error::InvalidArgument(
            "status must be SUCCESS, ERROR or CANCELED".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_urls_and_outcomes() {
        assert!(validate_name("workflow", "backend-release-production").is_ok());
        assert!(validate_name("workflow", "déploiement \"prod\" \\ 🚀").is_ok());
        for bad in ["", " x", "x ", "a\nb", "a\u{0}b", &"x".repeat(201)] {
            assert!(validate_name("workflow", bad).is_err(), "{bad:?}");
        }
        assert!(validate_run_url("").is_ok());
        assert!(validate_run_url("https://github.com/o/r/actions/runs/1").is_ok());
        for bad in [
            "ftp://x",
            "javascript:alert(1)",
            "https://a b",
            &format!("https://{}", "x".repeat(2048)),
        ] {
            assert!(validate_run_url(bad).is_err(), "{bad}");
        }
        assert_eq!(
            reportable_outcome(RunStatus::Success as i32).ok(),
            Some(RunStatus::Success)
        );
        assert!(reportable_outcome(RunStatus::Initialized as i32).is_err());
        assert!(reportable_outcome(RunStatus::Expired as i32).is_err());
        assert!(reportable_outcome(99).is_err());
    }
}

/// Property tests: the validators over arbitrary input.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        #[test]
        fn names_are_accepted_exactly_by_the_documented_rule(name in "(\\PC|[\\t\\n\\x00\\x7f\\u{85}]){0,210}") {
            let expected = !name.is_empty()
                && name.chars().count() <= runplane_api::workflow_name::MAX_CHARS
                && !name.chars().any(char::is_control)
                && name.trim() == name;
            match validate_name("workflow", &name) {
                Ok(()) => prop_assert!(expected),
                Err(Error::InvalidArgument(message)) => {
                    prop_assert!(!expected);
                    prop_assert!(message.starts_with("workflow name "));
                }
                Err(other) => prop_assert!(false, "unexpected {other:?}"),
            }
        }

        #[test]
        fn urls_and_reasons_never_panic(text in "\\PC{0,300}") {
            let _ = validate_run_url(&text);
            let _ = validate_reason(&text);
        }
    }
}
