//! Bearer secrets: minting, parsing, hashing and constant-time checking.
//!
//! A secret looks like `rpt_<43 base64url chars><6 base64url chars>`: a
//! recognisable prefix (so secret scanners and people can tell what it is),
//! 256 random bits, and a checksum of those bits so that a mistyped or
//! truncated secret is rejected without a database lookup. Only the SHA-256
//! of a secret is ever stored: secrets are high-entropy, so a slow password
//! hash would add latency and no security.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a secret is for; each kind has its own prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// An organization API token (`rpt_`).
    ApiToken,
    /// The suite's admin credential (`rpa_`).
    Admin,
}

impl SecretKind {
    fn prefix(self) -> &'static str {
        match self {
            SecretKind::ApiToken => "rpt_",
            SecretKind::Admin => "rpa_",
        }
    }
}

const RANDOM_BYTES: usize = 32;
const BODY_LEN: usize = 43; // base64url of 32 bytes, unpadded
const CHECKSUM_BYTES: usize = 4;
const CHECKSUM_LEN: usize = 6; // base64url of 4 bytes, unpadded

/// Why a string is not a well-formed secret. Deliberately vague towards callers:
/// every variant ends up as the same "invalid token" answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MalformedSecret {
    #[error("wrong prefix")]
    Prefix,
    #[error("wrong length")]
    Length,
    #[error("invalid characters")]
    Characters,
    #[error("checksum mismatch")]
    Checksum,
}

/// The stored form of a secret: SHA-256, hex-encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretHash(pub String);

impl SecretHash {
    /// Hashes a secret for storage or lookup.
    pub fn of(secret: &str) -> Self {
        SecretHash(hex(&Sha256::digest(secret.as_bytes())))
    }

    /// Compares with another hash in constant time.
    pub fn matches(&self, other: &SecretHash) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

/// The operating system's random number generator failed.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RandomUnavailable(String);

/// Mints a new secret of `kind` from the operating system's CSPRNG.
pub fn generate(kind: SecretKind) -> Result<String, RandomUnavailable> {
    let mut random = [0u8; RANDOM_BYTES];
    getrandom::fill(&mut random).map_err(|e| RandomUnavailable(e.to_string()))?;
    let body = URL_SAFE_NO_PAD.encode(random);
    let checksum = URL_SAFE_NO_PAD.encode(&Sha256::digest(body.as_bytes())[..CHECKSUM_BYTES]);
    Ok(format!("{}{body}{checksum}", kind.prefix()))
}

/// Checks that `secret` is well formed for `kind` (prefix, length, alphabet, checksum).
pub fn parse(kind: SecretKind, secret: &str) -> Result<(), MalformedSecret> {
    let rest = secret
        .strip_prefix(kind.prefix())
        .ok_or(MalformedSecret::Prefix)?;
    if rest.len() != BODY_LEN + CHECKSUM_LEN {
        return Err(MalformedSecret::Length);
    }
    if !rest
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(MalformedSecret::Characters);
    }
    let (body, checksum) = rest.split_at(BODY_LEN);
    let expected = URL_SAFE_NO_PAD.encode(&Sha256::digest(body.as_bytes())[..CHECKSUM_BYTES]);
    if expected.as_bytes().ct_eq(checksum.as_bytes()).into() {
        Ok(())
    } else {
        Err(MalformedSecret::Checksum)
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_parse_and_are_distinct() {
        let a = generate(SecretKind::ApiToken).expect("rng");
        let b = generate(SecretKind::ApiToken).expect("rng");
        assert_ne!(a, b);
        assert!(a.starts_with("rpt_"));
        assert_eq!(a.len(), 4 + BODY_LEN + CHECKSUM_LEN);
        assert_eq!(parse(SecretKind::ApiToken, &a), Ok(()));
        assert_eq!(parse(SecretKind::Admin, &a), Err(MalformedSecret::Prefix));
    }

    #[test]
    fn malformed_secrets_are_rejected_for_the_right_reason() {
        let good = generate(SecretKind::ApiToken).expect("rng");
        assert_eq!(
            parse(SecretKind::ApiToken, ""),
            Err(MalformedSecret::Prefix)
        );
        assert_eq!(
            parse(SecretKind::ApiToken, "Bearer x"),
            Err(MalformedSecret::Prefix)
        );
        assert_eq!(
            parse(SecretKind::ApiToken, &good[..good.len() - 1]),
            Err(MalformedSecret::Length)
        );
        let mut bad_char = good.clone();
        bad_char.replace_range(10..11, "!");
        assert_eq!(
            parse(SecretKind::ApiToken, &bad_char),
            Err(MalformedSecret::Characters)
        );
        // Flip one body character: the checksum no longer matches.
        let mut flipped = good.clone().into_bytes();
        flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).expect("ascii");
        assert_eq!(
            parse(SecretKind::ApiToken, &flipped),
            Err(MalformedSecret::Checksum)
        );
        let with_newline = format!("{good}\n");
        assert_eq!(
            parse(SecretKind::ApiToken, &with_newline),
            Err(MalformedSecret::Length)
        );
    }

    #[test]
    fn hashes_are_hex_sha256_and_compare_in_constant_time() {
        let h = SecretHash::of("abc");
        assert_eq!(
            h.0,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(h.matches(&SecretHash::of("abc")));
        assert!(!h.matches(&SecretHash::of("abd")));
    }
}

/// Property tests: the parser over arbitrary input.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        #[test]
        fn parsing_never_panics_and_accepts_only_the_exact_shape(text in "\\PC{0,80}") {
            for kind in [SecretKind::ApiToken, SecretKind::Admin] {
                if parse(kind, &text).is_ok() {
                    prop_assert!(text.starts_with(kind.prefix()));
                    prop_assert_eq!(text.len(), 4 + BODY_LEN + CHECKSUM_LEN);
                }
            }
        }

        #[test]
        fn a_changed_character_anywhere_after_the_prefix_is_rejected(
            position in 4usize..(4 + BODY_LEN + CHECKSUM_LEN),
            replacement in proptest::char::range('!', '~'),
        ) {
            let secret = generate(SecretKind::ApiToken).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut changed: Vec<char> = secret.chars().collect();
            prop_assume!(changed[position] != replacement);
            changed[position] = replacement;
            let changed: String = changed.into_iter().collect();
            prop_assert!(parse(SecretKind::ApiToken, &changed).is_err());
        }
    }
}
