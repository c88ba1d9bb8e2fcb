//! The clock probe against real peers: chronyd (Debian `chrony`) serving at
//! the Amazon Time Sync Service address inside a network namespace the test
//! creates, run with `-x` (it never touches a clock) and shifted with
//! libfaketime, and ntpdig (Debian `ntpsec-ntpdig`) as a reference client.

mod common;

use common::{Metrics, SH_HELPERS, in_netns};

const SERVER: &str = "169.254.169.123:123";

/// The tests measure milliseconds: one chronyd at a time keeps them from
/// disturbing each other's timing on a 2-core machine.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Shell that starts chronyd at 169.254.169.123 with `conf` extra lines,
/// shifted by `shift` (libfaketime syntax, e.g. `+30s`; empty for none).
fn chronyd(conf: &str, shift: &str) -> String {
    let preload =
        if shift.is_empty() { String::new() } else { format!("LD_PRELOAD=$FAKETIME_LIB FAKETIME='{shift}' FAKETIME_DONT_RESET=1") };
    format!(
        r#"{SH_HELPERS}
FAKETIME_LIB=$(ls /usr/lib/*/faketime/libfaketime.so.1 | head -n1)
FAKETIME_MT_LIB=$(ls /usr/lib/*/faketime/libfaketimeMT.so.1 | head -n1)
ip link set lo up
ip addr add 169.254.169.123/32 dev lo
cat > chrony.conf <<CONF
{conf}
allow
cmdport 0
bindcmdaddress /
pidfile $PWD/chronyd.pid
CONF
env {preload} chronyd -d -x -u root -f $PWD/chrony.conf > chronyd.log 2>&1 &
CHRONYD=$!
"#
    )
}

/// The exporter's page from the netns script output (between markers).
fn page(stdout: &[u8], marker: &str) -> Metrics {
    let text = String::from_utf8_lossy(stdout);
    let start = text.find(&format!("=== {marker}\n")).unwrap_or_else(|| panic!("no {marker} in {text}"));
    let rest = &text[start + marker.len() + 5..];
    let end = rest.find("=== ").unwrap_or(rest.len());
    Metrics::parse(&rest[..end])
}

fn offset(m: &Metrics) -> f64 {
    m.get(&format!(r#"aws_clock_offset_seconds{{server="{SERVER}"}}"#))
}

#[test]
fn default_settings_measure_a_server_30s_ahead_and_agree_with_ntpdig() {
    let _serial = serial();
    let script = chronyd("local stratum 8", "+30s")
        + r#"
"$BIN" --log.level debug > exporter.log 2>&1 &
EXP=$!
wait_for http://127.0.0.1:10169/metrics 'aws_clock_ntp_up{server="169.254.169.123:123"} 1'
echo "=== metrics"; cat page.txt
echo "=== ntpdig"
for i in 1 2 3 4 5; do ntpdig -j -t 1 169.254.169.123; echo; done
stop $EXP $CHRONYD
echo "=== end"
"#;
    let out = in_netns(&script, &[]);
    let m = page(&out.stdout, "metrics");
    let ours = offset(&m);
    assert!((ours + 30.0).abs() < 0.002, "local minus server = -30 s within 2 ms, got {ours}");
    assert_eq!(m.get(r#"aws_clock_ntp_stratum{server="169.254.169.123:123"}"#), 8.0);
    assert_eq!(m.get(r#"aws_clock_ntp_leap{server="169.254.169.123:123"}"#), 0.0);
    let text = String::from_utf8_lossy(&out.stdout);
    // ntpdig takes one sample per run and does not report its delay; on a busy
    // machine its Python timestamps lag and bias single samples by milliseconds.
    // NTP's clock filter keeps the best of several samples: so does this check.
    let section = text.split("=== ntpdig\n").nth(1).unwrap().split("=== ").next().unwrap();
    let runs: Vec<f64> = section
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("ntpdig -j output {l:?}: {e}"))["offset"]
                .as_f64()
                .unwrap()
        })
        .collect();
    assert_eq!(runs.len(), 5, "{section}");
    let theirs = runs.iter().copied().min_by(|a, b| (ours + a).abs().total_cmp(&(ours + b).abs())).unwrap();
    eprintln!("ntpdig runs: {runs:?}; exporter: {ours}");
    // ntpdig reports server minus local; ours is local minus server.
    assert!((ours + theirs).abs() < 0.001, "exporter {ours} vs ntpdig {theirs}");
}

#[test]
fn the_sign_follows_the_exporters_own_clock() {
    let _serial = serial();
    for (shift, want) in [("+10s", 10.0), ("-10s", -10.0)] {
        let script = chronyd("local stratum 8", "")
            + &format!(
                r#"
env LD_PRELOAD=$FAKETIME_MT_LIB FAKETIME='{shift}' "$BIN" > exporter.log 2>&1 &
EXP=$!
wait_for http://127.0.0.1:10169/metrics 'aws_clock_ntp_up{{server="169.254.169.123:123"}} 1'
echo "=== metrics"; cat page.txt
stop $EXP $CHRONYD
echo "=== end"
"#
            );
        let out = in_netns(&script, &[]);
        let got = offset(&page(&out.stdout, "metrics"));
        assert!((got - want).abs() < 0.01, "exporter at {shift}: offset {got}, want {want}");
    }
}

#[test]
fn an_unsynchronised_server_is_not_up() {
    let _serial = serial();
    // Without `local`, chronyd has no reference: it answers with leap 3 / stratum 0.
    let script = chronyd("", "")
        + r#"
"$BIN" > exporter.log 2>&1 &
EXP=$!
wait_for http://127.0.0.1:10169/metrics 'aws_clock_ntp_failures_total{reason="unsynchronized",server="169.254.169.123:123"}\|aws_clock_ntp_failures_total{server="169.254.169.123:123",reason="unsynchronized"}'
echo "=== metrics"; cat page.txt
stop $EXP $CHRONYD
echo "=== end"
cat exporter.log
"#;
    let out = in_netns(&script, &[]);
    let m = page(&out.stdout, "metrics");
    assert_eq!(m.get(r#"aws_clock_ntp_up{server="169.254.169.123:123"}"#), 0.0);
    assert!(!m.has(r#"aws_clock_offset_seconds{server="169.254.169.123:123"}"#), "no offset from an unsynchronised server");
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(log.contains("unsynchronized") || log.contains("unsynchronised"), "a log line explains: {log}");
}

#[test]
fn a_rate_limiting_server_is_not_hammered() {
    let _serial = serial();
    // chronyd answers about one request per 4 s per client and drops the rest.
    let script = chronyd("local stratum 8\nratelimit interval 2 burst 1 leak 4", "")
        + r#"
"$BIN" --ntp.min-interval 1s > exporter.log 2>&1 &
EXP=$!
wait_for http://127.0.0.1:10169/metrics 'aws_clock_ntp_up'
i=0
while [ $i -lt 40 ]; do curl -sf --noproxy '*' http://127.0.0.1:10169/metrics > /dev/null; i=$((i+1)); sleep 0.1; done
curl -sf --noproxy '*' http://127.0.0.1:10169/metrics > page.txt
echo "=== metrics"; cat page.txt
stop $EXP $CHRONYD
echo "=== end"
"#;
    let out = in_netns(&script, &[]);
    let m = page(&out.stdout, "metrics");
    let requests = m.get(r#"aws_clock_ntp_requests_total{server="169.254.169.123:123"}"#);
    // ~4-5 s of scraping at a 1 s minimum interval: never more than one request a second.
    assert!(requests <= 7.0, "{requests} NTP requests in ~5 s of scrapes every 100 ms");
}
