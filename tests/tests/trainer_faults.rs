//! The trainer under bad input and a full store, as a real process on loopback.

use prewarm_shared::UnixSeconds;
use prewarm_shared::signals::{self, SignalBatch};
use prewarm_tests::{TempDir, Trainer, request};

const INGEST: &str = "faults-ingest-token-0123456";
const SIGNAL: &str = "faults-signal-token-0123456";
const LIMIT: usize = 64 * 1024;

fn event(i: usize) -> String {
    format!(
        r#"{{"time":{},"user":"{:064x}","region":"eu","path":"/api/items/{i}","device":"desktop","status":200,"bytes":512,"duration_ms":3}}"#,
        1_700_000_000 + i,
        i as u128
    )
}

fn events(from: usize, n: usize) -> Vec<u8> {
    (from..from + n).map(event).collect::<Vec<_>>().join("\n").into_bytes()
}

fn now() -> UnixSeconds {
    UnixSeconds(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

fn events_in_store(trainer: &Trainer) -> u64 {
    let (status, body) = request(trainer.addr, "GET", "/healthz", &[], b"").expect("healthz");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let health: serde_json::Value = serde_json::from_slice(&body).expect("healthz JSON");
    health["events"].as_u64().expect("event count")
}

fn config_file(dir: &TempDir, extra: &str) -> String {
    let path = dir.0.join("prewarm.toml");
    let text = format!("max_body_bytes = {LIMIT}\nsignal_rate_per_sec = 100000.0\nsignal_burst = 100000\n{extra}\n");
    std::fs::write(&path, text).expect("write config");
    path.display().to_string()
}

/// A tiny deterministic generator, so a failure names a reproducible request.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Between 1 and `max` random bytes.
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = 1 + self.below(max);
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// One malformed request: what it is, method, path, headers, body.
type Malformed = (String, &'static str, &'static str, Vec<(String, String)>, Vec<u8>);

fn malformed(rng: &mut Rng, accepted_signal: &Malformed) -> Malformed {
    let bearer = |t: &str| ("authorization".to_owned(), format!("Bearer {t}"));
    let ndjson = ("content-type".to_owned(), "application/x-ndjson".to_owned());
    let json = ("content-type".to_owned(), "application/json".to_owned());
    let signed = |body: &[u8], at: UnixSeconds, key: &str| {
        vec![
            (signals::KEY_ID_HEADER.to_owned(), signals::key_id(SIGNAL.as_bytes())),
            json.clone(),
            (signals::TIMESTAMP_HEADER.to_owned(), at.0.to_string()),
            (signals::SIGNATURE_HEADER.to_owned(), signals::sign(key.as_bytes(), at, body)),
        ]
    };
    let bad_lines = [
        "{",
        "not json at all",
        r#"{"time":"yesterday","user":"ab","region":"eu"}"#,
        r#"{"time":1700000000,"user":42,"region":"eu","path":"/","status":200,"bytes":1,"duration_ms":1}"#,
        r#"{"time":1700000000,"user":"zz","region":"eu","path":"/","status":200,"bytes":1,"duration_ms":1}"#,
        r#"{"time":1700000000,"user":"aa","region":"","path":"/","status":999,"bytes":-1,"duration_ms":1}"#,
        r#"[1,2,3]"#,
        "null",
        r#"{"time":1e400}"#,
    ];
    let n = rng.below(17);
    match n {
        0 => ("events without auth".into(), "POST", "/v1/events", vec![ndjson], events(0, 3)),
        1 => (
            "events with a wrong token".into(),
            "POST",
            "/v1/events",
            vec![bearer("wrong-token-0123456789"), ndjson],
            events(0, 3),
        ),
        2 => {
            let body: Vec<String> =
                (0..1 + rng.below(20)).map(|_| bad_lines[rng.below(bad_lines.len())].to_owned()).collect();
            (
                "events with bad JSON or wrong types".into(),
                "POST",
                "/v1/events",
                vec![bearer(INGEST), ndjson],
                body.join("\n").into_bytes(),
            )
        }
        3 => (
            "events, a body over the limit".into(),
            "POST",
            "/v1/events",
            vec![bearer(INGEST), ndjson],
            vec![b'x'; LIMIT + 1 + rng.below(LIMIT)],
        ),
        4 => (
            "events, gzip that is not gzip".into(),
            "POST",
            "/v1/events",
            vec![bearer(INGEST), ndjson, ("content-encoding".into(), "gzip".into())],
            rng.bytes(2000),
        ),
        5 => (
            "events, an unknown encoding".into(),
            "POST",
            "/v1/events",
            vec![bearer(INGEST), ndjson, ("content-encoding".into(), "br".into())],
            events(0, 2),
        ),
        6 => (
            "events, a wrong content type".into(),
            "POST",
            "/v1/events",
            vec![bearer(INGEST), ("content-type".into(), "image/png".into())],
            events(0, 2),
        ),
        7 => ("events, random bytes".into(), "POST", "/v1/events", vec![bearer(INGEST), ndjson], rng.bytes(4000)),
        8 => ("signals without auth".into(), "POST", "/v1/signals", vec![json], b"{}".to_vec()),
        9 => {
            let body = SignalBatch::new(now(), None).to_json();
            (
                "signals signed with another key".into(),
                "POST",
                "/v1/signals",
                signed(&body, now(), "another-key-0123456789"),
                body,
            )
        }
        10 => {
            let body = SignalBatch::new(now(), None).to_json();
            let stale = UnixSeconds(now().0 - 3_600);
            ("signals with a stale timestamp".into(), "POST", "/v1/signals", signed(&body, stale, SIGNAL), body)
        }
        11 => {
            let body = [b"{\"version\":1,\"sent_at\":".as_slice(), &rng.bytes(200)].concat();
            ("signals, signed garbage".into(), "POST", "/v1/signals", signed(&body, now(), SIGNAL), body)
        }
        12 => {
            let body =
                format!(r#"{{"version":1,"sent_at":"soon","demand":"lots","batch_id":{}}}"#, rng.next()).into_bytes();
            ("signals, signed wrong types".into(), "POST", "/v1/signals", signed(&body, now(), SIGNAL), body)
        }
        13 => {
            let body = SignalBatch::new(now(), None).to_json();
            let mut headers = signed(&body, now(), SIGNAL);
            headers[1] = ("content-type".into(), "text/html".into());
            ("signals, a wrong content type".into(), "POST", "/v1/signals", headers, body)
        }
        14 => {
            let (method, path) =
                [("DELETE", "/v1/events"), ("PUT", "/v1/signals"), ("POST", "/healthz"), ("PATCH", "/v1/plan")]
                    [rng.below(4)];
            (format!("{method} {path}: a wrong method"), method, path, vec![bearer(INGEST)], b"{}".to_vec())
        }
        15 => ("an unknown path".into(), "POST", "/v1/everything", vec![bearer(INGEST)], b"{}".to_vec()),
        _ => {
            let (_, method, path, headers, body) = accepted_signal.clone();
            ("signals, a replay of an accepted batch".into(), method, path, headers, body)
        }
    }
}

#[test]
fn a_thousand_malformed_requests_get_4xx_with_a_reason_and_the_server_stays_healthy() {
    let dir = TempDir::new("malformed");
    let config = config_file(&dir, "");
    let env = [("PREWARM_CONFIG", config.as_str()), ("PREWARM_INGEST_TOKEN", INGEST), ("PREWARM_SIGNAL_KEY", SIGNAL)];
    let trainer = Trainer::start(&dir.0, &env);
    let accepted = events(0, 10);
    let auth = format!("Bearer {INGEST}");
    let (status, _) =
        request(trainer.addr, "POST", "/v1/events", &[("authorization", &auth)], &accepted).expect("post");
    assert_eq!(status, 200);

    // One valid signed batch, accepted once: every later copy is a replay.
    let batch = SignalBatch::new(now(), None).to_json();
    let at = now();
    let accepted_signal: Malformed = (
        "a valid batch".into(),
        "POST",
        "/v1/signals",
        vec![
            (signals::KEY_ID_HEADER.into(), signals::key_id(SIGNAL.as_bytes())),
            ("content-type".into(), "application/json".into()),
            (signals::TIMESTAMP_HEADER.into(), at.0.to_string()),
            (signals::SIGNATURE_HEADER.into(), signals::sign(SIGNAL.as_bytes(), at, &batch)),
        ],
        batch,
    );
    let headers: Vec<(&str, &str)> = accepted_signal.3.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (status, _) = request(trainer.addr, "POST", "/v1/signals", &headers, &accepted_signal.4).expect("post");
    assert_eq!(status, 202);

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut tally: std::collections::BTreeMap<(String, u16), usize> = std::collections::BTreeMap::new();
    for i in 0..1_000 {
        let (what, method, path, headers, body) = malformed(&mut rng, &accepted_signal);
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (status, reply) = request(trainer.addr, method, path, &headers, &body)
            .unwrap_or_else(|e| panic!("request {i} ({what}): no answer: {e}"));
        assert!((400..500).contains(&status), "request {i} ({what}): {status} {}", String::from_utf8_lossy(&reply));
        let reason = String::from_utf8_lossy(&reply);
        assert!(reason.trim().len() >= 10, "request {i} ({what}): {status} without a reason: {reason:?}");
        *tally.entry((what, status)).or_default() += 1;
    }
    for ((what, status), n) in &tally {
        println!("{n:>4} × {status} {what}");
    }
    assert!(tally.len() >= 17, "every kind of malformed request was generated: {tally:?}");
    assert_eq!(events_in_store(&trainer), 10, "nothing malformed was stored and nothing accepted was lost");
}

#[test]
fn a_full_store_answers_503_keeps_what_it_has_and_recovers_when_space_returns() {
    let dir = TempDir::new("store-full");
    let auth = format!("Bearer {INGEST}");
    let headers = [("authorization", auth.as_str())];
    let mut acknowledged = 0;
    let mut refused = None;
    {
        let config = config_file(&dir, "store_max_mb = 1");
        let env =
            [("PREWARM_CONFIG", config.as_str()), ("PREWARM_INGEST_TOKEN", INGEST), ("PREWARM_SIGNAL_KEY", SIGNAL)];
        let trainer = Trainer::start(&dir.0, &env);
        for batch in 0..200 {
            let (status, body) =
                request(trainer.addr, "POST", "/v1/events", &headers, &events(acknowledged, 200)).expect("post");
            match status {
                200 => acknowledged += 200,
                503 => {
                    refused = Some((batch, String::from_utf8_lossy(&body).into_owned()));
                    break;
                }
                other => panic!("batch {batch}: {other} {}", String::from_utf8_lossy(&body)),
            }
        }
        let (batch, reason) = refused.clone().expect("a 1 MB store fills up within 40,000 events");
        assert!(batch > 0 && reason.contains("full"), "{reason}");
        // Still healthy, still answering, and nothing half-written.
        assert_eq!(events_in_store(&trainer), acknowledged as u64);
        let (status, _) =
            request(trainer.addr, "POST", "/v1/events", &headers, &events(acknowledged, 200)).expect("post");
        assert_eq!(status, 503, "still full");
        trainer.kill();
    }
    // Space returns (a larger cap): the same store opens intact and takes writes again.
    let config = config_file(&dir, "store_max_mb = 64");
    let env = [("PREWARM_CONFIG", config.as_str()), ("PREWARM_INGEST_TOKEN", INGEST), ("PREWARM_SIGNAL_KEY", SIGNAL)];
    let trainer = Trainer::start(&dir.0, &env);
    assert_eq!(events_in_store(&trainer), acknowledged as u64, "every acknowledged event survived");
    let (status, body) =
        request(trainer.addr, "POST", "/v1/events", &headers, &events(acknowledged, 200)).expect("post");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(events_in_store(&trainer), acknowledged as u64 + 200);
}

#[test]
fn a_read_only_store_answers_503_and_takes_writes_again_when_writable() {
    let dir = TempDir::new("store-read-only");
    let auth = format!("Bearer {INGEST}");
    let headers = [("authorization", auth.as_str())];
    let env_with = |config: &str| {
        vec![
            ("PREWARM_CONFIG".to_owned(), config.to_owned()),
            ("PREWARM_INGEST_TOKEN".to_owned(), INGEST.to_owned()),
            ("PREWARM_SIGNAL_KEY".to_owned(), SIGNAL.to_owned()),
        ]
    };
    let start = |config: &str| {
        let env = env_with(config);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Trainer::start(&dir.0, &env)
    };
    let writable = config_file(&dir, "");
    let trainer = start(&writable);
    let (status, _) = request(trainer.addr, "POST", "/v1/events", &headers, &events(0, 50)).expect("post");
    assert_eq!(status, 200);
    trainer.kill();

    let read_only = config_file(&dir, "store_read_only = true");
    let trainer = start(&read_only);
    let (status, body) = request(trainer.addr, "POST", "/v1/events", &headers, &events(50, 50)).expect("post");
    let reason = String::from_utf8_lossy(&body);
    assert_eq!(status, 503, "{reason}");
    assert!(reason.contains("read-only"), "{reason}");
    assert_eq!(events_in_store(&trainer), 50, "reads and health go on");
    trainer.kill();

    let writable = config_file(&dir, "");
    let trainer = start(&writable);
    let (status, _) = request(trainer.addr, "POST", "/v1/events", &headers, &events(50, 50)).expect("post");
    assert_eq!(status, 200);
    assert_eq!(events_in_store(&trainer), 100);
}
