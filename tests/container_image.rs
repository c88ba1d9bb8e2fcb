//! The container image, built and run as README.md says. The build block
//! (`scripts/build-image.sh`: static binary, `podman --storage-driver=vfs
//! build`) runs as written, with podman's storage in the test's directory.
//! Containers cannot be started on the CI machines (cgroups), so the run
//! block's `podman run` is carried out as podman would: the image's root
//! file system (`podman image mount`), read-only, in a chroot, as the image's
//! USER, with its ENTRYPOINT and Env and the block's arguments and volumes,
//! in a network namespace where the simulator holds the real link-local
//! addresses. The host's `/` of `--volume /:/host` is replaced by a test
//! directory (the only substitution). No `/etc/ssl` is in the image: serve
//! and check must work without CA certificates, and nothing may panic.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::stack::repo;
use common::{SH_HELPERS, in_namespaces, readme_blocks};

const IMAGE: &str = "ghcr.io/aws-credentials-exporter/aws-credentials-exporter";
/// The image may grow with the binary, not with anything else.
const SIZE_BUDGET_BYTES: u64 = 16 << 20;

fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// podman with its storage, run directory and events in a test-owned
/// directory: nothing the test builds is left in the machine's image store.
struct Podman {
    dir: tempfile::TempDir,
    /// Whether `/var/lib/containers` (where containers/image keeps its blob-info
    /// cache whatever the storage root) existed before the test.
    system_dir_existed: bool,
}

const SYSTEM_DIR: &str = "/var/lib/containers";

impl Podman {
    fn new() -> Podman {
        let system_dir_existed = Path::new(SYSTEM_DIR).exists();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        std::fs::write(
            dir.path().join("storage.conf"),
            format!("[storage]\ndriver = \"vfs\"\ngraphroot = \"{d}/root\"\nrunroot = \"{d}/run\"\n"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("containers.conf"),
            format!("[engine]\ntmp_dir = \"{d}/tmp\"\nevents_logger = \"file\"\nevents_logfile_path = \"{d}/events.log\"\n"),
        )
        .unwrap();
        Podman { dir, system_dir_existed }
    }

    fn env(&self) -> Vec<(&'static str, PathBuf)> {
        vec![
            ("CONTAINERS_STORAGE_CONF", self.dir.path().join("storage.conf")),
            ("CONTAINERS_CONF", self.dir.path().join("containers.conf")),
            ("TMPDIR", self.dir.path().to_path_buf()),
        ]
    }

    /// `podman ARGS`; panics with its output when it fails.
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("podman")
            .args(["--storage-driver=vfs"])
            .args(args)
            .envs(self.env())
            .output()
            .expect("podman (Debian podman) is installed by scripts/test.sh");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "podman {args:?}: {stderr}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        for args in [&["image", "unmount", "--all"][..], &["rmi", "--all", "--force"]] {
            let _ = Command::new("podman").arg("--storage-driver=vfs").args(args).envs(self.env()).output();
        }
        if !self.system_dir_existed {
            let _ = std::fs::remove_dir_all(SYSTEM_DIR);
        }
    }
}

/// A `podman run` line of the README, as a container runtime reads it.
#[derive(Debug)]
struct RunLine {
    image: String,
    /// (host path, container path, read-only)
    volumes: Vec<(String, String, bool)>,
    args: Vec<String>,
}

/// How long the image's exporter serves, scraped every second, without exiting.
const SERVE_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// Parses the README's `podman run`; an option the test does not know fails
/// it, so the README cannot say more than the test carries out.
fn parse_run(block: &str) -> RunLine {
    let joined = block.replace("\\\n", " ");
    let mut words = joined.split_whitespace().map(str::to_string);
    assert_eq!((words.next().as_deref(), words.next().as_deref()), (Some("podman"), Some("run")), "{block}");
    let mut volumes = Vec::new();
    let mut network_host = false;
    let image = loop {
        let w = words.next().unwrap_or_else(|| panic!("no image in {block}"));
        match w.as_str() {
            "--detach" | "-d" => {}
            "--name" => drop(words.next()),
            "--network" => network_host = words.next().as_deref() == Some("host"),
            "--volume" | "-v" => {
                let spec = words.next().unwrap();
                let parts: Vec<&str> = spec.split(':').collect();
                let ro = parts.get(2).is_some_and(|o| o.split(',').any(|o| o == "ro"));
                volumes.push((parts[0].to_string(), parts[1].to_string(), ro));
            }
            o if o.starts_with('-') => {
                panic!("tests/container_image.rs does not carry out podman run {o}; teach it or drop it from README")
            }
            image => break image.to_string(),
        }
    };
    assert!(network_host, "the exporter runs on the host network (IMDSv2 hop limit): {block}");
    RunLine { image, volumes, args: words.collect() }
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[test]
fn the_image_builds_and_its_root_file_system_serves_and_checks_without_ca_certificates() {
    let podman = Podman::new();
    let blocks = readme_blocks("tests/container_image.rs");
    let [build, run] = &blocks[..] else { panic!("expected the build and the run block, got {blocks:#?}") };

    // 1. Build, exactly as README says.
    let started = Instant::now();
    let out = Command::new("bash").args(["-euo", "pipefail", "-c", build]).current_dir(repo("")).envs(podman.env()).output().unwrap();
    let build_time = started.elapsed();
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "README build block failed:\n{log}");
    eprintln!("image build (README block, cargo included): {build_time:?}");

    // 2. What the image says about itself.
    let tag = format!("{IMAGE}:{}", version());
    let config: serde_json::Value = serde_json::from_str(&podman.run(&["image", "inspect", &tag, "--format", "{{json .Config}}"])).unwrap();
    assert_eq!(config["User"], "65534:65534", "{config}");
    assert_eq!(config["Entrypoint"], serde_json::json!(["/bin/aws-credentials-exporter"]), "{config}");
    assert!(config["ExposedPorts"].get("10169/tcp").is_some(), "{config}");
    let labels = &config["Labels"];
    assert_eq!(labels["org.opencontainers.image.version"], version().as_str(), "{config}");
    assert_eq!(labels["org.opencontainers.image.title"], "aws-credentials-exporter");
    assert_eq!(labels["org.opencontainers.image.licenses"], "Apache-2.0");
    let revision = labels["org.opencontainers.image.revision"].as_str().unwrap();
    assert!(revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit()), "{config}");
    let size: u64 = podman.run(&["image", "inspect", &tag, "--format", "{{.Size}}"]).parse().unwrap();
    eprintln!("image size: {size} bytes");
    assert!(size < SIZE_BUDGET_BYTES, "image is {size} bytes");

    // 3. Its root file system: the binary and nothing else.
    let root = PathBuf::from(podman.run(&["image", "mount", &tag]));
    let mut files: Vec<String> = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let rel = e.path().strip_prefix(&root).unwrap().display().to_string();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                files.push(rel);
            }
        }
    }
    assert_eq!(files, ["bin/aws-credentials-exporter"], "a scratch image with one binary");
    assert!(!root.join("etc/ssl").exists());

    // 4. `podman run` of the README, carried out by hand.
    let run = parse_run(run);
    assert_eq!(run.image, tag, "README runs the image this version builds");
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    assert!(readme.contains(&format!("podman push {tag}\n")), "README pushes the image this version builds");
    let host = tempfile::tempdir().unwrap();
    let conf = host.path().join("etc/chrony/chrony.conf");
    std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
    std::fs::write(&conf, "server 169.254.169.123 prefer iburst minpoll 4 maxpoll 4\n").unwrap();
    let mut mounts = String::new();
    for (src, dst, ro) in &run.volumes {
        let src = if src == "/" { host.path().display().to_string() } else { panic!("unexpected volume source {src}") };
        mounts += &format!("mkdir -p root{dst}\nmount --rbind {} root{dst}\n", sh_quote(&src));
        if *ro {
            mounts += &format!("mount -o remount,bind,ro root{dst}\n");
        }
    }
    let env: Vec<String> = config["Env"].as_array().into_iter().flatten().map(|e| sh_quote(e.as_str().unwrap())).collect();
    let entrypoint: Vec<String> = config["Entrypoint"].as_array().unwrap().iter().map(|e| sh_quote(e.as_str().unwrap())).collect();
    let user = config["User"].as_str().unwrap();
    // What a runtime gives every container: /proc, and HOME=/ for a user without a passwd entry.
    let container = format!("env -i {} HOME=/ chroot --userspec={user} root {}", env.join(" "), entrypoint.join(" "));
    let args: Vec<String> = run.args.iter().map(|a| sh_quote(a)).collect();
    let script = format!(
        r#"{SH_HELPERS}
instance
mkdir root
mount -t tmpfs -o mode=0755 tmpfs root
cp -a {image_root}/. root/
mkdir root/proc
mount -t proc proc root/proc
{mounts}mount -o remount,bind,ro root
{container} {args} > exporter.log 2>&1 &
EXP=$!
wait_for http://127.0.0.1:10169/metrics 'aws_imds_up 1'
cat page.txt
echo "uid: $(grep '^Uid:' /proc/$EXP/status)"
# Served for a minute by the same process (nothing restarts it here: it must not exit).
end=$(( $(date +%s) + {serve_secs} ))
scrapes=0
while [ "$(date +%s)" -lt "$end" ]; do
  kill -0 $EXP || {{ echo "exporter exited after $scrapes scrapes" >&2; cat exporter.log >&2; exit 1; }}
  curl -sf --noproxy '*' -m 2 http://127.0.0.1:10169/metrics > minute.txt
  grep -q '^aws_imds_up 1$' minute.txt || {{ echo "scrape $scrapes: IMDS not up" >&2; cat minute.txt >&2; exit 1; }}
  scrapes=$((scrapes+1))
  sleep 1
done
echo "minute-scrapes=$scrapes"
stop $EXP
set +e
{container} check {args} > report.txt 2> check.log
echo "check-exit=$?"
set -e
stop $SIM
echo "--- report"; cat report.txt
echo "--- logs"; cat exporter.log check.log
"#,
        image_root = sh_quote(&root.display().to_string()),
        args = args.join(" "),
        serve_secs = SERVE_FOR.as_secs(),
    );
    let started = Instant::now();
    let out = in_namespaces(&["-n", "-m"], &script, &[]);
    eprintln!("serve + check in the image's root file system: {:?}", started.elapsed());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("panicked"), "{text}");
    assert!(text.contains(r#"aws_credentials_seconds_until_expiry{provider="instance_profile",role="app-role"}"#), "{text}");
    assert!(text.contains("uid: Uid:\t65534\t65534\t65534\t65534"), "runs as the image's USER: {text}");
    assert!(text.contains("aws_clock_amazon_time_sync_configured 1"), "the host's chrony.conf is read under --path.rootfs: {text}");
    // Plain-HTTP IMDS never loads CA roots, so nothing warns of their absence.
    assert!(!text.contains("no CA certificates could be loaded"), "{text}");
    assert!(text.contains("\nOK   IMDS reachable"), "{text}");
    assert!(text.contains("configured in /host/etc/chrony/chrony.conf"), "{text}");
    let scrapes: u32 = text.lines().find_map(|l| l.strip_prefix("minute-scrapes=")).expect("served for a minute").parse().unwrap();
    assert!(scrapes >= 30, "only {scrapes} scrapes in {SERVE_FOR:?}: {text}");
    let code = text.lines().find_map(|l| l.strip_prefix("check-exit=")).expect("exit code");
    assert!(["0", "1"].contains(&code), "check runs every check, none fails on the healthy instance: exit {code}\n{text}");
}
