//! The NTP probe driver: one round of [`NtpProbe::probe`] under the probe's
//! budget ([`NtpProbe::budget`]).

use tokio::time::Instant;

use super::{ErrorKind, Outcome, ProbeError};
use crate::ntp::{NtpProbe, NtpReport};

/// One NTP probe round.
#[derive(Debug, Clone, Default)]
pub struct NtpRound {
    /// Every configured server.
    pub report: NtpReport,
}

/// Runs one round within the probe's budget. The probe succeeds when at least
/// one server answered (the offset is measured); otherwise the error is the
/// first server's.
pub async fn run(probe: &NtpProbe) -> Outcome<NtpRound> {
    let started = Instant::now();
    let deadline = started + probe.budget();
    let report = probe.probe(deadline.into_std()).await;
    let error = if report.servers.iter().any(|r| r.up) {
        None
    } else {
        Some(match report.servers.iter().find(|r| r.error.is_some()) {
            Some(r) => ProbeError::new(r.error_kind.unwrap_or(ErrorKind::Timeout), r.error.clone().unwrap_or_default()),
            None => ProbeError::new(ErrorKind::NotFound, "no NTP server is configured"),
        })
    };
    Outcome { value: NtpRound { report }, duration: started.elapsed(), error }
}
