//! An operator's log format and lines matched against it: compiled or a typed error, parsed or
//! a typed error, never a panic. The first line is the format; the lines after it are matched
//! against it and against two fixed formats (so the matcher is reached even when the fuzzer's
//! format does not compile).
#![no_main]

use libfuzzer_sys::fuzz_target;
use prewarm_trainer::ingest::log_format::LogFormat;

const FIXED: [&str; 2] = [
    r#"%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i" %D"#,
    r#"$remote_addr [$time_iso8601] $request_time "$request" $status $body_bytes_sent "$http_user_agent""#,
];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (spec, lines) = text.split_once('\n').unwrap_or((&text, ""));
    let mut formats: Vec<LogFormat> = FIXED.iter().filter_map(|f| LogFormat::compile(f).ok()).collect();
    assert_eq!(formats.len(), FIXED.len());
    if let Ok(format) = LogFormat::compile(spec) {
        formats.push(format);
    }
    for line in lines.lines() {
        for format in &formats {
            if let Ok(parsed) = format.parse(line) {
                assert!((100..=599).contains(&parsed.status));
                assert!(parsed.path.starts_with('/'));
            }
        }
    }
});
