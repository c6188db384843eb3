//! What the trainer keeps: hashed users and classes, never an address, a User-Agent string, a
//! URL, a referrer or a raw id. The test reads the store's files byte by byte.

use prewarm_tests::{TempDir, Trainer, prewarm, request};

const INGEST: &str = "privacy-ingest-token-012345";
const SALT: &str = "privacy-test-salt";
const MARKER_UA: &str = "PrivacyProbe/7.3 (Macintosh; Intel Mac OS X 10_15_7)";
const EMAIL: &str = "alice.privacy@example.com";
const REFERRER: &str = "https://secret-referrer.example/landing";

fn address(i: usize) -> String {
    format!("198.51.{}.{}", 100 + i % 3, 10 + i % 200)
}

#[test]
fn the_store_holds_no_address_user_agent_url_referrer_or_raw_id() {
    let dir = TempDir::new("privacy");
    let log = dir.0.join("access.log");
    let lines: Vec<String> = (0..300)
        .map(|i| {
            format!(
                r#"{} - - [17/May/2015:10:{:02}:{:02} +0000] "GET /account/settings?email={EMAIL}&n={i} HTTP/1.1" 200 {} "{REFERRER}" "{MARKER_UA}""#,
                address(i),
                i / 60 % 60,
                i % 60,
                1000 + i
            )
        })
        .collect();
    std::fs::write(&log, lines.join("\n") + "\n").expect("write log");
    let env = [("PREWARM_SALT", SALT), ("PREWARM_INGEST_TOKEN", INGEST)];
    let out = prewarm(&dir.0, &["import", &log.display().to_string()], &env);
    assert!(out.contains("300"), "every line imported: {out}");

    // And through the HTTP API, an event whose optional fields carry identifying strings.
    let raw_id = "raw-user-id-4c1b9a";
    let trainer = Trainer::start(&dir.0, &env);
    let event = format!(
        r#"{{"time":1700000000,"user":"{}","region":"eu","path":"/u/{raw_id}/profile?email={EMAIL}","user_agent":"{MARKER_UA}","status":200,"bytes":10,"duration_ms":2}}"#,
        "ab".repeat(32)
    );
    let auth = format!("Bearer {INGEST}");
    let (status, body) =
        request(trainer.addr, "POST", "/v1/events", &[("authorization", &auth)], event.as_bytes()).expect("post");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    trainer.kill();

    let mut scanned = 0;
    for entry in std::fs::read_dir(&dir.0).expect("data dir").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("events.sqlite") {
            continue;
        }
        let bytes = std::fs::read(entry.path()).expect("read store file");
        scanned += bytes.len();
        let text = String::from_utf8_lossy(&bytes);
        let mut needles: Vec<String> =
            vec![MARKER_UA.into(), "PrivacyProbe".into(), EMAIL.into(), REFERRER.into(), "/account/settings".into()];
        needles.push(raw_id.into());
        needles.extend((0..300).map(address));
        for needle in &needles {
            assert!(!text.contains(needle.as_str()), "{name} contains {needle:?}");
        }
    }
    assert!(scanned > 4096, "the store files were found and read ({scanned} bytes)");
}
