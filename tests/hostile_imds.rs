//! A hostile or broken IMDS (`sim::HostileImds`), one misbehaviour per test,
//! scraped through the real HTTP server several times. For each: `/metrics`
//! answers 200 within the scrape deadline every time, the right failure metric
//! moves, no expiry is exported from a rejected document, a log line explains,
//! nothing panics and no secret shows. Subprocess tests at the end measure the
//! exporter's memory under oversized and endless bodies.
//!
//! What the exporter makes of each misbehaviour, in short:
//! - rejected (`aws_imds_up` 0, no `aws_credentials_seconds_until_expiry`):
//!   oversized bodies, slowloris, HTML pages, non-UTF-8 listings and documents,
//!   missing, duplicate or unparseable fields, redirects (never followed),
//!   connection resets, 401 loops;
//! - accepted as the SDKs accept them: a wrong `Content-Type`, extra fields,
//!   an absent or zero token TTL (the token is then used for one probe only);
//! - accepted and flagged: an `Expiration` in the past is exported as a negative
//!   `aws_credentials_seconds_until_expiry` (the credentials have expired: that is
//!   what the `AwsCredentialsExpired` alert is for) and one in year 9999 as is;
//!   both are logged as a warning.

mod common;

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use aws_credentials_exporter::sim::hostile::{EXPIRED_AGO, FAR_FUTURE};
use aws_credentials_exporter::sim::{HostileImds, IMDS_TOKEN_MARKER, ImdsSpec, SECRET_KEY_MARKER, SESSION_TOKEN_MARKER, Simulator};
use common::{Metrics, Running, exporter_on, sim};
use tracing_subscriber::fmt::MakeWriter;

const UNTIL: &str = r#"aws_credentials_seconds_until_expiry{provider="instance_profile",role="app-role"}"#;
const EXPIRES: &str = r#"aws_credentials_expiration_timestamp_seconds{provider="instance_profile",role="app-role"}"#;
/// Scrapes per test.
const SCRAPES: usize = 5;
/// Prometheus' scrape timeout sent with every scrape; the exporter answers by 1.5 s.
const SCRAPE_TIMEOUT_SECONDS: f64 = 2.0;

// ---- log and panic capture ----

/// Log lines written by the exporter and the simulator on this test's thread.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Captures this thread's logs at debug level. `#[tokio::test]` runs every task
/// (exporter, simulator, HTTP client) on the test's thread, so this sees them all.
fn capture_logs() -> (Logs, tracing::subscriber::DefaultGuard) {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn,aws_credentials_exporter=debug"))
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}

/// Panics anywhere in this process, by thread name: tokio catches a panicking
/// task's panic, so without this a panic in a connection task could go unseen.
static PANICS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

fn record_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current().name().unwrap_or("").to_string();
            PANICS.lock().unwrap_or_else(|e| e.into_inner()).push((thread, info.to_string()));
            previous(info);
        }));
    });
}

fn assert_no_panic() {
    let me = std::thread::current().name().unwrap_or("").to_string();
    let panics = PANICS.lock().unwrap_or_else(|e| e.into_inner());
    let mine: Vec<&String> = panics.iter().filter(|(t, _)| *t == me).map(|(_, m)| m).collect();
    assert!(mine.is_empty(), "panicked: {mine:?}");
}

// ---- one hostile IMDS, scraped ----

/// A hostile simulator, an exporter on it, and what the scrapes saw.
struct Run {
    sim: Simulator,
    exporter: Running,
    scrapes: Vec<Metrics>,
    logs: Logs,
    _guard: tracing::subscriber::DefaultGuard,
}

impl Run {
    /// Starts both, scrapes [`SCRAPES`] times (a probe each) and checks what
    /// must hold for every misbehaviour.
    async fn start(hostile: HostileImds, flags: &[&str]) -> Run {
        record_panics();
        let (logs, guard) = capture_logs();
        let sim = sim(ImdsSpec { hostile: Some(hostile), ..ImdsSpec::default() }).await;
        let mut all = vec!["--probe.min-interval", "0s"];
        all.extend_from_slice(flags);
        let exporter = exporter_on(&sim, &all).await;
        let mut scrapes = vec![];
        for _ in 0..SCRAPES {
            scrapes.push(scrape_within_deadline(&exporter).await);
        }
        Run { sim, exporter, scrapes, logs, _guard: guard }
    }

    fn last(&self) -> &Metrics {
        self.scrapes.last().unwrap()
    }

    /// The document was rejected on every scrape: IMDS down, no expiry exported.
    fn assert_rejected(&self) {
        for (i, m) in self.scrapes.iter().enumerate() {
            assert_eq!(m.get("aws_imds_up"), 0.0, "scrape {i}");
            assert!(m.family("aws_credentials_seconds_until_expiry").is_empty(), "scrape {i}: expiry from a rejected document\n{}", m.text);
            assert!(m.family("aws_credentials_expiration_timestamp_seconds").is_empty(), "scrape {i}");
            assert_eq!(m.get("aws_imds_last_success_timestamp_seconds"), 0.0, "scrape {i}");
        }
    }

    /// The document was accepted on every scrape.
    fn assert_accepted(&self) {
        for (i, m) in self.scrapes.iter().enumerate() {
            assert_eq!(m.get("aws_imds_up"), 1.0, "scrape {i}\n{}\nlogs:\n{}", m.text, self.logs.text());
            assert!(m.has(UNTIL), "scrape {i}");
        }
    }

    /// A log line says `what` (case-insensitive).
    fn assert_logged(&self, what: &str) {
        let logs = self.logs.text();
        assert!(logs.to_lowercase().contains(&what.to_lowercase()), "no log line says {what:?}:\n{logs}");
    }

    fn requests(&self, endpoint: &str, code: &str) -> f64 {
        let series = format!(r#"aws_imds_requests_total{{endpoint="{endpoint}",code="{code}"}}"#);
        self.last().samples.get(&series).copied().unwrap_or(0.0)
    }

    /// Checks what holds for every misbehaviour, then stops everything.
    async fn finish(self) {
        let logs = self.logs.text();
        for marker in [SECRET_KEY_MARKER, SESSION_TOKEN_MARKER, IMDS_TOKEN_MARKER] {
            assert!(!logs.contains(marker), "{marker} in the logs:\n{logs}");
            assert!(self.scrapes.iter().all(|m| !m.text.contains(marker)), "{marker} in /metrics");
        }
        assert!(!logs.contains("panicked"), "{logs}");
        self.exporter.stop().await;
        self.sim.stop().await;
        assert_no_panic();
    }
}

/// One scrape as Prometheus sends it; it must answer 200 before Prometheus gives up.
async fn scrape_within_deadline(ex: &Running) -> Metrics {
    let started = Instant::now();
    let resp = common::client()
        .get(ex.url("/metrics"))
        .header("X-Prometheus-Scrape-Timeout-Seconds", SCRAPE_TIMEOUT_SECONDS.to_string())
        .send()
        .await
        .expect("the exporter answers");
    assert_eq!(resp.status(), 200);
    let m = Metrics::parse(&resp.text().await.unwrap());
    let took = started.elapsed();
    assert!(took < Duration::from_secs_f64(SCRAPE_TIMEOUT_SECONDS), "scrape took {took:?}");
    m
}

fn now() -> f64 {
    chrono::Utc::now().timestamp() as f64
}

// ---- bodies ----

#[tokio::test]
async fn an_oversized_document_with_content_length_is_refused_unread() {
    let run = Run::start(HostileImds::OversizedBody { content_length: true }, &[]).await;
    run.assert_rejected();
    assert_eq!(run.requests("credentials", "body_error"), SCRAPES as f64, "one refused request per probe, not retried");
    run.assert_logged("larger than 65536 bytes");
    run.finish().await;
}

#[tokio::test]
async fn an_oversized_chunked_document_is_cut_at_the_cap() {
    let run = Run::start(HostileImds::OversizedBody { content_length: false }, &[]).await;
    run.assert_rejected();
    assert_eq!(run.requests("credentials", "body_error"), SCRAPES as f64);
    run.assert_logged("larger than 65536 bytes");
    run.finish().await;
}

#[tokio::test]
async fn a_slowloris_document_times_out_and_scrapes_still_answer_in_time() {
    let run = Run::start(HostileImds::Slowloris, &["--imds.timeout", "500ms"]).await;
    run.assert_rejected();
    // Each probe: three 500 ms attempts under the probe's own budget; the
    // scrapes answer by their 1.5 s deadline with the last complete probe.
    let timeouts = run.requests("credentials", "timeout");
    assert!(timeouts >= SCRAPES as f64, "{timeouts}");
    // Probes run on their own clock, so how many finished by the last scrape
    // depends on the machine's load; what does not is that every one retried:
    // of each probe's three timed-out attempts, two are retries.
    let retries = run.last().get("aws_imds_retries_total");
    assert!(retries >= 2.0 && retries * 3.0 >= timeouts, "{retries} retries for {timeouts} timed-out attempts");
    run.assert_logged("IMDS probe failed");
    run.assert_logged("IMDS credentials request timed out after 500ms");
    run.finish().await;
}

#[tokio::test]
async fn a_wrong_content_type_is_ignored_as_the_sdks_ignore_it() {
    let run = Run::start(HostileImds::WrongContentType, &[]).await;
    run.assert_accepted();
    run.assert_logged("IMDS credentials readable");
    run.finish().await;
}

#[tokio::test]
async fn an_html_page_instead_of_imds_is_no_role() {
    let run = Run::start(HostileImds::HtmlPage, &[]).await;
    run.assert_rejected();
    assert_eq!(run.sim.counters().credentials.load(Ordering::SeqCst), 0, "no document requested for a role named '<!DOCTYPE html>'");
    run.assert_logged("not an IAM role name");
    run.finish().await;
}

#[tokio::test]
async fn a_role_listing_that_is_not_utf8_is_an_error_not_a_garbled_role() {
    let run = Run::start(HostileImds::InvalidUtf8Listing, &[]).await;
    run.assert_rejected();
    assert_eq!(run.sim.counters().credentials.load(Ordering::SeqCst), 0, "no document requested for a garbled role name");
    let attached = run.last().samples.get("aws_imds_instance_profile_attached").copied();
    assert_ne!(attached, Some(0.0), "IMDS lists something: not 'no profile attached'");
    run.assert_logged("role listing is not UTF-8");
    run.finish().await;
}

// ---- documents ----

#[tokio::test]
async fn a_document_that_is_not_utf8_is_rejected() {
    let run = Run::start(HostileImds::InvalidUtf8Document, &[]).await;
    run.assert_rejected();
    run.assert_logged("credential document is not valid JSON");
    run.finish().await;
}

#[tokio::test]
async fn a_success_document_without_token_and_expiration_is_rejected() {
    let run = Run::start(HostileImds::MissingFields, &[]).await;
    run.assert_rejected();
    run.assert_logged("Code=Success but no Token");
    run.finish().await;
}

#[tokio::test]
async fn extra_fields_are_ignored_as_the_sdks_ignore_them() {
    let run = Run::start(HostileImds::ExtraFields, &[]).await;
    run.assert_accepted();
    run.finish().await;
}

#[tokio::test]
async fn a_field_named_twice_is_rejected_not_guessed() {
    let run = Run::start(HostileImds::DuplicateFields, &[]).await;
    run.assert_rejected();
    run.assert_logged("duplicate field");
    run.finish().await;
}

#[tokio::test]
async fn an_expiration_in_the_past_is_exported_negative_and_logged() {
    let run = Run::start(HostileImds::ExpirationPast, &[]).await;
    run.assert_accepted();
    for m in &run.scrapes {
        let until = m.get(UNTIL);
        let want = -(EXPIRED_AGO.as_secs_f64());
        assert!((want - 5.0..=want + 1.0).contains(&until), "expired an hour ago: {until}");
        assert!(m.get(EXPIRES) < now());
    }
    run.assert_logged("already expired");
    run.finish().await;
}

#[tokio::test]
async fn an_expiration_in_year_9999_is_exported_as_is_and_logged() {
    let run = Run::start(HostileImds::ExpirationFarFuture, &[]).await;
    run.assert_accepted();
    let far = chrono::DateTime::parse_from_rfc3339(FAR_FUTURE).unwrap().timestamp() as f64;
    for m in &run.scrapes {
        assert_eq!(m.get(EXPIRES), far);
        let until = m.get(UNTIL);
        assert!((until - (far - now())).abs() < 5.0, "{until}");
    }
    run.assert_logged("later than any IAM session lasts");
    run.finish().await;
}

#[tokio::test]
async fn an_unparseable_expiration_is_rejected() {
    let run = Run::start(HostileImds::ExpirationUnparseable, &[]).await;
    run.assert_rejected();
    run.assert_logged("field Expiration is not an RFC 3339 timestamp");
    run.finish().await;
}

// ---- transport ----

#[tokio::test]
async fn redirects_are_never_followed() {
    // A healthy IMDS the redirects point at: the exporter must not go there.
    let elsewhere = sim(ImdsSpec::default()).await;
    let run = Run::start(HostileImds::Redirect { location: elsewhere.imds_url() }, &[]).await;
    run.assert_rejected();
    assert_eq!(elsewhere.counters().total(), 0, "a redirect was followed");
    assert_eq!(
        run.last().get(r#"aws_imds_v1_fallbacks_total{reason="302"}"#),
        SCRAPES as f64,
        "a 302 token answer falls back like Java v2"
    );
    assert_eq!(run.requests("role", "302"), SCRAPES as f64, "302 is not retried");
    run.assert_logged("IMDS role request answered HTTP 302: IMDS does not redirect");
    run.finish().await;
    elsewhere.stop().await;
}

#[tokio::test]
async fn a_connection_closed_without_an_answer_is_retried_then_reported() {
    let run = Run::start(HostileImds::ConnectionReset, &[]).await;
    run.assert_rejected();
    assert_eq!(run.requests("credentials", "connect_error"), 3.0 * SCRAPES as f64, "three attempts per probe");
    assert!(run.last().get("aws_imds_retries_total") >= 2.0 * SCRAPES as f64);
    run.assert_logged("closed or reset without an answer");
    run.finish().await;
}

#[tokio::test]
async fn a_401_loop_costs_at_most_two_tokens_per_probe() {
    let run = Run::start(HostileImds::Unauthorized401Loop, &[]).await;
    run.assert_rejected();
    let tokens = run.sim.counters().token.load(Ordering::SeqCst);
    assert!(tokens <= 2 * SCRAPES as u64, "{tokens} token requests in {SCRAPES} probes");
    assert_eq!(run.requests("role", "401"), 2.0 * SCRAPES as f64, "one retry with a fresh token, then give up");
    assert!(run.last().get("aws_imds_retries_total") >= SCRAPES as f64);
    run.assert_logged("IMDS role request answered HTTP 401: token rejected");
    run.finish().await;
}

#[tokio::test]
async fn a_token_without_ttl_header_is_used_for_one_probe() {
    let run = Run::start(HostileImds::TokenTtlAbsent, &[]).await;
    run.assert_accepted();
    assert_eq!(run.sim.counters().token.load(Ordering::SeqCst), SCRAPES as u64, "one token per probe, none cached");
    run.assert_logged("no usable TTL");
    run.finish().await;
}

#[tokio::test]
async fn a_token_with_ttl_zero_is_used_for_one_probe() {
    let run = Run::start(HostileImds::TokenTtlZero, &[]).await;
    run.assert_accepted();
    assert_eq!(run.sim.counters().token.load(Ordering::SeqCst), SCRAPES as u64, "one token per probe, none cached");
    run.assert_logged("no usable TTL");
    run.finish().await;
}

// ---- memory, in a subprocess ----

mod memory {
    use std::time::{Duration, Instant};

    use super::common::stack::{Proc, free_port, wait_ready};
    use super::common::{BIN, Metrics, client};

    /// Upper bound on the exporter's resident memory, at peak (VmHWM) and at the end.
    const MAX_RSS_KIB: u64 = 64 * 1024;
    const SCRAPES: usize = 50;

    fn status_kib(pid: u32, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field}"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    fn open_fds(pid: u32) -> usize {
        std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
    }

    /// `simulate --hostile NAME` and `serve` against it, as separate processes;
    /// [`SCRAPES`] scrapes; RSS, peak RSS and open descriptors stay bounded.
    async fn bounded(hostile: &str, scrape_timeout: &str, explains: &str) {
        let dir = tempfile::tempdir().unwrap();
        let mut sim = Proc::spawn("sim", dir.path(), BIN, &["simulate".into(), "--hostile".into(), hostile.into()]);
        let until = Instant::now() + Duration::from_secs(10);
        let (imds, ntp) = loop {
            sim.assert_running();
            let log = sim.log();
            let addr = |name: &str| log.lines().find_map(|l| l.strip_prefix(name).map(str::to_string));
            if let (Some(i), Some(n)) = (addr("imds "), addr("ntp ")) {
                break (i, n);
            }
            assert!(Instant::now() < until, "simulator did not start:\n{log}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let port = free_port();
        let args: Vec<String> = [
            "serve",
            "--web.listen-address",
            &format!("127.0.0.1:{port}"),
            "--imds.endpoint",
            &imds,
            "--ntp.server",
            &ntp,
            "--probe.min-interval",
            "0s",
            "--imds.timeout",
            "200ms",
            "--log.level",
            "debug",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut exporter = Proc::spawn("exporter", dir.path(), BIN, &args);
        let base = format!("http://127.0.0.1:{port}");
        wait_ready(&mut exporter, &format!("{base}/-/healthy"), Duration::from_secs(10)).await;
        let pid = exporter.pid();
        let (rss_before, fds_before) = (status_kib(pid, "VmRSS:"), open_fds(pid));
        let budget = Duration::from_secs_f64(scrape_timeout.parse().unwrap());
        let http = client();
        let mut last = None;
        for i in 0..SCRAPES {
            let started = Instant::now();
            let resp =
                http.get(format!("{base}/metrics")).header("X-Prometheus-Scrape-Timeout-Seconds", scrape_timeout).send().await.unwrap();
            assert_eq!(resp.status(), 200, "scrape {i}");
            last = Some(Metrics::parse(&resp.text().await.unwrap()));
            assert!(started.elapsed() < budget, "scrape {i} took {:?}", started.elapsed());
        }
        let m = last.unwrap();
        assert_eq!(m.get("aws_imds_up"), 0.0);
        let (rss, peak, fds) = (status_kib(pid, "VmRSS:"), status_kib(pid, "VmHWM:"), open_fds(pid));
        eprintln!("{hostile}: RSS {rss_before} KiB before, {rss} KiB after {SCRAPES} scrapes, peak {peak} KiB; fds {fds_before} -> {fds}");
        assert!(peak < MAX_RSS_KIB && rss < MAX_RSS_KIB, "{hostile}: RSS {rss} KiB, peak {peak} KiB");
        assert!(fds <= fds_before + 4, "{hostile}: descriptors leak: {fds_before} -> {fds}");
        exporter.assert_running();
        let log = exporter.log();
        assert!(log.contains(explains), "{hostile}: no log line says {explains:?}:\n{log}");
        assert!(!log.contains("panicked"), "{log}");
        exporter.stop();
        sim.stop();
    }

    #[tokio::test]
    async fn oversized_documents_keep_memory_bounded() {
        bounded("oversized-body", "2", "larger than 65536 bytes").await;
    }

    #[tokio::test]
    async fn oversized_chunked_documents_keep_memory_bounded() {
        bounded("oversized-body-chunked", "2", "larger than 65536 bytes").await;
    }

    #[tokio::test]
    async fn slowloris_documents_keep_memory_and_connections_bounded() {
        bounded("slowloris", "1", "timed out").await;
    }
}
