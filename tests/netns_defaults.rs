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
