//! Callers' input in error messages: quoted, and at most a short prefix of
//! it, so that an answer stays small whatever was sent (a 100,000-character
//! id echoed whole makes a gRPC trailer that clients refuse).

use std::fmt;

/// Characters of an input an error message quotes, at most.
pub const QUOTED_CHARS: usize = 64;

/// `input` as an error message quotes it: `"abc"`, or `"abcd…" (100000
/// characters)` when longer than [`QUOTED_CHARS`].
pub fn quoted(input: &str) -> Quoted<'_> {
    Quoted(input)
}

/// See [`quoted`].
#[derive(Debug, Clone, Copy)]
pub struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let chars = self.0.chars().count();
        if chars <= QUOTED_CHARS {
            return write!(f, "{:?}", self.0);
        }
        let prefix: String = self.0.chars().take(QUOTED_CHARS).collect();
        let quoted = format!("{prefix:?}");
        let open = quoted.strip_suffix('"').unwrap_or(&quoted);
        write!(f, "{open}…\" ({chars} characters)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_inputs_are_quoted_whole_and_long_ones_by_a_prefix() {
        assert_eq!(quoted("build").to_string(), "\"build\"");
        assert_eq!(quoted("a\"b\n").to_string(), "\"a\\\"b\\n\"");
        let long = "x".repeat(100_000);
        let shown = quoted(&long).to_string();
        assert!(shown.len() < 100, "{shown}");
        assert!(shown.ends_with("…\" (100000 characters)"), "{shown}");
        assert!(shown.starts_with(&format!("\"{}", "x".repeat(QUOTED_CHARS))));
    }
}
