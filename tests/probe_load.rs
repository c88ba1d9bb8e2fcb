//! Scrapes must not become IMDS load: hundreds of concurrent scrapes share
//! one probe per minimum interval, and the token is fetched once per TTL.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use aws_credentials_exporter::sim::ImdsSpec;
use common::{client, exporter_on, sim};

async fn storm(url: &str, scrapes: usize) {
    let c = client();
    let tasks: Vec<_> = (0..scrapes)
        .map(|_| {
            let (c, url) = (c.clone(), url.to_string());
            tokio::spawn(async move {
                let body = c.get(&url).send().await.unwrap().text().await.unwrap();
                assert!(body.contains("aws_imds_up 1"), "every scrape sees the shared probe");
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_scrapes_share_one_probe() {
    // A slow IMDS makes the scrapes overlap the in-flight probe.
    let sim = sim(ImdsSpec { latency: Duration::from_millis(50), ..ImdsSpec::default() }).await;
    let ex = exporter_on(&sim, &["--probe.min-interval", "60s"]).await;
    storm(&ex.url("/metrics"), 300).await;
    let c = sim.counters();
    assert_eq!(c.token.load(Ordering::SeqCst), 1);
    assert_eq!(c.role.load(Ordering::SeqCst), 1);
    assert_eq!(c.credentials.load(Ordering::SeqCst), 1);
    assert_eq!(c.info.load(Ordering::SeqCst), 1);
    assert_eq!(c.total(), 4, "300 scrapes, 4 IMDS requests");
    assert_eq!(c.ntp.load(Ordering::SeqCst), 1, "300 scrapes, 1 NTP request");
    ex.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_scraping_costs_one_document_per_interval() {
    let sim = sim(ImdsSpec::default()).await;
    let ex = exporter_on(&sim, &["--probe.min-interval", "500ms"]).await;
    let started = Instant::now();
    let mut scrapes = 0;
    while started.elapsed() < Duration::from_millis(2600) {
        storm(&ex.url("/metrics"), 20).await;
        scrapes += 20;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let c = sim.counters();
    let docs = c.credentials.load(Ordering::SeqCst) as f64;
    let max_probes = (elapsed / 0.5).ceil() + 1.0;
    assert!(scrapes >= 200, "{scrapes}");
    assert!(docs >= 3.0 && docs <= max_probes, "{docs} documents in {elapsed:.1}s at a 0.5 s interval ({scrapes} scrapes)");
    assert_eq!(c.token.load(Ordering::SeqCst), 1, "one token per TTL (6 h)");
    assert_eq!(c.role.load(Ordering::SeqCst), 1, "role name cached");
    assert_eq!(c.info.load(Ordering::SeqCst), 1, "iam/info at most every 5 minutes");
    ex.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn a_rendered_page_is_reused_for_at_most_250_ms_and_never_across_probes() {
    let sim = sim(ImdsSpec::default()).await;
    let ex = exporter_on(&sim, &["--probe.min-interval", "60s"]).await;
    let until = r#"aws_credentials_seconds_until_expiry{provider="instance_profile",role="app-role"}"#;
    let a = common::scrape(&ex).await.get(until);
    let b = common::scrape(&ex).await.get(until);
    assert_eq!(a, b, "the same page within 250 ms");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let c = common::scrape(&ex).await.get(until);
    assert!(c < b, "re-rendered after 250 ms: the countdown moved ({b} -> {c})");
    ex.stop().await;
    // With a probe on every scrape, every scrape renders what that probe found.
    let ex = exporter_on(&sim, &["--probe.min-interval", "0s"]).await;
    let before = common::scrape(&ex).await.get("aws_imds_throttled_total");
    sim.update(|s| s.throttle = aws_credentials_exporter::sim::Throttle::Ratio { throttled: 1, of: 2 });
    let after = common::scrape(&ex).await.get("aws_imds_throttled_total");
    assert!(after > before, "a new probe is never hidden by a cached page");
    ex.stop().await;
    sim.stop().await;
}
