//! Named scenarios: how the simulated EC2 instance behaves.

use std::time::Duration;

use super::ntp::NtpSpec;
use crate::chain::ProcessEnv;
use crate::clock::KernelClock;
use crate::host::SimulatedHost;
use crate::timesync::TimeSyncConfig;

/// How the simulated IMDS answers the token PUT.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenBehaviour {
    /// Issue tokens; `ttl_header` is echoed in `x-aws-ec2-metadata-token-ttl-seconds` (None: header absent).
    Issue {
        /// TTL header value to send; `None` omits the header.
        ttl_header: Option<u64>,
    },
    /// Never answer: the response is dropped by the PUT hop limit inside a container.
    Hang,
    /// Answer with this status (403/404/405: IMDSv2 unavailable, the SDKs fall back to IMDSv1).
    Status(u16),
}

/// HTTP 429 behaviour.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Throttle {
    /// Never throttle.
    Off,
    /// Throttle `throttled` of every `of` requests (by arrival order).
    Ratio {
        /// Throttled requests per cycle.
        throttled: u64,
        /// Cycle length.
        of: u64,
    },
    /// Throttle requests beyond `per_second` in any calendar second.
    Rate {
        /// Requests allowed per second.
        per_second: u64,
    },
}

/// Behaviour of the simulated IMDS.
#[derive(Debug, Clone, PartialEq)]
pub struct ImdsSpec {
    /// Token PUT behaviour.
    pub token: TokenBehaviour,
    /// IMDSv2 required (`HttpTokens=required`): GETs without a valid token get 401.
    pub require_token: bool,
    /// Role of the attached instance profile; `None`: no profile attached.
    pub role: Option<String>,
    /// Serve `security-credentials-extended/` (newer IMDS) as well as the legacy path.
    pub extended_path: bool,
    /// Lifetime of each set of credentials.
    pub lifetime: Duration,
    /// Rotation period (new credentials every period); `None`: rotation stopped.
    pub rotate_every: Option<Duration>,
    /// Age of the credentials being served when the simulator starts.
    pub initial_age: Duration,
    /// `Code` of the document.
    pub code: String,
    /// HTTP 429 behaviour.
    pub throttle: Throttle,
    /// Every n-th request gets HTTP 500.
    pub server_error_every: Option<u64>,
    /// Delay before every answer.
    pub latency: Duration,
    /// Serve a truncated, invalid JSON document.
    pub malformed_document: bool,
    /// Misbehave this way (tests and `simulate --hostile` only).
    pub hostile: Option<super::HostileImds>,
}

impl Default for ImdsSpec {
    /// A healthy instance: IMDSv2, role `app-role`, six-hour credentials rotated every hour.
    fn default() -> Self {
        Self {
            token: TokenBehaviour::Issue { ttl_header: Some(21_600) },
            require_token: false,
            role: Some("app-role".into()),
            extended_path: true,
            lifetime: Duration::from_secs(6 * 3600),
            rotate_every: Some(Duration::from_secs(3600)),
            initial_age: Duration::from_secs(20 * 60),
            code: "Success".into(),
            throttle: Throttle::Off,
            server_error_every: None,
            latency: Duration::ZERO,
            malformed_document: false,
            hostile: None,
        }
    }
}

/// A named scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Name used on the command line.
    pub name: &'static str,
    /// One line for `--help` and the README.
    pub description: &'static str,
    /// IMDS behaviour.
    pub imds: ImdsSpec,
    /// Time service behaviour.
    pub ntp: NtpSpec,
    /// The simulated instance's kernel clock state (`adjtimex`).
    pub kernel: KernelClock,
    /// Environment of the simulated application, which the exporter shares as its sidecar.
    pub app_env: Vec<(String, String)>,
}

/// A kernel clock disciplined by chronyd: synchronised, tight error bounds.
pub const SYNCED_KERNEL: KernelClock = KernelClock {
    synchronized: true,
    max_error_seconds: 0.008,
    estimated_error_seconds: 0.000_05,
    offset_seconds: 0.000_001,
    tai_offset_seconds: 37.0,
    status: 0x2001, // STA_PLL | STA_NANO
};

/// A kernel clock nobody disciplines: STA_UNSYNC, maxerror at the 16 s ceiling.
pub const UNSYNCED_KERNEL: KernelClock = KernelClock {
    synchronized: false,
    max_error_seconds: 16.0,
    estimated_error_seconds: 16.0,
    offset_seconds: 0.0,
    tai_offset_seconds: 0.0,
    status: 0x0040, // STA_UNSYNC
};

impl Scenario {
    /// The simulated instance's local state. A synchronised kernel clock comes
    /// with chrony configured for the Amazon Time Sync Service, an
    /// unsynchronised one with no time daemon at all.
    pub fn host(&self) -> SimulatedHost {
        let time_sync = if self.kernel.synchronized {
            let conf = std::path::PathBuf::from("/etc/chrony/chrony.conf");
            TimeSyncConfig { files: vec![conf.clone()], amazon_time_sync: vec![conf] }
        } else {
            TimeSyncConfig::default()
        };
        let mut env = ProcessEnv { root: "/".into(), home: Some(SIMULATED_HOME.into()), ..ProcessEnv::default() };
        for (k, v) in &self.app_env {
            env.set_var(k, v.clone());
        }
        SimulatedHost { kernel: self.kernel, time_sync, env }
    }
}

/// Home directory of the simulated application: it does not exist, so no
/// profile files are found there.
pub const SIMULATED_HOME: &str = "/nonexistent/simulated-home";

/// The `shadowed` scenario's environment: static temporary credentials (with a
/// session token nothing refreshes) that expire in 40 minutes.
fn shadowing_env() -> Vec<(String, String)> {
    let expires = (chrono::Utc::now() + chrono::Duration::minutes(40)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    vec![
        ("AWS_ACCESS_KEY_ID".into(), "ASIASIMULATEDENV0042".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), format!("{}Env/wJalrXUtnFEMI/K7MDENG", super::SECRET_KEY_MARKER)),
        ("AWS_SESSION_TOKEN".into(), format!("{}EnvIQoJb3JpZ2luX2VjEPr", super::SESSION_TOKEN_MARKER)),
        ("AWS_CREDENTIAL_EXPIRATION".into(), expires),
    ]
}

/// Every scenario, in the order the README lists them.
pub fn all() -> Vec<Scenario> {
    let d = ImdsSpec::default;
    vec![
        Scenario {
            name: "healthy",
            description: "IMDSv2, role attached, credentials rotate every hour",
            imds: d(),
            ntp: NtpSpec::default(),
            kernel: SYNCED_KERNEL,
            app_env: vec![],
        },
        Scenario {
            name: "expiring",
            description: "rotation stopped: the credentials served expire in 12 minutes and are never replaced",
            imds: ImdsSpec { rotate_every: None, initial_age: Duration::from_secs(6 * 3600 - 12 * 60), ..d() },
            ntp: NtpSpec::default(),
            kernel: SYNCED_KERNEL,
            app_env: vec![],
        },
        Scenario {
            name: "throttled",
            description: "IMDS answers every other request with HTTP 429 (too many concurrent calls)",
            imds: ImdsSpec { throttle: Throttle::Ratio { throttled: 1, of: 2 }, ..d() },
            ntp: NtpSpec::default(),
            kernel: SYNCED_KERNEL,
            app_env: vec![],
        },
        Scenario {
            name: "no-role",
            description: "no instance profile attached: the role listing is 404",
            imds: ImdsSpec { role: None, ..d() },
            ntp: NtpSpec::default(),
            kernel: SYNCED_KERNEL,
            app_env: vec![],
        },
        Scenario {
            name: "token-hop-limit",
            description: "the IMDSv2 token PUT never answers (hop limit 1 inside a container); IMDSv1 still works",
            imds: ImdsSpec { token: TokenBehaviour::Hang, ..d() },
            ntp: NtpSpec::default(),
            kernel: SYNCED_KERNEL,
            app_env: vec![],
        },
        Scenario {
            name: "v1-only",
            description: "IMDSv2 unavailable: the token PUT is 404 and the exporter falls back to IMDSv1",
            imds: ImdsSpec { token: TokenBehaviour::Status(404), extended_path: false, ..d() },
            ntp: NtpSpec::default(),
            kernel: SYNCED_KERNEL,
            app_env: vec![],
        },
        Scenario {
            name: "v2-required",
            description: "HttpTokens=required: GETs without a token get 401; the exporter uses IMDSv2",
            imds: ImdsSpec { require_token: true, ..d() },
            ntp: NtpSpec::default(),
            kernel: SYNCED_KERNEL,
            app_env: vec![],
        },
        Scenario {
            name: "role-error",
            description: "the role cannot be assumed: the document's Code is AssumeRoleUnauthorizedAccess",
            imds: ImdsSpec { code: "AssumeRoleUnauthorizedAccess".into(), ..d() },
            ntp: NtpSpec::default(),
            kernel: SYNCED_KERNEL,
            app_env: vec![],
        },
        Scenario {
            name: "malformed",
            description: "the credential document is truncated JSON",
            imds: ImdsSpec { malformed_document: true, ..d() },
            ntp: NtpSpec::default(),
            kernel: SYNCED_KERNEL,
            app_env: vec![],
        },
        Scenario {
            name: "server-error",
            description: "IMDS answers every request with HTTP 500",
            imds: ImdsSpec { server_error_every: Some(1), ..d() },
            ntp: NtpSpec::default(),
            kernel: SYNCED_KERNEL,
            app_env: vec![],
        },
        Scenario {
            name: "skewed",
            description: "no time sync: this host's clock is 3 minutes ahead of the Amazon Time Sync Service and the kernel reports it unsynchronised",
            imds: d(),
            ntp: NtpSpec { offset_seconds: -180.0, ..NtpSpec::default() },
            kernel: UNSYNCED_KERNEL,
            app_env: vec![],
        },
        Scenario {
            name: "shadowed",
            description: "the application's environment holds temporary keys with a session token (expiring in 40 minutes) that shadow the instance profile",
            imds: d(),
            ntp: NtpSpec::default(),
            kernel: SYNCED_KERNEL,
            app_env: shadowing_env(),
        },
        Scenario {
            name: "legacy-path",
            description: "an older IMDS without security-credentials-extended/: the exporter uses the legacy path",
            imds: ImdsSpec { extended_path: false, ..d() },
            ntp: NtpSpec::default(),
            kernel: SYNCED_KERNEL,
            app_env: vec![],
        },
    ]
}

/// Looks a scenario up by name.
pub fn by_name(name: &str) -> Result<Scenario, String> {
    all().into_iter().find(|s| s.name == name).ok_or_else(|| {
        let names: Vec<&str> = all().iter().map(|s| s.name).collect();
        format!("unknown scenario {name:?}; choose one of: {}", names.join(", "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_the_issue_list_is_covered() {
        let names: Vec<&str> = all().iter().map(|s| s.name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len());
        for required in ["healthy", "expiring", "throttled", "no-role", "token-hop-limit", "v1-only"] {
            assert!(by_name(required).is_ok(), "{required}");
        }
        assert!(by_name("nope").unwrap_err().contains("healthy"));
    }
}
