//! Signals a service manager or an operator sends: SIGHUP re-reads the web
//! configuration and never stops the exporter (it did, with status 129, which
//! systemd's `Restart=on-failure` does not restart); SIGUSR1 and SIGUSR2 are
//! ignored; SIGTERM stops it cleanly.

mod common;

use std::time::{Duration, Instant};

use common::BIN;
use common::stack::Proc;

fn kill(pid: u32, signal: &str) {
    assert!(std::process::Command::new("kill").args(["-s", signal, &pid.to_string()]).status().unwrap().success());
}

async fn wait_log(proc: &mut Proc, text: &str) {
    let until = Instant::now() + Duration::from_secs(10);
    while !proc.log().contains(text) {
        proc.assert_running();
        assert!(Instant::now() < until, "no {text:?} in the log:\n{}", proc.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn status(base: &str) -> u16 {
    aws_credentials_exporter::imds::install_tls_provider();
    let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().unwrap();
    client.get(format!("{base}/-/healthy")).send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn sighup_rereads_the_web_config_and_other_signals_do_not_stop_the_exporter() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("web.yml");
    std::fs::write(&config, "# nothing yet\n").unwrap();
    let args: Vec<String> = ["demo", "--web.listen-address", "127.0.0.1:0", "--web.config.file", config.to_str().unwrap()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut proc = Proc::spawn("exporter", dir.path(), BIN, &args);
    wait_log(&mut proc, "metrics:").await;
    let log = proc.log();
    let base = log.lines().find_map(|l| l.trim().strip_prefix("metrics:")).unwrap().trim().trim_end_matches("/metrics").to_string();
    assert_eq!(status(&base).await, 200);

    for signal in ["USR1", "USR2"] {
        kill(proc.pid(), signal);
        wait_log(&mut proc, &format!("SIG{signal} received and ignored")).await;
    }
    // Basic auth on, then SIGHUP: it is in force at once.
    std::fs::write(&config, format!("basic_auth_users:\n  prometheus: '{}'\n", bcrypt::hash("pw", 4).unwrap())).unwrap();
    kill(proc.pid(), "HUP");
    wait_log(&mut proc, "SIGHUP received; re-reading the web config").await;
    wait_log(&mut proc, "web config reloaded").await;
    assert_eq!(status(&base).await, 401, "the re-read file asks for a password");
    // An invalid file: logged, the last valid one stays, the exporter runs on.
    std::fs::write(&config, "bogus: 1\n").unwrap();
    kill(proc.pid(), "HUP");
    wait_log(&mut proc, "invalid web config; keeping the last valid one").await;
    assert_eq!(status(&base).await, 401);
    proc.assert_running();
    proc.stop();
}

/// Regression: the handlers were installed after the exporter announced its
/// address, so a SIGHUP sent on that announcement could still end it (exit 129).
#[tokio::test]
async fn a_sighup_sent_as_soon_as_the_address_is_announced_does_not_stop_the_exporter() {
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<String> = ["demo", "--web.listen-address", "127.0.0.1:0"].iter().map(|s| s.to_string()).collect();
    let mut proc = Proc::spawn("exporter", dir.path(), BIN, &args);
    wait_log(&mut proc, "metrics:").await;
    kill(proc.pid(), "HUP");
    wait_log(&mut proc, "SIGHUP received; no --web.config.file to re-read").await;
    proc.assert_running();
    proc.stop();
}
