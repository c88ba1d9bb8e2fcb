//! Hostile scrapers: a client that reaches the port must not be able to blind
//! the exporter for everybody else.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_credentials_exporter::sim::{ImdsSpec, NtpSpec};
use common::{Metrics, client, exporter_on, sim_with_ntp};

/// Header values that once became the shared probe's deadline.
const HOSTILE_TIMEOUTS: [&str; 8] = ["1e-9", "0", "-1", "NaN", "inf", "1e308", "0.000001", "junk"];

/// Regression: `X-Prometheus-Scrape-Timeout-Seconds: 1e-9` ran the shared,
/// cached probe under that request's deadline; the failure was cached for
/// every scraper (aws_imds_up 0, aws_clock_ntp_up 0) and the skewed clock's
/// 180 s offset vanished from Prometheus' scrapes for the whole attack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_scrape_timeout_header_cannot_blind_the_probes() {
    // ~2 ms of IMDS latency is enough for a zero deadline to cut every probe short.
    let imds = ImdsSpec { latency: Duration::from_millis(2), ..ImdsSpec::default() };
    let sim = sim_with_ntp(imds, NtpSpec { offset_seconds: -180.0, ..NtpSpec::default() }).await;
    // Short intervals, so that the attackers' requests find the probes due again and again.
    let r = exporter_on(&sim, &["--probe.min-interval", "200ms", "--ntp.min-interval", "200ms"]).await;
    let server = sim.ntp_addr().to_string();
    let url = r.url("/metrics");

    let normal = |url: String| async move {
        let started = Instant::now();
        let resp = client().get(&url).header("X-Prometheus-Scrape-Timeout-Seconds", "10").send().await.expect("normal scrape");
        assert!(resp.status().is_success());
        let m = Metrics::parse(&resp.text().await.unwrap());
        (started.elapsed(), m)
    };
    let (_, first) = normal(url.clone()).await;
    assert_eq!(first.get("aws_imds_up"), 1.0, "before the attack");

    let stop = Arc::new(AtomicBool::new(false));
    let attacks = Arc::new(AtomicU64::new(0));
    let attackers: Vec<_> = (0..4)
        .map(|i| {
            let (stop, attacks, url) = (stop.clone(), attacks.clone(), url.clone());
            tokio::spawn(async move {
                let http = client();
                let mut n = i;
                while !stop.load(Ordering::Relaxed) {
                    let value = HOSTILE_TIMEOUTS[n % HOSTILE_TIMEOUTS.len()];
                    n += 1;
                    // The attacker's own answer may be anything; it must merely not hurt the others.
                    if let Ok(resp) = http.get(&url).header("X-Prometheus-Scrape-Timeout-Seconds", value).send().await {
                        let _ = resp.bytes().await;
                        attacks.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();

    let offset_series = format!("aws_clock_offset_seconds{{server=\"{server}\"}}");
    let ntp_up_series = format!("aws_clock_ntp_up{{server=\"{server}\"}}");
    let attack_ends = Instant::now() + Duration::from_secs(4);
    let mut scrapes = 0;
    while Instant::now() < attack_ends {
        let (took, m) = normal(url.clone()).await;
        scrapes += 1;
        assert!(took < Duration::from_secs(1), "a normal scrape took {took:?} during the attack");
        assert_eq!(m.get("aws_imds_up"), 1.0, "scrape {scrapes}: IMDS blinded by the attack\n{}", m.text);
        assert_eq!(m.get(&ntp_up_series), 1.0, "scrape {scrapes}: NTP blinded by the attack");
        let offset = m.get(&offset_series);
        assert!((offset - 180.0).abs() < 0.5, "scrape {scrapes}: the 180 s skew is hidden (offset {offset})");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        a.await.unwrap();
    }
    let attacks = attacks.load(Ordering::Relaxed);
    assert!(attacks > 100, "the attack was real: {attacks} hostile scrapes");
    assert!(scrapes >= 10, "{scrapes} normal scrapes");
    r.stop().await;
    sim.stop().await;
}

/// Every IMDS request the simulator received is in `aws_imds_requests_total`
/// and the latency histogram, also while hostile scrapers come and go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_imds_attempt_is_counted_during_the_attack() {
    let imds = ImdsSpec { latency: Duration::from_millis(2), ..ImdsSpec::default() };
    let sim = sim_with_ntp(imds, NtpSpec::default()).await;
    let r = exporter_on(&sim, &["--probe.min-interval", "50ms"]).await;
    let url = r.url("/metrics");
    let http = client();
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        // The request goes away at once; the probe it started must not.
        let _ = http.get(&url).header("X-Prometheus-Scrape-Timeout-Seconds", "1e-9").timeout(Duration::from_millis(1)).send().await;
        let _ = http.get(&url).header("X-Prometheus-Scrape-Timeout-Seconds", "0").send().await;
    }
    // Let the last probe finish, then compare both sides.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let m = Metrics::parse(&http.get(&url).send().await.unwrap().text().await.unwrap());
    let received = sim.counters().total();
    let counted: f64 = m.family("aws_imds_requests_total").iter().map(|(_, v)| v).sum();
    let observed: f64 = m.family("aws_imds_request_duration_seconds_count").iter().map(|(_, v)| v).sum();
    assert!(received > 10, "{received} requests");
    assert_eq!(counted as u64, received, "requests counted vs received\n{}", m.text);
    assert_eq!(observed as u64, received, "histogram observations vs requests received");
    r.stop().await;
    sim.stop().await;
}
