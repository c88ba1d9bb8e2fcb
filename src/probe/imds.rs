//! The IMDS probe driver: one [`ImdsClient::probe`] under the client's
//! budget ([`ImdsClient::budget`]), last known credentials carried through a
//! failure, state changes logged once.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::{ErrorKind, Outcome, ProbeError};
use crate::imds::{ImdsClient, ImdsObservation, ImdsStats};

/// One IMDS probe and the client's counters as they were right after it.
#[derive(Debug, Clone, Default)]
pub struct ImdsReport {
    /// What the probe found.
    pub observation: ImdsObservation,
    /// Client counters (monotonic), every attempt of this probe included.
    pub stats: ImdsStats,
}

/// Runs one probe within the client's budget; `prev` is the last result.
pub async fn run(client: &ImdsClient, prev: Option<Arc<Outcome<ImdsReport>>>) -> Outcome<ImdsReport> {
    let started = Instant::now();
    let budget = client.budget();
    let observation = match tokio::time::timeout(budget, client.probe()).await {
        Ok(o) => o,
        Err(_) => ImdsObservation {
            error: Some(format!(
                "IMDS probe did not finish within its budget of {budget:?} (--imds.timeout x --imds.attempts per request): IMDS answers too slowly to use"
            )),
            error_kind: Some(ErrorKind::Budget),
            ..Default::default()
        },
    };
    let previous = prev.as_deref().map(|p| &p.observation);
    let observation = match previous {
        Some(p) => observation.carry_forward(p),
        None => observation,
    };
    log_transition(previous, &observation);
    log_odd_expiry(previous, &observation, Utc::now());
    let error = observation.error.as_ref().map(|m| ProbeError::new(observation.error_kind.unwrap_or(ErrorKind::Io), m.clone()));
    // Read after the probe ended (or was ended): every attempt is in the counters.
    Outcome { value: ImdsReport { observation, stats: client.stats() }, duration: started.elapsed(), error }
}

/// Logs a failure once per change of state rather than on every scrape.
fn log_transition(prev: Option<&ImdsObservation>, now: &ImdsObservation) {
    let was_up = prev.is_some_and(ImdsObservation::up);
    match (&now.error, now.up()) {
        (Some(e), _) if prev.and_then(|p| p.error.as_ref()) != Some(e) => tracing::warn!(error = %e, "IMDS probe failed"),
        (None, true) if !was_up => tracing::info!(role = now.role.as_deref().unwrap_or(""), "IMDS credentials readable"),
        (None, false) if now.instance_profile_attached == Some(false) && prev.and_then(|p| p.instance_profile_attached) != Some(false) => {
            tracing::warn!("no instance profile is attached to this instance (IMDS role listing is 404)")
        }
        (None, false) => {
            if let Some(c) = now.credentials.as_ref().filter(|c| !c.is_success())
                && prev.and_then(|p| p.credentials.as_ref()).map(|p| &p.code) != Some(&c.code)
            {
                tracing::warn!(code = %c.code, "IMDS credential document reports an error code");
            }
        }
        _ => {}
    }
}

/// IAM sessions last 12 hours at most; an expiry further away than this (with
/// room for clock error) is not one IMDS would serve.
pub const MAX_PLAUSIBLE_LIFETIME: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// Warns once per freshly read credential document whose expiry is odd: already
/// passed (the document is still exported: negative seconds until expiry is what
/// the expired-credentials alert reads), or further away than any IAM session lasts.
fn log_odd_expiry(prev: Option<&ImdsObservation>, now: &ImdsObservation, at: DateTime<Utc>) {
    let expiration = |o: &ImdsObservation| o.credentials.as_ref().and_then(|c| c.expiration);
    let Some(expires) = expiration(now).filter(|_| now.up()) else { return };
    if prev.and_then(expiration) == Some(expires) {
        return;
    }
    if expires <= at {
        tracing::warn!(%expires, "IMDS serves credentials that have already expired: requests signed with them fail with ExpiredToken (IMDS rotation stuck, or this host's clock ahead?)");
    } else if expires - at > MAX_PLAUSIBLE_LIFETIME {
        tracing::warn!(%expires, "IMDS serves credentials that expire later than any IAM session lasts (12 hours at most): is this host's clock behind, or --imds.endpoint not IMDS?");
    }
}
