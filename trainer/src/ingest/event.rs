//! The behaviour event schema accepted by `POST /v1/events` (one JSON object per line) and
//! produced by the access-log importer, with line-by-line validation.

use prewarm_shared::classify::{ClassificationRules, Device, RequestClass};
use prewarm_shared::signals::UserHash;
use std::borrow::Cow;
use std::collections::HashMap;

use serde::Deserialize;

/// Longest accepted path, region name and User-Agent, in characters (a region name is ASCII):
/// longer values are rejected, not cut.
pub const MAX_PATH_LEN: usize = 2048;
pub use prewarm_shared::signals::MAX_REGION_LEN;
/// Longest accepted User-Agent, in characters.
pub const MAX_USER_AGENT_LEN: usize = 1024;
/// The accepted range of `time`: 2000-01-01 ..= 2100-01-01.
pub const TIME_RANGE: std::ops::RangeInclusive<u64> = 946_684_800..=4_102_444_800;

/// One line of `POST /v1/events`, as sent. Documented field by field in the README.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventLine<'a> {
    /// Unix seconds (number) or RFC 3339 UTC (`2026-11-28T14:00:00Z`).
    pub time: serde_json::Value,
    /// HMAC-SHA256(salt, user id) in hex: never a raw identifier.
    #[serde(borrow)]
    pub user: Cow<'a, str>,
    /// The region (`[A-Za-z0-9_-]{1,64}`).
    #[serde(borrow)]
    pub region: Cow<'a, str>,
    /// The request path (classified, then dropped; only whether it was `/robots.txt` is kept).
    #[serde(borrow)]
    pub path: Cow<'a, str>,
    /// The response's content type.
    #[serde(default, borrow)]
    pub content_type: Option<Cow<'a, str>>,
    /// The request's Accept header.
    #[serde(default, borrow)]
    pub accept: Option<Cow<'a, str>>,
    /// The User-Agent (classified into a device, then dropped).
    #[serde(default, borrow)]
    pub user_agent: Option<Cow<'a, str>>,
    /// Instead of a User-Agent: `desktop`, `mobile`, `tablet` or `bot`.
    #[serde(default, borrow)]
    pub device: Option<Cow<'a, str>>,
    /// The response status.
    #[serde(deserialize_with = "integer")]
    pub status: u16,
    /// Response body bytes.
    #[serde(deserialize_with = "integer")]
    pub bytes: u64,
    /// Time to the response, milliseconds.
    pub duration_ms: f64,
    /// The client's TCP round-trip time, milliseconds.
    #[serde(default)]
    pub rtt_ms: Option<f64>,
    /// The user's UTC offset; when absent, the region's configured offset is used.
    #[serde(default, deserialize_with = "optional_integer")]
    pub utc_offset_minutes: Option<i32>,
    /// Origin-measured costs, when the origin reports them.
    #[serde(default)]
    pub cpu_ms: Option<f64>,
    /// Origin-measured memory, MB·s.
    #[serde(default)]
    pub memory_mb_s: Option<f64>,
    /// Business value of the request (revenue, weight), used for priorities.
    #[serde(default)]
    pub value: Option<f64>,
}

/// An integer written as JSON allows it (`200` or `200.0`, as JavaScript may print it); a
/// fraction or a value out of the type's range is an error.
fn integer<'de, D: serde::Deserializer<'de>, T: TryFrom<i128>>(deserializer: D) -> Result<T, D::Error> {
    let number = serde_json::Number::deserialize(deserializer)?;
    let whole = match (number.as_i64(), number.as_u64(), number.as_f64()) {
        (Some(i), _, _) => Some(i128::from(i)),
        (_, Some(u), _) => Some(i128::from(u)),
        // Below 2^64 an f64 with no fraction is exact.
        (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 18_446_744_073_709_551_616.0 => Some(f as i128),
        _ => None,
    };
    whole
        .and_then(|w| T::try_from(w).ok())
        .ok_or_else(|| serde::de::Error::custom(format!("expected a whole number in range, found {number}")))
}

fn optional_integer<'de, D: serde::Deserializer<'de>, T: TryFrom<i128>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    #[derive(Deserialize)]
    struct Whole<T: TryFrom<i128>>(#[serde(deserialize_with = "integer")] T);
    Ok(Option::<Whole<T>>::deserialize(deserializer)?.map(|Whole(v)| v))
}

/// A validated event, classified with the same rules as the edge.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Unix seconds.
    pub time: u64,
    /// The user's salted hash.
    pub user: UserHash,
    /// The region.
    pub region: String,
    /// The request's route and content classes.
    pub class: RequestClass,
    /// The client's device class.
    pub device: Device,
    /// The response status.
    pub status: u16,
    /// Response bytes.
    pub bytes: u64,
    /// Time to the response, milliseconds.
    pub duration_ms: f32,
    /// The TCP round-trip time, if known.
    pub rtt_ms: Option<u32>,
    /// The user's UTC offset, if sent.
    pub utc_offset_minutes: Option<i32>,
    /// Origin-measured CPU, milliseconds.
    pub cpu_ms: Option<f32>,
    /// Origin-measured memory, MB·s.
    pub memory_mb_s: Option<f32>,
    /// Business value of the request.
    pub value: Option<f32>,
    /// The request was for `/robots.txt` (see [`is_robots_txt`]); the path itself is not kept.
    pub robots_txt: bool,
}

/// Whether a request path (query aside) is the site's `/robots.txt`, which crawlers read and
/// browsers never ask for.
pub fn is_robots_txt(path: &str) -> bool {
    path.split(['?', '#']).next().is_some_and(|p| p.eq_ignore_ascii_case("/robots.txt"))
}

/// Why one line was rejected; the message names the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[allow(missing_docs, reason = "a variant's fields are named in its message")]
pub enum EventError {
    #[error("not a JSON event: {0}")]
    /// The line is not JSON of this schema.
    Json(String),
    #[error("field `{field}`: {reason}")]
    /// A field is missing or out of range.
    Field { field: &'static str, reason: String },
}

fn field(field: &'static str, reason: impl Into<String>) -> EventError {
    EventError::Field { field, reason: reason.into() }
}

/// Seconds since the epoch from a number or an RFC 3339 UTC timestamp.
pub fn parse_time(value: &serde_json::Value) -> Result<u64, EventError> {
    match value {
        // A fraction is cut after the range check, so 4102444800.5 is out of range, not 2100.
        serde_json::Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64().filter(|f| (*TIME_RANGE.start() as f64..=*TIME_RANGE.end() as f64).contains(f)).map(|f| f as u64)
        }),
        serde_json::Value::String(s) => parse_rfc3339_utc(s),
        _ => None,
    }
    .filter(|t| TIME_RANGE.contains(t))
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
    // Digits only: `parse` alone would take "+1" for a month.
    let num = |r: std::ops::Range<usize>| {
        let digits = s.get(r)?;
        if digits.bytes().all(|b| b.is_ascii_digit()) { digits.parse::<i64>().ok() } else { None }
    };
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
        if !self.path.starts_with('/') || self.path.chars().count() > MAX_PATH_LEN {
            return Err(field("path", format!("must start with '/' and be at most {MAX_PATH_LEN} characters")));
        }
        if !(100..=599).contains(&self.status) {
            return Err(field("status", "must be an HTTP status between 100 and 599"));
        }
        if self.user_agent.as_ref().is_some_and(|ua| ua.chars().count() > MAX_USER_AGENT_LEN) {
            return Err(field("user_agent", format!("at most {MAX_USER_AGENT_LEN} characters")));
        }
        let device = match (&self.device, self.user_agent) {
            (Some(d), _) => Device::parse(d).ok_or_else(|| field("device", "one of desktop, mobile, tablet, bot"))?,
            (None, Some(ua)) => devices.device(ua),
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
            robots_txt: is_robots_txt(&self.path),
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
    fn a_request_for_robots_txt_is_flagged_and_no_other_is() {
        for (path, robots) in [
            ("/robots.txt", true),
            ("/ROBOTS.TXT?x=1", true),
            ("/robots.txt#a", true),
            ("/robots.txt.bak", false),
            ("/a/robots.txt", false),
        ] {
            assert_eq!(is_robots_txt(path), robots, "{path}");
        }
        let rules = ClassificationRules::default();
        let with_path = |path: &str| line("").replace(r#""path":"/watch/1""#, &format!(r#""path":"{path}""#));
        let e = parse_line(&with_path("/robots.txt"), &rules, &mut DeviceCache::default()).expect("valid");
        assert!(e.robots_txt);
        let e = parse_line(&line(""), &rules, &mut DeviceCache::default()).expect("valid");
        assert!(!e.robots_txt);
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
        // Signs are not digits (found by schemathesis' negative examples, #18).
        assert_eq!(parse_rfc3339_utc("2023-+1-14T22:13:20Z"), None);
        assert_eq!(parse_rfc3339_utc("+023-11-14T22:13:20Z"), None);
    }

    #[test]
    fn whole_numbers_may_be_written_as_floats_but_fractions_and_overflows_are_errors() {
        let rules = ClassificationRules::default();
        let with = |from: &str, to: &str| parse_line(&line("").replace(from, to), &rules, &mut DeviceCache::default());
        assert_eq!(with(r#""bytes":1000"#, r#""bytes":1000.0"#).map(|e| e.bytes), Ok(1000));
        assert_eq!(with(r#""status":200"#, r#""status":2e2"#).map(|e| e.status), Ok(200));
        assert!(matches!(with(r#""bytes":1000"#, r#""bytes":1000.5"#), Err(EventError::Json(_))));
        assert!(matches!(with(r#""status":200"#, r#""status":70000"#), Err(EventError::Json(_))));
        assert!(matches!(with(r#""bytes":1000"#, r#""bytes":-1"#), Err(EventError::Json(_))));
        let offset = parse_line(&line(r#","utc_offset_minutes":-60.0"#), &rules, &mut DeviceCache::default());
        assert_eq!(offset.map(|e| e.utc_offset_minutes), Ok(Some(-60)));
        let null = parse_line(&line(r#","utc_offset_minutes":null"#), &rules, &mut DeviceCache::default());
        assert_eq!(null.map(|e| e.utc_offset_minutes), Ok(None));
    }

    #[test]
    fn a_fractional_time_past_the_range_is_out_of_it() {
        let rules = ClassificationRules::default();
        let at = |t: &str| parse_line(&line("").replace("1700000000", t), &rules, &mut DeviceCache::default());
        assert!(matches!(at("4102444800.5"), Err(EventError::Field { field: "time", .. })));
        assert!(matches!(at("946684799.9"), Err(EventError::Field { field: "time", .. })));
        assert_eq!(at("1700000000.7").map(|e| e.time), Ok(1_700_000_000));
    }

    #[test]
    fn lengths_are_counted_in_characters_and_a_user_agent_is_checked_beside_a_device() {
        let rules = ClassificationRules::default();
        let wide = format!(r#","path":"/{}""#, "é".repeat(MAX_PATH_LEN - 1));
        let base = line("").replace(r#""path":"/watch/1","#, "");
        let with = |extra: &str| format!("{}{extra}}}", base.trim_end_matches('}'));
        assert!(parse_line(&with(&wide), &rules, &mut DeviceCache::default()).is_ok(), "2048 characters, 4095 bytes");
        let long_ua = line("").replace("Mozilla/5.0 (iPhone) Mobile", &"a".repeat(MAX_USER_AGENT_LEN + 1));
        let long_ua = format!("{}{}}}", long_ua.trim_end_matches('}'), r#","device":"mobile""#);
        assert!(matches!(
            parse_line(&long_ua, &rules, &mut DeviceCache::default()),
            Err(EventError::Field { field: "user_agent", .. })
        ));
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
