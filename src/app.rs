//! The subcommands, wired from the library's pieces; `main.rs` only dispatches.

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::config::{Config, DemoArgs, ExporterArgs, SimulateArgs};
use crate::http::shutdown_signal;
use crate::imds::ImdsClient;
use crate::ntp::NtpProbe;
use crate::probe::Prober;
use crate::server::{self, Exporter};
use crate::sim::{self, Simulator};
use crate::{logging, metrics};

/// Listen address of `demo` when none is given: loopback only.
pub const DEMO_LISTEN: &str = "127.0.0.1:10169";

/// The probes of a validated configuration.
pub fn prober(config: &Config) -> Prober {
    Prober::new(ImdsClient::new(config.imds.clone()), config.probe_min_interval, NtpProbe::new(config.ntp.clone()), config.ntp.min_interval)
}

/// Builds the exporter's shared state from a validated configuration.
pub fn exporter(config: &Config) -> Arc<Exporter> {
    exporter_with(config, prober(config))
}

/// The exporter's shared state around the given probes.
pub fn exporter_with(config: &Config, prober: Prober) -> Arc<Exporter> {
    Arc::new(Exporter { prober, telemetry_path: config.telemetry_path.clone() })
}

async fn bind(config: &Config) -> anyhow::Result<TcpListener> {
    TcpListener::bind(config.listen).await.with_context(|| format!("cannot listen on {} (--web.listen-address)", config.listen))
}

/// `serve`: the exporter, configured from flags and the process environment.
pub async fn serve(args: ExporterArgs) -> anyhow::Result<()> {
    logging::init(args.log_level, args.log_format);
    let config = args.resolve(&|k| std::env::var(k).ok())?;
    let listener = bind(&config).await?;
    tracing::info!(
        version = metrics::VERSION,
        revision = metrics::REVISION,
        listen = %listener.local_addr()?,
        imds = %config.imds.endpoint,
        imds_disabled = config.imds.disabled,
        "aws-credentials-exporter started"
    );
    server::run(listener, exporter(&config), shutdown_signal()).await;
    Ok(())
}

/// `demo`: a simulated EC2 instance on loopback and the exporter pointed at it.
pub async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    logging::init(args.exporter.log_level, args.exporter.log_format);
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
    let listener = bind(&config).await?;
    let addr = listener.local_addr()?;
    // A closed stdout (piped into `head`) must not stop the demo: ignore write errors.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "aws-credentials-exporter demo, scenario {:?}: {}", scenario.name, scenario.description);
    let _ = writeln!(out, "  metrics:        http://{addr}{}", config.telemetry_path);
    let _ = writeln!(out, "  landing page:   http://{addr}/");
    let _ = writeln!(out, "  simulated IMDS: {}", simulator.imds_url());
    let _ = writeln!(out, "  simulated NTP:  {}", simulator.ntp_addr());
    let _ = writeln!(out, "Press Ctrl-C to stop.");
    let _ = out.flush();
    drop(out);
    // The simulated instance has its own kernel clock state, so the demo does
    // not depend on whether this machine runs a time daemon.
    let kernel = scenario.kernel;
    let prober = prober(&config).with_kernel_clock(Arc::new(move || Ok(kernel)));
    server::run(listener, exporter_with(&config, prober), shutdown_signal()).await;
    simulator.stop().await;
    Ok(())
}

/// `simulate`: only the simulated instance (tests run it inside network namespaces).
pub async fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    logging::init(args.log_level, crate::config::LogFormat::Logfmt);
    let scenario = sim::scenario::by_name(&args.scenario).map_err(anyhow::Error::msg)?;
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
