//! Real peers for end-to-end tests: the exporter's `demo`, Prometheus,
//! Alertmanager and a webhook receiver, all on 127.0.0.1.
//!
//! Every process runs with its working directory inside the test's temporary
//! directory and with a cleared environment (no proxy variables), logs to a
//! file there, and is stopped by PID when its [`Proc`] is stopped or dropped,
//! so a failing test leaves nothing behind either. [`assert_none_left`] proves it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::BIN;

/// A path in this repository.
pub fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A TCP port on 127.0.0.1 that was free a moment ago (for peers that cannot
/// report the port they bound when given port 0, like Prometheus).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A child process started by a test.
pub struct Proc {
    pub name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Starts `program args` in `dir`, its output in `dir/<name>.log`.
    pub fn spawn(name: &str, dir: &Path, program: &str, args: &[String]) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(program)
            .args(args)
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into()))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program} (install it: scripts/test.sh does): {e}"));
        Proc { name: name.to_string(), child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process' output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics with the log when the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("{} exited ({status}):\n{}", self.name, self.log());
        }
    }

    /// SIGTERM, then SIGKILL after 10 s; reaps the process. Panics when it
    /// needed SIGKILL (a peer that ignores SIGTERM would leak in production too).
    pub fn stop(mut self) {
        assert!(self.terminate(), "{} ignored SIGTERM for 10 s:\n{}", self.name, self.log());
    }

    /// Returns false when SIGKILL was needed.
    fn terminate(&mut self) -> bool {
        if self.child.try_wait().unwrap().is_some() {
            return true;
        }
        let _ = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status();
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if self.child.try_wait().unwrap().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// Fails when any process still has its working directory in `dir`: every
/// process a test started runs there.
pub fn assert_none_left(dir: &Path) {
    let dir = dir.canonicalize().unwrap();
    let mut left = vec![];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        if let Ok(cwd) = std::fs::read_link(entry.path().join("cwd"))
            && cwd.starts_with(&dir)
        {
            let cmdline = std::fs::read_to_string(entry.path().join("cmdline")).unwrap_or_default().replace('\0', " ");
            left.push(format!("{pid}: {cmdline}"));
        }
    }
    assert!(left.is_empty(), "processes left running in {}:\n{}", dir.display(), left.join("\n"));
}

/// `aws-credentials-exporter demo --scenario NAME` on 127.0.0.1:`port`
/// (its simulated IMDS listens on another loopback port).
pub fn demo(dir: &Path, scenario: &str, port: u16, extra: &[&str]) -> Proc {
    let mut args: Vec<String> =
        ["demo", "--scenario", scenario, "--web.listen-address", &format!("127.0.0.1:{port}")].iter().map(|s| s.to_string()).collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    Proc::spawn(&format!("demo-{scenario}"), dir, BIN, &args)
}

/// Debian's `prometheus` with `config` (YAML), TSDB in `dir`, on 127.0.0.1:`port`.
pub fn prometheus(dir: &Path, config: &str, port: u16) -> Proc {
    let cfg = dir.join("prometheus.yml");
    std::fs::write(&cfg, config).unwrap();
    let args = [
        format!("--config.file={}", cfg.display()),
        format!("--storage.tsdb.path={}", dir.join("tsdb").display()),
        format!("--web.listen-address=127.0.0.1:{port}"),
        "--log.level=warn".into(),
    ];
    Proc::spawn("prometheus", dir, "prometheus", &args)
}

/// Debian's `prometheus-alertmanager` with `config` (YAML), clustering off,
/// storage in `dir`, on 127.0.0.1:`port`.
pub fn alertmanager(dir: &Path, config: &str, port: u16) -> Proc {
    let cfg = dir.join("alertmanager.yml");
    std::fs::write(&cfg, config).unwrap();
    let args = [
        format!("--config.file={}", cfg.display()),
        format!("--storage.path={}", dir.join("alertmanager").display()),
        format!("--web.listen-address=127.0.0.1:{port}"),
        // Empty: no gossip listener, no peers.
        "--cluster.listen-address=".into(),
        "--log.level=warn".into(),
    ];
    Proc::spawn("alertmanager", dir, "prometheus-alertmanager", &args)
}

/// Polls `url` until it answers 2xx; panics (with the log) when `proc` exits
/// or `timeout` passes.
pub async fn wait_ready(proc: &mut Proc, url: &str, timeout: Duration) {
    let client = super::client();
    let until = Instant::now() + timeout;
    loop {
        proc.assert_running();
        if let Ok(r) = client.get(url).timeout(Duration::from_secs(1)).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(Instant::now() < until, "{} not ready at {url} after {timeout:?}:\n{}", proc.name, proc.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `GET base/path` as JSON.
pub async fn get_json(url: &str) -> Value {
    let resp = super::client().get(url).send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = resp.status();
    let body = resp.text().await.unwrap();
    assert!(status.is_success(), "{url}: {status}\n{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}\n{body}"))
}

/// An instant query against the Prometheus HTTP API; returns `data.result`.
pub async fn query(prometheus: &str, promql: &str) -> Vec<Value> {
    let url = reqwest::Url::parse_with_params(&format!("{prometheus}/api/v1/query"), &[("query", promql)]).unwrap();
    let v = get_json(url.as_str()).await;
    assert_eq!(v["status"], "success", "{promql}: {v}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// An HTTP receiver for Alertmanager's webhook on 127.0.0.1: keeps every
/// alert it is sent, in order.
pub struct Webhook {
    pub addr: SocketAddr,
    alerts: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Webhook {
    pub async fn start() -> Webhook {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let alerts = Arc::new(Mutex::new(vec![]));
        let sink = alerts.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let sink = sink.clone();
                tokio::spawn(async move {
                    while let Some(body) = read_request(&mut conn).await {
                        if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                            sink.lock().unwrap().extend(v["alerts"].as_array().cloned().unwrap_or_default());
                        }
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                        if conn.write_all(ok).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Webhook { addr, alerts, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Every alert received so far (the `alerts` of each notification).
    pub fn alerts(&self) -> Vec<Value> {
        self.alerts.lock().unwrap().clone()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one HTTP/1.1 request with a Content-Length body; None at EOF.
async fn read_request(conn: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_ascii_lowercase();
    let len: usize = head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    while buf.len() < header_end + len {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf[header_end..header_end + len].to_vec())
}
