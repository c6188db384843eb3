//! The behaviour event schema accepted by `POST /v1/events` (one JSON object per line) and
//! produced by the access-log importer, with line-by-line validation.

use prewarm_shared::classify::{ClassificationRules, Device, RequestClass};
use prewarm_shared::signals::UserHash;
use std::borrow::Cow;
use std::collections::HashMap;

use serde::Deserialize;

/// Longest accepted path, region name and User-Agent: longer values are rejected, not cut.
pub const MAX_PATH_LEN: usize = 2048;
pub use prewarm_shared::signals::MAX_REGION_LEN;
pub const MAX_USER_AGENT_LEN: usize = 1024;

/// One line of `POST /v1/events`, as sent. Documented field by field in the README.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventLine<'a> {
    /// Unix seconds (number) or RFC 3339 UTC (`2026-11-28T14:00:00Z`).
    pub time: serde_json::Value,
    /// HMAC-SHA256(salt, user id) in hex: never a raw identifier.
    #[serde(borrow)]
    pub user: Cow<'a, str>,
    #[serde(borrow)]
    pub region: Cow<'a, str>,
    #[serde(borrow)]
    pub path: Cow<'a, str>,
    #[serde(default, borrow)]
    pub content_type: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub accept: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub user_agent: Option<Cow<'a, str>>,
    /// Instead of a User-Agent: `desktop`, `mobile`, `tablet` or `bot`.
    #[serde(default, borrow)]
    pub device: Option<Cow<'a, str>>,
    pub status: u16,
    pub bytes: u64,
    pub duration_ms: f64,
    #[serde(default)]
    pub rtt_ms: Option<f64>,
    /// The user's UTC offset; when absent, the region's configured offset is used.
    #[serde(default)]
    pub utc_offset_minutes: Option<i32>,
    /// Origin-measured costs, when the origin reports them.
    #[serde(default)]
    pub cpu_ms: Option<f64>,
    #[serde(default)]
    pub memory_mb_s: Option<f64>,
    /// Business value of the request (revenue, weight), used for priorities.
    #[serde(default)]
    pub value: Option<f64>,
}

/// A validated event, classified with the same rules as the edge.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub time: u64,
    pub user: UserHash,
    pub region: String,
    pub class: RequestClass,
    pub device: Device,
    pub status: u16,
    pub bytes: u64,
    pub duration_ms: f32,
    pub rtt_ms: Option<u32>,
    pub utc_offset_minutes: Option<i32>,
    pub cpu_ms: Option<f32>,
    pub memory_mb_s: Option<f32>,
    pub value: Option<f32>,
}

/// Why one line was rejected; the message names the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EventError {
    #[error("not a JSON event: {0}")]
    Json(String),
    #[error("field `{field}`: {reason}")]
    Field { field: &'static str, reason: String },
}

fn field(field: &'static str, reason: impl Into<String>) -> EventError {
    EventError::Field { field, reason: reason.into() }
}

/// Seconds since the epoch from a number or an RFC 3339 UTC timestamp.
pub fn parse_time(value: &serde_json::Value) -> Result<u64, EventError> {
    match value {
        serde_json::Value::Number(n) => {
            n.as_u64().or_else(|| n.as_f64().filter(|f| *f >= 0.0 && f.is_finite()).map(|f| f as u64))
        }
        serde_json::Value::String(s) => parse_rfc3339_utc(s),
        _ => None,
    }
    .filter(|t| (946_684_800..=4_102_444_800).contains(t)) // 2000-01-01 ..= 2100-01-01
    .ok_or_else(|| field("time", "expected Unix seconds or RFC 3339 UTC between 2000 and 2100"))
}

/// `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)`.
pub fn parse_rfc3339_utc(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        rest = &fraction[digits..];
    }
    // Byte-wise: the input is arbitrary text, and slicing a `str` inside a multi-byte
    // character panics.
    let offset_secs = match rest.as_bytes() {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let two = |a: u8, b: u8| {
                (a.is_ascii_digit() && b.is_ascii_digit()).then(|| i64::from((a - b'0') * 10 + (b - b'0')))
            };
            let sign = if *sign == b'-' { -1 } else { 1 };
            sign * (two(*h1, *h2)? * 3600 + two(*m1, *m2)? * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    u64::try_from(secs).ok()
}

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn finite_non_negative(name: &'static str, v: f64) -> Result<f32, EventError> {
    if v.is_finite() && v >= 0.0 { Ok(v as f32) } else { Err(field(name, "must be a finite number >= 0")) }
}

/// User-Agent → device, remembered within one batch: classifying an agent scans it for dozens of
/// markers, and a batch repeats few agents many times.
#[derive(Debug, Default)]
pub struct DeviceCache<'a> {
    known: HashMap<Cow<'a, str>, Device>,
}

impl<'a> DeviceCache<'a> {
    fn device(&mut self, user_agent: Cow<'a, str>) -> Device {
        if let Some(device) = self.known.get(&user_agent) {
            return *device;
        }
        let device = Device::from_user_agent(&user_agent);
        if self.known.len() < 4096 {
            self.known.insert(user_agent, device);
        }
        device
    }
}

impl<'a> EventLine<'a> {
    /// Validates and classifies one line.
    pub fn validate(self, rules: &ClassificationRules, devices: &mut DeviceCache<'a>) -> Result<Event, EventError> {
        let time = parse_time(&self.time)?;
        let user = UserHash::from_hex(&self.user)
            .ok_or_else(|| field("user", "expected 64 hex digits (HMAC-SHA256 of the user id), never a raw id"))?;
        if !prewarm_shared::signals::is_region_name(&self.region) {
            return Err(field("region", format!("1 to {MAX_REGION_LEN} characters of [A-Za-z0-9_-]")));
        }
        if !self.path.starts_with('/') || self.path.len() > MAX_PATH_LEN {
            return Err(field("path", format!("must start with '/' and be at most {MAX_PATH_LEN} bytes")));
        }
        if !(100..=599).contains(&self.status) {
            return Err(field("status", "must be an HTTP status between 100 and 599"));
        }
        let device = match (&self.device, self.user_agent) {
            (Some(d), _) => Device::parse(d).ok_or_else(|| field("device", "one of desktop, mobile, tablet, bot"))?,
            (None, Some(ua)) if ua.len() <= MAX_USER_AGENT_LEN => devices.device(ua),
            (None, Some(_)) => return Err(field("user_agent", format!("at most {MAX_USER_AGENT_LEN} bytes"))),
            (None, None) => return Err(field("user_agent", "either `user_agent` or `device` is required")),
        };
        if let Some(offset) = self.utc_offset_minutes
            && !(-14 * 60..=14 * 60).contains(&offset)
        {
            return Err(field("utc_offset_minutes", "must be between -840 and 840"));
        }
        let optional = |name, v: Option<f64>| v.map(|v| finite_non_negative(name, v)).transpose();
        Ok(Event {
            time,
            user,
            class: rules.classify(&self.path, self.accept.as_deref(), self.content_type.as_deref()),
            region: self.region.into_owned(),
            device,
            status: self.status,
            bytes: self.bytes,
            duration_ms: finite_non_negative("duration_ms", self.duration_ms)?,
            rtt_ms: optional("rtt_ms", self.rtt_ms)?.map(|v| v as u32),
            utc_offset_minutes: self.utc_offset_minutes,
            cpu_ms: optional("cpu_ms", self.cpu_ms)?,
            memory_mb_s: optional("memory_mb_s", self.memory_mb_s)?,
            value: optional("value", self.value)?,
        })
    }
}

/// Parses and validates one NDJSON line.
pub fn parse_line<'a>(
    line: &'a str,
    rules: &ClassificationRules,
    devices: &mut DeviceCache<'a>,
) -> Result<Event, EventError> {
    let raw: EventLine<'a> = serde_json::from_str(line).map_err(|e| EventError::Json(e.to_string()))?;
    raw.validate(rules, devices)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prewarm_shared::classify::ContentClass;

    const USER: &str = "5f1d2c0e8a4b6f7e9d0c1b2a3f4e5d6c7b8a9f0e1d2c3b4a5f6e7d8c9b0a1f2e";

    fn line(overrides: &str) -> String {
        let base = format!(
            r#""time":1700000000,"user":"{USER}","region":"eu","path":"/watch/1","content_type":"video/mp4","user_agent":"Mozilla/5.0 (iPhone) Mobile","status":200,"bytes":1000,"duration_ms":12.5"#
        );
        format!("{{{base}{overrides}}}")
    }

    #[test]
    fn a_valid_line_is_classified_like_the_edge_would() {
        let e = parse_line(&line(""), &ClassificationRules::default(), &mut DeviceCache::default()).expect("valid");
        assert_eq!(e.device, Device::Mobile);
        assert_eq!(e.class.content, ContentClass::Video);
        assert_eq!(e.time, 1_700_000_000);
    }

    #[test]
    fn each_bad_field_is_named() {
        let rules = ClassificationRules::default();
        let cases = [
            (r#","rtt_ms":-1"#, "rtt_ms"),
            (r#","device":"toaster""#, "device"),
            (r#","utc_offset_minutes":9999"#, "utc_offset_minutes"),
        ];
        for (extra, name) in cases {
            match parse_line(&line(extra), &rules, &mut DeviceCache::default()) {
                Err(EventError::Field { field, .. }) => assert_eq!(field, name),
                other => panic!("{extra}: {other:?}"),
            }
        }
        let bad_user = line("").replace(USER, "alice@example.com");
        assert!(matches!(
            parse_line(&bad_user, &rules, &mut DeviceCache::default()),
            Err(EventError::Field { field: "user", .. })
        ));
        let bad_time = line("").replace("1700000000", "\"yesterday\"");
        assert!(matches!(
            parse_line(&bad_time, &rules, &mut DeviceCache::default()),
            Err(EventError::Field { field: "time", .. })
        ));
        assert!(matches!(parse_line("{not json", &rules, &mut DeviceCache::default()), Err(EventError::Json(_))));
        assert!(matches!(
            parse_line(&line(r#","extra":1"#), &rules, &mut DeviceCache::default()),
            Err(EventError::Json(_))
        ));
    }

    #[test]
    fn rfc3339_times_parse_with_offsets() {
        assert_eq!(parse_rfc3339_utc("2023-11-14T22:13:20Z"), Some(1_700_000_000));
        assert_eq!(parse_rfc3339_utc("2023-11-14T23:13:20.123+01:00"), Some(1_700_000_000));
        assert_eq!(parse_rfc3339_utc("2023-13-14T22:13:20Z"), None);
        assert_eq!(parse_rfc3339_utc("yesterday"), None);
    }

    #[test]
    fn a_multi_byte_character_in_the_offset_is_an_error_not_a_panic() {
        for bad in
            ["2023-11-14T22:13:20+1€0", "2023-11-14T22:13:20€:00", "2023-11-14T22:13:20+0€", "2023-11-14T22:13:2€Z"]
        {
            assert_eq!(parse_rfc3339_utc(bad), None, "{bad}");
        }
        let rules = ClassificationRules::default();
        let line = line("").replace("1700000000", "\"2023-11-14T22:13:20+1€0\"");
        assert!(matches!(
            parse_line(&line, &rules, &mut DeviceCache::default()),
            Err(EventError::Field { field: "time", .. })
        ));
    }
}
