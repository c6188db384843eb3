//! Device classification on the real User-Agents of testdata/apache_logs.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};

use prewarm_shared::Device;

fn user_agents() -> Vec<String> {
    let file = std::fs::File::open(common::material("apache_logs/access.log.gz")).expect("open log");
    let reader = BufReader::new(flate2::read::GzDecoder::new(file));
    reader
        .lines()
        .map(|l| l.expect("read line"))
        // combined format: ... "request" status bytes "referrer" "user agent"
        .filter_map(|l| l.split('"').nth(5).map(str::to_owned))
        .collect()
}

#[test]
fn real_user_agents_are_classified() {
    let agents = user_agents();
    assert_eq!(agents.len(), 10_000);
    let mut by_device: BTreeMap<&str, usize> = BTreeMap::new();
    for ua in &agents {
        let device = Device::from_user_agent(ua);
        *by_device.entry(device.name()).or_default() += 1;
        let lower = ua.to_ascii_lowercase();
        let known_bot = [
            "googlebot",
            "bingbot",
            "msnbot",
            "baiduspider",
            "yandexbot",
            "slurp",
            "archive.org_bot",
            "feedparser",
            "tt-rss",
            "ezooms",
        ];
        if known_bot.iter().any(|b| lower.contains(b)) || ua == "-" {
            assert_eq!(device, Device::Bot, "{ua}");
        } else if lower.contains("ipad") {
            assert_eq!(device, Device::Tablet, "{ua}");
        } else if lower.contains("iphone") {
            assert_eq!(device, Device::Mobile, "{ua}");
        } else if lower.contains("windows nt") && !["spider", "bot", "http"].iter().any(|m| lower.contains(m)) {
            assert_eq!(device, Device::Desktop, "{ua}");
        }
    }
    // The log is mostly desktop browsers and crawlers, with some phones and tablets.
    let count = |d: &str| by_device.get(d).copied().unwrap_or(0);
    assert!(count("desktop") > 5_000, "{by_device:?}");
    assert!(count("bot") > 1_500, "{by_device:?}");
    assert!(count("mobile") > 50, "{by_device:?}");
    assert!(count("tablet") > 5, "{by_device:?}");
}
