//! The dashboard in a real browser (headless Chromium): charts drawn, no console errors, a
//! screenshot; and its rollback action, authenticated.

use std::process::Command;

use prewarm_shared::UnixSeconds;
use prewarm_shared::signals::{DemandCount, SignalBatch};
use prewarm_shared::{ProfileId, artifact::ModelVersion};
use prewarm_tests::{TempDir, Trainer, post_signals, request, request_with_head, train_synthetic};

const ADMIN: &str = "dashboard-admin-token-0123";
const SIGNAL: &str = "dashboard-signal-token-0123";

fn chromium(args: &[&str], profile: &std::path::Path) -> (String, String) {
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("chromium (Debian's package; `cargo xtask test` installs it)");
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
#[ignore = "needs Chromium: `cargo xtask test` runs it"]
fn the_dashboard_draws_its_charts_in_chromium_and_rolls_back_with_the_admin_token() {
    let dir = TempDir::new("dashboard");
    let data = dir.0.join("data");
    for seed in [1, 2] {
        train_synthetic(&data, "dashboard-salt-0123456789", seed);
    }
    let env = [("PREWARM_ADMIN_TOKEN", ADMIN), ("PREWARM_SIGNAL_KEY", SIGNAL)];
    let trainer = Trainer::start(&data, &env);

    // The edge counted demand over the last minutes: the observed line has points.
    let now =
        UnixSeconds(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()));
    let mut batch = SignalBatch::new(now, Some(ModelVersion(2)));
    for back in 0..30 {
        batch.demand.push(DemandCount {
            region: "eu".into(),
            profile: ProfileId(0),
            minute: now.0 / 60 - back,
            requests: 40,
            bytes: 1,
        });
    }
    assert_eq!(post_signals(trainer.addr, SIGNAL, &batch), 202);

    let url = format!("http://{}/", trainer.addr);
    let profile = dir.0.join("chromium-profile");
    let (dom, log) = chromium(&["--dump-dom", &url], &profile);
    assert!(dom.contains("Region eu"), "{dom}");
    assert!(dom.contains(r#"id="model-version">2<"#), "the current version is 2");
    for part in [
        r#"class="band""#,
        r#"class="expected""#,
        r#"class="observed""#,
        "<h3>Plan</h3>",
        "version 1",
        r#"class="quality""#,
        "purity (device / content)",
    ] {
        assert!(dom.contains(part), "{part} missing from the page");
    }
    let console: Vec<&str> = log.lines().filter(|l| l.contains("CONSOLE") || l.contains("Uncaught")).collect();
    assert!(console.is_empty(), "console errors: {console:?}");
    let shot = dir.0.join("dashboard.png");
    chromium(&[&format!("--screenshot={}", shot.display()), "--window-size=1200,1600", &url], &profile);
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10_000, "a screenshot with content ({size} bytes)");
    if let Ok(keep) = std::env::var("PREWARM_SCREENSHOT") {
        let _ = std::fs::copy(&shot, keep);
    }

    // Rollback: the wrong token is refused, the right one moves `current` back to version 1.
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let (status, _) =
        request(trainer.addr, "POST", "/v1/rollback", &form, b"version=1&token=wrong-token-000000").expect("post");
    assert_eq!(status, 401);
    let body = format!("version=1&token={ADMIN}");
    let (status, head, _) =
        request_with_head(trainer.addr, "POST", "/v1/rollback", &form, body.as_bytes()).expect("post");
    assert_eq!(status, 303, "{head}");
    let (_, page) = request(trainer.addr, "GET", "/", &[], b"").expect("page");
    assert!(String::from_utf8_lossy(&page).contains(r#"id="model-version">1<"#));
}
