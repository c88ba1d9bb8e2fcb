//! # aws-credentials-exporter
//!
//! A Prometheus exporter that makes the causes of `403 ExpiredToken` visible
//! before requests fail: instance-profile credentials that stop rotating and
//! an IMDS that cannot be reached or throttles.
//!
//! # Layout
//!
//! Data flows one way: **scrape -> probes -> one [`probe::Snapshot`] -> renderers**.
//!
//! - [`config`]: flags and the AWS SDK environment variables, validated once at start.
//! - [`imds`]: the IMDS client (token, retries, role discovery, credential
//!   document) -> [`imds::ImdsObservation`]; its counters in [`imds::stats`].
//! - [`ntp`]: the SNTP probe of the time servers (Amazon Time Sync Service),
//!   with kiss-o'-death backoff -> [`ntp::NtpReport`].
//! - [`clock`]: the kernel clock state (`adjtimex`, read-only) -> [`clock::KernelClock`];
//!   the only module with `unsafe` code.
//! - [`chain`]: the credential provider chain an SDK would walk for the exporter
//!   or another process (environment, Java system properties, profile files,
//!   web identity, container, instance profile) -> [`chain::ChainObservation`].
//! - [`probe`]: one driver per probe (imds, ntp, chain, time_sync, kernel), each under
//!   its own budget and returning a [`probe::Outcome`] (value, duration, typed error
//!   kind); runs them when scraped, at most once per minimum interval (single flight,
//!   in tasks a scrape's deadline cannot cancel), and assembles a [`probe::Snapshot`].
//! - [`metrics`]: Snapshot -> Prometheus text; the only module that knows metric names.
//! - [`server`]: HTTP: `/metrics`, landing page, health; on [`http`], the shared hyper loop
//!   (plain or TLS). [`webconfig`]: `--web.config.file` (TLS, client certificates, basic
//!   auth, headers in the exporter-toolkit format), re-read when it changes.
//! - [`sim`]: the simulated EC2 instance behind `demo` and the tests.
//! - [`fsread`]: the one file reader: capped, non-blocking, regular files only
//!   (FIFOs, devices and sockets refused), used for every file the exporter reads.
//! - [`secret`], [`backoff`], [`logging`], [`timefmt`]: small shared pieces.
//! - [`app`]: the subcommands, wired from the pieces above.
// `deny`, not `forbid`: `clock` reads the kernel clock through one `unsafe` call.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod app;
pub mod backoff;
pub mod chain;
pub mod clock;
pub mod config;
pub mod fsread;
#[cfg(test)]
mod fuzzing;
pub mod host;
pub mod http;
pub mod imds;
pub mod logging;
pub mod metrics;
pub mod ntp;
pub mod probe;
pub mod report;
pub mod secret;
pub mod server;
pub mod sim;
pub mod timefmt;
pub mod timesync;
pub mod webconfig;
