//! What the exporter reads from the machine it runs on (kernel clock, time
//! daemon configuration), behind one small trait so that `demo` and the tests
//! can substitute a simulated instance without mocking the world.

use std::path::PathBuf;

use crate::clock::{self, KernelClock};
use crate::timesync::{self, TimeSyncConfig};

/// The local machine, as the probes see it.
pub trait Host: Send + Sync {
    /// Kernel clock state (`adjtimex`), or why it cannot be read.
    fn kernel_clock(&self) -> Result<KernelClock, String>;
    /// Time daemon configuration.
    fn time_sync_config(&self) -> TimeSyncConfig;
}

/// This machine.
#[derive(Debug, Clone)]
pub struct RealHost {
    /// Root of the file system to scan (`/`).
    pub root: PathBuf,
}

impl Default for RealHost {
    fn default() -> Self {
        Self { root: PathBuf::from("/") }
    }
}

impl Host for RealHost {
    fn kernel_clock(&self) -> Result<KernelClock, String> {
        clock::read().map_err(|e| format!("adjtimex failed: {e}"))
    }

    fn time_sync_config(&self) -> TimeSyncConfig {
        timesync::scan(&self.root)
    }
}

/// A simulated instance: fixed answers from a scenario.
#[derive(Debug, Clone)]
pub struct SimulatedHost {
    /// Kernel clock state.
    pub kernel: KernelClock,
    /// Time daemon configuration.
    pub time_sync: TimeSyncConfig,
}

impl Host for SimulatedHost {
    fn kernel_clock(&self) -> Result<KernelClock, String> {
        Ok(self.kernel)
    }

    fn time_sync_config(&self) -> TimeSyncConfig {
        self.time_sync.clone()
    }
}
