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
