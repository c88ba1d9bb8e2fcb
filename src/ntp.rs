//! SNTP probe of the configured time servers (on EC2, the Amazon Time Sync
//! Service at 169.254.169.123 or fd00:ec2::123) -> one [`ServerReport`] per
//! server in an [`NtpReport`].
//!
//! # Why sntpc, and what is added here
//! sntpc 0.11 validates a reply the way RFC 5905 Appendix A.5.1.1 and RFC 4330
//! §5 ask, and reports each check as its own error: origin timestamp equal to
//! our transmit timestamp, mode 4, version, stratum 0 as a kiss-o'-death with
//! its code, leap indicator 3, stratum 16 and above, zero transmit timestamp,
//! reference timestamp after transmit timestamp. Its result carries stratum,
//! leap, root delay and dispersion and the reference ID, so nothing needs a
//! parser of our own. Its offsets and delays are wrapping 64-bit differences of
//! timestamps (RFC 5905 §6), which stay right across the 2036 era rollover as
//! long as the two clocks are within 68 years of each other; RFC 4330 §3's
//! "bit 0 not set: 2036-2104" rule is the fixed-pivot form of the same idea.
//! This module adds:
//! - reading on after a datagram that is not the reply: from another address,
//!   with another origin, or shorter than 48 bytes. Such packets are counted
//!   and dropped (RFC 5905 §8: "bogus" packets) and we keep waiting for the
//!   reply until the timeout, so an off-path attacker cannot end a probe;
//! - the root distance limit of 1.5 s (sntpc only rejects 16 s);
//! - telling a stratum 0 packet without a kiss code (unsynchronized) from a KoD;
//! - the KoD policy (RFC 5905 §7.4), poll intervals, the clock filter, counters;
//! - the sign: sntpc gives server minus local, we report local minus server.
//!
//! Anti-spoofing: sntpc's transmit timestamp is the real time in microseconds,
//! not randomized; each request also goes out from a fresh socket on a random
//! ephemeral port, so an off-path attacker must guess both.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sntpc::{Error as SntpError, KissOfDeathCode, NtpContext, NtpResult, NtpTimestampGenerator, NtpUdpSocket};
use sntpc_net_tokio::UdpSocketWrapper;
use tokio::net::UdpSocket;
use tokio::task::JoinSet;

use crate::probe::ErrorKind;

/// Every failure reason, the label values of `failures_total`.
pub const FAILURE_REASONS: [&str; 10] = [
    "timeout",
    "kiss_of_death",
    "unsynchronized",
    "bad_origin",
    "bad_mode",
    "malformed",
    "root_distance",
    "resolve",
    "network",
    "rate_limited_locally",
];

/// Kiss codes this probe acts on (RFC 5905 §7.4), exported from the start
/// (at 0) so that `increase()` sees the first; other codes appear when they occur.
pub const KISS_CODES: [&str; 3] = ["RATE", "DENY", "RSTR"];

/// Largest acceptable root distance (root delay / 2 + root dispersion + delay / 2).
/// RFC 5905 Appendix A.1.1 sets MAXDIST to 1 s; ntpd's `tos maxdist` default,
/// the value servers are judged by in practice, is 1.5 s.
pub const MAX_ROOT_DISTANCE_SECONDS: f64 = 1.5;
/// Default spacing between the samples of one round: RFC 4330 §10 forbids
/// sending requests to a server at intervals shorter than 15 s in normal
/// operation; a burst of a few samples 2 s apart is what ntpd's `iburst` sends.
pub const SAMPLE_SPACING: Duration = Duration::from_secs(2);
/// Longest poll interval after repeated RATE kisses: RFC 5905 MAXPOLL 17 (36.4 h).
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(1 << 17);
/// Shortest poll interval after a RATE kiss: RFC 5905 MINPOLL 4 (16 s).
pub const MIN_KOD_POLL_INTERVAL: Duration = Duration::from_secs(1 << 4);

/// What to probe and how often.
#[derive(Debug, Clone, PartialEq)]
pub struct NtpConfig {
    /// Servers as `host:port` (`[v6]:port` for IPv6 literals).
    pub servers: Vec<String>,
    /// How long to wait for one reply.
    pub timeout: Duration,
    /// Samples per round (at least 1); the one with the smallest delay is kept.
    pub samples: u32,
    /// Base poll interval: a server is not queried again before it has passed.
    pub min_interval: Duration,
}

/// One valid reply.
#[derive(Debug, Clone, PartialEq)]
pub struct NtpSample {
    /// This host's clock minus the server's: positive means this host is ahead.
    pub offset_seconds: f64,
    /// Round-trip delay, less the server's processing time.
    pub rtt_seconds: f64,
    /// Server stratum (1-15).
    pub stratum: u8,
    /// Leap indicator: 0 none, 1 last minute has 61 s, 2 last minute has 59 s.
    pub leap: u8,
    /// Server's round-trip delay to its reference clock.
    pub root_delay_seconds: f64,
    /// Server's dispersion relative to its reference clock.
    pub root_dispersion_seconds: f64,
    /// Reference ID: an ASCII clock name at stratum 1 (`GPS`), else a dotted IPv4 address.
    pub reference_id: String,
}

impl NtpSample {
    /// Bound on how far this host's clock is from true time:
    /// `|offset| + root_dispersion + rtt / 2 + root_delay / 2`.
    pub fn error_bound_seconds(&self) -> f64 {
        self.offset_seconds.abs() + self.root_dispersion_seconds + self.rtt_seconds / 2.0 + self.root_delay_seconds / 2.0
    }

    /// Root distance as RFC 5905 Appendix A.5.5.2 `root_dist()` without jitter:
    /// `(root_delay + rtt) / 2 + root_dispersion`.
    pub fn root_distance_seconds(&self) -> f64 {
        (self.root_delay_seconds + self.rtt_seconds) / 2.0 + self.root_dispersion_seconds
    }
}

/// All servers after one probe round.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NtpReport {
    /// One per configured server, in configuration order.
    pub servers: Vec<ServerReport>,
}

/// One server's state after a probe round; counters are monotonic.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerReport {
    /// The server as configured.
    pub server: String,
    /// The last round that queried the server got a valid sample (kept while the server is not due).
    pub up: bool,
    /// The last valid sample, possibly from an earlier round (see `up`, `last_success`).
    pub sample: Option<NtpSample>,
    /// Why the last round failed, or why polling stopped (`NTP server <server>: <why>`).
    pub error: Option<String>,
    /// The kind of `error`, for renderers to match on.
    pub error_kind: Option<ErrorKind>,
    /// Requests sent.
    pub requests_total: u64,
    /// Failed requests and skipped rounds by reason; every reason in [`FAILURE_REASONS`] is present.
    pub failures_total: BTreeMap<String, u64>,
    /// Kiss-o'-death replies by code (`RATE`, `DENY`, ...; unregistered codes as `other`).
    pub kiss_of_death_total: BTreeMap<String, u64>,
    /// The server sent DENY or RSTR: it is not queried again until restart (RFC 5905 §7.4).
    pub polling_stopped: bool,
    /// Current poll interval: the base interval, doubled by each RATE kiss.
    pub poll_interval: Duration,
    /// Datagrams received while waiting for a reply that were not the reply
    /// (other source address, wrong origin timestamp, too short): ignored.
    pub ignored_packets_total: u64,
    /// When the last valid sample was taken.
    pub last_success: Option<SystemTime>,
}

impl ServerReport {
    fn new(server: &str, poll_interval: Duration) -> Self {
        Self {
            server: server.to_string(),
            up: false,
            sample: None,
            error: None,
            error_kind: None,
            requests_total: 0,
            failures_total: FAILURE_REASONS.iter().map(|r| (r.to_string(), 0)).collect(),
            kiss_of_death_total: BTreeMap::new(),
            polling_stopped: false,
            poll_interval,
            ignored_packets_total: 0,
            last_success: None,
        }
    }
}

/// Why a request or round failed; [`NtpError::reason`] gives the label value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum NtpError {
    /// No valid reply in time.
    #[error(
        "no reply within {0:?}; is UDP port 123 to the server open? (security groups do not apply to the link-local \
         Amazon Time Sync Service, but host firewalls and container network namespaces do)"
    )]
    Timeout(Duration),
    /// The scrape deadline left no time for a request.
    #[error("the scrape deadline passed before the server could be queried")]
    NoTime,
    /// Stratum 0 with a kiss code (RFC 5905 §7.4).
    #[error("kiss-o'-death {code}: {}", kiss_meaning(code))]
    KissOfDeath {
        /// The code, or `other` for unregistered codes.
        code: String,
    },
    /// The server says it is not synchronized.
    #[error("server is not synchronized: {0}")]
    Unsynchronized(String),
    /// Replies came back with another origin timestamp than our transmit timestamp.
    #[error("replies carried a wrong origin timestamp (stale, duplicated or spoofed) and were ignored")]
    BadOrigin,
    /// The reply is not in server mode.
    #[error("reply is not in server mode (4)")]
    BadMode,
    /// The reply cannot be used.
    #[error("malformed reply: {0}")]
    Malformed(&'static str),
    /// The server is too far from, or too unsure of, its reference clock.
    #[error("root distance {0:.3} s exceeds {MAX_ROOT_DISTANCE_SECONDS} s: the server's time is too uncertain to use")]
    RootDistance(f64),
    /// The server name did not resolve.
    #[error("cannot resolve the server address: {0} (expected host:port)")]
    Resolve(String),
    /// A socket could not be opened or used.
    #[error("network error: {0}")]
    Network(String),
}

impl NtpError {
    /// The probe contract's kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Timeout(_) | Self::NoTime => ErrorKind::Timeout,
            Self::KissOfDeath { .. } => ErrorKind::KissOfDeath,
            Self::Unsynchronized(_) | Self::RootDistance(_) => ErrorKind::Unsynchronized,
            Self::BadOrigin | Self::BadMode | Self::Malformed(_) => ErrorKind::Malformed,
            Self::Resolve(_) | Self::Network(_) => ErrorKind::Unreachable,
        }
    }

    /// The stable label value for `failures_total`, one of [`FAILURE_REASONS`].
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Timeout(_) | Self::NoTime => "timeout",
            Self::KissOfDeath { .. } => "kiss_of_death",
            Self::Unsynchronized(_) => "unsynchronized",
            Self::BadOrigin => "bad_origin",
            Self::BadMode => "bad_mode",
            Self::Malformed(_) => "malformed",
            Self::RootDistance(_) => "root_distance",
            Self::Resolve(_) => "resolve",
            Self::Network(_) => "network",
        }
    }
}

/// What a kiss code means and what this probe does about it (RFC 5905 §7.4).
fn kiss_meaning(code: &str) -> &'static str {
    match code {
        "RATE" => "the server asks for fewer requests; the poll interval to it is doubled",
        "DENY" => "the server denies access; it is not queried again until the exporter restarts",
        "RSTR" => "the server restricts access; it is not queried again until the exporter restarts",
        _ => "no action needed; the reply is discarded",
    }
}

/// The label for a kiss code, or `None` when the stratum 0 packet carries no
/// kiss code at all (RFC 5905 §7.3: stratum 0 is "unspecified or invalid").
fn kiss_label(code: &KissOfDeathCode) -> Option<String> {
    match code {
        // Unregistered codes (`X...` experiments, typos) share one label to bound label cardinality.
        KissOfDeathCode::Experimental(b) => b.iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()).then(|| "other".to_string()),
        known => Some(known.as_str().to_string()),
    }
}

/// sntpc's validation errors -> ours. The three "not our reply" errors never
/// reach here as failures: [`exchange`] reads on after them.
fn classify(e: SntpError) -> NtpError {
    match e {
        SntpError::IncorrectOriginTimestamp => NtpError::BadOrigin,
        SntpError::IncorrectMode => NtpError::BadMode,
        SntpError::KissOfDeath(code) => match kiss_label(&code) {
            Some(code) => NtpError::KissOfDeath { code },
            None => NtpError::Unsynchronized("stratum 0 without a kiss code".into()),
        },
        SntpError::UnsynchronizedClock => NtpError::Unsynchronized("leap indicator 3 (alarm)".into()),
        SntpError::IncorrectStratumHeaders => NtpError::Unsynchronized("stratum 16 or above".into()),
        SntpError::InvalidTimestamp => NtpError::Malformed("zero transmit timestamp"),
        SntpError::BackwardReferenceTimestamp => NtpError::Malformed("reference timestamp later than transmit timestamp"),
        SntpError::IncorrectResponseVersion => NtpError::Malformed("unsupported NTP version"),
        SntpError::IncorrectPayload => NtpError::Malformed("shorter than 48 bytes"),
        SntpError::ExcessiveRootDistance => NtpError::RootDistance(16.0),
        SntpError::Network => NtpError::Network("receiving the reply failed".into()),
        SntpError::AddressResolve => NtpError::Resolve("sntpc could not resolve it".into()),
        SntpError::ResponseAddressMismatch => NtpError::Malformed("reply from another address"),
        _ => NtpError::Malformed("rejected by sntpc"),
    }
}

/// Reference ID as RFC 5905 §7.3 reads it: four ASCII characters at stratum 1
/// (NUL padded), an IPv4 address (or an IPv6 address hash) from stratum 2 on.
fn reference_id(stratum: u8, id: [u8; 4]) -> String {
    if stratum <= 1 {
        let name = id.iter().copied().take_while(|&c| c != 0).collect::<Vec<u8>>();
        if !name.is_empty() && name.iter().all(u8::is_ascii_graphic) {
            return String::from_utf8_lossy(&name).into_owned();
        }
    }
    Ipv4Addr::from(id).to_string()
}

/// An accepted sntpc result -> [`NtpSample`], or `root_distance` when too far.
fn sample_from(r: &NtpResult) -> Result<NtpSample, NtpError> {
    let sample = NtpSample {
        // sntpc: theta = T(B) - T(A), server minus client, in microseconds.
        offset_seconds: -(r.offset() as f64) / 1e6,
        rtt_seconds: r.roundtrip() as f64 / 1e6,
        stratum: r.stratum(),
        leap: r.leap_indicator(),
        root_delay_seconds: f64::from(r.root_delay()) / 65_536.0,
        root_dispersion_seconds: f64::from(r.root_dispersion()) / 65_536.0,
        reference_id: reference_id(r.stratum(), r.reference_id()),
    };
    match sample.root_distance_seconds() {
        d if d > MAX_ROOT_DISTANCE_SECONDS => Err(NtpError::RootDistance(d)),
        _ => Ok(sample),
    }
}

/// This host's wall clock for sntpc; unlike sntpc's `StdTimestampGen` it does
/// not panic on a clock set before 1970.
#[derive(Debug, Clone, Copy, Default)]
struct SystemClock(Duration);

impl NtpTimestampGenerator for SystemClock {
    fn init(&mut self) {
        self.0 = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    }

    fn timestamp_sec(&self) -> u64 {
        self.0.as_secs()
    }

    fn timestamp_subsec_micros(&self) -> u32 {
        self.0.subsec_micros()
    }
}

/// Settings shared by the per-server tasks.
#[derive(Debug, Clone)]
struct Settings {
    timeout: Duration,
    samples: u32,
    spacing: Duration,
}

/// What one round of requests to one server produced.
#[derive(Debug, Default)]
struct Round {
    requests: u64,
    ignored: u64,
    samples: Vec<NtpSample>,
    failures: Vec<NtpError>,
}

/// Per-server state between rounds.
#[derive(Debug)]
struct ServerState {
    base_interval: Duration,
    last_polled: Option<Instant>,
    report: ServerReport,
}

impl ServerState {
    fn new(server: &str, base_interval: Duration) -> Self {
        Self { base_interval, last_polled: None, report: ServerReport::new(server, base_interval) }
    }

    /// Whether a round starting `now` may query the server; a skipped round is
    /// counted as `rate_limited_locally`.
    fn begin(&mut self, now: Instant) -> bool {
        let r = &self.report;
        let due = !r.polling_stopped && self.last_polled.is_none_or(|t| now.saturating_duration_since(t) >= r.poll_interval);
        if due {
            self.last_polled = Some(now);
        } else {
            *self.report.failures_total.entry("rate_limited_locally".into()).or_default() += 1;
        }
        due
    }

    /// Folds a round into the counters and state, applying the KoD policy.
    fn finish(&mut self, round: Round) {
        let r = &mut self.report;
        let was = (r.up, r.error.clone());
        r.requests_total += round.requests;
        r.ignored_packets_total += round.ignored;
        for failure in &round.failures {
            *r.failures_total.entry(failure.reason().into()).or_default() += 1;
            let NtpError::KissOfDeath { code } = failure else { continue };
            *r.kiss_of_death_total.entry(code.clone()).or_default() += 1;
            match code.as_str() {
                // RFC 5905 §7.4: on RATE the client "MUST immediately reduce its polling
                // interval" (its rate) "and continue to reduce it each time it receives a RATE".
                "RATE" => {
                    r.poll_interval =
                        r.poll_interval.saturating_mul(2).max(MIN_KOD_POLL_INTERVAL).min(MAX_POLL_INTERVAL.max(self.base_interval))
                }
                // "If the kiss code is DENY or RSTR, the client MUST ... stop sending packets to that server."
                "DENY" | "RSTR" => r.polling_stopped = true,
                _ => {}
            }
            tracing::warn!(server = %r.server, code = %code, poll_interval = ?r.poll_interval, stopped = r.polling_stopped, "NTP server sent a kiss-o'-death");
        }
        // RFC 5905 §10 clock filter: of several samples, the one with the smallest delay is the most accurate.
        let best = round.samples.into_iter().min_by(|a, b| a.rtt_seconds.total_cmp(&b.rtt_seconds));
        r.up = best.is_some() && !r.polling_stopped;
        if let Some(sample) = best {
            r.sample = Some(sample);
            r.last_success = Some(SystemTime::now());
        }
        (r.error, r.error_kind) = if r.up {
            (None, None)
        } else {
            let last = round.failures.iter().rev().find(|f| matches!(f, NtpError::KissOfDeath { .. })).or(round.failures.last());
            let why = last.map_or_else(|| "no valid sample".to_string(), ToString::to_string);
            let kind = if r.polling_stopped { ErrorKind::KissOfDeath } else { last.map_or(ErrorKind::Timeout, NtpError::kind) };
            (Some(format!("NTP server {}: {why}", r.server)), Some(kind))
        };
        match (&was, r.up, &r.error) {
            ((false, _), true, _) => tracing::info!(server = %r.server, "NTP server answers"),
            (_, false, Some(e)) if was.1.as_ref() != Some(e) => tracing::warn!(server = %r.server, error = %e, "NTP probe failed"),
            _ => {}
        }
    }
}

/// The SNTP probe: per-server state behind a cheap `&self` API.
#[derive(Debug)]
pub struct NtpProbe {
    settings: Settings,
    servers: Vec<(String, Arc<Mutex<ServerState>>)>,
}

impl NtpProbe {
    /// A probe of `cfg.servers`; nothing is sent until [`NtpProbe::probe`].
    pub fn new(cfg: NtpConfig) -> Self {
        let servers = cfg.servers.iter().map(|s| (s.clone(), Arc::new(Mutex::new(ServerState::new(s, cfg.min_interval))))).collect();
        Self { settings: Settings { timeout: cfg.timeout, samples: cfg.samples.max(1), spacing: SAMPLE_SPACING }, servers }
    }

    /// Changes the spacing between the samples of a round from [`SAMPLE_SPACING`]; for tests.
    pub fn with_sample_spacing(mut self, spacing: Duration) -> Self {
        self.settings.spacing = spacing;
        self
    }

    /// How long one round may take: name resolution and every sample each
    /// running into the timeout, plus the spacing between samples.
    pub fn budget(&self) -> Duration {
        let s = &self.settings;
        s.timeout.saturating_mul(s.samples.saturating_add(1)).saturating_add(s.spacing.saturating_mul(s.samples - 1))
    }

    /// Every server's state as of the last round, without querying any.
    pub fn current(&self) -> NtpReport {
        NtpReport { servers: self.servers.iter().map(|(_, s)| lock(s).report.clone()).collect() }
    }

    /// Queries, concurrently, every server whose poll interval has passed, and
    /// reports on all of them. Requests still open at `deadline` count as timeouts.
    pub async fn probe(&self, deadline: Instant) -> NtpReport {
        let now = Instant::now();
        let deadline = tokio::time::Instant::from_std(deadline);
        // A JoinSet aborts its tasks when dropped, so a cancelled probe leaves no requests behind.
        let mut tasks = JoinSet::new();
        for (i, (server, state)) in self.servers.iter().enumerate() {
            if lock(state).begin(now) {
                let (server, settings) = (server.clone(), self.settings.clone());
                tasks.spawn(async move { (i, poll(server, settings, deadline).await) });
            }
        }
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok((i, round)) => lock(&self.servers[i].1).finish(round),
                Err(e) => tracing::error!(error = %e, "NTP probe task failed"),
            }
        }
        NtpReport { servers: self.servers.iter().map(|(_, s)| lock(s).report.clone()).collect() }
    }
}

fn lock(state: &Mutex<ServerState>) -> MutexGuard<'_, ServerState> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One round to one server: up to `samples` requests, [`Settings::spacing`]
/// apart, each started only when its full timeout still fits before `deadline`.
async fn poll(server: String, settings: Settings, deadline: tokio::time::Instant) -> Round {
    let mut round = Round::default();
    let addr = match resolve(&server, deadline).await {
        Ok(a) => a,
        Err(e) => {
            round.failures.push(e);
            return round;
        }
    };
    // Checked arithmetic: a huge configured timeout or spacing must not overflow an Instant.
    let mut next = Some(tokio::time::Instant::now());
    for i in 0..settings.samples {
        if i > 0 {
            match next {
                Some(at) if at.checked_add(settings.timeout).is_some_and(|end| end <= deadline) => tokio::time::sleep_until(at).await,
                _ => break,
            }
        }
        let now = tokio::time::Instant::now();
        let until = now.checked_add(settings.timeout).map_or(deadline, |t| t.min(deadline));
        if until <= now {
            round.failures.push(NtpError::NoTime);
            break;
        }
        next = now.checked_add(settings.spacing);
        match exchange(addr, until, &mut round).await {
            Ok(sample) => round.samples.push(sample),
            Err(e) => {
                let kissed = matches!(e, NtpError::KissOfDeath { .. });
                round.failures.push(e);
                if kissed {
                    break;
                }
            }
        }
    }
    round
}

async fn resolve(server: &str, deadline: tokio::time::Instant) -> Result<SocketAddr, NtpError> {
    match tokio::time::timeout_at(deadline, tokio::net::lookup_host(server)).await {
        Err(_) => Err(NtpError::Resolve(format!("{server}: lookup timed out"))),
        Ok(Err(e)) => Err(NtpError::Resolve(format!("{server}: {e}"))),
        Ok(Ok(mut addrs)) => addrs.next().ok_or_else(|| NtpError::Resolve(format!("{server}: no addresses"))),
    }
}

/// The local address for a request to `server`: loopback for loopback, so
/// that nothing leaves the host when the server is local (the simulator).
fn local_for(server: SocketAddr) -> SocketAddr {
    let ip = match server.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(ip) if ip.is_loopback() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, 0)
}

/// One request and its reply, on a fresh socket (see [`exchange_on`]).
async fn exchange(server: SocketAddr, until: tokio::time::Instant, round: &mut Round) -> Result<NtpSample, NtpError> {
    let socket = UdpSocket::bind(local_for(server)).await.map_err(|e| NtpError::Network(format!("cannot open a UDP socket: {e}")))?;
    exchange_on(&UdpSocketWrapper::new(socket), server, until, round).await
}

/// One request on `socket` and its reply: the reply handling, generic over the
/// socket so that it can be fuzzed without a network. Datagrams that are not
/// the reply are counted and skipped; if nothing else comes before `until`, the
/// last reason one was skipped for (wrong origin, too short) is the failure, else `timeout`.
async fn exchange_on<U: NtpUdpSocket>(
    socket: &U,
    server: SocketAddr,
    until: tokio::time::Instant,
    round: &mut Round,
) -> Result<NtpSample, NtpError> {
    let started = tokio::time::Instant::now();
    let context = NtpContext::new(SystemClock::default());
    let request = sntpc::sntp_send_request(server, socket, context)
        .await
        .map_err(|_| NtpError::Network(format!("cannot send to {server}; is there a route to it?")))?;
    round.requests += 1;
    tracing::debug!(%server, "NTP request sent");
    let mut skipped = None;
    loop {
        let Ok(result) = tokio::time::timeout_at(until, sntpc::sntp_process_response(server, socket, context, request)).await else {
            return Err(skipped.unwrap_or(NtpError::Timeout(until.saturating_duration_since(started))));
        };
        match result {
            Ok(r) => {
                tracing::debug!(%server, offset_us = r.offset(), rtt_us = r.roundtrip(), stratum = r.stratum(), "NTP reply");
                return sample_from(&r);
            }
            Err(e @ (SntpError::ResponseAddressMismatch | SntpError::IncorrectOriginTimestamp | SntpError::IncorrectPayload)) => {
                tracing::debug!(%server, why = ?e, "NTP packet ignored: not the reply");
                round.ignored += 1;
                if e != SntpError::ResponseAddressMismatch {
                    skipped = Some(classify(e));
                }
            }
            Err(e) => {
                tracing::debug!(%server, why = ?e, "NTP reply rejected");
                return Err(classify(e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::sim::ntp::{ERA_2036_SHIFT_SECONDS, FLOOD_PACKETS, Hostile, NtpSpec, STORM_PACKETS, serve};

    fn sample(offset: f64, rtt: f64) -> NtpSample {
        NtpSample {
            offset_seconds: offset,
            rtt_seconds: rtt,
            stratum: 3,
            leap: 0,
            root_delay_seconds: 0.002,
            root_dispersion_seconds: 0.001,
            reference_id: "169.254.169.123".into(),
        }
    }

    #[test]
    fn error_bound_and_root_distance() {
        let s = sample(-0.004, 0.010);
        assert!((s.error_bound_seconds() - (0.004 + 0.001 + 0.005 + 0.001)).abs() < 1e-12);
        assert!((s.root_distance_seconds() - (0.006 + 0.001)).abs() < 1e-12);
    }

    #[test]
    fn reference_ids() {
        let cases: [(u8, [u8; 4], &str); 6] = [
            (1, *b"GPS\0", "GPS"),
            (1, *b"LOCL", "LOCL"),
            (1, [0xff, 0, 0, 0], "255.0.0.0"), // not ASCII: shown as an address
            (1, [0; 4], "0.0.0.0"),
            (2, [169, 254, 169, 123], "169.254.169.123"),
            (3, *b"GPS\0", "71.80.83.0"), // from stratum 2 on it is an address
        ];
        for (stratum, id, want) in cases {
            assert_eq!(reference_id(stratum, id), want);
        }
    }

    #[test]
    fn kiss_codes_and_stratum_0_without_one() {
        let cases: [([u8; 4], &str); 7] = [
            (*b"RATE", "kiss_of_death/RATE"),
            (*b"DENY", "kiss_of_death/DENY"),
            (*b"RSTR", "kiss_of_death/RSTR"),
            (*b"INIT", "kiss_of_death/INIT"),
            (*b"XFOO", "kiss_of_death/other"),
            ([0; 4], "unsynchronized"),
            ([b'a', 0xff, 1, 2], "unsynchronized"),
        ];
        for (raw, want) in cases {
            let code = match sntpc_kiss(raw) {
                NtpError::KissOfDeath { code } => format!("kiss_of_death/{code}"),
                e => e.reason().to_string(),
            };
            assert_eq!(code, want, "{raw:?}");
        }
    }

    /// sntpc makes its `KissOfDeathCode` only from a packet; map a raw code as `classify` would see it.
    fn sntpc_kiss(raw: [u8; 4]) -> NtpError {
        let code = match &raw {
            b"RATE" => KissOfDeathCode::Rate,
            b"DENY" => KissOfDeathCode::Deny,
            b"RSTR" => KissOfDeathCode::Rstr,
            b"INIT" => KissOfDeathCode::Init,
            _ => KissOfDeathCode::Experimental(raw),
        };
        classify(SntpError::KissOfDeath(code))
    }

    #[test]
    fn every_error_has_a_listed_reason() {
        let errors = [
            SntpError::IncorrectOriginTimestamp,
            SntpError::IncorrectMode,
            SntpError::UnsynchronizedClock,
            SntpError::InvalidTimestamp,
            SntpError::ExcessiveRootDistance,
            SntpError::BackwardReferenceTimestamp,
            SntpError::IncorrectResponseVersion,
            SntpError::IncorrectStratumHeaders,
            SntpError::IncorrectPayload,
            SntpError::Network,
            SntpError::AddressResolve,
            SntpError::ResponseAddressMismatch,
        ];
        for e in errors {
            assert!(FAILURE_REASONS.contains(&classify(e).reason()), "{e:?}");
        }
        assert_eq!(classify(SntpError::IncorrectStratumHeaders).reason(), "unsynchronized");
        assert_eq!(classify(SntpError::ExcessiveRootDistance).reason(), "root_distance");
    }

    fn kod(code: &str) -> Round {
        Round { requests: 1, failures: vec![NtpError::KissOfDeath { code: code.into() }], ..Round::default() }
    }

    #[test]
    fn rate_doubles_the_poll_interval_up_to_maxpoll() {
        let mut s = ServerState::new("s", Duration::from_secs(64));
        let mut seen = vec![];
        for _ in 0..13 {
            s.finish(kod("RATE"));
            seen.push(s.report.poll_interval.as_secs());
        }
        assert_eq!(&seen[..4], [128, 256, 512, 1024]);
        assert_eq!(*seen.last().unwrap(), MAX_POLL_INTERVAL.as_secs());
        assert_eq!(s.report.kiss_of_death_total["RATE"], 13);
        assert!(!s.report.polling_stopped);
        // With no base interval, the first RATE still backs off to MINPOLL.
        let mut s = ServerState::new("s", Duration::ZERO);
        s.finish(kod("RATE"));
        assert_eq!(s.report.poll_interval, MIN_KOD_POLL_INTERVAL);
    }

    #[test]
    fn rounds_wait_for_the_poll_interval_and_skips_are_counted() {
        let t0 = Instant::now();
        let mut s = ServerState::new("s", Duration::from_secs(64));
        assert!(s.begin(t0));
        assert!(!s.begin(t0 + Duration::from_secs(63)));
        assert!(s.begin(t0 + Duration::from_secs(64)));
        s.finish(kod("RATE"));
        assert!(!s.begin(t0 + Duration::from_secs(64 + 127)));
        assert!(s.begin(t0 + Duration::from_secs(64 + 128)));
        assert_eq!(s.report.failures_total["rate_limited_locally"], 2);
        assert_eq!(s.report.requests_total, 1, "skipped rounds are not requests");
    }

    #[test]
    fn deny_and_rstr_stop_polling() {
        for code in ["DENY", "RSTR"] {
            let t0 = Instant::now();
            let mut s = ServerState::new("s", Duration::ZERO);
            assert!(s.begin(t0));
            s.finish(Round { samples: vec![sample(0.0, 0.001)], ..kod(code) });
            assert!(s.report.polling_stopped && !s.report.up);
            assert!(s.report.error.as_deref().unwrap().contains(code), "{:?}", s.report.error);
            assert!(!s.begin(t0 + Duration::from_secs(1_000_000)));
            assert_eq!(s.report.failures_total["kiss_of_death"], 1);
            assert_eq!(s.report.failures_total["rate_limited_locally"], 1);
        }
    }

    #[test]
    fn other_kiss_codes_change_nothing_but_counters() {
        let mut s = ServerState::new("s", Duration::from_secs(64));
        s.finish(kod("INIT"));
        assert_eq!((s.report.poll_interval, s.report.polling_stopped), (Duration::from_secs(64), false));
        assert_eq!(s.report.kiss_of_death_total["INIT"], 1);
    }

    #[test]
    fn the_smallest_delay_wins_and_the_last_sample_survives_failures() {
        let mut s = ServerState::new("s", Duration::ZERO);
        assert!(s.report.failures_total.values().all(|v| *v == 0) && s.report.failures_total.len() == FAILURE_REASONS.len());
        s.finish(Round {
            requests: 3,
            samples: vec![sample(0.5, 0.030), sample(0.1, 0.002), sample(0.9, 0.020)],
            failures: vec![NtpError::Timeout(Duration::from_secs(1))],
            ..Round::default()
        });
        assert!(s.report.up && s.report.error.is_none());
        assert_eq!(s.report.sample.as_ref().unwrap().offset_seconds, 0.1);
        assert_eq!(s.report.failures_total["timeout"], 1);
        s.finish(Round { requests: 1, failures: vec![NtpError::BadMode], ..Round::default() });
        assert!(!s.report.up);
        assert_eq!(s.report.sample.as_ref().unwrap().offset_seconds, 0.1, "last valid sample kept");
        assert_eq!(s.report.error.as_deref(), Some("NTP server s: reply is not in server mode (4)"));
        assert_eq!(s.report.requests_total, 4);
    }

    // ---- against the simulated server on loopback ----

    struct Sim {
        addr: SocketAddr,
        spec: Arc<Mutex<NtpSpec>>,
        requests: Arc<AtomicU64>,
        _stop: tokio::sync::oneshot::Sender<()>,
    }

    impl Sim {
        async fn start(spec: NtpSpec) -> Self {
            let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let addr = socket.local_addr().unwrap();
            let spec = Arc::new(Mutex::new(spec));
            let requests = Arc::new(AtomicU64::new(0));
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            tokio::spawn(serve(socket, spec.clone(), requests.clone(), async {
                let _ = stopped.await;
            }));
            Self { addr, spec, requests, _stop: stop }
        }

        fn requests(&self) -> u64 {
            self.requests.load(Ordering::SeqCst)
        }
    }

    const TIMEOUT: Duration = Duration::from_millis(250);

    fn probe_of(servers: &[String], samples: u32) -> NtpProbe {
        NtpProbe::new(NtpConfig { servers: servers.to_vec(), timeout: TIMEOUT, samples, min_interval: Duration::ZERO })
    }

    async fn probe_once(spec: NtpSpec) -> ServerReport {
        let sim = Sim::start(spec).await;
        let probe = probe_of(&[sim.addr.to_string()], 1);
        probe.probe(Instant::now() + Duration::from_secs(2)).await.servers.remove(0)
    }

    fn failures(r: &ServerReport) -> Vec<(&str, u64)> {
        r.failures_total.iter().filter(|(_, v)| **v > 0).map(|(k, v)| (k.as_str(), *v)).collect()
    }

    #[tokio::test]
    async fn offset_is_local_minus_server() {
        let r = probe_once(NtpSpec { offset_seconds: 3.0, ..NtpSpec::default() }).await;
        assert!(r.up, "{:?}", r.error);
        let s = r.sample.as_ref().unwrap();
        assert!((s.offset_seconds + 3.0).abs() < 0.005, "server 3 s ahead => we are 3 s behind: {}", s.offset_seconds);
        assert_eq!((s.stratum, s.leap, s.reference_id.as_str()), (3, 0, "169.254.169.123"));
        assert!(s.rtt_seconds < 0.1 && (s.root_dispersion_seconds - 0.0005).abs() < 1e-4);
        assert_eq!((r.requests_total, r.ignored_packets_total), (1, 0));
        assert!(failures(&r).is_empty() && r.last_success.is_some());
    }

    #[tokio::test]
    async fn kiss_codes_are_counted_and_obeyed() {
        for (code, label, stopped, interval) in [
            (*b"RATE", "RATE", false, MIN_KOD_POLL_INTERVAL),
            (*b"DENY", "DENY", true, Duration::ZERO),
            (*b"RSTR", "RSTR", true, Duration::ZERO),
            (*b"STEP", "STEP", false, Duration::ZERO),
            (*b"XYZ1", "other", false, Duration::ZERO),
        ] {
            let sim = Sim::start(NtpSpec { kiss_code: Some(code), ..NtpSpec::default() }).await;
            let probe = probe_of(&[sim.addr.to_string()], 3).with_sample_spacing(Duration::from_millis(10));
            let r = probe.probe(Instant::now() + Duration::from_secs(2)).await.servers.remove(0);
            assert_eq!(r.kiss_of_death_total.get(label), Some(&1), "{label}: a KoD ends the round");
            assert_eq!((r.polling_stopped, r.poll_interval, r.up), (stopped, interval, false), "{label}");
            assert_eq!(failures(&r), [("kiss_of_death", 1)], "{label}");
            let r = probe.probe(Instant::now() + Duration::from_secs(2)).await.servers.remove(0);
            let queried_again = interval.is_zero() && !stopped;
            assert_eq!(sim.requests(), if queried_again { 2 } else { 1 }, "{label}");
            assert_eq!(r.failures_total["rate_limited_locally"], u64::from(!queried_again), "{label}");
        }
    }

    #[tokio::test]
    async fn hostile_replies_fail_for_the_right_reason() {
        for (hostile, reason) in [
            (Hostile::ShortPacket, "malformed"),
            (Hostile::WrongOrigin, "bad_origin"),
            (Hostile::ClientMode, "bad_mode"),
            (Hostile::ZeroTransmit, "malformed"),
        ] {
            let r = probe_once(NtpSpec { hostile: Some(hostile), ..NtpSpec::default() }).await;
            assert!(!r.up && r.sample.is_none(), "{hostile:?}");
            assert_eq!(failures(&r), [(reason, 1)], "{hostile:?}: {:?}", r.error);
        }
    }

    #[tokio::test]
    async fn unsynchronized_and_distant_servers_are_rejected() {
        for (spec, reason) in [
            (NtpSpec { leap: 3, ..NtpSpec::default() }, "unsynchronized"),
            (NtpSpec { stratum: 16, ..NtpSpec::default() }, "unsynchronized"),
            // chronyd before its first sync: stratum 0 with an empty reference ID, not a kiss.
            (NtpSpec { kiss_code: Some([0; 4]), ..NtpSpec::default() }, "unsynchronized"),
            (NtpSpec { root_dispersion_seconds: 1.6, ..NtpSpec::default() }, "root_distance"),
            (NtpSpec { root_delay_seconds: 2.0, root_dispersion_seconds: 0.6, ..NtpSpec::default() }, "root_distance"),
        ] {
            let r = probe_once(spec.clone()).await;
            assert_eq!(failures(&r), [(reason, 1)], "{spec:?}: {:?}", r.error);
        }
        let r = probe_once(NtpSpec { leap: 1, stratum: 1, reference_id: *b"GPS\0", ..NtpSpec::default() }).await;
        let s = r.sample.unwrap();
        assert_eq!((s.leap, s.reference_id.as_str()), (1, "GPS"), "a pending leap second is not a failure");
    }

    #[tokio::test]
    async fn dropped_replies_time_out() {
        let started = Instant::now();
        let r = probe_once(NtpSpec { drop_every: Some(1), ..NtpSpec::default() }).await;
        assert_eq!(failures(&r), [("timeout", 1)]);
        assert!(r.error.as_deref().unwrap().contains("no reply within"), "{:?}", r.error);
        assert!(started.elapsed() >= TIMEOUT && started.elapsed() < TIMEOUT * 4);
    }

    #[tokio::test]
    async fn era_2036_timestamps_give_the_right_offset() {
        let r = probe_once(NtpSpec { hostile: Some(Hostile::Era2036), offset_seconds: 1.0, ..NtpSpec::default() }).await;
        let s = r.sample.expect("era 1 timestamps are valid");
        let want = -(ERA_2036_SHIFT_SECONDS + 1.0);
        assert!((s.offset_seconds - want).abs() < 0.005, "{} vs {want}", s.offset_seconds);
        assert!(s.rtt_seconds < 0.1);
    }

    #[tokio::test]
    async fn unsolicited_packets_are_ignored_and_counted() {
        let r = probe_once(NtpSpec { hostile: Some(Hostile::Flood), offset_seconds: -2.0, ..NtpSpec::default() }).await;
        assert!(r.up, "{:?}", r.error);
        assert!((r.sample.as_ref().unwrap().offset_seconds - 2.0).abs() < 0.005);
        assert_eq!(r.ignored_packets_total, FLOOD_PACKETS);
        assert!(r.kiss_of_death_total.is_empty() && !r.polling_stopped, "a spoofed DENY is not obeyed");
        assert!(failures(&r).is_empty());
    }

    #[tokio::test]
    async fn a_storm_of_unsolicited_packets_is_ignored_without_a_spoofed_offset() {
        let started = Instant::now();
        let r = probe_once(NtpSpec { hostile: Some(Hostile::Storm), offset_seconds: -2.0, ..NtpSpec::default() }).await;
        assert!(started.elapsed() < TIMEOUT * 4, "{:?}", started.elapsed());
        // Loopback drops datagrams when the socket buffer fills (the real reply too,
        // on a busy machine): whatever arrives is ignored and nothing spoofed becomes the offset.
        assert!(r.ignored_packets_total > STORM_PACKETS / 4, "{}", r.ignored_packets_total);
        assert!(r.kiss_of_death_total.is_empty() && !r.polling_stopped, "a spoofed DENY is not obeyed");
        match &r.sample {
            // The server timestamped its reply before the storm: the true offset is within rtt/2.
            Some(s) => assert!((s.offset_seconds - 2.0).abs() <= s.rtt_seconds / 2.0 + 0.005, "{s:?}"),
            None => assert_eq!(failures(&r), [("bad_origin", 1)], "{:?}", r.error),
        }
    }

    #[tokio::test]
    async fn several_samples_keep_the_one_with_the_smallest_delay() {
        let slow = |offset| NtpSpec { delay: Duration::from_millis(120), offset_seconds: offset, ..NtpSpec::default() };
        let sim = Sim::start(slow(5.0)).await;
        // Make the second request fast, the first and third slow: the spec is read when a request arrives.
        let (spec, requests) = (sim.spec.clone(), sim.requests.clone());
        let switcher = tokio::spawn(async move {
            for (after, next) in [(1, NtpSpec { offset_seconds: 1.0, ..NtpSpec::default() }), (2, slow(7.0))] {
                while requests.load(Ordering::SeqCst) < after {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                *spec.lock().unwrap() = next;
            }
        });
        let probe = probe_of(&[sim.addr.to_string()], 3).with_sample_spacing(Duration::from_millis(200));
        let r = probe.probe(Instant::now() + Duration::from_secs(3)).await.servers.remove(0);
        switcher.await.unwrap();
        assert_eq!((r.requests_total, sim.requests()), (3, 3));
        let s = r.sample.unwrap();
        assert!((s.offset_seconds + 1.0).abs() < 0.005, "kept the fast sample: {s:?}");
        assert!(s.rtt_seconds < 0.1);
    }

    #[tokio::test]
    async fn samples_stop_at_the_deadline() {
        let sim = Sim::start(NtpSpec::default()).await;
        let probe = NtpProbe::new(NtpConfig {
            servers: vec![sim.addr.to_string()],
            timeout: Duration::from_millis(100),
            samples: 10,
            min_interval: Duration::ZERO,
        })
        .with_sample_spacing(Duration::from_millis(100));
        let started = Instant::now();
        // Samples at 0, 100 and 200 ms; one at 300 ms could not finish its 100 ms timeout by 350 ms.
        let r = probe.probe(started + Duration::from_millis(350)).await.servers.remove(0);
        assert_eq!(r.requests_total, 3);
        assert!(started.elapsed() < Duration::from_millis(350));
        let r = probe.probe(Instant::now()).await.servers.remove(0);
        assert_eq!(r.failures_total["timeout"], 1, "no time left: a timeout, not a request");
        assert_eq!(r.requests_total, 3);
    }

    #[tokio::test]
    async fn servers_are_probed_concurrently_and_reported_in_order() {
        let dead = Sim::start(NtpSpec { drop_every: Some(1), ..NtpSpec::default() }).await;
        let good = Sim::start(NtpSpec::default()).await;
        let servers = [dead.addr.to_string(), good.addr.to_string(), "127.0.0.1:notaport".to_string(), dead.addr.to_string()];
        let started = Instant::now();
        let report = probe_of(&servers, 1).probe(Instant::now() + Duration::from_secs(2)).await;
        assert!(started.elapsed() < TIMEOUT * 2, "the two dead servers waited in parallel");
        let got: Vec<_> = report.servers.iter().map(|r| (r.server.as_str(), r.up, failures(r))).collect();
        assert_eq!(
            got,
            [
                (servers[0].as_str(), false, vec![("timeout", 1)]),
                (servers[1].as_str(), true, vec![]),
                (servers[2].as_str(), false, vec![("resolve", 1)]),
                (servers[3].as_str(), false, vec![("timeout", 1)]),
            ]
        );
        assert_eq!(report.servers[2].requests_total, 0);
    }

    /// Never panic on any input: replies that carry our origin (so they are
    /// taken as the reply) with every other byte random, and random lengths.
    #[tokio::test]
    async fn random_replies_never_panic() {
        const ROUNDS: u64 = 400;
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let responder = tokio::spawn(async move {
            let mut buf = [0u8; 64];
            let mut rng = fastrand::Rng::with_seed(5905);
            while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
                let mut reply: Vec<u8> = (0..48).map(|_| rng.u8(..)).collect();
                if rng.bool() {
                    reply[0] = (reply[0] & 0xc0) | 0x24; // VN 4, mode 4: reach the deeper checks
                }
                if n >= 48 && rng.u8(..10) > 0 {
                    reply[24..32].copy_from_slice(&buf[40..48]);
                }
                if rng.u8(..10) == 0 {
                    reply.truncate(rng.usize(..48));
                }
                let _ = socket.send_to(&reply, peer).await;
            }
        });
        let probe = NtpProbe::new(NtpConfig {
            servers: vec![addr.to_string()],
            timeout: Duration::from_millis(20),
            samples: 1,
            min_interval: Duration::ZERO,
        });
        let mut last = None;
        for _ in 0..ROUNDS {
            last = Some(probe.probe(Instant::now() + Duration::from_secs(1)).await.servers.remove(0));
        }
        responder.abort();
        let r = last.unwrap();
        let failed: u64 = r.failures_total.values().sum();
        assert_eq!(r.requests_total, ROUNDS);
        assert!(failed <= ROUNDS && failed > ROUNDS / 2, "{:?}", r.failures_total);
    }
}

/// Properties of the reply handling ([`exchange_on`]) on untrusted datagrams
/// (see `crate::fuzzing`): a scripted socket delivers them, time is paused.
#[cfg(test)]
mod fuzz {
    use std::cell::{Cell, RefCell};
    use std::collections::VecDeque;

    use proptest::prelude::*;

    use super::*;
    use crate::fuzzing::{corpus, fuzz};
    use crate::sim::ntp::ntp_timestamp;

    fn server() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 123))
    }

    fn elsewhere() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 124))
    }

    /// What the scripted socket delivers next.
    #[derive(Debug, Clone)]
    enum Datagram {
        /// These bytes, from the server or from elsewhere; with `our_origin`,
        /// bytes 24..32 (the origin timestamp) are set to the request's transmit timestamp.
        Raw { bytes: Vec<u8>, our_origin: bool, from_server: bool },
        /// A valid reply from a server whose clock is `offset_seconds` ahead of this host's.
        Valid { offset_seconds: f64 },
    }

    /// A delivered datagram, as the client received it.
    #[derive(Debug)]
    struct Delivered {
        len: usize,
        from_server: bool,
        origin_is_ours: bool,
    }

    /// An [`NtpUdpSocket`] that records the request and delivers a script, then nothing.
    struct Scripted {
        script: RefCell<VecDeque<Datagram>>,
        transmit: Cell<[u8; 8]>,
        delivered: RefCell<Vec<Delivered>>,
    }

    impl Scripted {
        fn new(script: Vec<Datagram>) -> Self {
            Self { script: RefCell::new(script.into()), transmit: Cell::new([0; 8]), delivered: RefCell::default() }
        }
    }

    impl NtpUdpSocket for Scripted {
        async fn send_to(&self, buf: &[u8], _: SocketAddr) -> sntpc::Result<usize> {
            self.transmit.set(buf.get(40..48).and_then(|b| b.try_into().ok()).unwrap_or_default());
            Ok(buf.len())
        }

        async fn recv_from(&self, buf: &mut [u8]) -> sntpc::Result<(usize, SocketAddr)> {
            let next = self.script.borrow_mut().pop_front();
            let Some(datagram) = next else { return std::future::pending().await };
            let transmit = self.transmit.get();
            let (bytes, from_server) = match datagram {
                Datagram::Raw { mut bytes, our_origin, from_server } => {
                    if our_origin && bytes.len() >= 32 {
                        bytes[24..32].copy_from_slice(&transmit);
                    }
                    (bytes, from_server)
                }
                Datagram::Valid { offset_seconds } => (valid_reply(transmit, offset_seconds), true),
            };
            // A UDP socket truncates a datagram to the buffer and says so in the length read.
            let n = bytes.len().min(buf.len());
            buf[..n].copy_from_slice(&bytes[..n]);
            let origin_is_ours = bytes.get(24..32) == Some(&transmit[..]);
            self.delivered.borrow_mut().push(Delivered { len: bytes.len(), from_server, origin_is_ours });
            Ok((n, if from_server { server() } else { elsewhere() }))
        }
    }

    /// A stratum 3 reply stamped now, on a clock `offset_seconds` ahead.
    fn valid_reply(origin: [u8; 8], offset_seconds: f64) -> Vec<u8> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as i128;
        let t = ntp_timestamp(now + (offset_seconds * 1e9) as i128);
        let mut b = vec![0u8; 48];
        b[..4].copy_from_slice(&[0x24, 3, 6, 0xec]);
        b[4..8].copy_from_slice(&0x10u32.to_be_bytes());
        b[8..12].copy_from_slice(&0x20u32.to_be_bytes());
        b[12..16].copy_from_slice(&[169, 254, 169, 123]);
        b[16..24].copy_from_slice(&t.wrapping_sub(16 << 32).to_be_bytes());
        b[24..32].copy_from_slice(&origin);
        b[32..40].copy_from_slice(&t.to_be_bytes());
        b[40..48].copy_from_slice(&t.to_be_bytes());
        b
    }

    /// Random bytes, or a 48-byte packet that looks enough like a reply to reach sntpc's deeper checks.
    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        let head = prop::sample::select(vec![0x24u8, 0x1c, 0xe4, 0x23, 0x25, 0x04, 0x3c, 0x64]);
        let stratum = prop_oneof![Just(0u8), 1u8..=15, any::<u8>()];
        let reply_like = (head, stratum, prop::collection::vec(any::<u8>(), 46), any::<bool>(), any::<bool>()).prop_map(
            |(head, stratum, rest, near_root, no_reference)| {
                let mut b = [vec![head, stratum], rest].concat();
                if near_root {
                    (b[4], b[5], b[8], b[9]) = (0, 0, 0, 0); // root delay and dispersion below 1 s
                }
                if no_reference {
                    b[16..24].fill(0);
                }
                b
            },
        );
        prop_oneof![3 => reply_like, 1 => prop::collection::vec(any::<u8>(), 0..80)]
    }

    fn raw(our_origin_weight: f64) -> impl Strategy<Value = Datagram> {
        (bytes(), prop::bool::weighted(our_origin_weight), prop::bool::weighted(0.8))
            .prop_map(|(bytes, our_origin, from_server)| Datagram::Raw { bytes, our_origin, from_server })
    }

    fn paused_runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().expect("runtime")
    }

    /// Runs one exchange against `script`.
    fn exchange_with(rt: &tokio::runtime::Runtime, script: Vec<Datagram>) -> (Result<NtpSample, NtpError>, Round, Vec<Delivered>) {
        let socket = Scripted::new(script);
        let mut round = Round::default();
        let result = rt.block_on(async {
            let until = tokio::time::Instant::now() + Duration::from_secs(1);
            exchange_on(&socket, server(), until, &mut round).await
        });
        (result, round, socket.delivered.into_inner())
    }

    /// What holds for any script: the first datagram from the server with our
    /// origin and 48 bytes is the reply, everything before it is ignored, and
    /// only the reply can give a sample.
    fn check(result: &Result<NtpSample, NtpError>, round: &Round, delivered: &[Delivered]) -> Result<(), TestCaseError> {
        prop_assert_eq!(round.requests, 1);
        let reply = delivered.iter().position(|d| d.from_server && d.origin_is_ours && d.len >= 48);
        match reply {
            Some(i) => {
                prop_assert_eq!(i + 1, delivered.len(), "the exchange ends at the reply");
                prop_assert_eq!(round.ignored as usize, i);
            }
            None => {
                prop_assert_eq!(round.ignored as usize, delivered.len());
                prop_assert!(result.is_err(), "a sample without a reply: {:?}", result);
            }
        }
        if let Ok(s) = result {
            prop_assert!(reply.is_some());
            prop_assert!(s.offset_seconds.is_finite() && s.rtt_seconds.is_finite(), "{:?}", s);
            prop_assert!((1..=15).contains(&s.stratum) && s.leap < 3, "{:?}", s);
            prop_assert!(s.root_distance_seconds() <= MAX_ROOT_DISTANCE_SECONDS, "{:?}", s);
        }
        Ok(())
    }

    #[test]
    fn fuzz_datagrams_never_panic_and_only_the_reply_gives_a_sample() {
        let rt = paused_runtime();
        let script = prop::collection::vec(
            prop_oneof![8 => raw(0.6), 1 => (-1e8f64..1e8).prop_map(|o| Datagram::Valid { offset_seconds: o })],
            0..6,
        );
        fuzz(file!(), script, |script| {
            let (result, round, delivered) = exchange_with(&rt, script);
            check(&result, &round, &delivered)
        });
    }

    #[test]
    fn fuzz_the_reply_after_unsolicited_packets_gives_the_server_offset() {
        let rt = paused_runtime();
        // Anything but a reply: our origin only from elsewhere, anything from the server only with another origin.
        let junk = raw(0.5).prop_filter("not the reply", |d| !matches!(d, Datagram::Raw { our_origin: true, from_server: true, .. }));
        fuzz(file!(), (prop::collection::vec(junk, 0..8), -1e8f64..1e8), |(junk, offset)| {
            let n = junk.len();
            let script = junk.into_iter().chain([Datagram::Valid { offset_seconds: offset }]).collect();
            let (result, round, delivered) = exchange_with(&rt, script);
            check(&result, &round, &delivered)?;
            let sample = result.map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(round.ignored as usize, n);
            prop_assert!((sample.offset_seconds + offset).abs() < 0.05, "offset {} for a server {offset} s ahead", sample.offset_seconds);
            Ok(())
        });
    }

    /// The hand-kept corpus of replies, delivered as the reply, with a foreign
    /// origin and from elsewhere: no panic, and only the reply can give a sample.
    #[test]
    fn corpus_replies_never_panic() {
        let rt = paused_runtime();
        for (path, bytes) in corpus("ntp") {
            for (our_origin, from_server) in [(true, true), (false, true), (true, false)] {
                let (result, round, delivered) = exchange_with(&rt, vec![Datagram::Raw { bytes: bytes.clone(), our_origin, from_server }]);
                if let Err(e) = check(&result, &round, &delivered) {
                    panic!("{}: {e}", path.display());
                }
            }
        }
    }
}
