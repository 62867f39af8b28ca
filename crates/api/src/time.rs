//! Wall-clock time as runplane stores it, milliseconds since the Unix epoch,
//! and as the API carries it, `google.protobuf.Timestamp`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The wire types, with their proto3 JSON mapping.
pub use pbjson_types::{Duration as ProtoDuration, Timestamp};

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A duration in whole milliseconds, saturating.
pub fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Milliseconds since the epoch as a protobuf timestamp.
pub fn timestamp(ms: i64) -> Timestamp {
    Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    }
}

/// A protobuf timestamp as milliseconds since the epoch, saturating.
pub fn from_timestamp(ts: &Timestamp) -> i64 {
    ts.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(ts.nanos) / 1_000_000)
}

/// A duration as the API carries it.
pub fn proto_duration(duration: Duration) -> ProtoDuration {
    ProtoDuration {
        seconds: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(duration.subsec_nanos()).unwrap_or(0),
    }
}

/// A wire duration as a `std` one; `None` when it is negative or its parts
/// disagree in sign or range.
pub fn std_duration(duration: &ProtoDuration) -> Option<Duration> {
    let seconds = u64::try_from(duration.seconds).ok()?;
    let nanos = u32::try_from(duration.nanos).ok()?;
    (nanos < 1_000_000_000).then(|| Duration::new(seconds, nanos))
}

/// An RFC 3339 time, `2026-11-25T10:00:00Z`, with fractions of a second and a
/// `+hh:mm`/`-hh:mm` offset allowed; also the `2026-11-25 10:00:00 UTC` and
/// `… +0100` forms GitLab's webhooks use. `None` if it is neither.
pub fn parse_rfc3339(text: &str) -> Option<Timestamp> {
    let text = text.trim();
    // GitLab: "2026-11-25 10:00:00 UTC" or "2026-11-25 11:00:00 +0100".
    let normalized;
    let text = match text.split_once(' ') {
        Some((date, rest)) => {
            let (clock, zone) = rest.split_once(' ').unwrap_or((rest, "Z"));
            let zone = match zone {
                "UTC" | "Z" => "Z".to_owned(),
                z if z.len() == 5 && (z.starts_with('+') || z.starts_with('-')) => {
                    format!("{}:{}", &z[..3], &z[3..])
                }
                _ => return None,
            };
            normalized = format!("{date}T{clock}{zone}");
            normalized.as_str()
        }
        None => text,
    };
    let (local, offset_secs) = match text.len().checked_sub(6).and_then(|at| {
        let (local, offset) = (text.get(..at)?, text.get(at..)?);
        let sign = match offset.as_bytes() {
            [b'+', _, _, b':', _, _] => 1,
            [b'-', _, _, b':', _, _] => -1,
            _ => return None,
        };
        let hours: i64 = offset.get(1..3)?.parse().ok()?;
        let minutes: i64 = offset.get(4..6)?.parse().ok()?;
        Some((format!("{local}Z"), sign * (hours * 3600 + minutes * 60)))
    }) {
        Some(parsed) => parsed,
        None => (text.to_owned(), 0),
    };
    let at = humantime::parse_rfc3339(&local).ok()?;
    let since_epoch = at.duration_since(UNIX_EPOCH).ok()?;
    Some(Timestamp {
        seconds: i64::try_from(since_epoch.as_secs()).ok()? - offset_secs,
        nanos: i32::try_from(since_epoch.subsec_nanos()).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_including_before_the_epoch() {
        for ms in [0, 1, 999, 1_000, 1_732_000_000_123, -1, -1_001] {
            assert_eq!(from_timestamp(&timestamp(ms)), ms, "{ms}");
        }
        assert_eq!(timestamp(-1).nanos, 999_000_000);
        let d = Duration::from_millis(90_500);
        assert_eq!(std_duration(&proto_duration(d)), Some(d));
        assert_eq!(
            std_duration(&ProtoDuration {
                seconds: -1,
                nanos: 0
            }),
            None
        );
    }
}
