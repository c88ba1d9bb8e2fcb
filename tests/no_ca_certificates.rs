//! Regression: without CA certificates (a `FROM scratch` image, a root without
//! `/etc/ssl`) the exporter panicked at start-up ("No CA certificates were
//! loaded from the system"). IMDS is plain HTTP and needs none; only an https
//! credential endpoint does, and that fails per request, with the reason.
//! `SSL_CERT_FILE` and `SSL_CERT_DIR` pointing at an empty directory make the
//! root store empty, as a missing `/etc/ssl` does (the container image test
//! runs without `/etc/ssl` for real). Inside a namespace with the default
//! link-local endpoints, as in tests/netns_defaults.rs.

mod common;

use common::{SH_HELPERS, in_netns};

fn no_roots() -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("none.pem").to_str().unwrap().to_string();
    let d = dir.path().to_str().unwrap().to_string();
    (dir, file, d)
}

#[test]
fn serve_and_check_work_without_ca_certificates() {
    let script = format!(
        r#"{SH_HELPERS}
instance
"$BIN" > exporter.log 2>&1 &
EXP=$!
wait_for http://127.0.0.1:10169/metrics 'aws_imds_up 1'
cat page.txt
stop $EXP
set +e
"$BIN" check > report.txt 2> check.log
echo "check-exit=$?"
set -e
stop $SIM
echo "--- report"; cat report.txt
echo "--- logs"; cat exporter.log check.log
"#
    );
    let (_dir, file, dir) = no_roots();
    let out = in_netns(&script, &[("SSL_CERT_FILE", &file), ("SSL_CERT_DIR", &dir)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("panicked"), "{text}");
    assert!(text.contains(r#"aws_credentials_seconds_until_expiry{provider="instance_profile",role="app-role"}"#), "{text}");
    assert!(text.contains("no CA certificates could be loaded"), "the missing root store is logged: {text}");
    assert_eq!(text.matches("no CA certificates could be loaded").count(), 2, "once by serve, once by check: {text}");
    assert!(text.contains("\nOK   IMDS reachable"), "{text}");
    let code = text.lines().find_map(|l| l.strip_prefix("check-exit=")).expect("exit code");
    assert!(["0", "1"].contains(&code), "check runs its checks (no failure on a healthy instance): {code}\n{text}");
}

#[test]
fn an_https_container_endpoint_without_ca_certificates_fails_per_request() {
    let script = format!(
        r#"{SH_HELPERS}
instance
"$BIN" > exporter.log 2>&1 &
EXP=$!
wait_for http://127.0.0.1:10169/metrics 'aws_credentials_chain_errors_total{{target="self",reason="io"}} [1-9]'
cat page.txt
curl -sf --noproxy '*' http://127.0.0.1:10169/check.json
stop $EXP $SIM
echo "--- log"; cat exporter.log
"#
    );
    let (_dir, file, dir) = no_roots();
    let env =
        [("SSL_CERT_FILE", file.as_str()), ("SSL_CERT_DIR", &dir), ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "https://127.0.0.1:8443/creds")];
    let out = in_netns(&script, &env);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("panicked"), "{text}");
    assert!(text.contains("aws_imds_up 1"), "plain-HTTP IMDS still works: {text}");
    assert!(
        text.contains("IMDS container request not sent: the endpoint is https but no CA certificates could be loaded"),
        "the report says why: {text}"
    );
}
