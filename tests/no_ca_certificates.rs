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
    // The roots are loaded on the first https request only (they cost ~500 KiB
    // of heap): with plain-HTTP endpoints nothing looks for them.
    assert!(!text.contains("no CA certificates could be loaded"), "plain HTTP never loads the roots: {text}");
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
    let log = text.split("--- log").nth(1).expect("log");
    assert_eq!(log.matches("no CA certificates could be loaded").count(), 1, "logged once, at the first https request: {log}");
}

/// The roots are loaded lazily, on the first https request: an https container
/// endpoint (`AWS_CONTAINER_CREDENTIALS_FULL_URI`) signed by a CA that
/// `SSL_CERT_FILE` names still verifies and serves its credentials.
#[test]
fn an_https_container_endpoint_with_ca_certificates_serves_credentials() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let dir = tempfile::tempdir().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "container endpoint CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca_key = KeyPair::generate().unwrap();
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, "127.0.0.1");
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_pem = leaf.signed_by(&leaf_key, &issuer).unwrap().pem();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    std::fs::write(path("ca.pem"), ca_pem).unwrap();
    std::fs::write(path("cert.pem"), leaf_pem).unwrap();
    std::fs::write(path("key.pem"), leaf_key.serialize_pem()).unwrap();
    let expiration = (chrono::Utc::now() + chrono::Duration::hours(6)).format("%Y-%m-%dT%H:%M:%SZ");
    std::fs::write(
        path("creds"),
        format!(r#"{{"AccessKeyId":"ASIAHTTPSCONTAINER01","SecretAccessKey":"s","Token":"t","Expiration":"{expiration}"}}"#),
    )
    .unwrap();
    let server = format!(
        r#"
import http.server, ssl
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = open("{creds}", "rb").read()
        self.send_response(200 if self.path == "/creds" else 404)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
s = http.server.HTTPServer(("127.0.0.1", 8443), H)
c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
c.load_cert_chain("{cert}", "{key}")
s.socket = c.wrap_socket(s.socket, server_side=True)
print("ready", flush=True)
s.serve_forever()
"#,
        creds = path("creds"),
        cert = path("cert.pem"),
        key = path("key.pem"),
    );
    std::fs::write(path("server.py"), server).unwrap();
    let script = format!(
        r#"{SH_HELPERS}
instance
python3 {py} > https.log 2>&1 &
HTTPS=$!
i=0; until grep -q ready https.log || [ $i -gt 50 ]; do i=$((i+1)); sleep 0.1; done
"$BIN" > exporter.log 2>&1 &
EXP=$!
wait_for http://127.0.0.1:10169/metrics 'aws_credentials_active_provider{{target="self",provider="container"}} 1'
cat page.txt
stop $EXP $SIM $HTTPS
echo "--- log"; cat exporter.log https.log
"#,
        py = path("server.py")
    );
    let env = [("SSL_CERT_FILE", path("ca.pem")), ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "https://127.0.0.1:8443/creds".to_string())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = in_netns(&script, &env);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("panicked"), "{text}");
    assert!(!text.contains("no CA certificates could be loaded"), "{text}");
    assert!(
        text.contains(r#"aws_credentials_active_provider{target="self",provider="container"} 1"#),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(r#"aws_credentials_seconds_until_expiry{provider="container",target="self"}"#), "{text}");
}
