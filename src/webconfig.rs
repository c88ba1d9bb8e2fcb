//! `--web.config.file`: the web configuration file of Prometheus'
//! exporter-toolkit (TLS, client certificates, basic authentication, extra
//! response headers), parsed, validated, turned into a rustls `ServerConfig`,
//! and re-read when it or a file it names changes.
//!
//! Format: exporter-toolkit `docs/web-configuration.md`. Unknown fields are
//! errors, as with the toolkit's strict YAML decoding. Fields the toolkit has
//! but this exporter does not implement (`cipher_suites`, `curve_preferences`,
//! `client_allowed_sans`, `rate_limit`) are errors too, not silently ignored:
//! ignoring `client_allowed_sans` would let in clients the file keeps out.
//! `http2` and `prefer_server_cipher_suites` are accepted and ignored (the
//! server speaks HTTP/1.1; Go ignores the latter since 1.18).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use hyper::header::{HeaderName, HeaderValue};
use ring::{digest, hmac};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme, SupportedProtocolVersion};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::fsread;
use crate::secret::Secret;

/// How often the file, and the certificate files it names, are checked for
/// changes (a `stat` each; the files are re-read only when one changed).
pub const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Realm of the `WWW-Authenticate` challenge.
pub const REALM: &str = "aws-credentials-exporter";

/// Successful verifications remembered, so that a scrape every second does not
/// cost a bcrypt each time (exporter-toolkit caches them too).
const AUTH_CACHE_CAPACITY: usize = 64;

/// Failed verifications remembered (kept apart from the successes, so that a
/// flood of wrong passwords cannot push a valid user's entry out): the same
/// wrong password sent again costs no bcrypt.
const AUTH_FAILURE_CACHE_CAPACITY: usize = 1024;

/// Verifications waiting at most; live requests are fewer (one per open
/// connection, `--web.max-connections`), abandoned ones are purged first.
const AUTH_MAX_WAITING: usize = 1024;

/// Costs bcrypt accepts (the crate's limits; Go's x/crypto/bcrypt has the same).
const BCRYPT_COSTS: std::ops::RangeInclusive<u32> = 4..=31;

/// An invalid web configuration: which file, which field, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebConfigError {
    /// The configuration file (`--web.config.file`).
    pub path: PathBuf,
    /// The field at fault, e.g. `tls_server_config.cert_file`; empty when the
    /// YAML itself is invalid (the parser's message then names the field).
    pub field: String,
    /// What is wrong and what is expected.
    pub reason: String,
}

impl fmt::Display for WebConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "--web.config.file {}: ", self.path.display())?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.reason)
    }
}

impl std::error::Error for WebConfigError {}

/// A field and what is wrong with it, before the file's path is attached.
#[derive(Debug)]
struct Bad {
    field: String,
    reason: String,
}

fn bad(field: &str, reason: impl Into<String>) -> Bad {
    Bad { field: field.to_string(), reason: reason.into() }
}

// ---------------------------------------------------------------------------
// The file as written (exporter-toolkit web/tls_config.go `Config`).

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFile {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<RawHttp>,
    basic_auth_users: Option<BTreeMap<String, Secret>>,
    rate_limit: Option<serde_norway::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Option<String>,
    key: Option<Secret>,
    client_ca: Option<String>,
    cert_file: Option<String>,
    key_file: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    client_allowed_sans: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    #[allow(dead_code, reason = "accepted and ignored, as Go does since 1.18")]
    prefer_server_cipher_suites: Option<bool>,
    curve_preferences: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[allow(dead_code, reason = "accepted and ignored: the server speaks HTTP/1.1")]
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

/// An empty string means "not set", as in Go.
fn set(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

impl RawTls {
    /// exporter-toolkit `TLSConfig.IsEnabled`: any TLS field but the versions turns TLS on.
    fn enabled(&self) -> bool {
        [&self.cert, &self.client_ca, &self.cert_file, &self.key_file, &self.client_auth_type, &self.client_ca_file]
            .into_iter()
            .any(|v| set(v).is_some())
            || self.key.as_ref().is_some_and(|k| !k.expose().is_empty())
    }

    /// The files this section names, relative paths resolved against `dir`
    /// (exporter-toolkit `SetDirectory`).
    fn files(&self, dir: &Path) -> Vec<PathBuf> {
        [&self.cert_file, &self.key_file, &self.client_ca_file].into_iter().filter_map(|v| set(v).map(|p| dir.join(p))).collect()
    }
}

// ---------------------------------------------------------------------------
// One validated version of the file.

/// A validated web configuration.
pub struct WebConfig {
    tls: Option<Arc<ServerConfig>>,
    auth: Option<BasicAuth>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("basic_auth_users", &self.auth.as_ref().map_or(0, |a| a.users.len()))
            .field("headers", &self.headers)
            .finish()
    }
}

impl WebConfig {
    /// The rustls configuration, when the file enables TLS.
    pub fn tls(&self) -> Option<&Arc<ServerConfig>> {
        self.tls.as_ref()
    }

    /// Basic authentication, when the file lists users.
    pub fn auth(&self) -> Option<&BasicAuth> {
        self.auth.as_ref()
    }

    /// Headers added to every response (`http_server_config.headers`).
    pub fn headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.headers
    }

    /// Parses and validates `text`, reading the files it names relative to `dir`.
    fn build(raw: RawFile, dir: &Path) -> Result<WebConfig, Bad> {
        if raw.rate_limit.is_some() {
            return Err(bad("rate_limit", "not supported by aws-credentials-exporter; remove it"));
        }
        if let Some(t) = &raw.tls_server_config {
            unsupported(t)?;
            // Checked even when TLS stays off (versions alone do not turn it on).
            versions(t)?;
        }
        let tls = match &raw.tls_server_config {
            Some(t) if t.enabled() => Some(Arc::new(build_tls(t, dir)?)),
            _ => None,
        };
        let headers = match raw.http_server_config.as_ref().and_then(|h| h.headers.as_ref()) {
            Some(h) => headers(h)?,
            None => Vec::new(),
        };
        let auth = match raw.basic_auth_users {
            Some(users) if !users.is_empty() => Some(BasicAuth::new(users)?),
            _ => None,
        };
        Ok(WebConfig { tls, auth, headers })
    }
}

/// exporter-toolkit web/handler.go `extraHTTPHeaders`: the headers that may be
/// set, and their allowed values where the set is closed.
const EXTRA_HEADERS: &[(&str, &[&str])] = &[
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

fn headers(configured: &BTreeMap<String, String>) -> Result<Vec<(HeaderName, HeaderValue)>, Bad> {
    let mut out = Vec::new();
    for (name, value) in configured {
        let field = format!("http_server_config.headers.{name}");
        let Some((_, allowed)) = EXTRA_HEADERS.iter().find(|(n, _)| n == name) else {
            let names: Vec<&str> = EXTRA_HEADERS.iter().map(|(n, _)| *n).collect();
            return Err(bad(&field, format!("this header cannot be configured; expected one of {}", names.join(", "))));
        };
        if value.is_empty() {
            continue; // "Unset if blank."
        }
        if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
            return Err(bad(&field, format!("invalid value {value:?}; expected one of {}", allowed.join(", "))));
        }
        let value = HeaderValue::from_str(value).map_err(|_| bad(&field, "not a valid header value"))?;
        out.push((HeaderName::from_bytes(name.as_bytes()).expect("names in EXTRA_HEADERS are valid"), value));
    }
    Ok(out)
}

/// `client_auth_type` (Go's `tls.ClientAuthType` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientAuth {
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

impl ClientAuth {
    fn parse(value: Option<&str>) -> Result<Self, Bad> {
        Ok(match value {
            None | Some("NoClientCert") => Self::NoClientCert,
            Some("RequestClientCert") => Self::RequestClientCert,
            // "RequireClientCert": kept by exporter-toolkit for backwards compatibility.
            Some("RequireAnyClientCert" | "RequireClientCert") => Self::RequireAnyClientCert,
            Some("VerifyClientCertIfGiven") => Self::VerifyClientCertIfGiven,
            Some("RequireAndVerifyClientCert") => Self::RequireAndVerifyClientCert,
            Some(other) => {
                return Err(bad(
                    "tls_server_config.client_auth_type",
                    format!(
                        "unknown value {other:?}; expected NoClientCert, RequestClientCert, RequireAnyClientCert, \
                         VerifyClientCertIfGiven or RequireAndVerifyClientCert"
                    ),
                ));
            }
        })
    }
}

fn version(field: &str, value: Option<&str>, default: u8) -> Result<u8, Bad> {
    match value {
        None => Ok(default),
        Some("TLS12") => Ok(12),
        Some("TLS13") => Ok(13),
        Some("TLS10" | "TLS11") => Err(bad(field, "TLS 1.0 and 1.1 are not supported (rustls); use TLS12 or TLS13")),
        Some(other) => Err(bad(field, format!("unknown TLS version {other:?}; expected TLS12 or TLS13"))),
    }
}

/// Fields of exporter-toolkit this exporter does not implement: errors, not ignored.
fn unsupported(t: &RawTls) -> Result<(), Bad> {
    for (field, value) in [
        ("tls_server_config.cipher_suites", &t.cipher_suites),
        ("tls_server_config.curve_preferences", &t.curve_preferences),
        ("tls_server_config.client_allowed_sans", &t.client_allowed_sans),
    ] {
        if value.as_ref().is_some_and(|v| !v.is_empty()) {
            return Err(bad(field, "not supported by aws-credentials-exporter; remove it"));
        }
    }
    Ok(())
}

/// The protocol versions between `min_version` (default TLS12) and `max_version` (default TLS13).
fn versions(t: &RawTls) -> Result<Vec<&'static SupportedProtocolVersion>, Bad> {
    let min = version("tls_server_config.min_version", set(&t.min_version), 12)?;
    let max = version("tls_server_config.max_version", set(&t.max_version), 13)?;
    if min > max {
        return Err(bad("tls_server_config.min_version", "is greater than max_version"));
    }
    Ok([(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
        .into_iter()
        .filter(|(v, _)| (min..=max).contains(v))
        .map(|(_, p)| p)
        .collect())
}

/// PEM text from an inline field or a file field (never both).
fn pem_source(
    inline_field: &str,
    inline: Option<&str>,
    file_field: &str,
    file: Option<&str>,
    dir: &Path,
) -> Result<Option<(String, Vec<u8>)>, Bad> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(bad(file_field, format!("set either {inline_field} or {file_field}, not both"))),
        (Some(text), None) => Ok(Some((inline_field.to_string(), text.as_bytes().to_vec()))),
        (None, Some(f)) => {
            let path = dir.join(f);
            let mut data = fsread::read(&path, fsread::MAX_CONFIG_FILE)
                .map_err(|e| bad(file_field, format!("cannot read {}: {e}", path.display())))?;
            Ok(Some((file_field.to_string(), std::mem::take(&mut *data))))
        }
        (None, None) => Ok(None),
    }
}

fn build_tls(t: &RawTls, dir: &Path) -> Result<ServerConfig, Bad> {
    let versions = versions(t)?;
    let auth = ClientAuth::parse(set(&t.client_auth_type))?;
    let key_inline = t.key.as_ref().map(Secret::expose).filter(|k| !k.is_empty());
    let Some((cert_field, cert_pem)) =
        pem_source("tls_server_config.cert", set(&t.cert), "tls_server_config.cert_file", set(&t.cert_file), dir)?
    else {
        return Err(bad("tls_server_config.cert_file", "missing: TLS needs cert_file (or cert) and key_file (or key)"));
    };
    let Some((key_field, key_pem)) = pem_source("tls_server_config.key", key_inline, "tls_server_config.key_file", set(&t.key_file), dir)?
    else {
        return Err(bad("tls_server_config.key_file", "missing: TLS needs cert_file (or cert) and key_file (or key)"));
    };
    let key_pem = Zeroizing::new(key_pem);
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&cert_field, format!("invalid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(bad(&cert_field, "no CERTIFICATE block found"));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| bad(&key_field, format!("no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}")))?;

    let ca = pem_source("tls_server_config.client_ca", set(&t.client_ca), "tls_server_config.client_ca_file", set(&t.client_ca_file), dir)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| bad("tls_server_config.min_version", e.to_string()))?;
    let builder = match (auth, ca) {
        (ClientAuth::NoClientCert, None) => builder.with_no_client_auth(),
        // exporter-toolkit: "client CA's have been configured without a Client Auth Policy".
        (ClientAuth::NoClientCert, Some((field, _))) => {
            return Err(bad(&field, "set, but client_auth_type is NoClientCert; set client_auth_type: RequireAndVerifyClientCert"));
        }
        // These two ask for a certificate but do not check who issued it (Go's
        // semantics): the CA, if given, is not used.
        (ClientAuth::RequestClientCert | ClientAuth::RequireAnyClientCert, _) => {
            builder.with_client_cert_verifier(Arc::new(AnyClientCert {
                mandatory: auth == ClientAuth::RequireAnyClientCert,
                algorithms: provider.signature_verification_algorithms,
            }))
        }
        (ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert, None) => {
            return Err(bad(
                "tls_server_config.client_ca_file",
                format!("missing: client_auth_type {auth:?} verifies client certificates against client_ca_file (or client_ca)"),
            ));
        }
        (ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert, Some((field, pem))) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| bad(&field, format!("invalid PEM: {e}")))?;
                roots.add(cert).map_err(|e| bad(&field, format!("not a usable CA certificate: {e}")))?;
            }
            if roots.is_empty() {
                return Err(bad(&field, "no CERTIFICATE block found"));
            }
            let mut verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            if auth == ClientAuth::VerifyClientCertIfGiven {
                verifier = verifier.allow_unauthenticated();
            }
            builder.with_client_cert_verifier(verifier.build().map_err(|e| bad(&field, e.to_string()))?)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| bad(&key_field, format!("cannot be used with the certificate in {cert_field}: {e}")))?;
    // HTTP/1.1 only: a client offering h2 and http/1.1 (Prometheus) gets http/1.1.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// `RequestClientCert` / `RequireAnyClientCert`: a certificate is asked for
/// (and, when `mandatory`, required) but its issuer is not checked. Only the
/// handshake signature is verified, proving the client holds the key.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

// ---------------------------------------------------------------------------
// Basic authentication.

/// `basic_auth_users`: user names and bcrypt hashes.
pub struct BasicAuth {
    users: Vec<User>,
    /// Checked for unknown user names, so that they cost as much as a known
    /// one (no user enumeration by timing): the costliest configured hash.
    decoy: Secret,
    cache_key: hmac::Key,
    /// Runs the bcrypt verifications, one at a time, and remembers their results.
    verifier: Arc<Verifier>,
}

/// One bcrypt verification at a time (it is CPU-bound; exporter-toolkit's
/// `bcryptMtx`), on one blocking thread that runs until nothing waits: a
/// verification started always finishes and its result is remembered, even
/// when its request went away, and a cancelled request can neither free the
/// slot early nor start a second verification.
///
/// The newest waiting request runs next (LIFO): a valid user who arrives
/// during a flood of wrong passwords waits for at most the verification in
/// progress, not for the whole queue; flooding clients that wait for their
/// answers re-enter only as fast as verifications complete. A request
/// abandoned before its turn is skipped. What an attacker can still do: with
/// more new wrong passwords per second than bcrypt verifies, from many
/// connections that do not wait for answers, delay a *first* login (cached
/// logins, every scrape after the first, are unaffected).
#[derive(Default)]
struct Verifier {
    state: Mutex<VerifierState>,
}

#[derive(Default)]
struct VerifierState {
    /// Whether the blocking thread is running.
    running: bool,
    /// Newest last.
    waiting: Vec<Job>,
    /// Keyed hashes of (user, hash, password) triples: verified ...
    succeeded: HashSet<[u8; 32]>,
    /// ... and refused (bcrypt gives the same answer for the same triple).
    failed: HashSet<[u8; 32]>,
}

struct Job {
    key: [u8; 32],
    password: SecretBytes,
    hash: Secret,
    /// False for an unknown user (checked against the decoy: never admitted).
    known: bool,
    reply: tokio::sync::oneshot::Sender<bool>,
}

impl VerifierState {
    fn cached(&self, key: &[u8; 32]) -> Option<bool> {
        if self.succeeded.contains(key) {
            Some(true)
        } else if self.failed.contains(key) {
            Some(false)
        } else {
            None
        }
    }

    fn remember(&mut self, key: [u8; 32], ok: bool) {
        let (set, capacity) = if ok { (&mut self.succeeded, AUTH_CACHE_CAPACITY) } else { (&mut self.failed, AUTH_FAILURE_CACHE_CAPACITY) };
        if set.len() >= capacity {
            set.clear();
        }
        set.insert(key);
    }
}

impl Verifier {
    fn lock(&self) -> std::sync::MutexGuard<'_, VerifierState> {
        self.state.lock().expect("auth verifier lock")
    }

    /// The blocking thread: verifies the newest waiting job until none is left.
    fn run(&self) {
        loop {
            let job = {
                let mut state = self.lock();
                loop {
                    let Some(job) = state.waiting.pop() else {
                        state.running = false;
                        return;
                    };
                    if job.reply.is_closed() {
                        continue; // its request went away before its turn
                    }
                    // The same credentials may have been verified since it was queued.
                    match state.cached(&job.key) {
                        Some(ok) => {
                            let _ = job.reply.send(ok);
                        }
                        None => break job,
                    }
                }
            };
            // Verified for unknown users too: they must cost as much as known ones.
            let verified = bcrypt::verify(&*job.password, job.hash.expose()).unwrap_or(false);
            let ok = verified && job.known;
            self.lock().remember(job.key, ok);
            let _ = job.reply.send(ok);
        }
    }
}

struct User {
    name_digest: digest::Digest,
    hash: Secret,
}

impl BasicAuth {
    fn new(users: BTreeMap<String, Secret>) -> Result<Self, Bad> {
        let mut out = Vec::new();
        let mut decoy: Option<(u32, Secret)> = None;
        for (name, hash) in users {
            let field = format!("basic_auth_users.{name}");
            if name.contains(':') {
                return Err(bad(&field, "a user name cannot contain ':' (HTTP basic authentication)"));
            }
            let parts: bcrypt::HashParts = hash
                .expose()
                .parse()
                .map_err(|e| bad(&field, format!("not a bcrypt hash ({e}); create one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`")))?;
            let cost = parts.get_cost();
            if !BCRYPT_COSTS.contains(&cost) {
                return Err(bad(&field, format!("bcrypt cost {cost} is outside 4..=31")));
            }
            if decoy.as_ref().is_none_or(|(c, _)| cost > *c) {
                decoy = Some((cost, hash.clone()));
            }
            out.push(User { name_digest: digest::digest(&digest::SHA256, name.as_bytes()), hash });
        }
        let decoy = decoy.map(|(_, h)| h).expect("called with at least one user");
        let rng = ring::rand::SystemRandom::new();
        let cache_key = hmac::Key::generate(hmac::HMAC_SHA256, &rng).map_err(|_| bad("basic_auth_users", "no randomness available"))?;
        Ok(BasicAuth { users: out, decoy, cache_key, verifier: Arc::default() })
    }

    /// The hash of `user`, comparing against every configured name without
    /// stopping at a match, on digests of equal length.
    fn find(&self, user: &[u8]) -> Option<&Secret> {
        let probe = digest::digest(&digest::SHA256, user);
        let mut found = None;
        for u in &self.users {
            if bool::from(u.name_digest.as_ref().ct_eq(probe.as_ref())) {
                found = Some(&u.hash);
            }
        }
        found
    }

    fn cache_key(&self, user: &[u8], hash: &str, password: &[u8]) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.cache_key);
        for part in [user, hash.as_bytes(), password] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        ctx.sign().as_ref().try_into().expect("HMAC-SHA256 is 32 bytes")
    }

    /// Whether `authorization` (the request's header) carries the password of
    /// a configured user.
    pub async fn check(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some((user, password)) = authorization.and_then(|v| parse_basic(v.as_bytes())) else {
            return false;
        };
        let (hash, known) = match self.find(&user) {
            Some(h) => (h.clone(), true),
            None => (self.decoy.clone(), false),
        };
        let key = self.cache_key(&user, hash.expose(), &password);
        let reply = {
            let mut state = self.verifier.lock();
            if let Some(ok) = state.cached(&key) {
                return ok;
            }
            if state.waiting.len() >= AUTH_MAX_WAITING {
                state.waiting.retain(|j| !j.reply.is_closed());
                if state.waiting.len() >= AUTH_MAX_WAITING {
                    state.waiting.remove(0); // the oldest is refused
                }
            }
            let (reply, answer) = tokio::sync::oneshot::channel();
            state.waiting.push(Job { key, password, hash, known, reply });
            if !state.running {
                state.running = true;
                let verifier = self.verifier.clone();
                tokio::task::spawn_blocking(move || verifier.run());
            }
            answer
        };
        reply.await.unwrap_or(false)
    }
}

/// Bytes zeroed on drop (a password, or a user name next to it).
type SecretBytes = Zeroizing<Vec<u8>>;

/// `Basic base64(user:password)` (RFC 7617); the scheme is case-insensitive.
fn parse_basic(header: &[u8]) -> Option<(SecretBytes, SecretBytes)> {
    let header = std::str::from_utf8(header).ok()?.trim();
    let (scheme, credentials) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = Zeroizing::new(base64::engine::general_purpose::STANDARD.decode(credentials.trim()).ok()?);
    let colon = decoded.iter().position(|&b| b == b':')?;
    Some((Zeroizing::new(decoded[..colon].to_vec()), Zeroizing::new(decoded[colon + 1..].to_vec())))
}

// ---------------------------------------------------------------------------
// The file on disk, re-read when it changes.

/// `(modified, size, inode)` of each watched file; `None` when it cannot be read.
type Fingerprint = Vec<Option<(SystemTime, u64, u64)>>;

fn fingerprint(files: &[PathBuf]) -> Fingerprint {
    // `metadata` follows symlinks: a Kubernetes secret volume swaps a symlink.
    files.iter().map(|f| std::fs::metadata(f).ok().map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len(), m.ino()))).collect()
}

/// One reading of the file: the files it depends on, their state before they
/// were read, and the result.
struct Reading {
    files: Vec<PathBuf>,
    fingerprint: Fingerprint,
    config: Result<WebConfig, WebConfigError>,
}

fn read(path: &Path) -> Reading {
    let err = |b: Bad| WebConfigError { path: path.to_path_buf(), field: b.field, reason: b.reason };
    let mut files = vec![path.to_path_buf()];
    // Each file is looked at before it is read: a write that lands in between
    // changes the fingerprint, and the next check reads the file again.
    let mut fp = fingerprint(&files);
    let config = (|| {
        let text = fsread::read_to_string(path, fsread::MAX_CONFIG_FILE).map_err(|e| bad("", format!("cannot read: {e}")))?;
        // An empty file (or only comments) configures nothing, as in exporter-toolkit.
        let raw: RawFile = if text.lines().all(|l| l.trim().is_empty() || l.trim_start().starts_with('#')) {
            RawFile::default()
        } else {
            serde_norway::from_str(&text).map_err(|e| bad("", e.to_string()))?
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        if let Some(t) = &raw.tls_server_config {
            let named = t.files(dir);
            fp.extend(fingerprint(&named));
            files.extend(named);
        }
        WebConfig::build(raw, dir)
    })()
    .map_err(err);
    Reading { files, fingerprint: fp, config }
}

struct Watch {
    checked_at: Instant,
    files: Vec<PathBuf>,
    fingerprint: Fingerprint,
}

/// `--web.config.file`: the last valid configuration, re-read when the file
/// or a file it names changes. An invalid new version is logged and the last
/// valid one stays in force.
pub struct WebConfigFile {
    path: PathBuf,
    tls: bool,
    current: RwLock<Arc<WebConfig>>,
    watch: Mutex<Watch>,
    last_reload_ok: AtomicBool,
}

impl fmt::Debug for WebConfigFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebConfigFile").field("path", &self.path).field("current", &*self.current.read().expect("web config lock")).finish()
    }
}

/// State of the web configuration for the metrics page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebConfigStatus {
    /// Whether the last reading of the file was valid (and is in force).
    pub last_reload_successful: bool,
}

impl WebConfigFile {
    /// Reads and validates the file at start-up.
    pub fn load(path: &Path) -> Result<Self, WebConfigError> {
        let r = read(path);
        let config = r.config?;
        Ok(WebConfigFile {
            path: path.to_path_buf(),
            tls: config.tls.is_some(),
            current: RwLock::new(Arc::new(config)),
            watch: Mutex::new(Watch { checked_at: Instant::now(), files: r.files, fingerprint: r.fingerprint }),
            last_reload_ok: AtomicBool::new(true),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the server speaks TLS; fixed at start-up.
    pub fn tls_enabled(&self) -> bool {
        self.tls
    }

    /// For the metrics page.
    pub fn status(&self) -> WebConfigStatus {
        WebConfigStatus { last_reload_successful: self.last_reload_ok.load(Ordering::Relaxed) }
    }

    /// The configuration in force, after re-reading the file if a watched
    /// file changed (checked at most every [`RELOAD_CHECK_INTERVAL`]).
    pub fn current(&self) -> Arc<WebConfig> {
        self.maybe_reload();
        self.current.read().expect("web config lock").clone()
    }

    fn maybe_reload(&self) {
        // Whoever holds the lock does the check; everyone else uses the current config.
        let Ok(mut watch) = self.watch.try_lock() else { return };
        if watch.checked_at.elapsed() < RELOAD_CHECK_INTERVAL {
            return;
        }
        watch.checked_at = Instant::now();
        if fingerprint(&watch.files) == watch.fingerprint {
            return;
        }
        self.reload_locked(&mut watch);
    }

    /// Re-reads the file now, changed or not (SIGHUP, as Prometheus does).
    /// Returns whether the file is valid (an invalid one is logged and the last
    /// valid one stays in force).
    pub fn reload(&self) -> bool {
        let mut watch = self.watch.lock().expect("web config watch lock");
        watch.checked_at = Instant::now();
        self.reload_locked(&mut watch);
        self.last_reload_ok.load(Ordering::Relaxed)
    }

    fn reload_locked(&self, watch: &mut Watch) {
        let r = read(&self.path);
        watch.files = r.files;
        // Remember even an invalid version, so it is reported once, not every second.
        watch.fingerprint = r.fingerprint;
        let outcome = r.config.and_then(|c| {
            if c.tls.is_some() == self.tls {
                Ok(c)
            } else {
                Err(WebConfigError {
                    path: self.path.clone(),
                    field: "tls_server_config".into(),
                    reason: "turning TLS on or off needs a restart".into(),
                })
            }
        });
        match outcome {
            Ok(config) => {
                tracing::info!(file = %self.path.display(), tls = self.tls, basic_auth = config.auth.is_some(), "web config reloaded");
                *self.current.write().expect("web config lock") = Arc::new(config);
                self.last_reload_ok.store(true, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::error!(error = %e, "invalid web config; keeping the last valid one");
                self.last_reload_ok.store(false, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<WebConfig, String> {
        let raw: RawFile = serde_norway::from_str(yaml).map_err(|e| e.to_string())?;
        WebConfig::build(raw, Path::new("/nonexistent")).map_err(|b| format!("{}: {}", b.field, b.reason))
    }

    fn hash(password: &str) -> String {
        bcrypt::hash(password, 4).unwrap()
    }

    #[test]
    fn invalid_files_name_the_field() {
        let cases = [
            ("bogus: 1", "unknown field `bogus`"),
            ("tls_server_config:\n  cert_fil: x", "unknown field `cert_fil`"),
            ("tls_server_config:\n  cert_file: x\n  key_file: y\n  client_auth_type: Sometimes", "tls_server_config.client_auth_type"),
            ("tls_server_config:\n  min_version: TLS14", "tls_server_config.min_version"),
            ("tls_server_config:\n  min_version: TLS10", "tls_server_config.min_version: TLS 1.0 and 1.1"),
            ("tls_server_config:\n  min_version: TLS13\n  max_version: TLS12", "tls_server_config.min_version: is greater"),
            (
                "tls_server_config:\n  cert_file: /nonexistent/c.pem\n  key_file: k",
                "tls_server_config.cert_file: cannot read /nonexistent/c.pem",
            ),
            ("tls_server_config:\n  key_file: k", "tls_server_config.cert_file: missing"),
            (
                "tls_server_config:\n  cert: x\n  cert_file: y\n  key_file: z",
                "set either tls_server_config.cert or tls_server_config.cert_file",
            ),
            ("tls_server_config:\n  cipher_suites: [TLS_AES_128_GCM_SHA256]", "tls_server_config.cipher_suites: not supported"),
            ("tls_server_config:\n  client_allowed_sans: [a]", "tls_server_config.client_allowed_sans: not supported"),
            ("rate_limit:\n  interval: 1s\n  burst: 2", "rate_limit: not supported"),
            ("basic_auth_users:\n  alice: plaintext", "basic_auth_users.alice: not a bcrypt hash"),
            ("http_server_config:\n  headers:\n    X-Powered-By: me", "http_server_config.headers.X-Powered-By"),
            ("http_server_config:\n  headers:\n    X-Frame-Options: always", "expected one of deny, sameorigin"),
        ];
        for (yaml, want) in cases {
            let err = parse(yaml).expect_err(yaml);
            assert!(err.contains(want), "{yaml:?}: {err:?} should contain {want:?}");
        }
    }

    #[test]
    fn a_file_without_tls_fields_serves_plain_http() {
        let c = parse("tls_server_config:\n  min_version: TLS13\nhttp_server_config:\n  http2: false\n").unwrap();
        assert!(c.tls().is_none() && c.auth().is_none() && c.headers().is_empty());
        let c = parse("http_server_config:\n  headers:\n    X-Frame-Options: deny\n    Content-Security-Policy: ''\n").unwrap();
        assert_eq!(c.headers().len(), 1, "blank values are unset");
        assert_eq!(c.headers()[0].1, "deny");
    }

    #[test]
    fn basic_auth_header_parsing() {
        let h = |s: &str| {
            parse_basic(s.as_bytes()).map(|(u, p)| (String::from_utf8(u.to_vec()).unwrap(), String::from_utf8(p.to_vec()).unwrap()))
        };
        assert_eq!(h("Basic YWxpY2U6czNjcjN0OjE="), Some(("alice".into(), "s3cr3t:1".into())), "password may contain ':'");
        assert_eq!(h("basic  YWxpY2U6"), Some(("alice".into(), "".into())));
        assert_eq!(h("Bearer YWxpY2U6czNjcjN0"), None);
        assert_eq!(h("Basic !!!"), None);
        assert_eq!(h("Basic YWxpY2U="), None, "no colon");
    }

    fn header(user: &str, password: &str) -> HeaderValue {
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        HeaderValue::from_str(&format!("Basic {b64}")).unwrap()
    }

    #[tokio::test]
    async fn basic_auth_checks_users_and_remembers_results() {
        let users = BTreeMap::from([("alice".to_string(), Secret::new(hash("right"))), ("bob".to_string(), Secret::new(hash("other")))]);
        let auth = BasicAuth::new(users).unwrap();
        assert!(!auth.check(None).await);
        assert!(!auth.check(Some(&header("alice", "wrong"))).await);
        assert!(!auth.check(Some(&header("mallory", "right"))).await, "unknown user");
        assert!(!auth.check(Some(&header("bob", "right"))).await, "another user's password");
        assert!(auth.verifier.lock().succeeded.is_empty());
        assert_eq!(auth.verifier.lock().failed.len(), 3, "failures are remembered too");
        assert!(auth.check(Some(&header("alice", "right"))).await);
        assert!(auth.check(Some(&header("alice", "right"))).await);
        assert_eq!(auth.verifier.lock().succeeded.len(), 1);
        assert!(!auth.check(Some(&header("alice", "wrong"))).await, "a cached success does not admit another password");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_verification_whose_request_went_away_finishes_alone_and_is_remembered() {
        let users = BTreeMap::from([("alice".to_string(), Secret::new(bcrypt::hash("right", 10).unwrap()))]);
        let auth = Arc::new(BasicAuth::new(users).unwrap());
        let wait = |what: &'static str, done: &dyn Fn(&VerifierState) -> bool| {
            let until = Instant::now() + Duration::from_secs(30);
            while !done(&auth.verifier.lock()) {
                assert!(Instant::now() < until, "timed out waiting until {what}");
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        let a = auth.clone();
        let first = tokio::spawn(async move { a.check(Some(&header("alice", "right"))).await });
        wait("the first verification runs", &|s| s.running && s.waiting.is_empty());
        first.abort();
        // Requests that give up while it runs: queued, then skipped, never verified.
        for i in 0..20 {
            let _ = tokio::time::timeout(Duration::from_millis(1), auth.check(Some(&header("alice", &format!("wrong{i}"))))).await;
        }
        wait("the verifier is done", &|s| !s.running);
        let state = auth.verifier.lock();
        assert_eq!(state.succeeded.len(), 1, "the verification whose request went away finished and was remembered");
        assert!(state.failed.is_empty(), "abandoned requests were verified: {}", state.failed.len());
        assert!(state.waiting.is_empty());
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let users = format!("basic_auth_users:\n  alice: '{}'\n", hash("pw"));
        let c = parse(&users).unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains("$2b$"), "{debug}");
    }
}
