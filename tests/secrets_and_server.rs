//! The real binary in `demo` mode: every page it serves and everything it
//! logs at trace level is free of the simulator's secrets; HTTP behaviour
//! (gzip, 404/405, health) and graceful shutdown on SIGTERM.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aws_credentials_exporter::sim::{IMDS_TOKEN_MARKER, SECRET_KEY_MARKER, SESSION_TOKEN_MARKER, scenario};
use common::{BIN, client};

/// A `demo` child process on a free loopback port.
struct Demo {
    child: Child,
    base: String,
}

impl Demo {
    fn start(scenario: &str, extra: &[&str]) -> Demo {
        let mut child = Command::new(BIN)
            .args(["demo", "--scenario", scenario, "--web.listen-address", "127.0.0.1:0", "--log.level", "trace"])
            .args(extra)
            .env_clear()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start demo");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let base = loop {
            let line = lines.next().expect("demo prints its URLs").unwrap();
            if let Some(url) = line.trim().strip_prefix("landing page:") {
                break url.trim().trim_end_matches('/').to_string();
            }
        };
        Demo { child, base }
    }

    /// SIGTERM, then the exit status and everything logged.
    fn stop(mut self) -> (std::process::ExitStatus, String) {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        let mut waited = 0;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            waited += 1;
            assert!(waited < 100, "demo did not stop within 10 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(100));
        };
        let mut log = String::new();
        self.child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
        (status, log)
    }
}

fn assert_no_secret(what: &str, text: &str) {
    for marker in [SECRET_KEY_MARKER, SESSION_TOKEN_MARKER, IMDS_TOKEN_MARKER, "wJalrXUtnFEMI", "IQoJb3JpZ2luX2Vj"] {
        assert!(!text.contains(marker), "{what} contains secret material {marker:?}:\n{text}");
    }
}

#[tokio::test]
async fn no_page_or_log_line_carries_a_secret_in_any_scenario() {
    for s in scenario::all() {
        let demo = Demo::start(s.name, &["--imds.timeout", "300ms"]);
        let mut pages = String::new();
        for path in ["/metrics", "/", "/check.json", "/-/healthy", "/metrics"] {
            let resp = client().get(format!("{}{path}", demo.base)).send().await.unwrap();
            assert!(resp.status().is_success(), "{} {path}", s.name);
            pages.push_str(&resp.text().await.unwrap());
        }
        let (status, log) = demo.stop();
        assert!(status.success(), "{}: graceful exit on SIGTERM, got {status}", s.name);
        assert!(log.contains("level=trace"), "{}: trace logging was on: {log}", s.name);
        assert_no_secret(&format!("{} pages", s.name), &pages);
        assert_no_secret(&format!("{} log", s.name), &log);
        // The same scenario through `check`, text and JSON, logging at trace level.
        for output in ["text", "json"] {
            let out = Command::new(BIN)
                .args(["demo", "--check", "--scenario", s.name, "--output", output, "--log.level", "trace", "--imds.timeout", "300ms"])
                .env_clear()
                .output()
                .unwrap();
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert!(text.contains("level=trace"), "{}: trace logging was on", s.name);
            assert_no_secret(&format!("{} check --output {output}", s.name), &text);
        }
    }
}

#[tokio::test]
async fn http_surface() {
    let demo = Demo::start("healthy", &["--web.telemetry-path", "/custom"]);
    let c = client();
    let gz = client();
    let resp = gz.get(format!("{}/custom", demo.base)).header("Accept-Encoding", "gzip").send().await.unwrap();
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    assert_eq!(resp.headers()["vary"], "accept-encoding");
    assert_eq!(resp.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&resp.bytes().await.unwrap()[..]).read_to_string(&mut text).unwrap();
    assert!(text.contains("aws_imds_up 1"));
    let resp = c.get(format!("{}/custom", demo.base)).send().await.unwrap();
    assert!(resp.headers().get("content-encoding").is_none(), "identity without Accept-Encoding");
    assert_eq!(resp.headers()["vary"], "accept-encoding", "the identity answer varies too");
    assert_eq!(c.get(format!("{}/metrics", demo.base)).send().await.unwrap().status(), 404, "telemetry path moved");
    assert_eq!(c.post(format!("{}/custom", demo.base)).send().await.unwrap().status(), 405);
    assert_eq!(c.get(format!("{}/-/healthy", demo.base)).send().await.unwrap().status(), 200);
    let landing = c.get(format!("{}/", demo.base)).send().await.unwrap().text().await.unwrap();
    assert!(landing.contains("href=\"/custom\""), "{landing}");
    let (status, _) = demo.stop();
    assert!(status.success());
}

#[test]
fn invalid_environment_is_a_clear_start_up_error() {
    for (var, value) in [
        ("AWS_METADATA_SERVICE_TIMEOUT", "soon"),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv5"),
        ("AWS_EC2_METADATA_DISABLED", "maybe"),
        ("AWS_METADATA_SERVICE_NUM_ATTEMPTS", "many"),
    ] {
        let out = Command::new(BIN).args(["--web.listen-address", "127.0.0.1:0"]).env_clear().env(var, value).output().unwrap();
        assert!(!out.status.success(), "{var}={value} must not start");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(var) && err.contains(value), "{var}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[tokio::test]
async fn demo_skewed_shows_the_skew_and_an_unsynchronised_kernel_clock() {
    let demo = Demo::start("skewed", &[]);
    let m = common::Metrics::parse(&common::get(&format!("{}/metrics", demo.base)).await);
    let (_, offset) = m.family("aws_clock_offset_seconds")[0];
    assert!((offset - 180.0).abs() < 0.05, "{offset}");
    assert_eq!(m.get("aws_clock_synchronized"), 0.0, "the simulated instance runs no time daemon");
    assert_eq!(m.get("aws_clock_max_error_seconds"), 16.0);
    demo.stop();
    let demo = Demo::start("healthy", &[]);
    let m = common::Metrics::parse(&common::get(&format!("{}/metrics", demo.base)).await);
    assert_eq!(m.get("aws_clock_synchronized"), 1.0, "independent of this machine's time daemon");
    demo.stop();
}

/// Every series is a cost on every instance of a fleet: this budget makes growth a decision.
#[tokio::test]
async fn the_series_budget_holds() {
    let demo = Demo::start("healthy", &[]);
    let m = common::Metrics::parse(&common::get(&format!("{}/metrics", demo.base)).await);
    demo.stop();
    let total = m.samples.len();
    let histogram = m.samples.keys().filter(|k| k.starts_with("aws_imds_request_duration_seconds")).count();
    let process = m.samples.keys().filter(|k| k.starts_with("process_")).count();
    eprintln!("series: {total} ({histogram} IMDS latency histogram, {process} process_*)");
    assert!(total <= 118, "{total} series per instance (README, Scaling, says 116 with one NTP server and no process target)");
}
