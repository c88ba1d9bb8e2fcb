//! Exponential backoff with full jitter ("Exponential Backoff And Jitter",
//! AWS Architecture Blog): sleep a random time in `[0, min(cap, base * 2^n))`,
//! so that many clients retrying a throttled IMDS spread out instead of
//! retrying in lockstep.

use std::time::Duration;

/// First backoff ceiling.
pub const BASE: Duration = Duration::from_millis(50);
/// Largest backoff ceiling.
pub const CAP: Duration = Duration::from_secs(1);

/// The ceiling before the `retry`-th retry (0-based).
pub fn ceiling(retry: u32) -> Duration {
    BASE.saturating_mul(1u32 << retry.min(16)).min(CAP)
}

/// A random delay below [`ceiling`].
pub fn full_jitter(retry: u32) -> Duration {
    let max = ceiling(retry).as_micros() as u64;
    Duration::from_micros(fastrand::u64(0..max.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_up_to_the_cap() {
        let c: Vec<u128> = (0..7).map(|r| ceiling(r).as_millis()).collect();
        assert_eq!(c, [50, 100, 200, 400, 800, 1000, 1000]);
        assert_eq!(ceiling(u32::MAX), CAP);
    }

    #[test]
    fn jitter_stays_below_the_ceiling_and_varies() {
        for retry in 0..8 {
            let samples: Vec<Duration> = (0..200).map(|_| full_jitter(retry)).collect();
            assert!(samples.iter().all(|d| *d < ceiling(retry)));
            assert!(samples.iter().any(|d| *d != samples[0]), "full jitter is random");
        }
    }
}
