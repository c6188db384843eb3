//! Any line of an access log: parsed or a typed error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let line = String::from_utf8_lossy(data);
    if let Ok(parsed) = prewarm_trainer::ingest::access_log::parse(&line) {
        assert!(parsed.status < 1000);
    }
});
