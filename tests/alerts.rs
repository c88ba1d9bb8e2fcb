//! The alert rules, their unit tests, the runbook they link to, the
//! Alertmanager example and the generated PrometheusRule, checked with the
//! real tools (promtool, amtool, Alertmanager).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Output};
use std::time::Duration;

use common::monitoring::{RULES, is_known_metric, metric_names, recording_rules};
use common::stack::{self, assert_none_left, free_port, get_json, repo, wait_ready};

const RUNBOOK_URL: &str = "https://github.com/aws-credentials-exporter/aws-credentials-exporter/blob/main/docs/runbook.md#";
const AM_EXAMPLE: &str = "alerts/alertmanager.example.yml";

fn run(program: &str, args: &[&str]) -> Output {
    common::succeed(Command::new(program).args(args).current_dir(repo("")))
}

/// One alerting rule, read from the rule file (its layout is ours: one key per line).
#[derive(Debug, Default, Clone)]
struct Alert {
    name: String,
    severity: String,
    expr: String,
    for_: Option<String>,
    annotations: BTreeMap<String, String>,
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    if v.len() >= 2 && v.starts_with('\'') && v.ends_with('\'') {
        return v[1..v.len() - 1].replace("''", "'");
    }
    if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        return v[1..v.len() - 1].to_string();
    }
    v.to_string()
}

fn alerts() -> Vec<Alert> {
    let text = std::fs::read_to_string(repo(RULES)).unwrap();
    let mut out: Vec<Alert> = vec![];
    let mut in_expr_block = false;
    let mut current: Option<Alert> = None;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("- alert:") || t.starts_with("- record:") {
            out.extend(current.take());
            in_expr_block = false;
            if let Some(name) = t.strip_prefix("- alert:") {
                current = Some(Alert { name: name.trim().to_string(), ..Default::default() });
            }
            continue;
        }
        let Some(a) = current.as_mut() else { continue };
        if in_expr_block {
            if line.starts_with("          ") {
                a.expr.push_str(t);
                a.expr.push(' ');
                continue;
            }
            in_expr_block = false;
        }
        if let Some(e) = t.strip_prefix("expr:") {
            if e.trim() == "|" {
                in_expr_block = true;
            } else {
                a.expr = e.trim().to_string();
            }
        } else if let Some(f) = t.strip_prefix("for:") {
            a.for_ = Some(f.trim().to_string());
        } else if let Some(s) = t.strip_prefix("severity:") {
            a.severity = s.trim().to_string();
        } else {
            for key in ["summary", "description", "runbook_url"] {
                if let Some(v) = t.strip_prefix(&format!("{key}:")) {
                    a.annotations.insert(key.to_string(), unquote(v));
                }
            }
        }
    }
    out.extend(current);
    assert!(out.len() >= 19, "parsed only {} alerts", out.len());
    out
}

#[test]
fn promtool_accepts_the_rules() {
    let out = run("promtool", &["check", "rules", RULES]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("SUCCESS"));
}

#[test]
fn promtool_unit_tests_pass() {
    let mut files: Vec<String> = std::fs::read_dir(repo("alerts/tests"))
        .unwrap()
        .flatten()
        .map(|e| format!("alerts/tests/{}", e.file_name().to_string_lossy()))
        .filter(|f| f.ends_with(".yml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    let mut args = vec!["test", "rules"];
    args.extend(files.iter().map(String::as_str));
    let out = run("promtool", &args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches("SUCCESS").count(), files.len(), "{stdout}");
}

/// Mixin conventions: prefix, severity, static summary, templated description
/// naming the instance, runbook anchor; `for` on everything but instant facts.
#[test]
fn alerts_follow_the_mixin_conventions() {
    for a in alerts() {
        let n = &a.name;
        assert!(["AwsCredentials", "AwsImds", "AwsClock"].iter().any(|p| n.starts_with(p)), "{n}: prefix");
        assert!(n.chars().next().unwrap().is_ascii_uppercase() && !n.contains(['_', '-']), "{n}: CamelCase");
        assert!(["critical", "warning", "info"].contains(&a.severity.as_str()), "{n}: severity {:?}", a.severity);
        let summary = &a.annotations["summary"];
        assert!(!summary.contains("{{") && summary.ends_with('.'), "{n}: summary must be a static sentence: {summary}");
        let description = &a.annotations["description"];
        if !a.expr.contains("absent(") {
            assert!(description.contains("{{ $labels.instance }}"), "{n}: description must name the instance");
        }
        assert_eq!(a.annotations["runbook_url"], format!("{RUNBOOK_URL}{}", n.to_lowercase()), "{n}: runbook_url");
        if n != "AwsCredentialsExpired" {
            assert!(a.for_.is_some(), "{n}: no `for`: one bad scrape would page");
        }
    }
}

/// The expiry alerts wait less than the time they leave.
#[test]
fn expiry_alerts_wait_less_than_the_time_left() {
    let minutes = |d: &str| -> f64 {
        let (n, unit) = d.split_at(d.len() - 1);
        let n: f64 = n.parse().unwrap();
        match unit {
            "m" => n,
            "s" => n / 60.0,
            u => panic!("unit {u}"),
        }
    };
    let expiring: Vec<Alert> = alerts().into_iter().filter(|a| a.name == "AwsCredentialsExpiringSoon").collect();
    let severities: BTreeSet<&str> = expiring.iter().map(|a| a.severity.as_str()).collect();
    assert_eq!(severities, BTreeSet::from(["critical", "warning"]));
    for a in &expiring {
        let threshold = a.expr.rsplit_once('<').unwrap().1.trim();
        let (m, s) = threshold.split_once('*').unwrap();
        let left_minutes = m.trim().parse::<f64>().unwrap() * s.trim().parse::<f64>().unwrap() / 60.0;
        let wait = minutes(a.for_.as_deref().unwrap());
        assert!(wait < left_minutes, "{} {}: for {wait} min >= {left_minutes} min left", a.name, a.severity);
        match a.severity.as_str() {
            "warning" => assert_eq!(left_minutes, 15.0),
            _ => assert!(left_minutes <= 5.0 && left_minutes - wait > 0.0, "critical fires after IMDS' 5-minute margin"),
        }
    }
}

#[test]
fn rules_use_only_the_designed_metrics_and_the_job_convention() {
    let recording = recording_rules();
    let text = std::fs::read_to_string(repo(RULES)).unwrap();
    let mut exprs: Vec<String> = alerts().into_iter().map(|a| a.expr).collect();
    // recording rule expressions (single-line or block)
    exprs.extend(text.lines().filter_map(|l| l.trim().strip_prefix("expr:")).map(|e| e.trim().to_string()));
    for e in &exprs {
        for (_, name) in metric_names(e) {
            assert!(is_known_metric(&name, &recording), "unknown metric {name} in {e}");
        }
        if e.contains("up{") {
            assert!(e.contains(r#"up{job=~".*aws-credentials.*"}"#), "the job convention: {e}");
        }
    }
}

/// For every alert and severity, a promtool case where it fires; for every
/// alert, one where it must not (`exp_alerts: []`).
#[test]
fn every_alert_has_a_firing_and_a_silent_unit_test() {
    let mut fires: BTreeSet<(String, String)> = BTreeSet::new();
    let mut silent: BTreeSet<String> = BTreeSet::new();
    for entry in std::fs::read_dir(repo("alerts/tests")).unwrap().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap();
        // Each `- eval_time:` starts a case: its alertname, then exp_alerts.
        for case in text.split("- eval_time:").skip(1) {
            let case = case.split("\n  - interval:").next().unwrap();
            let Some(name) = case.lines().find_map(|l| l.trim().strip_prefix("alertname:")) else { continue };
            let name = name.trim().to_string();
            if case.contains("exp_alerts: []") {
                silent.insert(name);
            } else {
                for sev in case.lines().filter_map(|l| l.trim().strip_prefix("severity:")) {
                    fires.insert((name.clone(), sev.trim().to_string()));
                }
            }
        }
    }
    for a in alerts() {
        assert!(fires.contains(&(a.name.clone(), a.severity.clone())), "{} ({}): no promtool case where it fires", a.name, a.severity);
        assert!(silent.contains(&a.name), "{}: no promtool case where it must not fire", a.name);
    }
}

#[test]
fn the_runbook_has_a_section_per_alert() {
    let runbook = std::fs::read_to_string(repo("docs/runbook.md")).unwrap();
    let headings: BTreeSet<String> = runbook.lines().filter_map(|l| l.strip_prefix("## ")).map(|h| h.trim().to_lowercase()).collect();
    let names: BTreeSet<String> = alerts().into_iter().map(|a| a.name).collect();
    for n in &names {
        // GitHub's anchor of "## AwsImdsDown" is #awsimdsdown.
        assert!(headings.contains(&n.to_lowercase()), "docs/runbook.md: no `## {n}` section");
        let section = runbook.split(&format!("## {n}\n")).nth(1).unwrap().split("\n## ").next().unwrap();
        for part in ["Meaning", "Confirm", "Fix"] {
            assert!(section.contains(&format!("**{part}")), "docs/runbook.md {n}: no **{part}**");
        }
    }
}

#[test]
fn alertmanager_example_passes_amtool() {
    let out = run("amtool", &["check-config", AM_EXAMPLE]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("SUCCESS") && stdout.contains("inhibit rules"), "{stdout}");
}

#[test]
fn alertmanager_example_routes_by_severity() {
    let config = format!("--config.file={AM_EXAMPLE}");
    for (labels, receiver) in [
        (&["severity=critical", "alertname=AwsCredentialsExpiringSoon", "instance=i-1"][..], "pager"),
        (&["severity=critical", "alertname=AwsCredentialsExpired"][..], "pager"),
        (&["severity=warning", "alertname=AwsImdsThrottled"][..], "tickets"),
        (&["severity=info", "alertname=Whatever"][..], "blackhole"),
        (&["alertname=NoSeverity"][..], "tickets"),
    ] {
        let verify = format!("--verify.receivers={receiver}");
        let mut args = vec!["config", "routes", "test", &config, &verify];
        args.extend(labels);
        run("amtool", &args);
    }
}

/// The inhibitions of the example, evaluated by a real Alertmanager: alerts
/// are posted to its API and their `inhibitedBy` status is read back.
#[tokio::test]
async fn alertmanager_example_inhibits_warnings_and_throttling() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    // The example's receivers are webhooks on 127.0.0.1; group_wait (30 s) outlasts the test.
    let config = std::fs::read_to_string(repo(AM_EXAMPLE)).unwrap();
    let mut am = stack::alertmanager(tmp.path(), &config, port);
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&mut am, &format!("{base}/-/ready"), Duration::from_secs(20)).await;

    let alert = |name: &str, severity: &str, instance: &str| serde_json::json!({"labels": {"alertname": name, "severity": severity, "instance": instance, "job": "aws-credentials-exporter"}});
    let posted = vec![
        alert("AwsCredentialsExpiringSoon", "critical", "i-1"),
        alert("AwsCredentialsExpiringSoon", "warning", "i-1"), // inhibited: same family, same instance
        alert("AwsCredentialsExpiringSoon", "warning", "i-2"), // not: another instance
        alert("AwsClockSkewDetected", "warning", "i-1"),       // not: another family
        alert("AwsImdsDown", "warning", "i-3"),
        alert("AwsImdsThrottled", "warning", "i-3"),  // inhibited by AwsImdsDown
        alert("AwsImdsThrottled", "warning", "i-4"),  // not: IMDS is up there
        alert("AwsImdsV1Fallback", "warning", "i-3"), // inhibited by AwsImdsDown
    ];
    let resp = common::client()
        .post(format!("{base}/api/v2/alerts"))
        .header("content-type", "application/json")
        .body(serde_json::to_string(&posted).unwrap())
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());

    let want: BTreeMap<(String, String, String), bool> = [
        (("AwsCredentialsExpiringSoon", "critical", "i-1"), false),
        (("AwsCredentialsExpiringSoon", "warning", "i-1"), true),
        (("AwsCredentialsExpiringSoon", "warning", "i-2"), false),
        (("AwsClockSkewDetected", "warning", "i-1"), false),
        (("AwsImdsDown", "warning", "i-3"), false),
        (("AwsImdsThrottled", "warning", "i-3"), true),
        (("AwsImdsThrottled", "warning", "i-4"), false),
        (("AwsImdsV1Fallback", "warning", "i-3"), true),
    ]
    .into_iter()
    .map(|((a, s, i), inhibited)| ((a.to_string(), s.to_string(), i.to_string()), inhibited))
    .collect();
    // Inhibition is evaluated when the alerts are read; poll until all are in.
    let until = std::time::Instant::now() + Duration::from_secs(10);
    let got = loop {
        let list = get_json(&format!("{base}/api/v2/alerts")).await;
        let got: BTreeMap<(String, String, String), bool> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                let l = &a["labels"];
                let key = (
                    l["alertname"].as_str().unwrap().into(),
                    l["severity"].as_str().unwrap().into(),
                    l["instance"].as_str().unwrap().into(),
                );
                (key, !a["status"]["inhibitedBy"].as_array().unwrap().is_empty())
            })
            .collect();
        if got == want || std::time::Instant::now() > until {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(got, want, "inhibited (true) by alert\n{}", am.log());
    am.stop();
    assert_none_left(tmp.path());
}

/// deploy/kubernetes/base/prometheusrule.yaml is generated from alerts/: regenerate
/// and compare, then let promtool check the rules inside it.
#[test]
fn prometheusrule_is_in_sync_with_alerts() {
    let tmp = tempfile::tempdir().unwrap();
    let generated = tmp.path().join("prometheusrule.yaml");
    run("sh", &["scripts/gen-prometheusrule.sh", generated.to_str().unwrap()]);
    let shipped = std::fs::read_to_string(repo("deploy/kubernetes/base/prometheusrule.yaml")).unwrap();
    let fresh = std::fs::read_to_string(&generated).unwrap();
    assert!(fresh == shipped, "deploy/kubernetes/base/prometheusrule.yaml is stale: run scripts/gen-prometheusrule.sh");
    assert!(shipped.contains("kind: PrometheusRule") && shipped.contains("apiVersion: monitoring.coreos.com/v1"));
    // spec: un-indented is a rule file again.
    let spec: String =
        shipped.split_once("\nspec:\n").unwrap().1.lines().map(|l| format!("{}\n", l.strip_prefix("  ").unwrap_or(l))).collect();
    let rules = tmp.path().join("spec.yml");
    std::fs::write(&rules, spec).unwrap();
    let out = run("promtool", &["check", "rules", rules.to_str().unwrap()]);
    let count = alerts().len() + recording_rules().len();
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("{count} rules found")), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn scrape_config_example_passes_promtool() {
    run("promtool", &["check", "config", "deploy/prometheus/scrape-config.yml"]);
}
