//! Hostile files: profile files whose indented lines hide secrets in the
//! values of harmless keys, and (see the modules below) files that are FIFOs,
//! devices, endless or huge, and paths that try to leave a target's root.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_credentials_exporter::chain::ProcessEnv;
use aws_credentials_exporter::chain::profile::{MAX_ENTRIES, SHOWN_KEYS};
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

// ---------------------------------------------------------------------------
// Bounded reads: FIFOs, devices and oversized files.

fn mkfifo(path: &Path) {
    assert!(Command::new("mkfifo").arg(path).status().expect("mkfifo").success());
}

/// Runs `demo` with `args`; it must exit (not hang) within 10 s. Exit status and stderr.
fn demo_exits(args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(BIN)
        .args(["demo", "--web.listen-address", "127.0.0.1:0"])
        .args(args)
        .env_clear()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > until {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("demo {args:?} still running after 10 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (status, err)
}

/// A web config (or a certificate it names) that is a FIFO, `/dev/zero` or
/// larger than the cap stops start-up at once with the file and the reason;
/// before, a FIFO hung start-up without a word and `/dev/zero` grew to 1.45 GB.
#[test]
fn a_web_config_that_is_a_fifo_a_device_or_huge_stops_start_up_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("web.yml");
    mkfifo(&fifo);
    let huge = dir.path().join("huge.yml");
    std::fs::write(&huge, "#".repeat(2 << 20)).unwrap();
    let cert_fifo = dir.path().join("cert.yml");
    let pem = dir.path().join("server.pem");
    mkfifo(&pem);
    std::fs::write(&cert_fifo, "tls_server_config:\n  cert_file: server.pem\n  key_file: server.pem\n").unwrap();
    for (file, reason) in [
        (fifo.as_path(), "a FIFO, not a regular file"),
        (Path::new("/dev/zero"), "a character device, not a regular file"),
        (huge.as_path(), "larger than 1048576 bytes"),
        (cert_fifo.as_path(), "a FIFO, not a regular file"),
    ] {
        let started = Instant::now();
        let (status, err) = demo_exits(&["--web.config.file", file.to_str().unwrap()]);
        assert!(!status.success(), "{}: {err}", file.display());
        assert!(err.contains(file.to_str().unwrap()) && err.contains(reason), "{}: {err}", file.display());
        assert!(started.elapsed() < Duration::from_secs(5), "{}: {:?}", file.display(), started.elapsed());
    }
}

/// The web config file turning into a FIFO, or growing beyond the cap, at run
/// time: the reload fails (metric 0), the last valid configuration stays in
/// force, reloads go on, and the exporter still stops when asked. Before, the
/// FIFO wedged the request that re-read it, every later reload and shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_config_turning_into_a_fifo_or_growing_keeps_the_last_valid_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("web.yml");
    let users = |password: &str| format!("basic_auth_users:\n  prometheus: '{}'\n", bcrypt::hash(password, 4).unwrap());
    let replace = |content: Option<String>| {
        let tmp = dir.path().join("next");
        match content {
            Some(text) => std::fs::write(&tmp, text).unwrap(),
            None => mkfifo(&tmp),
        }
        std::fs::rename(&tmp, &path).unwrap();
    };
    replace(Some(users("one")));
    let sim = common::sim(ImdsSpec::default()).await;
    let r = common::exporter_on(&sim, &["--web.config.file", path.to_str().unwrap()]).await;
    aws_credentials_exporter::imds::install_tls_provider();
    let c = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build().unwrap();
    let url = r.url("/metrics");
    let get = |password: &'static str| {
        let (c, url) = (c.clone(), url.clone());
        async move {
            let resp = c.get(&url).basic_auth("prometheus", Some(password)).send().await.expect("the exporter answers");
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            let reload =
                (status == 200).then(|| common::Metrics::parse(&text).get("aws_credentials_exporter_web_config_last_reload_successful"));
            (status, reload)
        }
    };
    let eventually = |password: &'static str, want: (u16, Option<f64>)| async move {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let got = get(password).await;
            if got == want {
                return;
            }
            assert!(Instant::now() < until, "wanted {want:?} with {password:?}, got {got:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    eventually("one", (200, Some(1.0))).await;
    replace(None);
    eventually("one", (200, Some(0.0))).await;
    assert_eq!(get("two").await.0, 401, "the last valid configuration stays in force");
    replace(Some(users("two")));
    eventually("two", (200, Some(1.0))).await;
    replace(Some(format!("{}{}", users("three"), "#".repeat(2 << 20))));
    eventually("two", (200, Some(0.0))).await;
    assert_eq!(get("three").await.0, 401, "an oversized file is not read in part");
    tokio::time::timeout(Duration::from_secs(10), r.stop()).await.expect("the exporter stops");
    sim.stop().await;
}

/// Counts the bytes this thread has allocated, and their peak, so a test
/// can measure one computation while the other tests run on their threads.
mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static CURRENT: Cell<usize> = const { Cell::new(0) };
        static PEAK: Cell<usize> = const { Cell::new(0) };
    }

    pub struct Counting;

    fn add(n: usize) {
        // `try_with`: the allocator also runs while thread-locals are torn down.
        let _ = CURRENT.try_with(|c| {
            c.set(c.get() + n);
            let _ = PEAK.try_with(|p| p.set(p.get().max(c.get())));
        });
    }

    fn sub(n: usize) {
        let _ = CURRENT.try_with(|c| c.set(c.get().saturating_sub(n)));
    }

    // SAFETY: every call is forwarded unchanged to the system allocator; the
    // bookkeeping touches only const-initialised thread-local cells, which never allocate.
    #[allow(unsafe_code)]
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            add(layout.size());
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            sub(layout.size());
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            add(new_size);
            sub(layout.size());
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    /// Peak bytes allocated on this thread above what it held before, while `f` ran.
    pub fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
        let base = CURRENT.with(Cell::get);
        PEAK.with(|p| p.set(base));
        let out = f();
        (out, PEAK.with(Cell::get) - base)
    }
}

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

/// Profile files under the cap cost at most 16 MiB to evaluate, however they
/// are shaped; 100,000 empty sections in 1 MiB peaked at 88 MiB before.
#[test]
fn profile_parsing_memory_is_bounded_for_any_file_under_the_cap() {
    let shapes: Vec<(&str, String)> = vec![
        ("100,000 empty sections", (0..100_000).map(|i| format!("[p{i}]\n")).collect()),
        ("the most sections read", (0..MAX_ENTRIES).map(|i| format!("[p{i}]\n")).collect()),
        ("the most keys read", format!("[profile case]\n{}", (1..MAX_ENTRIES).map(|i| format!("k{i}=\n")).collect::<String>())),
        ("empty profile sections", (0..60_000).map(|i| format!("[profile {i}]\n")).collect()),
        ("one key per section", (0..50_000).map(|i| format!("[{i}]\nk=v\n")).collect()),
        ("keys in one section", format!("[profile case]\n{}", (0..100_000).map(|i| format!("k{i}=\n")).collect::<String>())),
        ("one long continued value", format!("[profile case]\nregion = a\n{}", "  x\n".repeat(250_000))),
    ];
    for (name, text) in shapes {
        assert!(text.len() as u64 <= aws_credentials_exporter::fsread::MAX_CONFIG_FILE, "{name}: {} bytes", text.len());
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join(".aws")).unwrap();
        std::fs::write(tmp.path().join(".aws/config"), &text).unwrap();
        std::fs::write(tmp.path().join(".aws/credentials"), &text).unwrap();
        let env = env_with_home(tmp.path());
        for sdk in aws_credentials_exporter::chain::Sdk::ALL {
            let started = Instant::now();
            let (obs, peak) = counting::peak_of(|| aws_credentials_exporter::chain::evaluate(sdk, &env, Some(true), chrono::Utc::now()));
            eprintln!("{name}, {}: peak {:.1} MiB in {:?}", sdk.as_str(), peak as f64 / (1 << 20) as f64, started.elapsed());
            assert!(peak <= 16 << 20, "{name}, {}: peak {peak} bytes; {:?}", sdk.as_str(), obs.active);
        }
    }
}

// ---------------------------------------------------------------------------
// Target roots: a target's paths stay inside its root.

/// A target whose root is `jail` (what `/proc/PID/root` is for a chrooted or
/// containerised process, as `Host::process_env` returns it) with `HOME=home`.
fn jailed(jail: &Path, home: &str) -> ProcessEnv {
    let mut env = ProcessEnv {
        root: jail.into(),
        home: Some(home.into()),
        passwd_home: Some(home.into()),
        cwd: Some("/".into()),
        ..ProcessEnv::default()
    };
    env.set_var("HOME", home);
    env
}

/// Issue 12: `HOME=/../x` in a chrooted process made the exporter read
/// `/proc/PID/root/../x/.aws/credentials`, a file outside the jail. Neither
/// `..` nor a symlink (absolute or relative) leads out now; a link that stays
/// inside the root is still followed.
#[test]
fn a_target_cannot_lead_the_exporter_out_of_its_root() {
    use aws_credentials_exporter::chain::{Provider, Sdk, evaluate};
    let tmp = tempfile::tempdir().unwrap();
    let jail = tmp.path().join("jail");
    let outside = tmp.path().join("x/.aws");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::create_dir_all(jail.join("home/app")).unwrap();
    std::fs::create_dir_all(jail.join("srv/x/.aws")).unwrap();
    let credentials = format!("[default]\naws_access_key_id = AKIAOUTSIDEJAIL{MARK}\naws_secret_access_key = {MARK}\n");
    std::fs::write(outside.join("credentials"), &credentials).unwrap();
    let link = |name: &str, to: &str| std::os::unix::fs::symlink(to, jail.join(name)).unwrap();
    link("home/app/abs", "/../x");
    link("home/app/rel", "../../../../x");
    link("home/app/inside", "/srv/x");
    for home in ["/../x", "/home/../../x", "/home/app/abs", "/home/app/rel"] {
        for sdk in Sdk::ALL {
            let obs = evaluate(sdk, &jailed(&jail, home), Some(true), chrono::Utc::now());
            assert_eq!(obs.active, Provider::InstanceProfile, "HOME={home} {}: {obs:?}", sdk.as_str());
        }
    }
    // The control: the same file inside the root is found.
    std::fs::write(jail.join("srv/x/.aws/credentials"), &credentials).unwrap();
    for sdk in Sdk::ALL {
        let obs = evaluate(sdk, &jailed(&jail, "/home/app/inside"), Some(true), chrono::Utc::now());
        assert_eq!(obs.active, Provider::Profile, "{}: {obs:?}", sdk.as_str());
    }
}
