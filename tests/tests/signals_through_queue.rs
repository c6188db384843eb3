//! Signals through a Cloudflare Queue under `wrangler dev`'s local queues: while the trainer is
//! down for 30 s and traffic flows, the worker's batches wait in the queue; once it is back,
//! every batch arrives and none is counted twice, and no user request was affected.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use prewarm_tests::{Origin, TempDir, Trainer, WranglerDev, prewarm, repo_root, request, train_synthetic};

const SALT: &str = "queue-salt-0123456789";
const SIGNAL: &str = "queue-signal-key-0123456789";
const AGENTS: [&str; 3] = [
    "Mozilla/5.0 (X11; Linux x86_64)",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
];

fn json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let (code, body) = request(addr, "GET", path, &[], b"").expect("status request");
    assert_eq!(code, 200, "{path}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).expect("status JSON")
}

fn counter(worker: &serde_json::Value, name: &str) -> u64 {
    worker["counters"][name].as_u64().unwrap_or_else(|| panic!("no counter {name}: {worker}"))
}

/// Requests for `span`, from a few visitors; returns how many were sent and how many were not
/// answered 200.
fn traffic(worker: SocketAddr, span: Duration, sent: &mut u64) -> u64 {
    let mut failed = 0;
    let until = Instant::now() + span;
    while Instant::now() < until {
        let agent = AGENTS[(*sent % AGENTS.len() as u64) as usize];
        let path = format!("/articles/{}", *sent % 17);
        match request(worker, "GET", &path, &[("User-Agent", agent)], b"") {
            Ok((200, _)) => {}
            _ => failed += 1,
        }
        *sent += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    failed
}

fn wrangler_config(dir: &Path, origin: SocketAddr, trainer: SocketAddr) -> std::path::PathBuf {
    let config = dir.join("wrangler.toml");
    let text = format!(
        r#"name = "prewarm-edge-queue"
main = "{main}"
compatibility_date = "2026-04-01"
[vars]
ORIGIN_URL = "http://{origin}"
TRAINER_URL = "http://{trainer}"
PREWARM_SALT = "{SALT}"
COOKIE_SECRET = "queue-cookie-secret-0123"
SIGNAL_KEY = "{SIGNAL}"
SIGNAL_FLUSH_SECS = "1"
MODEL_CHECK_SECS = "0"
PREWARM_FAULT_INJECTION = "1"
[[kv_namespaces]]
binding = "PREWARM_MODEL"
id = "00000000000000000000000000000000"
[[queues.producers]]
binding = "SIGNAL_QUEUE"
queue = "prewarm-signals"
[[queues.consumers]]
queue = "prewarm-signals"
max_batch_size = 10
max_batch_timeout = 1
max_retries = 100
retry_delay = 2
dead_letter_queue = "prewarm-signals-dlq"
"#,
        main = repo_root().join("edge/worker.mjs").display(),
    );
    std::fs::write(&config, text).expect("write wrangler config");
    config
}

#[test]
#[ignore = "needs Node and wrangler: `cargo xtask test` runs it"]
fn a_trainer_outage_delays_queued_signals_and_loses_or_doubles_none() {
    assert!(repo_root().join("edge/build/index.js").exists(), "build the worker first: cargo xtask build-worker");
    let dir = TempDir::new("queue");
    let data = dir.0.join("data");
    let kv = dir.0.join("kv");
    train_synthetic(&data, SALT, 42);
    let trainer_env = [("PREWARM_SIGNAL_KEY", SIGNAL)];
    let trainer = Trainer::start(&data, &trainer_env);
    let trainer_addr = trainer.addr;
    let origin = Origin::start();
    let config = wrangler_config(&dir.0, origin.addr, trainer_addr);
    let publish = ["publish", "--local-kv", kv.to_str().expect("utf-8"), "--wrangler-config"];
    prewarm(&data, &[&publish[..], &[config.to_str().expect("utf-8")]].concat(), &[]);
    let dev = WranglerDev::start(&config, &kv);

    let mut sent = 0;
    let mut failed = traffic(dev.addr, Duration::from_secs(5), &mut sent);
    trainer.kill();
    failed += traffic(dev.addr, Duration::from_secs(30), &mut sent);
    let during_outage = json(dev.addr, "/__prewarm/status");
    assert!(counter(&during_outage, "queue_batches_retried") > 0, "nothing waited for the trainer: {during_outage}");
    let trainer = Trainer::start_at(trainer_addr, &data, &trainer_env);
    failed += traffic(dev.addr, Duration::from_secs(5), &mut sent);
    // One more request after the flush interval sends the last counts.
    std::thread::sleep(Duration::from_secs(2));
    failed += traffic(dev.addr, Duration::from_millis(1), &mut sent);
    assert_eq!(failed, 0, "{failed} of {sent} user requests were not answered 200");

    // Every batch the worker queued reaches the trainer, once.
    let mut last = serde_json::Value::Null;
    for _ in 0..120 {
        let worker = json(dev.addr, "/__prewarm/status");
        let status = json(trainer.addr, "/v1/status");
        let queued = counter(&worker, "signal_batches_queued");
        // The test's consumer hands each delivered batch back once, so the queue delivers
        // every batch at least twice: the trainer must answer each redelivery "already stored".
        let redelivered = counter(&worker, "queue_batches_already_stored");
        if status["edge"]["signal_batches"].as_u64() == Some(queued) && redelivered >= queued {
            assert_eq!(counter(&worker, "signal_batches_sent"), 0, "a batch bypassed the queue: {worker}");
            assert_eq!(counter(&worker, "signal_batches_dropped"), 0, "{worker}");
            assert_eq!(
                status["edge"]["demand_requests"].as_u64(),
                Some(counter(&worker, "requests_counted")),
                "the trainer's demand is not the worker's count: {status} vs {worker}"
            );
            assert!(queued >= 30, "fewer batches than flush intervals: {worker}");
            eprintln!(
                "{sent} requests, {queued} batches queued, {} delivery attempts retried, {redelivered} redeliveries \
                 stored once; trainer: {}",
                counter(&worker, "queue_batches_retried"),
                status["edge"]
            );
            return;
        }
        last = serde_json::json!({ "worker": worker, "trainer_edge": status["edge"] });
        // Requests keep the worker's isolate busy; the queue delivers on its own.
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("the queued batches never all arrived: {last}");
}
