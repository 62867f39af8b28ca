//! Deadlines carried across services: a call made while serving a request
//! carries what is left of that request's deadline (its `grpc-timeout`), so a
//! peer never works on behalf of a caller that has already given up.
//!
//! The server side records the deadline of the request it serves
//! ([`serve_within`]); every outgoing call through
//! [`crate::ObservedChannel`] reads it back ([`propagate`]).

use std::future::Future;
use std::time::{Duration, Instant};

/// The header that carries a gRPC call's timeout.
pub const GRPC_TIMEOUT: &str = "grpc-timeout";

tokio::task_local! {
    /// The deadline of the gRPC request being served, from its `grpc-timeout`.
    static DEADLINE: Option<Instant>;
}

/// The deadline a request's headers set, counted from `started`.
pub fn of_request(headers: &http::HeaderMap, started: Instant) -> Option<Instant> {
    headers
        .get(GRPC_TIMEOUT)
        .and_then(|v| parse_grpc_timeout(v.as_bytes()))
        .and_then(|timeout| started.checked_add(timeout))
}

/// Runs `serving` (the handling of one request) with `deadline` in force for
/// the calls it makes.
pub fn serve_within<F: Future>(
    deadline: Option<Instant>,
    serving: F,
) -> tokio::task::futures::TaskLocalFuture<Option<Instant>, F> {
    DEADLINE.scope(deadline, serving)
}

/// Parses a `grpc-timeout` value: at most 8 digits and a unit (H, M, S, m, u, n).
pub fn parse_grpc_timeout(value: &[u8]) -> Option<Duration> {
    let (unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let amount: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(amount * 3600),
        b'M' => Duration::from_secs(amount * 60),
        b'S' => Duration::from_secs(amount),
        b'm' => Duration::from_millis(amount),
        b'u' => Duration::from_micros(amount),
        b'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// Gives an outgoing call what is left of the served request's deadline,
/// unless its own `grpc-timeout` is shorter.
pub fn propagate(headers: &mut http::HeaderMap) {
    let Ok(Some(deadline)) = DEADLINE.try_with(|d| *d) else {
        return;
    };
    let remaining = deadline.saturating_duration_since(Instant::now());
    let own = headers
        .get(GRPC_TIMEOUT)
        .and_then(|v| parse_grpc_timeout(v.as_bytes()));
    if own.is_some_and(|own| own <= remaining) {
        return;
    }
    // Milliseconds, rounded up so that a nearly spent deadline is not zero;
    // 8 digits of them is over a day.
    let millis = remaining.as_micros().div_ceil(1000).clamp(1, 99_999_999);
    if let Ok(value) = format!("{millis}m").parse() {
        headers.insert(GRPC_TIMEOUT, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_like_the_spec_says() {
        assert_eq!(parse_grpc_timeout(b"5S"), Some(Duration::from_secs(5)));
        assert_eq!(
            parse_grpc_timeout(b"250m"),
            Some(Duration::from_millis(250))
        );
        assert_eq!(parse_grpc_timeout(b"2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout(b"7n"), Some(Duration::from_nanos(7)));
        for bad in [&b""[..], b"S", b"123456789S", b"5s", b"-5S", b"5 S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    fn timeout_of(headers: &http::HeaderMap) -> Option<Duration> {
        headers
            .get(GRPC_TIMEOUT)
            .and_then(|v| parse_grpc_timeout(v.as_bytes()))
    }

    #[tokio::test]
    async fn calls_made_while_serving_carry_the_remaining_deadline() {
        // Outside a request: nothing is added.
        let mut headers = http::HeaderMap::new();
        propagate(&mut headers);
        assert_eq!(timeout_of(&headers), None);

        let deadline = Instant::now() + Duration::from_millis(800);
        serve_within(Some(deadline), async {
            let mut headers = http::HeaderMap::new();
            propagate(&mut headers);
            let left = timeout_of(&headers).expect("a grpc-timeout");
            assert!(left <= Duration::from_millis(800) && left > Duration::ZERO);

            // A call's own shorter timeout stays; a longer one is cut.
            let mut headers = http::HeaderMap::new();
            headers.insert(GRPC_TIMEOUT, http::HeaderValue::from_static("100m"));
            propagate(&mut headers);
            assert_eq!(timeout_of(&headers), Some(Duration::from_millis(100)));
            headers.insert(GRPC_TIMEOUT, http::HeaderValue::from_static("60S"));
            propagate(&mut headers);
            assert!(timeout_of(&headers).is_some_and(|t| t <= Duration::from_millis(800)));
        })
        .await;

        // A spent deadline still sends the smallest timeout, not none.
        serve_within(Some(Instant::now()), async {
            let mut headers = http::HeaderMap::new();
            propagate(&mut headers);
            assert_eq!(timeout_of(&headers), Some(Duration::from_millis(1)));
        })
        .await;
    }
}
