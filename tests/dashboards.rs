//! The Grafana dashboards: structure, layout, variables, and every query
//! checked by promtool. (That every query returns data from a live Prometheus
//! is tests/e2e_prometheus.rs.)

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::monitoring::{Kind, counters_outside_rate, dashboards, is_known_metric, metric_names, queries, recording_rules, substitute};
use common::stack::repo;
use serde_json::Value;

const RUNBOOK: &str = "https://github.com/aws-credentials-exporter/aws-credentials-exporter/blob/main/docs/runbook.md";

fn panels(d: &Value) -> &Vec<Value> {
    d["panels"].as_array().expect("panels")
}

#[test]
fn dashboards_are_classic_json_with_fixed_uid_tags_and_read_only() {
    let mut uids = BTreeSet::new();
    for (file, d) in dashboards() {
        assert_eq!(d["schemaVersion"], 39, "{file}");
        let uid = d["uid"].as_str().unwrap_or_else(|| panic!("{file}: no uid"));
        assert!(uid.starts_with("aws-credentials-") && uid.len() <= 40, "{file}: uid {uid}");
        assert!(uids.insert(uid.to_string()), "{file}: duplicate uid {uid}");
        assert_eq!(d["editable"], false, "{file}");
        assert!(d["id"].is_null(), "{file}: id must be null so that provisioning assigns one");
        let tags = d["tags"].as_array().unwrap();
        assert!(tags.iter().any(|t| t == "aws-credentials-exporter"), "{file}: tags {tags:?}");
        assert!(!d["title"].as_str().unwrap().is_empty() && !d["description"].as_str().unwrap().is_empty(), "{file}");
        assert!(d["links"].as_array().unwrap().iter().any(|l| l["url"] == RUNBOOK), "{file}: links the runbook");
    }
}

#[test]
fn variables_are_datasource_job_and_instance() {
    for (file, d) in dashboards() {
        let vars = d["templating"]["list"].as_array().unwrap();
        let by_name = |n: &str| vars.iter().find(|v| v["name"] == n).unwrap_or_else(|| panic!("{file}: no ${n} variable"));
        let ds = by_name("datasource");
        assert_eq!(ds["type"], "datasource", "{file}");
        assert_eq!(ds["query"], "prometheus", "{file}");
        for (name, query) in [
            ("job", "label_values(aws_credentials_exporter_build_info, job)"),
            ("instance", r#"label_values(aws_credentials_exporter_build_info{job=~"$job"}, instance)"#),
        ] {
            let v = by_name(name);
            assert_eq!(v["type"], "query", "{file} ${name}");
            assert_eq!(v["definition"], query, "{file} ${name}");
            assert_eq!(v["query"]["query"], query, "{file} ${name}");
            assert_eq!(v["datasource"]["uid"], "${datasource}", "{file} ${name}");
            assert_eq!(v["multi"], true, "{file} ${name}");
            assert_eq!(v["includeAll"], true, "{file} ${name}");
            assert_eq!(v["allValue"], ".+", "{file} ${name}");
        }
    }
}

#[test]
fn panel_ids_are_unique_and_panels_do_not_overlap() {
    for (file, d) in dashboards() {
        let mut ids = BTreeSet::new();
        let mut boxes: Vec<(String, i64, i64, i64, i64)> = vec![];
        for p in panels(&d) {
            let id = p["id"].as_i64().unwrap_or_else(|| panic!("{file}: panel without id: {}", p["title"]));
            assert!(ids.insert(id), "{file}: duplicate panel id {id}");
            let g = &p["gridPos"];
            let (x, y, w, h) = (g["x"].as_i64().unwrap(), g["y"].as_i64().unwrap(), g["w"].as_i64().unwrap(), g["h"].as_i64().unwrap());
            let title = p["title"].as_str().unwrap_or("?").to_string();
            assert!(x >= 0 && y >= 0 && w > 0 && h > 0 && x + w <= 24, "{file}: {title} outside the 24-column grid: {g}");
            for (other, ox, oy, ow, oh) in &boxes {
                let overlap = x < ox + ow && *ox < x + w && y < oy + oh && *oy < y + h;
                assert!(!overlap, "{file}: {title} ({g}) overlaps {other}");
            }
            boxes.push((title, x, y, w, h));
        }
    }
}

#[test]
fn every_panel_has_title_description_unit_and_uses_the_datasource_variable() {
    for (file, d) in dashboards() {
        for p in panels(&d) {
            let title = p["title"].as_str().unwrap_or("");
            assert!(!title.is_empty(), "{file}: panel {} without title", p["id"]);
            if p["type"] == "row" {
                continue; // a row is a heading: no query, no unit
            }
            assert!(p["description"].as_str().is_some_and(|s| s.len() > 20), "{file}: {title}: describe the panel");
            assert!(p["fieldConfig"]["defaults"]["unit"].as_str().is_some_and(|u| !u.is_empty()), "{file}: {title}: no unit");
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{file}: {title}");
            let targets = p["targets"].as_array().unwrap_or_else(|| panic!("{file}: {title}: no targets"));
            assert!(!targets.is_empty(), "{file}: {title}: no targets");
            for t in targets {
                assert_eq!(t["datasource"]["uid"], "${datasource}", "{file}: {title}");
            }
        }
    }
}

#[test]
fn the_instance_dashboard_has_the_time_to_expiry_stat_with_15_and_5_minute_thresholds() {
    let (_, d) = dashboards().into_iter().find(|(f, _)| f == "aws-credentials-instance.json").unwrap();
    let p = panels(&d).iter().find(|p| p["title"] == "Time to expiry").expect("Time to expiry panel");
    assert_eq!(p["type"], "stat");
    assert_eq!(p["fieldConfig"]["defaults"]["unit"], "dtdurations");
    let steps: Vec<Value> =
        p["fieldConfig"]["defaults"]["thresholds"]["steps"].as_array().unwrap().iter().map(|s| s["value"].clone()).collect();
    assert_eq!(steps, [Value::Null, 300.into(), 900.into()]);
}

#[test]
fn queries_filter_by_job_use_known_metrics_and_rate_every_counter() {
    let recording = recording_rules();
    for (file, d) in dashboards() {
        for q in queries(&file, &d) {
            let at = format!("{file}: {:?} {}: {}", q.kind, q.title, q.expr);
            if q.kind != Kind::Variable || q.title == "instance" {
                assert!(q.expr.contains("$job"), "{at}: filter by the $job variable");
            }
            let names = metric_names(&q.expr);
            assert!(!names.is_empty(), "{at}: selects no metric");
            for (_, name) in names {
                assert!(is_known_metric(&name, &recording), "{at}: unknown metric {name} (typo? see DESIGNED_METRICS)");
            }
            let bare = counters_outside_rate(&q.expr);
            assert!(bare.is_empty(), "{at}: counters {bare:?} must be under rate(...[$__rate_interval]) or increase()");
            if q.expr.contains("rate(") {
                assert!(q.kind != Kind::Panel || q.expr.contains("[$__rate_interval]"), "{at}: use [$__rate_interval]");
            }
        }
    }
}

/// Every query, variables substituted as Grafana would, must parse: promtool
/// checks them as the expressions of a generated recording-rule file.
#[test]
fn every_query_parses_with_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = String::from("groups:\n  - name: dashboard-queries\n    rules:\n");
    let mut n = 0;
    for (file, d) in dashboards() {
        for q in queries(&file, &d) {
            n += 1;
            let expr = substitute(&q.expr, ".+", ".+");
            // A JSON string is a valid YAML double-quoted scalar.
            yaml.push_str(&format!(
                "      # {file}: {}\n      - record: dashboard:query_{n}\n        expr: {}\n",
                q.title,
                serde_json::to_string(&expr).unwrap()
            ));
        }
    }
    let path = dir.path().join("dashboard-queries.yml");
    std::fs::write(&path, &yaml).unwrap();
    let out = Command::new("promtool").arg("check").arg("rules").arg(&path).output().expect("promtool (Debian package prometheus)");
    assert!(
        out.status.success(),
        "promtool rejects a dashboard query:\n{}\n{}\n{yaml}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("{n} rules found")), "{}", String::from_utf8_lossy(&out.stdout));
}

/// The JSON is generated by scripts/gen-dashboards.py: edit the script, not the JSON.
#[test]
fn dashboards_are_in_sync_with_their_generator() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("python3").arg(repo("scripts/gen-dashboards.py")).arg("--out").arg(dir.path()).output().expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for (file, _) in dashboards() {
        let generated = std::fs::read_to_string(dir.path().join(&file)).unwrap_or_else(|_| panic!("generator does not write {file}"));
        let shipped = std::fs::read_to_string(repo("dashboards").join(&file)).unwrap();
        assert!(
            generated == shipped,
            "dashboards/{file} differs from scripts/gen-dashboards.py output: run `python3 scripts/gen-dashboards.py`"
        );
    }
}

#[test]
fn promql_scanner_finds_metrics_and_bare_counters() {
    let e =
        r#"sum by (instance, code) (rate(aws_imds_requests_total{job=~"$job"}[$__rate_interval])) / aws_imds_throttled_total > bool 1e9"#;
    let names: Vec<String> = metric_names(e).into_iter().map(|(_, n)| n).collect();
    assert_eq!(names, ["aws_imds_requests_total", "aws_imds_throttled_total"]);
    assert_eq!(counters_outside_rate(e), ["aws_imds_throttled_total"]);
    assert!(counters_outside_rate("histogram_quantile(0.9, sum by (le) (rate(x_bucket[5m])))").is_empty());
    assert_eq!(counters_outside_rate("sum(x_total)"), ["x_total"]);
    assert_eq!(counters_outside_rate("sum without (reason) (increase(x_total[5m]))"), Vec::<String>::new());
}
