//! An acknowledged event survives the trainer being killed with SIGKILL mid-ingest.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use prewarm_tests::{TempDir, Trainer, request};

const TOKEN: &str = "durability-test-token-0123";

fn batch(thread: usize, n: usize, size: usize) -> String {
    (0..size)
        .map(|i| {
            format!(
                r#"{{"time":{},"user":"{:064x}","region":"eu","path":"/api/x","device":"desktop","status":200,"bytes":10,"duration_ms":1}}"#,
                1_700_000_000 + i,
                (thread * 1_000_000 + n * 1000 + i) as u128
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn sigkill_during_ingest_loses_no_acknowledged_event() {
    let dir = TempDir::new("durability");
    let env = [("PREWARM_INGEST_TOKEN", TOKEN)];
    let trainer = Trainer::start(&dir.0, &env);
    let addr = trainer.addr;
    let acknowledged = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let auth = format!("Bearer {TOKEN}");
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let (acknowledged, sent, stop, auth) = (acknowledged.clone(), sent.clone(), stop.clone(), auth.clone());
            std::thread::spawn(move || {
                for n in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let body = batch(t, n, 50);
                    sent.fetch_add(50, Ordering::SeqCst);
                    match request(addr, "POST", "/v1/events", &[("Authorization", &auth)], body.as_bytes()) {
                        Ok((200, reply)) => {
                            let reply: serde_json::Value = serde_json::from_slice(&reply).expect("json reply");
                            acknowledged.fetch_add(reply["accepted"].as_u64().expect("accepted"), Ordering::SeqCst);
                        }
                        // The server died under us: this batch was never acknowledged.
                        _ => break,
                    }
                }
            })
        })
        .collect();
    // Let ingest run, then kill without warning while writers are mid-request.
    while acknowledged.load(Ordering::SeqCst) < 2_000 {
        std::thread::sleep(Duration::from_millis(20));
    }
    trainer.kill();
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().expect("writer");
    }
    let acknowledged = acknowledged.load(Ordering::SeqCst);
    let sent = sent.load(Ordering::SeqCst);

    let restarted = Trainer::start(&dir.0, &env);
    let (status, body) = request(restarted.addr, "GET", "/healthz", &[], b"").expect("healthz");
    assert_eq!(status, 200);
    let found = serde_json::from_slice::<serde_json::Value>(&body).expect("json")["events"].as_u64().expect("events");
    eprintln!("kill -9 during ingest: sent {sent}, acknowledged {acknowledged}, found after restart {found}");
    assert!(found >= acknowledged, "lost acknowledged events: acknowledged {acknowledged}, found {found}");
    assert!(found <= sent);
}

#[test]
fn unauthenticated_and_malformed_writes_are_refused_over_real_http() {
    let dir = TempDir::new("refusals");
    let trainer = Trainer::start(&dir.0, &[("PREWARM_INGEST_TOKEN", TOKEN)]);
    let (status, _) = request(trainer.addr, "POST", "/v1/events", &[], b"{}").expect("request");
    assert_eq!(status, 401);
    let auth = format!("Bearer {TOKEN}");
    let (status, body) =
        request(trainer.addr, "POST", "/v1/events", &[("Authorization", &auth)], b"{\"time\":\"soon\"}")
            .expect("request");
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("rejections"));
    // Signals are off when no signal token is configured: a clear 503, not a silent accept.
    let (status, body) =
        request(trainer.addr, "POST", "/v1/signals", &[("Authorization", &auth)], b"{}").expect("request");
    assert_eq!(status, 503);
    assert!(String::from_utf8_lossy(&body).contains("PREWARM_SIGNAL_KEY"));
}
