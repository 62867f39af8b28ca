//! Organization names: lowercase DNS-1123 labels, so they are safe in URLs,
//! Kubernetes objects and Prometheus label values alike. The one statement of
//! the rule: org-service enforces it, metrics-service checks a scrape's path
//! against it before asking org-service.

/// The rule, as stated to people who break it.
pub const RULE: &str = "an organization name must be a lowercase DNS-1123 label: 1 to 63 characters \
     of a-z, 0-9 and '-', starting and ending with a letter or digit \
     (^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$)";

/// A name that breaks [`RULE`]. Its message quotes the name only when it
/// could be one (at most 63 characters): an answer stays small whatever was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid organization name {}: {RULE}", Shown(name))]
pub struct InvalidName {
    pub name: String,
}

/// A name as [`InvalidName`] shows it.
struct Shown<'a>(&'a str);

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.chars().count() {
            n if n > 63 => write!(f, "of {n} characters"),
            _ => write!(f, "{:?}", self.0),
        }
    }
}

/// Checks `name` against `^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`.
pub fn validate(name: &str) -> Result<(), InvalidName> {
    let bytes = name.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let ok = (1..=63).contains(&bytes.len())
        && bytes.first().is_some_and(alnum)
        && bytes.last().is_some_and(alnum)
        && bytes.iter().all(|b| alnum(b) || *b == b'-');
    if ok {
        Ok(())
    } else {
        Err(InvalidName {
            name: name.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_labels() {
        for name in [
            "a",
            "0",
            "cyberdyne",
            "acme-corp",
            "a-b-c",
            "x1",
            &"a".repeat(63),
        ] {
            assert_eq!(validate(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        for name in [
            "",
            "-a",
            "a-",
            "Acme",
            "acme_corp",
            "acme.corp",
            "acme corp",
            "ácme",
            "a/b",
            "..",
            "%2F",
            "a\n",
            &"a".repeat(64),
        ] {
            let err = validate(name).expect_err(name);
            assert!(err.to_string().contains("DNS-1123"), "{err}");
        }
    }
}

/// Property tests: the validator over arbitrary and over valid names.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        #[test]
        fn accepted_names_are_safe_in_urls_and_labels(name in "\\PC{0,80}") {
            if validate(&name).is_ok() {
                prop_assert!((1..=63).contains(&name.len()));
                prop_assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
                prop_assert!(!name.starts_with('-') && !name.ends_with('-'));
            }
        }

        #[test]
        fn every_dns_label_is_accepted(name in "[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?") {
            prop_assert!(validate(&name).is_ok());
        }

        #[test]
        fn refusals_quote_the_name_and_the_rule(name in "\\PC{64,80}|[A-Z]{1,5}|-[a-z]{0,5}") {
            let refused = validate(&name).expect_err("invalid");
            prop_assert!(refused.to_string().contains(RULE));
        }
    }
}
