//! `--version` prints the build identity in prometheus/common's layout
//! (`aws_credentials_exporter_build_info` carries the same values: the unit
//! test `metrics::tests::build_info_matches_version_info`).

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_aws-credentials-exporter");

fn run(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().expect("run the exporter");
    assert!(out.status.success(), "{args:?}: {out:?}");
    assert!(out.stderr.is_empty(), "{args:?} wrote to stderr: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[test]
fn version_has_the_prometheus_common_layout() {
    let text = run(&["--version"]);
    assert_eq!(run(&["-V"]), text, "-V is --version");
    let lines: Vec<&str> = text.lines().collect();
    // node_exporter --version, field for field, with Rust where Go prints `go version`.
    let shapes = [
        r"^aws-credentials-exporter, version (\d+\.\d+\.\d+\S*) \(branch: (\S+), revision: ([0-9a-f]{12}|unknown)\)$",
        r"^  build user:       \S+@\S+$",
        r"^  build date:       (\d{8}-\d{2}:\d{2}:\d{2})$",
        r"^  rust version:     rustc (\d+\.\d+\.\d+\S*)$",
        r"^  platform:         (linux|macos|freebsd)/(amd64|arm64|386|arm|riscv64|ppc64le|s390x)$",
    ];
    assert_eq!(lines.len(), shapes.len(), "{text}");
    let caps: Vec<regex::Captures> = lines
        .iter()
        .zip(shapes)
        .map(|(line, shape)| regex::Regex::new(shape).unwrap().captures(line).unwrap_or_else(|| panic!("{line:?} does not match {shape}")))
        .collect();
    assert_eq!(&caps[0][1], env!("CARGO_PKG_VERSION"));

    // The date is UTC in Go's `20060102-15:04:05` layout; a reproducible build
    // (SOURCE_DATE_EPOCH, reproducible-builds.org) gets exactly that time.
    let date = chrono::NaiveDateTime::parse_from_str(&caps[2][1], "%Y%m%d-%H:%M:%S").expect("a real date").and_utc();
    match option_env!("SOURCE_DATE_EPOCH") {
        Some(epoch) => assert_eq!(date.timestamp(), epoch.parse::<i64>().unwrap(), "SOURCE_DATE_EPOCH={epoch}"),
        None => assert!(date <= chrono::Utc::now(), "build date {date} is in the future"),
    }
}
