//! `--path.rootfs`: the host's files as a container sees them with the host's
//! root mounted at, say, `/host`. The time daemon configuration and `/proc`
//! are read under it; a temporary directory stands in for the host's root.

mod common;

use std::path::Path;
use std::process::{Child, Command};

use common::{exporter_on_this_machine, scrape, sim};

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn the_time_daemon_configuration_is_read_under_the_rootfs() {
    let sim = sim(Default::default()).await;
    let host = tempfile::tempdir().unwrap();
    let rootfs = host.path().to_str().unwrap();
    let flags = ["--ntp.server", &sim.ntp_addr().to_string(), "--path.rootfs", rootfs];

    // Nothing configured under the rootfs, whatever this machine's own /etc says.
    let ex = exporter_on_this_machine(&sim.imds_url(), &flags).await;
    assert_eq!(scrape(&ex).await.get("aws_clock_amazon_time_sync_configured"), 0.0);
    let report = common::get(&ex.url("/check.json")).await;
    assert!(report.contains("no chrony, ntpd or systemd-timesyncd configuration found"), "{report}");
    ex.stop().await;

    write(host.path(), "etc/chrony/chrony.conf", "# Amazon Time Sync Service\nserver 169.254.169.123 prefer iburst minpoll 4 maxpoll 4\n");
    let ex = exporter_on_this_machine(&sim.imds_url(), &flags).await;
    assert_eq!(scrape(&ex).await.get("aws_clock_amazon_time_sync_configured"), 1.0);
    let report = common::get(&ex.url("/check.json")).await;
    assert!(report.contains(&format!("{rootfs}/etc/chrony/chrony.conf")), "the evidence names the file as read: {report}");
    ex.stop().await;
    sim.stop().await;
}

/// `sleep` with a command line no other process has.
struct Sleeper(Child);

impl Sleeper {
    fn start() -> (Sleeper, String) {
        let arg = format!("1000.{}", std::process::id());
        let child = Command::new("sleep").arg(&arg).env_clear().spawn().expect("spawn sleep");
        (Sleeper(child), format!("sleeper=^sleep {}$", regex::escape(&arg)))
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn process_targets_are_read_from_the_proc_under_the_rootfs() {
    let sim = sim(Default::default()).await;
    let (sleeper, target) = Sleeper::start();
    // The host's proc file system at <rootfs>/proc: here this machine's own.
    let host = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/proc", host.path().join("proc")).unwrap();
    let ntp = sim.ntp_addr().to_string();
    let ex = exporter_on_this_machine(
        &sim.imds_url(),
        &["--ntp.server", &ntp, "--path.rootfs", host.path().to_str().unwrap(), "--chain.process", &target],
    )
    .await;
    let mut found = false;
    for _ in 0..50 {
        // `sleep` may not have exec'd yet on the first scrape.
        let m = scrape(&ex).await;
        if m.get(r#"aws_credentials_chain_processes{target="sleeper"}"#) == 1.0 {
            assert_eq!(m.get(r#"aws_credentials_active_provider{target="sleeper",provider="instance_profile"}"#), 1.0, "{}", m.text);
            found = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(found, "the sleeper was not found through {}/proc", host.path().display());
    ex.stop().await;
    drop(sleeper);
    sim.stop().await;
}

#[tokio::test]
async fn a_rootfs_without_a_proc_file_system_says_so() {
    let sim = sim(Default::default()).await;
    let (sleeper, target) = Sleeper::start();
    // The host's root mounted without its submounts: an empty /host/proc.
    let host = tempfile::tempdir().unwrap();
    std::fs::create_dir(host.path().join("proc")).unwrap();
    let ntp = sim.ntp_addr().to_string();
    let ex = exporter_on_this_machine(
        &sim.imds_url(),
        &["--ntp.server", &ntp, "--path.rootfs", host.path().to_str().unwrap(), "--chain.process", &target],
    )
    .await;
    let m = scrape(&ex).await;
    assert_eq!(m.get(r#"aws_credentials_chain_processes{target="sleeper"}"#), 0.0, "{}", m.text);
    assert!(m.get(r#"aws_credentials_chain_errors_total{target="sleeper",reason="io"}"#) >= 1.0, "{}", m.text);
    let report = common::get(&ex.url("/check.json")).await;
    let want = format!("{}/proc is not a proc file system", host.path().display());
    assert!(report.contains(&want), "{report}");
    ex.stop().await;
    drop(sleeper);
    sim.stop().await;
}

#[test]
fn a_rootfs_that_is_not_a_directory_stops_start_up() {
    let out = Command::new(common::BIN)
        .args(["--path.rootfs", "/nonexistent/host", "--web.listen-address", "127.0.0.1:0", "--imds.endpoint", "http://127.0.0.1:9"])
        .env_clear()
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("--path.rootfs") && stderr.contains("not a directory"), "{stderr}");
}
