//! Command-line flags and the AWS SDK environment conventions, resolved and
//! validated once at start-up into a plain [`Config`].
//!
//! Precedence follows the SDKs and Prometheus exporters alike: a flag beats an
//! environment variable, which beats the default. Every invalid value is a
//! start-up error that names the flag or variable it came from.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use reqwest::Url;

use crate::chain::{ChainConfig, ProcessTarget, SELF_TARGET, Sdk};
use crate::ntp::NtpConfig;

/// IMDS address in `IPv4` endpoint mode (botocore `utils.py`: `METADATA_ENDPOINT`).
pub const IMDS_IPV4_ENDPOINT: &str = "http://169.254.169.254";
/// IMDS address in `IPv6` endpoint mode (botocore `utils.py`: `METADATA_ENDPOINT_IPv6`).
pub const IMDS_IPV6_ENDPOINT: &str = "http://[fd00:ec2::254]";

/// Top-level command line.
#[derive(Debug, Parser)]
#[command(
    name = "aws-credentials-exporter",
    disable_version_flag = true,
    about = "Prometheus exporter that warns before AWS SDKs fail with ExpiredToken",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Print version, revision, build user and date, toolchain and platform, then exit.
    #[arg(short = 'V', long = "version")]
    pub version: bool,
    /// What to run; without a subcommand the exporter serves metrics.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Exporter flags when no subcommand is given.
    #[command(flatten)]
    pub exporter: ExporterArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve metrics (the default).
    Serve(ExporterArgs),
    /// Run every troubleshooting check once, print the findings and exit
    /// (0 all OK, 1 warnings, 2 failures, 64 usage or configuration error).
    Check(CheckArgs),
    /// Run a simulated EC2 instance on loopback and the exporter pointed at it.
    Demo(DemoArgs),
    /// Run only the simulated EC2 instance (used by tests inside network namespaces).
    #[command(hide = true)]
    Simulate(SimulateArgs),
}

/// Flags of the exporter proper, shared by `serve` and `demo`.
#[derive(Debug, Args, Clone, Default)]
pub struct ExporterArgs {
    /// Address to listen on for HTTP requests (`:PORT` means every interface).
    #[arg(long = "web.listen-address", value_name = "ADDR")]
    pub listen_address: Option<String>,
    /// Path under which to expose metrics.
    #[arg(long = "web.telemetry-path", default_value = "/metrics", value_name = "PATH")]
    pub telemetry_path: String,
    /// Most HTTP connections open at once; at the limit a new one closes the oldest idle one, or is refused when all are busy.
    #[arg(long = "web.max-connections", default_value_t = crate::http::DEFAULT_MAX_CONNECTIONS, value_name = "N")]
    pub max_connections: usize,
    /// Prometheus web configuration file (exporter-toolkit format) that enables TLS and/or basic authentication; re-read when it changes.
    #[arg(long = "web.config.file", value_name = "PATH")]
    pub web_config_file: Option<PathBuf>,
    /// IMDS base URL [env: AWS_EC2_METADATA_SERVICE_ENDPOINT] [default: from endpoint mode].
    #[arg(long = "imds.endpoint", value_name = "URL")]
    pub imds_endpoint: Option<String>,
    /// IMDS endpoint mode, IPv4 or IPv6 [env: AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE] [default: IPv4].
    #[arg(long = "imds.endpoint-mode", value_name = "MODE")]
    pub imds_endpoint_mode: Option<String>,
    /// Timeout of one IMDS request, e.g. 1s or 500ms [env: AWS_METADATA_SERVICE_TIMEOUT, seconds] [default: 1s].
    #[arg(long = "imds.timeout", value_name = "DURATION")]
    pub imds_timeout: Option<String>,
    /// Attempts per IMDS request, retries included [env: AWS_METADATA_SERVICE_NUM_ATTEMPTS] [default: 3].
    #[arg(long = "imds.attempts", value_name = "N")]
    pub imds_attempts: Option<String>,
    /// Minimum time between two probes of IMDS; scrapes in between get the cached result.
    #[arg(long = "probe.min-interval", default_value = "5s", value_name = "DURATION")]
    pub probe_min_interval: String,
    /// NTP server to measure the clock against, HOST:PORT (repeatable) [default: the Amazon Time Sync Service, 169.254.169.123:123].
    #[arg(long = "ntp.server", value_name = "HOST:PORT")]
    pub ntp_servers: Vec<String>,
    /// Also query the Amazon Time Sync Service over IPv6 (`[fd00:ec2::123]:123`; Nitro instances).
    #[arg(long = "ntp.ipv6")]
    pub ntp_ipv6: bool,
    /// How long to wait for one NTP reply.
    #[arg(long = "ntp.timeout", default_value = "1s", value_name = "DURATION")]
    pub ntp_timeout: String,
    /// Samples per probe, at least 2 s apart; the one with the smallest delay is reported.
    #[arg(long = "ntp.samples", default_value_t = 1, value_name = "N")]
    pub ntp_samples: u32,
    /// Minimum time between two queries of one NTP server (doubled by RATE kiss-o'-death replies).
    #[arg(long = "ntp.min-interval", default_value = "15s", value_name = "DURATION")]
    pub ntp_min_interval: String,
    /// Whose default credential chain to emulate: java-v2, java-v1 or python (botocore).
    #[arg(long = "chain.sdk", default_value = "java-v2", value_name = "SDK")]
    pub chain_sdk: String,
    /// Also evaluate the chain of processes matching [NAME=]REGEX (process name or command line), e.g. `java` (repeatable).
    #[arg(long = "chain.process", value_name = "[NAME=]REGEX")]
    pub chain_processes: Vec<String>,
    /// Root of the host's file system: time daemon configuration and `/proc` are read under it, e.g. `/host` in a container with the host's root mounted there [default: /].
    #[arg(long = "path.rootfs", value_name = "PATH")]
    pub rootfs: Option<PathBuf>,
    /// Only log messages with the given severity or above.
    #[arg(long = "log.level", value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,
    /// Output format of log messages.
    #[arg(long = "log.format", value_enum, default_value_t = LogFormat::Logfmt)]
    pub log_format: LogFormat,
}

/// Report format of `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum OutputFormat {
    /// One line per check, remedies indented below.
    #[default]
    Text,
    /// The JSON report (stable schema, see README).
    Json,
}

/// Flags of `check`.
#[derive(Debug, Args, Clone)]
pub struct CheckArgs {
    /// Report format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// The exporter's flags: the checks run with the same configuration.
    #[command(flatten)]
    pub exporter: ExporterArgs,
}

/// Flags of `demo`.
#[derive(Debug, Args, Clone)]
pub struct DemoArgs {
    /// Failure to simulate (see the scenario list in README).
    #[arg(long, default_value = "healthy", value_name = "NAME")]
    pub scenario: String,
    /// Instead of serving, run `check` once against the simulated instance and exit.
    #[arg(long)]
    pub check: bool,
    /// Report format with --check.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Exporter flags; IMDS endpoints are replaced by the simulator's.
    #[command(flatten)]
    pub exporter: ExporterArgs,
}

/// Flags of `simulate`.
#[derive(Debug, Args, Clone)]
pub struct SimulateArgs {
    /// Scenario to serve.
    #[arg(long, default_value = "healthy", value_name = "NAME")]
    pub scenario: String,
    /// Address the simulated IMDS listens on.
    #[arg(long = "imds.listen", default_value = "127.0.0.1:0", value_name = "ADDR")]
    pub imds_listen: SocketAddr,
    /// Address the simulated Amazon Time Sync Service listens on (UDP).
    #[arg(long = "ntp.listen", default_value = "127.0.0.1:0", value_name = "ADDR")]
    pub ntp_listen: SocketAddr,
    /// Log level of the simulator.
    #[arg(long = "log.level", value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,
    /// Make the simulated IMDS misbehave (`sim::HostileImds::name`), for tests.
    #[arg(long, hide = true, value_name = "NAME")]
    pub hostile: Option<String>,
}

/// Log severity threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogLevel {
    /// Everything, including per-request detail.
    Trace,
    /// Probe detail.
    Debug,
    /// Start-up and state changes.
    #[default]
    Info,
    /// Probe failures.
    Warn,
    /// Only errors.
    Error,
}

/// Log line encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    /// `key=value` pairs, as Prometheus' own exporters log.
    #[default]
    Logfmt,
    /// One JSON object per line.
    Json,
}

/// Validated configuration of the exporter.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address of the HTTP server.
    pub listen: SocketAddr,
    /// Path of the metrics page.
    pub telemetry_path: String,
    /// `--web.config.file`: TLS and basic authentication (see [`crate::webconfig`]).
    pub web_config_file: Option<PathBuf>,
    /// `--web.max-connections`.
    pub max_connections: usize,
    /// IMDS client settings.
    pub imds: ImdsConfig,
    /// Minimum interval between two IMDS probes.
    pub probe_min_interval: Duration,
    /// NTP probe settings.
    pub ntp: NtpConfig,
    /// Credential chain probe settings.
    pub chain: ChainConfig,
    /// `--path.rootfs`: where the host's `/` is (see [`crate::host::RealHost`]).
    pub rootfs: PathBuf,
}

/// Validated IMDS client settings.
#[derive(Debug, Clone)]
pub struct ImdsConfig {
    /// Base URL without a trailing slash, e.g. `http://169.254.169.254`.
    pub endpoint: Url,
    /// `AWS_EC2_METADATA_DISABLED=true`: never contact IMDS.
    pub disabled: bool,
    /// `AWS_EC2_METADATA_V1_DISABLED=true`: never fall back to IMDSv1.
    pub v1_disabled: bool,
    /// Timeout of one request attempt (connect, headers and body).
    pub timeout: Duration,
    /// Attempts per request, the first one included.
    pub attempts: u32,
}

/// A configuration value that cannot be used; names where it came from.
#[derive(Debug, thiserror::Error)]
#[error("invalid {source_name} {value:?}: {reason}")]
pub struct ConfigError {
    /// Flag or environment variable, e.g. `AWS_METADATA_SERVICE_TIMEOUT`.
    pub source_name: String,
    /// The offending value.
    pub value: String,
    /// What is wrong with it and what is expected.
    pub reason: String,
}

impl ConfigError {
    fn new(source_name: &str, value: &str, reason: impl Into<String>) -> Self {
        Self { source_name: source_name.to_string(), value: value.to_string(), reason: reason.into() }
    }
}

/// Paths the exporter serves itself, which `--web.telemetry-path` would shadow.
pub const RESERVED_PATHS: &[&str] = &["/check.json", "/-/healthy", "/-/ready"];

/// Default listen address of the exporter (registered in Prometheus' default port allocations range).
pub const DEFAULT_LISTEN: &str = ":10169";

/// The Amazon Time Sync Service over IPv4, reachable from every EC2 instance.
pub const AMAZON_TIME_SYNC_IPV4: &str = "169.254.169.123:123";
/// The Amazon Time Sync Service over IPv6 (Nitro instances).
pub const AMAZON_TIME_SYNC_IPV6: &str = "[fd00:ec2::123]:123";

/// `HOST:PORT`, `[V6]:PORT`, or a bare host or address (port 123).
fn parse_ntp_server(value: &str) -> Result<String, String> {
    let v = value.trim();
    if let Ok(addr) = v.parse::<SocketAddr>() {
        if addr.port() == 0 {
            return Err("port 0 is not a port a server answers on; expected HOST:PORT with PORT 1-65535".into());
        }
        return Ok(v.to_string());
    }
    if let Ok(ip) = v.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, 123).to_string());
    }
    let (host, port) = v.rsplit_once(':').unwrap_or((v, "123"));
    let valid_host = !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    match (valid_host, port.parse::<u16>()) {
        (true, Ok(p)) if p > 0 => Ok(format!("{host}:{p}")),
        _ => Err("expected HOST:PORT, IP:PORT or [IPv6]:PORT".into()),
    }
}

/// A value with the name of the flag or variable it came from.
struct Sourced {
    name: &'static str,
    value: String,
}

/// Flag beats environment variable; `None` when neither is set.
fn pick(flag_name: &'static str, flag: &Option<String>, env_name: &'static str, env: &dyn Fn(&str) -> Option<String>) -> Option<Sourced> {
    if let Some(v) = flag {
        return Some(Sourced { name: flag_name, value: v.clone() });
    }
    env(env_name).map(|value| Sourced { name: env_name, value })
}

impl ExporterArgs {
    /// Resolves flags and the AWS environment (read through `env`) into a [`Config`].
    pub fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let listen = parse_listen_address(self.listen_address.as_deref().unwrap_or(DEFAULT_LISTEN))?;
        if !self.telemetry_path.starts_with('/') || self.telemetry_path == "/" {
            return Err(ConfigError::new("--web.telemetry-path", &self.telemetry_path, "must start with '/' and not be '/' itself"));
        }
        if RESERVED_PATHS.contains(&self.telemetry_path.as_str()) {
            return Err(ConfigError::new(
                "--web.telemetry-path",
                &self.telemetry_path,
                format!("is one of the exporter's own pages ({}); choose another path", RESERVED_PATHS.join(", ")),
            ));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::new("--web.max-connections", "0", "must be at least 1"));
        }
        let probe_min_interval =
            parse_duration(&self.probe_min_interval).map_err(|r| ConfigError::new("--probe.min-interval", &self.probe_min_interval, r))?;
        // An empty path means no web configuration, as in exporter-toolkit.
        let web_config_file = self.web_config_file.clone().filter(|p| !p.as_os_str().is_empty());
        let imds = self.resolve_imds(env)?;
        let chain = self.resolve_chain(imds.timeout)?;
        let rootfs = self.rootfs.clone().filter(|p| !p.as_os_str().is_empty()).unwrap_or_else(|| PathBuf::from("/"));
        if !rootfs.is_dir() {
            let shown = rootfs.display().to_string();
            return Err(ConfigError::new(
                "--path.rootfs",
                &shown,
                "is not a directory; mount the host's root there (read-only) or leave the flag out",
            ));
        }
        Ok(Config {
            listen,
            telemetry_path: self.telemetry_path.clone(),
            web_config_file,
            max_connections: self.max_connections,
            imds,
            probe_min_interval,
            ntp: self.resolve_ntp()?,
            chain,
            rootfs,
        })
    }

    fn resolve_chain(&self, timeout: Duration) -> Result<ChainConfig, ConfigError> {
        let sdk = Sdk::from_name(&self.chain_sdk)
            .ok_or_else(|| ConfigError::new("--chain.sdk", &self.chain_sdk, "expected java-v2, java-v1 or python"))?;
        let mut processes = Vec::new();
        for spec in &self.chain_processes {
            let target = ProcessTarget::parse(spec).map_err(|r| ConfigError::new("--chain.process", spec, r))?;
            if target.name == SELF_TARGET || processes.iter().any(|p: &ProcessTarget| p.name == target.name) {
                return Err(ConfigError::new("--chain.process", spec, "target names must be unique and not \"self\""));
            }
            processes.push(target);
        }
        Ok(ChainConfig { sdk, processes, timeout })
    }

    fn resolve_ntp(&self) -> Result<NtpConfig, ConfigError> {
        let mut servers = Vec::new();
        for s in &self.ntp_servers {
            let server = parse_ntp_server(s).map_err(|r| ConfigError::new("--ntp.server", s, r))?;
            if servers.contains(&server) {
                return Err(ConfigError::new("--ntp.server", s, format!("{server} is given twice")));
            }
            servers.push(server);
        }
        if servers.is_empty() {
            servers.push(AMAZON_TIME_SYNC_IPV4.to_string());
        }
        if self.ntp_ipv6 && !servers.iter().any(|s| s == AMAZON_TIME_SYNC_IPV6) {
            servers.push(AMAZON_TIME_SYNC_IPV6.to_string());
        }
        let timeout = parse_duration(&self.ntp_timeout).map_err(|r| ConfigError::new("--ntp.timeout", &self.ntp_timeout, r))?;
        if timeout.is_zero() {
            return Err(ConfigError::new("--ntp.timeout", &self.ntp_timeout, "must be greater than zero"));
        }
        if !(1..=8).contains(&self.ntp_samples) {
            return Err(ConfigError::new("--ntp.samples", &self.ntp_samples.to_string(), "expected 1 to 8"));
        }
        let min_interval =
            parse_duration(&self.ntp_min_interval).map_err(|r| ConfigError::new("--ntp.min-interval", &self.ntp_min_interval, r))?;
        Ok(NtpConfig { servers, timeout, samples: self.ntp_samples, min_interval })
    }

    fn resolve_imds(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<ImdsConfig, ConfigError> {
        // botocore utils.py IMDSFetcher._select_base_url: an explicit endpoint wins
        // over the endpoint mode; the mode only picks between the two link-local addresses.
        let mode = pick("--imds.endpoint-mode", &self.imds_endpoint_mode, "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", env);
        let mode_endpoint = match mode {
            None => IMDS_IPV4_ENDPOINT,
            Some(m) => match m.value.to_ascii_lowercase().as_str() {
                "ipv4" => IMDS_IPV4_ENDPOINT,
                "ipv6" => IMDS_IPV6_ENDPOINT,
                _ => return Err(ConfigError::new(m.name, &m.value, "expected IPv4 or IPv6")),
            },
        };
        let endpoint = match pick("--imds.endpoint", &self.imds_endpoint, "AWS_EC2_METADATA_SERVICE_ENDPOINT", env) {
            Some(e) => parse_endpoint(&e.value).map_err(|r| ConfigError::new(e.name, &redact_url(&e.value), r))?,
            None => parse_endpoint(mode_endpoint).expect("built-in endpoints are valid"),
        };
        let timeout = match pick("--imds.timeout", &self.imds_timeout, "AWS_METADATA_SERVICE_TIMEOUT", env) {
            // The SDK variable is a number of seconds; the flag also takes units.
            Some(t) => match parse_duration(&t.value) {
                Ok(d) if d.is_zero() => return Err(ConfigError::new(t.name, &t.value, "must be greater than zero")),
                Ok(d) => d,
                Err(r) => return Err(ConfigError::new(t.name, &t.value, r)),
            },
            None => Duration::from_secs(1),
        };
        let attempts = match pick("--imds.attempts", &self.imds_attempts, "AWS_METADATA_SERVICE_NUM_ATTEMPTS", env) {
            Some(a) => match a.value.trim().parse::<u32>() {
                Ok(n) if (1..=10).contains(&n) => n,
                _ => return Err(ConfigError::new(a.name, &a.value, "expected a whole number from 1 to 10")),
            },
            // botocore defaults to 1 attempt, smithy-rs to 4: three keeps one lost
            // packet from flipping aws_imds_up while staying inside a 10 s scrape.
            None => 3,
        };
        Ok(ImdsConfig {
            endpoint,
            disabled: env_bool(env, "AWS_EC2_METADATA_DISABLED")?,
            v1_disabled: env_bool(env, "AWS_EC2_METADATA_V1_DISABLED")?,
            timeout,
            attempts,
        })
    }
}

/// `true`/`false`, case-insensitive, as botocore compares `.lower() == 'true'`;
/// anything else is an error rather than a silent `false`.
fn env_bool(env: &dyn Fn(&str) -> Option<String>, name: &'static str) -> Result<bool, ConfigError> {
    match env(name) {
        None => Ok(false),
        Some(v) => match v.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" | "" => Ok(false),
            _ => Err(ConfigError::new(name, &v, "expected true or false")),
        },
    }
}

fn parse_endpoint(value: &str) -> Result<Url, String> {
    let url = Url::parse(value.trim()).map_err(|e| format!("not a URL ({e}); expected e.g. http://169.254.169.254"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err("expected an http:// or https:// URL with a host".into());
    }
    if url.query().is_some() || url.fragment().is_some() || url.path() != "/" {
        return Err("expected a base URL without path, query or fragment".into());
    }
    // IMDS takes no HTTP credentials: refused, so that none reaches a log line or an error.
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials in the URL are not supported (IMDS takes none); remove user:password@".into());
    }
    if url.port() == Some(0) {
        return Err("port 0 is not a port a server answers on".into());
    }
    Ok(url)
}

/// `value` with any `user:password@` of a URL replaced by `***@`, for messages.
pub fn redact_url(value: &str) -> String {
    let Some(scheme_end) = value.find("://").map(|i| i + 3) else { return value.to_string() };
    let authority_end = value[scheme_end..].find(['/', '?', '#']).map_or(value.len(), |i| scheme_end + i);
    match value[scheme_end..authority_end].rfind('@') {
        Some(at) => format!("{}***@{}", &value[..scheme_end], &value[scheme_end + at + 1..]),
        None => value.to_string(),
    }
}

/// `:PORT` (every interface, as Go's net.Listen), `HOST:PORT` or `[V6]:PORT`.
pub fn parse_listen_address(value: &str) -> Result<SocketAddr, ConfigError> {
    let err = || ConfigError::new("--web.listen-address", value, "expected :PORT, IP:PORT or [IPv6]:PORT");
    if let Some(port) = value.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|_| err())?;
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    if let Some(port) = value.strip_prefix("localhost:") {
        let port: u16 = port.parse().map_err(|_| err())?;
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    value.parse().map_err(|_| err())
}

/// A duration as Prometheus writes them (`500ms`, `5s`, `2m`, `1h`) or a plain
/// number of seconds (`1`, `0.5`), which is how the SDK variables are written.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let v = value.trim();
    let split = v.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(v.len());
    let (number, unit) = v.split_at(split);
    let n: f64 = number.parse().map_err(|_| "expected a duration such as 500ms, 5s, 2m or a number of seconds".to_string())?;
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("unknown unit {unit:?}; use ms, s, m or h")),
    };
    let secs = n * scale;
    if !secs.is_finite() || !(0.0..=86_400.0).contains(&secs) {
        return Err("must be between 0 and 24h".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(flags: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut argv = vec!["aws-credentials-exporter"];
        argv.extend_from_slice(flags);
        let cli = Cli::try_parse_from(argv).expect("flags parse");
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        cli.exporter.resolve(&|k| env.get(k).cloned())
    }

    #[test]
    fn defaults_follow_the_sdks() {
        let c = resolve(&[], &[]).unwrap();
        assert_eq!(c.listen, "0.0.0.0:10169".parse().unwrap());
        assert_eq!(c.telemetry_path, "/metrics");
        assert_eq!(c.imds.endpoint.as_str(), "http://169.254.169.254/");
        assert_eq!(c.imds.timeout, Duration::from_secs(1));
        assert_eq!(c.imds.attempts, 3);
        assert!(!c.imds.disabled && !c.imds.v1_disabled);
        assert_eq!(c.probe_min_interval, Duration::from_secs(5));
        assert_eq!(c.ntp.servers, ["169.254.169.123:123"]);
        assert_eq!((c.ntp.timeout, c.ntp.samples, c.ntp.min_interval), (Duration::from_secs(1), 1, Duration::from_secs(15)));
    }

    #[test]
    fn ntp_servers_take_a_default_port_and_ipv6_adds_the_v6_service() {
        let c = resolve(&["--ntp.server", "127.0.0.1", "--ntp.server", "time.example.com", "--ntp.server", "[::1]:1123"], &[]).unwrap();
        assert_eq!(c.ntp.servers, ["127.0.0.1:123", "time.example.com:123", "[::1]:1123"]);
        let c = resolve(&["--ntp.ipv6"], &[]).unwrap();
        assert_eq!(c.ntp.servers, ["169.254.169.123:123", "[fd00:ec2::123]:123"]);
        for bad in ["", "host:0", "a b:1", "h:99999"] {
            assert!(resolve(&["--ntp.server", bad], &[]).is_err(), "{bad}");
        }
        assert!(resolve(&["--ntp.samples", "0"], &[]).is_err());
        assert!(resolve(&["--ntp.timeout", "0s"], &[]).is_err());
    }

    #[test]
    fn precedence_is_flag_then_env_then_default() {
        let env = [
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:1338"),
            ("AWS_METADATA_SERVICE_TIMEOUT", "2"),
            ("AWS_METADATA_SERVICE_NUM_ATTEMPTS", "5"),
        ];
        let c = resolve(&[], &env).unwrap();
        assert_eq!(c.imds.endpoint.as_str(), "http://127.0.0.1:1338/");
        assert_eq!(c.imds.timeout, Duration::from_secs(2));
        assert_eq!(c.imds.attempts, 5);
        let c = resolve(&["--imds.endpoint", "http://127.0.0.1:9", "--imds.timeout", "250ms", "--imds.attempts", "1"], &env).unwrap();
        assert_eq!(c.imds.endpoint.as_str(), "http://127.0.0.1:9/");
        assert_eq!(c.imds.timeout, Duration::from_millis(250));
        assert_eq!(c.imds.attempts, 1);
    }

    #[test]
    fn endpoint_mode_selects_the_link_local_address_and_endpoint_wins() {
        let c = resolve(&[], &[("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv6")]).unwrap();
        assert_eq!(c.imds.endpoint.as_str(), "http://[fd00:ec2::254]/");
        let c = resolve(&["--imds.endpoint-mode", "ipv4"], &[("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv6")]).unwrap();
        assert_eq!(c.imds.endpoint.as_str(), "http://169.254.169.254/");
        let c =
            resolve(&[], &[("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv6"), ("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.2")])
                .unwrap();
        assert_eq!(c.imds.endpoint.as_str(), "http://127.0.0.2/");
    }

    #[test]
    fn booleans_are_read_like_botocore() {
        let c = resolve(&[], &[("AWS_EC2_METADATA_DISABLED", "TRUE"), ("AWS_EC2_METADATA_V1_DISABLED", "true")]).unwrap();
        assert!(c.imds.disabled && c.imds.v1_disabled);
        let c = resolve(&[], &[("AWS_EC2_METADATA_DISABLED", "false")]).unwrap();
        assert!(!c.imds.disabled);
    }

    #[test]
    fn invalid_values_name_their_source() {
        type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (&[], &[("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv5")], "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE"),
            (&["--imds.endpoint-mode", "x"], &[], "--imds.endpoint-mode"),
            (&[], &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", "169.254.169.254")], "AWS_EC2_METADATA_SERVICE_ENDPOINT"),
            (&[], &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", "ftp://x")], "AWS_EC2_METADATA_SERVICE_ENDPOINT"),
            (&[], &[("AWS_METADATA_SERVICE_TIMEOUT", "soon")], "AWS_METADATA_SERVICE_TIMEOUT"),
            (&[], &[("AWS_METADATA_SERVICE_TIMEOUT", "0")], "AWS_METADATA_SERVICE_TIMEOUT"),
            (&["--imds.timeout", "0s"], &[], "--imds.timeout"),
            (&[], &[("AWS_METADATA_SERVICE_NUM_ATTEMPTS", "0")], "AWS_METADATA_SERVICE_NUM_ATTEMPTS"),
            (&[], &[("AWS_METADATA_SERVICE_NUM_ATTEMPTS", "-1")], "AWS_METADATA_SERVICE_NUM_ATTEMPTS"),
            (&[], &[("AWS_EC2_METADATA_DISABLED", "yes")], "AWS_EC2_METADATA_DISABLED"),
            (&[], &[("AWS_EC2_METADATA_V1_DISABLED", "1")], "AWS_EC2_METADATA_V1_DISABLED"),
            (&["--web.listen-address", "nowhere"], &[], "--web.listen-address"),
            (&["--probe.min-interval", "5 parsecs"], &[], "--probe.min-interval"),
            (&["--web.telemetry-path", "metrics"], &[], "--web.telemetry-path"),
            (&["--path.rootfs", "/nonexistent/host"], &[], "--path.rootfs"),
            (&["--web.telemetry-path", "/-/healthy"], &[], "--web.telemetry-path"),
            (&["--web.telemetry-path", "/check.json"], &[], "--web.telemetry-path"),
            (&["--web.telemetry-path", "/-/ready"], &[], "--web.telemetry-path"),
            (&["--ntp.server", "127.0.0.1:0"], &[], "--ntp.server"),
            (&["--ntp.server", "[::1]:0"], &[], "--ntp.server"),
            (&["--imds.endpoint", "http://127.0.0.1:0"], &[], "--imds.endpoint"),
            (&["--web.max-connections", "0"], &[], "--web.max-connections"),
        ];
        for (flags, env, name) in cases {
            let err = resolve(flags, env).expect_err(name);
            assert_eq!(err.source_name, *name, "{err}");
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn credentials_in_the_imds_endpoint_are_refused_and_never_shown() {
        for value in ["http://user:hunter2@127.0.0.1:1338", "http://hunter2@127.0.0.1", "https://u:hunter2@[::1]:8/"] {
            let err = resolve(&["--imds.endpoint", value], &[]).expect_err(value);
            assert!(!err.to_string().contains("hunter2"), "{err}");
            assert!(err.to_string().contains("***@"), "{err}");
            let err = resolve(&[], &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", value)]).expect_err(value);
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
        assert_eq!(redact_url("http://127.0.0.1:1338"), "http://127.0.0.1:1338");
        assert_eq!(redact_url("not a url @ all"), "not a url @ all");
        assert_eq!(redact_url("http://a:b@h/p@q"), "http://***@h/p@q");
    }

    #[test]
    fn durations_parse_like_prometheus_flags() {
        for (input, want) in [("1", 1000), ("0.5", 500), ("500ms", 500), ("5s", 5000), ("2m", 120_000), ("1h", 3_600_000)] {
            assert_eq!(parse_duration(input).unwrap(), Duration::from_millis(want), "{input}");
        }
        for bad in ["", "s", "-1", "1d", "NaN", "1e400"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(parse_listen_address(":9100").unwrap(), "0.0.0.0:9100".parse().unwrap());
        assert_eq!(parse_listen_address("127.0.0.1:0").unwrap(), "127.0.0.1:0".parse().unwrap());
        assert_eq!(parse_listen_address("[::1]:80").unwrap(), "[::1]:80".parse().unwrap());
        assert_eq!(parse_listen_address("localhost:80").unwrap(), "127.0.0.1:80".parse().unwrap());
        assert!(parse_listen_address(":http").is_err());
    }
}
