//! The kernel's view of its own clock, read with `adjtimex(2)` -> [`KernelClock`].
//!
//! The kernel keeps the error bounds that chronyd or ntpd last gave it and
//! grows `maxerror` by 500 ppm every second without an update; once it passes
//! 16 s the kernel sets `STA_UNSYNC` (Linux `kernel/time/ntp.c`, RFC 1589).
//! aws/clock-bound reads the same fields to decide whether a clock can be
//! trusted. This is the only module with `unsafe` code: one `adjtimex` call
//! with `modes == 0`, which reads and never adjusts the clock.

use std::io;

/// Kernel clock state at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KernelClock {
    /// False when `adjtimex` returns `TIME_ERROR` or `STA_UNSYNC` is set:
    /// no time daemon has disciplined the clock recently.
    pub synchronized: bool,
    /// Upper bound of the clock error (`maxerror`).
    pub max_error_seconds: f64,
    /// Estimated clock error (`esterror`).
    pub estimated_error_seconds: f64,
    /// Offset still being slewed out by the kernel PLL (`offset`; ns with `STA_NANO`, else µs).
    pub offset_seconds: f64,
    /// TAI minus UTC, as set by the time daemon (0 when never set).
    pub tai_offset_seconds: f64,
    /// The `status` bits (`STA_*`).
    pub status: i32,
}

/// The kernel caps `maxerror` here (`NTP_PHASE_LIMIT`, 16 s) and sets
/// `STA_UNSYNC` once it gets there without a time daemon's update.
pub const MAX_ERROR_CAP_SECONDS: f64 = 16.0;

impl KernelClock {
    /// The verdict `check`, the status page and the dashboards give, the guard
    /// of the `AwsClockNotSynchronising` alert (node-mixin's
    /// `NodeClockNotSynchronising`): `STA_UNSYNC` set *and* the maximum error
    /// at the 16 s cap. `STA_UNSYNC` alone stays set on healthy hosts where
    /// chronyd disciplines the clock without `rtcsync`, while it keeps the
    /// error bounds current.
    pub fn not_synchronising(&self) -> bool {
        !self.synchronized && self.max_error_seconds >= MAX_ERROR_CAP_SECONDS
    }
}

/// The `timex` fields [`KernelClock`] is made of, apart from the C struct so
/// the decoding can be tested with plain values.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Timex {
    /// Return value of `adjtimex`: the clock state (`TIME_OK` ... `TIME_ERROR`).
    state: i32,
    status: i32,
    offset: i64,
    maxerror: i64,
    esterror: i64,
    tai: i32,
}

// Linux `include/uapi/linux/timex.h`; the same values as in `libc`, repeated
// so that decoding also builds (and is tested) where `libc` lacks them.
const STA_UNSYNC: i32 = 0x0040;
const STA_NANO: i32 = 0x2000;
const TIME_ERROR: i32 = 5;

/// Reads the kernel clock state. Never changes it.
pub fn read() -> io::Result<KernelClock> {
    adjtimex_read().map(decode)
}

/// `adjtimex(2)` `modes` that sets nothing: any other bit (`ADJ_OFFSET`,
/// `ADJ_SETOFFSET`, ...) would change the clock. Never change this.
#[cfg(target_os = "linux")]
const READ_ONLY: libc::c_uint = 0;

/// `adjtimex(2)` with `modes == 0`: a pure read, allowed without `CAP_SYS_TIME`.
#[cfg(target_os = "linux")]
fn adjtimex_read() -> io::Result<Timex> {
    // SAFETY: `timex` is a plain C struct of integers, for which all-zero
    // bytes are a valid value; `adjtimex` only writes into the struct we own
    // for the duration of the call. `modes == 0` (READ_ONLY), so the call
    // reads the clock state and adjusts nothing (adjtimex(2): "If the modes
    // field is 0, no values are set").
    #[allow(unsafe_code)]
    let (ret, tx) = unsafe {
        let mut tx: libc::timex = std::mem::zeroed();
        tx.modes = READ_ONLY;
        (libc::adjtimex(&mut tx), tx)
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // `c_long` is 32 bits wide on 32-bit targets: widen (a no-op on 64-bit ones).
    #[allow(clippy::useless_conversion)]
    Ok(Timex {
        state: ret,
        status: tx.status,
        offset: i64::from(tx.offset),
        maxerror: i64::from(tx.maxerror),
        esterror: i64::from(tx.esterror),
        tai: tx.tai,
    })
}

#[cfg(not(target_os = "linux"))]
fn adjtimex_read() -> io::Result<Timex> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "kernel clock state is read with adjtimex(2), which only Linux has"))
}

/// `timex` fields -> [`KernelClock`]. `maxerror` and `esterror` are always in
/// microseconds; `offset` is in nanoseconds when `STA_NANO` is set (adjtimex(2)).
fn decode(t: Timex) -> KernelClock {
    let offset_unit = if t.status & STA_NANO != 0 { 1e-9 } else { 1e-6 };
    KernelClock {
        synchronized: t.state != TIME_ERROR && t.status & STA_UNSYNC == 0,
        max_error_seconds: t.maxerror as f64 * 1e-6,
        estimated_error_seconds: t.esterror as f64 * 1e-6,
        offset_seconds: t.offset as f64 * offset_unit,
        tai_offset_seconds: f64::from(t.tai),
        status: t.status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn the_only_adjtimex_call_sets_nothing() {
        assert_eq!(READ_ONLY, 0, "adjtimex must be called with modes == 0: this exporter never adjusts the clock");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn constants_match_libc() {
        assert_eq!((STA_UNSYNC, STA_NANO, TIME_ERROR), (libc::STA_UNSYNC, libc::STA_NANO, libc::TIME_ERROR));
    }

    #[test]
    fn decodes_table() {
        const PLL: i32 = 0x0001;
        let cases = [
            // chronyd disciplining the clock, microsecond offsets.
            (
                Timex { state: 0, status: PLL, offset: -250, maxerror: 1_500, esterror: 40, tai: 37 },
                (true, 0.0015, 0.00004, -0.00025, 37.0),
            ),
            // STA_NANO: the offset is in nanoseconds, the error bounds stay in microseconds.
            (
                Timex { state: 0, status: PLL | STA_NANO, offset: 1_234_000, maxerror: 2_000, esterror: 0, tai: 0 },
                (true, 0.002, 0.0, 0.001234, 0.0),
            ),
            // Never synchronized: STA_UNSYNC and TIME_ERROR, maxerror at the 16 s limit.
            (
                Timex { state: TIME_ERROR, status: STA_UNSYNC, offset: 0, maxerror: 16_000_000, esterror: 16_000_000, tai: 0 },
                (false, 16.0, 16.0, 0.0, 0.0),
            ),
            // STA_UNSYNC alone (leap second pending, state TIME_INS) still counts as unsynchronized.
            (Timex { state: 1, status: STA_UNSYNC, ..Timex::default() }, (false, 0.0, 0.0, 0.0, 0.0)),
            // TIME_ERROR alone (e.g. PPS signal lost) also does.
            (Timex { state: TIME_ERROR, status: PLL, ..Timex::default() }, (false, 0.0, 0.0, 0.0, 0.0)),
        ];
        for (t, (sync, max, est, off, tai)) in cases {
            let c = decode(t);
            assert_eq!(c.synchronized, sync, "{t:?}");
            assert!((c.max_error_seconds - max).abs() < 1e-12, "{t:?}");
            assert!((c.estimated_error_seconds - est).abs() < 1e-12, "{t:?}");
            assert!((c.offset_seconds - off).abs() < 1e-12, "{t:?}");
            assert_eq!((c.tai_offset_seconds, c.status), (tai, t.status), "{t:?}");
        }
    }

    /// Reading twice must not change the clock: with `modes == 0` the status
    /// bits and TAI offset a time daemon set stay as they were.
    #[cfg(target_os = "linux")]
    #[test]
    fn read_is_read_only() {
        match (read(), read()) {
            (Ok(a), Ok(b)) => {
                assert_eq!((a.status, a.tai_offset_seconds), (b.status, b.tai_offset_seconds));
                assert!(a.max_error_seconds >= 0.0 && a.estimated_error_seconds >= 0.0);
            }
            // A seccomp profile may refuse even a read; that is an error, not a panic.
            (Err(e), _) | (_, Err(e)) => assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}"),
        }
    }
}
