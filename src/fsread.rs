//! The one way the exporter reads a file: capped, non-blocking, regular files only.
//!
//! Every file it reads is named by someone else (`--web.config.file` and the
//! certificates it names, a time daemon's configuration, a target's profile
//! and token files, `/proc`), so any of them may be a FIFO that never sends,
//! a device that never ends (`/dev/zero`) or a file of gigabytes. The file is
//! opened with `O_NONBLOCK` (opening a FIFO without a writer returns at once),
//! then the *opened* descriptor is checked with `fstat`, so nothing can be
//! swapped between the check and the read; at most `cap + 1` bytes are read,
//! and more than `cap` is refused rather than truncated.

use std::fs::{File, FileType, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use zeroize::Zeroizing;

/// Largest profile, token, boto, web configuration, certificate or time daemon
/// file read; real ones are a few KiB (a CA bundle a few hundred).
pub const MAX_CONFIG_FILE: u64 = 1 << 20;
/// Largest `/proc/PID/environ` or `cmdline` read (the kernel caps both near `ARG_MAX`).
pub const MAX_PROC_FILE: u64 = 8 << 20;

/// Reads the regular file at `path`, at most `cap` bytes, into memory that is
/// zeroed when dropped (files hold secrets).
///
/// Errors keep the kind of the failure so callers can tell "absent" from
/// "refused": `NotFound` and `PermissionDenied` as the system says,
/// `InvalidInput` for anything that is not a regular file (a FIFO, a device,
/// a socket, a directory), `FileTooLarge` beyond `cap`. The message says why
/// (callers add the file's name).
pub fn read(path: &Path, cap: u64) -> io::Result<Zeroizing<Vec<u8>>> {
    let file = open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(not_regular(kind(meta.file_type())));
    }
    // Never trust st_size for the allocation (it is 0 in /proc, and may change).
    let mut buf = Zeroizing::new(Vec::with_capacity(meta.len().min(cap) as usize + 1));
    (&file).take(cap + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > cap {
        return Err(io::Error::new(io::ErrorKind::FileTooLarge, format!("larger than {cap} bytes, the most the exporter reads")));
    }
    Ok(buf)
}

/// [`read`], as UTF-8 text.
pub fn read_to_string(path: &Path, cap: u64) -> io::Result<Zeroizing<String>> {
    let bytes = read(path, cap)?;
    match std::str::from_utf8(&bytes) {
        Ok(text) => Ok(Zeroizing::new(text.to_string())),
        Err(_) => Err(io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text")),
    }
}

fn open(path: &Path) -> io::Result<File> {
    // O_NOCTTY: a terminal device never becomes the exporter's controlling terminal.
    match OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY).open(path) {
        // open(2) on a Unix socket fails with ENXIO.
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => Err(not_regular("a socket or a device without a driver")),
        other => other,
    }
}

fn kind(t: FileType) -> &'static str {
    if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_dir() {
        "a directory"
    } else {
        "not a file"
    }
}

fn not_regular(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("{what}, not a regular file: refused"))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn mkfifo(path: &Path) {
        let status = std::process::Command::new("mkfifo").arg(path).status().expect("mkfifo");
        assert!(status.success());
    }

    #[test]
    fn regular_files_are_read_up_to_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        assert_eq!(&read(&path, 10).unwrap()[..], b"0123456789");
        let err = read(&path, 9).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
        assert!(err.to_string().contains("larger than 9 bytes"), "{err}");
        assert_eq!(read(&dir.path().join("none"), 9).unwrap_err().kind(), io::ErrorKind::NotFound);
        assert_eq!(&read_to_string(&path, 10).unwrap()[..], "0123456789");
    }

    #[test]
    fn fifos_devices_sockets_and_directories_are_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        mkfifo(&fifo);
        let socket = dir.path().join("socket");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        for (path, what) in [
            (fifo.as_path(), "a FIFO"),
            (Path::new("/dev/zero"), "a character device"),
            (Path::new("/dev/null"), "a character device"),
            (socket.as_path(), "a socket"),
            (dir.path(), "a directory"),
        ] {
            let started = Instant::now();
            let err = read(path, MAX_CONFIG_FILE).unwrap_err();
            assert!(started.elapsed() < Duration::from_secs(1), "{}", path.display());
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{}: {err}", path.display());
            assert!(err.to_string().contains(what), "{}: {err}", path.display());
        }
    }

    #[test]
    fn a_symlink_to_a_fifo_is_refused_too() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        mkfifo(&fifo);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&fifo, &link).unwrap();
        assert_eq!(read(&link, 10).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }
}
