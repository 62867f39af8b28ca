//! Runs and workflows as the domain sees them: statuses, runner types, and the
//! rules for what a runner may send.

use std::time::Duration;

use runplane_api::time::{ProtoDuration, Timestamp, from_timestamp, now_ms, std_duration};
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
    validate_url("run_url", url)
}

/// Checks an optional URL field `what`: empty, or an http(s) URL of at most
/// 2048 bytes.
pub(crate) fn validate_url(what: &str, url: &str) -> Result<(), Error> {
    if url.is_empty() {
        return Ok(());
    }
    let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
    if !scheme_ok || url.len() > MAX_URL || url.chars().any(|c| c.is_control() || c == ' ') {
        return Err(Error::InvalidArgument(format!(
            "{what} must be an http:// or https:// URL of at most 2048 bytes without spaces"
        )));
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
pub(crate) fn run_timeout(timeout: &ProtoDuration) -> Result<Duration, Error> {
    let invalid = || {
        Error::InvalidArgument(format!(
            "timeout must be above zero and at most {} (30 days); leave it unset for the \
             service's run timeout",
            humantime::format_duration(MAX_RUN_TIMEOUT)
        ))
    };
    let timeout = std_duration(timeout).ok_or_else(invalid)?;
    if timeout.is_zero() || timeout > MAX_RUN_TIMEOUT {
        return Err(invalid());
    }
    Ok(timeout)
}

/// How far ahead of this service's clock a reported time may be: runners'
/// clocks drift, and a webhook's times are its CI system's.
pub(crate) const CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;
/// 2000-01-01T00:00:00Z: a reported time before it is a mistake (an unset
/// time sent as zero, seconds taken for milliseconds).
const EARLIEST_MS: i64 = 946_684_800_000;

/// A time as people read it in a message.
pub(crate) fn rfc3339(ms: i64) -> String {
    match u64::try_from(ms) {
        Ok(ms) => {
            humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(ms))
                .to_string()
        }
        Err(_) => format!("{ms} ms since 1970"),
    }
}

/// A reported time (`what`: its field), in milliseconds: from 2000 to now
/// plus [`CLOCK_SKEW_MS`]. `None` when unset.
pub(crate) fn reported_time(what: &str, at: Option<&Timestamp>) -> Result<Option<i64>, Error> {
    let Some(at) = at else { return Ok(None) };
    let ms = from_timestamp(at);
    let latest = now_ms().saturating_add(CLOCK_SKEW_MS);
    if !(0..1_000_000_000).contains(&at.nanos) || ms < EARLIEST_MS {
        return Err(Error::InvalidArgument(format!(
            "{what} {} is not a time a run could have: it must be after 2000-01-01",
            rfc3339(ms)
        )));
    }
    if ms > latest {
        return Err(Error::InvalidArgument(format!(
            "{what} {} is in the future (this service's clock reads {}; 5 minutes of skew \
             are allowed): check the reporter's clock and time zone",
            rfc3339(ms),
            rfc3339(now_ms())
        )));
    }
    Ok(Some(ms))
}

/// A run's reported times in order: queued ≤ started ≤ finished.
pub(crate) fn times_in_order(
    queued: Option<i64>,
    started: Option<i64>,
    finished: Option<i64>,
) -> Result<(), Error> {
    if let (Some(queued), Some(started)) = (queued, started)
        && queued > started
    {
        return Err(Error::InvalidArgument(format!(
            "queue_time {} is after start_time {}",
            rfc3339(queued),
            rfc3339(started)
        )));
    }
    if let (Some(started), Some(finished)) = (started, finished)
        && started > finished
    {
        return Err(Error::InvalidArgument(format!(
            "finish_time {} is before start_time {}",
            rfc3339(finished),
            rfc3339(started)
        )));
    }
    Ok(())
}

/// Checks where a run came from: an attempt up to 10000, a branch (and a
/// default branch) of at most 255 characters without control characters, a commit in hex (at most 64
/// digits), a trigger of at most 64 of `[A-Za-z0-9_.:-]`.
pub(crate) fn validate_origin(origin: &crate::store::Origin<'_>) -> Result<(), Error> {
    if origin.attempt > 10_000 {
        return Err(Error::InvalidArgument(format!(
            "attempt {} is over 10000",
            origin.attempt
        )));
    }
    for (what, branch) in [
        ("branch", origin.branch),
        ("default_branch", origin.default_branch),
    ] {
        if branch.chars().count() > 255 || branch.chars().any(char::is_control) {
            return Err(Error::InvalidArgument(format!(
                "{what} must be at most 255 characters without control characters"
            )));
        }
    }
    if origin.commit_sha.len() > 64 || !origin.commit_sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::InvalidArgument(format!(
            "commit_sha {} is not a commit in hex (at most 64 digits)",
            runplane_api::input::quoted(origin.commit_sha)
        )));
    }
    let trigger_ok = origin.trigger.len() <= 64
        && origin
            .trigger
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
    if !trigger_ok {
        return Err(Error::InvalidArgument(format!(
            "trigger {} must be at most 64 of letters, digits, '_', '.', ':' and '-' (e.g. push, pull_request)",
            runplane_api::input::quoted(origin.trigger)
        )));
    }
    Ok(())
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

    #[test]
    fn reported_times_are_checked_against_the_clock_and_each_other() {
        let at = |ms| Some(runplane_api::time::timestamp(ms));
        let now = now_ms();
        assert_eq!(reported_time("start_time", None).ok(), Some(None));
        assert_eq!(
            reported_time("start_time", at(now).as_ref()).ok(),
            Some(Some(now))
        );
        let skewed = now + CLOCK_SKEW_MS - 10_000;
        assert!(reported_time("start_time", at(skewed).as_ref()).is_ok());
        for bad in [now + CLOCK_SKEW_MS + 60_000, 0, 1_700_000_000] {
            let err = reported_time("start_time", at(bad).as_ref());
            assert!(
                matches!(&err, Err(Error::InvalidArgument(m)) if m.starts_with("start_time ")),
                "{bad}: {err:?}"
            );
        }
        assert!(times_in_order(Some(1), Some(2), Some(2)).is_ok());
        assert!(times_in_order(None, Some(2), None).is_ok());
        assert!(times_in_order(Some(3), Some(2), None).is_err());
        assert!(times_in_order(None, Some(3), Some(2)).is_err());
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
