//! The clock probe through the exporter against the simulated time service:
//! skew, kiss-o'-death handling and hostile replies all become metrics.

mod common;

use std::time::Duration;

use aws_credentials_exporter::sim::{Hostile, ImdsSpec, NtpSpec, scenario};
use common::{exporter_on, scrape, sim_with_ntp};

fn series(name: &str, server: &str, extra: &str) -> String {
    format!(r#"{name}{{server="{server}"{extra}}}"#)
}

#[tokio::test]
async fn skewed_scenario_shows_three_minutes_ahead() {
    let s = scenario::by_name("skewed").unwrap();
    let sim = sim_with_ntp(s.imds, s.ntp).await;
    let server = sim.ntp_addr().to_string();
    let ex = exporter_on(&sim, &[]).await;
    let m = scrape(&ex).await;
    let offset = m.get(&series("aws_clock_offset_seconds", &server, ""));
    assert!((offset - 180.0).abs() < 0.05, "this host is 3 minutes ahead: {offset}");
    let bound = m.get(&series("aws_clock_error_bound_seconds", &server, ""));
    assert!((180.0..180.1).contains(&bound), "{bound}");
    assert_eq!(m.get(&series("aws_clock_ntp_up", &server, "")), 1.0);
    assert_eq!(m.get(&series("aws_clock_ntp_stratum", &server, "")), 3.0);
    assert!(m.has(&series("aws_clock_ntp_reference_info", &server, r#",reference_id="169.254.169.123""#)), "{}", m.text);
    for kernel in [
        "aws_clock_synchronized",
        "aws_clock_max_error_seconds",
        "aws_clock_estimated_error_seconds",
        "aws_clock_kernel_offset_seconds",
        "aws_clock_tai_offset_seconds",
    ] {
        assert!(m.has(kernel), "{kernel} from adjtimex");
    }
    ex.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn kiss_of_death_codes_are_counted_and_obeyed() {
    for (code, stops) in [(*b"RATE", false), (*b"DENY", true), (*b"RSTR", true)] {
        let sim = sim_with_ntp(ImdsSpec::default(), NtpSpec { kiss_code: Some(code), ..NtpSpec::default() }).await;
        let server = sim.ntp_addr().to_string();
        let ex = exporter_on(&sim, &["--ntp.min-interval", "0s", "--probe.min-interval", "0s"]).await;
        let m = scrape(&ex).await;
        let name = std::str::from_utf8(&code).unwrap();
        assert_eq!(m.get(&series("aws_clock_ntp_kiss_of_death_total", &server, &format!(r#",code="{name}""#))), 1.0);
        assert_eq!(m.get(&series("aws_clock_ntp_up", &server, "")), 0.0);
        for _ in 0..5 {
            scrape(&ex).await;
        }
        let sent = sim.counters().ntp.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(sent, 1, "{name}: no new query after the kiss (RATE backs off to >= 16 s, DENY/RSTR stop)");
        let m = scrape(&ex).await;
        assert_eq!(m.get(&series("aws_clock_ntp_polling_stopped", &server, "")), if stops { 1.0 } else { 0.0 }, "{name}");
        if !stops {
            assert!(m.get(&series("aws_clock_ntp_poll_interval_seconds", &server, "")) >= 16.0);
        }
        ex.stop().await;
        sim.stop().await;
    }
}

#[tokio::test]
async fn hostile_replies_become_failure_reasons_without_a_wrong_offset() {
    let cases = [
        (Hostile::ShortPacket, "malformed"),
        (Hostile::WrongOrigin, "bad_origin"),
        (Hostile::ClientMode, "bad_mode"),
        (Hostile::ZeroTransmit, "malformed"),
    ];
    for (hostile, reason) in cases {
        let sim = sim_with_ntp(ImdsSpec::default(), NtpSpec { hostile: Some(hostile), ..NtpSpec::default() }).await;
        let server = sim.ntp_addr().to_string();
        let ex = exporter_on(&sim, &["--ntp.timeout", "300ms"]).await;
        let m = scrape(&ex).await;
        assert_eq!(
            m.get(&series("aws_clock_ntp_failures_total", &server, &format!(r#",reason="{reason}""#))),
            1.0,
            "{hostile:?}\n{}",
            m.text
        );
        assert_eq!(m.get(&series("aws_clock_ntp_up", &server, "")), 0.0, "{hostile:?}");
        assert!(!m.has(&series("aws_clock_offset_seconds", &server, "")), "{hostile:?}: no offset from a bad reply");
        assert_eq!(m.get("aws_imds_up"), 1.0, "the exporter keeps serving");
        ex.stop().await;
        sim.stop().await;
    }
}

#[tokio::test]
async fn era_2036_and_floods_still_give_the_right_offset() {
    let sim = sim_with_ntp(ImdsSpec::default(), NtpSpec { hostile: Some(Hostile::Flood), offset_seconds: 2.0, ..NtpSpec::default() }).await;
    let server = sim.ntp_addr().to_string();
    let ex = exporter_on(&sim, &[]).await;
    let m = scrape(&ex).await;
    let offset = m.get(&series("aws_clock_offset_seconds", &server, ""));
    assert!((offset + 2.0).abs() < 0.05, "flood ignored, offset {offset}");
    assert!(m.get(&series("aws_clock_ntp_ignored_packets_total", &server, "")) >= 1.0);
    ex.stop().await;
    sim.stop().await;

    let sim = sim_with_ntp(ImdsSpec::default(), NtpSpec { hostile: Some(Hostile::Era2036), ..NtpSpec::default() }).await;
    let server = sim.ntp_addr().to_string();
    let ex = exporter_on(&sim, &[]).await;
    let m = scrape(&ex).await;
    let offset = m.get(&series("aws_clock_offset_seconds", &server, ""));
    let want = -aws_credentials_exporter::sim::ntp::ERA_2036_SHIFT_SECONDS;
    assert!((offset - want).abs() < 0.05, "era-1 server timestamps resolved: {offset} vs {want}");
    ex.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn a_storm_of_unsolicited_packets_neither_stops_the_exporter_nor_fakes_an_offset() {
    use aws_credentials_exporter::sim::ntp::STORM_PACKETS;
    let ntp = NtpSpec { hostile: Some(Hostile::Storm), offset_seconds: 2.0, ..NtpSpec::default() };
    let sim = sim_with_ntp(ImdsSpec::default(), ntp).await;
    let server = sim.ntp_addr().to_string();
    let ex = exporter_on(&sim, &["--ntp.min-interval", "0s", "--probe.min-interval", "0s"]).await;
    let mut ignored = 0.0;
    let mut measured = 0;
    for round in 1..=3 {
        let started = std::time::Instant::now();
        let resp = common::client().get(ex.url("/metrics")).header("X-Prometheus-Scrape-Timeout-Seconds", "2").send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let m = common::Metrics::parse(&resp.text().await.unwrap());
        assert!(started.elapsed() < Duration::from_secs(2), "round {round}: {:?}", started.elapsed());
        assert_eq!(m.get("aws_imds_up"), 1.0, "the exporter keeps serving");
        let now = m.get(&series("aws_clock_ntp_ignored_packets_total", &server, ""));
        assert!(now - ignored > (STORM_PACKETS / 4) as f64, "round {round}: {now} after {ignored}");
        ignored = now;
        let kisses = m.family("aws_clock_ntp_kiss_of_death_total");
        assert!(kisses.iter().all(|(_, n)| *n == 0.0), "spoofed DENY kisses are not counted as kisses: {kisses:?}");
        // Loopback may drop the real reply under the flood; a spoofed one is never taken.
        if m.has(&series("aws_clock_offset_seconds", &server, "")) {
            let offset = m.get(&series("aws_clock_offset_seconds", &server, ""));
            let rtt = m.get(&series("aws_clock_ntp_rtt_seconds", &server, ""));
            assert!((offset + 2.0).abs() <= rtt / 2.0 + 0.05, "round {round}: offset {offset}, rtt {rtt}");
            measured += 1;
        }
    }
    assert!(measured >= 1, "no round measured an offset through the flood");
    ex.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn dropped_replies_time_out_and_the_scrape_stays_inside_its_deadline() {
    let sim = sim_with_ntp(ImdsSpec::default(), NtpSpec { drop_every: Some(1), ..NtpSpec::default() }).await;
    let server = sim.ntp_addr().to_string();
    let ex = exporter_on(&sim, &["--ntp.timeout", "3s"]).await;
    let scrape = || async {
        let started = std::time::Instant::now();
        let resp = common::client().get(ex.url("/metrics")).header("X-Prometheus-Scrape-Timeout-Seconds", "1.5").send().await.unwrap();
        let m = common::Metrics::parse(&resp.text().await.unwrap());
        assert!(started.elapsed() < Duration::from_millis(1400), "{:?}", started.elapsed());
        m
    };
    // The scrape answers by its deadline; the round runs on under the probe's own budget.
    let m = scrape().await;
    assert_eq!(m.get(&series("aws_clock_ntp_up", &server, "")), 0.0, "a configured server is there before its first round ends");
    assert_eq!(m.get(r#"aws_credentials_exporter_probe_success{probe="ntp"}"#), 0.0, "the first round has not finished");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let m = scrape().await;
    assert_eq!(m.get(&series("aws_clock_ntp_up", &server, "")), 0.0);
    assert_eq!(m.get(&series("aws_clock_ntp_failures_total", &server, r#",reason="timeout""#)), 1.0, "the full 3 s timeout was waited for");
    assert!(m.get(r#"aws_credentials_exporter_probe_duration_seconds{probe="ntp"}"#) >= 3.0);
    ex.stop().await;
    sim.stop().await;
}
