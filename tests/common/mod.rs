//! Shared helpers: start the simulator and the exporter on 127.0.0.1:0,
//! scrape, and read metric values. Everything here talks to loopback only.
#![allow(dead_code)]

pub mod monitoring;
pub mod stack;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aws_credentials_exporter::app;
use aws_credentials_exporter::config::{Cli, Config};
use aws_credentials_exporter::host::{Host, SimulatedHost};
use aws_credentials_exporter::server;
use aws_credentials_exporter::sim::{ImdsSpec, Listen, NtpSpec, Simulator, scenario};
use clap::Parser;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The simulated IMDS on loopback.
pub async fn sim(spec: ImdsSpec) -> Simulator {
    sim_with_ntp(spec, NtpSpec::default()).await
}

/// The simulated IMDS and time service on loopback.
pub async fn sim_with_ntp(imds: ImdsSpec, ntp: NtpSpec) -> Simulator {
    Simulator::start(imds, ntp, Listen::default()).await.expect("simulator starts")
}

/// Starts the exporter pointed at both services of `sim`.
pub async fn exporter_on(sim: &Simulator, flags: &[&str]) -> Running {
    let ntp = sim.ntp_addr().to_string();
    let mut all = vec!["--ntp.server", ntp.as_str()];
    all.extend_from_slice(flags);
    exporter(&sim.imds_url(), &all).await
}

/// A running in-process exporter.
pub struct Running {
    pub addr: SocketAddr,
    pub exporter: Arc<server::Exporter>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), &mut self.task).await.expect("exporter stops").unwrap();
    }
}

/// Config for an exporter pointed at `imds_url` with extra flags; the host's
/// AWS_* variables are ignored so a developer's environment cannot leak in.
/// Without `--ntp.server` in `flags`, NTP goes to a closed loopback port
/// (never to the default link-local address from the host).
pub fn config(imds_url: &str, flags: &[&str]) -> Config {
    let mut argv = vec!["aws-credentials-exporter", "--web.listen-address", "127.0.0.1:0", "--imds.endpoint", imds_url];
    if !flags.contains(&"--ntp.server") {
        argv.extend_from_slice(&["--ntp.server", "127.0.0.1:9"]);
    }
    argv.extend_from_slice(flags);
    Cli::try_parse_from(argv).expect("flags").exporter.resolve(&|_| None).expect("config")
}

/// Starts the exporter in-process, on a simulated host (the `healthy`
/// scenario's kernel clock and an empty application environment), so the test
/// process's own environment and files cannot leak into the results.
pub async fn exporter(imds_url: &str, flags: &[&str]) -> Running {
    exporter_with_host(imds_url, flags, scenario::by_name("healthy").unwrap().host()).await
}

/// Starts the exporter in-process on the given simulated host.
pub async fn exporter_with_host(imds_url: &str, flags: &[&str], host: SimulatedHost) -> Running {
    exporter_with_any_host(imds_url, flags, Arc::new(host)).await
}

/// Starts the exporter in-process on any [`Host`].
pub async fn exporter_with_any_host(imds_url: &str, flags: &[&str], host: Arc<dyn Host>) -> Running {
    let config = config(imds_url, flags);
    start(&config, app::prober(&config).with_host(host)).await
}

/// Starts the exporter in-process on this machine, as `serve` would (its
/// files under `--path.rootfs`, its processes; the environment is the test's).
pub async fn exporter_on_this_machine(imds_url: &str, flags: &[&str]) -> Running {
    let config = config(imds_url, flags);
    start(&config, app::prober(&config)).await
}

async fn start(config: &Config, prober: aws_credentials_exporter::probe::Prober) -> Running {
    let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let exporter = app::exporter_with(config, prober).expect("web config");
    let (stop, stopped) = oneshot::channel::<()>();
    let e = exporter.clone();
    let task = tokio::spawn(async move {
        server::run(listener, e, async {
            let _ = stopped.await;
        })
        .await
    });
    Running { addr, exporter, stop: Some(stop), task }
}

/// An HTTP client that never uses a proxy.
pub fn client() -> reqwest::Client {
    aws_credentials_exporter::imds::install_tls_provider();
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(20)).build().unwrap()
}

/// GET a page's body.
pub async fn get(url: &str) -> String {
    let resp = client().get(url).send().await.expect("request");
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
    resp.text().await.unwrap()
}

/// Scrapes `/metrics` and parses it.
pub async fn scrape(r: &Running) -> Metrics {
    Metrics::parse(&get(&r.url("/metrics")).await)
}

/// Samples by series, exactly as printed (`name{a="b"}`).
#[derive(Debug, Clone)]
pub struct Metrics {
    pub text: String,
    pub samples: BTreeMap<String, f64>,
}

impl Metrics {
    pub fn parse(text: &str) -> Self {
        let mut samples = BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {line:?}"));
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value in {line:?}")),
            };
            samples.insert(series.to_string(), value);
        }
        Self { text: text.to_string(), samples }
    }

    /// The value of one series; panics with the page when absent.
    pub fn get(&self, series: &str) -> f64 {
        *self.samples.get(series).unwrap_or_else(|| panic!("no series {series:?} in\n{}", self.text))
    }

    pub fn has(&self, series: &str) -> bool {
        self.samples.contains_key(series)
    }

    /// Series whose name (before `{`) is `name`.
    pub fn family(&self, name: &str) -> Vec<(&str, f64)> {
        self.samples.iter().filter(|(k, _)| k.split('{').next() == Some(name)).map(|(k, v)| (k.as_str(), *v)).collect()
    }
}

/// Path of the exporter binary Cargo built for the integration tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_aws-credentials-exporter");

/// Runs `script` with `sh -eu` inside a new, empty network namespace made by
/// `unshare -n` (only a loopback device, which the script brings up): nothing
/// it starts can reach any other network. The process environment is cleared
/// except for `PATH`, `BIN` (the exporter) and `env`; a proxy is set that does
/// not exist, so anything honouring it would fail. Fails the test when the
/// namespace cannot be made (root or user namespaces are required): no skip.
pub fn in_netns(script: &str, env: &[(&str, &str)]) -> std::process::Output {
    in_namespaces(&["-n"], script, env)
}

/// [`in_netns`] with other `unshare` flags besides `-n` (e.g. `-m`: a private
/// mount namespace, whose mounts vanish with it).
pub fn in_namespaces(unshare: &[&str], script: &str, env: &[(&str, &str)]) -> std::process::Output {
    assert!(unshare.contains(&"-n"), "every namespace script gets its own network");
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new("timeout");
    // A guard only: the container image test serves for a minute in here.
    cmd.args(["-k", "5", "150", "unshare"])
        .args(unshare)
        .args(["sh", "-eu", "-c", script])
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into()))
        .env("BIN", BIN)
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("http_proxy", "http://127.0.0.1:9");
    for (k, v) in env {
        cmd.env(k, v);
    }
    succeed(&mut cmd)
}

/// Runs `cmd` to completion and fails the test, with its output, unless it
/// succeeds; a program that cannot start is a tool scripts/test.sh installs.
pub fn succeed(cmd: &mut std::process::Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?} (scripts/test.sh installs it): {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The fenced ```sh blocks of README.md that `<!-- tested-by: TEST -->` marks
/// (on the line right before each block), in order: the deployment commands
/// `test` runs, so README and test cannot drift. Panics when there is none.
pub fn readme_blocks(test: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(stack::repo("README.md")).unwrap();
    let marker = format!("<!-- tested-by: {test} -->");
    let lines: Vec<&str> = readme.lines().collect();
    let mut blocks = Vec::new();
    for (i, _) in lines.iter().enumerate().filter(|(_, l)| l.trim() == marker) {
        assert_eq!(lines.get(i + 1).map(|l| l.trim()), Some("```sh"), "README.md:{}: {marker} must precede a ```sh block", i + 1);
        let body: Vec<&str> = lines[i + 2..].iter().take_while(|l| l.trim() != "```").copied().collect();
        blocks.push(body.join("\n") + "\n");
    }
    assert!(!blocks.is_empty(), "README.md has no block marked {marker}");
    blocks
}

/// Shell functions for netns scripts: `wait_for URL PATTERN` polls until the
/// page matches, `instance [ARGS]` starts the simulator at the link-local
/// addresses, `stop PID...` sends SIGTERM, waits and fails if any survives.
pub const SH_HELPERS: &str = r#"
wait_for() {
  i=0
  while [ $i -lt 100 ]; do
    if curl -sf --noproxy '*' -m 2 "$1" > page.txt 2>/dev/null && grep -q "$2" page.txt; then return 0; fi
    i=$((i+1)); sleep 0.1
  done
  echo "timed out waiting for $2 at $1" >&2; cat page.txt >&2 || true; return 1
}
instance() {
  # The simulated instance at the real link-local addresses on the namespace's
  # loopback (extra arguments go to `simulate`); $SIM is its PID.
  ip link set lo up
  ip addr add 169.254.169.254/32 dev lo
  ip addr add 169.254.169.123/32 dev lo
  "$BIN" simulate "$@" --imds.listen 169.254.169.254:80 --ntp.listen 169.254.169.123:123 > sim.log 2>&1 &
  SIM=$!
  i=0; until grep -q '^ntp ' sim.log || [ $i -gt 50 ]; do i=$((i+1)); sleep 0.1; done
}
stop() {
  for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "$@"; do wait "$p" 2>/dev/null || true; done
  for p in "$@"; do if kill -0 "$p" 2>/dev/null; then echo "process $p survived" >&2; kill -KILL "$p"; return 1; fi; done
}
"#;
