//! The chain probe: evaluates the selected SDK's chain for each target (the
//! exporter itself, and processes matched by `--chain.process`), fetches the
//! container credentials' expiry where configured, and counts what could not
//! be read. Targets are labelled by name, never by PID.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use regex::Regex;

use super::{ChainError, ChainObservation, ErrorReason, Sdk};
use crate::host::Host;
use crate::imds;

/// Label of the exporter's own environment.
pub const SELF_TARGET: &str = "self";

/// A process to evaluate, from `--chain.process [NAME=]REGEX`.
#[derive(Debug, Clone)]
pub struct ProcessTarget {
    /// The `target` label: NAME, or the regex itself.
    pub name: String,
    /// Matched against the process name and its full command line.
    pub pattern: Regex,
}

impl ProcessTarget {
    /// Parses `NAME=REGEX` or `REGEX`.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let (name, pattern) = match spec.split_once('=') {
            Some((n, p)) if !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)) => (n.to_string(), p),
            _ => (spec.to_string(), spec),
        };
        if pattern.is_empty() {
            return Err("empty regular expression".into());
        }
        let pattern = Regex::new(pattern).map_err(|e| format!("invalid regular expression: {e}"))?;
        Ok(Self { name, pattern })
    }
}

/// Chain probe settings.
#[derive(Debug, Clone)]
pub struct ChainConfig {
    /// Which SDK's default chain to emulate.
    pub sdk: Sdk,
    /// Processes to evaluate besides the exporter itself.
    pub processes: Vec<ProcessTarget>,
    /// Timeout of the container credentials request.
    pub timeout: Duration,
}

/// One target after a probe.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetReport {
    /// `self` or the process target's name.
    pub target: String,
    /// PID evaluated (the lowest matching one), for logs only.
    pub pid: Option<u32>,
    /// How many processes matched (1 for `self`).
    pub matched: usize,
    /// The evaluated chain; `None` when the target could not be read.
    pub observation: Option<ChainObservation>,
    /// Expiry of the container credentials, when the container provider is configured and answered.
    pub container_expiration: Option<DateTime<Utc>>,
    /// Why the target (or its container endpoint) could not be read.
    pub error: Option<String>,
}

/// Every target after one probe, with counters.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainRound {
    /// SDK emulated.
    pub sdk: Sdk,
    /// One per target, `self` first.
    pub targets: Vec<TargetReport>,
    /// Read failures by (target, reason) since start (`aws_credentials_chain_errors_total`).
    pub errors_total: BTreeMap<(String, &'static str), u64>,
}

impl Default for ChainRound {
    fn default() -> Self {
        Self { sdk: Sdk::JavaV2, targets: Vec::new(), errors_total: BTreeMap::new() }
    }
}

/// The chain probe and its counters.
pub struct ChainProbe {
    cfg: ChainConfig,
    http: reqwest::Client,
    errors_total: Mutex<BTreeMap<(String, &'static str), u64>>,
}

impl ChainProbe {
    /// A probe for `cfg`.
    pub fn new(cfg: ChainConfig) -> Self {
        let http = imds::http_client(cfg.timeout);
        Self { cfg, http, errors_total: Mutex::new(BTreeMap::new()) }
    }

    /// Evaluates every target; `imds_has_role` is what the IMDS probe found.
    pub async fn probe(&self, host: &dyn Host, imds_has_role: Option<bool>) -> ChainRound {
        let now = Utc::now();
        let mut targets = Vec::with_capacity(1 + self.cfg.processes.len());
        let own = super::evaluate(self.cfg.sdk, &host.own_process_env(), imds_has_role, now);
        targets.push(self.finish(SELF_TARGET, None, 1, Ok(own)).await);
        for p in &self.cfg.processes {
            let found = host.find_processes(&p.pattern);
            let Some(&(pid, _)) = found.first() else {
                let e = ChainError::new(ErrorReason::NotFound, format!("no process matches --chain.process {:?}", p.pattern.as_str()));
                targets.push(self.finish(&p.name, None, 0, Err(e)).await);
                continue;
            };
            let result = host.process_env(pid).map(|env| super::evaluate(self.cfg.sdk, &env, imds_has_role, now));
            targets.push(self.finish(&p.name, Some(pid), found.len(), result).await);
        }
        let errors_total = self.errors_total.lock().expect("chain lock").clone();
        ChainRound { sdk: self.cfg.sdk, targets, errors_total }
    }

    fn count(&self, target: &str, reason: ErrorReason) {
        *self.errors_total.lock().expect("chain lock").entry((target.to_string(), reason.as_str())).or_default() += 1;
    }

    async fn finish(&self, target: &str, pid: Option<u32>, matched: usize, result: Result<ChainObservation, ChainError>) -> TargetReport {
        let mut report =
            TargetReport { target: target.to_string(), pid, matched, observation: None, container_expiration: None, error: None };
        match result {
            Err(e) => {
                self.count(target, e.reason);
                if e.reason == ErrorReason::PermissionDenied {
                    tracing::warn!(target, pid, error = %e, "cannot read the process: run the exporter as the same user or grant CAP_SYS_PTRACE");
                } else {
                    tracing::debug!(target, pid, error = %e, "chain target unavailable");
                }
                report.error = Some(e.message);
            }
            Ok(obs) => {
                for e in &obs.errors {
                    self.count(target, e.reason);
                    tracing::debug!(target, error = %e, "chain evaluation could not read everything");
                }
                if let Some(c) = &obs.container {
                    match imds::fetch_container_credentials(&self.http, &c.uri, c.authorization.as_ref(), self.cfg.timeout).await {
                        Ok(info) => report.container_expiration = info.expiration,
                        Err(e) => {
                            self.count(target, ErrorReason::Io);
                            tracing::debug!(target, error = %e, "container credentials endpoint unavailable");
                            report.error = Some(e.to_string());
                        }
                    }
                }
                report.observation = Some(obs);
            }
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_targets_are_named() {
        let t = ProcessTarget::parse("java").unwrap();
        assert_eq!((t.name.as_str(), t.pattern.as_str()), ("java", "java"));
        let t = ProcessTarget::parse("orders=java .*orders\\.jar").unwrap();
        assert_eq!((t.name.as_str(), t.pattern.as_str()), ("orders", "java .*orders\\.jar"));
        let t = ProcessTarget::parse("a b=c").unwrap();
        assert_eq!(t.name, "a b=c", "not a NAME=: the whole spec is the regex");
        assert!(ProcessTarget::parse("x=(").is_err());
        assert!(ProcessTarget::parse("").is_err());
    }
}
