//! The shipped systemd unit and the Debian package, started by a real systemd.
//!
//! Each test boots systemd (252 on Debian 12) as PID 1 of a container,
//! `systemd-nspawn --directory=/ --volatile=yes --private-network --boot`: the
//! host's `/usr` under a throw-away overlay, an empty `/etc` and `/var`, and a
//! network namespace with only a loopback device. A simulator unit puts the
//! simulated IMDS and time service at the real link-local addresses on that
//! loopback, so the exporter runs with its defaults and nothing leaves the host.
//! The install commands are the README's (`<!-- tested-by: tests/systemd_unit.rs -->`),
//! only the binary's and the package's locations substituted. The tests drive the
//! container with `nsenter` into its PID 1 (no systemd or machined on the host
//! needed) and always tear it down.
//!
//! Why this and not `systemd-analyze verify`: a seccomp kill (SIGSYS) on the
//! first scrape is invisible to `verify` (tests/deploy.rs); only running shows it.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Metrics;

/// This file, as README.md's `<!-- tested-by: ... -->` markers name it.
const TEST: &str = "tests/systemd_unit.rs";
/// How long the exporter is scraped under systemd: at least a minute.
const SCRAPE_FOR: Duration = Duration::from_secs(60);
/// The pinned cargo-deb (scripts/test.sh installs it; README names it).
const CARGO_DEB_VERSION: &str = "3.8.0";

/// A simulated EC2 instance inside the container: addresses on the container's
/// own loopback (its network namespace has no other device).
const SIMULATOR_UNIT: &str = "\
[Unit]
Description=Simulated EC2 instance (IMDS, Amazon Time Sync Service) on the container's loopback
Before=aws-credentials-exporter.service

[Service]
ExecStartPre=/usr/sbin/ip addr replace 169.254.169.254/32 dev lo
ExecStartPre=/usr/sbin/ip addr replace 169.254.169.123/32 dev lo
ExecStart=/srv/bin/aws-credentials-exporter simulate --imds.listen 169.254.169.254:80 --ntp.listen 169.254.169.123:123
";

/// The one README block for which `pick` holds.
fn readme_block(what: &str, pick: impl Fn(&str) -> bool) -> String {
    let found: Vec<String> = common::readme_blocks(TEST).into_iter().filter(|b| pick(b)).collect();
    assert_eq!(found.len(), 1, "exactly one README block for {what} marked {TEST}: {found:?}");
    found.into_iter().next().unwrap()
}

/// A booted container; torn down by [`Container::shutdown`] (or on drop).
struct Container {
    nspawn: Child,
    leader: u32,
    dir: tempfile::TempDir,
}

impl Container {
    /// Boots systemd with the repository at /srv/repo (read-only), the exporter
    /// at /srv/bin, `extra` more directories bound read-only, and the simulator unit.
    fn boot(name: &str, extra: &[(&Path, &str)]) -> Container {
        let dir = tempfile::tempdir().unwrap();
        for d in ["usr-upper", "var-upper", "share"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        // A machine id: without one systemd takes the boot for a first boot
        // and enables every unit installed on the host by preset.
        std::fs::write(dir.path().join("machine-id"), format!("{:032x}\n", fastrand::u128(1..))).unwrap();
        std::fs::write(dir.path().join("share/aws-ec2-simulator.service"), SIMULATOR_UNIT).unwrap();
        let bin_dir = Path::new(common::BIN).parent().unwrap();
        let p = |s: &str| dir.path().join(s).display().to_string();
        let mut args = vec![
            "--quiet".to_string(),
            "--directory=/".into(),
            "--volatile=yes".into(),
            "--private-network".into(),
            // No machined or systemd on the host: no registration, no scope unit.
            "--register=no".into(),
            "--keep-unit".into(),
            format!("--machine={name}"),
            // nspawn fails @clock calls with EPERM in containers without
            // CAP_SYS_TIME; an EC2 instance has no such filter. The read-only
            // adjtimex is what the exporter needs; setting the clock stays
            // impossible (no CAP_SYS_TIME in the container).
            "--system-call-filter=adjtimex clock_adjtime".into(),
            // Writable /usr and /var over the host's, changes kept in the temp dir.
            format!("--overlay=/usr:{}:/usr", p("usr-upper")),
            format!("--overlay=/var:{}:/var", p("var-upper")),
            "--bind-ro=/etc/ssl".into(),
            format!("--bind-ro={}:/etc/machine-id", p("machine-id")),
            format!("--bind-ro={}:/srv/bin", bin_dir.display()),
            format!("--bind-ro={}:/srv/repo", Path::new(env!("CARGO_MANIFEST_DIR")).display()),
            format!("--bind={}:/srv/share", p("share")),
            // The host's accounts, copied into the empty /etc at boot: dpkg's
            // database (/var/lib/dpkg/statoverride) names the host's groups.
            "--bind-ro=/etc:/srv/host-etc".into(),
        ];
        for (host, inside) in extra {
            args.push(format!("--bind-ro={}:{inside}", host.display()));
        }
        args.extend(
            [
                "--boot",
                // Waits forever for interfaces that a private network never gets.
                "systemd.mask=systemd-networkd-wait-online.service",
                // Would wait for a key press on the console.
                "systemd.mask=systemd-firstboot.service",
                // /etc/machine-id is bound read-only: nothing to commit.
                "systemd.mask=systemd-machine-id-commit.service",
            ]
            .map(String::from),
        );
        let console = std::fs::File::create(dir.path().join("console.log")).unwrap();
        let nspawn = Command::new("systemd-nspawn")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(console.try_clone().unwrap())
            .stderr(console)
            .spawn()
            .expect("systemd-nspawn (Debian systemd-container) is installed by scripts/test.sh");
        let mut container = Container { nspawn, leader: 0, dir };
        container.leader = container.find_leader();
        // Until PID 1 answers on its bus, systemctl prints nothing or "offline".
        let state = container.sh(r#"i=0
while :; do
  s=$(timeout 60 systemctl is-system-running --wait 2>/dev/null || true)
  case "$s" in running|degraded|maintenance|stopping) break;; esac
  i=$((i+1)); [ $i -lt 300 ] || break
  sleep 0.1
done
echo "$s""#);
        // "degraded": some unit of the host's /usr failed in the container; not ours.
        assert!(matches!(state.trim(), "running" | "degraded"), "container did not boot: {state}\n{}", container.console());
        container.sh("cp -p /srv/host-etc/passwd /srv/host-etc/group /srv/host-etc/shadow /srv/host-etc/gshadow /etc/
mkdir -p /etc/systemd/system /etc/default
install -m 0644 /srv/share/aws-ec2-simulator.service /etc/systemd/system/
# A host's policy-rc.d (scripts/test.sh has one, exit 101, while it installs
# peers) would stop the package's postinst from starting the unit; a real
# system has none. Removed in the overlay only, the host keeps it.
rm -f /usr/sbin/policy-rc.d");
        container
    }

    /// PID 1 of the container: the child of systemd-nspawn once it runs systemd.
    fn find_leader(&mut self) -> u32 {
        let pid = self.nspawn.id();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.nspawn.try_wait().unwrap() {
                panic!("systemd-nspawn exited early ({status}):\n{}", self.console());
            }
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
            for child in children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()) {
                if std::fs::read_to_string(format!("/proc/{child}/comm")).is_ok_and(|c| c.trim() == "systemd") {
                    // systemctl needs PID 1's bus socket before it can be driven.
                    std::thread::sleep(Duration::from_millis(200));
                    return child;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no systemd in the container after 30 s:\n{}", self.console());
    }

    fn console(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("console.log")).unwrap_or_default()
    }

    /// The directory bound at /srv/share inside.
    fn share(&self) -> PathBuf {
        self.dir.path().join("share")
    }

    /// Runs `script` as root inside the container (all its namespaces) with
    /// `sh -eu`; returns stdout; fails the test on a non-zero exit.
    fn sh(&self, script: &str) -> String {
        let out = self.sh_status(script);
        assert!(
            out.status.success(),
            "in the container: {script}\nexit {}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn sh_status(&self, script: &str) -> std::process::Output {
        let leader = self.leader.to_string();
        Command::new("timeout")
            .args(["-k", "5", "150", "nsenter", "-t", &leader, "-a", "sh", "-euc", script])
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LANG", "C.UTF-8")
            .output()
            .expect("nsenter (util-linux)")
    }

    /// Powers the container off (systemd-nspawn turns SIGTERM into an orderly
    /// shutdown of a booted container), kills it after 30 s, and checks that
    /// neither nspawn nor the container's PID 1 is left.
    fn shutdown(mut self) {
        self.stop();
        assert!(!Path::new(&format!("/proc/{}", self.leader)).exists(), "container PID 1 ({}) is left", self.leader);
    }

    fn stop(&mut self) {
        if self.nspawn.try_wait().unwrap().is_some() {
            return;
        }
        let _ = Command::new("kill").args(["-TERM", &self.nspawn.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.nspawn.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // `kill -KILL 0` would kill this test's own process group: a leader never found is skipped.
        for pid in [self.leader, self.nspawn.id()].into_iter().filter(|&p| p > 1) {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
        let _ = self.nspawn.wait();
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Scrapes the exporter in the container every 5 s for [`SCRAPE_FOR`]; every
/// scrape must succeed. Returns the last page.
fn scrape_for_a_minute(c: &Container) -> Metrics {
    let script = format!(
        r#"
# Type=simple: "started" comes before the exporter listens.
i=0; until curl -sf --noproxy '*' -m 2 -o /dev/null http://127.0.0.1:10169/metrics; do i=$((i+1)); [ $i -lt 100 ]; sleep 0.1; done
end=$(( $(date +%s) + {} ))
n=0
while :; do
  curl -sSf --noproxy '*' -m 10 http://127.0.0.1:10169/metrics > /srv/share/page.txt
  n=$((n+1))
  [ "$(date +%s)" -lt "$end" ] || break
  sleep 5
done
echo "$n scrapes"
"#,
        SCRAPE_FOR.as_secs()
    );
    let started = Instant::now();
    let out = c.sh_status(&script);
    let journal = c.sh_status("journalctl --no-pager -u aws-credentials-exporter -u aws-ec2-simulator");
    assert!(
        out.status.success(),
        "a scrape failed: {}{}\njournal:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&journal.stdout)
    );
    assert!(started.elapsed() >= SCRAPE_FOR, "scraped for {:?}", started.elapsed());
    Metrics::parse(&std::fs::read_to_string(c.share().join("page.txt")).unwrap())
}

/// What both artifacts must show after a minute under systemd.
fn assert_served_without_restart(c: &Container) {
    let page = scrape_for_a_minute(c);
    let show = c.sh("systemctl show -p ActiveState -p SubState -p NRestarts -p MainPID aws-credentials-exporter");
    let journal = c.sh("journalctl --no-pager -u aws-credentials-exporter");
    assert!(show.contains("ActiveState=active") && show.contains("SubState=running"), "{show}\n{journal}");
    assert!(show.contains("NRestarts=0"), "restarted: {show}\n{journal}");
    assert!(!journal.contains("status=31/SYS"), "killed by seccomp: {journal}");
    assert!(page.get(r#"aws_credentials_seconds_until_expiry{provider="instance_profile",role="app-role"}"#) > 0.0);
    assert_eq!(page.get("aws_imds_up"), 1.0);
    // The kernel clock metrics: adjtimex allowed by the unit's filter.
    assert!(page.has("aws_clock_synchronized"), "no kernel clock metrics (adjtimex refused?):\n{}", page.text);
    assert!(page.get("aws_clock_max_error_seconds") >= 0.0);
    assert_eq!(page.get(r#"aws_clock_ntp_up{server="169.254.169.123:123"}"#), 1.0);
    // LimitNOFILE, and the exporter's own raise: soft limit == hard limit.
    let pid = show.lines().find_map(|l| l.strip_prefix("MainPID=")).unwrap().trim().to_string();
    let limits = c.sh(&format!("grep 'Max open files' /proc/{pid}/limits"));
    let fields: Vec<&str> = limits.split_whitespace().collect();
    assert_eq!(fields[3], fields[4], "soft open-file limit raised to the hard limit: {limits}");
}

#[test]
fn shipped_unit_serves_for_a_minute_under_systemd() {
    let install = readme_block("the unit-file install", |b| b.contains("/etc/systemd/system/"));
    // The only substitution: where the binary comes from.
    assert!(install.contains("target/release/aws-credentials-exporter"), "{install}");
    let install = install.replace("target/release/aws-credentials-exporter", "/srv/bin/aws-credentials-exporter");
    let c = Container::boot(&format!("ace-unit-{}", std::process::id()), &[]);
    c.sh("systemctl start aws-ec2-simulator");
    c.sh(&format!("cd /srv/repo\n{install}"));
    // The unit file installed is the shipped one, byte for byte.
    let shipped = std::fs::read_to_string(common::stack::repo("deploy/aws-credentials-exporter.service")).unwrap();
    assert_eq!(c.sh("cat /etc/systemd/system/aws-credentials-exporter.service"), shipped);
    assert_eq!(c.sh("systemctl is-enabled aws-credentials-exporter").trim(), "enabled");
    assert_eq!(c.sh("command -v aws-credentials-exporter").trim(), "/usr/local/bin/aws-credentials-exporter");
    assert_served_without_restart(&c);
    c.shutdown();
}

#[test]
fn debian_package_installs_enables_and_serves_for_a_minute() {
    let build = readme_block("the package build", |b| b.contains("cargo deb"));
    assert!(
        build.contains(&format!("cargo install --locked cargo-deb --version {CARGO_DEB_VERSION}")),
        "README pins cargo-deb {CARGO_DEB_VERSION}: {build}"
    );
    let test_sh = std::fs::read_to_string(common::stack::repo("scripts/test.sh")).unwrap();
    assert!(test_sh.contains(&format!("CARGO_DEB_VERSION={CARGO_DEB_VERSION}")), "scripts/test.sh installs the same cargo-deb");
    let version = Command::new("cargo").args(["deb", "--version"]).output().expect("cargo-deb is installed by scripts/test.sh");
    assert_eq!(String::from_utf8_lossy(&version.stdout).trim(), format!("cargo-deb {CARGO_DEB_VERSION}"));

    // The README's `cargo deb`, from the binary the tests already built (a
    // release build with LTO would take minutes): same metadata, same unit.
    let out_dir = tempfile::tempdir().unwrap();
    let deb_line = build.lines().find(|l| l.trim_start().starts_with("cargo deb")).unwrap();
    assert_eq!(deb_line.trim(), "cargo deb", "{build}");
    let profile_dir = Path::new(common::BIN).parent().unwrap();
    assert!(profile_dir.ends_with("debug"), "tests run the dev profile: {}", profile_dir.display());
    let deb = Command::new("cargo")
        .args(["deb", "--locked", "--offline", "--profile", "dev", "--no-build", "--strip", "--fast", "--output"])
        .arg(out_dir.path())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(deb.status.success(), "cargo deb: {}", String::from_utf8_lossy(&deb.stderr));

    let install = readme_block("the package install", |b| b.contains("dpkg -i"));
    assert!(install.contains("target/debian/"), "{install}");
    let install = install.replace("target/debian/", "/srv/deb/");
    let c = Container::boot(&format!("ace-deb-{}", std::process::id()), &[(out_dir.path(), "/srv/deb")]);
    c.sh("systemctl start aws-ec2-simulator");
    // dpkg's maintainer scripts enable and start the unit (Debian's convention).
    let installed = c.sh(&install);
    assert!(installed.contains("active (running)"), "{installed}");
    assert_eq!(c.sh("systemctl is-enabled aws-credentials-exporter").trim(), "enabled");
    assert_eq!(
        c.sh("readlink -f \"$(systemctl show -p FragmentPath --value aws-credentials-exporter)\"").trim(),
        "/usr/lib/systemd/system/aws-credentials-exporter.service"
    );
    assert_eq!(c.sh("command -v aws-credentials-exporter").trim(), "/usr/bin/aws-credentials-exporter");
    let shipped = std::fs::read_to_string(common::stack::repo("deploy/aws-credentials-exporter.service")).unwrap();
    assert_eq!(c.sh("cat /usr/lib/systemd/system/aws-credentials-exporter.service"), shipped, "the package ships deploy/'s unit");
    assert!(c.sh("cat /var/lib/dpkg/info/aws-credentials-exporter.conffiles").contains("/etc/default/aws-credentials-exporter"));
    assert!(c.sh("ls /usr/share/doc/aws-credentials-exporter").contains("runbook.md"));
    assert_served_without_restart(&c);

    // Flags from the defaults file reach the exporter.
    c.sh("sed -i 's|^ARGS=.*|ARGS=\"--web.listen-address=127.0.0.1:10170\"|' /etc/default/aws-credentials-exporter && systemctl restart aws-credentials-exporter");
    c.sh("i=0; until curl -sf --noproxy '*' -m 2 http://127.0.0.1:10170/metrics >/dev/null; do i=$((i+1)); [ $i -lt 50 ]; sleep 0.2; done");
    c.shutdown();
}

/// The exporter raises its soft RLIMIT_NOFILE to the hard limit at start-up
/// (Go programs do the same), so a unit's or shell's 1,024 is not the ceiling.
#[test]
fn soft_open_file_limit_is_raised_to_the_hard_limit() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("exporter.log");
    let mut child = Command::new("prlimit")
        .args(["--nofile=256:4096", common::BIN])
        .args(["--web.listen-address", "127.0.0.1:0", "--imds.endpoint", "http://127.0.0.1:9", "--ntp.server", "127.0.0.1:9"])
        .env_clear()
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("prlimit (util-linux)");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log).unwrap().contains("aws-credentials-exporter started") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&fields[3..5], ["4096", "4096"], "{line}");
    assert!(std::fs::read_to_string(&log).unwrap().contains("open_files_limit=4096"), "the new limit is logged");
}
