//! `check`: one golden text report per demo scenario (volatile values
//! normalised), the JSON schema, exit codes, and the report agreeing with
//! `/metrics` on the same snapshot. `UPDATE_GOLDEN=1 cargo test --test
//! check_command` rewrites the golden files after an intended change.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_credentials_exporter::sim::scenario;
use aws_credentials_exporter::{app, metrics, report};
use common::{BIN, Metrics};
use serde_json::Value;

/// Exit code `check` must give for each scenario: 0 all OK, 1 warnings, 2 failures.
const EXIT_CODES: &[(&str, i32)] = &[
    ("healthy", 0),
    ("expiring", 1),
    ("throttled", 1),
    ("no-role", 2),
    ("token-hop-limit", 1),
    ("v1-only", 1),
    ("v2-required", 0),
    ("role-error", 2),
    ("malformed", 2),
    ("server-error", 2),
    ("skewed", 2),
    ("shadowed", 1),
    ("legacy-path", 0),
];

fn run_check(scenario: &str, output: &str) -> (i32, String) {
    let out = Command::new(BIN)
        .args(["demo", "--check", "--scenario", scenario, "--output", output, "--imds.timeout", "300ms"])
        .env_clear()
        .output()
        .expect("run demo --check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{scenario}: {stderr}");
    (out.status.code().expect("exit code"), String::from_utf8(out.stdout).expect("UTF-8 report"))
}

/// Replaces what changes from run to run: times, durations, ports, measured numbers.
fn normalise(text: &str) -> String {
    let rules: &[(&str, &str)] = &[
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "<TIME>"),
        (r"127\.0\.0\.1:\d+", "127.0.0.1:<PORT>"),
        (r"-?\b\d+(d\d+h|h\d+m|m\d+s)\b", "<DURATION>"),
        (r"\b\d+s ago\b", "<DURATION> ago"),
        // Loopback jitter on a busy machine: sub-second offsets are all "small".
        (r"within 1 ms of|\b\d+\.\d+ ms (ahead of|behind)", "<SMALL OFFSET>"),
        (r"\b\d+\.\d+ (ms|s)\b", "<N> $1"),
        (r"aws-credentials-exporter \S+ check", "aws-credentials-exporter <VERSION> check"),
    ];
    let mut s = text.to_string();
    for (re, with) in rules {
        s = regex::Regex::new(re).unwrap().replace_all(&s, *with).into_owned();
    }
    s
}

#[test]
fn every_scenario_matches_its_golden_report_and_exit_code() {
    let names: Vec<&str> = scenario::all().iter().map(|s| s.name).collect();
    assert_eq!(names.len(), EXIT_CODES.len(), "every scenario has an expected exit code");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    for (name, want_code) in EXIT_CODES {
        assert!(names.contains(name), "{name} is a scenario");
        let (code, text) = run_check(name, "text");
        if code != *want_code {
            failures.push(format!("{name}: exit code {code}, want {want_code}\n{text}"));
        }
        let got = normalise(&text);
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/check/{name}.txt"));
        if update {
            std::fs::write(&path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("{} missing: run with UPDATE_GOLDEN=1", path.display()));
        if got != want {
            let diff: Vec<String> = want
                .lines()
                .zip(got.lines())
                .filter(|(w, g)| w != g)
                .map(|(w, g)| format!("-{w}\n+{g}"))
                .chain(
                    (want.lines().count() != got.lines().count())
                        .then(|| format!("line counts {} vs {}", want.lines().count(), got.lines().count())),
                )
                .collect();
            failures.push(format!("{name}: report differs from {}\n{}", path.display(), diff.join("\n")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

const STATUSES: [&str; 4] = ["OK", "WARN", "FAIL", "SKIP"];

/// The JSON report's schema (documented in README, "check JSON schema").
fn assert_schema(name: &str, v: &Value) {
    let obj = v.as_object().unwrap_or_else(|| panic!("{name}: not an object"));
    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    for k in ["schema_version", "exporter_version", "generated_at", "status", "summary", "checks"] {
        assert!(keys.contains(&k), "{name}: missing {k}");
    }
    assert_eq!(v["schema_version"], 1, "{name}");
    assert!(chrono::DateTime::parse_from_rfc3339(v["generated_at"].as_str().unwrap()).is_ok(), "{name}");
    assert!(STATUSES.contains(&v["status"].as_str().unwrap()), "{name}");
    let s = &v["summary"];
    for (k, types) in [
        ("role", "string|null"),
        ("expiration", "string|null"),
        ("seconds_until_expiry", "number|null"),
        ("imds_up", "boolean"),
        ("imds_protocol_version", "number"),
        ("clock_offset_seconds", "number|null"),
        ("clock_synchronized", "boolean|null"),
        ("chain_sdk", "string"),
        ("active_providers", "array"),
    ] {
        let t = match &s[k] {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        assert!(types.split('|').any(|x| x == t), "{name}: summary.{k} is {t}, want {types}");
    }
    for p in s["active_providers"].as_array().unwrap() {
        assert!(p["target"].is_string() && (p["provider"].is_string() || p["provider"].is_null()), "{name}: {p}");
    }
    let worst = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            for k in ["id", "title", "status", "evidence"] {
                assert!(c[k].is_string(), "{name}: check without {k}: {c}");
            }
            for k in ["remedy", "confirm", "runbook"] {
                assert!(c.get(k).is_none() || c[k].is_string(), "{name}: {k} is a string when present: {c}");
            }
            let st = c["status"].as_str().unwrap();
            assert!(STATUSES.contains(&st), "{name}: {st}");
            if st == "WARN" || st == "FAIL" {
                assert!(c["remedy"].is_string(), "{name}: every finding says what to do: {c}");
            }
            match st {
                "FAIL" => 3,
                "WARN" => 2,
                "OK" => 1,
                _ => 0,
            }
        })
        .max()
        .unwrap();
    let want = ["SKIP", "OK", "WARN", "FAIL"][worst];
    let want = if want == "SKIP" { "OK" } else { want };
    assert_eq!(v["status"].as_str().unwrap().replace("SKIP", "OK"), want, "{name}: status is the worst check");
}

#[test]
fn json_reports_follow_the_schema_and_never_carry_secrets() {
    for (name, code) in EXIT_CODES {
        let (got, text) = run_check(name, "json");
        assert_eq!(got, *code, "{name}");
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
        assert_schema(name, &v);
        for marker in ["SimSecretAccessKey", "SimSessionToken", "SimImdsToken", "wJalrXUtnFEMI"] {
            assert!(!text.contains(marker), "{name}: {marker} in the report");
        }
    }
}

#[tokio::test]
async fn report_and_metrics_agree_on_one_snapshot() {
    for s in scenario::all() {
        let sim = common::sim_with_ntp(s.imds.clone(), s.ntp.clone()).await;
        let config = common::config(&sim.imds_url(), &["--ntp.server", &sim.ntp_addr().to_string(), "--imds.timeout", "300ms"]);
        let prober = app::prober(&config).with_host(Arc::new(s.host()));
        let snapshot = prober.snapshot(Instant::now() + Duration::from_secs(5)).await;
        let m = Metrics::parse(&metrics::render(&snapshot));
        let r = report::build(&snapshot);
        let name = s.name;
        assert_eq!(m.get("aws_imds_up") == 1.0, r.summary.imds_up, "{name}: imds up");
        assert_eq!(m.get("aws_imds_protocol_version") as u8, r.summary.imds_protocol_version, "{name}: protocol");
        let until =
            m.family("aws_credentials_seconds_until_expiry").into_iter().find(|(k, _)| k.contains("instance_profile")).map(|(_, v)| v);
        match (until, r.summary.seconds_until_expiry) {
            (Some(a), Some(b)) => assert!((a - b).abs() < 1e-6, "{name}: expiry {a} vs {b}"),
            (a, b) => assert_eq!(a.is_some(), b.is_some(), "{name}: expiry {a:?} vs {b:?}"),
        }
        let offset = m.family("aws_clock_offset_seconds").first().map(|(_, v)| *v);
        assert_eq!(offset, r.summary.clock_offset_seconds, "{name}: offset");
        assert_eq!(m.get("aws_clock_synchronized") == 1.0, r.summary.clock_synchronized.unwrap(), "{name}: kernel sync");
        for tp in &r.summary.active_providers {
            let p = tp.provider.expect("self is always evaluated");
            assert_eq!(
                m.get(&format!(r#"aws_credentials_active_provider{{target="{}",provider="{p}"}}"#, tp.target)),
                1.0,
                "{name}: provider"
            );
        }
        let shadowed = m.get(r#"aws_credentials_instance_profile_shadowed{target="self"}"#) == 1.0;
        assert_eq!(shadowed, r.checks.iter().any(|c| c.id == "chain.active" && c.status == report::Status::Warn), "{name}: shadowing");
        let throttled = m.get("aws_imds_throttled_total") > 0.0;
        assert_eq!(throttled, r.checks.iter().any(|c| c.id == "imds.throttling" && c.status == report::Status::Warn), "{name}: throttling");
        sim.stop().await;
    }
}

#[test]
fn colour_only_on_a_terminal() {
    let piped = Command::new(BIN).args(["demo", "--check", "--scenario", "expiring"]).env_clear().output().unwrap();
    assert!(!String::from_utf8_lossy(&piped.stdout).contains('\x1b'), "no ANSI codes into a pipe");
    // `script` (util-linux) runs the command on a pseudo-terminal.
    let tty = Command::new("script")
        .args(["-qec", &format!("{BIN} demo --check --scenario expiring"), "/dev/null"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TERM", "xterm")
        .output()
        .expect("script (util-linux)");
    let text = String::from_utf8_lossy(&tty.stdout);
    assert!(text.contains("\x1b[33mWARN"), "WARN in yellow on a terminal: {text:?}");
    let no_color = Command::new("script")
        .args(["-qec", &format!("{BIN} demo --check --scenario expiring"), "/dev/null"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&no_color.stdout).contains('\x1b'), "NO_COLOR is honoured");
}

/// Usage and configuration errors exit 64 (EX_USAGE) from every subcommand,
/// never 1 or 2 (`check`'s warnings and failures); the message names the flag
/// and shows no credential. Each fails before any probe or listener starts.
#[test]
fn usage_and_configuration_errors_exit_64() {
    let cases: &[(&[&str], &str)] = &[
        (&["check", "--no-such-flag"], "--no-such-flag"),
        (&["check", "--output", "xml"], "--output"),
        (&["check", "--imds.timeout", "soon"], "--imds.timeout"),
        (&["demo", "--check", "--ntp.samples", "0"], "--ntp.samples"),
        (&["serve", "--web.telemetry-path", "/-/healthy"], "--web.telemetry-path"),
        (&["--web.telemetry-path", "/check.json"], "--web.telemetry-path"),
        (&["serve", "--ntp.server", "127.0.0.1:0"], "--ntp.server"),
        (&["serve", "--web.max-connections", "0"], "--web.max-connections"),
        (&["serve", "--imds.endpoint", "http://user:hunter2@127.0.0.1:9"], "--imds.endpoint"),
        (&["serve", "--web.config.file", "/nonexistent/web.yml"], "--web.config.file"),
    ];
    for (args, names) in cases {
        let out = Command::new(BIN).args(*args).env_clear().output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(stderr.contains(names), "{args:?}: {stderr}");
        assert!(!stderr.contains("hunter2"), "{args:?}: {stderr}");
    }
    let help = Command::new(BIN).args(["check", "--help"]).output().unwrap();
    assert_eq!(help.status.code(), Some(0));
}
