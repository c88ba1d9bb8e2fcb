//! Counters of the IMDS client that outlive a probe: requests by endpoint and
//! outcome, throttles, retries and request latency. Read into each Snapshot.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// IMDS resource a request was for; the `endpoint` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Endpoint {
    /// `PUT /latest/api/token`.
    Token,
    /// Role listing under `iam/security-credentials[-extended]/`.
    Role,
    /// The credential document of the role.
    Credentials,
    /// `iam/info`.
    Info,
}

impl Endpoint {
    /// Every endpoint, so per-endpoint series exist from the first scrape.
    pub const ALL: [Endpoint; 4] = [Endpoint::Token, Endpoint::Role, Endpoint::Credentials, Endpoint::Info];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Token => "token",
            Endpoint::Role => "role",
            Endpoint::Credentials => "credentials",
            Endpoint::Info => "info",
        }
    }
}

/// Fallback reasons exported from the start (at 0), so that `increase()`
/// sees the first fallback: the statuses botocore falls back on (`utils.py`,
/// 403/404/405) and the hop-limit timeout. Other statuses appear when they occur.
pub const V1_FALLBACK_REASONS: [&str; 4] = ["403", "404", "405", "timeout"];

/// Outcome label of an attempt that the probe's budget ended before it finished.
pub const CANCELLED: &str = "cancelled";

/// Upper bounds of the request-duration histogram, in seconds: IMDS answers
/// in about a millisecond; timeouts (1 s by default) land in +Inf. Few
/// buckets, because every one is a series on every instance of a fleet.
pub const DURATION_BUCKETS: [f64; 5] = [0.001, 0.005, 0.025, 0.1, 0.5];

/// A cumulative histogram, copied into snapshots by value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Non-cumulative counts per bucket of [`DURATION_BUCKETS`]; one extra slot for +Inf.
    pub counts: [u64; DURATION_BUCKETS.len() + 1],
    /// Sum of observations in seconds.
    pub sum: f64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        let i = DURATION_BUCKETS.iter().position(|&b| s <= b).unwrap_or(DURATION_BUCKETS.len());
        self.counts[i] += 1;
        self.sum += s;
    }

    /// Total number of observations.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// `(upper bound, cumulative count)` pairs without +Inf.
    pub fn cumulative(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        DURATION_BUCKETS
            .iter()
            .zip(self.counts.iter().scan(0u64, |acc, c| {
                *acc += c;
                Some(*acc)
            }))
            .map(|(b, c)| (*b, c))
    }
}

/// Everything the IMDS client counts; monotonic for the life of the process.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImdsStats {
    /// Requests by endpoint and outcome (`200`, `429`, `timeout`, `connect_error`, ...).
    pub requests: BTreeMap<(Endpoint, String), u64>,
    /// HTTP 429 responses.
    pub throttled: u64,
    /// Attempts beyond the first, of any request.
    pub retries: u64,
    /// Token requests that fell back to IMDSv1, by reason (`403`, `timeout`, ...).
    pub v1_fallbacks: BTreeMap<String, u64>,
    /// Latency of every attempt, by endpoint.
    pub durations: BTreeMap<Endpoint, Histogram>,
    /// When a probe last read a `Code=Success` document.
    pub last_success: Option<DateTime<Utc>>,
}

impl ImdsStats {
    /// Records one attempt and its outcome label.
    pub fn record(&mut self, endpoint: Endpoint, outcome: &str, took: Duration) {
        *self.requests.entry((endpoint, outcome.to_string())).or_default() += 1;
        if outcome == "429" {
            self.throttled += 1;
        }
        self.durations.entry(endpoint).or_default().observe(took);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_counts_overflow() {
        let mut h = Histogram::default();
        for ms in [0, 1, 3, 3000] {
            h.observe(Duration::from_millis(ms));
        }
        let cum: Vec<(f64, u64)> = h.cumulative().collect();
        assert_eq!(cum[0], (0.001, 2));
        assert_eq!(cum[1], (0.005, 3));
        assert_eq!(cum.last().unwrap().1, 3, "3 s is above the last bucket");
        assert_eq!(h.count(), 4);
        assert!((h.sum - 3.004).abs() < 1e-9);
    }

    #[test]
    fn throttles_are_counted_from_429s() {
        let mut s = ImdsStats::default();
        s.record(Endpoint::Token, "200", Duration::ZERO);
        s.record(Endpoint::Credentials, "429", Duration::ZERO);
        s.record(Endpoint::Credentials, "429", Duration::ZERO);
        assert_eq!(s.throttled, 2);
        assert_eq!(s.requests[&(Endpoint::Credentials, "429".to_string())], 2);
    }
}
