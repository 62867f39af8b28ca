//! Workflow and project names: 1 to 200 characters, no control characters
//! (a new line would forge a metric series), no white space around them. The
//! one statement of the rule: workflow-run-service checks runs against it,
//! token-service the projects a token is limited to.

/// Longest workflow or project name, in characters.
pub const MAX_CHARS: usize = 200;

/// The project a workflow belongs to when none is named.
pub const DEFAULT_PROJECT: &str = "default";

/// What is wrong with a workflow or project name, if anything
/// (`"must not be empty"`, …), for a message such as `workflow name …`.
pub fn problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("must not be empty")
    } else if name.chars().count() > MAX_CHARS {
        Some("is longer than 200 characters")
    } else if name.chars().any(char::is_control) {
        Some("contains control characters")
    } else if name.trim() != name {
        Some("starts or ends with white space")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_for_what_breaks_series_and_urls() {
        assert_eq!(problem("backend-release-production"), None);
        assert_eq!(problem("déploiement \"prod\" \\ 🚀"), None);
        for bad in ["", " x", "x ", "a\nb", "a\u{0}b", &"x".repeat(201)] {
            assert!(problem(bad).is_some(), "{bad:?}");
        }
    }
}
