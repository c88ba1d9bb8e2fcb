//! The status page in a real browser: headless Chromium (Debian `chromium`)
//! loads `/` for the `healthy` and `expiring` demos. Both run inside a network
//! namespace the test creates (only loopback exists there), so the browser can
//! reach nothing but the page. The DOM must carry the banner and the
//! findings; a screenshot of each is kept under `target/tmp/status-page/`.

mod common;

use common::{SH_HELPERS, in_netns};

const CHROMIUM: &str = "chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
     --disable-background-networking --disable-component-update --disable-sync --disable-extensions --no-proxy-server";

#[test]
fn status_page_shows_the_report_in_a_browser() {
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
        let png = shots.join(format!("{scenario}.png"));
        let _ = std::fs::remove_file(&png);
        let script = format!(
            r#"{SH_HELPERS}
ip link set lo up
export HOME="$PWD"
"$BIN" demo --scenario {scenario} --web.listen-address 127.0.0.1:18080 > demo.log 2>&1 &
DEMO=$!
wait_for http://127.0.0.1:18080/-/healthy OK
{CHROMIUM} --user-data-dir="$PWD/profile-dom" --dump-dom http://127.0.0.1:18080/ > dom.html 2> chromium-dom.log
{CHROMIUM} --user-data-dir="$PWD/profile-shot" --window-size=1280,1400 --screenshot="$PNG" http://127.0.0.1:18080/ > /dev/null 2> chromium-shot.log
stop $DEMO
cat dom.html
"#
        );
        let out = in_netns(&script, &[("PNG", png.to_str().unwrap())]);
        let dom = String::from_utf8_lossy(&out.stdout);
        assert!(dom.contains("<html"), "{scenario}: chromium printed no DOM: {}", String::from_utf8_lossy(&out.stderr));
        assert!(dom.contains(&format!(r#"id="status" class="banner {banner}""#)), "{scenario}: banner {banner}\n{dom}");
        for (needle, what) in must {
            assert!(dom.contains(needle), "{scenario}: {what} ({needle}) missing from the DOM\n{dom}");
        }
        for link in [r#"href="/metrics""#, r#"href="/check.json""#] {
            assert!(dom.contains(link), "{scenario}: {link}");
        }
        assert!(!dom.contains("<script"), "no JavaScript");
        assert!(!dom.contains("SimSecretAccessKey") && !dom.contains("SimSessionToken"), "{scenario}: secrets");
        let bytes = std::fs::read(&png).expect("screenshot written");
        assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000, "{scenario}: a real screenshot ({} bytes)", bytes.len());
    }
}
