//! Every simulator scenario, scraped through the real HTTP server: the metrics
//! an operator would alert on must say what the scenario is.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use aws_credentials_exporter::sim::{ImdsSpec, scenario};
use common::{exporter, exporter_on, scrape, sim};

const UNTIL: &str = r#"aws_credentials_seconds_until_expiry{provider="instance_profile",role="app-role"}"#;
const EXPIRES: &str = r#"aws_credentials_expiration_timestamp_seconds{provider="instance_profile",role="app-role"}"#;

fn spec(name: &str) -> ImdsSpec {
    scenario::by_name(name).unwrap().imds
}

#[tokio::test]
async fn healthy_instance_reports_hours_of_validity_over_imdsv2() {
    let sim = sim(spec("healthy")).await;
    let ex = exporter_on(&sim, &[]).await;
    let m = scrape(&ex).await;
    assert_eq!(m.get("aws_imds_up"), 1.0);
    assert_eq!(m.get("aws_imds_protocol_version"), 2.0);
    assert_eq!(m.get("aws_imds_instance_profile_attached"), 1.0);
    let left = m.get(UNTIL);
    assert!((5.0 * 3600.0..=5.7 * 3600.0).contains(&left), "20-minute-old 6 h credentials: {left}");
    assert!(m.has(r#"aws_imds_credentials_info{role="app-role",code="Success",type="AWS-HMAC",instance_profile_arn="arn:aws:iam::123456789012:instance-profile/app-role-profile"}"#));
    assert_eq!(m.get(r#"aws_imds_requests_total{endpoint="token",code="200"}"#), 1.0);
    assert_eq!(m.get("aws_imds_throttled_total"), 0.0);
    assert!(m.get("aws_imds_last_success_timestamp_seconds") > 1.7e9);
    assert_eq!(m.get(r#"aws_imds_request_duration_seconds_count{endpoint="credentials"}"#), 1.0);
    assert!(m.has(r#"aws_credentials_last_updated_timestamp_seconds{role="app-role"}"#));
    ex.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn stopped_rotation_counts_down_to_expiry() {
    let sim = sim(spec("expiring")).await;
    let ex = exporter_on(&sim, &["--probe.min-interval", "0s"]).await;
    let first = scrape(&ex).await;
    let left = first.get(UNTIL);
    assert!((700.0..=720.5).contains(&left), "12 minutes left: {left}");
    let updated = first.get(r#"aws_credentials_last_updated_timestamp_seconds{role="app-role"}"#);
    let age = chrono::Utc::now().timestamp() as f64 - updated;
    assert!((5.7 * 3600.0..5.9 * 3600.0).contains(&age), "LastUpdated 5h48m ago: {age}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = scrape(&ex).await;
    assert!(second.get(UNTIL) < left - 1.0, "counts down");
    assert_eq!(second.get(EXPIRES), first.get(EXPIRES), "no rotation");
    ex.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn credentials_rotate_and_the_exporter_follows() {
    let sim = sim(ImdsSpec {
        lifetime: Duration::from_secs(6),
        rotate_every: Some(Duration::from_secs(1)),
        initial_age: Duration::ZERO,
        ..ImdsSpec::default()
    })
    .await;
    let ex = exporter_on(&sim, &["--probe.min-interval", "0s"]).await;
    let first = scrape(&ex).await.get(EXPIRES);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = scrape(&ex).await.get(EXPIRES);
    assert!(second > first, "expiration moves forward on rotation: {first} -> {second}");
    ex.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn throttling_is_counted_and_retried() {
    let sim = sim(spec("throttled")).await;
    let ex = exporter_on(&sim, &[]).await;
    let m = scrape(&ex).await;
    assert_eq!(m.get("aws_imds_up"), 1.0, "retries get through alternating 429s");
    let throttled = m.get("aws_imds_throttled_total");
    assert!(throttled >= 2.0, "{throttled}");
    assert_eq!(throttled, sim.counters().throttled.load(Ordering::SeqCst) as f64, "every 429 counted once");
    assert!(m.get("aws_imds_retries_total") >= throttled);
    let by_code: f64 = m.family("aws_imds_requests_total").iter().filter(|(k, _)| k.contains(r#"code="429""#)).map(|(_, v)| v).sum();
    assert_eq!(by_code, throttled);
    ex.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn persistent_throttling_takes_imds_down_after_the_configured_attempts() {
    let sim =
        sim(ImdsSpec { throttle: aws_credentials_exporter::sim::Throttle::Ratio { throttled: 1, of: 1 }, ..ImdsSpec::default() }).await;
    let ex = exporter_on(&sim, &["--imds.attempts", "2"]).await;
    let m = scrape(&ex).await;
    assert_eq!(m.get("aws_imds_up"), 0.0);
    assert_eq!(m.get(r#"aws_imds_requests_total{endpoint="token",code="429"}"#), 2.0, "two attempts");
    ex.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn no_instance_profile_is_reported_as_detached() {
    let sim = sim(spec("no-role")).await;
    let ex = exporter_on(&sim, &[]).await;
    let m = scrape(&ex).await;
    assert_eq!(m.get("aws_imds_instance_profile_attached"), 0.0);
    assert_eq!(m.get("aws_imds_up"), 0.0);
    assert_eq!(m.get("aws_imds_protocol_version"), 2.0, "IMDS itself answers");
    assert!(m.family("aws_credentials_seconds_until_expiry").is_empty());
    ex.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn token_hop_limit_falls_back_to_imdsv1_after_a_timeout() {
    let sim = sim(spec("token-hop-limit")).await;
    let ex = exporter_on(&sim, &["--imds.timeout", "200ms"]).await;
    let m = scrape(&ex).await;
    assert_eq!(m.get("aws_imds_up"), 1.0);
    assert_eq!(m.get("aws_imds_protocol_version"), 1.0);
    assert_eq!(m.get(r#"aws_imds_v1_fallbacks_total{reason="timeout"}"#), 1.0);
    assert_eq!(m.get(r#"aws_imds_requests_total{endpoint="token",code="timeout"}"#), 1.0, "token timeouts are not retried");
    ex.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn hop_limit_with_v1_disabled_is_an_outage() {
    let sim = sim(spec("token-hop-limit")).await;
    let config = common::config(&sim.imds_url(), &["--imds.timeout", "200ms"]);
    let config = aws_credentials_exporter::config::Config {
        imds: aws_credentials_exporter::config::ImdsConfig { v1_disabled: true, ..config.imds },
        ..config
    };
    let client = aws_credentials_exporter::imds::ImdsClient::new(config.imds);
    let obs = client.probe().await;
    assert!(!obs.up());
    assert!(obs.error.as_deref().unwrap().contains("AWS_EC2_METADATA_V1_DISABLED"), "{:?}", obs.error);
    assert_eq!(sim.counters().credentials.load(Ordering::SeqCst), 0, "no IMDSv1 request was sent");
    sim.stop().await;
}

#[tokio::test]
async fn imdsv1_only_instance_is_served_over_v1() {
    let sim = sim(spec("v1-only")).await;
    let ex = exporter_on(&sim, &[]).await;
    let m = scrape(&ex).await;
    assert_eq!(m.get("aws_imds_up"), 1.0);
    assert_eq!(m.get("aws_imds_protocol_version"), 1.0);
    assert_eq!(m.get(r#"aws_imds_v1_fallbacks_total{reason="404"}"#), 1.0);
    ex.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn required_tokens_are_sent_and_refreshed_after_401() {
    let sim = sim(spec("v2-required")).await;
    let ex = exporter_on(&sim, &["--probe.min-interval", "0s"]).await;
    let m = scrape(&ex).await;
    assert_eq!(m.get("aws_imds_up"), 1.0);
    assert_eq!(m.get("aws_imds_protocol_version"), 2.0);
    scrape(&ex).await;
    assert_eq!(sim.counters().token.load(Ordering::SeqCst), 1, "the token is cached across probes");
    sim.revoke_tokens();
    let m = scrape(&ex).await;
    assert_eq!(m.get("aws_imds_up"), 1.0, "a 401 refreshes the token");
    assert_eq!(sim.counters().token.load(Ordering::SeqCst), 2);
    assert_eq!(m.get(r#"aws_imds_requests_total{endpoint="credentials",code="401"}"#), 1.0);
    ex.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn a_role_error_code_is_reported_not_trusted() {
    let sim = sim(spec("role-error")).await;
    let ex = exporter_on(&sim, &[]).await;
    let m = scrape(&ex).await;
    assert_eq!(m.get("aws_imds_up"), 0.0);
    assert!(m.text.contains(r#"code="AssumeRoleUnauthorizedAccess""#), "{}", m.text);
    assert!(m.family("aws_credentials_seconds_until_expiry").is_empty());
    ex.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn a_malformed_document_is_a_failed_probe() {
    let sim = sim(spec("malformed")).await;
    let ex = exporter_on(&sim, &[]).await;
    let m = scrape(&ex).await;
    assert_eq!(m.get("aws_imds_up"), 0.0);
    assert_eq!(m.get("aws_imds_instance_profile_attached"), 1.0);
    assert_eq!(m.get("aws_imds_last_success_timestamp_seconds"), 0.0);
    ex.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let sim = sim(spec("server-error")).await;
    let ex = exporter_on(&sim, &["--imds.attempts", "3"]).await;
    let m = scrape(&ex).await;
    assert_eq!(m.get("aws_imds_up"), 0.0);
    assert_eq!(
        m.get("aws_imds_protocol_version"),
        0.0,
        "the token PUT falls back to IMDSv1 like Java v2, but no GET is served: unreachable"
    );
    assert_eq!(m.get(r#"aws_imds_v1_fallbacks_total{reason="500"}"#), 1.0);
    assert_eq!(m.get(r#"aws_imds_requests_total{endpoint="token",code="500"}"#), 3.0);
    assert_eq!(m.get(r#"aws_imds_requests_total{endpoint="role",code="500"}"#), 3.0);
    ex.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn older_imds_without_the_extended_path_uses_the_legacy_path_and_remembers() {
    let sim = sim(spec("legacy-path")).await;
    let ex = exporter_on(&sim, &["--probe.min-interval", "0s"]).await;
    assert_eq!(scrape(&ex).await.get("aws_imds_up"), 1.0);
    assert_eq!(sim.counters().role.load(Ordering::SeqCst), 2, "extended 404, then legacy");
    assert_eq!(scrape(&ex).await.get("aws_imds_up"), 1.0);
    assert_eq!(sim.counters().role.load(Ordering::SeqCst), 2, "role name cached");
    assert_eq!(sim.counters().credentials.load(Ordering::SeqCst), 2);
    ex.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn a_changed_role_is_rediscovered_after_a_404() {
    let sim = sim(spec("healthy")).await;
    let ex = exporter_on(&sim, &["--probe.min-interval", "0s"]).await;
    assert_eq!(scrape(&ex).await.get("aws_imds_up"), 1.0);
    sim.update(|s| s.role = Some("new-role".into()));
    let m = scrape(&ex).await;
    assert_eq!(m.get("aws_imds_up"), 1.0);
    assert!(m.has(r#"aws_credentials_seconds_until_expiry{provider="instance_profile",role="new-role"}"#), "{}", m.text);
    ex.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn an_outage_keeps_the_last_known_expiry_and_counters_survive_recovery() {
    let sim = sim(spec("healthy")).await;
    let ex = exporter_on(&sim, &["--probe.min-interval", "0s", "--imds.attempts", "1"]).await;
    let before = scrape(&ex).await;
    sim.update(|s| s.server_error_every = Some(1));
    let during = scrape(&ex).await;
    assert_eq!(during.get("aws_imds_up"), 0.0);
    assert_eq!(during.get(EXPIRES), before.get(EXPIRES), "last known expiry kept");
    assert!(during.get(UNTIL) <= before.get(UNTIL), "and still counting down");
    assert_eq!(during.get("aws_imds_last_success_timestamp_seconds"), before.get("aws_imds_last_success_timestamp_seconds"));
    sim.update(|s| s.server_error_every = None);
    let after = scrape(&ex).await;
    assert_eq!(after.get("aws_imds_up"), 1.0);
    for (series, v) in during.family("aws_imds_requests_total") {
        assert!(after.get(series) >= v, "{series} never decreases");
    }
    ex.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn unreachable_imds_is_down_not_a_failed_scrape() {
    // A port nobody listens on: bind, note the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let ex = exporter(&format!("http://127.0.0.1:{port}"), &["--imds.attempts", "1"]).await;
    let m = scrape(&ex).await;
    assert_eq!(m.get("aws_imds_up"), 0.0);
    assert_eq!(m.get("aws_imds_protocol_version"), 0.0);
    assert_eq!(m.get(r#"aws_imds_requests_total{endpoint="token",code="connect_error"}"#), 1.0);
    ex.stop().await;
}

#[tokio::test]
async fn a_slow_imds_is_cut_off_at_the_scrape_deadline() {
    let sim = sim(ImdsSpec { latency: Duration::from_millis(800), ..ImdsSpec::default() }).await;
    let ex = exporter_on(&sim, &["--imds.timeout", "5s"]).await;
    let started = std::time::Instant::now();
    let resp = common::client().get(ex.url("/metrics")).header("X-Prometheus-Scrape-Timeout-Seconds", "1").send().await.unwrap();
    let m = common::Metrics::parse(&resp.text().await.unwrap());
    assert!(started.elapsed() < Duration::from_millis(950), "answered inside the scrape timeout: {:?}", started.elapsed());
    assert_eq!(m.get("aws_imds_up"), 0.0);
    ex.stop().await;
    sim.stop().await;
}
