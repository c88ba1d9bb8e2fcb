//! Hostile HTTP clients against a subprocess exporter (`demo` on 127.0.0.1:0),
//! one attack per test, each asserting its bound while a normal scrape keeps
//! answering within 1 s: clients that pipeline requests and never read are
//! dropped within 10 s; a storm of idle connections costs at most 32 MiB and
//! its memory comes back; 10,000 connections under a 64 MiB memory cgroup do
//! not get the exporter killed; a flood of wrong passwords does not keep a
//! valid user out for more than 1 s, and bcrypt runs one at a time.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use common::stack::Proc;
use common::{BIN, Metrics};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// How long a normal scrape may take during an attack.
const SCRAPE_BOUND: Duration = Duration::from_secs(1);

/// `demo` on 127.0.0.1:0 with `extra` flags, started through `sh -c` with
/// `prefix` (e.g. joining a cgroup) before `exec`; returns it and its address,
/// read from what it prints.
async fn demo(dir: &Path, prefix: &str, extra: &[&str]) -> (Proc, SocketAddr) {
    let mut script = format!("{prefix}exec \"$0\" demo --web.listen-address 127.0.0.1:0");
    for a in extra {
        script.push_str(&format!(" '{a}'"));
    }
    let mut proc = Proc::spawn("exporter", dir, "sh", &["-c".into(), script, BIN.into()]);
    let until = Instant::now() + Duration::from_secs(20);
    let addr = loop {
        proc.assert_running();
        let log = proc.log();
        let found = log.lines().find_map(|l| l.trim().strip_prefix("metrics:")).and_then(|u| {
            let u = u.trim().trim_start_matches("http://").trim_start_matches("https://");
            u.split('/').next()?.parse::<SocketAddr>().ok()
        });
        if let Some(addr) = found {
            break addr;
        }
        assert!(Instant::now() < until, "exporter did not start:\n{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    (proc, addr)
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

fn http() -> reqwest::Client {
    aws_credentials_exporter::imds::install_tls_provider();
    reqwest::Client::builder().no_proxy().pool_max_idle_per_host(0).timeout(Duration::from_secs(20)).build().unwrap()
}

/// A normal scrape: 200 within [`SCRAPE_BOUND`], with the demo's IMDS seen as up.
async fn scrape(addr: SocketAddr, auth: Option<&str>) -> Metrics {
    let started = Instant::now();
    let mut req = http().get(format!("http://{addr}/metrics")).header("X-Prometheus-Scrape-Timeout-Seconds", "10");
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("scrape failed after {:?}: {e}", started.elapsed()));
    assert_eq!(resp.status(), 200);
    let m = Metrics::parse(&resp.text().await.unwrap());
    let took = started.elapsed();
    assert!(took < SCRAPE_BOUND, "a normal scrape took {took:?} during the attack");
    assert_eq!(m.get("aws_imds_up"), 1.0);
    m
}

/// This test process opens thousands of sockets.
fn raise_fd_limit() {
    rlimit::increase_nofile_limit(u64::MAX).unwrap();
}

/// Opens `n` connections to `addr`, 50 at a time, and holds them (never sending).
async fn open_connections(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let count = n / 50 + usize::from(i < n % 50);
        tasks.spawn(async move {
            let mut held = Vec::with_capacity(count);
            for _ in 0..count {
                held.push(TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("connection failed: {e}")));
            }
            held
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(held) = tasks.join_next().await {
        all.extend(held.unwrap());
    }
    all
}

#[tokio::test]
async fn clients_that_pipeline_and_never_read_are_dropped_within_10s() {
    raise_fd_limit();
    let dir = tempfile::tempdir().unwrap();
    let (mut proc, addr) = demo(dir.path(), "", &[]).await;
    scrape(addr, None).await;
    let pid = proc.pid();
    let fds_before = open_fds(pid);
    let request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(2000);
    let started = Instant::now();
    let mut attackers = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let request = request.clone();
        // Writes until the server stops reading, then holds the connection; never reads.
        attackers.push(tokio::spawn(async move {
            let _ = s.write_all(&request).await;
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(s);
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = open_fds(pid);
    assert!(held >= fds_before + 15, "the attack did not take hold: {fds_before} -> {held} descriptors");
    let dropped_after = loop {
        scrape(addr, None).await;
        if open_fds(pid) <= fds_before + 2 {
            break started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(10), "slow readers still held after 10 s: {} descriptors", open_fds(pid));
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let m = scrape(addr, None).await;
    eprintln!("slow readers: {held} descriptors while held, back to {fds_before} after {dropped_after:?}");
    assert!(m.get(r#"aws_credentials_exporter_http_connections_closed_total{reason="write_timeout"}"#) >= 20.0);
    for a in attackers {
        a.abort();
    }
    proc.assert_running();
    proc.stop();
}

#[tokio::test]
async fn a_storm_of_idle_connections_costs_at_most_32_mib_and_is_given_back() {
    raise_fd_limit();
    let dir = tempfile::tempdir().unwrap();
    let (mut proc, addr) = demo(dir.path(), "", &[]).await;
    for _ in 0..5 {
        scrape(addr, None).await;
    }
    let pid = proc.pid();
    let baseline = status_kib(pid, "VmRSS:");
    let anon_baseline = status_kib(pid, "RssAnon:");
    let started = Instant::now();
    let idle = open_connections(addr, 5000).await;
    let opened = started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let m = scrape(addr, None).await;
    let (during, anon_during) = (status_kib(pid, "VmRSS:"), status_kib(pid, "RssAnon:"));
    drop(idle);
    tokio::time::sleep(Duration::from_secs(2)).await;
    scrape(addr, None).await;
    let (after, anon_after) = (status_kib(pid, "VmRSS:"), status_kib(pid, "RssAnon:"));
    let peak = status_kib(pid, "VmHWM:");
    eprintln!(
        "5,000 idle connections (opened in {opened:?}): RSS {baseline} KiB before, {during} KiB during (peak {peak} KiB), {after} KiB after; \
         anonymous {anon_baseline} -> {anon_during} -> {anon_after} KiB"
    );
    // (The debug binary's mapped code alone is ~17 MiB of RSS; the release binary's ~7 MiB.)
    assert!(during <= 32 * 1024 && peak <= 32 * 1024, "RSS {during} KiB, peak {peak} KiB under 5,000 connections");
    assert!(anon_during - anon_baseline <= 4 * 1024, "5,000 idle connections cost {} KiB", anon_during - anon_baseline);
    assert!(after <= 2 * baseline, "RSS {after} KiB after the storm, baseline {baseline} KiB");
    assert!(m.get("aws_credentials_exporter_http_connections") <= 512.0);
    assert!(m.get(r#"aws_credentials_exporter_http_connections_closed_total{reason="evicted"}"#) > 4000.0);
    proc.assert_running();
    proc.stop();
}

/// A memory cgroup limited to `limit` bytes under this process' own one
/// (cgroup v2, or the v1 memory controller), removed on drop.
struct MemoryCgroup {
    dir: std::path::PathBuf,
    v2: bool,
}

impl MemoryCgroup {
    fn new(limit: u64) -> MemoryCgroup {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let name = format!("ace-test-{}", std::process::id());
        // v2: "0::/path" with a memory controller; v1: "N:memory:/path".
        let v1 = own.lines().find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_string()));
        let (dir, v2) = match v1 {
            Some(p) if Path::new("/sys/fs/cgroup/memory").is_dir() => {
                (Path::new("/sys/fs/cgroup/memory").join(p.trim_start_matches('/')).join(&name), false)
            }
            _ => {
                let p = own.lines().find_map(|l| l.strip_prefix("0::")).expect("a cgroup v2 path");
                (Path::new("/sys/fs/cgroup").join(p.trim_start_matches('/')).join(&name), true)
            }
        };
        std::fs::create_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot create the memory cgroup {} (the test needs root): {e}", dir.display()));
        let (file, value) = if v2 { ("memory.max", limit.to_string()) } else { ("memory.limit_in_bytes", limit.to_string()) };
        std::fs::write(dir.join(file), &value).unwrap_or_else(|e| panic!("cannot set {file}: {e}"));
        if v2 {
            let _ = std::fs::write(dir.join("memory.swap.max"), "0");
        } else {
            let _ = std::fs::write(dir.join("memory.memsw.limit_in_bytes"), &value);
        }
        MemoryCgroup { dir, v2 }
    }

    /// Shell text that moves the shell into the cgroup.
    fn join(&self) -> String {
        format!("echo $$ > '{}'; ", self.dir.join("cgroup.procs").display())
    }

    /// Highest memory use of the cgroup, and how often the limit was hit.
    fn peak_and_failures(&self) -> (u64, u64) {
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).ok().and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(0);
        if self.v2 {
            let events = std::fs::read_to_string(self.dir.join("memory.events")).unwrap_or_default();
            let max = events.lines().find_map(|l| l.strip_prefix("max ")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
            (read("memory.peak"), max)
        } else {
            (read("memory.max_usage_in_bytes"), read("memory.failcnt"))
        }
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[tokio::test]
async fn ten_thousand_connections_under_a_64_mib_memory_limit() {
    raise_fd_limit();
    let dir = tempfile::tempdir().unwrap();
    let cgroup = MemoryCgroup::new(64 * 1024 * 1024);
    let (mut proc, addr) = demo(dir.path(), &cgroup.join(), &[]).await;
    scrape(addr, None).await;
    let started = Instant::now();
    let held = open_connections(addr, 10_000).await;
    eprintln!("10,000 connections opened in {:?}", started.elapsed());
    tokio::time::sleep(Duration::from_secs(1)).await;
    proc.assert_running();
    scrape(addr, None).await;
    drop(held);
    tokio::time::sleep(Duration::from_secs(1)).await;
    scrape(addr, None).await;
    proc.assert_running();
    let (peak, failures) = cgroup.peak_and_failures();
    let rss = status_kib(proc.pid(), "VmHWM:");
    eprintln!("under 64 MiB: cgroup peak {} KiB, limit hit {failures} times; exporter peak RSS {rss} KiB", peak / 1024);
    assert!(peak < 64 * 1024 * 1024, "the cgroup reached its limit: {peak} bytes");
    proc.stop();
}

// ---- basic authentication under a flood of wrong passwords ----

/// bcrypt cost of the test user: the debug build verifies it in tens of milliseconds.
const COST: u32 = 6;

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

async fn status_with(addr: SocketAddr, auth: &str, timeout: Duration) -> Result<u16, String> {
    let req = http().get(format!("http://{addr}/-/healthy")).header("authorization", auth).timeout(timeout);
    req.send().await.map(|r| r.status().as_u16()).map_err(|e| e.to_string())
}

/// Reads one HTTP response (headers and a `Content-Length` body); false when the connection ended.
async fn read_response(conn: &mut TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return true;
            }
        }
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// CPU time (user + system) of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[tokio::test]
async fn a_valid_user_logs_in_within_1s_during_a_200_client_bad_password_flood() {
    raise_fd_limit();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("web.yml");
    std::fs::write(&config, format!("basic_auth_users:\n  prometheus: '{}'\n", bcrypt::hash("right", COST).unwrap())).unwrap();
    let (mut proc, addr) = demo(dir.path(), "", &["--web.config.file", config.to_str().unwrap()]).await;
    let pid = proc.pid();
    let started = Instant::now();
    assert_eq!(status_with(addr, &basic("prometheus", "wrong"), Duration::from_secs(10)).await, Ok(401));
    let one = started.elapsed();
    eprintln!("one bcrypt verification (cost {COST}) answered in {one:?}");

    // Clients that send a wrong password and hang up before the answer: each
    // verification they start must still count against one-at-a-time. The
    // flood runs on its own thread, so that it cannot slow the measurements.
    let hangup = one / 4;
    let flood = |clients: usize, persistent: bool, stop: std::sync::Arc<std::sync::atomic::AtomicBool>| {
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let tasks: Vec<_> = (0..clients)
                    .map(|i| {
                        let stop = stop.clone();
                        tokio::spawn(async move {
                            let mut n = 0u64;
                            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                                let Ok(mut conn) = TcpStream::connect(addr).await else { continue };
                                loop {
                                    n += 1;
                                    let req = format!(
                                        "GET /-/healthy HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\n\r\n",
                                        basic("prometheus", &format!("bad-{i}-{n}"))
                                    );
                                    if conn.write_all(req.as_bytes()).await.is_err() {
                                        break;
                                    }
                                    if !persistent {
                                        tokio::time::sleep(hangup).await;
                                        break; // hang up before the answer
                                    }
                                    if !read_response(&mut conn).await || stop.load(std::sync::atomic::Ordering::Relaxed) {
                                        break;
                                    }
                                }
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    let _ = t.await;
                }
            })
        })
    };
    let stop_hangups = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hangups = flood(20, false, stop_hangups.clone());
    let (ticks_before, at) = (cpu_ticks(pid), Instant::now());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ticks = (cpu_ticks(pid) - ticks_before) as f64;
    let cores = ticks / 100.0 / at.elapsed().as_secs_f64();
    let threads = status_kib(pid, "Threads:");
    eprintln!("hang-up flood: {cores:.2} cores busy, {threads} threads");
    // One verification at a time is one core; the rest is HTTP work.
    assert!(cores < 1.3, "bcrypt runs more than one at a time: {cores:.2} cores");
    // They would also delay a first login without bound: with more new
    // passwords per second than bcrypt verifies, no order of service helps.
    stop_hangups.store(true, std::sync::atomic::Ordering::Relaxed);
    hangups.join().unwrap();

    // 200 persistent clients, a new wrong password each time.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let persistent = flood(200, true, stop.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut logins = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let status = status_with(addr, &basic("prometheus", "right"), Duration::from_secs(20)).await;
        logins.push((status, started.elapsed()));
    }
    // The first login is a bcrypt verification; the next ones are cached.
    let m = scrape(addr, Some(&basic("prometheus", "right"))).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    persistent.join().unwrap();
    eprintln!("valid logins during the flood: {logins:?}");
    for (status, took) in &logins {
        assert_eq!(*status, Ok(200));
        assert!(*took < Duration::from_secs(1), "a valid login took {took:?} during the flood");
    }
    assert!(m.get("aws_credentials_exporter_http_connections") >= 1.0);
    proc.assert_running();
    proc.stop();
}
