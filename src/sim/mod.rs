//! A simulated EC2 instance on loopback for `demo` and the tests: IMDS (token,
//! role listing, rotating credential documents, `iam/info`, failures on demand)
//! and the Amazon Time Sync Service (SNTP with skew, kiss-o'-death, losses).
//! Each service listens on its own socket; the behaviour can be changed while
//! it runs ([`Simulator::update`]), and every request is counted.

pub mod hostile;
pub mod ntp;
pub mod scenario;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::timefmt::rfc3339;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::http::{response, serve};
use hostile::Resource;
pub use hostile::{HostileImds, SimBody};
pub use ntp::{Hostile, NtpSpec};
pub use scenario::{ImdsSpec, Scenario, Throttle, TokenBehaviour};

/// Every secret access key the simulator serves starts with this; tests grep for it.
pub const SECRET_KEY_MARKER: &str = "SimSecretAccessKey";
/// Every session token the simulator serves starts with this; tests grep for it.
pub const SESSION_TOKEN_MARKER: &str = "SimSessionToken";
/// Every IMDS token the simulator issues starts with this.
pub const IMDS_TOKEN_MARKER: &str = "SimImdsToken";

/// Requests the simulator received, by resource.
#[derive(Debug, Default)]
pub struct SimCounters {
    /// Token PUTs.
    pub token: AtomicU64,
    /// Role listings (either path).
    pub role: AtomicU64,
    /// Credential documents.
    pub credentials: AtomicU64,
    /// `iam/info`.
    pub info: AtomicU64,
    /// Anything else.
    pub other: AtomicU64,
    /// Answers with HTTP 429.
    pub throttled: AtomicU64,
    /// NTP datagrams received.
    pub ntp: Arc<AtomicU64>,
}

/// Where the simulated IMDS serves its request counters as JSON (benchmarks read them).
pub const COUNTERS_PATH: &str = "/sim/counters";

impl SimCounters {
    /// The counters as a JSON object.
    pub fn to_json(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::SeqCst);
        serde_json::json!({
            "token": get(&self.token),
            "role": get(&self.role),
            "credentials": get(&self.credentials),
            "info": get(&self.info),
            "other": get(&self.other),
            "throttled": get(&self.throttled),
            "ntp": get(&self.ntp),
        })
        .to_string()
    }

    /// All IMDS requests.
    pub fn total(&self) -> u64 {
        [&self.token, &self.role, &self.credentials, &self.info, &self.other].iter().map(|c| c.load(Ordering::SeqCst)).sum()
    }
}

struct ImdsState {
    spec: ImdsSpec,
    /// When the credentials served at start were issued.
    epoch: DateTime<Utc>,
    tokens: HashMap<String, Instant>,
    next_token: u64,
    requests: u64,
    second: (i64, u64),
}

/// Where the simulated services listen.
#[derive(Debug, Clone, Copy)]
pub struct Listen {
    /// IMDS (HTTP).
    pub imds: SocketAddr,
    /// Amazon Time Sync Service (SNTP, UDP).
    pub ntp: SocketAddr,
}

impl Default for Listen {
    /// Free ports on 127.0.0.1.
    fn default() -> Self {
        Self { imds: ([127, 0, 0, 1], 0).into(), ntp: ([127, 0, 0, 1], 0).into() }
    }
}

/// A running simulated instance.
pub struct Simulator {
    imds_addr: SocketAddr,
    ntp_addr: SocketAddr,
    state: Arc<Mutex<ImdsState>>,
    ntp: Arc<Mutex<NtpSpec>>,
    counters: Arc<SimCounters>,
    stop: Vec<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Simulator {
    /// Starts the simulated IMDS and time service (use port 0 in tests).
    pub async fn start(imds_spec: ImdsSpec, ntp_spec: NtpSpec, listen: Listen) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen.imds).await?;
        let imds_addr = listener.local_addr()?;
        let udp = tokio::net::UdpSocket::bind(listen.ntp).await?;
        let ntp_addr = udp.local_addr()?;
        let epoch = Utc::now() - chrono::Duration::from_std(imds_spec.initial_age).unwrap_or_default();
        let state =
            Arc::new(Mutex::new(ImdsState { spec: imds_spec, epoch, tokens: HashMap::new(), next_token: 0, requests: 0, second: (0, 0) }));
        let ntp = Arc::new(Mutex::new(ntp_spec));
        let counters = Arc::new(SimCounters::default());
        let (stop_imds, imds_stopped) = oneshot::channel::<()>();
        let (stop_ntp, ntp_stopped) = oneshot::channel::<()>();
        let (st, ct) = (state.clone(), counters.clone());
        let imds_task = tokio::spawn(async move {
            serve(listener, move |req| imds(st.clone(), ct.clone(), req), async {
                let _ = imds_stopped.await;
            })
            .await
        });
        let ntp_task = tokio::spawn(ntp::serve(udp, ntp.clone(), counters.ntp.clone(), async {
            let _ = ntp_stopped.await;
        }));
        Ok(Self { imds_addr, ntp_addr, state, ntp, counters, stop: vec![stop_imds, stop_ntp], tasks: vec![imds_task, ntp_task] })
    }

    /// Address of the simulated IMDS.
    pub fn imds_addr(&self) -> SocketAddr {
        self.imds_addr
    }

    /// Address of the simulated time service, for `--ntp.server`.
    pub fn ntp_addr(&self) -> SocketAddr {
        self.ntp_addr
    }

    /// Changes the time service's behaviour while running.
    pub fn update_ntp(&self, change: impl FnOnce(&mut NtpSpec)) {
        change(&mut self.ntp.lock().expect("sim lock"));
    }

    /// Base URL of the simulated IMDS, for `--imds.endpoint`.
    pub fn imds_url(&self) -> String {
        format!("http://{}", self.imds_addr)
    }

    /// Request counters.
    pub fn counters(&self) -> &SimCounters {
        &self.counters
    }

    /// Changes the IMDS behaviour while running (credentials keep their schedule).
    pub fn update(&self, change: impl FnOnce(&mut ImdsSpec)) {
        change(&mut self.state.lock().expect("sim lock").spec);
    }

    /// Forgets every IMDS token issued so far: the next GET with one gets 401,
    /// as after an IMDS restart.
    pub fn revoke_tokens(&self) {
        self.state.lock().expect("sim lock").tokens.clear();
    }

    /// Stops the servers and waits for them.
    pub async fn stop(mut self) {
        for s in self.stop.drain(..) {
            let _ = s.send(());
        }
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The credentials being served at `now` under `spec`, issued at `epoch`.
struct Issue {
    number: u64,
    issued: DateTime<Utc>,
    expires: DateTime<Utc>,
}

fn current_issue(spec: &ImdsSpec, epoch: DateTime<Utc>, now: DateTime<Utc>) -> Issue {
    let lifetime = chrono::Duration::from_std(spec.lifetime).unwrap_or_default();
    let (number, issued) = match spec.rotate_every.and_then(|p| chrono::Duration::from_std(p).ok()).filter(|p| p.num_milliseconds() > 0) {
        Some(period) if now > epoch => {
            let n = ((now - epoch).num_milliseconds() / period.num_milliseconds()).max(0);
            (n as u64, epoch + period * n as i32)
        }
        _ => (0, epoch),
    };
    Issue { number, issued, expires: issued + lifetime }
}

const TEXT: &str = "text/plain";

async fn imds(state: Arc<Mutex<ImdsState>>, counters: Arc<SimCounters>, req: Request<Incoming>) -> Response<SimBody> {
    let path = req.uri().path().to_string();
    if path == COUNTERS_PATH {
        // The simulator's own request counts, for benchmarks (not part of IMDS; not counted).
        return hostile::whole(200, "application/json", Bytes::from(counters.to_json()));
    }
    let resource = match path.as_str() {
        "/latest/api/token" => Resource::Token,
        "/latest/meta-data/iam/info" => Resource::Info,
        "/latest/meta-data/iam/security-credentials/" | "/latest/meta-data/iam/security-credentials-extended/" => Resource::Listing,
        p if p.starts_with("/latest/meta-data/iam/security-credentials") => Resource::Credentials,
        _ => Resource::Other,
    };
    let counter = match resource {
        Resource::Token => &counters.token,
        Resource::Info => &counters.info,
        Resource::Listing => &counters.role,
        Resource::Credentials => &counters.credentials,
        Resource::Other => &counters.other,
    };
    counter.fetch_add(1, Ordering::SeqCst);
    let (latency, hostile, decision) = {
        let mut st = state.lock().expect("sim lock");
        let hostile = st.spec.hostile.clone();
        if let Some(r) = hostile.as_ref().and_then(|h| hostile::preempt(h, resource, &path)) {
            return r;
        }
        (st.spec.latency, hostile, decide(&mut st, &req, &path))
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match decision {
        Decision::Answer(r) => {
            if r.status() == 429 {
                counters.throttled.fetch_add(1, Ordering::SeqCst);
            }
            let r = r.map(|b| b.map_err(|never| match never {}).boxed_unsync());
            match hostile {
                Some(h) => hostile::rewrite(&h, resource, r, Utc::now()).await,
                None => r,
            }
        }
        Decision::Hang => {
            // The hop limit drops the answer: the client sees nothing and times out.
            tokio::time::sleep(Duration::from_secs(30)).await;
            hostile::whole(504, TEXT, Bytes::new())
        }
    }
}

enum Decision {
    Answer(Response<Full<Bytes>>),
    Hang,
}

/// Path prefix of the simulated container credentials endpoint (ECS task
/// role style: `AWS_CONTAINER_CREDENTIALS_FULL_URI=http://<sim>/v2/credentials/ID`).
pub const CONTAINER_PATH: &str = "/v2/credentials/";
/// The `Authorization` value the simulated container endpoint requires.
pub const CONTAINER_AUTHORIZATION: &str = "SimContainerAuthToken";

fn decide(st: &mut ImdsState, req: &Request<Incoming>, path: &str) -> Decision {
    st.requests += 1;
    let n = st.requests;
    let now = Utc::now();
    let spec = st.spec.clone();
    if path.starts_with(CONTAINER_PATH) {
        return Decision::Answer(container(&spec, st.epoch, now, req));
    }
    match spec.throttle {
        Throttle::Ratio { throttled, of } if of > 0 && (n - 1) % of < throttled => return Decision::Answer(response(429, TEXT, "")),
        Throttle::Rate { per_second } => {
            let sec = now.timestamp();
            st.second = if st.second.0 == sec { (sec, st.second.1 + 1) } else { (sec, 1) };
            if st.second.1 > per_second {
                return Decision::Answer(response(429, TEXT, ""));
            }
        }
        _ => {}
    }
    if spec.server_error_every.is_some_and(|k| k > 0 && n.is_multiple_of(k)) {
        return Decision::Answer(response(500, TEXT, ""));
    }
    if path == "/latest/api/token" {
        if req.method() != Method::PUT {
            return Decision::Answer(response(405, TEXT, ""));
        }
        return match spec.token {
            TokenBehaviour::Hang => Decision::Hang,
            TokenBehaviour::Status(s) => Decision::Answer(response(s, TEXT, "")),
            TokenBehaviour::Issue { ttl_header } => {
                let requested = req
                    .headers()
                    .get("x-aws-ec2-metadata-token-ttl-seconds")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .filter(|t| (1..=21_600).contains(t));
                let Some(requested) = requested else {
                    return Decision::Answer(response(400, TEXT, ""));
                };
                st.next_token += 1;
                let token = format!("{IMDS_TOKEN_MARKER}-{}-{}", st.next_token, fastrand::u64(..));
                let ttl = ttl_header.unwrap_or(requested).min(requested);
                st.tokens.insert(token.clone(), Instant::now() + Duration::from_secs(ttl));
                let mut r = response(200, TEXT, token);
                if let Some(h) = ttl_header {
                    r.headers_mut().insert("x-aws-ec2-metadata-token-ttl-seconds", h.to_string().parse().expect("digits"));
                }
                Decision::Answer(r)
            }
        };
    }
    if req.method() != Method::GET {
        return Decision::Answer(response(405, TEXT, ""));
    }
    let token = req.headers().get("x-aws-ec2-metadata-token").and_then(|v| v.to_str().ok());
    match token {
        Some(t) if st.tokens.get(t).is_none_or(|exp| Instant::now() >= *exp) => return Decision::Answer(response(401, TEXT, "")),
        None if spec.require_token => return Decision::Answer(response(401, TEXT, "")),
        _ => {}
    }
    Decision::Answer(metadata(&spec, st.epoch, now, path))
}

fn metadata(spec: &ImdsSpec, epoch: DateTime<Utc>, now: DateTime<Utc>, path: &str) -> Response<Full<Bytes>> {
    let not_found = || response(404, TEXT, "");
    let Some(role) = spec.role.as_deref() else { return not_found() };
    let issue = current_issue(spec, epoch, now);
    match path {
        "/latest/meta-data/iam/info" => response(
            200,
            TEXT,
            format!(
                "{{\n  \"Code\" : \"Success\",\n  \"LastUpdated\" : \"{}\",\n  \"InstanceProfileArn\" : \"arn:aws:iam::123456789012:instance-profile/{role}-profile\",\n  \"InstanceProfileId\" : \"AIPASIMULATED0000001\"\n}}",
                rfc3339(issue.issued)
            ),
        ),
        p => match listing(p, spec.extended_path) {
            Some("") => response(200, TEXT, role.to_string()),
            Some(r) if r == role => {
                if spec.malformed_document {
                    return response(200, TEXT, "{\n  \"Code\" : \"Success\",\n  \"LastUpdated\" : \"2026-");
                }
                if spec.code != "Success" {
                    return response(
                        200,
                        TEXT,
                        format!(
                            "{{\n  \"Code\" : \"{}\",\n  \"Message\" : \"simulated failure\",\n  \"LastUpdated\" : \"{}\"\n}}",
                            spec.code,
                            rfc3339(now)
                        ),
                    );
                }
                let account = if p.contains("-extended/") { ",\n  \"AccountId\" : \"123456789012\"" } else { "" };
                response(
                    200,
                    TEXT,
                    format!(
                        "{{\n  \"Code\" : \"Success\",\n  \"LastUpdated\" : \"{}\",\n  \"Type\" : \"AWS-HMAC\",\n  \"AccessKeyId\" : \"ASIASIMULATED{:04}\",\n  \"SecretAccessKey\" : \"{SECRET_KEY_MARKER}{:04}/wJalrXUtnFEMI/K7MDENG\",\n  \"Token\" : \"{SESSION_TOKEN_MARKER}{:04}IQoJb3JpZ2luX2VjEPr//////////wEaCXVzLWVhc3QtMSJHMEUCIQ\",\n  \"Expiration\" : \"{}\"{account}\n}}",
                        rfc3339(issue.issued),
                        issue.number % 10_000,
                        issue.number,
                        issue.number,
                        rfc3339(issue.expires)
                    ),
                )
            }
            _ => not_found(),
        },
    }
}

/// The container credentials endpoint: the same rotating credentials as the
/// instance profile, behind an authorization token.
fn container(spec: &ImdsSpec, epoch: DateTime<Utc>, now: DateTime<Utc>, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok());
    if auth != Some(CONTAINER_AUTHORIZATION) {
        return response(401, "application/json", "{\"code\":\"Unauthorized\"}");
    }
    let issue = current_issue(spec, epoch, now);
    response(
        200,
        "application/json",
        format!(
            "{{\"RoleArn\":\"arn:aws:iam::123456789012:role/task-role\",\"AccessKeyId\":\"ASIASIMULATEDTASK{:03}\",\"SecretAccessKey\":\"{SECRET_KEY_MARKER}Task/{}\",\"Token\":\"{SESSION_TOKEN_MARKER}Task{}\",\"Expiration\":\"{}\"}}",
            issue.number % 1000,
            issue.number,
            issue.number,
            rfc3339(issue.expires)
        ),
    )
}

/// The part of `path` after a role-listing prefix the simulated IMDS serves.
fn listing(path: &str, extended: bool) -> Option<&str> {
    path.strip_prefix("/latest/meta-data/iam/security-credentials/")
        .or_else(|| path.strip_prefix("/latest/meta-data/iam/security-credentials-extended/").filter(|_| extended))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_rotate_on_schedule_and_stop_when_told() {
        let epoch = Utc::now() - chrono::Duration::minutes(150);
        let spec = ImdsSpec::default();
        let i = current_issue(&spec, epoch, Utc::now());
        assert_eq!(i.number, 2);
        assert_eq!(i.expires - i.issued, chrono::Duration::hours(6));
        let stopped = ImdsSpec { rotate_every: None, ..spec };
        let i = current_issue(&stopped, epoch, Utc::now());
        assert_eq!((i.number, i.issued), (0, epoch));
    }
}
