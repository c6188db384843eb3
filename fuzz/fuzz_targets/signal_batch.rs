//! Any signal body and headers: verified or refused, parsed or refused, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prewarm_shared::UnixSeconds;
use prewarm_shared::signals::{self, SignalBatch};

fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = SignalBatch::from_json(data) {
        let again = SignalBatch::from_json(&batch.to_json()).expect("round trip");
        assert_eq!(again.demand.len(), batch.demand.len());
    }
    let (head, body) = data.split_at(data.len().min(80));
    let head = String::from_utf8_lossy(head);
    let (timestamp, signature) = head.split_once('|').unwrap_or((&head, ""));
    let _ = signals::verify(b"fuzz-token", Some(timestamp), Some(signature), body, UnixSeconds(1_800_000_000));
});
