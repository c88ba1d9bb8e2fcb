//! Is a time daemon configured for the Amazon Time Sync Service? Scans the
//! configuration files of chrony, ntpd/ntpsec and systemd-timesyncd for
//! active (non-comment) lines naming 169.254.169.123 or fd00:ec2::123.
//! Amazon Linux and the AWS AMIs ship chrony with `server 169.254.169.123
//! prefer iburst`; the AWS docs give the same line for other distributions.

use std::path::{Path, PathBuf};

/// Addresses of the Amazon Time Sync Service.
pub const AMAZON_TIME_SYNC: [&str; 2] = ["169.254.169.123", "fd00:ec2::123"];

/// Files looked at, relative to the root; `*` matches within one directory.
pub const CONFIG_FILES: [&str; 9] = [
    "etc/chrony.conf",
    "etc/chrony/chrony.conf",
    "etc/chrony/conf.d/*.conf",
    "etc/chrony/sources.d/*.sources",
    "etc/ntp.conf",
    "etc/ntpsec/ntp.conf",
    "etc/systemd/timesyncd.conf",
    "etc/systemd/timesyncd.conf.d/*.conf",
    "run/systemd/timesyncd.conf.d/*.conf",
];

/// What the scan found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeSyncConfig {
    /// Time daemon configuration files that exist.
    pub files: Vec<PathBuf>,
    /// Those with an active line naming the Amazon Time Sync Service.
    pub amazon_time_sync: Vec<PathBuf>,
}

impl TimeSyncConfig {
    /// Some time daemon configuration exists.
    pub fn daemon_configured(&self) -> bool {
        !self.files.is_empty()
    }
}

/// Scans the time daemon configuration under `root` (`/` in production).
pub fn scan(root: &Path) -> TimeSyncConfig {
    let mut found = TimeSyncConfig::default();
    for pattern in CONFIG_FILES {
        for path in expand(root, pattern) {
            // Unreadable or oversized files count as present, not as configured.
            let text = crate::fsread::read(&path, crate::fsread::MAX_CONFIG_FILE).ok().map(|b| String::from_utf8_lossy(&b).into_owned());
            if text.as_deref().is_some_and(mentions_amazon) {
                found.amazon_time_sync.push(path.clone());
            }
            found.files.push(path);
        }
    }
    found
}

fn expand(root: &Path, pattern: &str) -> Vec<PathBuf> {
    let full = root.join(pattern);
    let Some(name) = full.file_name().and_then(|n| n.to_str()) else { return vec![] };
    let Some((prefix, suffix)) = name.split_once('*') else {
        return if full.is_file() { vec![full] } else { vec![] };
    };
    let Some(dir) = full.parent() else { return vec![] };
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(prefix) && n.ends_with(suffix)))
        .collect();
    out.sort();
    out
}

/// An active line (not a `#`/`;`/`!` comment) names an Amazon Time Sync address.
fn mentions_amazon(text: &str) -> bool {
    text.lines().map(|l| l.split(['#', ';', '!']).next().unwrap_or("")).any(|l| AMAZON_TIME_SYNC.iter().any(|a| l.contains(a)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn finds_chrony_sources_and_ignores_comments() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "etc/chrony/chrony.conf", "pool 2.debian.pool.ntp.org iburst\n# server 169.254.169.123\n");
        let c = scan(root.path());
        assert!(c.daemon_configured());
        assert!(c.amazon_time_sync.is_empty(), "a commented line does not count");
        write(root.path(), "etc/chrony/sources.d/aws.sources", "server 169.254.169.123 prefer iburst minpoll 4 maxpoll 4\n");
        let c = scan(root.path());
        assert_eq!(c.amazon_time_sync, [root.path().join("etc/chrony/sources.d/aws.sources")]);
    }

    #[test]
    fn finds_timesyncd_and_ntpsec_ipv6() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "etc/systemd/timesyncd.conf", "[Time]\nNTP=fd00:ec2::123\n");
        write(root.path(), "etc/ntpsec/ntp.conf", "server time.example.com\n");
        let c = scan(root.path());
        assert_eq!(c.files.len(), 2);
        assert_eq!(c.amazon_time_sync, [root.path().join("etc/systemd/timesyncd.conf")]);
    }

    #[test]
    fn nothing_installed_is_not_configured() {
        let root = tempfile::tempdir().unwrap();
        let c = scan(root.path());
        assert!(!c.daemon_configured() && c.amazon_time_sync.is_empty());
    }
}
