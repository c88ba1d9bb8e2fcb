//! Embeds the build identity that `--version` prints and
//! `aws_credentials_exporter_build_info` exports, in the fields of
//! prometheus/common's version package: version, revision, branch, build user
//! and date, toolchain, platform.
//!
//! Reproducible builds: `SOURCE_DATE_EPOCH` (reproducible-builds.org) replaces
//! the build date and `ACE_BUILD_USER` the `user@host`, as packagers pass
//! promu's `-X ...version.BuildUser=` for Go exporters.
use std::process::Command;

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string()).filter(|s| !s.is_empty())
}

fn env(name: &str) -> Option<String> {
    println!("cargo:rerun-if-env-changed={name}");
    std::env::var(name).ok().filter(|s| !s.is_empty())
}

/// prometheus/common's date layout, `20060102-15:04:05`, in UTC.
fn build_date() -> String {
    let epoch = match env("SOURCE_DATE_EPOCH") {
        Some(s) => s.parse::<i64>().unwrap_or_else(|_| panic!("SOURCE_DATE_EPOCH={s:?} is not a Unix time in seconds")),
        None => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64),
    };
    let date = chrono::DateTime::from_timestamp(epoch, 0).unwrap_or_else(|| panic!("SOURCE_DATE_EPOCH={epoch} is out of range"));
    date.format("%Y%m%d-%H:%M:%S").to_string()
}

fn build_user() -> String {
    env("ACE_BUILD_USER").unwrap_or_else(|| {
        let user = env("USER").or_else(|| env("LOGNAME")).or_else(|| output("id", &["-un"])).unwrap_or_else(|| "unknown".into());
        let host = output("uname", &["-n"]).unwrap_or_else(|| "unknown".into());
        format!("{user}@{host}")
    })
}

/// `GOOS/GOARCH` names, as Go exporters and OCI image platforms spell them.
fn platform() -> String {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_else(|_| "unknown".into());
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "unknown".into());
    let arch = match arch.as_str() {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64",
        "loongarch64" => "loong64",
        other => other,
    };
    format!("{os}/{arch}")
}

fn main() {
    let revision = output("git", &["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    // promu: `git rev-parse --abbrev-ref HEAD` ("HEAD" on a detached checkout).
    let branch = output("git", &["rev-parse", "--abbrev-ref", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rust_version =
        output(&rustc, &["--version"]).and_then(|v| v.split_whitespace().nth(1).map(str::to_string)).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=ACE_GIT_REVISION={revision}");
    println!("cargo:rustc-env=ACE_GIT_BRANCH={branch}");
    println!("cargo:rustc-env=ACE_RUSTC_VERSION={rust_version}");
    println!("cargo:rustc-env=ACE_BUILD_USER={}", build_user());
    println!("cargo:rustc-env=ACE_BUILD_DATE={}", build_date());
    println!("cargo:rustc-env=ACE_PLATFORM={}", platform());
    // Rerun when a commit or checkout moves HEAD, wherever git keeps it (in a
    // worktree `.git` is a file); otherwise only when this script changes, so
    // the build date does not rebuild the crate on every edit.
    println!("cargo:rerun-if-changed=build.rs");
    let checked_out = output("git", &["symbolic-ref", "-q", "HEAD"]);
    for path in ["HEAD"].into_iter().chain(checked_out.as_deref()).chain(["packed-refs"]) {
        if let Some(p) = output("git", &["rev-parse", "--git-path", path]).filter(|p| std::path::Path::new(p).exists()) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
}
