//! Runs the probes when scraped, at most once per minimum interval each, and
//! assembles their latest results into one [`Snapshot`].
//!
//! # The probe contract
//!
//! Every probe driver (one file each: [`imds`], [`ntp`], [`chain`],
//! [`time_sync`], [`kernel`]) takes its **own budget** and returns one shape,
//! an [`Outcome`]: the value, how long the probe ran, and on failure a
//! [`ProbeError`] whose [`ErrorKind`] renderers match on (the message is for
//! people). Each outcome becomes `aws_credentials_exporter_probe_success{probe}`
//! and `aws_credentials_exporter_probe_duration_seconds{probe}`.
//!
//! # Budgets belong to probes, deadlines to requests
//!
//! Every cached probe sits in a [`Slot`]: a scrape that finds the value older
//! than the slot's minimum interval starts one refresh in a task of its own
//! (single flight; concurrent scrapes wait for that one), under the probe's
//! budget. A scrape's deadline (from `X-Prometheus-Scrape-Timeout-Seconds`)
//! only bounds how long *that scrape* waits: when it comes first, the scrape
//! answers with the last complete result and the probe runs on for the next
//! one. So no request, however impatient, can cut a probe short or cache a
//! failure for everybody else. A probe that overruns its own budget has
//! failed for real (the peer is too slow): that failure is cached, with
//! [`ErrorKind::Budget`].
//!
//! Budgets, derived from the configuration so that they bound what the probe
//! may legitimately take:
//! - IMDS: [`imds::budget`], the requests of one probe (token, role,
//!   credentials, info), each with all its attempts and backoffs;
//! - NTP: [`crate::ntp::NtpProbe::budget`], name resolution and every sample
//!   of a round, each with its timeout, plus the spacing between samples;
//! - chain: [`crate::chain::ChainProbe::budget`], file reads plus one
//!   container-credentials request per target;
//! - time daemon files: [`time_sync::BUDGET`];
//! - kernel clock: one `adjtimex` call, which cannot be cut short.

pub mod chain;
pub mod imds;
pub mod kernel;
pub mod ntp;
pub mod slot;
pub mod time_sync;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use tokio::time::Instant;

use crate::chain::{ChainProbe, ChainRound};
use crate::clock::KernelClock;
use crate::host::{Host, RealHost};
use crate::imds::ImdsClient;
use crate::ntp::NtpProbe;
use crate::timesync::TimeSyncConfig;

pub use imds::ImdsReport;
pub use ntp::NtpRound;
pub use slot::Slot;

/// Why a probe failed, for renderers to match on; the label-free companion of
/// every `ProbeError`'s message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No run of the probe has completed yet (the first is still running).
    Pending,
    /// The probe did not finish within its own budget.
    Budget,
    /// A request got no answer within its timeout.
    Timeout,
    /// The peer could not be reached: connection refused or reset, name not resolved, socket error.
    Unreachable,
    /// The peer answered with a status that cannot be used (HTTP 4xx/5xx).
    Status,
    /// The answer cannot be used (oversized or broken body, document, packet).
    Malformed,
    /// Switched off by configuration (`AWS_EC2_METADATA_DISABLED`).
    Disabled,
    /// The IMDSv2 token is unavailable and `AWS_EC2_METADATA_V1_DISABLED` forbids IMDSv1.
    V1Disabled,
    /// An NTP server sent a kiss-o'-death.
    KissOfDeath,
    /// An NTP server is not synchronised, or too unsure of its time to use.
    Unsynchronized,
    /// Not allowed to read it (another user's process or file).
    PermissionDenied,
    /// It does not exist (no matching process, a file that is gone).
    NotFound,
    /// Any other local read failure.
    Io,
}

impl ErrorKind {
    /// A stable lower-case name, for logs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Pending => "pending",
            ErrorKind::Budget => "budget",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::Status => "status",
            ErrorKind::Malformed => "malformed",
            ErrorKind::Disabled => "disabled",
            ErrorKind::V1Disabled => "v1_disabled",
            ErrorKind::KissOfDeath => "kiss_of_death",
            ErrorKind::Unsynchronized => "unsynchronized",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Io => "io",
        }
    }
}

/// A probe's failure: a kind to decide by and a message for people (never a secret).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ProbeError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// What failed, where, and what to do.
    pub message: String,
}

impl ProbeError {
    /// A failure of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }
}

/// What every probe returns: its value, how long it ran, and why it failed.
/// Dereferences to the value.
#[derive(Debug, Clone, Default)]
pub struct Outcome<T> {
    /// What the probe found (on failure: what it still knows, e.g. last known values).
    pub value: T,
    /// How long the probe ran.
    pub duration: Duration,
    /// `None` when the probe succeeded (`aws_credentials_exporter_probe_success` 1).
    pub error: Option<ProbeError>,
}

impl<T> Outcome<T> {
    /// `aws_credentials_exporter_probe_success`.
    pub fn success(&self) -> bool {
        self.error.is_none()
    }

    /// The error's kind, if the probe failed.
    pub fn error_kind(&self) -> Option<ErrorKind> {
        self.error.as_ref().map(|e| e.kind)
    }
}

impl<T: Default> Outcome<T> {
    /// What a snapshot holds for a probe that has never completed.
    pub fn pending() -> Arc<Self> {
        let error = ProbeError::new(ErrorKind::Pending, "the first run of this probe has not finished yet");
        Arc::new(Self { value: T::default(), duration: Duration::ZERO, error: Some(error) })
    }
}

impl<T> std::ops::Deref for Outcome<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// The probes, by their `probe` label, in the order metrics list them.
pub const PROBES: [&str; 5] = ["imds", "ntp", "chain", "time_sync", "kernel"];

/// Everything a renderer needs, taken at one instant.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// This host's wall clock when the snapshot was taken; durations such as
    /// seconds-until-expiry are computed against it, as an SDK on this host would.
    pub taken_at: DateTime<Utc>,
    /// Latest IMDS probe.
    pub imds: Arc<Outcome<ImdsReport>>,
    /// Latest NTP round.
    pub ntp: Arc<Outcome<NtpRound>>,
    /// The kernel's clock state (`adjtimex`), read with the snapshot; `None` (and the error) if unreadable.
    pub kernel: Arc<Outcome<Option<KernelClock>>>,
    /// Time daemon configuration (rescanned at most every [`TIME_SYNC_INTERVAL`]).
    pub time_sync: Arc<Outcome<TimeSyncConfig>>,
    /// Credential chains of the targets.
    pub chain: Arc<Outcome<ChainRound>>,
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

    /// Every probe's label, success and duration, in [`PROBES`] order.
    pub fn probe_outcomes(&self) -> [(&'static str, bool, Duration); 5] {
        [
            ("imds", self.imds.success(), self.imds.duration),
            ("ntp", self.ntp.success(), self.ntp.duration),
            ("chain", self.chain.success(), self.chain.duration),
            ("time_sync", self.time_sync.success(), self.time_sync.duration),
            ("kernel", self.kernel.success(), self.kernel.duration),
        ]
    }
}

/// Owns the probes and their slots.
pub struct Prober {
    imds: Arc<ImdsClient>,
    imds_slot: Slot<Outcome<ImdsReport>>,
    ntp: Arc<NtpProbe>,
    ntp_slot: Slot<Outcome<NtpRound>>,
    host: Arc<dyn Host>,
    time_sync_slot: Slot<Outcome<TimeSyncConfig>>,
    chain: Arc<ChainProbe>,
    chain_slot: Slot<Outcome<ChainRound>>,
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
            ntp: Arc::new(ntp),
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

    /// A snapshot of the latest complete results, waiting until `deadline` at
    /// most for the probes that are due. A probe still running at `deadline`
    /// keeps running under its own budget; this snapshot has its last result.
    pub async fn snapshot(&self, deadline: std::time::Instant) -> Snapshot {
        let deadline = Instant::from_std(deadline);
        // The chain needs to know whether IMDS has a role, so it waits for IMDS.
        let imds_then_chain = async {
            let client = self.imds.clone();
            let imds = self
                .imds_slot
                .get(deadline, |prev| async move { Some(imds::run(&client, prev).await) })
                .await
                .unwrap_or_else(Outcome::pending);
            let has_role = imds.observation.instance_profile_attached;
            let (probe, host) = (self.chain.clone(), self.host.clone());
            let chain = self.chain_slot.get(deadline, |prev| chain::run(probe, host, has_role, prev)).await.unwrap_or_else(|| {
                let pending = Outcome::<ChainRound>::pending();
                Arc::new(Outcome { value: self.chain.empty_round(), ..(*pending).clone() })
            });
            (imds, chain)
        };
        let (ntp_probe, host) = (self.ntp.clone(), self.host.clone());
        let ((imds, chain), ntp, time_sync) = tokio::join!(
            imds_then_chain,
            self.ntp_slot.get(deadline, |_| async move { Some(ntp::run(&ntp_probe).await) }),
            self.time_sync_slot.get(deadline, |prev| async move { Some(time_sync::run(host, prev, time_sync::BUDGET).await) }),
        );
        let process = self.process_slot.get(deadline, |_| async { Some(process_metrics()) }).await.unwrap_or_default();
        Snapshot {
            taken_at: Utc::now(),
            imds,
            chain,
            // Before the first round ends, every configured server is there, not up.
            ntp: ntp.unwrap_or_else(|| {
                let pending = Outcome::<NtpRound>::pending();
                Arc::new(Outcome { value: NtpRound { report: self.ntp.current() }, ..(*pending).clone() })
            }),
            kernel: Arc::new(kernel::run(&*self.host)),
            time_sync: time_sync.unwrap_or_else(Outcome::pending),
            process,
        }
    }
}

fn process_metrics() -> Vec<MetricFamily> {
    prometheus::process_collector::ProcessCollector::for_self().collect()
}
