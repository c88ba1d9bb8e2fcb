//! Log set-up: `tracing` to stderr, logfmt or JSON, filtered by `--log.level`.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, LogLevel};

/// Installs the global subscriber; a second call (tests) is a no-op.
pub fn init(level: LogLevel, format: LogFormat) {
    let level = match level {
        LogLevel::Trace => "trace",
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    };
    // Our crate at the chosen level; dependencies (hyper, reqwest, rustls) one notch quieter.
    // rustls-platform-verifier warns once per CA path it cannot read; the
    // exporter's own warning says what a missing root store means for it.
    let filter = EnvFilter::new(format!("warn,rustls_platform_verifier=error,aws_credentials_exporter={level}"));
    let layer = match format {
        LogFormat::Logfmt => {
            tracing_logfmt::builder().with_span_name(false).with_span_path(false).layer().with_writer(std::io::stderr).boxed()
        }
        LogFormat::Json => tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr).boxed(),
    };
    let _ = tracing_subscriber::registry().with(filter).with(layer).try_init();
}
