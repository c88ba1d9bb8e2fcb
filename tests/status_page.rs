//! The status page in a real browser: headless Chromium (Debian `chromium`)
//! loads `/` for the `healthy` and `expiring` demos; the DOM must carry the
//! banner and the findings, and a screenshot is taken of each (kept under
//! `target/status-page/` to look at).

mod common;

use std::process::Command;
use std::time::Duration;

use common::stack::{self, assert_none_left, free_port, wait_ready};

/// Headless Chromium that talks to nothing but the page it is given.
fn chromium(profile: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--no-proxy-server",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", profile)
        .output()
        .expect("chromium is installed by scripts/test.sh (Debian package chromium)")
}

#[tokio::test]
async fn status_page_shows_the_report_in_a_browser() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page");
    std::fs::create_dir_all(&shots).unwrap();
    for (scenario, banner, must) in [
        ("healthy", "OK", vec![(r#"data-check="credentials.expiry" data-status="OK""#, "expiry OK")]),
        (
            "expiring",
            "WARN",
            vec![
                (r#"data-check="credentials.expiry" data-status="WARN""#, "the expiry finding"),
                ("rotation is late", "the evidence"),
                ("detach and re-attach the instance profile", "the remedy"),
                ("runbook.md#awscredentialsexpiringsoon", "the runbook link"),
            ],
        ),
    ] {
        let port = free_port();
        let mut demo = stack::demo(dir, scenario, port, &[]);
        let url = format!("http://127.0.0.1:{port}/");
        wait_ready(&mut demo, &format!("{url}-/healthy"), Duration::from_secs(20)).await;
        let profile = tempfile::tempdir().unwrap();
        let out = chromium(profile.path(), &["--dump-dom", &url]);
        let dom = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && dom.contains("<html"), "{scenario}: chromium failed: {}", String::from_utf8_lossy(&out.stderr));
        assert!(dom.contains(&format!(r#"id="status" class="banner {banner}""#)), "{scenario}: banner {banner}\n{dom}");
        for (needle, what) in must {
            assert!(dom.contains(needle), "{scenario}: {what} ({needle}) missing from the DOM\n{dom}");
        }
        for link in [r#"href="/metrics""#, r#"href="/check.json""#] {
            assert!(dom.contains(link), "{scenario}: {link}");
        }
        assert!(!dom.contains("<script"), "no JavaScript");
        assert!(!dom.contains("SimSecretAccessKey") && !dom.contains("SimSessionToken"), "{scenario}: secrets");

        let png = shots.join(format!("{scenario}.png"));
        let _ = std::fs::remove_file(&png);
        let profile = tempfile::tempdir().unwrap();
        let out = chromium(profile.path(), &["--window-size=1280,1400", &format!("--screenshot={}", png.display()), &url]);
        assert!(out.status.success(), "{scenario}: screenshot failed: {}", String::from_utf8_lossy(&out.stderr));
        let bytes = std::fs::read(&png).expect("screenshot written");
        assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000, "{scenario}: a real screenshot ({} bytes)", bytes.len());
        demo.stop();
    }
    assert_none_left(dir);
}
