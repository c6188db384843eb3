//! The loop's middle: `prewarm train` publishes to the local KV that `wrangler dev` reads, and
//! the running worker picks up each new version, and a rollback, without a restart.

use std::time::Duration;

use prewarm_tests::{Origin, TempDir, WranglerDev, prewarm, repo_root, request};

fn status(dev: &WranglerDev) -> serde_json::Value {
    let (code, body) = request(dev.addr, "GET", "/__prewarm/status", &[], b"").expect("status");
    assert_eq!(code, 200);
    serde_json::from_slice(&body).expect("status json")
}

fn wait_for_version(dev: &WranglerDev, version: u64) -> serde_json::Value {
    for _ in 0..100 {
        // Requests drive the worker's background refresh.
        let _ = request(dev.addr, "GET", "/", &[("User-Agent", "Mozilla/5.0 (X11; Linux x86_64)")], b"");
        let s = status(dev);
        if s["model"]["version"].as_u64() == Some(version) {
            return s;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("the worker never loaded version {version}: {}", status(dev));
}

#[test]
#[ignore = "needs Node and wrangler: `cargo xtask test` runs it"]
fn trained_models_reach_the_running_worker_and_roll_back() {
    let dir = TempDir::new("publish");
    let data = dir.0.join("data");
    let kv = dir.0.join("kv");
    let origin = Origin::start();
    let config = dir.0.join("wrangler.toml");
    let worker = repo_root().join("edge/worker.mjs");
    assert!(repo_root().join("edge/build/index.js").exists(), "build the worker first: cargo xtask build-worker");
    std::fs::write(
        &config,
        format!(
            r#"name = "prewarm-edge-e2e"
main = "{}"
compatibility_date = "2026-04-01"
[vars]
ORIGIN_URL = "http://{}"
PREWARM_SALT = "e2e-salt-0123456789"
COOKIE_SECRET = "e2e-cookie-secret"
MODEL_CHECK_SECS = "0"
[[kv_namespaces]]
binding = "PREWARM_MODEL"
id = "00000000000000000000000000000000"
"#,
            worker.display(),
            origin.addr
        ),
    )
    .expect("write wrangler config");
    let events = dir.0.join("events.ndjson");
    let events = events.to_str().expect("utf-8 path");
    prewarm(&data, &["synth", "--out", events, "--users-per-kind", "25", "--regions", "eu:60"], &[]);
    prewarm(&data, &["import", events], &[("PREWARM_SALT", "e2e-salt-0123456789")]);
    let trained = prewarm(&data, &["train"], &[]);
    assert!(trained.contains("model version 1 published"), "{trained}");
    let publish = |extra: &[&str]| {
        let mut args = vec![
            "publish",
            "--local-kv",
            kv.to_str().expect("utf-8"),
            "--wrangler-config",
            config.to_str().expect("utf-8"),
        ];
        args.extend_from_slice(extra);
        prewarm(&data, &args, &[])
    };
    publish(&[]);

    let dev = WranglerDev::start(&config, &kv);
    let first = wait_for_version(&dev, 1);
    assert_eq!(first["model"]["regions_loaded"], serde_json::json!(["eu"]));
    let (code, _) = request(dev.addr, "GET", "/articles/1", &[("User-Agent", "Mozilla/5.0 (iPhone) Mobile")], b"")
        .expect("request");
    assert_eq!(code, 200);
    let seen = origin.seen.lock().expect("lock").join("\n").to_ascii_lowercase();
    assert!(seen.contains("x-prewarm-model: 1"), "{seen}");
    assert!(seen.contains("x-prewarm-region: eu"));

    // New behaviour arrives; the next training is version 2 and the worker follows.
    prewarm(&data, &["synth", "--out", events, "--users-per-kind", "25", "--regions", "eu:60", "--seed", "7"], &[]);
    prewarm(&data, &["import", events], &[("PREWARM_SALT", "e2e-salt-0123456789")]);
    assert!(prewarm(&data, &["train"], &[]).contains("model version 2 published"));
    // The operator's view of the change: version 1 is still inspectable, and the diff accounts
    // for every profile of both versions.
    let v1: serde_json::Value =
        serde_json::from_str(&prewarm(&data, &["inspect", "--version", "1", "--json"], &[])).expect("inspect JSON");
    assert_eq!(v1[0]["model_version"], 1, "{v1}");
    let diff: serde_json::Value =
        serde_json::from_str(&prewarm(&data, &["diff", "1", "current", "--json"], &[])).expect("diff JSON");
    let eu = &diff["regions"][0];
    assert_eq!(
        (eu["region"].as_str(), eu["version_before"].as_u64(), eu["version_after"].as_u64()),
        (Some("eu"), Some(1), Some(2))
    );
    let profiles = eu["profiles"].as_array().expect("profiles");
    let count = |side: &str| profiles.iter().filter(|p| !p[side].is_null()).count();
    assert_eq!(count("before"), v1[0]["profiles"].as_array().map_or(0, Vec::len));
    for p in profiles.iter().filter(|p| p["change"] == "kept") {
        assert!(p["centroid_moved"].as_f64().is_some_and(|d| d >= 0.0), "{p}");
    }
    let text = prewarm(&data, &["diff", "1", "2"], &[]);
    assert!(text.contains("region eu (kept; version 1 → 2)"), "{text}");
    publish(&[]);
    let second = wait_for_version(&dev, 2);
    assert_ne!(second["model"]["pointer_hash"], first["model"]["pointer_hash"]);

    // Roll back: the worker returns to version 1's pointer.
    let rolled = publish(&["--rollback"]);
    assert!(rolled.contains("rolled back"), "{rolled}");
    let back = wait_for_version(&dev, 1);
    assert_eq!(back["model"]["pointer_hash"], first["model"]["pointer_hash"]);
    assert_eq!(back["counters"]["decode_errors"], 0);
}
