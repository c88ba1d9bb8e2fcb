//! Faults over time: an IMDS outage and its recovery (no request storm,
//! counters never reset), clock jumps under libfaketime (no negative
//! durations, no panic), and restarts (counters start again at zero).

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use aws_credentials_exporter::sim::ImdsSpec;
use common::{BIN, Metrics, exporter_on, scrape, sim};

#[tokio::test]
async fn an_outage_costs_at_most_attempts_per_probe_and_recovery_is_quiet() {
    let sim = sim(ImdsSpec::default()).await;
    let ex = exporter_on(&sim, &["--probe.min-interval", "200ms", "--imds.attempts", "3"]).await;
    assert_eq!(scrape(&ex).await.get("aws_imds_up"), 1.0);
    // Outage: IMDS answers 500 to everything, while Prometheus keeps scraping every 50 ms.
    sim.update(|s| s.server_error_every = Some(1));
    let before = sim.counters().total();
    let started = Instant::now();
    let mut during = None;
    while started.elapsed() < Duration::from_secs(2) {
        during = Some(scrape(&ex).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let outage_requests = sim.counters().total() - before;
    let probes = (started.elapsed().as_secs_f64() / 0.2).ceil() as u64 + 1;
    // Each probe: the token PUT (3 attempts, then IMDSv1) and one GET (3 attempts).
    assert!(outage_requests <= probes * 6, "{outage_requests} requests in {probes} probes during the outage");
    let during = during.unwrap();
    assert_eq!(during.get("aws_imds_up"), 0.0);
    // Recovery: steady state again within a probe or two, one GET per probe.
    sim.update(|s| s.server_error_every = None);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let after = scrape(&ex).await;
    assert_eq!(after.get("aws_imds_up"), 1.0);
    for (series, v) in during.family("aws_imds_requests_total") {
        assert!(after.get(series) >= v, "{series} never decreases");
    }
    let base = sim.counters().credentials.load(Ordering::SeqCst);
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(1) {
        scrape(&ex).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let docs = sim.counters().credentials.load(Ordering::SeqCst) - base;
    assert!(docs <= 7, "{docs} documents in 1 s at a 200 ms interval after recovery: no storm");
    ex.stop().await;
    sim.stop().await;
}

/// Scrapes a `demo` whose wall clock jumps (libfaketime reads the offset from
/// a file it re-checks): the exporter must keep answering with sane values.
#[test]
fn clock_jumps_under_faketime_give_no_negative_durations_and_no_panic() {
    let lib = ["/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1", "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("libfaketime (Debian faketime) is installed by scripts/test.sh");
    let dir = tempfile::tempdir().unwrap();
    let offset_file = dir.path().join("faketime");
    std::fs::write(&offset_file, "+0s").unwrap();
    let port = common::stack::free_port();
    /// Kills the demo even when an assertion fails first.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut guard = KillOnDrop(
        Command::new(BIN)
            .args(["demo", "--scenario", "healthy", "--web.listen-address", &format!("127.0.0.1:{port}"), "--probe.min-interval", "0s"])
            .args(["--ntp.min-interval", "0s"])
            .env_clear()
            .env("LD_PRELOAD", lib)
            .env("FAKETIME_TIMESTAMP_FILE", &offset_file)
            .env("FAKETIME_CACHE_DURATION", "0")
            .env("FAKETIME_NO_CACHE", "1")
            // A clock step moves the wall clock (CLOCK_REALTIME), as `date -s` or
            // `chronyc makestep` do; the monotonic clock never jumps on Linux.
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let child = &mut guard.0;
    let url = format!("http://127.0.0.1:{port}/metrics");
    let fetch = || -> Option<Metrics> {
        let out = Command::new("curl").args(["-sf", "--noproxy", "*", "-m", "5", &url]).output().ok()?;
        out.status.success().then(|| Metrics::parse(&String::from_utf8_lossy(&out.stdout)))
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while fetch().is_none() {
        assert!(Instant::now() < deadline, "demo under faketime did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    for shift in ["-2h", "+3h", "-10m", "+0s", "+1d"] {
        std::fs::write(&offset_file, shift).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let m = fetch().unwrap_or_else(|| panic!("no answer after a jump to {shift}"));
        for (series, v) in m.family("aws_credentials_exporter_probe_duration_seconds") {
            assert!((0.0..60.0).contains(&v), "{shift}: {series} = {v}");
        }
        for (series, v) in m.family("aws_imds_request_duration_seconds_sum") {
            assert!(v >= 0.0, "{shift}: {series} = {v}");
        }
        assert!(m.has("aws_imds_up"), "{shift}");
    }
    assert!(child.try_wait().unwrap().is_none(), "the demo survived every jump");
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let status = child.wait().unwrap();
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
    assert!(!log.contains("panicked"), "{log}");
    assert!(status.success(), "{status}: {log}");
}

#[tokio::test]
async fn a_restarted_exporter_starts_its_counters_at_zero() {
    let sim =
        sim(ImdsSpec { throttle: aws_credentials_exporter::sim::Throttle::Ratio { throttled: 1, of: 2 }, ..ImdsSpec::default() }).await;
    let ex = exporter_on(&sim, &["--probe.min-interval", "0s"]).await;
    for _ in 0..5 {
        scrape(&ex).await;
    }
    let first = scrape(&ex).await.get("aws_imds_throttled_total");
    ex.stop().await;
    let ex = exporter_on(&sim, &["--probe.min-interval", "0s"]).await;
    let second = scrape(&ex).await.get("aws_imds_throttled_total");
    assert!(second < first, "a new process counts from zero ({second} < {first}); rate() handles the reset");
    ex.stop().await;
    sim.stop().await;
}
