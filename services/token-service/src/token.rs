//! API tokens as the domain sees them: names, scopes, and their wire form.

use runplane_api::time::timestamp;
use runplane_api::token::v1::{Scope, Token};

use crate::entity::api_token;
use crate::error::Error;

/// Longest token description accepted.
pub(crate) const MAX_DESCRIPTION: usize = 500;

/// Checks a token name: 1 to 63 characters of letters, digits, `-`, `_` and `.`.
pub(crate) fn validate_name(name: &str) -> Result<(), Error> {
    let ok = (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "invalid token name {}: use 1 to 63 characters of letters, digits, '-', '_' and '.'",
            runplane_api::input::quoted(name)
        )))
    }
}

/// Checks a description's length (it is free text otherwise).
pub(crate) fn validate_description(description: &str) -> Result<(), Error> {
    if description.chars().count() > MAX_DESCRIPTION {
        return Err(Error::InvalidArgument(format!(
            "the description is longer than {MAX_DESCRIPTION} characters"
        )));
    }
    Ok(())
}

/// The requested scopes, deduplicated; none requested means runs:write and
/// metrics:read (deleting workflows only when asked for).
pub(crate) fn requested_scopes(scopes: &[i32]) -> Result<Vec<Scope>, Error> {
    if scopes.is_empty() {
        return Ok(vec![Scope::RunsWrite, Scope::MetricsRead]);
    }
    let mut out = Vec::new();
    for raw in scopes {
        match Scope::try_from(*raw) {
            Ok(scope @ (Scope::RunsWrite | Scope::MetricsRead | Scope::WorkflowsDelete)) => {
                if !out.contains(&scope) {
                    out.push(scope);
                }
            }
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "unknown scope {raw}: use runs:write, metrics:read and/or workflows:delete"
                )));
            }
        }
    }
    Ok(out)
}

/// Most projects one token may be limited to.
pub(crate) const MAX_PROJECTS: usize = 100;

/// The projects a token is to be limited to, checked and deduplicated; none:
/// every project.
pub(crate) fn requested_projects(projects: &[String]) -> Result<Vec<String>, Error> {
    if projects.len() > MAX_PROJECTS {
        return Err(Error::InvalidArgument(format!(
            "a token may be limited to at most {MAX_PROJECTS} projects"
        )));
    }
    let mut out: Vec<String> = Vec::new();
    for project in projects {
        if let Some(problem) = runplane_api::workflow_name::problem(project) {
            return Err(Error::InvalidArgument(format!("project name {problem}")));
        }
        if !out.contains(project) {
            out.push(project.clone());
        }
    }
    Ok(out)
}

/// Projects as stored: one per line (a name has no control character).
pub(crate) fn encode_projects(projects: &[String]) -> String {
    projects.join("\n")
}

/// Projects as stored, read back.
pub(crate) fn decode_projects(stored: &str) -> Vec<String> {
    stored
        .split('\n')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Scopes as stored: comma-separated names.
pub(crate) fn encode_scopes(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.label())
        .collect::<Vec<_>>()
        .join(",")
}

/// Scopes as stored, read back; unknown names (from a newer version) are skipped.
pub(crate) fn decode_scopes(stored: &str) -> Vec<Scope> {
    stored.split(',').filter_map(Scope::from_label).collect()
}

/// Whether a token can be used at `now_ms`.
pub(crate) fn is_live(token: &api_token::Model, now_ms: i64) -> bool {
    token.revoked_at_ms.is_none() && token.expires_at_ms.is_none_or(|at| at > now_ms)
}

/// A token's wire form; never includes the secret or its hash.
pub(crate) fn to_proto(token: api_token::Model) -> Token {
    Token {
        scopes: decode_scopes(&token.scopes)
            .into_iter()
            .map(i32::from)
            .collect(),
        id: token.id,
        name: token.name,
        description: token.description,
        org_id: token.org_id,
        org_name: token.org_name,
        create_time: Some(timestamp(token.created_at_ms)),
        expire_time: token.expires_at_ms.map(timestamp),
        revoke_time: token.revoked_at_ms.map(timestamp),
        projects: decode_projects(&token.projects),
        last_used_time: token.last_used_at_ms.map(timestamp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["prom", "ci-runner_1", "a.b", &"x".repeat(63)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a/b", "tök", &"x".repeat(64)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn scopes_default_to_all_and_reject_unknown_values() {
        assert_eq!(
            requested_scopes(&[]).expect("default"),
            [Scope::RunsWrite, Scope::MetricsRead]
        );
        assert_eq!(
            requested_scopes(&[2, 2]).expect("dedup"),
            [Scope::MetricsRead]
        );
        assert!(requested_scopes(&[0]).is_err());
        assert!(requested_scopes(&[42]).is_err());
        let stored = encode_scopes(&[Scope::MetricsRead, Scope::RunsWrite]);
        assert_eq!(stored, "metrics:read,runs:write");
        assert_eq!(
            decode_scopes(&stored),
            [Scope::MetricsRead, Scope::RunsWrite]
        );
    }

    #[test]
    fn projects_are_checked_deduplicated_and_stored_one_per_line() {
        let asked = ["web".to_owned(), "api, v2".to_owned(), "web".to_owned()];
        let projects = requested_projects(&asked).expect("valid");
        assert_eq!(projects, ["web", "api, v2"]);
        assert_eq!(decode_projects(&encode_projects(&projects)), projects);
        assert!(decode_projects("").is_empty(), "every project");
        assert!(requested_projects(&["a\nb".to_owned()]).is_err());
        assert!(requested_projects(&vec!["p".to_owned(); MAX_PROJECTS + 1]).is_err());
    }
}
