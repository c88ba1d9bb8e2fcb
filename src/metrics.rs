//! Snapshot -> Prometheus text exposition. The only module that knows metric
//! names, HELP strings and units; a pure function of the [`Snapshot`].

use prometheus::TextEncoder;
use prometheus::proto::{Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType};

use chrono::{DateTime, Utc};

use std::collections::BTreeMap;

use crate::chain::{ChainObservation, ErrorReason, Provider, TargetReport};
use crate::http::ConnectionStats;
use crate::imds::stats::V1_FALLBACK_REASONS;
use crate::imds::{Endpoint, Protocol};
use crate::ntp::{KISS_CODES, NtpSample};
use crate::probe::Snapshot;
use crate::timefmt::{seconds, unix_seconds};
use crate::webconfig::WebConfigStatus;

/// Content type of the text exposition format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Build identity, filled in by `build.rs`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Git revision the binary was built from, or `unknown`.
pub const REVISION: &str = env!("ACE_GIT_REVISION");
/// Git branch the binary was built from (`HEAD` when detached), or `unknown`.
pub const BRANCH: &str = env!("ACE_GIT_BRANCH");
/// `rustc --version` of the compiler that built the binary.
pub const RUST_VERSION: &str = env!("ACE_RUSTC_VERSION");
/// `--version`, in the layout of prometheus/common's `version.Print`, with the
/// Rust toolchain where Go exporters print `go version`.
pub const VERSION_INFO: &str = concat!(
    "aws-credentials-exporter, version ",
    env!("CARGO_PKG_VERSION"),
    " (branch: ",
    env!("ACE_GIT_BRANCH"),
    ", revision: ",
    env!("ACE_GIT_REVISION"),
    ")\n  build user:       ",
    env!("ACE_BUILD_USER"),
    "\n  build date:       ",
    env!("ACE_BUILD_DATE"),
    "\n  rust version:     rustc ",
    env!("ACE_RUSTC_VERSION"),
    "\n  platform:         ",
    env!("ACE_PLATFORM"),
);

/// HELP of `aws_credentials_expiration_timestamp_seconds`, fed by the IMDS and chain probes.
const EXPIRATION_HELP: &str = "When the credentials expire (Unix time), as served by the provider. During an IMDS outage the last known value is kept: SDKs keep their cached credentials until then.";
/// HELP of `aws_credentials_seconds_until_expiry`, fed by the IMDS and chain probes.
const UNTIL_EXPIRY_HELP: &str =
    "Seconds until the credentials expire, measured with this host's clock (what an SDK on this host sees); negative once expired.";

type Labels<'a> = Vec<(&'static str, &'a str)>;

/// Collects families in the order they are added.
#[derive(Default)]
struct Families(Vec<MetricFamily>);

impl Families {
    fn add(&mut self, name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) {
        if metrics.is_empty() {
            return; // the text format has no way to say "no samples yet"
        }
        // A name may be fed from several probes (credential expiry from IMDS and
        // from the chain): one family, one HELP and TYPE line.
        if let Some(existing) = self.0.iter_mut().find(|f| f.name() == name) {
            existing.mut_metric().extend(metrics);
            return;
        }
        let mut f = MetricFamily::default();
        f.set_name(name.to_string());
        f.set_help(help.to_string());
        f.set_field_type(kind);
        f.set_metric(metrics);
        self.0.push(f);
    }

    fn gauge<'a>(&mut self, name: &str, help: &str, samples: impl IntoIterator<Item = (Labels<'a>, f64)>) {
        let metrics = samples
            .into_iter()
            .map(|(labels, v)| {
                let mut g = Gauge::default();
                g.set_value(v);
                let mut m = metric(labels);
                m.set_gauge(g);
                m
            })
            .collect();
        self.add(name, help, MetricType::GAUGE, metrics);
    }

    fn counter<'a>(&mut self, name: &str, help: &str, samples: impl IntoIterator<Item = (Labels<'a>, f64)>) {
        let metrics = samples
            .into_iter()
            .map(|(labels, v)| {
                let mut c = Counter::default();
                c.set_value(v);
                let mut m = metric(labels);
                m.set_counter(c);
                m
            })
            .collect();
        self.add(name, help, MetricType::COUNTER, metrics);
    }
}

/// The counts by label value, with every `known` value present (at 0 if never counted).
fn with_zeros(counts: &BTreeMap<String, u64>, known: impl IntoIterator<Item = &'static str>) -> BTreeMap<&str, u64> {
    let mut all: BTreeMap<&str, u64> = known.into_iter().map(|k| (k, 0)).collect();
    all.extend(counts.iter().map(|(k, n)| (k.as_str(), *n)));
    all
}

fn metric(labels: Labels<'_>) -> Metric {
    let pairs = labels
        .into_iter()
        .map(|(k, v)| {
            let mut p = LabelPair::default();
            p.set_name(k.to_string());
            p.set_value(v.to_string());
            p
        })
        .collect();
    Metric::from_label(pairs)
}

fn bool_value(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// Renders a snapshot in the text exposition format.
pub fn render(s: &Snapshot) -> String {
    let mut f = Families::default();
    imds_families(&mut f, s);
    chain_families(&mut f, s);
    clock_families(&mut f, s);
    exporter_families(&mut f, s);
    f.0.extend(s.process.iter().cloned());
    encode(&f.0)
}

/// The state of `--web.config.file`, appended to the page when the flag is set.
pub fn render_web_config(status: &WebConfigStatus) -> String {
    let mut f = Families::default();
    f.gauge(
        "aws_credentials_exporter_web_config_last_reload_successful",
        "Whether the last reading of --web.config.file was valid. 0: the file (or a certificate it names) changed and is invalid; the last valid configuration stays in force.",
        [(vec![], if status.last_reload_successful { 1.0 } else { 0.0 })],
    );
    encode(&f.0)
}

/// The HTTP server's connections (`--web.max-connections`, write timeout).
pub fn render_connections(s: &ConnectionStats) -> String {
    let mut f = Families::default();
    f.gauge(
        "aws_credentials_exporter_http_connections",
        "HTTP connections open now (at most --web.max-connections).",
        [(vec![], s.open as f64)],
    );
    f.counter(
        "aws_credentials_exporter_http_connections_rejected_total",
        "HTTP connections refused at once because --web.max-connections were open and every one was running a request.",
        [(vec![], s.rejected as f64)],
    );
    f.counter(
        "aws_credentials_exporter_http_connections_closed_total",
        "HTTP connections the server closed early: reason=\"evicted\" the oldest idle one, to admit a new one at --web.max-connections; reason=\"write_timeout\" the client stopped reading (no write progress for 5s).",
        [(vec![("reason", "evicted")], s.evicted as f64), (vec![("reason", "write_timeout")], s.write_timeouts as f64)],
    );
    encode(&f.0)
}

fn encode(families: &[MetricFamily]) -> String {
    let mut out = String::with_capacity(8 * 1024);
    let encoder = TextEncoder::new();
    for family in families {
        // One bad family (the encoder refuses, e.g., an invalid name) costs only itself.
        if let Err(e) = encoder.encode_utf8(std::slice::from_ref(family), &mut out) {
            tracing::error!(family = family.name(), error = %e, "cannot encode metric family");
        }
    }
    out
}

fn imds_families(f: &mut Families, s: &Snapshot) {
    let obs = &s.imds.observation;
    let stats = &s.imds.stats;
    let role = obs.role.as_deref().unwrap_or("");
    let creds = obs.credentials.as_ref();
    let expiration = creds.and_then(|c| c.expiration);

    f.gauge(
        "aws_credentials_expiration_timestamp_seconds",
        EXPIRATION_HELP,
        expiration.map(|e| (vec![("provider", "instance_profile"), ("role", role)], unix_seconds(e))),
    );
    f.gauge(
        "aws_credentials_seconds_until_expiry",
        UNTIL_EXPIRY_HELP,
        expiration.map(|e| (vec![("provider", "instance_profile"), ("role", role)], (e - s.taken_at).num_milliseconds() as f64 / 1000.0)),
    );
    f.gauge(
        "aws_credentials_last_updated_timestamp_seconds",
        "When IMDS last rotated the instance-profile credentials (LastUpdated, Unix time).",
        creds.and_then(|c| c.last_updated).map(|t| (vec![("role", role)], unix_seconds(t))),
    );
    f.gauge(
        "aws_imds_up",
        "1 when the last probe read an instance-profile credential document with Code=Success from IMDS.",
        [(vec![], bool_value(obs.up()))],
    );
    f.gauge(
        "aws_imds_instance_profile_attached",
        "1 when an instance profile (IAM role) is attached: 0 when IMDS lists no role.",
        obs.instance_profile_attached.map(|a| (vec![], bool_value(a))),
    );
    let arn = obs.instance_profile_arn.as_deref().unwrap_or("");
    f.gauge(
        "aws_imds_credentials_info",
        "The instance-profile credential document: role, Code (Success or the error IMDS reports) and Type. Always 1.",
        creds.map(|c| (vec![("role", role), ("code", c.code.as_str()), ("type", c.kind.as_str()), ("instance_profile_arn", arn)], 1.0)),
    );
    let version = match obs.protocol {
        Some(Protocol::V2) => 2.0,
        Some(Protocol::V1) => 1.0,
        None => 0.0,
    };
    f.gauge(
        "aws_imds_protocol_version",
        "IMDS protocol of the last probe: 2 = session token (IMDSv2), 1 = fell back to IMDSv1, 0 = unreachable or disabled.",
        [(vec![], version)],
    );
    f.counter(
        "aws_imds_requests_total",
        "IMDS requests by endpoint (token, role, credentials, info) and outcome (HTTP status, timeout, connect_error, body_error).",
        stats.requests.iter().map(|((e, code), n)| (vec![("endpoint", e.as_str()), ("code", code.as_str())], *n as f64)),
    );
    f.counter(
        "aws_imds_throttled_total",
        "IMDS responses with HTTP 429 (throttled): too many concurrent IMDS calls on this instance.",
        [(vec![], stats.throttled as f64)],
    );
    f.counter(
        "aws_imds_retries_total",
        "IMDS request attempts beyond the first (after 429, 5xx, 401 or transport errors).",
        [(vec![], stats.retries as f64)],
    );
    f.counter(
        "aws_imds_v1_fallbacks_total",
        "IMDSv2 token requests that fell back to IMDSv1, by reason (HTTP status or timeout; timeouts inside containers usually mean the PUT response hop limit is 1).",
        with_zeros(&stats.v1_fallbacks, V1_FALLBACK_REASONS).into_iter().map(|(r, n)| (vec![("reason", r)], n as f64)),
    );
    let histograms = Endpoint::ALL
        .iter()
        .map(|e| {
            let h = stats.durations.get(e).cloned().unwrap_or_default();
            let mut ph = Histogram::default();
            ph.set_sample_count(h.count());
            ph.set_sample_sum(h.sum);
            ph.set_bucket(
                h.cumulative()
                    .map(|(le, c)| {
                        let mut b = Bucket::default();
                        b.set_upper_bound(le);
                        b.set_cumulative_count(c);
                        b
                    })
                    .collect(),
            );
            let mut m = metric(vec![("endpoint", e.as_str())]);
            m.set_histogram(ph);
            m
        })
        .collect();
    f.add("aws_imds_request_duration_seconds", "Latency of IMDS request attempts by endpoint.", MetricType::HISTOGRAM, histograms);
    f.gauge(
        "aws_imds_last_success_timestamp_seconds",
        "When a probe last read a Code=Success credential document (Unix time); 0 if never.",
        [(vec![], stats.last_success.map_or(0.0, unix_seconds))],
    );
}

fn chain_families(f: &mut Families, s: &Snapshot) {
    let round = &s.chain;
    let evaluated: Vec<(&str, &ChainObservation, &TargetReport)> =
        round.targets.iter().filter_map(|t| t.observation.as_ref().map(|o| (t.target.as_str(), o, t))).collect();
    f.gauge(
        "aws_credentials_active_provider",
        "The provider the SDK's default chain (--chain.sdk) takes credentials from, per target: 1 for the winner, 0 for the other providers of the chain; provider=\"none\" is 1 when the SDK finds no credentials.",
        evaluated.iter().flat_map(|(t, o, _)| {
            o.providers
                .iter()
                .map(|p| p.provider)
                .chain(std::iter::once(Provider::None))
                .map(move |p| (vec![("target", *t), ("provider", p.as_str())], bool_value(o.active == p)))
        }),
    );
    f.gauge(
        "aws_credentials_provider_present",
        "1 for every provider of the chain that would supply credentials if the SDK got that far.",
        evaluated.iter().flat_map(|(t, o, _)| {
            o.providers.iter().map(move |p| (vec![("target", *t), ("provider", p.provider.as_str())], bool_value(p.usable)))
        }),
    );
    f.gauge(
        "aws_credentials_instance_profile_shadowed",
        "1 when IMDS has a role but an earlier provider of the chain wins (or fails first): the instance profile is never used.",
        evaluated.iter().map(|(t, o, _)| (vec![("target", *t)], bool_value(o.instance_profile_shadowed))),
    );
    f.gauge(
        "aws_credentials_static_session_token",
        "1 when the winning credentials carry a session token the SDK cannot refresh (environment, system properties, static profile keys): they expire and requests fail with ExpiredToken.",
        evaluated.iter().map(|(t, o, _)| (vec![("target", *t), ("provider", o.active.as_str())], bool_value(o.static_session_token))),
    );
    f.gauge(
        "aws_imds_proxy_bypass_missing",
        "1 when HTTP_PROXY/http_proxy is set and NO_PROXY/no_proxy does not cover 169.254.169.254 for botocore or curl (AWS CLI, boto3, shell scripts send IMDS requests to the proxy; the Java SDKs never proxy IMDS).",
        evaluated.iter().map(|(t, o, _)| (vec![("target", *t)], bool_value(o.proxy_bypass_missing))),
    );
    f.gauge(
        "aws_credentials_chain_processes",
        "Processes matching the target's --chain.process pattern (the lowest PID is evaluated); 1 for self.",
        round.targets.iter().map(|t| (vec![("target", t.target.as_str())], t.matched as f64)),
    );
    // Every reason of every target from the start (at 0), so that increase() sees the first error.
    let mut errors: BTreeMap<(&str, &str), u64> =
        round.targets.iter().flat_map(|t| ErrorReason::ALL.iter().map(move |r| ((t.target.as_str(), r.as_str()), 0))).collect();
    errors.extend(round.errors_total.iter().map(|((t, r), n)| ((t.as_str(), *r), *n)));
    f.counter(
        "aws_credentials_chain_errors_total",
        "What the chain probe could not read, by target and reason (permission_denied: run as the process's user or grant CAP_SYS_PTRACE; not_found; malformed; io).",
        errors.into_iter().map(|((t, r), n)| (vec![("target", t), ("reason", r)], n as f64)),
    );
    // Expiry of credentials from the chain's providers, where knowable; the
    // instance profile's comes from the IMDS probe (provider="instance_profile", role).
    let expiries: Vec<(&str, &'static str, DateTime<Utc>)> = evaluated
        .iter()
        .flat_map(|(t, o, r)| {
            o.providers.iter().filter(|p| p.provider != Provider::InstanceProfile).filter_map(move |p| {
                let exp = if p.provider == Provider::Container { r.container_expiration.or(p.expiration) } else { p.expiration };
                exp.map(|e| (*t, p.provider.as_str(), e))
            })
        })
        .collect();
    f.gauge(
        "aws_credentials_expiration_timestamp_seconds",
        EXPIRATION_HELP,
        expiries.iter().map(|(t, p, e)| (vec![("provider", *p), ("target", *t)], unix_seconds(*e))),
    );
    f.gauge(
        "aws_credentials_seconds_until_expiry",
        UNTIL_EXPIRY_HELP,
        expiries.iter().map(|(t, p, e)| (vec![("provider", *p), ("target", *t)], seconds(*e - s.taken_at))),
    );
}

fn clock_families(f: &mut Families, s: &Snapshot) {
    let servers = &s.ntp.report.servers;
    // Sample-derived gauges only while the server answers: an offset that
    // cannot be measured now is unknown, not the last value and not zero.
    let fresh: Vec<(&str, &NtpSample)> =
        servers.iter().filter(|r| r.up).filter_map(|r| r.sample.as_ref().map(|x| (r.server.as_str(), x))).collect();
    let per_server = |get: fn(&NtpSample) -> f64| fresh.iter().map(move |(srv, x)| (vec![("server", *srv)], get(x))).collect::<Vec<_>>();
    f.gauge(
        "aws_clock_offset_seconds",
        "This host's clock minus the NTP server's clock, in seconds: positive means this host is ahead. AWS rejects requests signed more than 5 minutes off.",
        per_server(|x| x.offset_seconds),
    );
    f.gauge(
        "aws_clock_error_bound_seconds",
        "How far this host's clock may be from true time by this server: |offset| + root dispersion + rtt/2 + root delay/2 (as AWS ClockBound and chrony bound it).",
        per_server(NtpSample::error_bound_seconds),
    );
    f.gauge(
        "aws_clock_ntp_up",
        "1 when the last query of the NTP server got a valid, synchronised reply.",
        servers.iter().map(|r| (vec![("server", r.server.as_str())], bool_value(r.up))),
    );
    f.gauge(
        "aws_clock_ntp_rtt_seconds",
        "Round-trip delay of the last NTP exchange, less the server's processing time.",
        per_server(|x| x.rtt_seconds),
    );
    f.gauge(
        "aws_clock_ntp_stratum",
        "Stratum of the NTP server (1 = attached to a reference clock).",
        per_server(|x| f64::from(x.stratum)),
    );
    f.gauge(
        "aws_clock_ntp_leap",
        "Leap indicator of the NTP server: 0 none, 1 insert second, 2 delete second (3, unsynchronised, is never up).",
        per_server(|x| f64::from(x.leap)),
    );
    f.gauge(
        "aws_clock_ntp_root_delay_seconds",
        "The server's round-trip delay to its reference clock.",
        per_server(|x| x.root_delay_seconds),
    );
    f.gauge(
        "aws_clock_ntp_root_dispersion_seconds",
        "The server's dispersion relative to its reference clock.",
        per_server(|x| x.root_dispersion_seconds),
    );
    f.gauge(
        "aws_clock_ntp_reference_info",
        "Reference ID of the NTP server (a clock name at stratum 1, else the address of its upstream). Always 1.",
        fresh.iter().map(|(srv, x)| (vec![("server", *srv), ("reference_id", x.reference_id.as_str())], 1.0)),
    );
    f.gauge(
        "aws_clock_ntp_poll_interval_seconds",
        "Current minimum interval between queries of the server: --ntp.min-interval, doubled by each RATE kiss-o'-death.",
        servers.iter().map(|r| (vec![("server", r.server.as_str())], r.poll_interval.as_secs_f64())),
    );
    f.gauge(
        "aws_clock_ntp_polling_stopped",
        "1 when the server sent a DENY or RSTR kiss-o'-death: it is not queried again until the exporter restarts (RFC 5905).",
        servers.iter().map(|r| (vec![("server", r.server.as_str())], bool_value(r.polling_stopped))),
    );
    f.counter(
        "aws_clock_ntp_requests_total",
        "NTP requests sent.",
        servers.iter().map(|r| (vec![("server", r.server.as_str())], r.requests_total as f64)),
    );
    f.counter(
        "aws_clock_ntp_failures_total",
        "Failed NTP requests and skipped rounds by reason: timeout, kiss_of_death, unsynchronized, bad_origin, bad_mode, malformed, root_distance, resolve, network, rate_limited_locally.",
        // `timeout` always exists (the common failure, for rate() from the first one);
        // the nine rarer reasons appear when they first occur: ten series per
        // server on every instance of a fleet would mostly be zeros.
        servers.iter().flat_map(|r| {
            r.failures_total
                .iter()
                .filter(|(reason, n)| **n > 0 || reason.as_str() == "timeout")
                .map(|(reason, n)| (vec![("server", r.server.as_str()), ("reason", reason.as_str())], *n as f64))
        }),
    );
    f.counter(
        "aws_clock_ntp_kiss_of_death_total",
        "Kiss-o'-death replies by code (RATE: back off; DENY, RSTR: stop polling).",
        servers.iter().flat_map(|r| {
            with_zeros(&r.kiss_of_death_total, KISS_CODES)
                .into_iter()
                .map(|(code, n)| (vec![("server", r.server.as_str()), ("code", code)], n as f64))
        }),
    );
    f.counter(
        "aws_clock_ntp_ignored_packets_total",
        "Datagrams received while waiting for a reply that were not the reply (other source, wrong origin timestamp, too short).",
        servers.iter().map(|r| (vec![("server", r.server.as_str())], r.ignored_packets_total as f64)),
    );
    f.gauge(
        "aws_clock_amazon_time_sync_configured",
        "1 when a chrony, ntpd or systemd-timesyncd configuration file names the Amazon Time Sync Service (169.254.169.123 or fd00:ec2::123).",
        [(vec![], bool_value(!s.time_sync.amazon_time_sync.is_empty()))],
    );
    if let Some(k) = &s.kernel.value {
        f.gauge(
            "aws_clock_synchronized",
            "1 when the kernel considers its clock synchronised by a time daemon (adjtimex: no TIME_ERROR, no STA_UNSYNC).",
            [(vec![], bool_value(k.synchronized))],
        );
        f.gauge(
            "aws_clock_max_error_seconds",
            "The kernel's upper bound of the clock error (adjtimex maxerror).",
            [(vec![], k.max_error_seconds)],
        );
        f.gauge(
            "aws_clock_estimated_error_seconds",
            "The kernel's estimated clock error (adjtimex esterror).",
            [(vec![], k.estimated_error_seconds)],
        );
        f.gauge(
            "aws_clock_kernel_offset_seconds",
            "Offset the kernel is still slewing out (adjtimex offset).",
            [(vec![], k.offset_seconds)],
        );
        f.gauge(
            "aws_clock_tai_offset_seconds",
            "TAI minus UTC as set by the time daemon (0 if never set).",
            [(vec![], k.tai_offset_seconds)],
        );
    }
}

fn exporter_families(f: &mut Families, s: &Snapshot) {
    f.gauge(
        "aws_credentials_exporter_build_info",
        "Version, git revision and branch, and compiler of this exporter, as `--version` prints them. Always 1.",
        [(vec![("version", VERSION), ("revision", REVISION), ("branch", BRANCH), ("rustversion", RUST_VERSION)], 1.0)],
    );
    let probes = s.probe_outcomes();
    f.gauge(
        "aws_credentials_exporter_probe_success",
        "1 when the last completed run of the probe (imds, ntp, chain, time_sync, kernel) succeeded; 0 when it failed, overran its own budget or has not completed yet.",
        probes.iter().map(|(p, ok, _)| (vec![("probe", *p)], bool_value(*ok))),
    );
    f.gauge(
        "aws_credentials_exporter_probe_duration_seconds",
        "How long the last completed run of each probe (imds, ntp, chain, time_sync, kernel) took.",
        probes.iter().map(|(p, _, d)| (vec![("probe", *p)], d.as_secs_f64())),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imds::{CredentialInfo, ImdsObservation, ImdsStats};
    use crate::probe::{ErrorKind, ImdsReport, Outcome, ProbeError};
    use chrono::{TimeZone, Utc};
    use std::sync::Arc;
    use std::time::Duration;

    fn snapshot(obs: ImdsObservation, stats: ImdsStats) -> Snapshot {
        Snapshot {
            taken_at: Utc.with_ymd_and_hms(2026, 11, 28, 18, 0, 0).unwrap(),
            imds: Arc::new(Outcome { value: ImdsReport { observation: obs, stats }, duration: Duration::from_millis(3), error: None }),
            ntp: Arc::default(),
            kernel: Arc::new(Outcome { error: Some(ProbeError::new(ErrorKind::Io, "not read in tests")), ..Outcome::default() }),
            time_sync: Arc::default(),
            chain: Arc::default(),
            process: Arc::default(),
        }
    }

    #[test]
    fn renders_expiry_relative_to_the_snapshot_clock() {
        let obs = ImdsObservation {
            protocol: Some(Protocol::V2),
            instance_profile_attached: Some(true),
            role: Some("app-role".into()),
            credentials: Some(CredentialInfo {
                code: "Success".into(),
                kind: "AWS-HMAC".into(),
                last_updated: Some(Utc.with_ymd_and_hms(2026, 11, 28, 17, 0, 0).unwrap()),
                expiration: Some(Utc.with_ymd_and_hms(2026, 11, 28, 18, 4, 12).unwrap()),
                access_key_id_suffix: Some("AB12".into()),
                account_id: None,
            }),
            ..Default::default()
        };
        let text = render(&snapshot(obs, ImdsStats::default()));
        for line in [
            "aws_credentials_seconds_until_expiry{provider=\"instance_profile\",role=\"app-role\"} 252",
            "aws_credentials_expiration_timestamp_seconds{provider=\"instance_profile\",role=\"app-role\"} 1795889052",
            "aws_credentials_last_updated_timestamp_seconds{role=\"app-role\"} 1795885200",
            "aws_imds_up 1",
            "aws_imds_protocol_version 2",
            "aws_imds_instance_profile_attached 1",
            "aws_imds_credentials_info{role=\"app-role\",code=\"Success\",type=\"AWS-HMAC\",instance_profile_arn=\"\"} 1",
            "aws_imds_throttled_total 0",
            "aws_imds_request_duration_seconds_count{endpoint=\"credentials\"} 0",
            "# HELP aws_credentials_seconds_until_expiry Seconds until the credentials expire, measured with this host's clock",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(text.contains("aws_credentials_exporter_build_info{version=\""));
    }

    #[test]
    fn build_info_matches_version_info() {
        let text = render(&snapshot(ImdsObservation::default(), ImdsStats::default()));
        let line = text.lines().find(|l| l.starts_with("aws_credentials_exporter_build_info{")).expect("build_info");
        let label = |name: &str| {
            let start = line.find(&format!("{name}=\"")).unwrap_or_else(|| panic!("no {name} in {line}")) + name.len() + 2;
            &line[start..start + line[start..].find('"').unwrap()]
        };
        let first = format!(
            "aws-credentials-exporter, version {} (branch: {}, revision: {})",
            label("version"),
            label("branch"),
            label("revision")
        );
        assert_eq!(VERSION_INFO.lines().next(), Some(first.as_str()));
        assert!(VERSION_INFO.contains(&format!("\n  rust version:     rustc {}\n", label("rustversion"))), "{VERSION_INFO}\n{line}");
    }

    #[test]
    fn unreachable_imds_keeps_stable_series() {
        let text = render(&snapshot(ImdsObservation { error: Some("down".into()), ..Default::default() }, ImdsStats::default()));
        for line in
            ["aws_imds_up 0", "aws_imds_protocol_version 0", "aws_imds_retries_total 0", "aws_imds_last_success_timestamp_seconds 0"]
        {
            assert!(text.contains(line), "missing {line:?}");
        }
        assert!(!text.contains("aws_credentials_seconds_until_expiry{"));
    }

    #[test]
    fn label_values_are_escaped() {
        let obs = ImdsObservation { role: Some("we\"ird\\role\n".into()), credentials: None, ..Default::default() };
        let obs = ImdsObservation {
            credentials: Some(CredentialInfo {
                code: "Bad\"Code".into(),
                kind: String::new(),
                last_updated: None,
                expiration: None,
                access_key_id_suffix: None,
                account_id: None,
            }),
            ..obs
        };
        let text = render(&snapshot(obs, ImdsStats::default()));
        assert!(text.contains(r#"role="we\"ird\\role\n",code="Bad\"Code""#), "{text}");
    }
}
