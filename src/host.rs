//! What the exporter reads from the machine it runs on (kernel clock, time
//! daemon configuration, other processes), behind one small trait so that
//! `demo` and the tests can substitute a simulated instance without mocking
//! the world. This is also the one place that knows where the host's files
//! are: under `--path.rootfs` (`/`, or `/host` in a container with the host's
//! root mounted there).

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
    /// Processes whose name or command line matches, lowest PID first, or
    /// why the process table cannot be read.
    fn find_processes(&self, pattern: &Regex) -> Result<Vec<(u32, String)>, ChainError>;
    /// Another process's environment, Java system properties and home.
    fn process_env(&self, pid: u32) -> Result<ProcessEnv, ChainError>;
}

/// This machine, its file system rooted at `root` (`--path.rootfs`).
///
/// Time daemon configuration is read under `root/etc` and `root/run`, other
/// processes under `root/proc` (one rule: with the host's root mounted at
/// `/host` together with its submounts, `/host/proc` is the host's proc file
/// system, and the processes listed there are the host's even without the
/// host PID namespace). A process's own files are then read through its
/// `/proc/PID/root`. The kernel clock is the same in every container, and the
/// exporter's own environment is its own.
#[derive(Debug, Clone)]
pub struct RealHost {
    /// Root of the file system to scan (`/`).
    pub root: PathBuf,
}

impl RealHost {
    /// The machine whose root is at `root`.
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    fn proc(&self) -> PathBuf {
        self.root.join("proc")
    }
}

impl Default for RealHost {
    fn default() -> Self {
        Self::new(PathBuf::from("/"))
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

    fn find_processes(&self, pattern: &Regex) -> Result<Vec<(u32, String)>, ChainError> {
        chain::find_processes(&self.proc(), pattern)
    }

    fn process_env(&self, pid: u32) -> Result<ProcessEnv, ChainError> {
        ProcessEnv::from_proc(&self.proc(), pid)
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

    fn find_processes(&self, _pattern: &Regex) -> Result<Vec<(u32, String)>, ChainError> {
        Ok(Vec::new())
    }

    fn process_env(&self, pid: u32) -> Result<ProcessEnv, ChainError> {
        Err(ChainError::new(chain::ErrorReason::NotFound, format!("process {pid} does not exist on the simulated instance")))
    }
}
