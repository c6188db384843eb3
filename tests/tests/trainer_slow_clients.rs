//! Slow clients against the real server: connections that dribble their headers a byte a
//! second are closed after `header_read_timeout_secs`, and while 500 of them are open a normal
//! client still ingests.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use prewarm_tests::{TempDir, Trainer, request};

const INGEST: &str = "slow-ingest-token-0123456";
const SLOW: usize = 500;

fn events(from: usize, n: usize) -> Vec<u8> {
    (from..from + n)
        .map(|i| {
            format!(
                r#"{{"time":{},"user":"{:064x}","region":"eu","path":"/","device":"desktop","status":200,"bytes":1,"duration_ms":1}}"#,
                1_700_000_000 + i,
                i as u128
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes()
}

#[test]
fn slow_header_connections_are_closed_and_do_not_stop_ingest() {
    let dir = TempDir::new("slow-clients");
    let config = dir.0.join("prewarm.toml");
    std::fs::write(&config, "header_read_timeout_secs = 2\n").expect("config");
    let config = config.display().to_string();
    let trainer = Trainer::start(&dir.0, &[("PREWARM_CONFIG", config.as_str()), ("PREWARM_INGEST_TOKEN", INGEST)]);

    // 500 connections, each sending a request's headers one byte a second: they would need
    // about a minute to finish them.
    let head = format!("POST /v1/events HTTP/1.1\r\nHost: trainer\r\nX-Slow: {}\r\n\r\n", "a".repeat(40));
    let mut slow: Vec<TcpStream> = (0..SLOW)
        .map(|_| {
            let stream = TcpStream::connect(trainer.addr).expect("connect");
            stream.set_read_timeout(Some(Duration::from_millis(10))).expect("timeout");
            stream
        })
        .collect();
    let auth = format!("Bearer {INGEST}");
    let mut ingested = 0;
    for second in 0..6 {
        for stream in &mut slow {
            let _ = stream.write_all(&head.as_bytes()[second..second + 1]);
        }
        // A normal client meanwhile: every batch accepted.
        let body = events(second * 20, 20);
        let (status, reply) =
            request(trainer.addr, "POST", "/v1/events", &[("authorization", &auth)], &body).expect("normal client");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&reply));
        ingested += 20;
        std::thread::sleep(Duration::from_secs(1));
    }
    // Six bytes into a 70-byte head, past the 2 s header timeout: the server has closed them.
    let closed = slow
        .iter()
        .filter(|stream| {
            let mut buf = [0u8; 256];
            match (&**stream).read(&mut buf) {
                Ok(0) => true,                                             // closed
                Ok(_) => true,                                             // answered (408) and closed
                Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset, // reset
            }
        })
        .count();
    assert_eq!(closed, SLOW, "every slow-header connection was closed before it finished its headers");
    let (status, body) = request(trainer.addr, "GET", "/healthz", &[], b"").expect("healthz");
    assert_eq!(status, 200);
    let events: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(events["events"], ingested);
}
