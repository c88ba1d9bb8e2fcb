//! IMDS client: session token, retries, role discovery and the credential
//! document, reduced to an [`ImdsObservation`] per probe.
//!
//! Behaviour follows the SDKs (sources read for this module):
//! - botocore `utils.py` `IMDSFetcher._fetch_metadata_token`: PUT
//!   `latest/api/token` with `x-aws-ec2-metadata-token-ttl-seconds: 21600`;
//!   403/404/405 and read timeouts fall back to IMDSv1; 400 is fatal.
//! - AWS SDK for Java v2 `InstanceProfileCredentialsProvider`: every token
//!   failure but 400 falls back to IMDSv1 unless `AWS_EC2_METADATA_V1_DISABLED`;
//!   the role listing is read from `security-credentials-extended/` first and
//!   from the legacy path after a 404 (remembered); the role is the first
//!   trimmed line; a 404 on the document re-discovers the role. IMDS is never
//!   reached through a proxy (`Proxy.NO_PROXY`).
//! - smithy-rs `aws-config/src/imds/client/token.rs`: the token is cached for
//!   its TTL from the response header minus `TOKEN_REFRESH_BUFFER` (120 s).

pub mod document;
pub mod stats;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

use chrono::Utc;
use reqwest::{Method, StatusCode};
use zeroize::Zeroizing;

use crate::backoff;
use crate::config::ImdsConfig;
use crate::probe::ErrorKind;
use crate::secret::Secret;
pub use document::{CredentialInfo, DocumentError};
pub use stats::{Endpoint, ImdsStats};

/// Largest response body read from IMDS; a credential document is about 1.3 KiB.
pub const MAX_BODY: usize = 64 * 1024;
/// Token lifetime requested, the SDKs' default (six hours).
pub const TOKEN_TTL_SECONDS: u64 = 21_600;
/// A token is refreshed this long before IMDS says it expires (smithy-rs `TOKEN_REFRESH_BUFFER`).
pub const TOKEN_REFRESH_BUFFER: Duration = Duration::from_secs(120);
/// `iam/info` changes only when a profile is (de)associated: read it at most this often.
pub const INFO_INTERVAL: Duration = Duration::from_secs(300);

const TOKEN_PATH: &str = "/latest/api/token";
const TOKEN_TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
const LEGACY_PATH: &str = "/latest/meta-data/iam/security-credentials/";
const EXTENDED_PATH: &str = "/latest/meta-data/iam/security-credentials-extended/";
const INFO_PATH: &str = "/latest/meta-data/iam/info";

/// Which IMDS protocol served a probe; `aws_imds_protocol_version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Session token (IMDSv2).
    V2,
    /// No token: fell back to IMDSv1.
    V1,
}

/// One probe of IMDS.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImdsObservation {
    /// Protocol that served the probe; `None` when IMDS could not be reached or is disabled.
    pub protocol: Option<Protocol>,
    /// `Some(false)` when the role listing was 404 on both paths.
    pub instance_profile_attached: Option<bool>,
    /// Role name of the instance profile.
    pub role: Option<String>,
    /// The credential document of this probe, or the last known one (see `credentials_stale`).
    pub credentials: Option<CredentialInfo>,
    /// `credentials` were carried over from an earlier probe because this one failed.
    pub credentials_stale: bool,
    /// `InstanceProfileArn` from `iam/info`.
    pub instance_profile_arn: Option<String>,
    /// Why the token request fell back to IMDSv1 (`403`, `timeout`, ...).
    pub v1_fallback_reason: Option<String>,
    /// What went wrong, for logs and the report; never holds a secret.
    pub error: Option<String>,
    /// The kind of `error`, for renderers to match on.
    pub error_kind: Option<ErrorKind>,
    /// IMDS is switched off by `AWS_EC2_METADATA_DISABLED`.
    pub disabled: bool,
}

impl ImdsObservation {
    /// `aws_imds_up`: this probe read a `Code=Success` document.
    pub fn up(&self) -> bool {
        !self.credentials_stale && self.credentials.as_ref().is_some_and(CredentialInfo::is_success)
    }

    /// Keeps the last known credentials through a failed probe: SDKs keep
    /// using cached credentials during an outage, so their expiry still counts.
    pub fn carry_forward(mut self, previous: &ImdsObservation) -> Self {
        let failed = self.error.is_some() && self.instance_profile_attached != Some(false);
        if failed && self.credentials.is_none() && previous.credentials.is_some() {
            self.credentials = previous.credentials.clone();
            self.credentials_stale = true;
            self.role = self.role.or_else(|| previous.role.clone());
        }
        // What IMDS said last about the instance profile stays true through an outage.
        if failed && self.instance_profile_attached.is_none() {
            self.instance_profile_attached = previous.instance_profile_attached;
        }
        if self.instance_profile_arn.is_none() && self.instance_profile_attached != Some(false) {
            self.instance_profile_arn = previous.instance_profile_arn.clone();
        }
        self
    }
}

/// A failed request, with what an operator needs to act on it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ImdsError {
    /// No answer within the timeout.
    #[error("IMDS {endpoint} request timed out after {after:?}")]
    Timeout {
        /// Endpoint label.
        endpoint: &'static str,
        /// Per-attempt timeout.
        after: Duration,
    },
    /// TCP connection failed or was reset.
    #[error("IMDS {endpoint} request failed to connect: {detail}; is this an EC2 instance, and is the endpoint right?")]
    Connect {
        /// Endpoint label.
        endpoint: &'static str,
        /// Transport error.
        detail: String,
    },
    /// The connection was closed or reset before a response arrived.
    #[error("IMDS {endpoint} request got no answer: the connection was closed or reset without an answer ({detail})")]
    Closed {
        /// Endpoint label.
        endpoint: &'static str,
        /// Transport error.
        detail: String,
    },
    /// An `https` endpoint on a machine without CA certificates to verify it.
    #[error(
        "IMDS {endpoint} request not sent: the endpoint is https but no CA certificates could be loaded ({detail}); install them (/etc/ssl/certs) or point SSL_CERT_FILE at a PEM bundle"
    )]
    NoTlsRoots {
        /// Endpoint label.
        endpoint: &'static str,
        /// Why the root store is empty.
        detail: String,
    },
    /// A status the client cannot use.
    #[error("IMDS {endpoint} request answered HTTP {status}{hint}")]
    Status {
        /// Endpoint label.
        endpoint: &'static str,
        /// HTTP status.
        status: u16,
        /// Advice for well-known statuses.
        hint: &'static str,
    },
    /// Response larger than [`MAX_BODY`] or not readable.
    #[error("IMDS {endpoint} response body unusable: {detail}")]
    Body {
        /// Endpoint label.
        endpoint: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// No token and IMDSv1 disabled.
    #[error("IMDSv2 token unavailable ({reason}) and AWS_EC2_METADATA_V1_DISABLED forbids falling back to IMDSv1")]
    V1Disabled {
        /// Why the token request failed.
        reason: String,
    },
    /// The credential document could not be used.
    #[error("{0}")]
    Document(#[from] DocumentError),
}

impl ImdsError {
    /// The probe contract's kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ImdsError::Timeout { .. } => ErrorKind::Timeout,
            ImdsError::Connect { .. } | ImdsError::Closed { .. } | ImdsError::NoTlsRoots { .. } => ErrorKind::Unreachable,
            ImdsError::Status { .. } => ErrorKind::Status,
            ImdsError::Body { .. } | ImdsError::Document(_) => ErrorKind::Malformed,
            ImdsError::V1Disabled { .. } => ErrorKind::V1Disabled,
        }
    }
}

/// Requests of one probe that the budget allows for: token, role, credentials, info.
pub const REQUESTS_PER_PROBE: u32 = 4;

fn status_hint(status: u16) -> &'static str {
    match status {
        429 => ": throttled; too many concurrent IMDS calls on this instance, cache credentials and back off",
        401 => ": token rejected",
        400 => ": the token request was malformed (bad TTL header?)",
        403 => ": forbidden; IMDS access may be turned off for this instance (http-endpoint disabled)",
        300..=399 => ": IMDS does not redirect, and redirects are never followed (is --imds.endpoint a proxy or another service?)",
        500..=599 => ": IMDS server error",
        _ => "",
    }
}

/// A response: status, token TTL header and a body capped at [`MAX_BODY`].
struct Response {
    status: StatusCode,
    ttl: Option<String>,
    body: Zeroizing<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ApiVersion {
    Unknown,
    Extended,
    Legacy,
}

struct CachedToken {
    value: Secret,
    refresh_at: Instant,
}

/// State kept between probes.
struct State {
    token: Option<CachedToken>,
    api: ApiVersion,
    role: Option<String>,
    info_read_at: Option<Instant>,
    instance_profile_arn: Option<String>,
}

enum TokenOutcome {
    Token(Secret),
    V1 { reason: String },
}

/// IMDS client; cheap to share behind an `Arc`.
pub struct ImdsClient {
    http: HttpClient,
    cfg: ImdsConfig,
    state: Mutex<State>,
    stats: Arc<Mutex<ImdsStats>>,
}

impl ImdsClient {
    /// Builds a client that never uses a proxy and never follows a redirect.
    pub fn new(cfg: ImdsConfig) -> Self {
        let http = HttpClient::new(cfg.timeout);
        Self::with_http(cfg, http)
    }

    /// A client sending its requests through `http` (shared with the chain probe).
    pub fn with_http(cfg: ImdsConfig, http: HttpClient) -> Self {
        let state = State { token: None, api: ApiVersion::Unknown, role: None, info_read_at: None, instance_profile_arn: None };
        Self { http, cfg, state: Mutex::new(state), stats: Arc::default() }
    }

    /// How long one probe may run: [`REQUESTS_PER_PROBE`] requests, each with
    /// every attempt running into its timeout and the largest backoff between
    /// attempts. A probe that needs longer has an IMDS too slow to use.
    pub fn budget(&self) -> Duration {
        let backoffs: Duration = (0..self.cfg.attempts.saturating_sub(1)).map(backoff::ceiling).sum();
        self.cfg.timeout.saturating_mul(self.cfg.attempts).saturating_add(backoffs).saturating_mul(REQUESTS_PER_PROBE)
    }

    /// A copy of the counters.
    pub fn stats(&self) -> ImdsStats {
        self.stats.lock().expect("stats lock").clone()
    }

    /// Runs one probe: token, role, credential document and (now and then) `iam/info`.
    pub async fn probe(&self) -> ImdsObservation {
        if self.cfg.disabled {
            return ImdsObservation {
                disabled: true,
                error: Some("IMDS disabled by AWS_EC2_METADATA_DISABLED=true".into()),
                error_kind: Some(ErrorKind::Disabled),
                ..Default::default()
            };
        }
        let mut obs = ImdsObservation::default();
        if let Err(e) = self.probe_into(&mut obs).await {
            obs.error = Some(e.to_string());
            obs.error_kind = Some(e.kind());
            // A protocol "served" the probe only if IMDS answered a GET with
            // something usable (a role listing or its absence).
            if obs.instance_profile_attached.is_none() {
                obs.protocol = None;
            }
        }
        if obs.up() {
            self.stats.lock().expect("stats lock").last_success = Some(Utc::now());
        }
        obs
    }

    async fn probe_into(&self, obs: &mut ImdsObservation) -> Result<(), ImdsError> {
        let mut token = match self.token().await? {
            TokenOutcome::Token(t) => {
                obs.protocol = Some(Protocol::V2);
                Some(t)
            }
            TokenOutcome::V1 { reason } => {
                obs.protocol = Some(Protocol::V1);
                obs.v1_fallback_reason = Some(reason);
                None
            }
        };
        // Java v2 re-discovers the role after a 404 on the document; one retry is enough here
        // because the next probe starts over.
        for rediscover in [false, true] {
            let Some(role) = self.role(&mut token, rediscover).await? else {
                obs.instance_profile_attached = Some(false);
                return Ok(());
            };
            obs.instance_profile_attached = Some(true);
            obs.role = Some(role.clone());
            let path = format!("{}{}", self.credentials_path(), role);
            let resp = self.get(Endpoint::Credentials, &path, &mut token).await?;
            match resp.status.as_u16() {
                200 => {
                    obs.credentials = Some(document::parse(&resp.body)?);
                    self.read_info(&mut token, obs).await;
                    return Ok(());
                }
                404 if !rediscover => continue,
                s => return Err(status_error(Endpoint::Credentials, s)),
            }
        }
        Ok(())
    }

    fn credentials_path(&self) -> &'static str {
        match self.state.lock().expect("state lock").api {
            ApiVersion::Legacy => LEGACY_PATH,
            _ => EXTENDED_PATH,
        }
    }

    /// The role name: cached, or discovered from the listing (extended path first).
    async fn role(&self, token: &mut Option<Secret>, rediscover: bool) -> Result<Option<String>, ImdsError> {
        {
            let mut st = self.state.lock().expect("state lock");
            if rediscover {
                st.role = None;
            }
            if let Some(role) = &st.role {
                return Ok(Some(role.clone()));
            }
        }
        loop {
            let api = self.state.lock().expect("state lock").api;
            let path = if api == ApiVersion::Legacy { LEGACY_PATH } else { EXTENDED_PATH };
            let resp = self.get(Endpoint::Role, path, token).await?;
            match resp.status.as_u16() {
                200 => {
                    let role = role_from_listing(&resp.body)?;
                    let mut st = self.state.lock().expect("state lock");
                    if st.api == ApiVersion::Unknown {
                        st.api = ApiVersion::Extended;
                    }
                    let Some(role) = role else { return Ok(None) };
                    st.role = Some(role.clone());
                    return Ok(Some(role));
                }
                404 if api == ApiVersion::Unknown => {
                    tracing::debug!("IMDS has no security-credentials-extended path; falling back to the legacy path");
                    self.state.lock().expect("state lock").api = ApiVersion::Legacy;
                }
                // With the API known, a 404 listing means no instance profile is attached.
                404 => return Ok(None),
                s => return Err(status_error(Endpoint::Role, s)),
            }
        }
    }

    /// Reads `iam/info` at most every [`INFO_INTERVAL`]; failures only log.
    async fn read_info(&self, token: &mut Option<Secret>, obs: &mut ImdsObservation) {
        let due = self.state.lock().expect("state lock").info_read_at.is_none_or(|t| t.elapsed() >= INFO_INTERVAL);
        if due {
            let arn = match self.get(Endpoint::Info, INFO_PATH, token).await {
                Ok(r) if r.status == StatusCode::OK => serde_json::from_slice::<serde_json::Value>(&r.body)
                    .ok()
                    .and_then(|v| v.get("InstanceProfileArn").and_then(|a| a.as_str()).map(|s| s.chars().take(256).collect())),
                Ok(r) => {
                    tracing::debug!(status = r.status.as_u16(), "IMDS iam/info unavailable");
                    None
                }
                Err(e) => {
                    tracing::debug!(error = %e, "IMDS iam/info unavailable");
                    None
                }
            };
            let mut st = self.state.lock().expect("state lock");
            st.info_read_at = Some(Instant::now());
            st.instance_profile_arn = arn;
        }
        obs.instance_profile_arn = self.state.lock().expect("state lock").instance_profile_arn.clone();
    }

    /// A cached token, a new one, or the decision to use IMDSv1.
    async fn token(&self) -> Result<TokenOutcome, ImdsError> {
        {
            let st = self.state.lock().expect("state lock");
            if let Some(t) = st.token.as_ref().filter(|t| Instant::now() < t.refresh_at) {
                return Ok(TokenOutcome::Token(t.value.clone()));
            }
        }
        let result =
            self.send(Endpoint::Token, Method::PUT, TOKEN_PATH, None, |b| b.header(TOKEN_TTL_HEADER, TOKEN_TTL_SECONDS.to_string())).await;
        let reason = match result {
            Ok(resp) if resp.status == StatusCode::OK => {
                let token = Zeroizing::new(String::from_utf8(resp.body.to_vec()).unwrap_or_default());
                let token = token.trim();
                if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(ImdsError::Body { endpoint: "token", detail: "token is empty or not printable ASCII".into() });
                }
                let ttl = resp.ttl.as_deref().and_then(|t| t.trim().parse::<u64>().ok());
                let value = Secret::new(token.to_string());
                let refresh_in = token_refresh_in(ttl);
                if refresh_in.is_none() {
                    tracing::debug!(
                        ttl_header = resp.ttl.as_deref().unwrap_or("absent"),
                        "IMDS token response has no usable TTL ({TOKEN_TTL_HEADER}); the token is used for this probe only"
                    );
                }
                self.state.lock().expect("state lock").token =
                    refresh_in.map(|d| CachedToken { value: value.clone(), refresh_at: Instant::now() + d });
                return Ok(TokenOutcome::Token(value));
            }
            // botocore raises BadIMDSRequestError on 400 and Java v2 fails: no fallback.
            Ok(resp) if resp.status == StatusCode::BAD_REQUEST => return Err(status_error(Endpoint::Token, 400)),
            Ok(resp) => resp.status.as_u16().to_string(),
            Err(ImdsError::Timeout { .. }) => "timeout".to_string(),
            Err(e) => return Err(e),
        };
        if self.cfg.v1_disabled {
            return Err(ImdsError::V1Disabled { reason });
        }
        *self.stats.lock().expect("stats lock").v1_fallbacks.entry(reason.clone()).or_default() += 1;
        Ok(TokenOutcome::V1 { reason })
    }

    fn invalidate_token(&self) {
        self.state.lock().expect("state lock").token = None;
    }

    /// GET with the probe's token; a 401 means the token went stale: fetch a
    /// new one (which the rest of the probe then uses) and try once more.
    /// Without a token (IMDSv1 after a failed PUT this probe), a 401 means
    /// IMDSv2 is required and no token can be had: no second PUT.
    async fn get(&self, endpoint: Endpoint, path: &str, token: &mut Option<Secret>) -> Result<Response, ImdsError> {
        let resp = self.send(endpoint, Method::GET, path, token.as_ref(), |b| b).await?;
        if resp.status != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        if token.is_none() {
            return Err(status_error(endpoint, 401));
        }
        self.invalidate_token();
        *token = match self.token().await? {
            TokenOutcome::Token(t) => Some(t),
            TokenOutcome::V1 { .. } => None,
        };
        self.stats.lock().expect("stats lock").retries += 1;
        let resp = self.send(endpoint, Method::GET, path, token.as_ref(), |b| b).await?;
        match resp.status.as_u16() {
            401 => Err(status_error(endpoint, 401)),
            _ => Ok(resp),
        }
    }

    /// One request with retries: 429, 5xx and transport errors are retried with
    /// exponential backoff and full jitter, up to the configured attempts.
    /// Token timeouts are not retried: they are the IMDSv2 hop-limit signature,
    /// and botocore falls back to IMDSv1 at once.
    async fn send(
        &self,
        endpoint: Endpoint,
        method: Method,
        path: &str,
        token: Option<&Secret>,
        extra: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<Response, ImdsError> {
        let url = self.cfg.endpoint.join(path).expect("static paths join");
        let mut attempt = 0;
        loop {
            let started = Instant::now();
            // An attempt the probe's budget ends is still counted, as `cancelled`.
            let cut = Attempt { stats: &self.stats, endpoint, started, done: false };
            let result = match self.http.request(method.clone(), url.clone(), endpoint.as_str()) {
                Ok(mut req) => {
                    if let Some(t) = token {
                        req = req.header(TOKEN_HEADER, sensitive(t));
                    }
                    tokio::time::timeout(self.cfg.timeout, read(extra(req), endpoint.as_str()))
                        .await
                        .unwrap_or(Err(ImdsError::Timeout { endpoint: endpoint.as_str(), after: self.cfg.timeout }))
                }
                Err(e) => Err(e),
            };
            cut.finish();
            let outcome = match &result {
                Ok(r) => r.status.as_u16().to_string(),
                Err(ImdsError::Timeout { .. }) => "timeout".into(),
                Err(ImdsError::Connect { .. } | ImdsError::Closed { .. } | ImdsError::NoTlsRoots { .. }) => "connect_error".into(),
                Err(_) => "body_error".into(),
            };
            self.stats.lock().expect("stats lock").record(endpoint, &outcome, started.elapsed());
            tracing::trace!(endpoint = endpoint.as_str(), %outcome, took_ms = started.elapsed().as_millis() as u64, "IMDS request");
            let retryable = match &result {
                Ok(r) => r.status == StatusCode::TOO_MANY_REQUESTS || r.status.is_server_error(),
                Err(ImdsError::Timeout { .. }) => endpoint != Endpoint::Token,
                Err(ImdsError::Connect { .. } | ImdsError::Closed { .. }) => true,
                Err(_) => false,
            };
            attempt += 1;
            if !retryable || attempt >= self.cfg.attempts {
                return result;
            }
            let why = match &result {
                Ok(r) => format!("HTTP {}", r.status.as_u16()),
                Err(e) => e.to_string(),
            };
            tracing::debug!(endpoint = endpoint.as_str(), attempt, attempts = self.cfg.attempts, error = %why, "IMDS request failed; retrying after a backoff");
            self.stats.lock().expect("stats lock").retries += 1;
            tokio::time::sleep(backoff::full_jitter(attempt - 1)).await;
        }
    }
}

/// An attempt in flight: recorded as [`stats::CANCELLED`] if dropped before
/// [`Attempt::finish`] (the probe's budget ended it mid-request).
struct Attempt<'a> {
    stats: &'a Mutex<ImdsStats>,
    endpoint: Endpoint,
    started: Instant,
    done: bool,
}

impl Attempt<'_> {
    fn finish(mut self) {
        self.done = true;
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner).record(
                self.endpoint,
                stats::CANCELLED,
                self.started.elapsed(),
            );
        }
    }
}

/// A header value that HTTP libraries must not log (`HeaderValue::set_sensitive`).
fn sensitive(secret: &Secret) -> reqwest::header::HeaderValue {
    let mut v = reqwest::header::HeaderValue::from_str(secret.expose()).unwrap_or_else(|_| reqwest::header::HeaderValue::from_static(""));
    v.set_sensitive(true);
    v
}

/// The HTTP client of the credential endpoints (IMDS, container credentials).
/// IMDS and the ECS/EKS container endpoints are plain HTTP and need no CA
/// certificates; only an `https` endpoint (a custom `--imds.endpoint` or
/// `AWS_CONTAINER_CREDENTIALS_FULL_URI`) does. Loading the system's roots
/// costs about 500 KiB of heap, so plain HTTP goes through a client with an
/// empty root store, and the roots are loaded on the first `https` request.
/// A machine without a root store (a `FROM scratch` image, a root without
/// `/etc/ssl`) then refuses `https` per request, with the reason.
/// Clones share both clients.
#[derive(Debug, Clone)]
pub struct HttpClient {
    connect_timeout: Duration,
    /// Plain HTTP: an empty root store, so building it reads nothing from the machine.
    plain: reqwest::Client,
    /// `https`: the system's roots, or why none could be loaded; built once, on first use.
    tls: Arc<OnceLock<Result<reqwest::Client, String>>>,
}

impl HttpClient {
    /// A client that never uses a proxy and never follows a redirect.
    pub fn new(connect_timeout: Duration) -> Self {
        install_tls_provider();
        let plain = Self::builder(connect_timeout).tls_certs_only([]).build().expect("a client with an empty root store builds");
        Self { connect_timeout, plain, tls: Arc::default() }
    }

    fn builder(connect_timeout: Duration) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            // Java SDKs open IMDS connections with Proxy.NO_PROXY: a proxy can
            // neither reach the link-local address nor be trusted with the token.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(connect_timeout)
            .pool_max_idle_per_host(1)
            .user_agent(concat!("aws-credentials-exporter/", env!("CARGO_PKG_VERSION")))
    }

    /// The `https` client, built on first use: the platform verifier loads the
    /// system's CA certificates (SSL_CERT_FILE, SSL_CERT_DIR, /etc/ssl/certs, ...)
    /// and fails the build when there are none, which is logged once.
    fn tls(&self) -> &Result<reqwest::Client, String> {
        self.tls.get_or_init(|| {
            Self::builder(self.connect_timeout).build().map_err(|e| {
                let reason = error_chain(&e);
                tracing::warn!(error = %reason, "no CA certificates could be loaded: https credential endpoints fail, plain-HTTP IMDS and container endpoints work");
                reason
            })
        })
    }

    /// A request to `url`, or why `https` cannot be used on this machine.
    fn request(&self, method: Method, url: reqwest::Url, endpoint: &'static str) -> Result<reqwest::RequestBuilder, ImdsError> {
        if url.scheme() != "https" {
            return Ok(self.plain.request(method, url));
        }
        match self.tls() {
            Ok(client) => Ok(client.request(method, url)),
            Err(reason) => Err(ImdsError::NoTlsRoots { endpoint, detail: reason.clone() }),
        }
    }
}

/// Makes ring the process's rustls provider, which reqwest's `https` uses
/// (`rustls-no-provider`: aws-lc-rs would add 2 MB to the binary). Idempotent.
pub fn install_tls_provider() {
    // Err only when a provider is already installed: then that one is used.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Reads a credential document from the container credentials endpoint (ECS
/// task role, EKS Pod Identity) with the same rules as IMDS: no proxy, no
/// redirects, capped body, one timeout for the whole exchange. The document
/// is parsed like IMDS's (botocore `ContainerMetadataFetcher`), secrets dropped.
pub async fn fetch_container_credentials(
    http: &HttpClient,
    uri: &str,
    authorization: Option<&Secret>,
    timeout: Duration,
) -> Result<CredentialInfo, ImdsError> {
    // Not the URI itself in the error: its path works like a key, and it may carry userinfo.
    let url = reqwest::Url::parse(uri)
        .map_err(|e| ImdsError::Connect { endpoint: "container", detail: format!("the URI is not a valid URL ({e})") })?;
    let mut req = http.request(Method::GET, url, "container")?.header("accept", "application/json");
    if let Some(a) = authorization {
        req = req.header("authorization", sensitive(a));
    }
    let resp = tokio::time::timeout(timeout, read(req, "container"))
        .await
        .unwrap_or(Err(ImdsError::Timeout { endpoint: "container", after: timeout }))?;
    match resp.status.as_u16() {
        200 => Ok(document::parse(&resp.body)?),
        s => Err(ImdsError::Status { endpoint: "container", status: s, hint: status_hint(s) }),
    }
}

/// How long to keep a token: its TTL minus the refresh buffer; `None` (do
/// not cache) when IMDS sent no usable TTL.
fn token_refresh_in(ttl_seconds: Option<u64>) -> Option<Duration> {
    let ttl = Duration::from_secs(ttl_seconds.filter(|&t| t > 0)?.min(TOKEN_TTL_SECONDS));
    Some(if ttl > TOKEN_REFRESH_BUFFER * 2 { ttl - TOKEN_REFRESH_BUFFER } else { ttl / 2 })
}

/// The role named by a role listing: its first line, as Java v2 reads it
/// (`securityCredentialsList.trim().split("\n")[0]`); `None` when the listing
/// is empty (no instance profile). The name becomes a URL path segment and a
/// metric label, so anything that is not an IAM role name is refused: a
/// proxy's HTML page or bytes that are not UTF-8 are not a role.
fn role_from_listing(body: &[u8]) -> Result<Option<String>, ImdsError> {
    let text =
        std::str::from_utf8(body).map_err(|_| ImdsError::Body { endpoint: "role", detail: "role listing is not UTF-8 text".into() })?;
    let role = text.trim().lines().next().unwrap_or("").trim();
    if role.is_empty() {
        return Ok(None);
    }
    if !is_role_name(role) {
        let shown: String = role.chars().take(40).collect();
        return Err(ImdsError::Body {
            endpoint: "role",
            detail: format!(
                "role listing {shown:?} is not an IAM role name (1 to 64 of A-Z a-z 0-9 + = , . @ _ -); is --imds.endpoint IMDS?"
            ),
        });
    }
    Ok(Some(role.to_string()))
}

/// IAM role names: 1 to 64 characters of `[A-Za-z0-9+=,.@_-]` (IAM API reference, `CreateRole` `RoleName`).
fn is_role_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
}

fn status_error(endpoint: Endpoint, status: u16) -> ImdsError {
    ImdsError::Status { endpoint: endpoint.as_str(), status, hint: status_hint(status) }
}

/// Sends and reads the body, refusing anything larger than [`MAX_BODY`].
async fn read(req: reqwest::RequestBuilder, endpoint: &'static str) -> Result<Response, ImdsError> {
    let mut resp = req.send().await.map_err(|e| {
        let detail = transport_detail(&e);
        if e.is_connect() { ImdsError::Connect { endpoint, detail } } else { ImdsError::Closed { endpoint, detail } }
    })?;
    let status = resp.status();
    let ttl = resp.headers().get(TOKEN_TTL_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
    if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
        return Err(ImdsError::Body { endpoint, detail: format!("larger than {MAX_BODY} bytes") });
    }
    let mut body = Zeroizing::new(Vec::new());
    while let Some(chunk) = resp.chunk().await.map_err(|e| ImdsError::Body { endpoint, detail: transport_detail(&e) })? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(ImdsError::Body { endpoint, detail: format!("larger than {MAX_BODY} bytes") });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Response { status, ttl, body })
}

/// reqwest's error chain without the URL (which is not secret, but noisy).
fn transport_detail(e: &reqwest::Error) -> String {
    let what = if e.is_connect() { "connection failed" } else { "transport error" };
    match std::error::Error::source(e) {
        Some(source) => format!("{what}: {}", error_chain(source)),
        None => what.to_string(),
    }
}

/// An error and its sources, `: `-separated.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut detail = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        detail = format!("{detail}: {s}");
        source = s.source();
    }
    detail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_cache_keeps_the_ttl_minus_the_refresh_buffer() {
        assert_eq!(token_refresh_in(Some(21_600)), Some(Duration::from_secs(21_480)));
        assert_eq!(token_refresh_in(Some(200)), Some(Duration::from_secs(100)), "short TTLs are halved");
        assert_eq!(token_refresh_in(Some(10 * TOKEN_TTL_SECONDS)), Some(Duration::from_secs(21_480)), "TTL capped at what we asked for");
        assert_eq!(token_refresh_in(Some(0)), None, "TTL 0: use once, never cache");
        assert_eq!(token_refresh_in(None), None, "no TTL header: use once, never cache");
    }

    #[test]
    fn carry_forward_keeps_last_known_expiry_through_an_outage_only() {
        let good = ImdsObservation {
            protocol: Some(Protocol::V2),
            instance_profile_attached: Some(true),
            role: Some("app".into()),
            credentials: Some(CredentialInfo {
                code: "Success".into(),
                kind: "AWS-HMAC".into(),
                last_updated: None,
                expiration: Some(Utc::now()),
                access_key_id_suffix: Some("AB12".into()),
                account_id: None,
            }),
            ..Default::default()
        };
        assert!(good.up());
        let outage = ImdsObservation { error: Some("timeout".into()), ..Default::default() }.carry_forward(&good);
        assert!(!outage.up(), "stale credentials do not make IMDS up");
        assert!(outage.credentials_stale);
        assert_eq!(outage.credentials, good.credentials);
        assert_eq!(outage.role.as_deref(), Some("app"));
        let detached = ImdsObservation { instance_profile_attached: Some(false), error: None, ..Default::default() }.carry_forward(&good);
        assert_eq!(detached.credentials, None, "a detached profile has no credentials to carry");
    }

    #[test]
    fn a_role_listing_that_is_not_utf8_is_an_error_not_a_role_with_replacement_characters() {
        let err = role_from_listing(b"\xff\xfeapp-role\xc3\x28").unwrap_err().to_string();
        assert!(err.contains("role listing is not UTF-8"), "{err}");
    }

    #[test]
    fn an_html_page_in_place_of_the_role_listing_is_not_a_role_name() {
        let err = role_from_listing(b"<!DOCTYPE html>\n<html><body>Sign in</body></html>").unwrap_err().to_string();
        assert!(err.contains("\"<!DOCTYPE html>\" is not an IAM role name"), "{err}");
    }

    #[test]
    fn role_listings_name_the_first_role_or_none() {
        let long = "r".repeat(64);
        let cases: [(&[u8], Option<&str>); 5] = [
            (b"app-role", Some("app-role")),
            (b"\n  first+=,.@_-Role9 \nsecond\n", Some("first+=,.@_-Role9")),
            (long.as_bytes(), Some(long.as_str())),
            (b"", None),
            (b" \n\t\n", None),
        ];
        for (listing, want) in cases {
            assert_eq!(role_from_listing(listing).unwrap().as_deref(), want, "{listing:?}");
        }
        for bad in ["r".repeat(65), "a/b".into(), "a b".into(), "r\u{e9}le".into(), "../x".into()] {
            assert!(role_from_listing(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn errors_explain_what_to_do() {
        let e = status_error(Endpoint::Credentials, 429).to_string();
        assert!(e.contains("429") && e.contains("back off"), "{e}");
        let e = status_error(Endpoint::Role, 302).to_string();
        assert!(e.contains("302") && e.contains("never followed"), "{e}");
        let e = ImdsError::V1Disabled { reason: "timeout".into() }.to_string();
        assert!(e.contains("AWS_EC2_METADATA_V1_DISABLED"), "{e}");
    }
}
