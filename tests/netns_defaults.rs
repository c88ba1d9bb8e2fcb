//! The real binary with its *default* endpoints, inside a network namespace
//! the test creates: the simulator listens at the real link-local IMDS
//! addresses on the namespace's loopback, so nothing can leave the machine.

mod common;

use common::{SH_HELPERS, in_netns};

#[test]
fn default_ipv4_endpoint_is_probed_without_a_proxy() {
    let script = format!(
        r#"{SH_HELPERS}
ip link set lo up
ip addr add 169.254.169.254/32 dev lo
"$BIN" simulate --imds.listen 169.254.169.254:80 > sim.log 2>&1 &
SIM=$!
"$BIN" > exporter.log 2>&1 &
EXP=$!
wait_for http://127.0.0.1:10169/metrics 'aws_imds_up 1'
cat page.txt
stop $EXP $SIM
echo "--- exporter log"
cat exporter.log
"#
    );
    let out = in_netns(&script, &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("aws_imds_protocol_version 2"), "{text}");
    assert!(text.contains(r#"aws_credentials_seconds_until_expiry{provider="instance_profile",role="app-role"}"#), "{text}");
    assert!(text.contains("imds=http://169.254.169.254/"), "default endpoint logged: {text}");
}

#[test]
fn ipv6_endpoint_mode_uses_the_ipv6_address() {
    let script = format!(
        r#"{SH_HELPERS}
ip link set lo up
sysctl -qw net.ipv6.conf.lo.disable_ipv6=0 2>/dev/null || true
ip addr add fd00:ec2::254/128 dev lo
"$BIN" simulate --imds.listen '[fd00:ec2::254]:80' > sim.log 2>&1 &
SIM=$!
sleep 0.2
"$BIN" > exporter.log 2>&1 &
EXP=$!
wait_for http://127.0.0.1:10169/metrics 'aws_imds_up 1'
stop $EXP $SIM
cat exporter.log
"#
    );
    let out = in_netns(&script, &[("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv6")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("imds=http://[fd00:ec2::254]/"), "{text}");
}

#[test]
fn check_with_default_endpoints_runs_every_step() {
    let script = r#"
ip link set lo up
ip addr add 169.254.169.254/32 dev lo
ip addr add 169.254.169.123/32 dev lo
"$BIN" simulate --scenario expiring --imds.listen 169.254.169.254:80 --ntp.listen 169.254.169.123:123 > sim.log 2>&1 &
SIM=$!
i=0; until grep -q '^ntp ' sim.log || [ $i -gt 50 ]; do i=$((i+1)); sleep 0.1; done
set +e
"$BIN" check --output json > report.json 2> check.log
echo "exit=$?"
set -e
kill $SIM; wait $SIM || true
cat report.json
"#;
    let out = in_netns(script, &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    let code: i32 = text.lines().next().and_then(|l| l.strip_prefix("exit=")).and_then(|c| c.parse().ok()).expect("exit code");
    let json: serde_json::Value = serde_json::from_str(&text[text.find('{').unwrap()..]).unwrap_or_else(|e| panic!("{e}: {text}"));
    let checks = json["checks"].as_array().unwrap();
    let find = |id: &str, title_has: &str| {
        checks
            .iter()
            .find(|c| c["id"] == id && c["title"].as_str().unwrap().contains(title_has))
            .unwrap_or_else(|| panic!("no {id}: {text}"))
    };
    assert_eq!(find("imds.reachable", "")["status"], "OK");
    assert!(find("imds.reachable", "")["evidence"].as_str().unwrap().contains("IMDSv2"));
    assert_eq!(find("credentials.expiry", "")["status"], "WARN", "the expiring scenario is served at the default address");
    assert_eq!(find("clock.offset", "169.254.169.123:123")["status"], "OK", "{text}");
    assert!(code == 1 || code == 2, "warnings or failures give a non-zero exit code: {code}");
}
