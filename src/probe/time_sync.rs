//! The time daemon configuration probe driver: [`Host::time_sync_config`] on
//! the blocking pool, under [`BUDGET`].

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{ErrorKind, Outcome, ProbeError};
use crate::host::Host;
use crate::timesync::TimeSyncConfig;

/// How long the scan of the time daemon files may take: a few small files;
/// longer means a hung file system.
pub const BUDGET: Duration = Duration::from_secs(5);

/// Scans the time daemon configuration. A scan that overruns `budget` (a hung
/// file system) is a failure that keeps the last scan's findings; the blocking
/// read itself cannot be cancelled and finishes on its own.
pub async fn run(host: Arc<dyn Host>, prev: Option<Arc<Outcome<TimeSyncConfig>>>, budget: Duration) -> Outcome<TimeSyncConfig> {
    let started = Instant::now();
    let scan = tokio::task::spawn_blocking(move || host.time_sync_config());
    let (value, error) = match tokio::time::timeout(budget, scan).await {
        Ok(Ok(config)) => (config, None),
        Ok(Err(e)) => (last(prev), Some(ProbeError::new(ErrorKind::Io, format!("time daemon configuration scan failed: {e}")))),
        Err(_) => (
            last(prev),
            Some(ProbeError::new(
                ErrorKind::Budget,
                format!("time daemon configuration files not read within {budget:?}: is a file system under /etc hung?"),
            )),
        ),
    };
    Outcome { value, duration: started.elapsed(), error }
}

fn last(prev: Option<Arc<Outcome<TimeSyncConfig>>>) -> TimeSyncConfig {
    prev.map(|p| p.value.clone()).unwrap_or_default()
}
