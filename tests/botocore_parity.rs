//! Parity with the real peer: for each scenario (an isolated `HOME` with its own
//! `~/.aws/credentials` and `~/.aws/config`, and an exact environment), botocore's
//! `get_session().get_credentials().method` and the exporter's `check --chain.sdk
//! python` must name the same provider.
//!
//! Loopback only. Both run with a cleared environment (no proxies, no real
//! HOME), IMDS is the simulator (`AWS_EC2_METADATA_SERVICE_ENDPOINT`), container
//! URIs name the simulator, and `tests/botocore_method.py` refuses every
//! non-loopback connection and name lookup (and reports any attempt, which
//! fails the test). botocore contacts STS/SSO only when a key of deferred
//! credentials is read; the helper reads `.method` only.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use aws_credentials_exporter::sim;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{SecondsFormat, Utc};
use serde_json::Value;

/// The helper that asks botocore.
const HELPER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/botocore_method.py");

/// One row of the table. In files and variables, `{home}` is the scenario's
/// HOME, `{imds}` the simulator's base URL (`http://127.0.0.1:PORT`).
struct Scenario {
    name: &'static str,
    /// Variables besides the ones every run gets (see [`base_env`]).
    env: &'static [(&'static str, &'static str)],
    /// `~/.aws/credentials`.
    credentials: Option<&'static str>,
    /// `~/.aws/config`.
    config: Option<&'static str>,
    /// What botocore is expected to answer (method, exception class, or `none`):
    /// pins each scenario to the case it names, so parity cannot pass vacuously.
    botocore: &'static str,
}

const KEYS: [(&str, &str); 2] = [("AWS_ACCESS_KEY_ID", "AKIAPARITYENV000001"), ("AWS_SECRET_ACCESS_KEY", "SimSecretAccessKeyParityEnv")];

const STATIC_DEV: &str = "[dev]\naws_access_key_id = AKIAPARITYDEV000001\naws_secret_access_key = SimSecretAccessKeyParityDev\n";

fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario { name: "env keys", env: &KEYS, credentials: None, config: None, botocore: "env" },
        Scenario {
            name: "env keys + session token",
            env: &[KEYS[0], KEYS[1], ("AWS_SESSION_TOKEN", "SimSessionTokenParity")],
            credentials: None,
            config: None,
            botocore: "env",
        },
        Scenario {
            name: "env keys + AWS_SECURITY_TOKEN alias",
            env: &[KEYS[0], KEYS[1], ("AWS_SECURITY_TOKEN", "SimSessionTokenParityAlias")],
            credentials: None,
            config: None,
            botocore: "env",
        },
        Scenario {
            name: "AWS_PROFILE names static keys",
            env: &[("AWS_PROFILE", "dev")],
            credentials: Some(STATIC_DEV),
            config: None,
            botocore: "shared-credentials-file",
        },
        Scenario {
            name: "[default] in credentials file",
            env: &[],
            credentials: Some(
                "[default]\naws_access_key_id = AKIAPARITYDEF000001\naws_secret_access_key = SimSecretAccessKeyParityDefault\n",
            ),
            config: None,
            botocore: "shared-credentials-file",
        },
        Scenario {
            name: "config: credential_process",
            env: &[],
            credentials: None,
            config: Some("[default]\ncredential_process = {home}/bin/credentials.sh\n"),
            botocore: "custom-process",
        },
        Scenario {
            name: "config: role_arn + source_profile",
            env: &[("AWS_PROFILE", "dev")],
            credentials: Some("[base]\naws_access_key_id = AKIAPARITYBASE00001\naws_secret_access_key = SimSecretAccessKeyParityBase\n"),
            config: Some("[profile dev]\nrole_arn = arn:aws:iam::123456789012:role/parity\nsource_profile = base\n"),
            botocore: "assume-role",
        },
        Scenario {
            name: "config: role_arn + credential_source=Ec2InstanceMetadata",
            env: &[],
            credentials: None,
            config: Some("[default]\nrole_arn = arn:aws:iam::123456789012:role/parity\ncredential_source = Ec2InstanceMetadata\n"),
            botocore: "assume-role",
        },
        Scenario {
            name: "config: sso_session profile",
            env: &[("AWS_PROFILE", "dev")],
            credentials: None,
            config: Some(
                "[profile dev]\nsso_session = corp\nsso_account_id = 123456789012\nsso_role_name = ReadOnly\n\n\
                 [sso-session corp]\nsso_start_url = https://example.awsapps.com/start\nsso_region = us-east-1\n",
            ),
            botocore: "sso",
        },
        Scenario {
            name: "web identity token file + AWS_ROLE_ARN",
            env: &[("AWS_WEB_IDENTITY_TOKEN_FILE", "{home}/token.jwt"), ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/irsa")],
            credentials: None,
            config: None,
            botocore: "assume-role-with-web-identity",
        },
        Scenario {
            name: "container full URI (simulator)",
            env: &[
                ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "{imds}/v2/credentials/parity"),
                ("AWS_CONTAINER_AUTHORIZATION_TOKEN", sim::CONTAINER_AUTHORIZATION),
            ],
            credentials: None,
            config: None,
            botocore: "container-role",
        },
        Scenario { name: "IMDS role (simulator) only", env: &[], credentials: None, config: None, botocore: "iam-role" },
        Scenario {
            name: "partial: AWS_ACCESS_KEY_ID without secret",
            env: &[KEYS[0]],
            credentials: Some(STATIC_DEV),
            config: None,
            botocore: "PartialCredentialsError",
        },
        Scenario {
            name: "AWS_PROFILE names a missing profile",
            env: &[("AWS_PROFILE", "missing")],
            credentials: Some(STATIC_DEV),
            config: None,
            botocore: "ProfileNotFound",
        },
        Scenario {
            name: "AWS_EC2_METADATA_DISABLED=true, nothing else",
            env: &[("AWS_EC2_METADATA_DISABLED", "true")],
            credentials: None,
            config: None,
            botocore: "none",
        },
        // Combinations: which of two configured providers wins.
        Scenario {
            name: "env keys + AWS_PROFILE with static keys",
            env: &[KEYS[0], KEYS[1], ("AWS_PROFILE", "dev")],
            credentials: Some(STATIC_DEV),
            config: None,
            botocore: "env",
        },
        Scenario {
            name: "config: [profile dev] static keys",
            env: &[("AWS_PROFILE", "dev")],
            credentials: None,
            config: Some("[profile dev]\naws_access_key_id = AKIAPARITYCFG000001\naws_secret_access_key = SimSecretAccessKeyParityCfg\n"),
            botocore: "config-file",
        },
        Scenario {
            name: "credentials file + credential_process",
            env: &[],
            credentials: Some(
                "[default]\naws_access_key_id = AKIAPARITYDEF000001\naws_secret_access_key = SimSecretAccessKeyParityDefault\n",
            ),
            config: Some("[default]\ncredential_process = {home}/bin/credentials.sh\n"),
            botocore: "shared-credentials-file",
        },
        Scenario {
            name: "AWS_DEFAULT_PROFILE beats AWS_PROFILE",
            env: &[("AWS_DEFAULT_PROFILE", "dev"), ("AWS_PROFILE", "missing")],
            credentials: Some(STATIC_DEV),
            config: None,
            botocore: "shared-credentials-file",
        },
        Scenario {
            name: "credential_source=Ec2InstanceMetadata, IMDS disabled",
            env: &[("AWS_EC2_METADATA_DISABLED", "true")],
            credentials: None,
            config: Some("[default]\nrole_arn = arn:aws:iam::123456789012:role/parity\ncredential_source = Ec2InstanceMetadata\n"),
            botocore: "CredentialRetrievalError",
        },
        Scenario {
            name: "credential_source=Environment, no env keys",
            env: &[],
            credentials: None,
            config: Some("[default]\nrole_arn = arn:aws:iam::123456789012:role/parity\ncredential_source = Environment\n"),
            botocore: "CredentialRetrievalError",
        },
        Scenario {
            name: "credential_source=EcsContainer, no container URI",
            env: &[],
            credentials: None,
            config: Some("[default]\nrole_arn = arn:aws:iam::123456789012:role/parity\ncredential_source = EcsContainer\n"),
            botocore: "CredentialRetrievalError",
        },
    ]
}

/// The exporter's `provider` for what botocore answered (`CredentialResolver`
/// returns `None`, or the first provider's exception propagates: no credentials).
fn expected_provider(kind: &str, result: &str) -> &'static str {
    match (kind, result) {
        ("method", "env") => "environment",
        ("method", "assume-role" | "shared-credentials-file" | "config-file" | "ec2-credentials-file" | "boto-config") => "profile",
        ("method", "assume-role-with-web-identity") => "web_identity",
        ("method", "sso" | "login") => "sso",
        ("method", "custom-process") => "process",
        ("method", "container-role") => "container",
        ("method", "iam-role") => "instance_profile",
        ("method", other) => panic!("botocore method {other:?} has no mapping: add it"),
        ("none" | "exception", _) => "none",
        (other, _) => panic!("unknown helper result kind {other:?}"),
    }
}

/// A Python that imports botocore (scripts/test.sh installs it), and its
/// `sys.path`: the runs clear HOME, so a user-site install must be named explicitly.
fn python() -> (PathBuf, String) {
    let out = Command::new("python3")
        .args(["-c", "import sys, botocore; print(sys.executable); print(':'.join(p for p in sys.path if p))"])
        .output()
        .expect("python3 runs (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "botocore is not importable; scripts/test.sh installs it (python3 -m pip install 'botocore>=1.34'):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    (PathBuf::from(lines.next().unwrap()), lines.next().unwrap_or_default().to_string())
}

/// Variables every run gets; nothing else of this process's environment.
fn base_env(home: &Path, imds: &str, python_path: &str) -> BTreeMap<String, String> {
    let home = home.to_str().unwrap();
    BTreeMap::from([
        ("HOME".into(), home.into()),
        ("PATH".into(), "/usr/bin:/bin".into()),
        ("PYTHONPATH".into(), python_path.into()),
        ("PYTHONNOUSERSITE".into(), "1".into()),
        ("PYTHONDONTWRITEBYTECODE".into(), "1".into()),
        // No /etc/boto.cfg or ~/.boto from the machine.
        ("BOTO_CONFIG".into(), format!("{home}/.boto")),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT".into(), format!("{imds}/")),
    ])
}

/// Writes the scenario's HOME: profile files, the credential process, the web identity token.
fn write_home(home: &Path, s: &Scenario, fill: &dyn Fn(&str) -> String) {
    let aws = home.join(".aws");
    std::fs::create_dir_all(&aws).unwrap();
    if let Some(c) = s.credentials {
        std::fs::write(aws.join("credentials"), fill(c)).unwrap();
    }
    if let Some(c) = s.config {
        std::fs::write(aws.join("config"), fill(c)).unwrap();
    }
    // credential_process output, Version 1 (botocore ProcessProvider).
    let expires = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let script = home.join("bin/credentials.sh");
    std::fs::create_dir_all(script.parent().unwrap()).unwrap();
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncat <<'EOF'\n{{\"Version\": 1, \"AccessKeyId\": \"ASIAPARITYPROCESS01\", \"SecretAccessKey\": \"SimSecretAccessKeyParityProcess\", \"SessionToken\": \"SimSessionTokenParityProcess\", \"Expiration\": \"{expires}\"}}\nEOF\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    // An unsigned JWT whose exp is an hour ahead.
    let part = |json: &str| URL_SAFE_NO_PAD.encode(json);
    let claims = format!(r#"{{"sub":"system:serviceaccount:default:app","exp":{}}}"#, Utc::now().timestamp() + 3600);
    std::fs::write(home.join("token.jwt"), format!("{}.{}.c2lnbmF0dXJl", part(r#"{"alg":"RS256","typ":"JWT"}"#), part(&claims))).unwrap();
}

fn run(cmd: &mut Command, env: &BTreeMap<String, String>, cwd: &Path) -> Output {
    cmd.env_clear().envs(env).current_dir(cwd).output().expect("spawn")
}

/// One row of the result table.
struct Row {
    scenario: &'static str,
    botocore: String,
    want_botocore: &'static str,
    want: &'static str,
    exporter: String,
    problems: Vec<String>,
}

fn check_one(s: &Scenario, imds: &str, ntp: &str, python: &Path, python_path: &str) -> Row {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let home_str = home.to_str().unwrap().to_string();
    let fill = |t: &str| t.replace("{home}", &home_str).replace("{imds}", imds);
    write_home(&home, s, &fill);
    let mut env = base_env(&home, imds, python_path);
    for (k, v) in s.env {
        env.insert(k.to_string(), fill(v));
    }
    let mut problems = Vec::new();

    let out = run(Command::new(python).arg(HELPER), &env, &work);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let answer: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("{}: helper printed no JSON ({e}): {stdout}\nstderr:\n{}", s.name, String::from_utf8_lossy(&out.stderr))
    });
    let kind = answer["kind"].as_str().unwrap_or_default();
    let botocore = answer["result"].as_str().unwrap_or_default().to_string();
    let blocked = answer["blocked"].as_array().cloned().unwrap_or_default();
    if !blocked.is_empty() {
        problems.push(format!("botocore tried to leave loopback: {blocked:?}"));
    }
    if answer["deferred_fetched"] == Value::Bool(true) {
        problems.push("reading .method fetched deferred credentials".into());
    }
    if botocore != s.botocore {
        problems.push(format!("botocore answered {botocore} ({}), the scenario expects {}", answer["message"], s.botocore));
    }
    let want = expected_provider(kind, &botocore);

    let out = run(
        Command::new(common::BIN).args([
            "check",
            "--output",
            "json",
            "--chain.sdk",
            "python",
            "--imds.endpoint",
            imds,
            "--ntp.server",
            ntp,
        ]),
        &env,
        &work,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let exporter = match serde_json::from_str::<Value>(&stdout) {
        Ok(report) if matches!(out.status.code(), Some(0..=2)) => report["summary"]["active_providers"]
            .as_array()
            .and_then(|a| a.iter().find(|t| t["target"] == "self"))
            .map(|t| t["provider"].as_str().unwrap_or("(unreadable)").to_string())
            .unwrap_or_else(|| "(no self target)".into()),
        _ => {
            problems.push(format!("check failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr)));
            "(error)".into()
        }
    };
    if exporter != want {
        let details: Vec<String> = serde_json::from_str::<Value>(&stdout)
            .ok()
            .and_then(|r| r["checks"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter(|c| c["id"].as_str().is_some_and(|id| id.starts_with("chain")))
            .map(|c| format!("{}: {}", c["id"], c["evidence"]))
            .collect();
        problems.push(format!("exporter says {exporter}, botocore {botocore} → {want}; exporter chain checks: {details:#?}"));
    }
    Row { scenario: s.name, botocore, want_botocore: s.botocore, want, exporter, problems }
}

fn table(rows: &[Row]) -> String {
    let mut t = format!("{:<58} {:<32} {:<18} {}\n", "scenario", "botocore method", "exporter provider", "");
    for r in rows {
        let mark = if r.problems.is_empty() { "ok" } else { "MISMATCH" };
        let _ = writeln!(t, "{:<58} {:<32} {:<18} {mark}", r.scenario, r.botocore, r.exporter);
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporter_names_the_provider_botocore_uses() {
    let sim = common::sim(sim::ImdsSpec::default()).await;
    let imds = sim.imds_url();
    assert!(imds.starts_with("http://127.0.0.1:"), "{imds}");
    let ntp = sim.ntp_addr().to_string();
    let rows = tokio::task::spawn_blocking(move || {
        let (python, python_path) = python();
        scenarios().iter().map(|s| check_one(s, &imds, &ntp, &python, &python_path)).collect::<Vec<_>>()
    })
    .await
    .unwrap();
    sim.stop().await;

    assert!(rows.len() >= 14);
    let t = table(&rows);
    println!("{t}");
    let failures: Vec<String> =
        rows.iter().filter(|r| !r.problems.is_empty()).map(|r| format!("{}:\n  {}", r.scenario, r.problems.join("\n  "))).collect();
    assert!(failures.is_empty(), "botocore parity failed:\n{t}\n{}", failures.join("\n"));
    for r in &rows {
        assert_eq!((r.botocore.as_str(), r.exporter.as_str()), (r.want_botocore, r.want));
    }
}
