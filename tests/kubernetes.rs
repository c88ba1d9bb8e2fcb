//! The Kubernetes manifests in deploy/kubernetes: the README's `kustomize
//! build` commands run as written, their output validates (kubernetes-validate
//! `--strict` for the built-in kinds, prometheus-operator's schemas for
//! ServiceMonitor and PrometheusRule), and the objects say what the deployment
//! needs: the image the Containerfile builds, the node's root read-only under
//! `--path.rootfs`, one namespace admitting privileged pods, and an opt-in
//! overlay for `--chain.process`.
//!
//! The tools are installed by scripts/test.sh into
//! `$AWS_CREDENTIALS_EXPORTER_TOOLS` (default `~/.cache/aws-credentials-exporter`);
//! a missing tool fails the test.

mod common;

use common::stack::repo;
use common::succeed as run;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Oldest and newest API versions validated against. 1.30 is the first with
/// `recursiveReadOnly` on volume mounts; 1.37 is the newest kubernetes-validate 1.37.0 ships.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];
const NAMESPACE: &str = "monitoring";
const README_MARKER: &str = "<!-- tested-by: tests/kubernetes.rs -->";

fn tools_dir() -> PathBuf {
    match std::env::var_os("AWS_CREDENTIALS_EXPORTER_TOOLS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/aws-credentials-exporter"),
    }
}

/// A tool scripts/test.sh installs; its absence fails the test.
fn tool(rel: &str) -> PathBuf {
    let path = tools_dir().join(rel);
    assert!(path.is_file(), "{} is missing: scripts/test.sh installs it", path.display());
    path
}

/// The fenced ```sh block right after the marker in README.md.
fn readme_block() -> String {
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    let after = readme.split_once(README_MARKER).expect("README.md has the kustomize block marker").1;
    let body = after.trim_start().strip_prefix("```sh\n").expect("a ```sh block follows the marker");
    body.split_once("\n```").expect("the block is closed").0.to_string()
}

/// The three files the README's block writes, parsed.
struct Built {
    namespace: Vec<Value>,
    base: Vec<Value>,
    process_targets: Vec<Value>,
}

fn parse(text: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_norway::Deserializer::from_str(text)
        .map(|doc| serde_json::to_value(serde_norway::Value::deserialize(doc).unwrap()).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// Runs the README's block (paths made absolute, kustomize from the tools
/// directory) in a temporary directory, validates what it wrote with both
/// validators, and parses it. Once per test binary; a failure fails every test.
fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let kustomize = tool("bin/kustomize");
        let validate = tool("kubernetes-validate/bin/kubernetes-validate");
        let node_modules = repo("tests/kubernetes/node_modules/@kubernetes-models/prometheus-operator");
        assert!(node_modules.is_dir(), "{} is missing: scripts/test.sh runs npm ci", node_modules.display());

        let block = readme_block();
        let deploy = repo("deploy/kubernetes");
        let script = block.replace("deploy/kubernetes", deploy.to_str().unwrap());
        let dir = tempfile::tempdir().unwrap();
        let path = format!("{}:{}", kustomize.parent().unwrap().display(), std::env::var("PATH").unwrap_or_default());
        run(Command::new("bash").args(["-euo", "pipefail", "-c", &script]).current_dir(dir.path()).env("PATH", path));

        let files = ["namespace.yaml", "aws-credentials-exporter.yaml", "aws-credentials-exporter-process-targets.yaml"];
        for f in files {
            assert!(block.contains(&format!("> {f}")), "the README block writes {f}");
        }
        let file = |f: &str| dir.path().join(f);

        // Built-in kinds, strictly (unknown fields are errors), against each API version.
        for version in KUBERNETES_VERSIONS {
            let out = run(Command::new(&validate).args(["--strict", "-k", version]).args(files.map(file)));
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let short = version.trim_end_matches(".0");
            for (f, resource) in [
                (files[0], "namespace/monitoring"),
                (files[1], "daemonset/aws-credentials-exporter"),
                (files[1], "service/aws-credentials-exporter"),
                (files[2], "daemonset/aws-credentials-exporter"),
                (files[2], "service/aws-credentials-exporter"),
            ] {
                let line = format!("{} passed for resource {resource} against version {short}", file(f).display());
                assert!(text.contains(&line), "kubernetes-validate did not check {resource} in {f}:\n{text}");
            }
        }
        // ServiceMonitor and PrometheusRule, which kubernetes-validate skips.
        let out = run(Command::new("node").arg(repo("tests/kubernetes/validate-crds.mjs")).args(files[1..].iter().map(|f| file(f))));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        for f in &files[1..] {
            for kind in ["ServiceMonitor", "PrometheusRule"] {
                let line = format!("{}: {kind} {NAMESPACE}/aws-credentials-exporter: valid", file(f).display());
                assert!(text.contains(&line), "{kind} in {f} not validated:\n{text}");
            }
        }

        let read = |f: &str| parse(&std::fs::read_to_string(file(f)).unwrap());
        Built { namespace: read(files[0]), base: read(files[1]), process_targets: read(files[2]) }
    })
}

fn object<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let mut found = objects.iter().filter(|o| o["kind"] == kind);
    let one = found.next().unwrap_or_else(|| panic!("no {kind} in {objects:#?}"));
    assert!(found.next().is_none(), "more than one {kind}");
    one
}

fn pod_spec(objects: &[Value]) -> &Value {
    &object(objects, "DaemonSet")["spec"]["template"]["spec"]
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
}

#[test]
fn readme_kustomize_commands_build_manifests_that_validate() {
    let b = built();
    let kinds = |objects: &[Value]| {
        let mut k: Vec<String> = objects.iter().map(|o| o["kind"].as_str().unwrap().to_string()).collect();
        k.sort();
        k
    };
    let all = ["DaemonSet", "PrometheusRule", "Service", "ServiceMonitor"];
    assert_eq!(kinds(&b.base), all);
    assert_eq!(kinds(&b.process_targets), all);
    assert_eq!(kinds(&b.namespace), ["Namespace"]);
}

/// Regression: the DaemonSet named an image that nothing built. The
/// Containerfile's image is tagged with Cargo.toml's version; a version bump
/// must move the manifest with it.
#[test]
fn daemonset_image_tag_is_the_cargo_version() {
    let want = format!("ghcr.io/aws-credentials-exporter/aws-credentials-exporter:{}", env!("CARGO_PKG_VERSION"));
    for objects in [&built().base, &built().process_targets] {
        let containers = pod_spec(objects)["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 1);
        assert_eq!(containers[0]["image"], want.as_str());
    }
}

/// Regression: the PrometheusRule had no namespace. Every namespaced object
/// is in one namespace, the one the Namespace manifest creates.
#[test]
fn every_namespaced_object_is_in_the_monitoring_namespace() {
    let b = built();
    for objects in [&b.base, &b.process_targets] {
        for o in objects.iter() {
            assert_eq!(o["metadata"]["namespace"], NAMESPACE, "{} {}", o["kind"], o["metadata"]["name"]);
        }
    }
    assert_eq!(object(&b.namespace, "Namespace")["metadata"]["name"], NAMESPACE);
    // No hard-coded namespace elsewhere: the ServiceMonitor finds the Service in its own.
    assert!(object(&b.base, "ServiceMonitor")["spec"].get("namespaceSelector").is_none());
}

/// Host network, host port and hostPath are forbidden by Pod Security's
/// baseline level: the namespace must enforce `privileged`.
#[test]
fn namespace_admits_privileged_pods() {
    let labels = &object(&built().namespace, "Namespace")["metadata"]["labels"];
    for mode in ["enforce", "audit", "warn"] {
        assert_eq!(labels[format!("pod-security.kubernetes.io/{mode}")], "privileged", "{labels}");
    }
    let spec = pod_spec(&built().base);
    assert_eq!(spec["hostNetwork"], true, "the reason for the label");
}

/// Regression: inside the container the time-sync check read the container's
/// /etc. The node's root is mounted read-only at /host and named by --path.rootfs.
#[test]
fn daemonset_reads_the_node_through_a_read_only_host_root() {
    for (objects, recursive) in [(&built().base, "IfPossible"), (&built().process_targets, "Enabled")] {
        let spec = pod_spec(objects);
        let container = &spec["containers"][0];
        assert!(strings(&container["args"]).contains(&"--path.rootfs=/host"), "{}", container["args"]);
        let volume = spec["volumes"].as_array().unwrap().iter().find(|v| v["hostPath"]["path"] == "/").expect("a hostPath volume of /");
        let mounts = container["volumeMounts"].as_array().unwrap();
        let mount = mounts.iter().find(|m| m["name"] == volume["name"]).expect("the host root is mounted");
        assert_eq!(mount["mountPath"], "/host");
        assert_eq!(mount["readOnly"], true);
        assert_eq!(mount["recursiveReadOnly"], recursive, "sub-mounts (/proc, /run, ...) read-only too");
        assert!(mount.get("mountPropagation").is_none(), "recursiveReadOnly needs propagation None");
        // Every mount read-only, the image too.
        assert!(mounts.iter().all(|m| m["readOnly"] == true));
        assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    }
}

/// The base has no capabilities and runs as nobody on the host network (the
/// IMDSv2 hop limit); nothing of the overlay leaks into it.
#[test]
fn base_daemonset_runs_unprivileged() {
    let spec = pod_spec(&built().base);
    assert_eq!(spec["hostNetwork"], true);
    assert!(spec.get("hostPID").is_none());
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    assert_eq!(spec["securityContext"]["runAsUser"], 65534);
    assert_eq!(spec["automountServiceAccountToken"], false);
    let sc = &spec["containers"][0]["securityContext"];
    assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"]);
    assert!(sc["capabilities"].get("add").is_none());
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    let ds = std::fs::read_to_string(repo("deploy/kubernetes/base/daemonset.yaml")).unwrap();
    assert!(ds.contains("hop limit"), "the comment says why hostNetwork");
}

/// The opt-in overlay for --chain.process: the node's PID namespace and the
/// two capabilities another user's /proc/PID/environ takes, effective only as
/// uid 0 (Kubernetes sets no ambient capabilities); otherwise the base unchanged.
#[test]
fn process_targets_overlay_adds_host_pid_and_ptrace() {
    let b = built();
    let spec = pod_spec(&b.process_targets);
    assert_eq!(spec["hostPID"], true);
    assert_eq!(spec["securityContext"]["runAsUser"], 0);
    assert_eq!(spec["securityContext"]["runAsNonRoot"], false);
    let container = &spec["containers"][0];
    let caps = &container["securityContext"]["capabilities"];
    assert_eq!(strings(&caps["drop"]), ["ALL"]);
    assert_eq!(strings(&caps["add"]), ["SYS_PTRACE", "DAC_READ_SEARCH"]);
    assert_eq!(container["securityContext"]["allowPrivilegeEscalation"], false);

    // The base's args first, then example process targets.
    let base_args = strings(&pod_spec(&b.base)["containers"][0]["args"]);
    let args = strings(&container["args"]);
    assert_eq!(args[..base_args.len()], base_args[..]);
    assert!(!args[base_args.len()..].is_empty() && args[base_args.len()..].iter().all(|a| a.starts_with("--chain.process=")), "{args:?}");

    // Everything but the DaemonSet is the base's.
    for kind in ["Service", "ServiceMonitor", "PrometheusRule"] {
        assert_eq!(object(&b.process_targets, kind), object(&b.base, kind), "{kind}");
    }
}
