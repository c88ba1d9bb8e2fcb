//! The kernel clock probe driver: one `adjtimex` read through [`Host`], with
//! every snapshot (a syscall that returns at once has no budget to keep).

use tokio::time::Instant;

use super::{ErrorKind, Outcome, ProbeError};
use crate::clock::KernelClock;
use crate::host::Host;

/// Reads the kernel clock state.
pub fn run(host: &dyn Host) -> Outcome<Option<KernelClock>> {
    let started = Instant::now();
    let (value, error) = match host.kernel_clock() {
        Ok(k) => (Some(k), None),
        Err(e) => (None, Some(ProbeError::new(ErrorKind::Io, e))),
    };
    Outcome { value, duration: started.elapsed(), error }
}
