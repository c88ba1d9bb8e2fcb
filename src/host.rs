//! What the exporter reads from the machine it runs on (kernel clock, time
//! daemon configuration), behind one small trait so that `demo` and the tests
//! can substitute a simulated instance without mocking the world.

use std::path::PathBuf;

use regex::Regex;

use crate::chain::{self, ChainError, ProcessEnv};
use crate::clock::{self, KernelClock};
use crate::timesync::{self, TimeSyncConfig};

/// The local machine, as the probes see it.
pub trait Host: Send + Sync {
    /// Kernel clock state (`adjtimex`), or why it cannot be read.
    fn kernel_clock(&self) -> Result<KernelClock, String>;
    /// Time daemon configuration.
    fn time_sync_config(&self) -> TimeSyncConfig;
    /// The exporter's own environment and home, as a credential chain sees them.
    fn own_process_env(&self) -> ProcessEnv;
    /// Processes whose name or command line matches, lowest PID first.
    fn find_processes(&self, pattern: &Regex) -> Vec<(u32, String)>;
    /// Another process's environment, Java system properties and home.
    fn process_env(&self, pid: u32) -> Result<ProcessEnv, ChainError>;
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

    fn own_process_env(&self) -> ProcessEnv {
        ProcessEnv::current()
    }

    fn find_processes(&self, pattern: &Regex) -> Vec<(u32, String)> {
        chain::find_processes(pattern)
    }

    fn process_env(&self, pid: u32) -> Result<ProcessEnv, ChainError> {
        ProcessEnv::from_pid(pid)
    }
}

/// A simulated instance: fixed answers from a scenario; it runs no other processes.
#[derive(Debug, Clone)]
pub struct SimulatedHost {
    /// Kernel clock state.
    pub kernel: KernelClock,
    /// Time daemon configuration.
    pub time_sync: TimeSyncConfig,
    /// The environment the exporter (as a sidecar of the application) sees.
    pub env: ProcessEnv,
}

impl Host for SimulatedHost {
    fn kernel_clock(&self) -> Result<KernelClock, String> {
        Ok(self.kernel)
    }

    fn time_sync_config(&self) -> TimeSyncConfig {
        self.time_sync.clone()
    }

    fn own_process_env(&self) -> ProcessEnv {
        self.env.clone()
    }

    fn find_processes(&self, _pattern: &Regex) -> Vec<(u32, String)> {
        Vec::new()
    }

    fn process_env(&self, pid: u32) -> Result<ProcessEnv, ChainError> {
        Err(ChainError::new(chain::ErrorReason::NotFound, format!("process {pid} does not exist on the simulated instance")))
    }
}
