//! Organization names: lowercase DNS-1123 labels, so they are safe in URLs,
//! Kubernetes objects and Prometheus label values alike.

/// The rule, as stated to people who break it.
pub const RULE: &str = "an organization name must be a lowercase DNS-1123 label: 1 to 63 characters \
     of a-z, 0-9 and '-', starting and ending with a letter or digit \
     (^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$)";

/// A name that breaks [`RULE`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid organization name {name:?}: {RULE}")]
pub struct InvalidName {
    pub name: String,
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
