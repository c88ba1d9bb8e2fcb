//! The subcommands, wired from the library's pieces; `main.rs` only dispatches.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::chain::ChainProbe;
use crate::config::{CheckArgs, Config, DemoArgs, ExporterArgs, LogLevel, OutputFormat, SimulateArgs};
use crate::host::RealHost;
use crate::http::shutdown_signal;
use crate::imds::{HttpClient, ImdsClient};
use crate::ntp::NtpProbe;
use crate::probe::Prober;
use crate::server::{self, Exporter};
use crate::sim::{self, Simulator};
use crate::webconfig::{WebConfigError, WebConfigFile};
use crate::{http, logging, metrics, report};

/// Listen address of `demo` when none is given: loopback only.
pub const DEMO_LISTEN: &str = "127.0.0.1:10169";

/// The probes of a validated configuration, reading the machine under `--path.rootfs`.
pub fn prober(config: &Config) -> Prober {
    // One client for both credential endpoints: the root store is loaded (or
    // found missing, and said so) once.
    let http = HttpClient::new(config.imds.timeout);
    Prober::new(
        ImdsClient::with_http(config.imds.clone(), http.clone()),
        config.probe_min_interval,
        NtpProbe::new(config.ntp.clone()),
        config.ntp.min_interval,
        ChainProbe::new(config.chain.clone(), http),
    )
    .with_host(Arc::new(RealHost::new(config.rootfs.clone())))
}

/// Builds the exporter's shared state from a validated configuration; reads
/// `--web.config.file`.
pub fn exporter(config: &Config) -> Result<Arc<Exporter>, WebConfigError> {
    exporter_with(config, prober(config))
}

/// The exporter's shared state around the given probes; reads `--web.config.file`.
pub fn exporter_with(config: &Config, prober: Prober) -> Result<Arc<Exporter>, WebConfigError> {
    let web_config = config.web_config_file.as_deref().map(WebConfigFile::load).transpose()?.map(Arc::new);
    let limits = http::Limits { max_connections: config.max_connections, ..http::Limits::default() };
    Ok(Arc::new(Exporter {
        prober,
        telemetry_path: config.telemetry_path.clone(),
        web_config,
        page: Default::default(),
        connections: Arc::new(http::Connections::new(limits)),
    }))
}

/// `https` when the web config turns TLS on.
fn scheme(exporter: &Exporter) -> &'static str {
    if exporter.web_config.as_ref().is_some_and(|w| w.tls_enabled()) { "https" } else { "http" }
}

/// Raises the soft open-file limit to the hard limit, as the Go runtime does
/// for every Go exporter: each scrape connection is a descriptor, and the
/// soft limit systemd and most shells give (1,024) is low for a server.
/// Start-up never fails here: on error the limit stays as it was, with a
/// warning. Returns the soft limit now in force, when it can be read.
pub fn raise_open_file_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-file limit (RLIMIT_NOFILE); keeping the current one");
            rlimit::Resource::NOFILE.get().ok().map(|(soft, _)| soft)
        }
    }
}

async fn bind(config: &Config) -> anyhow::Result<TcpListener> {
    TcpListener::bind(config.listen).await.with_context(|| format!("cannot listen on {} (--web.listen-address)", config.listen))
}

/// `serve`: the exporter, configured from flags and the process environment.
pub async fn serve(args: ExporterArgs) -> anyhow::Result<()> {
    logging::init(args.log_level, args.log_format);
    let open_files_limit = raise_open_file_limit();
    let config = args.resolve(&|k| std::env::var(k).ok())?;
    // Before listening: an invalid web config must not leave an open port behind.
    let exporter = exporter(&config)?;
    let listener = bind(&config).await?;
    let signals = other_signals(exporter.clone());
    tracing::info!(
        version = metrics::VERSION,
        revision = metrics::REVISION,
        branch = metrics::BRANCH,
        listen = %listener.local_addr()?,
        scheme = scheme(&exporter),
        basic_auth = exporter.web_config.as_ref().is_some_and(|w| w.current().auth().is_some()),
        imds = %config.imds.endpoint,
        imds_disabled = config.imds.disabled,
        open_files_limit,
        "aws-credentials-exporter started"
    );
    server::run(listener, exporter, shutdown_signal()).await;
    signals.abort();
    Ok(())
}

/// SIGHUP re-reads `--web.config.file` (as Prometheus does); SIGUSR1 and
/// SIGUSR2 are logged and ignored. None of them stops the exporter: their
/// default action would end it with a status systemd's `Restart=on-failure`
/// does not restart.
/// The handlers are installed before this returns (before the exporter says
/// it started), so no early signal meets the default action.
pub fn other_signals(exporter: Arc<Exporter>) -> tokio::task::JoinHandle<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut hup), Ok(mut usr1), Ok(mut usr2)) =
        (signal(SignalKind::hangup()), signal(SignalKind::user_defined1()), signal(SignalKind::user_defined2()))
    else {
        tracing::warn!("cannot handle SIGHUP, SIGUSR1 and SIGUSR2; they will stop the exporter");
        return tokio::spawn(async {});
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = hup.recv() => match exporter.web_config.clone() {
                    Some(web) => {
                        tracing::info!(file = %web.path().display(), "SIGHUP received; re-reading the web config");
                        // A file read: off the async workers.
                        let _ = tokio::task::spawn_blocking(move || web.reload()).await;
                    }
                    None => tracing::info!("SIGHUP received; no --web.config.file to re-read"),
                },
                _ = usr1.recv() => tracing::info!("SIGUSR1 received and ignored"),
                _ = usr2.recv() => tracing::info!("SIGUSR2 received and ignored"),
            }
        }
    })
}

/// `check` logs only warnings unless asked for more: the report is the output.
fn check_log_level(level: LogLevel) -> LogLevel {
    if level == LogLevel::Info { LogLevel::Warn } else { level }
}

/// Runs one probe round and prints the report; returns the exit code.
async fn run_check(prober: &Prober, output: OutputFormat) -> i32 {
    let deadline = Instant::now() + server::DEFAULT_SCRAPE_TIMEOUT;
    let report = report::build(&prober.snapshot(deadline).await);
    let text = match output {
        OutputFormat::Json => report::render_json(&report),
        OutputFormat::Text => {
            let stdout = std::io::stdout();
            let color = stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none();
            report::render_text(&report, color)
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
    report.status.exit_code()
}

/// `check`: the troubleshooting article as one command.
pub async fn check(args: CheckArgs) -> anyhow::Result<i32> {
    logging::init(check_log_level(args.exporter.log_level), args.exporter.log_format);
    let config = args.exporter.resolve(&|k| std::env::var(k).ok())?;
    Ok(run_check(&prober(&config), args.output).await)
}

/// `demo`: a simulated EC2 instance on loopback and the exporter pointed at it
/// (or, with `--check`, one `check` against it).
pub async fn demo(args: DemoArgs) -> anyhow::Result<i32> {
    let level = if args.check { check_log_level(args.exporter.log_level) } else { args.exporter.log_level };
    logging::init(level, args.exporter.log_format);
    raise_open_file_limit();
    let scenario = sim::scenario::by_name(&args.scenario).map_err(anyhow::Error::msg)?;
    let simulator = Simulator::start(scenario.imds.clone(), scenario.ntp.clone(), sim::Listen::default())
        .await
        .context("cannot start the simulated EC2 instance")?;
    let mut exporter_args = args.exporter.clone();
    exporter_args.listen_address.get_or_insert_with(|| DEMO_LISTEN.to_string());
    exporter_args.imds_endpoint = Some(simulator.imds_url());
    exporter_args.ntp_servers = vec![simulator.ntp_addr().to_string()];
    exporter_args.ntp_ipv6 = false;
    // The demo is hermetic: the caller's AWS_* variables must not point it elsewhere.
    let config = exporter_args.resolve(&|_| None)?;
    if args.check {
        let prober = prober(&config).with_host(Arc::new(scenario.host()));
        let code = run_check(&prober, args.output).await;
        simulator.stop().await;
        return Ok(code);
    }
    // The simulated instance has its own kernel clock state, so the demo does
    // not depend on whether this machine runs a time daemon.
    let prober = prober(&config).with_host(Arc::new(scenario.host()));
    let started = match exporter_with(&config, prober) {
        Ok(exporter) => bind(&config).await.map(|listener| (exporter, listener)),
        Err(e) => Err(e.into()),
    };
    let (exporter, listener) = match started {
        Ok(started) => started,
        Err(e) => {
            simulator.stop().await;
            return Err(e);
        }
    };
    let addr = listener.local_addr()?;
    let scheme = scheme(&exporter);
    let signals = other_signals(exporter.clone());
    // A closed stdout (piped into `head`) must not stop the demo: ignore write errors.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "aws-credentials-exporter demo, scenario {:?}: {}", scenario.name, scenario.description);
    let _ = writeln!(out, "  metrics:        {scheme}://{addr}{}", config.telemetry_path);
    let _ = writeln!(out, "  landing page:   {scheme}://{addr}/");
    let _ = writeln!(out, "  simulated IMDS: {}", simulator.imds_url());
    let _ = writeln!(out, "  simulated NTP:  {}", simulator.ntp_addr());
    let _ = writeln!(out, "Press Ctrl-C to stop.");
    let _ = out.flush();
    drop(out);
    server::run(listener, exporter, shutdown_signal()).await;
    signals.abort();
    simulator.stop().await;
    Ok(0)
}

/// `simulate`: only the simulated instance (tests run it inside network namespaces).
pub async fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    logging::init(args.log_level, crate::config::LogFormat::Logfmt);
    let mut scenario = sim::scenario::by_name(&args.scenario).map_err(anyhow::Error::msg)?;
    scenario.imds.hostile = args.hostile.as_deref().map(sim::HostileImds::by_name).transpose().map_err(anyhow::Error::msg)?;
    let listen = sim::Listen { imds: args.imds_listen, ntp: args.ntp_listen };
    let simulator = Simulator::start(scenario.imds, scenario.ntp, listen).await.with_context(|| format!("cannot listen on {listen:?}"))?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "imds {}", simulator.imds_url());
    let _ = writeln!(out, "ntp {}", simulator.ntp_addr());
    let _ = out.flush();
    drop(out);
    shutdown_signal().await;
    simulator.stop().await;
    Ok(())
}
