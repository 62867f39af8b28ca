//! Opaque page tokens for cursor pagination.
//!
//! A page token is the cursor (the sort key of the last item returned),
//! base64url-encoded so that callers treat it as opaque and do not build their own.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Encodes a cursor as a page token.
pub fn encode(cursor: &str) -> String {
    URL_SAFE_NO_PAD.encode(cursor.as_bytes())
}

/// Decodes a page token; `None` for the empty token (the first page),
/// `Err` for one this server did not issue.
pub fn decode(token: &str) -> Result<Option<String>, InvalidPageToken> {
    if token.is_empty() {
        return Ok(None);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(token.as_bytes())
        .map_err(|_| InvalidPageToken)?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| InvalidPageToken)
}

/// The page token was not one issued by this server.
#[derive(Debug, thiserror::Error)]
#[error("invalid page_token: pass the next_page_token of the previous response unchanged")]
pub struct InvalidPageToken;

/// Clamps a requested page size: 0 or negative means `default`, and never above `max`.
pub fn page_size(requested: i32, default: u64, max: u64) -> u64 {
    match u64::try_from(requested) {
        Ok(0) | Err(_) => default,
        Ok(n) => n.min(max),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        assert_eq!(decode("").ok().flatten(), None);
        let token = encode("0193-abc");
        assert_eq!(decode(&token).ok().flatten().as_deref(), Some("0193-abc"));
        assert!(decode("not base64!").is_err());
    }

    #[test]
    fn page_size_defaults_and_clamps() {
        assert_eq!(page_size(0, 50, 1000), 50);
        assert_eq!(page_size(-3, 50, 1000), 50);
        assert_eq!(page_size(7, 50, 1000), 7);
        assert_eq!(page_size(5000, 50, 1000), 1000);
    }
}
