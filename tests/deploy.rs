//! Deployment files: the systemd unit passes `systemd-analyze verify` and
//! keeps its `systemd-analyze security` score (with ExecStart pointed at the
//! binary under test, since the unit names the installed binary). Neither sees
//! a seccomp kill at run time: tests/systemd_unit.rs runs the unit for real.

mod common;

use std::process::Command;

#[test]
fn systemd_unit_verifies() {
    let unit = std::fs::read_to_string(common::stack::repo("deploy/aws-credentials-exporter.service")).unwrap();
    assert!(unit.contains("DynamicUser=yes") && unit.contains("ProtectSystem=strict") && unit.contains("NoNewPrivileges=yes"));
    let (_dir, path) = unit_with_test_binary(&unit);
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .env("SYSTEMD_LOG_LEVEL", "warning")
        .output()
        .expect("systemd-analyze (Debian systemd) is installed by scripts/test.sh");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let relevant: Vec<&str> = text.lines().filter(|l| l.contains("aws-credentials-exporter.service")).collect();
    assert!(out.status.success() && relevant.is_empty(), "systemd-analyze verify: {text}");
}

/// The shipped unit in a temp dir, ExecStart naming the binary under test.
fn unit_with_test_binary(unit: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    const EXEC: &str = "ExecStart=aws-credentials-exporter ";
    assert!(unit.contains(EXEC), "ExecStart names the binary without a directory: {unit}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aws-credentials-exporter.service");
    std::fs::write(&path, unit.replace(EXEC, &format!("ExecStart={} ", common::BIN))).unwrap();
    (dir, path)
}

/// The exposure score before the adjtimex allowance was 1.7; allowing the two
/// clock-reading calls must not make the unit worse (ProtectProc, PrivateMounts
/// and UMask make up for them).
#[test]
fn systemd_analyze_security_is_not_worse_than_1_7() {
    let unit = std::fs::read_to_string(common::stack::repo("deploy/aws-credentials-exporter.service")).unwrap();
    let (_dir, path) = unit_with_test_binary(&unit);
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&path)
        .env("SYSTEMD_LOG_LEVEL", "warning")
        .output()
        .expect("systemd-analyze (Debian systemd) is installed by scripts/test.sh");
    let text = String::from_utf8_lossy(&out.stdout);
    // "→ Overall exposure level for aws-credentials-exporter.service: 1.7 OK 🙂"
    let score: f64 = text
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for aws-credentials-exporter.service: "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no score in: {text}{}", String::from_utf8_lossy(&out.stderr)));
    assert!(score <= 1.7, "exposure {score} > 1.7:\n{text}");
    // The allowance is exactly the two clock-reading calls, and the denials stay.
    assert!(unit.contains("\nSystemCallFilter=adjtimex clock_adjtime\n"), "{unit}");
    assert!(unit.contains("\nSystemCallFilter=~@privileged @resources\n"), "{unit}");
    assert!(unit.contains("\nCapabilityBoundingSet=\n"), "no capabilities, so no CAP_SYS_TIME: {unit}");
    assert!(!unit.contains("\nProtectClock=yes"), "ProtectClock fails the adjtimex reads with EPERM: {unit}");
    assert!(unit.contains("\nLimitNOFILE="), "{unit}");
}
