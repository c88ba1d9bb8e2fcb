//! Hostile files: profile files whose indented lines hide secrets in the
//! values of harmless keys, and (see the modules below) files that are FIFOs,
//! devices, endless or huge, and paths that try to leave a target's root.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_credentials_exporter::chain::ProcessEnv;
use aws_credentials_exporter::chain::profile::SHOWN_KEYS;
use aws_credentials_exporter::sim::{ImdsSpec, NtpSpec, scenario};
use aws_credentials_exporter::{app, metrics, report};
use common::BIN;

/// Planted in every continuation line and every value that is not on the
/// allow-list; its last four characters (what a key id suffix shows) are unusual too.
const MARK: &str = "ContinuationSecretZQXJ";

/// Every key kind the chain reads, and some it does not.
const KEYS: &[&str] = &[
    "region",
    "output",
    "role_arn",
    "source_profile",
    "credential_source",
    "web_identity_token_file",
    "role_session_name",
    "external_id",
    "mfa_serial",
    "duration_seconds",
    "sso_session",
    "sso_account_id",
    "sso_role_name",
    "sso_start_url",
    "sso_region",
    "sso_registration_scopes",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "aws_security_token",
    "credential_process",
    "x_security_token_expires",
    "aws_expiration",
    "expiration",
    "login_session",
    "s3",
    "ca_bundle",
    "endpoint_url",
    "some_unknown_key",
];

/// Keys whose own value may be shown: the exporter's allow-list, which must hold none of these.
const SHOWN: &[&str] = &SHOWN_KEYS;
const NEVER_SHOWN: &[&str] = &[
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "aws_security_token",
    "credential_process",
    "external_id",
    "endpoint_url",
    "s3",
    "login_session",
    "some_unknown_key",
];

type Sections = Vec<(&'static str, Vec<(&'static str, &'static str)>)>;

/// One way a profile is configured: the file it is in (`config` or
/// `credentials`) and its sections, the selected profile `[profile case]` / `[case]` first.
fn contexts() -> Vec<(&'static str, &'static str, Sections)> {
    let keys = vec![("aws_access_key_id", "AKIAEXAMPLEKEY0001"), ("aws_secret_access_key", "wJalrXUtnFEMIsecret")];
    vec![
        (
            "assume role from a source profile",
            "config",
            vec![
                ("profile case", vec![("role_arn", "arn:aws:iam::123456789012:role/app"), ("source_profile", "base")]),
                ("profile base", keys.clone()),
            ],
        ),
        (
            "assume role from a credential source",
            "config",
            vec![("profile case", vec![("role_arn", "arn:aws:iam::123456789012:role/app"), ("credential_source", "Ec2InstanceMetadata")])],
        ),
        (
            "web identity",
            "config",
            vec![(
                "profile case",
                vec![("role_arn", "arn:aws:iam::123456789012:role/app"), ("web_identity_token_file", "/nonexistent/token")],
            )],
        ),
        (
            "sso",
            "config",
            vec![(
                "profile case",
                vec![
                    ("sso_account_id", "123456789012"),
                    ("sso_role_name", "Admin"),
                    ("sso_start_url", "https://corp.awsapps.com/start"),
                    ("sso_region", "us-east-1"),
                ],
            )],
        ),
        (
            "sso session",
            "config",
            vec![
                ("profile case", vec![("sso_session", "corp"), ("sso_account_id", "123456789012"), ("sso_role_name", "Admin")]),
                ("sso-session corp", vec![("sso_start_url", "https://corp.awsapps.com/start"), ("sso_region", "us-east-1")]),
            ],
        ),
        ("static keys in the config file", "config", vec![("profile case", keys.clone())]),
        (
            "static keys with an expiry in the credentials file",
            "credentials",
            vec![(
                "case",
                [keys.clone(), vec![("aws_session_token", "IQoJsession"), ("x_security_token_expires", "2030-01-01T00:00:00Z")]].concat(),
            )],
        ),
        ("credential process", "credentials", vec![("case", vec![("credential_process", "/bin/true")])]),
    ]
}

/// The file text of `sections` with `planted` (in section `at`) holding a
/// continuation line (and, unless shown, a marked value of its own); for odd
/// `n` the key line itself is empty (`role_arn =`), so Python's value holds no line break.
fn render(sections: &Sections, at: usize, planted: &str, n: usize) -> String {
    let mark = format!("{MARK}{n:04}");
    let own = |k: &str, v: &str| match (n % 2 == 1, SHOWN.contains(&k)) {
        (true, _) => String::new(),
        (false, true) => v.to_string(),
        (false, false) => format!("{mark}own"),
    };
    let mut text = String::new();
    for (i, (header, keys)) in sections.iter().enumerate() {
        text.push_str(&format!("[{header}]\n"));
        let mut done = false;
        for (k, v) in keys {
            if i == at && *k == planted {
                text.push_str(&format!("{k} = {}\n  aws_session_token = {mark}\n", own(k, v)));
                done = true;
            } else {
                text.push_str(&format!("{k} = {v}\n"));
            }
        }
        if i == at && !done {
            text.push_str(&format!("{planted} = {}\n  aws_secret_access_key = {mark}\n", own(planted, "plausible")));
        }
    }
    text
}

fn assert_clean(what: &str, text: &str) {
    assert!(!text.contains("ContinuationSecret") && !text.contains("ZQXJ"), "{what} shows planted secret material:\n{text}");
}

fn env_with_home(home: &Path) -> ProcessEnv {
    let mut env = ProcessEnv { root: "/".into(), home: Some(home.into()), passwd_home: Some(home.into()), ..ProcessEnv::default() };
    env.set_var("HOME", home.to_str().unwrap());
    env.set_var("AWS_PROFILE", "case");
    env
}

/// Every key kind, under every way a profile is configured, for every SDK:
/// metrics, the status page, `/check.json` and the `check` text never show a
/// continuation line or a value that is not on the allow-list.
#[tokio::test]
async fn continuation_lines_never_reach_any_output() {
    let sim = common::sim_with_ntp(ImdsSpec::default(), NtpSpec::default()).await;
    let ntp = sim.ntp_addr().to_string();
    let healthy = scenario::by_name("healthy").unwrap().host();
    assert!(NEVER_SHOWN.iter().all(|k| !SHOWN.contains(k)), "the allow-list holds a secret key: {SHOWN:?}");
    let mut n = 0;
    let started = Instant::now();
    for sdk in ["java-v2", "java-v1", "python"] {
        let config = common::config(&sim.imds_url(), &["--chain.sdk", sdk, "--imds.timeout", "2s", "--ntp.server", &ntp]);
        for (name, file, sections) in contexts() {
            for at in 0..sections.len() {
                for planted in KEYS {
                    n += 1;
                    let tmp = tempfile::tempdir().unwrap();
                    let aws = tmp.path().join(".aws");
                    std::fs::create_dir_all(&aws).unwrap();
                    let text = render(&sections, at, planted, n);
                    assert!(text.contains(MARK));
                    std::fs::write(aws.join(file), &text).unwrap();
                    let mut host = healthy.clone();
                    host.env = env_with_home(tmp.path());
                    let prober = app::prober(&config).with_host(Arc::new(host));
                    let snapshot = prober.snapshot(Instant::now() + Duration::from_secs(5)).await;
                    let r = report::build(&snapshot);
                    let out = [
                        metrics::render(&snapshot),
                        report::render_text(&r, false),
                        report::render_json(&r),
                        report::render_html(&r, "/metrics"),
                        format!("{snapshot:?}"),
                    ]
                    .join("\n");
                    assert_clean(&format!("{sdk}, {name}, {planted} in section {at}:\n{text}\n"), &out);
                }
            }
        }
    }
    eprintln!("{n} files in {:?}", started.elapsed());
    sim.stop().await;
}

/// The two files of the report (issue 12): a secret indented under
/// `source_profile` or `role_arn`, through the real binary's `check` (text and
/// JSON, logging at trace level) and a served status page and `/check.json`.
#[tokio::test]
async fn the_reported_files_show_no_secret_in_check_or_on_the_pages() {
    let sim = common::sim_with_ntp(ImdsSpec::default(), NtpSpec::default()).await;
    let ntp = sim.ntp_addr().to_string();
    for (n, (key, value)) in [("source_profile", "base"), ("role_arn", "arn:aws:iam::123456789012:role/app")].into_iter().enumerate() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join(".aws")).unwrap();
        let other = if key == "role_arn" { "source_profile = base" } else { "role_arn = arn:aws:iam::123456789012:role/app" };
        std::fs::write(
            tmp.path().join(".aws/config"),
            format!(
                "[profile case]\n{other}\n{key} = {value}\n  aws_session_token = {MARK}{n}\n[profile base]\naws_access_key_id = AKIAEXAMPLEKEY0001\naws_secret_access_key = wJalrXUtnFEMI\n"
            ),
        )
        .unwrap();
        for sdk in ["java-v2", "java-v1", "python"] {
            for output in ["text", "json"] {
                let out = Command::new(BIN)
                    .args(["check", "--output", output, "--log.level", "trace", "--chain.sdk", sdk])
                    .args(["--imds.endpoint", &sim.imds_url(), "--ntp.server", &ntp, "--imds.timeout", "2s"])
                    .env_clear()
                    .env("HOME", tmp.path())
                    .env("AWS_PROFILE", "case")
                    .output()
                    .unwrap();
                let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
                assert!(text.contains("level=trace") && text.contains("profile"), "{text}");
                assert_clean(&format!("check --output {output} --chain.sdk {sdk}, {key}"), &text);
            }
            let mut host = scenario::by_name("healthy").unwrap().host();
            host.env = env_with_home(tmp.path());
            let running = common::exporter_with_host(&sim.imds_url(), &["--chain.sdk", sdk, "--ntp.server", &ntp], host).await;
            for path in ["/", "/check.json", "/metrics"] {
                let page = common::get(&running.url(path)).await;
                assert_clean(&format!("{path} --chain.sdk {sdk}, {key}"), &page);
            }
            running.stop().await;
        }
    }
    sim.stop().await;
}
