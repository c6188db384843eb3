//! Any body to POST /v1/events: every line accepted or rejected with a reason, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prewarm_shared::classify::ClassificationRules;

fuzz_target!(|data: &[u8]| {
    let rules = ClassificationRules::default();
    let (events, report) = prewarm_trainer::ingest::parse_ndjson(data, &rules);
    assert_eq!(events.len(), report.accepted);
});
