//! The chain probe: evaluates the selected SDK's chain for each target (the
//! exporter itself, and processes matched by `--chain.process`), fetches the
//! container credentials' expiry where configured, and counts what could not
//! be read. Targets are labelled by name, never by PID.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use regex::Regex;

use super::{ChainError, ChainObservation, ErrorReason, Sdk};
use crate::host::Host;
use crate::imds;

/// What the file and `/proc` reads of one evaluation may take; longer means
/// a target's files hang (a FUSE or NFS mount).
pub const READ_BUDGET: Duration = Duration::from_secs(5);

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
    /// The kind of `error`, for renderers to match on.
    pub error_kind: Option<crate::probe::ErrorKind>,
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
    http: imds::HttpClient,
    errors_total: Mutex<BTreeMap<(String, &'static str), u64>>,
    evaluating: AtomicBool,
    unreadable: Mutex<std::collections::BTreeSet<String>>,
}

impl ChainProbe {
    /// A probe for `cfg`, reading container credentials through `http`.
    pub fn new(cfg: ChainConfig, http: imds::HttpClient) -> Self {
        Self { cfg, http, errors_total: Mutex::new(BTreeMap::new()), evaluating: AtomicBool::new(false), unreadable: Mutex::default() }
    }

    /// Evaluates every target; `imds_has_role` is what the IMDS probe found.
    /// The file and `/proc` reads run on the blocking pool, so a target whose
    /// files hang (a FUSE or NFS mount) holds up neither the runtime nor a
    /// scrape: the caller's deadline still applies, and while an evaluation is
    /// stuck no second one is started.
    pub async fn probe(self: Arc<Self>, host: Arc<dyn Host>, imds_has_role: Option<bool>) -> Option<ChainRound> {
        if self.evaluating.swap(true, Ordering::SeqCst) {
            tracing::warn!(
                "the previous credential chain evaluation has not finished (a target's files do not answer); keeping its last result"
            );
            return None;
        }
        let probe = self.clone();
        let evaluated = tokio::task::spawn_blocking(move || {
            let evaluated = probe.evaluate_all(&*host, imds_has_role);
            probe.evaluating.store(false, Ordering::SeqCst);
            evaluated
        })
        .await
        .ok()?;
        let mut targets = Vec::with_capacity(evaluated.len());
        for (name, pid, matched, result) in evaluated {
            targets.push(self.finish(&name, pid, matched, result).await);
        }
        let errors_total = self.errors_total.lock().expect("chain lock").clone();
        Some(ChainRound { sdk: self.cfg.sdk, targets, errors_total })
    }

    /// How long one evaluation may take: the file and `/proc` reads
    /// ([`READ_BUDGET`]) and one container-credentials request per target.
    pub fn budget(&self) -> Duration {
        let targets = u32::try_from(self.cfg.processes.len() + 1).unwrap_or(u32::MAX);
        READ_BUDGET.saturating_add(self.cfg.timeout.saturating_mul(targets))
    }

    /// A round with no targets evaluated yet.
    pub fn empty_round(&self) -> ChainRound {
        ChainRound { sdk: self.cfg.sdk, targets: Vec::new(), errors_total: self.errors_total.lock().expect("chain lock").clone() }
    }

    #[allow(clippy::type_complexity)]
    fn evaluate_all(
        &self,
        host: &dyn Host,
        imds_has_role: Option<bool>,
    ) -> Vec<(String, Option<u32>, usize, Result<ChainObservation, ChainError>)> {
        let now = Utc::now();
        let mut out =
            vec![(SELF_TARGET.to_string(), None, 1, Ok(super::evaluate(self.cfg.sdk, &host.own_process_env(), imds_has_role, now)))];
        for p in &self.cfg.processes {
            let found = match host.find_processes(&p.pattern) {
                Ok(found) => found,
                Err(e) => {
                    out.push((p.name.clone(), None, 0, Err(e)));
                    continue;
                }
            };
            let Some(&(pid, _)) = found.first() else {
                let e = ChainError::new(ErrorReason::NotFound, format!("no process matches --chain.process {:?}", p.pattern.as_str()));
                out.push((p.name.clone(), None, 0, Err(e)));
                continue;
            };
            let result = host.process_env(pid).map(|env| super::evaluate(self.cfg.sdk, &env, imds_has_role, now));
            out.push((p.name.clone(), Some(pid), found.len(), result));
        }
        out
    }

    fn count(&self, target: &str, reason: ErrorReason) {
        *self.errors_total.lock().expect("chain lock").entry((target.to_string(), reason.as_str())).or_default() += 1;
    }

    async fn finish(&self, target: &str, pid: Option<u32>, matched: usize, result: Result<ChainObservation, ChainError>) -> TargetReport {
        let mut report = TargetReport {
            target: target.to_string(),
            pid,
            matched,
            observation: None,
            container_expiration: None,
            error: None,
            error_kind: None,
        };
        match result {
            Err(e) => {
                self.count(target, e.reason);
                // Warn when a target becomes unreadable, not on every probe (the counter keeps counting).
                let first = self.unreadable.lock().expect("chain lock").insert(target.to_string());
                if e.reason == ErrorReason::PermissionDenied && first {
                    tracing::warn!(target, pid, error = %e, "cannot read the process: run the exporter as the same user or grant CAP_SYS_PTRACE");
                } else {
                    tracing::debug!(target, pid, error = %e, "chain target unavailable");
                }
                report.error = Some(e.message);
                report.error_kind = Some(e.reason.kind());
            }
            Ok(obs) => {
                self.unreadable.lock().expect("chain lock").remove(target);
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
                            report.error_kind = Some(e.kind());
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

    /// regex is built with `unicode-perl` and `unicode-case` only (binary size):
    /// `\d`, `\w`, `\s` and `(?i)` keep their Unicode meaning. (The release
    /// binary refuses `\p{Greek}` with "Unicode property not found"; test builds
    /// cannot show it: proptest turns regex-syntax's other Unicode tables back on.)
    #[test]
    fn process_patterns_keep_perl_classes_and_case_folding() {
        let matches = |spec: &str, text: &str| ProcessTarget::parse(spec).unwrap().pattern.is_match(text);
        assert!(matches(r"java -Xmx\d+m\s\w+", "java -Xmx512m Orders"));
        assert!(matches(r"\w+\.jar", "bestellübersicht.jar"), "\\w is Unicode");
        assert!(matches("(?i)ORDERS", "orders"));
        assert!(matches("(?i)σ", "Σ"), "Unicode case folding");
    }
}
