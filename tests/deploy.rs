//! Deployment files: the systemd unit passes `systemd-analyze verify` (with
//! ExecStart pointed at the binary under test, since the unit names the
//! installed path).

mod common;

use std::process::Command;

#[test]
fn systemd_unit_verifies() {
    let unit = std::fs::read_to_string(common::stack::repo("deploy/aws-credentials-exporter.service")).unwrap();
    assert!(unit.contains("DynamicUser=yes") && unit.contains("ProtectSystem=strict") && unit.contains("NoNewPrivileges=yes"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aws-credentials-exporter.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/aws-credentials-exporter", common::BIN)).unwrap();
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
