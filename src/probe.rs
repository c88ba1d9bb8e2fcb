//! Runs the probes when scraped, at most once per minimum interval each, and
//! assembles their latest results into one [`Snapshot`].
//!
//! Every probe sits in a [`Slot`]: a scrape that finds the slot's value older
//! than its minimum interval refreshes it; concurrent scrapes wait for that one
//! refresh (single flight) instead of starting their own, and a scrape whose
//! deadline passes while waiting answers with the last value it has.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use prometheus::core::Collector;
use prometheus::proto::MetricFamily;

use crate::chain::{ChainProbe, ChainRound};
use crate::clock::KernelClock;
use crate::host::{Host, RealHost};
use crate::imds::{ImdsClient, ImdsObservation, ImdsStats};
use crate::ntp::{NtpProbe, NtpReport};
use crate::timesync::TimeSyncConfig;

/// One IMDS probe and the client's counters as they were right after it.
#[derive(Debug, Clone, Default)]
pub struct ImdsReport {
    /// What the probe found.
    pub observation: ImdsObservation,
    /// Client counters (monotonic).
    pub stats: ImdsStats,
    /// How long the probe took.
    pub duration: Duration,
}

/// One NTP probe round and how long it took.
#[derive(Debug, Clone, Default)]
pub struct NtpRound {
    /// Every configured server.
    pub report: NtpReport,
    /// How long the round took.
    pub duration: Duration,
}

/// Everything a renderer needs, taken at one instant.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// This host's wall clock when the snapshot was taken; durations such as
    /// seconds-until-expiry are computed against it, as an SDK on this host would.
    pub taken_at: DateTime<Utc>,
    /// Latest IMDS probe.
    pub imds: Arc<ImdsReport>,
    /// Latest NTP round.
    pub ntp: Arc<NtpRound>,
    /// The kernel's clock state (`adjtimex`), read with the snapshot; the error if unreadable.
    pub kernel: Result<KernelClock, String>,
    /// Time daemon configuration (rescanned at most every [`TIME_SYNC_INTERVAL`]).
    pub time_sync: Arc<TimeSyncConfig>,
    /// Credential chains of the targets.
    pub chain: Arc<ChainRound>,
    /// Process metrics of the exporter itself (`process_*`).
    pub process: Arc<Vec<MetricFamily>>,
}

impl Snapshot {
    /// Both snapshots hold the very same probe results: no probe ran in
    /// between, so a page rendered from one can serve the other.
    pub fn same_probes(&self, other: &Snapshot) -> bool {
        Arc::ptr_eq(&self.imds, &other.imds)
            && Arc::ptr_eq(&self.ntp, &other.ntp)
            && Arc::ptr_eq(&self.chain, &other.chain)
            && Arc::ptr_eq(&self.time_sync, &other.time_sync)
            && Arc::ptr_eq(&self.process, &other.process)
    }
}

/// A cached probe result with single-flight refresh.
pub struct Slot<T> {
    min_interval: Duration,
    refresh: tokio::sync::Mutex<()>,
    last: Mutex<Option<(Instant, Arc<T>)>>,
}

impl<T> Slot<T> {
    /// An empty slot refreshed at most every `min_interval`.
    pub fn new(min_interval: Duration) -> Self {
        Self { min_interval, refresh: tokio::sync::Mutex::new(()), last: Mutex::new(None) }
    }

    fn fresh(&self) -> Option<Arc<T>> {
        let last = self.last.lock().expect("slot lock");
        last.as_ref().filter(|(at, _)| at.elapsed() < self.min_interval).map(|(_, v)| v.clone())
    }

    fn latest(&self) -> Option<Arc<T>> {
        self.last.lock().expect("slot lock").as_ref().map(|(_, v)| v.clone())
    }

    /// The cached value if fresh, otherwise the result of `refresh(previous)`,
    /// run by one caller at a time. Gives `None` only when nothing was ever
    /// probed and the deadline passed while waiting for another caller's probe.
    pub async fn get<F, Fut>(&self, deadline: Instant, refresh: F) -> Option<Arc<T>>
    where
        F: FnOnce(Option<Arc<T>>) -> Fut,
        Fut: Future<Output = T>,
    {
        if let Some(v) = self.fresh() {
            return Some(v);
        }
        let Ok(_guard) = tokio::time::timeout_at(deadline.into(), self.refresh.lock()).await else {
            return self.latest();
        };
        if let Some(v) = self.fresh() {
            return Some(v); // another scrape refreshed it while we waited
        }
        let value = Arc::new(refresh(self.latest()).await);
        *self.last.lock().expect("slot lock") = Some((Instant::now(), value.clone()));
        Some(value)
    }
}

/// Owns the probes and their slots.
pub struct Prober {
    imds: Arc<ImdsClient>,
    imds_slot: Slot<ImdsReport>,
    ntp: NtpProbe,
    ntp_slot: Slot<NtpRound>,
    host: Arc<dyn Host>,
    time_sync_slot: Slot<TimeSyncConfig>,
    chain: Arc<ChainProbe>,
    chain_slot: Slot<ChainRound>,
    process_slot: Slot<Vec<MetricFamily>>,
}

/// The exporter's own process metrics (several `/proc/self` reads) are
/// refreshed at most this often: a scrape storm does not multiply them.
pub const PROCESS_INTERVAL: Duration = Duration::from_secs(1);

/// Time daemon configuration changes rarely: rescan at most this often.
pub const TIME_SYNC_INTERVAL: Duration = Duration::from_secs(60);

impl Prober {
    /// A prober that probes IMDS at most every `imds_interval` and NTP
    /// servers at most every `ntp_interval` (the NTP probe's own poll interval).
    /// The chain is evaluated as often as IMDS is probed (it needs IMDS's answer).
    pub fn new(imds: ImdsClient, imds_interval: Duration, ntp: NtpProbe, ntp_interval: Duration, chain: ChainProbe) -> Self {
        Self {
            imds: Arc::new(imds),
            imds_slot: Slot::new(imds_interval),
            ntp,
            ntp_slot: Slot::new(ntp_interval),
            host: Arc::new(RealHost::default()),
            time_sync_slot: Slot::new(TIME_SYNC_INTERVAL),
            chain: Arc::new(chain),
            chain_slot: Slot::new(imds_interval),
            process_slot: Slot::new(PROCESS_INTERVAL),
        }
    }

    /// Replaces the machine the probes read locally (a simulated instance in `demo`).
    pub fn with_host(mut self, host: Arc<dyn Host>) -> Self {
        self.host = host;
        self
    }

    /// A snapshot whose probes finished no later than `deadline` (a probe still
    /// running then is abandoned and reported as failed, keeping last known values).
    pub async fn snapshot(&self, deadline: Instant) -> Snapshot {
        let host = self.host.clone();
        // The chain needs to know whether IMDS has a role, so it runs after IMDS.
        let imds_then_chain = async {
            let imds = self.imds_slot.get(deadline, |prev| probe_imds(&self.imds, prev, deadline)).await.unwrap_or_default();
            let has_role = imds.observation.instance_profile_attached;
            let chain = self
                .chain_slot
                .get(deadline, |prev| probe_chain(&self.chain, self.host.clone(), has_role, prev, deadline))
                .await
                .unwrap_or_default();
            (imds, chain)
        };
        let ((imds, chain), ntp, time_sync) = tokio::join!(
            imds_then_chain,
            self.ntp_slot.get(deadline, |_| probe_ntp(&self.ntp, deadline)),
            self.time_sync_slot.get(deadline, |prev| async move {
                // A hung file system must not hold the scrape: past the deadline, keep the last scan.
                let scan = tokio::task::spawn_blocking(move || host.time_sync_config());
                match tokio::time::timeout_at(deadline.into(), scan).await {
                    Ok(Ok(config)) => config,
                    _ => prev.map(|p| (*p).clone()).unwrap_or_default(),
                }
            }),
        );
        Snapshot {
            taken_at: Utc::now(),
            imds,
            chain,
            ntp: ntp.unwrap_or_default(),
            kernel: self.host.kernel_clock(),
            time_sync: time_sync.unwrap_or_default(),
            process: self.process_slot.get(deadline, |_| async { process_metrics() }).await.unwrap_or_default(),
        }
    }
}

async fn probe_imds(client: &ImdsClient, prev: Option<Arc<ImdsReport>>, deadline: Instant) -> ImdsReport {
    let started = Instant::now();
    let observation = match tokio::time::timeout_at(deadline.into(), client.probe()).await {
        Ok(o) => o,
        Err(_) => ImdsObservation {
            error: Some(format!(
                "IMDS probe did not finish within the scrape deadline ({:?})",
                deadline.saturating_duration_since(started)
            )),
            ..Default::default()
        },
    };
    let observation = match &prev {
        Some(p) => observation.carry_forward(&p.observation),
        None => observation,
    };
    log_transition(prev.as_deref().map(|p| &p.observation), &observation);
    log_odd_expiry(prev.as_deref().map(|p| &p.observation), &observation, Utc::now());
    ImdsReport { observation, stats: client.stats(), duration: started.elapsed() }
}

/// The chain of every target, or, when the deadline passes first, the last
/// result (series are kept rather than dropped).
async fn probe_chain(
    probe: &Arc<ChainProbe>,
    host: Arc<dyn Host>,
    has_role: Option<bool>,
    prev: Option<Arc<ChainRound>>,
    deadline: Instant,
) -> ChainRound {
    match tokio::time::timeout_at(deadline.into(), probe.clone().probe(host, has_role)).await {
        Ok(Some(round)) => round,
        Ok(None) => prev.map(|p| (*p).clone()).unwrap_or_else(|| probe.empty_round()),
        Err(_) => {
            tracing::warn!("credential chain probe did not finish within the scrape deadline; keeping the last result");
            prev.map(|p| (*p).clone()).unwrap_or_else(|| probe.empty_round())
        }
    }
}

async fn probe_ntp(probe: &NtpProbe, deadline: Instant) -> NtpRound {
    let started = Instant::now();
    let report = probe.probe(deadline).await;
    NtpRound { report, duration: started.elapsed() }
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

fn process_metrics() -> Vec<MetricFamily> {
    prometheus::process_collector::ProcessCollector::for_self().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn slot_refreshes_once_per_interval() {
        let slot = Slot::new(Duration::from_secs(60));
        let runs = AtomicU32::new(0);
        for _ in 0..10 {
            let v = slot.get(soon(), |_| async { runs.fetch_add(1, Ordering::SeqCst) }).await;
            assert_eq!(*v.unwrap(), 0);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_refresh() {
        let slot = Arc::new(Slot::new(Duration::from_secs(60)));
        let runs = Arc::new(AtomicU32::new(0));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (slot, runs) = (slot.clone(), runs.clone());
                tokio::spawn(async move {
                    slot.get(soon(), |_| async move {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        runs.fetch_add(1, Ordering::SeqCst)
                    })
                    .await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(*t.await.unwrap().unwrap(), 0);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn stale_value_is_refreshed_with_the_previous_one_at_hand() {
        let slot = Slot::new(Duration::ZERO);
        slot.get(soon(), |prev| async move { prev.map_or(1, |p| *p + 1) }).await;
        let v = slot.get(soon(), |prev| async move { prev.map_or(1, |p| *p + 1) }).await;
        assert_eq!(*v.unwrap(), 2);
    }

    #[tokio::test]
    async fn a_waiter_past_its_deadline_gets_the_last_value() {
        let slot = Arc::new(Slot::new(Duration::ZERO));
        slot.get(soon(), |_| async { 7 }).await;
        let s2 = slot.clone();
        let slow = tokio::spawn(async move {
            s2.get(soon(), |_| async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                8
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let v = slot.get(Instant::now() + Duration::from_millis(20), |_| async { 9 }).await;
        assert_eq!(*v.unwrap(), 7, "waiter answers with the last value instead of blocking");
        assert_eq!(*slow.await.unwrap().unwrap(), 8);
    }
}
