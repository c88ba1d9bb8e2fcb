//! `--web.config.file` (exporter-toolkit format) with certificates made in the
//! test by `rcgen`: TLS scrapes, plain HTTP and failed handshakes that cost
//! only their own connection, client certificates, TLS 1.3 only, basic auth,
//! reloads (passwords and certificates; an invalid file keeps the last valid
//! one), start-up errors, and a real Prometheus scraping over TLS with basic
//! auth. Everything on 127.0.0.1.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use aws_credentials_exporter::http::TLS_HANDSHAKE_TIMEOUT;
use aws_credentials_exporter::sim::ImdsSpec;
use aws_credentials_exporter::webconfig::RELOAD_CHECK_INTERVAL;
use common::stack::{self, assert_none_left, free_port, query};
use common::{BIN, Metrics, Running, exporter_on, sim};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use reqwest::StatusCode;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A certificate authority made for one test.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { pem: cert.pem(), issuer: Issuer::new(params, key) }
    }

    /// A leaf certificate and its key (PEM) for `names`, for a server or a client.
    fn leaf(&self, names: &[&str], purpose: ExtendedKeyUsagePurpose) -> (String, String) {
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.extended_key_usages = vec![purpose];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A directory with a server CA and certificate, a client CA, and the web config file.
struct Pki {
    dir: TempDir,
    server_ca: Ca,
    client_ca: Ca,
}

impl Pki {
    fn new() -> Pki {
        let pki = Pki { dir: tempfile::tempdir().unwrap(), server_ca: Ca::new("server CA"), client_ca: Ca::new("client CA") };
        pki.write_server_cert(&pki.server_ca);
        std::fs::write(pki.path("client-ca.pem"), &pki.client_ca.pem).unwrap();
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// server.pem and server.key, signed by `ca`, for 127.0.0.1 and localhost.
    fn write_server_cert(&self, ca: &Ca) {
        let (cert, key) = ca.leaf(&["127.0.0.1", "localhost"], ExtendedKeyUsagePurpose::ServerAuth);
        std::fs::write(self.path("server.pem"), cert).unwrap();
        std::fs::write(self.path("server.key"), key).unwrap();
    }

    /// Writes web.yml; relative file names resolve against its directory.
    fn write_config(&self, yaml: &str) -> String {
        let path = self.path("web.yml");
        std::fs::write(&path, yaml).unwrap();
        path.display().to_string()
    }

    /// A client that trusts only the server CA and never reuses a connection
    /// (so each request makes a new handshake).
    fn client(&self) -> reqwest::ClientBuilder {
        client_trusting(&self.server_ca)
    }

    /// A client identity (certificate and key, PEM) signed by `ca`.
    fn identity(ca: &Ca) -> reqwest::Identity {
        let (cert, key) = ca.leaf(&["scraper"], ExtendedKeyUsagePurpose::ClientAuth);
        reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap()
    }
}

fn client_trusting(ca: &Ca) -> reqwest::ClientBuilder {
    aws_credentials_exporter::imds::install_tls_provider();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(0)
        .tls_certs_only([reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap()])
}

const TLS: &str = "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n";

fn https(r: &Running, path: &str) -> String {
    format!("https://{}{path}", r.addr)
}

async fn start(config: &str) -> (aws_credentials_exporter::sim::Simulator, Running) {
    let sim = sim(ImdsSpec::default()).await;
    let running = exporter_on(&sim, &["--web.config.file", config]).await;
    (sim, running)
}

fn bcrypt(password: &str) -> String {
    // Cost 4, the minimum: the tests measure behaviour, not hashing time.
    bcrypt::hash(password, 4).unwrap()
}

#[tokio::test]
async fn tls_scrape_works_with_the_ca_and_sets_the_configured_headers() {
    let pki = Pki::new();
    let config = pki
        .write_config(&format!("{TLS}http_server_config:\n  headers:\n    X-Frame-Options: deny\n    X-Content-Type-Options: nosniff\n"));
    let (_sim, r) = start(&config).await;
    let resp = pki.client().build().unwrap().get(https(&r, "/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-frame-options"], "deny");
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    let m = Metrics::parse(&resp.text().await.unwrap());
    assert_eq!(m.get("aws_imds_up"), 1.0);
    assert_eq!(m.get("aws_credentials_exporter_web_config_last_reload_successful"), 1.0);
    let err = client_trusting(&Ca::new("stranger")).build().unwrap().get(https(&r, "/metrics")).send().await.unwrap_err();
    assert!(err.is_connect(), "a client that does not trust the CA fails the handshake: {err:?}");
    r.stop().await;
}

#[tokio::test]
async fn plain_http_and_broken_handshakes_cost_only_their_own_connection() {
    let pki = Pki::new();
    let (_sim, r) = start(&pki.write_config(TLS)).await;
    let tls = pki.client().build().unwrap();

    // Plain HTTP on the TLS port: Go's answer, then the port still serves TLS.
    let resp = common::client().get(r.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.text().await.unwrap().contains("HTTP request to an HTTPS server"));
    assert_eq!(tls.get(https(&r, "/-/healthy")).send().await.unwrap().status(), 200);

    // Garbage that is neither TLS nor HTTP, and a client that says nothing:
    // neither stops the loop from serving others.
    let mut garbage = tokio::net::TcpStream::connect(r.addr).await.unwrap();
    garbage.write_all(&[0xff; 64]).await.unwrap();
    let mut silent = tokio::net::TcpStream::connect(r.addr).await.unwrap();
    let opened = Instant::now();
    for _ in 0..3 {
        assert_eq!(tls.get(https(&r, "/-/healthy")).send().await.unwrap().status(), 200);
    }
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), garbage.read(&mut buf)).await.expect("garbage connection closed").unwrap_or(0);
    assert!(n < buf.len(), "a TLS alert at most, then close");

    // The silent client is dropped when the handshake timeout passes.
    let closed = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT + Duration::from_secs(5), silent.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "silent connection closed by the server: {closed:?}");
    assert!(opened.elapsed() >= TLS_HANDSHAKE_TIMEOUT - Duration::from_millis(100), "closed after the timeout, not before");
    assert_eq!(tls.get(https(&r, "/metrics")).send().await.unwrap().status(), 200);
    r.stop().await;
}

#[tokio::test]
async fn require_and_verify_client_cert_admits_only_certificates_from_client_ca_file() {
    let pki = Pki::new();
    let config = pki.write_config(&format!("{TLS}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: client-ca.pem\n"));
    let (_sim, r) = start(&config).await;

    let err = pki.client().build().unwrap().get(https(&r, "/metrics")).send().await.unwrap_err();
    assert!(err.is_connect() || err.is_request(), "no client certificate: {err:?}");
    let stranger = Pki::identity(&Ca::new("another CA"));
    let err = pki.client().identity(stranger).build().unwrap().get(https(&r, "/metrics")).send().await.unwrap_err();
    assert!(err.is_connect() || err.is_request(), "certificate from another CA: {err:?}");

    let ok = pki.client().identity(Pki::identity(&pki.client_ca)).build().unwrap();
    let resp = ok.get(https(&r, "/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("aws_imds_up 1"));
    r.stop().await;
}

#[tokio::test]
async fn verify_client_cert_if_given_admits_no_certificate_but_not_a_foreign_one() {
    let pki = Pki::new();
    let config = pki.write_config(&format!("{TLS}  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: client-ca.pem\n"));
    let (_sim, r) = start(&config).await;
    assert_eq!(pki.client().build().unwrap().get(https(&r, "/-/healthy")).send().await.unwrap().status(), 200);
    let good = pki.client().identity(Pki::identity(&pki.client_ca)).build().unwrap();
    assert_eq!(good.get(https(&r, "/-/healthy")).send().await.unwrap().status(), 200);
    let foreign = pki.client().identity(Pki::identity(&Ca::new("another CA"))).build().unwrap();
    assert!(foreign.get(https(&r, "/-/healthy")).send().await.is_err());
    r.stop().await;
}

#[tokio::test]
async fn min_version_tls13_rejects_a_tls12_only_client() {
    let pki = Pki::new();
    let (_sim, r) = start(&pki.write_config(&format!("{TLS}  min_version: TLS13\n"))).await;
    let tls12 = pki.client().tls_version_max(reqwest::tls::Version::TLS_1_2).build().unwrap();
    let err = tls12.get(https(&r, "/metrics")).send().await.unwrap_err();
    assert!(err.is_connect() || err.is_request(), "{err:?}");
    let tls13 = pki.client().tls_version_min(reqwest::tls::Version::TLS_1_3).build().unwrap();
    assert_eq!(tls13.get(https(&r, "/metrics")).send().await.unwrap().status(), 200);
    r.stop().await;

    // And the reverse: max_version TLS12 admits a TLS 1.2 client only.
    let (_sim, r) = start(&pki.write_config(&format!("{TLS}  max_version: TLS12\n"))).await;
    let tls12 = pki.client().tls_version_max(reqwest::tls::Version::TLS_1_2).build().unwrap();
    assert_eq!(tls12.get(https(&r, "/metrics")).send().await.unwrap().status(), 200);
    let tls13 = pki.client().tls_version_min(reqwest::tls::Version::TLS_1_3).build().unwrap();
    assert!(tls13.get(https(&r, "/metrics")).send().await.is_err());
    r.stop().await;
}

#[tokio::test]
async fn basic_auth_protects_every_path() {
    let pki = Pki::new();
    let config = pki.write_config(&format!("basic_auth_users:\n  prometheus: '{}'\n  other: '{}'\n", bcrypt("s3cret"), bcrypt("else")));
    let (_sim, r) = start(&config).await;
    let c = common::client();
    for path in ["/metrics", "/", "/-/healthy", "/check.json", "/nope"] {
        let resp = c.get(r.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{path} without credentials");
        assert_eq!(resp.headers()["www-authenticate"], "Basic realm=\"aws-credentials-exporter\"");
    }
    for (user, password, want) in [
        ("prometheus", "wrong", 401),
        ("prometheus", "", 401),
        ("nobody", "s3cret", 401),
        ("other", "s3cret", 401),
        ("Prometheus", "s3cret", 401),
        ("prometheus", "s3cret", 200),
        ("prometheus", "s3cret", 200),
    ] {
        let resp = c.get(r.url("/metrics")).basic_auth(user, Some(password)).send().await.unwrap();
        assert_eq!(resp.status(), want, "{user}:{password}");
    }
    let resp = c.get(r.url("/metrics")).header("authorization", "Bearer abc").send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = c.get(r.url("/-/healthy")).basic_auth("other", Some("else")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    r.stop().await;
}

/// Polls `f` until it holds, for at most a few reload intervals.
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + RELOAD_CHECK_INTERVAL * 5;
    while !f().await {
        assert!(Instant::now() < until, "{what} within {:?}", RELOAD_CHECK_INTERVAL * 5);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The status of a GET with the password, 0 when the request fails (TLS).
async fn status(url: &str, client: &reqwest::Client, password: &str) -> u16 {
    client.get(url).basic_auth("prometheus", Some(password)).send().await.map(|r| r.status().as_u16()).unwrap_or(0)
}

async fn reload_metric(url: &str, client: &reqwest::Client, password: &str) -> f64 {
    let text = client.get(url).basic_auth("prometheus", Some(password)).send().await.unwrap().text().await.unwrap();
    Metrics::parse(&text).get("aws_credentials_exporter_web_config_last_reload_successful")
}

#[tokio::test]
async fn changed_files_are_picked_up_and_an_invalid_version_keeps_the_last_valid_one() {
    let pki = Pki::new();
    let users = |password: &str| format!("{TLS}basic_auth_users:\n  prometheus: '{}'\n", bcrypt(password));
    let (_sim, r) = start(&pki.write_config(&users("one"))).await;
    let url = https(&r, "/metrics");
    let c = pki.client().build().unwrap();
    assert_eq!(status(&url, &c, "one").await, 200);

    // A new password applies to the next request.
    pki.write_config(&users("two"));
    eventually("the new password is accepted", || async { status(&url, &c, "two").await == 200 }).await;
    assert_eq!(status(&url, &c, "one").await, 401, "the old one no longer is");

    // An invalid version: logged, the metric says so, the last valid one stays.
    pki.write_config(&format!("{TLS}basic_auth_users:\n  prometheus: not-a-hash\n"));
    eventually("the failed reload is reported", || async { reload_metric(&url, &c, "two").await == 0.0 }).await;
    assert_eq!(status(&url, &c, "two").await, 200);
    pki.write_config("tls_server_config: [unclosed");
    tokio::time::sleep(RELOAD_CHECK_INTERVAL * 2).await;
    assert_eq!(status(&url, &c, "two").await, 200, "still the last valid configuration");
    // Switching TLS off needs a restart, so it is refused like an invalid file.
    pki.write_config(&format!("basic_auth_users:\n  prometheus: '{}'\n", bcrypt("three")));
    tokio::time::sleep(RELOAD_CHECK_INTERVAL * 2).await;
    assert_eq!(status(&url, &c, "two").await, 200);
    assert_eq!(reload_metric(&url, &c, "two").await, 0.0);

    // A valid version again.
    pki.write_config(&users("four"));
    eventually("the fixed file is loaded", || async { status(&url, &c, "four").await == 200 }).await;
    assert_eq!(reload_metric(&url, &c, "four").await, 1.0);

    // Certificate rotation: the same file names, new contents, a new CA.
    let rotated = Ca::new("rotated server CA");
    pki.write_server_cert(&rotated);
    let new_client = client_trusting(&rotated).build().unwrap();
    eventually("new connections get the rotated certificate", || async { status(&url, &new_client, "four").await == 200 }).await;
    assert_eq!(status(&url, &c, "four").await, 0, "the old CA no longer verifies the server");
    r.stop().await;
}

#[test]
fn invalid_config_at_start_up_is_a_clear_error_naming_the_file_and_the_field() {
    let pki = Pki::new();
    let cases = [
        (format!("{TLS}  client_auth_type: Sometimes\n"), "tls_server_config.client_auth_type"),
        (format!("{TLS}  min_version: TLS11\n"), "tls_server_config.min_version"),
        ("tls_server_config:\n  cert_file: missing.pem\n  key_file: server.key\n".to_string(), "tls_server_config.cert_file"),
        ("tls_server_config:\n  cert_file: server.pem\n  key_file: client-ca.pem\n".to_string(), "tls_server_config.key_file"),
        (format!("{TLS}  client_auth_type: RequireAndVerifyClientCert\n"), "tls_server_config.client_ca_file"),
        ("basic_auth_users:\n  prometheus: plaintext\n".to_string(), "basic_auth_users.prometheus"),
        ("basic_auth_user:\n  prometheus: x\n".to_string(), "unknown field `basic_auth_user`"),
    ];
    for (yaml, field) in cases {
        let config = pki.write_config(&yaml);
        // `demo`: the exporter's endpoints are the simulator's, on loopback.
        let out = std::process::Command::new(BIN)
            .args(["demo", "--web.listen-address", "127.0.0.1:0", "--web.config.file", &config])
            .env_clear()
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{yaml:?} must not start");
        assert!(err.contains(&config) && err.contains(field), "{yaml:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("metrics:"), "failed before serving");
    }
    let missing = pki.path("nope.yml").display().to_string();
    let out = std::process::Command::new(BIN)
        .args(["demo", "--web.listen-address", "127.0.0.1:0", "--web.config.file", &missing])
        .env_clear()
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(&missing) && err.contains("cannot read"), "{err}");
}

fn prometheus_config(pki: &Pki, port: u16, password: &str) -> String {
    format!(
        r#"global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: aws-credentials-exporter
    scheme: https
    tls_config:
      ca_file: {ca}
    basic_auth:
      username: prometheus
      password: {password}
    static_configs:
      - targets: ['127.0.0.1:{port}']
"#,
        ca = pki.path("ca.pem").display()
    )
}

/// Waits until `url` answers 200 over TLS with the password.
async fn wait_tls_ready(proc: &mut stack::Proc, client: &reqwest::Client, url: &str, password: &str) {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        proc.assert_running();
        if let Ok(r) = client.get(url).basic_auth("prometheus", Some(password)).send().await
            && r.status() == 200
        {
            return;
        }
        assert!(Instant::now() < until, "{} not ready at {url}:\n{}", proc.name, proc.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn prometheus_scrapes_the_demo_over_tls_with_basic_auth() {
    let pki = Pki::new();
    std::fs::write(pki.path("ca.pem"), &pki.server_ca.pem).unwrap();
    let password = "scrape-pass";
    let config = pki.write_config(&format!("{TLS}basic_auth_users:\n  prometheus: '{}'\n", bcrypt(password)));
    let run = tempfile::tempdir().unwrap();
    let (demo_port, prom_port) = (free_port(), free_port());
    let mut demo = stack::demo(run.path(), "healthy", demo_port, &["--web.config.file", &config]);
    let client = pki.client().build().unwrap();
    wait_tls_ready(&mut demo, &client, &format!("https://127.0.0.1:{demo_port}/-/healthy"), password).await;
    let mut prometheus = stack::prometheus(run.path(), &prometheus_config(&pki, demo_port, password), prom_port);
    let prom = format!("http://127.0.0.1:{prom_port}");
    stack::wait_ready(&mut prometheus, &format!("{prom}/-/ready"), Duration::from_secs(60)).await;

    let until = Instant::now() + Duration::from_secs(60);
    loop {
        prometheus.assert_running();
        demo.assert_running();
        let up = query(&prom, r#"up{job="aws-credentials-exporter"}"#).await;
        if up.first().is_some_and(|s| s["value"][1] == "1") {
            break;
        }
        let targets = stack::get_json(&format!("{prom}/api/v1/targets")).await;
        assert!(Instant::now() < until, "target not up within 60 s: {up:?}\n{targets}\n{}", prometheus.log());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let imds_up = query(&prom, r#"aws_imds_up{job="aws-credentials-exporter"}"#).await;
    assert_eq!(imds_up[0]["value"][1], "1", "the exporter's own series arrived over TLS: {imds_up:?}");

    prometheus.stop();
    demo.stop();
    assert_none_left(run.path());
}

#[test]
fn the_readme_example_is_a_valid_web_config() {
    let readme = std::fs::read_to_string(stack::repo("README.md")).unwrap();
    let security = &readme[readme.find("## Security").expect("README has a Security section")..];
    let start = security.find("```yaml\n").unwrap() + "```yaml\n".len();
    let example = &security[start..start + security[start..].find("```").unwrap()];
    let pki = Pki::new();
    let config = pki.write_config(example);
    let loaded = aws_credentials_exporter::webconfig::WebConfigFile::load(std::path::Path::new(&config)).unwrap_or_else(|e| panic!("{e}"));
    let current = loaded.current();
    assert!(loaded.tls_enabled() && current.auth().is_some() && current.headers().len() == 3, "{current:?}");
}
