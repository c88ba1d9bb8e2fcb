//! How times and durations are written, in one place: RFC 3339 to the second
//! for people and documents, seconds as `f64` (millisecond resolution) for metrics.

use chrono::{DateTime, SecondsFormat, Utc};

/// `2026-11-28T18:39:16Z`.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Unix time in seconds, millisecond resolution.
pub fn unix_seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

/// A signed duration in seconds, millisecond resolution.
pub fn seconds(d: chrono::Duration) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn formats() {
        let t = Utc.with_ymd_and_hms(2026, 11, 28, 18, 39, 16).unwrap() + chrono::Duration::milliseconds(250);
        assert_eq!(rfc3339(t), "2026-11-28T18:39:16Z");
        assert_eq!(unix_seconds(t), 1_795_891_156.25);
        assert_eq!(seconds(chrono::Duration::milliseconds(-1500)), -1.5);
    }
}
