//! Any User-Agent and path: a device and a request class, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prewarm_shared::classify::{ClassificationRules, Device};

static RULES: std::sync::LazyLock<ClassificationRules> = std::sync::LazyLock::new(ClassificationRules::default);

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = Device::from_user_agent(&text);
    let (path, content_type) = text.split_once('\n').unwrap_or((&text, ""));
    let _ = RULES.classify(path, None, Some(content_type));
});
