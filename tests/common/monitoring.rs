//! What the alert, dashboard and end-to-end tests share: the metric names the
//! design fixes, the shipped files, and a small PromQL scanner (metric names,
//! counters outside `rate()`), good enough for the queries we write ourselves.

use std::path::PathBuf;

use serde_json::Value;

use super::stack::repo;

/// Every metric the exporter exposes or will expose (the design fixes the names;
/// README#metrics and issues 2-4). Rules and dashboards may use no others,
/// besides `up` and their own recording rules: a typo fails here even for a
/// metric that is not implemented yet.
pub const DESIGNED_METRICS: &[&str] = &[
    // IMDS and instance-profile credentials
    "aws_credentials_seconds_until_expiry",
    "aws_credentials_expiration_timestamp_seconds",
    "aws_credentials_last_updated_timestamp_seconds",
    "aws_imds_up",
    "aws_imds_instance_profile_attached",
    "aws_imds_credentials_info",
    "aws_imds_protocol_version",
    "aws_imds_requests_total",
    "aws_imds_throttled_total",
    "aws_imds_retries_total",
    "aws_imds_v1_fallbacks_total",
    "aws_imds_request_duration_seconds_bucket",
    "aws_imds_request_duration_seconds_sum",
    "aws_imds_request_duration_seconds_count",
    "aws_imds_last_success_timestamp_seconds",
    "aws_credentials_exporter_build_info",
    "aws_credentials_exporter_probe_duration_seconds",
    // clock
    "aws_clock_offset_seconds",
    "aws_clock_ntp_up",
    "aws_clock_ntp_rtt_seconds",
    "aws_clock_ntp_stratum",
    "aws_clock_ntp_leap",
    "aws_clock_ntp_root_delay_seconds",
    "aws_clock_ntp_root_dispersion_seconds",
    "aws_clock_ntp_reference_info",
    "aws_clock_ntp_kiss_of_death_total",
    "aws_clock_ntp_requests_total",
    "aws_clock_ntp_failures_total",
    "aws_clock_error_bound_seconds",
    "aws_clock_synchronized",
    "aws_clock_max_error_seconds",
    "aws_clock_estimated_error_seconds",
    "aws_clock_kernel_offset_seconds",
    "aws_clock_tai_offset_seconds",
    // credential provider chain
    "aws_credentials_active_provider",
    "aws_credentials_provider_present",
    "aws_credentials_instance_profile_shadowed",
    "aws_credentials_static_session_token",
    "aws_imds_proxy_bypass_missing",
    "aws_credentials_chain_errors_total",
];

/// The rule file every other file is derived from or tested against.
pub const RULES: &str = "alerts/aws-credentials-exporter.rules.yml";

/// Names of the recording rules in [`RULES`].
pub fn recording_rules() -> Vec<String> {
    std::fs::read_to_string(repo(RULES))
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- record:").map(|n| n.trim().to_string()))
        .collect()
}

/// Whether `name` is a metric a rule or dashboard may use.
pub fn is_known_metric(name: &str, recording: &[String]) -> bool {
    name == "up" || DESIGNED_METRICS.contains(&name) || recording.iter().any(|r| r == name)
}

/// Counters and histogram series: only meaningful under rate()/increase().
pub fn is_counter(name: &str) -> bool {
    ["_total", "_bucket", "_count", "_sum"].iter().any(|s| name.ends_with(s))
}

const KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right"];
/// Aggregation operators, which may be followed by `by (...)` before their `(`.
const AGGREGATORS: &[&str] =
    &["sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile"];

/// Blanks out string literals, label matchers (`{...}`) and ranges (`[...]`),
/// keeping every other byte at its position.
fn blank(expr: &str) -> Vec<u8> {
    let mut out = expr.as_bytes().to_vec();
    let (mut quote, mut depth_brace, mut depth_bracket) = (None::<u8>, 0, 0);
    let mut i = 0;
    while i < out.len() {
        let c = out[i];
        match quote {
            Some(q) => {
                if c == b'\\' && i + 1 < out.len() {
                    out[i] = b' ';
                    out[i + 1] = b' ';
                    i += 2;
                    continue;
                }
                if c == q {
                    quote = None;
                }
                out[i] = b' ';
            }
            None => match c {
                b'"' | b'\'' | b'`' => {
                    quote = Some(c);
                    out[i] = b' ';
                }
                b'{' => depth_brace += 1,
                b'}' => depth_brace -= 1,
                b'[' => depth_bracket += 1,
                b']' => depth_bracket -= 1,
                _ if depth_brace > 0 || depth_bracket > 0 => out[i] = b' ',
                _ => {}
            },
        }
        i += 1;
    }
    out
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':'
}

fn is_ident(c: u8) -> bool {
    is_ident_start(c) || c.is_ascii_digit()
}

/// Metric names an expression selects, with their byte offsets.
pub fn metric_names(expr: &str) -> Vec<(usize, String)> {
    let b = blank(expr);
    let mut names = vec![];
    let mut i = 0;
    let mut skip_group = false;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_digit() || c == b'.' {
            // a number (1e9, 0.05, 15): never a name
            while i < b.len() && (is_ident(b[i]) || b[i] == b'.') {
                i += 1;
            }
            continue;
        }
        if !is_ident_start(c) {
            if c == b'(' && skip_group {
                // label list of by/without/on/ignoring/group_*: skip it
                while i < b.len() && b[i] != b')' {
                    i += 1;
                }
                skip_group = false;
            }
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && is_ident(b[i]) {
            i += 1;
        }
        let word = String::from_utf8_lossy(&b[start..i]).to_string();
        let mut j = i;
        while j < b.len() && b[j] == b' ' {
            j += 1;
        }
        let is_call = j < b.len() && b[j] == b'(';
        if KEYWORDS.contains(&word.as_str()) {
            skip_group = matches!(word.as_str(), "by" | "without" | "on" | "ignoring" | "group_left" | "group_right");
        } else if !is_call && !AGGREGATORS.contains(&word.as_str()) {
            names.push((start, word));
        }
    }
    names
}

/// Counters in `expr` that are not the direct argument of rate/irate/increase.
pub fn counters_outside_rate(expr: &str) -> Vec<String> {
    let b = blank(expr);
    let mut bad = vec![];
    for (pos, name) in metric_names(expr) {
        if !is_counter(&name) {
            continue;
        }
        // The innermost unclosed '(' before the name, and the function before it.
        let mut depth = 0;
        let mut func = String::new();
        for k in (0..pos).rev() {
            match b[k] {
                b')' => depth += 1,
                b'(' if depth > 0 => depth -= 1,
                b'(' => {
                    let mut e = k;
                    while e > 0 && b[e - 1] == b' ' {
                        e -= 1;
                    }
                    let mut s = e;
                    while s > 0 && is_ident(b[s - 1]) {
                        s -= 1;
                    }
                    func = String::from_utf8_lossy(&b[s..e]).to_string();
                    break;
                }
                _ => {}
            }
        }
        if !["rate", "irate", "increase"].contains(&func.as_str()) {
            bad.push(name);
        }
    }
    bad
}

/// The shipped dashboards: (file name, JSON).
pub fn dashboards() -> Vec<(String, Value)> {
    let mut out = vec![];
    let dir = repo("dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
    files.sort();
    for path in files.into_iter().filter(|p| p.extension().is_some_and(|e| e == "json")) {
        let text = std::fs::read_to_string(&path).unwrap();
        let json: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: invalid JSON: {e}", path.display()));
        out.push((path.file_name().unwrap().to_string_lossy().to_string(), json));
    }
    assert!(out.len() >= 2, "dashboards missing in {}", dir.display());
    out
}

/// Where a dashboard query sits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Panel,
    Variable,
    Annotation,
}

/// One PromQL query of a dashboard.
#[derive(Debug, Clone)]
pub struct Query {
    pub dashboard: String,
    pub kind: Kind,
    /// Panel or variable title.
    pub title: String,
    pub expr: String,
}

/// Every PromQL query of a dashboard: panel targets, variables
/// (`label_values(SELECTOR, label)` as `SELECTOR`) and annotations.
pub fn queries(file: &str, d: &Value) -> Vec<Query> {
    let mut out = vec![];
    let q = |kind, title: &str, expr: &str| Query { dashboard: file.to_string(), kind, title: title.to_string(), expr: expr.to_string() };
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(q(Kind::Panel, p["title"].as_str().unwrap_or("?"), t["expr"].as_str().expect("target without expr")));
        }
    }
    for v in d["templating"]["list"].as_array().unwrap().iter().filter(|v| v["type"] == "query") {
        let def = v["definition"].as_str().unwrap();
        let inner = def.strip_prefix("label_values(").and_then(|s| s.strip_suffix(')')).expect("label_values(...)");
        let selector = inner.rsplit_once(',').map(|(s, _)| s.trim()).unwrap_or(inner);
        out.push(q(Kind::Variable, v["name"].as_str().unwrap(), selector));
    }
    for a in d["annotations"]["list"].as_array().unwrap() {
        if let Some(expr) = a["expr"].as_str() {
            out.push(q(Kind::Annotation, a["name"].as_str().unwrap(), expr));
        }
    }
    out
}

/// Substitutes Grafana variables as Grafana would, with `job` and `instance`
/// set to regexes.
pub fn substitute(expr: &str, job: &str, instance: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
        .replace("${job}", job)
        .replace("$job", job)
        .replace("${instance}", instance)
        .replace("$instance", instance)
}
