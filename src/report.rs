//! Snapshot -> diagnosis: the ExpiredToken troubleshooting article as a list
//! of checks with evidence and remedies. A pure function of the [`Snapshot`],
//! rendered as text (`check`), JSON (`check --output json`, `/check.json`)
//! and HTML (the status page), so none of them can disagree with `/metrics`.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::clock::MAX_ERROR_CAP_SECONDS;
use crate::imds::Protocol;
use crate::metrics::VERSION;
use crate::probe::ErrorKind;
use crate::probe::Snapshot;
use crate::timefmt::{rfc3339, seconds};

/// Version of the JSON schema; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// Base of the runbook links.
pub const RUNBOOK: &str = "https://github.com/aws-credentials-exporter/aws-credentials-exporter/blob/main/docs/runbook.md";

/// Outcome of one check, ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    /// Not applicable or not measurable here.
    Skip,
    /// Healthy.
    Ok,
    /// Will cause failures if left alone.
    Warn,
    /// Causes failures now (or within minutes).
    Fail,
}

impl Status {
    /// The word printed in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Skip => "SKIP",
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }

    /// Exit code of `check`: 0 all OK, 1 warnings, 2 failures.
    pub fn exit_code(self) -> i32 {
        match self {
            Status::Skip | Status::Ok => 0,
            Status::Warn => 1,
            Status::Fail => 2,
        }
    }
}

/// One check: what was looked at, what was found, what to do.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// Stable identifier, e.g. `imds.reachable`.
    pub id: &'static str,
    /// What is checked, in a few words.
    pub title: String,
    /// Outcome.
    pub status: Status,
    /// What was measured, in plain words.
    pub evidence: String,
    /// What to do about it (absent when OK).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remedy: Option<String>,
    /// A command that confirms the finding on the instance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirm: Option<String>,
    /// Runbook section for this finding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runbook: Option<String>,
}

impl Check {
    fn new(id: &'static str, title: impl Into<String>, status: Status, evidence: impl Into<String>) -> Self {
        Self { id, title: title.into(), status, evidence: evidence.into(), remedy: None, confirm: None, runbook: None }
    }

    fn remedy(mut self, remedy: impl Into<String>) -> Self {
        self.remedy = Some(remedy.into());
        self
    }

    fn confirm(mut self, command: impl Into<String>) -> Self {
        self.confirm = Some(command.into());
        self
    }

    fn runbook(mut self, alert: &str) -> Self {
        self.runbook = Some(format!("{RUNBOOK}#{}", alert.to_ascii_lowercase()));
        self
    }
}

/// Headline numbers, for the status banner and scripts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Instance-profile role.
    pub role: Option<String>,
    /// Instance-profile credential expiry.
    pub expiration: Option<DateTime<Utc>>,
    /// Seconds until that expiry by this host's clock.
    pub seconds_until_expiry: Option<f64>,
    /// `aws_imds_up`.
    pub imds_up: bool,
    /// `aws_imds_protocol_version`.
    pub imds_protocol_version: u8,
    /// Clock offset (local minus server) of the first server that answers.
    pub clock_offset_seconds: Option<f64>,
    /// Kernel clock synchronised by the `AwsClockNotSynchronising` alert's
    /// guard: false only when `STA_UNSYNC` is set and the maximum error is at the 16 s cap.
    pub clock_synchronized: Option<bool>,
    /// SDK whose chain was evaluated (`java-v2`, `java-v1`, `python`).
    pub chain_sdk: &'static str,
    /// Active provider per target (`aws_credentials_active_provider`).
    pub active_providers: Vec<TargetProvider>,
}

/// The provider a target's SDK would use.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetProvider {
    /// `self` or the process target's name.
    pub target: String,
    /// Provider label value; `none` when no credentials are found, absent when the target could not be read.
    pub provider: Option<&'static str>,
}

/// The whole diagnosis.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Exporter version.
    pub exporter_version: &'static str,
    /// When the snapshot was taken.
    pub generated_at: DateTime<Utc>,
    /// Worst status of all checks.
    pub status: Status,
    /// Headline numbers.
    pub summary: Summary,
    /// Every check, in the order of the troubleshooting article.
    pub checks: Vec<Check>,
}

/// IMDS commands an operator can paste, as in the AWS article.
const TOKEN_CMD: &str =
    "TOKEN=$(curl -sS -X PUT -m 2 -H 'X-aws-ec2-metadata-token-ttl-seconds: 21600' http://169.254.169.254/latest/api/token)";
const HOP_LIMIT_FIX: &str =
    "aws ec2 modify-instance-metadata-options --instance-id INSTANCE_ID --http-put-response-hop-limit 2 --http-endpoint enabled";

/// Builds the report from a snapshot.
pub fn build(s: &Snapshot) -> Report {
    let mut checks = Vec::new();
    imds_checks(s, &mut checks);
    expiry_checks(s, &mut checks);
    clock_checks(s, &mut checks);
    chain_checks(s, &mut checks);
    let obs = &s.imds.observation;
    let expiration = obs.credentials.as_ref().and_then(|c| c.expiration);
    let summary = Summary {
        role: obs.role.clone(),
        expiration,
        seconds_until_expiry: expiration.map(|e| seconds(e - s.taken_at)),
        imds_up: obs.up(),
        imds_protocol_version: match obs.protocol {
            Some(Protocol::V2) => 2,
            Some(Protocol::V1) => 1,
            None => 0,
        },
        clock_offset_seconds: s.ntp.report.servers.iter().filter(|r| r.up).find_map(|r| r.sample.as_ref()).map(|x| x.offset_seconds),
        clock_synchronized: s.kernel.value.map(|k| !k.not_synchronising()),
        chain_sdk: s.chain.sdk.as_str(),
        active_providers: s
            .chain
            .targets
            .iter()
            .map(|t| TargetProvider { target: t.target.clone(), provider: t.observation.as_ref().map(|o| o.active.as_str()) })
            .collect(),
    };
    let status = checks.iter().map(|c| c.status).max().unwrap_or(Status::Ok);
    Report { schema_version: SCHEMA_VERSION, exporter_version: VERSION, generated_at: s.taken_at, status, summary, checks }
}

/// `4m12s`, `5h12m`, `2d3h`, `-3m5s` (expired).
pub fn human(d: chrono::Duration) -> String {
    let neg = d < chrono::Duration::zero();
    let s = d.num_seconds().unsigned_abs();
    let text = match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86_400, (s % 86_400) / 3600),
    };
    if neg { format!("-{text}") } else { text }
}

fn imds_checks(s: &Snapshot, out: &mut Vec<Check>) {
    let obs = &s.imds.observation;
    let stats = &s.imds.stats;
    let title = "IMDS reachable";
    if obs.disabled {
        out.push(
            Check::new(
                "imds.reachable",
                title,
                Status::Skip,
                "AWS_EC2_METADATA_DISABLED=true: the SDKs will not use the instance profile either",
            )
            .remedy("Unset AWS_EC2_METADATA_DISABLED unless the application gets credentials elsewhere."),
        );
        return;
    }
    out.push(match obs.protocol {
        Some(Protocol::V2) => Check::new("imds.reachable", title, Status::Ok, "IMDS answered over IMDSv2 (session token)"),
        Some(Protocol::V1) => Check::new(
            "imds.reachable",
            title,
            Status::Ok,
            format!("IMDS answered over IMDSv1 (the token request failed: {})", obs.v1_fallback_reason.as_deref().unwrap_or("unknown")),
        ),
        None => Check::new("imds.reachable", title, Status::Fail, obs.error.clone().unwrap_or_else(|| "IMDS did not answer".into()))
            .remedy("Check that this is an EC2 instance with the metadata service enabled (--http-endpoint enabled) and that no firewall (iptables, a container network policy) blocks 169.254.169.254.")
            .confirm(format!("{TOKEN_CMD}; echo \"token: ${{#TOKEN}} characters\""))
            .runbook("AwsImdsDown"),
    });

    let token = "IMDSv2 token";
    out.push(match (obs.protocol, obs.v1_fallback_reason.as_deref()) {
        (Some(Protocol::V2), _) => Check::new("imds.token", token, Status::Ok, "the token PUT answered; the token is cached for its TTL"),
        (_, Some("timeout")) => Check::new(
            "imds.token",
            token,
            Status::Warn,
            "the token PUT timed out while GETs work: the PUT response hop limit is too low for this network path (typical inside containers); SDKs wait for this timeout, then fall back to IMDSv1 or fail if IMDSv1 is disabled",
        )
        .remedy(format!("Raise the hop limit to 2: {HOP_LIMIT_FIX}"))
        .confirm(TOKEN_CMD)
        .runbook("AwsImdsTokenTimeout"),
        (_, Some(reason)) => Check::new(
            "imds.token",
            token,
            Status::Warn,
            format!("the token PUT answered {reason}: IMDSv2 is unavailable and the SDKs use IMDSv1"),
        )
        .remedy("Enable IMDSv2 (aws ec2 modify-instance-metadata-options --http-tokens required --http-endpoint enabled) and make sure no proxy or firewall rewrites PUT requests to 169.254.169.254.")
        .confirm(TOKEN_CMD)
        .runbook("AwsImdsV1Fallback"),
        (_, None) => match &obs.error {
            Some(e) if obs.error_kind == Some(ErrorKind::V1Disabled) => Check::new("imds.token", token, Status::Fail, e.clone())
                .remedy(format!("IMDSv1 is disabled, so the token is required. If this runs in a container, raise the hop limit: {HOP_LIMIT_FIX}"))
                .confirm(TOKEN_CMD)
                .runbook("AwsImdsTokenTimeout"),
            _ => Check::new("imds.token", token, Status::Skip, "IMDS unreachable"),
        },
    });

    let throttle = "IMDS throttling";
    out.push(if stats.throttled == 0 {
        Check::new("imds.throttling", throttle, Status::Ok, "no HTTP 429 seen since the exporter started")
    } else {
        let requests: u64 = stats.requests.values().sum();
        Check::new(
            "imds.throttling",
            throttle,
            Status::Warn,
            format!("{} of {requests} IMDS requests were throttled (HTTP 429) since the exporter started", stats.throttled),
        )
        .remedy("IMDS limits requests per second per instance. Let the SDK cache credentials (reuse one client or credentials provider instead of creating one per request), reduce the number of processes polling IMDS, and retry with exponential backoff.")
        .confirm("sudo ss -tnp dst 169.254.169.254   # processes with connections to IMDS")
        .runbook("AwsImdsThrottled")
    });

    let profile = "instance profile attached";
    out.push(match obs.instance_profile_attached {
        Some(true) => {
            let arn = obs.instance_profile_arn.as_deref().map(|a| format!(" ({a})")).unwrap_or_default();
            Check::new("imds.instance_profile", profile, Status::Ok, format!("role {}{arn}", obs.role.as_deref().unwrap_or("?")))
        }
        Some(false) => Check::new(
            "imds.instance_profile",
            profile,
            Status::Fail,
            "IMDS lists no IAM role: no instance profile is attached to this instance",
        )
        .remedy(
            "Attach an instance profile: aws ec2 associate-iam-instance-profile --instance-id i-... --iam-instance-profile Name=PROFILE",
        )
        .confirm(format!(
            "{TOKEN_CMD}; curl -s -H \"X-aws-ec2-metadata-token: $TOKEN\" http://169.254.169.254/latest/meta-data/iam/security-credentials/"
        ))
        .runbook("AwsImdsNoInstanceProfile"),
        None => Check::new("imds.instance_profile", profile, Status::Skip, "IMDS unreachable"),
    });

    let code = "credential document";
    out.push(match (&obs.credentials, obs.credentials_stale) {
        (Some(c), false) if c.is_success() => Check::new(
            "imds.credentials",
            code,
            Status::Ok,
            format!("Code=Success, Type={}, access key id ending {}", c.kind, c.access_key_id_suffix.as_deref().unwrap_or("?")),
        ),
        (Some(c), false) => Check::new("imds.credentials", code, Status::Fail, format!("IMDS reports Code={}: it cannot get credentials for the role", c.code))
            .remedy("Check the role's trust policy allows ec2.amazonaws.com to assume it (AssumeRoleUnauthorizedAccess), and that the role still exists.")
            .confirm(format!(
                "{TOKEN_CMD}; curl -s -H \"X-aws-ec2-metadata-token: $TOKEN\" http://169.254.169.254/latest/meta-data/iam/security-credentials/{}",
                obs.role.as_deref().unwrap_or("ROLE")
            ))
            .runbook("AwsImdsCredentialsError"),
        (_, _) if obs.instance_profile_attached == Some(true) => {
            Check::new("imds.credentials", code, Status::Fail, obs.error.clone().unwrap_or_else(|| "no usable credential document".into()))
                .remedy("IMDS answered the role listing but not a usable document: retry, and if it persists, detach and re-attach the instance profile.")
                .runbook("AwsImdsDown")
        }
        _ => Check::new("imds.credentials", code, Status::Skip, "no role to read"),
    });
}

/// AWS makes new instance-profile credentials available at least 5 minutes
/// before expiry; SDKs (Java v1: 15 minutes) refresh before that.
const WARN_BELOW: i64 = 15 * 60;
const FAIL_BELOW: i64 = 5 * 60;

fn expiry_checks(s: &Snapshot, out: &mut Vec<Check>) {
    let obs = &s.imds.observation;
    let title = "instance-profile credentials expiry";
    let Some(c) = obs.credentials.as_ref().filter(|c| c.is_success()) else {
        out.push(Check::new("credentials.expiry", title, Status::Skip, "no instance-profile credentials"));
        return;
    };
    let Some(exp) = c.expiration else { return };
    let left = exp - s.taken_at;
    let mut evidence = format!("expires {}, in {}", rfc3339(exp), human(left));
    if let Some(lu) = c.last_updated {
        evidence.push_str(&format!("; LastUpdated {} ago", human(s.taken_at - lu)));
    }
    if obs.credentials_stale {
        evidence.push_str(" (last known value: IMDS is not answering now)");
    }
    let status = match left.num_seconds() {
        n if n < FAIL_BELOW => Status::Fail,
        n if n < WARN_BELOW => Status::Warn,
        _ => Status::Ok,
    };
    if status != Status::Ok {
        evidence.push_str(": rotation is late (IMDS serves new credentials at least 5 minutes before expiry)");
    }
    let check = Check::new("credentials.expiry", title, status, evidence);
    out.push(match status {
        Status::Ok => check,
        _ => check
            .remedy("IMDS stopped rotating the credentials, or this host's clock is wrong. Check the clock first (chronyc tracking); then detach and re-attach the instance profile, or stop/start the instance. Applications holding these credentials will fail with ExpiredToken at the expiry time.")
            .confirm(format!(
                "{TOKEN_CMD}; curl -s -H \"X-aws-ec2-metadata-token: $TOKEN\" http://169.254.169.254/latest/meta-data/iam/security-credentials/{} | grep -E 'LastUpdated|Expiration'; date -u",
                obs.role.as_deref().unwrap_or("ROLE")
            ))
            .runbook("AwsCredentialsExpiringSoon"),
    });
}

/// Offsets above this are worth a warning (node-mixin's clock skew threshold).
pub const OFFSET_WARN_SECONDS: f64 = 0.05;
/// Offsets above this fail: well before SigV4's 5-minute limit, and past the
/// point where SDKs refresh credentials at the wrong time.
pub const OFFSET_FAIL_SECONDS: f64 = 60.0;

const CHRONY_FIX: &str = "Configure chrony for the Amazon Time Sync Service: add `server 169.254.169.123 prefer iburst minpoll 4 maxpoll 4` to /etc/chrony/chrony.conf (or /etc/chrony.conf), `sudo systemctl restart chronyd`, then step the clock once with `sudo chronyc makestep`.";

/// `179.999 s (2m59s) ahead of`, `120.0 ms behind`, `within 1 ms of`.
fn offset_words(offset: f64) -> String {
    let a = offset.abs();
    // Below a millisecond the sign is measurement noise on a local network.
    if a < 0.001 {
        return "within 1 ms of".to_string();
    }
    let dir = if offset >= 0.0 { "ahead of" } else { "behind" };
    let size = if a < 1.0 {
        format!("{:.1} ms", a * 1000.0)
    } else {
        format!("{:.3} s ({})", a, human(chrono::Duration::milliseconds((a * 1000.0) as i64)))
    };
    format!("{size} {dir}")
}

/// How far off the clock is at least: |offset| less the half round trip that
/// bounds the measurement's error, never below 0.
fn provable_offset(offset: f64, rtt: f64) -> f64 {
    (offset.abs() - rtt.max(0.0) / 2.0).max(0.0)
}

fn clock_checks(s: &Snapshot, out: &mut Vec<Check>) {
    let servers = &s.ntp.report.servers;
    for r in servers {
        let title = format!("clock offset vs {}", r.server);
        let check = match (r.up, &r.sample) {
            (true, Some(x)) => {
                // The true offset lies within offset ± rtt/2 (RFC 5905): warn only
                // when the clock is off by more than the threshold whatever the
                // path's asymmetry, not when a slow round trip makes it possible.
                let a = provable_offset(x.offset_seconds, x.rtt_seconds);
                let status = if a >= OFFSET_FAIL_SECONDS {
                    Status::Fail
                } else if a >= OFFSET_WARN_SECONDS {
                    Status::Warn
                } else {
                    Status::Ok
                };
                let evidence = format!(
                    "this host is {} the server (error bound {:.3} s, stratum {}, rtt {:.1} ms)",
                    offset_words(x.offset_seconds),
                    x.error_bound_seconds(),
                    x.stratum,
                    x.rtt_seconds * 1000.0
                );
                let c = Check::new("clock.offset", title, status, evidence);
                match status {
                    Status::Ok => c,
                    Status::Fail => c.remedy(format!("AWS rejects requests signed more than 5 minutes off, and SDKs refresh credentials by this clock. {CHRONY_FIX}")).confirm("chronyc tracking; chronyc sources -v").runbook("AwsClockSkewDetected"),
                    _ => c.remedy(CHRONY_FIX).confirm("chronyc tracking; chronyc sources -v").runbook("AwsClockSkewDetected"),
                }
            }
            _ => Check::new("clock.ntp", title, Status::Warn, r.error.clone().unwrap_or_else(|| format!("NTP server {} has not answered", r.server)))
                .remedy("The Amazon Time Sync Service answers on every EC2 instance at 169.254.169.123 (UDP 123); check host firewalls (iptables/nftables) and that nothing else holds the path. Elsewhere, set --ntp.server to a reachable server.")
                .confirm("ntpdig 169.254.169.123   # or: chronyc sources")
                .runbook("AwsClockNtpUnreachable"),
        };
        out.push(check);
    }
    out.push(match (&s.kernel.value, &s.kernel.error) {
        (Some(k), _) if k.synchronized => Check::new(
            "clock.kernel",
            "kernel clock synchronised",
            Status::Ok,
            format!(
                "a time daemon disciplines the clock (max error {:.3} s, estimated error {:.6} s)",
                k.max_error_seconds, k.estimated_error_seconds
            ),
        ),
        (Some(k), _) if !k.not_synchronising() => Check::new(
            "clock.kernel",
            "kernel clock synchronised",
            Status::Ok,
            format!(
                "STA_UNSYNC is set, but the kernel's max error ({:.3} s) is below its {MAX_ERROR_CAP_SECONDS} s cap: a time daemon keeps the clock's error bounds current (chronyd without rtcsync leaves STA_UNSYNC set)",
                k.max_error_seconds
            ),
        ),
        (Some(k), _) => Check::new(
            "clock.kernel",
            "kernel clock synchronised",
            Status::Warn,
            format!(
                "the kernel reports the clock unsynchronised (STA_UNSYNC, max error {:.1} s at its {MAX_ERROR_CAP_SECONDS} s cap): no time daemon has disciplined it recently",
                k.max_error_seconds
            ),
        )
        .remedy(CHRONY_FIX)
        .confirm("timedatectl; chronyc tracking")
        .runbook("AwsClockNotSynchronising"),
        (None, e) => Check::new(
            "clock.kernel",
            "kernel clock synchronised",
            Status::Skip,
            e.as_ref().map_or_else(|| "kernel clock not read".to_string(), |e| e.message.clone()),
        ),
    });
    let ts = &s.time_sync;
    out.push(if !ts.amazon_time_sync.is_empty() {
        let files: Vec<String> = ts.amazon_time_sync.iter().map(|p| p.display().to_string()).collect();
        Check::new("clock.time_sync_config", "time daemon uses Amazon Time Sync", Status::Ok, format!("configured in {}", files.join(", ")))
    } else if ts.daemon_configured() {
        let files: Vec<String> = ts.files.iter().map(|p| p.display().to_string()).collect();
        Check::new(
            "clock.time_sync_config",
            "time daemon uses Amazon Time Sync",
            Status::Warn,
            format!("a time daemon is configured ({}) but not for 169.254.169.123 / fd00:ec2::123", files.join(", ")),
        )
        .remedy(CHRONY_FIX)
        .confirm("grep -rn '169.254.169.123\\|fd00:ec2::123' /etc/chrony* /etc/ntp* /etc/systemd/timesyncd*")
        .runbook("AwsClockNotSynchronising")
    } else {
        Check::new(
            "clock.time_sync_config",
            "time daemon uses Amazon Time Sync",
            Status::Warn,
            "no chrony, ntpd or systemd-timesyncd configuration found",
        )
        .remedy(format!("Install chrony (sudo apt-get install chrony / sudo yum install chrony). {CHRONY_FIX}"))
        .confirm("systemctl status chronyd chrony systemd-timesyncd ntp")
        .runbook("AwsClockNotSynchronising")
    });
}

const NO_PROXY_FIX: &str = "Add the IMDS address to NO_PROXY in the application's environment: export NO_PROXY=169.254.169.254,169.254.170.2,$NO_PROXY (and no_proxy likewise; botocore does not understand CIDR ranges such as 169.254.0.0/16).";

fn chain_checks(s: &Snapshot, out: &mut Vec<Check>) {
    let sdk = s.chain.sdk.as_str();
    for t in &s.chain.targets {
        let who =
            if t.target == crate::chain::SELF_TARGET { "this environment".to_string() } else { format!("process target {:?}", t.target) };
        let Some(o) = &t.observation else {
            let err = t.error.clone().unwrap_or_else(|| "not evaluated".into());
            let status = if t.error_kind == Some(ErrorKind::PermissionDenied) { Status::Warn } else { Status::Skip };
            let mut c = Check::new("chain.target", format!("credential chain of {}", t.target), status, err);
            if status == Status::Warn {
                c = c.remedy("Run the exporter as the application's user, or grant it CAP_SYS_PTRACE (systemd: AmbientCapabilities=CAP_SYS_PTRACE) to read /proc/PID/environ.");
            }
            out.push(c);
            continue;
        };
        let title = format!("active provider ({}, {sdk})", t.target);
        let active = o.active;
        let state = o.state(active);
        let detail = state.map(|p| p.detail.clone()).unwrap_or_default();
        use crate::chain::Provider;
        let check = if active == Provider::None {
            let why = o
                .stopped_at
                .and_then(|p| o.state(p))
                .and_then(|p| p.partial.clone())
                .unwrap_or_else(|| "no provider of the chain supplies credentials".into());
            Check::new("chain.active", title, Status::Fail, format!("the SDK in {who} finds no credentials: {why}"))
                .remedy("Attach an instance profile, or fix the configuration the SDK stops at (see the evidence).")
                .runbook("AwsImdsNoInstanceProfile")
        } else if o.instance_profile_shadowed {
            Check::new(
                "chain.active",
                title,
                Status::Warn,
                format!("{} wins ({detail}); the instance profile, consulted last, is shadowed", active.as_str()),
            )
            .remedy("Remove the earlier credentials (environment variables, -Daws.* system properties, ~/.aws/credentials keys) so the SDK falls through to the instance profile, which refreshes itself.")
            .confirm("env | grep -E '^AWS_(ACCESS|SECRET|SESSION|SECURITY|PROFILE)'; ls -l ~/.aws/; ps -o args= -C java | tr ' ' '\\n' | grep -- -Daws")
            .runbook("AwsCredentialsInstanceProfileShadowed")
        } else {
            Check::new("chain.active", title, Status::Ok, format!("{} ({detail})", active.as_str()))
        };
        out.push(check);
        // The chain was read but its container credentials endpoint did not answer usably.
        if let (Some(_), Some(err)) = (&o.container, &t.error) {
            let status = if active == Provider::Container { Status::Fail } else { Status::Warn };
            out.push(
                Check::new("chain.container", format!("container credentials endpoint ({})", t.target), status, err.clone())
                    .remedy("Check the endpoint the SDK is given (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI / FULL_URI): it must answer a credential document; an https endpoint needs CA certificates (/etc/ssl/certs or SSL_CERT_FILE) in the exporter's file system."),
            );
        }
        if o.static_session_token {
            let exp = state.and_then(|p| p.expiration);
            let (status, when) = match exp {
                Some(e) if (e - s.taken_at).num_seconds() < FAIL_BELOW => {
                    (Status::Fail, format!(" and expire {} (in {})", rfc3339(e), human(e - s.taken_at)))
                }
                Some(e) => (Status::Warn, format!(" and expire {} (in {})", rfc3339(e), human(e - s.taken_at))),
                None => (Status::Warn, " (expiry unknown)".to_string()),
            };
            out.push(
                Check::new(
                    "chain.static_session_token",
                    format!("refreshable credentials ({})", t.target),
                    status,
                    format!("the {} credentials carry a session token that the SDK cannot refresh{when}: requests will then fail with ExpiredToken", active.as_str()),
                )
                .remedy("Do not hand temporary credentials to the application statically. Use the instance profile (or a profile with role_arn/credential_process, which the SDK refreshes).")
                .runbook("AwsCredentialsStaticSessionToken"),
            );
        }
        for p in o.providers.iter().filter(|p| p.partial.is_some() && Some(p.provider) != o.stopped_at) {
            out.push(
                Check::new(
                    "chain.partial",
                    format!("{} configuration ({})", p.provider.as_str(), t.target),
                    Status::Warn,
                    p.partial.clone().unwrap_or_default(),
                )
                .remedy("Complete or remove this configuration: the SDK skips or fails on it."),
            );
        }
        if o.proxy_bypass_missing {
            out.push(
                Check::new("chain.proxy", format!("IMDS bypasses the HTTP proxy ({})", t.target), Status::Warn, "HTTP_PROXY/http_proxy is set and NO_PROXY does not cover 169.254.169.254: botocore (AWS CLI, boto3) and curl send IMDS requests to the proxy, which cannot reach it (the Java SDKs never proxy IMDS)")
                    .remedy(NO_PROXY_FIX)
                    .confirm("env | grep -i _proxy")
                    .runbook("AwsImdsProxyBypassMissing"),
            );
        }
    }
}

/// Plain-text report; `color` adds ANSI colours (only on a TTY).
pub fn render_text(r: &Report, color: bool) -> String {
    let paint = |st: Status| -> String {
        let word = format!("{:<4}", st.as_str());
        if !color {
            return word;
        }
        let code = match st {
            Status::Ok => "32",
            Status::Warn => "33",
            Status::Fail => "31",
            Status::Skip => "2",
        };
        format!("\x1b[{code}m{word}\x1b[0m")
    };
    let mut s = format!("aws-credentials-exporter {} check at {}: {}\n\n", r.exporter_version, rfc3339(r.generated_at), r.status.as_str());
    for c in &r.checks {
        s.push_str(&format!("{} {:<38} {}\n", paint(c.status), c.title, c.evidence));
        if let Some(remedy) = &c.remedy {
            s.push_str(&format!("     fix:     {remedy}\n"));
        }
        if let Some(confirm) = &c.confirm {
            s.push_str(&format!("     confirm: {confirm}\n"));
        }
        if let Some(rb) = &c.runbook {
            s.push_str(&format!("     runbook: {rb}\n"));
        }
    }
    s
}

/// Escapes text for HTML element content and attribute values.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// The status page: the same report as HTML, no scripts, no external assets.
pub fn render_html(r: &Report, telemetry_path: &str) -> String {
    let mut h = String::with_capacity(16 * 1024);
    let status = r.status.as_str();
    h.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    h.push_str(&format!("<title>{status} · AWS credentials exporter</title>\n"));
    h.push_str(
        "<style>body{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem;color:#1b1b1b}\
         .banner{padding:1rem 1.5rem;border-radius:6px;font-size:1.3rem;font-weight:600}\
         .OK,.SKIP{background:#e3f5e1}.WARN{background:#fff4ce}.FAIL{background:#fde0df}\
         dl{display:grid;grid-template-columns:max-content auto;gap:.3rem 1.5rem}dt{font-weight:600}\
         table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.5rem;text-align:left;vertical-align:top}\
         .st{font-weight:700;white-space:nowrap}code{background:#f3f3f3;padding:0 .2rem;word-break:break-all}</style>\n",
    );
    h.push_str("</head><body>\n<h1>AWS credentials exporter</h1>\n");
    let failing = r.checks.iter().filter(|c| c.status >= Status::Warn).count();
    let banner = match r.status {
        Status::Fail => format!("FAIL: {failing} finding(s) need action; requests may fail with ExpiredToken"),
        Status::Warn => format!("WARN: {failing} finding(s) will cause failures if left alone"),
        _ => "OK: credentials, IMDS and clock look healthy".to_string(),
    };
    h.push_str(&format!("<div id=\"status\" class=\"banner {status}\" data-status=\"{status}\">{}</div>\n", esc(&banner)));
    let sm = &r.summary;
    let expiry = match (sm.expiration, sm.seconds_until_expiry) {
        (Some(e), Some(left)) => format!("{} (in {})", rfc3339(e), human(chrono::Duration::milliseconds((left * 1000.0) as i64))),
        _ => "unknown".into(),
    };
    let offset =
        sm.clock_offset_seconds.map(|o| format!("this host is {} the time server", offset_words(o))).unwrap_or_else(|| "unknown".into());
    let imds = match (sm.imds_up, sm.imds_protocol_version) {
        (true, v) => format!("up (IMDSv{v})"),
        (false, 0) => "unreachable".into(),
        (false, v) => format!("answering (IMDSv{v}) but no usable credentials"),
    };
    h.push_str("<dl id=\"summary\">\n");
    for (id, k, v) in [
        ("expiry", "Instance-profile credentials expire", expiry),
        ("role", "Role", sm.role.clone().unwrap_or_else(|| "none".into())),
        ("offset", "Clock", offset),
        ("imds", "IMDS", imds),
    ] {
        h.push_str(&format!("<dt>{}</dt><dd id=\"{id}\">{}</dd>\n", esc(k), esc(&v)));
    }
    h.push_str("</dl>\n<h2>Findings</h2>\n<table id=\"findings\"><thead><tr><th>Status</th><th>Check</th><th>Evidence and remedy</th></tr></thead><tbody>\n");
    for c in &r.checks {
        h.push_str(&format!(
            "<tr class=\"{st}\" data-check=\"{id}\" data-status=\"{st}\"><td class=\"st\">{st}</td><td>{title}</td><td>{ev}",
            st = c.status.as_str(),
            id = esc(c.id),
            title = esc(&c.title),
            ev = esc(&c.evidence)
        ));
        if let Some(x) = &c.remedy {
            h.push_str(&format!("<p class=\"remedy\"><b>Fix:</b> {}</p>", esc(x)));
        }
        if let Some(x) = &c.confirm {
            h.push_str(&format!("<p class=\"confirm\"><b>Confirm:</b> <code>{}</code></p>", esc(x)));
        }
        if let Some(x) = &c.runbook {
            h.push_str(&format!("<p><a href=\"{}\">Runbook</a></p>", esc(x)));
        }
        h.push_str("</td></tr>\n");
    }
    h.push_str("</tbody></table>\n");
    h.push_str(&format!(
        "<p><a href=\"{}\">Metrics</a> · <a href=\"/check.json\">JSON report</a> · <a href=\"/-/healthy\">Health</a></p>\n",
        esc(telemetry_path)
    ));
    h.push_str(&format!(
        "<p><small>Version {} · generated {}</small></p>\n</body></html>\n",
        esc(r.exporter_version),
        rfc3339(r.generated_at)
    ));
    h
}

/// The JSON report (schema [`SCHEMA_VERSION`], documented in the README).
pub fn render_json(r: &Report) -> String {
    serde_json::to_string_pretty(r).expect("report serialises") + "\n"
}

#[cfg(test)]
mod tests {

    #[test]
    fn an_offset_within_the_half_round_trip_is_not_a_skew() {
        // A loaded host: 54 ms behind with a 119 ms round trip proves nothing.
        assert_eq!(provable_offset(-0.054, 0.119), 0.0);
        assert!((provable_offset(0.2, 0.02) - 0.19).abs() < 1e-9);
        assert!((provable_offset(-180.0, 0.001) - 179.9995).abs() < 1e-9);
        assert_eq!(provable_offset(0.01, -1.0), 0.01);
    }

    use super::*;

    #[test]
    fn human_durations() {
        let d = chrono::Duration::seconds;
        assert_eq!(human(d(0)), "0s");
        assert_eq!(human(d(252)), "4m12s");
        assert_eq!(human(d(5 * 3600 + 12 * 60 + 7)), "5h12m");
        assert_eq!(human(d(-185)), "-3m5s");
        assert_eq!(human(d(2 * 86_400 + 3 * 3600)), "2d3h");
    }

    #[test]
    fn every_runbook_link_has_a_section() {
        let runbook = include_str!("../docs/runbook.md");
        let anchors: Vec<String> = runbook.lines().filter_map(|l| l.strip_prefix("## ")).map(|h| h.trim().to_ascii_lowercase()).collect();
        let source = include_str!("report.rs");
        let mut linked = 0;
        for part in source.split(".runbook(\"").skip(1) {
            let name = part.split('"').next().unwrap().to_ascii_lowercase();
            assert!(anchors.contains(&name), "docs/runbook.md has no section {name}");
            linked += 1;
        }
        assert!(linked >= 10, "{linked}");
    }

    fn snapshot_with(imds: crate::imds::ImdsObservation, kernel: Option<crate::clock::KernelClock>) -> Snapshot {
        use crate::probe::{ImdsReport, Outcome};
        use std::sync::Arc;
        Snapshot {
            taken_at: Utc::now(),
            imds: Arc::new(Outcome { value: ImdsReport { observation: imds, stats: Default::default() }, ..Outcome::default() }),
            ntp: Arc::default(),
            kernel: Arc::new(Outcome { value: kernel, ..Outcome::default() }),
            time_sync: Arc::default(),
            chain: Arc::default(),
            process: Arc::default(),
        }
    }

    fn check<'a>(r: &'a Report, id: &str) -> &'a Check {
        r.checks.iter().find(|c| c.id == id).unwrap_or_else(|| panic!("no check {id}"))
    }

    /// Regression: the bare STA_UNSYNC bit made healthy chrony hosts (no
    /// `rtcsync`) look unsynchronised; the verdict is the alert's guard.
    #[test]
    fn the_kernel_clock_verdict_is_the_alerts_guard_not_the_bare_unsync_bit() {
        let k = crate::sim::scenario::UNSYNCED_KERNEL;
        let cases = [
            (crate::sim::scenario::SYNCED_KERNEL, Status::Ok, Some(true)),
            (crate::clock::KernelClock { max_error_seconds: 0.25, ..k }, Status::Ok, Some(true)),
            (crate::clock::KernelClock { max_error_seconds: 15.9, ..k }, Status::Ok, Some(true)),
            (crate::clock::KernelClock { max_error_seconds: 16.0, ..k }, Status::Warn, Some(false)),
        ];
        for (kernel, want, synchronised) in cases {
            let r = build(&snapshot_with(Default::default(), Some(kernel)));
            assert_eq!(check(&r, "clock.kernel").status, want, "{kernel:?}");
            assert_eq!(r.summary.clock_synchronized, synchronised, "{kernel:?}");
        }
        let r = build(&snapshot_with(Default::default(), None));
        assert_eq!(check(&r, "clock.kernel").status, Status::Skip);
    }

    /// The report decides by the error's kind: a message that merely mentions
    /// the variable is no V1Disabled failure, and a V1Disabled one is, whatever it says.
    #[test]
    fn the_token_check_matches_the_error_kind_not_the_message() {
        let obs = |kind, message: &str| crate::imds::ImdsObservation {
            error: Some(message.into()),
            error_kind: Some(kind),
            ..Default::default()
        };
        let r = build(&snapshot_with(obs(ErrorKind::V1Disabled, "token unavailable, IMDSv1 forbidden"), None));
        assert_eq!(check(&r, "imds.token").status, Status::Fail);
        let r = build(&snapshot_with(obs(ErrorKind::Timeout, "timed out; see AWS_EC2_METADATA_V1_DISABLED"), None));
        assert_eq!(check(&r, "imds.token").status, Status::Skip);
    }

    #[test]
    fn exit_codes_follow_the_worst_status() {
        assert_eq!(Status::Ok.exit_code(), 0);
        assert_eq!(Status::Skip.exit_code(), 0);
        assert_eq!(Status::Warn.exit_code(), 1);
        assert_eq!(Status::Fail.exit_code(), 2);
        assert!(Status::Fail > Status::Warn && Status::Warn > Status::Ok && Status::Ok > Status::Skip);
    }
}
