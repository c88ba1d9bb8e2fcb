//! The credential chain through the exporter: a real child process as a
//! `--chain.process` target, the container credentials endpoint, and the
//! `shadowed` scenario; secrets of targets never reach a page.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use aws_credentials_exporter::chain::{ChainError, ProcessEnv};
use aws_credentials_exporter::clock::KernelClock;
use aws_credentials_exporter::host::{Host, RealHost, SimulatedHost};
use aws_credentials_exporter::sim::{self, scenario};
use aws_credentials_exporter::timesync::TimeSyncConfig;
use common::{exporter_with_host, scrape, sim};
use regex::Regex;

/// The simulated instance for everything but processes, which are this machine's.
struct RealProcesses(SimulatedHost);

impl Host for RealProcesses {
    fn kernel_clock(&self) -> Result<KernelClock, String> {
        self.0.kernel_clock()
    }
    fn time_sync_config(&self) -> TimeSyncConfig {
        self.0.time_sync_config()
    }
    fn own_process_env(&self) -> ProcessEnv {
        self.0.own_process_env()
    }
    fn find_processes(&self, pattern: &Regex) -> Result<Vec<(u32, String)>, ChainError> {
        RealHost::default().find_processes(pattern)
    }
    fn process_env(&self, pid: u32) -> Result<ProcessEnv, ChainError> {
        RealHost::default().process_env(pid)
    }
}

/// A process whose command line looks like a JVM's (`java -D... -jar app.jar`):
/// `/bin/sh -s` with argv[0] `java` waits on stdin and ignores its arguments.
struct FakeJava {
    child: Child,
    stdin: std::process::ChildStdin,
}

impl FakeJava {
    fn start(props: &[&str], env: &[(&str, &str)], marker: &str) -> FakeJava {
        let mut args = vec!["-s", "--"];
        args.extend_from_slice(props);
        args.extend_from_slice(&["-jar", marker]);
        let mut child = Command::new("/bin/sh")
            .arg0("java")
            .args(&args)
            .env_clear()
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn /bin/sh");
        let mut stdin = child.stdin.take().unwrap();
        // Once the shell answers it has exec'd: its /proc entries are the ones under test.
        stdin.write_all(b"echo ready\n").unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line, "ready\n");
        FakeJava { child, stdin }
    }
}

impl Drop for FakeJava {
    fn drop(&mut self) {
        let _ = self.stdin.write_all(b"exit 0\n");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_java_process_with_system_property_credentials_is_reported() {
    let sim = sim(sim::ImdsSpec::default()).await;
    let home = tempfile::tempdir().unwrap();
    let marker = format!("orders-{}.jar", std::process::id());
    let java = FakeJava::start(
        &["-Daws.accessKeyId=ASIAPROCESSTARGET9", "-Daws.secretAccessKey=SimSecretAccessKeyProc", "-Daws.sessionToken=SimSessionTokenProc"],
        &[("HOME", home.path().to_str().unwrap()), ("PATH", "/usr/bin:/bin")],
        &marker,
    );
    let host = RealProcesses(scenario::by_name("healthy").unwrap().host());
    let target = format!("orders={}", regex::escape(&marker));
    let ex = common::exporter_with_any_host(
        &sim.imds_url(),
        &["--ntp.server", &sim.ntp_addr().to_string(), "--chain.process", &target],
        Arc::new(host),
    )
    .await;
    let m = scrape(&ex).await;
    assert_eq!(m.get(r#"aws_credentials_active_provider{target="orders",provider="system_properties"}"#), 1.0, "{}", m.text);
    assert_eq!(m.get(r#"aws_credentials_active_provider{target="orders",provider="instance_profile"}"#), 0.0);
    assert_eq!(m.get(r#"aws_credentials_instance_profile_shadowed{target="orders"}"#), 1.0);
    assert_eq!(m.get(r#"aws_credentials_static_session_token{target="orders",provider="system_properties"}"#), 1.0);
    assert_eq!(m.get(r#"aws_credentials_chain_processes{target="orders"}"#), 1.0);
    assert_eq!(m.get(r#"aws_credentials_active_provider{target="self",provider="instance_profile"}"#), 1.0, "the sidecar's own chain");
    assert_eq!(m.get(r#"aws_credentials_instance_profile_shadowed{target="self"}"#), 0.0);
    assert!(!m.text.contains(&format!("pid=\"{}\"", java.child.id())), "targets are labelled by name, not PID");
    for secret in ["SimSecretAccessKeyProc", "SimSessionTokenProc", "ASIAPROCESSTARGET9"] {
        assert!(!m.text.contains(secret), "{secret} leaked into /metrics");
    }
    let report = common::get(&ex.url("/check.json")).await;
    assert!(report.contains(r#""target": "orders""#) && report.contains(r#""provider": "system_properties""#), "{report}");
    assert!(!report.contains("SimSecretAccessKeyProc") && !report.contains("SimSessionTokenProc"));
    drop(java);
    ex.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn a_missing_process_is_an_error_metric_not_a_crash() {
    let sim = sim(sim::ImdsSpec::default()).await;
    let host = RealProcesses(scenario::by_name("healthy").unwrap().host());
    let flags =
        ["--ntp.server", &sim.ntp_addr().to_string(), "--chain.process", "ghost=no-such-process-[0-9]{40}", "--probe.min-interval", "0s"];
    let ex = common::exporter_with_any_host(&sim.imds_url(), &flags, Arc::new(host)).await;
    scrape(&ex).await;
    let m = scrape(&ex).await;
    assert_eq!(m.get(r#"aws_credentials_chain_processes{target="ghost"}"#), 0.0);
    assert_eq!(m.get(r#"aws_credentials_chain_errors_total{target="ghost",reason="not_found"}"#), 2.0);
    assert!(m.family("aws_credentials_active_provider").iter().all(|(k, _)| !k.contains("ghost")));
    ex.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn container_credentials_expiry_is_fetched_with_the_authorization_token() {
    let sim = sim(sim::ImdsSpec::default()).await;
    let mut host = scenario::by_name("healthy").unwrap().host();
    let uri = format!("{}{}task-1", sim.imds_url(), sim::CONTAINER_PATH);
    host.env.set_var("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri);
    host.env.set_var("AWS_CONTAINER_AUTHORIZATION_TOKEN", sim::CONTAINER_AUTHORIZATION);
    let ex = exporter_with_host(&sim.imds_url(), &["--ntp.server", &sim.ntp_addr().to_string()], host).await;
    let m = scrape(&ex).await;
    assert_eq!(m.get(r#"aws_credentials_active_provider{target="self",provider="container"}"#), 1.0, "{}", m.text);
    let left = m.get(r#"aws_credentials_seconds_until_expiry{provider="container",target="self"}"#);
    assert!((5.0 * 3600.0..6.0 * 3600.0).contains(&left), "{left}");
    assert_eq!(m.get(r#"aws_credentials_instance_profile_shadowed{target="self"}"#), 1.0, "the task role wins over the instance profile");
    assert_eq!(m.get(r#"aws_credentials_static_session_token{target="self",provider="container"}"#), 0.0, "container credentials refresh");
    assert!(!m.text.contains(sim::CONTAINER_AUTHORIZATION));
    let report = common::get(&ex.url("/check.json")).await;
    assert!(!report.contains("task-1") && !report.contains(sim::CONTAINER_AUTHORIZATION), "the container URI path is like a key: {report}");
    ex.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn shadowed_scenario_flags_static_environment_keys() {
    let s = scenario::by_name("shadowed").unwrap();
    let sim = common::sim_with_ntp(s.imds.clone(), s.ntp.clone()).await;
    let ex = exporter_with_host(&sim.imds_url(), &["--ntp.server", &sim.ntp_addr().to_string()], s.host()).await;
    let m = scrape(&ex).await;
    assert_eq!(m.get(r#"aws_credentials_active_provider{target="self",provider="environment"}"#), 1.0);
    assert_eq!(m.get(r#"aws_credentials_instance_profile_shadowed{target="self"}"#), 1.0);
    assert_eq!(m.get(r#"aws_credentials_static_session_token{target="self",provider="environment"}"#), 1.0);
    let left = m.get(r#"aws_credentials_seconds_until_expiry{provider="environment",target="self"}"#);
    assert!((39.0 * 60.0..=40.0 * 60.0).contains(&left), "AWS_CREDENTIAL_EXPIRATION in 40 min: {left}");
    assert!(!m.text.contains(sim::SECRET_KEY_MARKER) && !m.text.contains(sim::SESSION_TOKEN_MARKER));
    ex.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn an_unreadable_process_is_reported_with_the_capability_needed() {
    // The exporter runs as `nobody`; the target runs as this (root) user.
    let sim = sim(sim::ImdsSpec::default()).await;
    let marker = format!("payments-{}.jar", std::process::id());
    let _java = FakeJava::start(&["-Daws.accessKeyId=ASIAUNREADABLE0001"], &[("PATH", "/usr/bin:/bin")], &marker);
    let out = Command::new("/usr/bin/setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            common::BIN,
            "check",
            "--output",
            "json",
            "--imds.endpoint",
            &sim.imds_url(),
        ])
        .args(["--ntp.server", &sim.ntp_addr().to_string(), "--chain.process", &format!("payments={}", regex::escape(&marker))])
        .env_clear()
        .env("HOME", "/nonexistent")
        .output()
        .expect("setpriv (util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(matches!(out.status.code(), Some(1 | 2)), "check ran to the end: {:?}\n{stderr}", out.status);
    assert!(stdout.contains("permission denied") || stdout.contains("Permission denied"), "{stdout}");
    assert!(stdout.contains("CAP_SYS_PTRACE"), "the report names the capability: {stdout}");
    assert!(stderr.contains("CAP_SYS_PTRACE"), "a log line names the capability: {stderr}");
    assert!(!stdout.contains("panicked") && !stderr.contains("panicked"));
    sim.stop().await;
}

#[tokio::test]
async fn web_identity_expiry_comes_from_the_token_which_never_leaks() {
    use base64::Engine;
    let sim = sim(sim::ImdsSpec::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let exp = chrono::Utc::now().timestamp() + 3000;
    let jwt = format!(
        "{}.{}.{}",
        b64(r#"{"alg":"RS256","kid":"sim"}"#),
        b64(&format!(
            r#"{{"sub":"system:serviceaccount:default:app","aud":"sts.amazonaws.com","exp":{exp},"note":"SimWebIdentityToken"}}"#
        )),
        b64("SimWebIdentitySignature")
    );
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, &jwt).unwrap();
    let mut host = scenario::by_name("healthy").unwrap().host();
    host.env.set_var("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.to_str().unwrap());
    host.env.set_var("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/irsa");
    let ex = exporter_with_host(&sim.imds_url(), &["--ntp.server", &sim.ntp_addr().to_string()], host).await;
    let m = scrape(&ex).await;
    assert_eq!(m.get(r#"aws_credentials_active_provider{target="self",provider="web_identity"}"#), 1.0, "{}", m.text);
    let left = m.get(r#"aws_credentials_seconds_until_expiry{provider="web_identity",target="self"}"#);
    assert!((2990.0..=3000.0).contains(&left), "JWT exp: {left}");
    let pages = format!("{}{}{}", m.text, common::get(&ex.url("/")).await, common::get(&ex.url("/check.json")).await);
    for secret in [jwt.as_str(), &jwt[..20], "SimWebIdentityToken", "SimWebIdentitySignature"] {
        assert!(!pages.contains(secret), "web identity token material leaked: {secret}");
    }
    ex.stop().await;
    sim.stop().await;
}
