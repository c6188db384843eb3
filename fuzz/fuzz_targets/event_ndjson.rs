//! Any body to POST /v1/events: every line accepted or rejected with a reason, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prewarm_shared::classify::ClassificationRules;

static RULES: std::sync::LazyLock<ClassificationRules> = std::sync::LazyLock::new(ClassificationRules::default);

fuzz_target!(|data: &[u8]| {
    let (events, report) = prewarm_trainer::ingest::parse_ndjson(data, &RULES);
    assert_eq!(events.len(), report.accepted);
});
