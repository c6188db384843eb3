//! Apache/Nginx access logs in the common and combined formats.
//!
//! `IP ident user [10/Oct/2000:13:55:36 -0700] "GET /path HTTP/1.1" 200 2326 "referrer" "agent"`;
//! the common format stops after the byte count. A response time appended after the
//! User-Agent (Apache `%D` microseconds, `%T`/`%{ms}T`, nginx `$request_time` seconds) is read
//! too; [`ResponseTimeUnit`] says how to read it. Parsing borrows from the line and never
//! allocates; a line that does not fit is an error with a reason, never a panic.

use super::event::days_from_civil;

/// One parsed log line, borrowing from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLine<'a> {
    /// The client address (the visitor's key, hashed at import).
    pub client: &'a str,
    /// Unix seconds.
    pub time: u64,
    /// The request method.
    pub method: &'a str,
    /// The request path (query included).
    pub path: &'a str,
    /// The response status.
    pub status: u16,
    /// `-` (no body) is 0.
    pub bytes: u64,
    /// The Referer, if logged.
    pub referrer: Option<&'a str>,
    /// The User-Agent, if logged.
    pub user_agent: Option<&'a str>,
    /// The first field after the User-Agent, when it is a number: a response time in the
    /// unit the log's format says ([`ResponseTimeUnit::millis`]).
    pub response_time: Option<&'a str>,
    /// The response time's unit when the log's format names it (`%D`, `$request_time`);
    /// otherwise `response_time_unit` in the configuration says.
    pub response_time_unit: Option<ResponseTimeUnit>,
}

/// How the response time appended to a log line is written (`response_time_unit` in the
/// configuration).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseTimeUnit {
    /// An integer is Apache's `%D` (microseconds), a decimal nginx's `$request_time` (seconds).
    #[default]
    Auto,
    /// The log's numbers are microseconds.
    Microseconds,
    /// …milliseconds.
    Milliseconds,
    /// …seconds.
    Seconds,
}

impl ResponseTimeUnit {
    /// The response time in milliseconds, or `None` when the field is not a finite, non-negative
    /// number.
    pub fn millis(self, field: &str) -> Option<f32> {
        let value: f64 = field.parse().ok().filter(|v: &f64| v.is_finite() && *v >= 0.0)?;
        let ms = match self {
            ResponseTimeUnit::Auto if field.contains('.') => value * 1_000.0,
            ResponseTimeUnit::Auto | ResponseTimeUnit::Microseconds => value / 1_000.0,
            ResponseTimeUnit::Milliseconds => value,
            ResponseTimeUnit::Seconds => value * 1_000.0,
        };
        Some(ms as f32)
    }
}

/// Why a line was not understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("no client address")]
    /// No client address.
    NoClient,
    #[error("no [timestamp]")]
    /// No timestamp.
    NoTimestamp,
    #[error("timestamp is not dd/Mon/yyyy:HH:MM:SS ±zzzz")]
    /// A malformed timestamp.
    BadTimestamp,
    #[error("no quoted request line")]
    /// No request line.
    NoRequest,
    #[error("request line is not `METHOD /path PROTOCOL`")]
    /// A malformed request line.
    BadRequest,
    #[error("status is not a number between 100 and 599")]
    /// A bad status.
    BadStatus,
    #[error("byte count is neither a number nor '-'")]
    /// A bad byte count.
    BadBytes,
    #[error("the line does not match the configured log_format")]
    /// Not the configured format.
    Mismatch,
}

/// Splits off a double-quoted field (backslash escapes allowed inside).
fn quoted(s: &str) -> Option<(&str, &str)> {
    let s = s.strip_prefix('"')?;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some((&s[..i], &s[i + 1..])),
            _ => i += 1,
        }
    }
    None
}

fn month(name: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    MONTHS.iter().position(|m| *m == name).map(|i| i as i64 + 1)
}

/// `10/Oct/2000:13:55:36 -0700` → Unix seconds.
pub fn parse_clf_time(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 26 || b[2] != b'/' || b[6] != b'/' || b[11] != b':' || b[20] != b' ' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok()).flatten()
    };
    let (day, mon, year) = (num(0..2)?, month(s.get(3..6)?)?, num(7..11)?);
    let (hour, minute, second) = (num(12..14)?, num(15..17)?, num(18..20)?);
    let sign = match b[21] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let offset = sign * (num(22..24)? * 3600 + num(24..26)? * 60);
    if !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    u64::try_from(days_from_civil(year, mon, day) * 86_400 + hour * 3600 + minute * 60 + second - offset).ok()
}

/// Parses one line of the common or combined format.
pub fn parse(line: &str) -> Result<AccessLine<'_>, LineError> {
    let line = line.trim_end_matches(['\r', '\n']);
    let (client, rest) = line.split_once(' ').ok_or(LineError::NoClient)?;
    if client.is_empty() {
        return Err(LineError::NoClient);
    }
    let open = rest.find('[').ok_or(LineError::NoTimestamp)?;
    let close = rest[open..].find(']').ok_or(LineError::NoTimestamp)? + open;
    let time = parse_clf_time(&rest[open + 1..close]).ok_or(LineError::BadTimestamp)?;
    let rest = rest[close + 1..].trim_start();
    let (request, rest) = quoted(rest).ok_or(LineError::NoRequest)?;
    let mut parts = request.split(' ');
    let (method, path) = match (parts.next(), parts.next()) {
        (Some(m), Some(p)) if !m.is_empty() && p.starts_with('/') => (m, p),
        _ => return Err(LineError::BadRequest),
    };
    let mut fields = rest.trim_start().splitn(3, ' ');
    let status: u16 = fields.next().and_then(|s| s.parse().ok()).ok_or(LineError::BadStatus)?;
    if !(100..=599).contains(&status) {
        return Err(LineError::BadStatus);
    }
    let bytes = match fields.next() {
        Some("-") => 0,
        Some(b) => b.parse().map_err(|_| LineError::BadBytes)?,
        None => return Err(LineError::BadBytes),
    };
    let rest = fields.next().unwrap_or("").trim_start();
    let (referrer, user_agent, after) = match quoted(rest) {
        Some((referrer, rest)) => match quoted(rest.trim_start()) {
            Some((ua, after)) => (Some(referrer), Some(ua), after),
            None => (Some(referrer), None, ""),
        },
        None => (None, None, ""),
    };
    let response_time = after
        .split_ascii_whitespace()
        .next()
        .filter(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit() || b == b'.'));
    Ok(AccessLine {
        client,
        time,
        method,
        path,
        status,
        bytes,
        referrer,
        user_agent,
        response_time,
        response_time_unit: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combined_line() {
        let l = r#"83.149.9.216 - - [17/May/2015:10:05:03 +0000] "GET /presentations/logstash-monitorama-2013/images/kibana-search.png HTTP/1.1" 200 203023 "http://semicomplete.com/presentations/logstash-monitorama-2013/" "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_1) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/32.0.1700.77 Safari/537.36""#;
        let p = parse(l).expect("parses");
        assert_eq!(p.client, "83.149.9.216");
        assert_eq!(p.time, 1_431_857_103);
        assert_eq!(p.path, "/presentations/logstash-monitorama-2013/images/kibana-search.png");
        assert_eq!((p.status, p.bytes), (200, 203_023));
        assert!(p.user_agent.is_some_and(|ua| ua.starts_with("Mozilla/5.0 (Macintosh")));
    }

    #[test]
    fn common_line_dash_bytes_and_offsets() {
        let p = parse(r#"10.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /a.gif HTTP/1.0" 304 -"#).expect("parses");
        assert_eq!(p.time, 971_211_336);
        assert_eq!(p.bytes, 0);
        assert_eq!(p.user_agent, None);
    }

    #[test]
    fn appended_response_times_in_their_units() {
        let base = r#"1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 200 512 "-" "Mozilla/5.0""#;
        let micros = format!("{base} 23456");
        let p = parse(&micros).expect("parses");
        assert_eq!(p.response_time, Some("23456"));
        assert_eq!(ResponseTimeUnit::Auto.millis("23456"), Some(23.456));
        // nginx $request_time: seconds with a decimal point.
        let nginx = format!("{base} 0.120 \"upstream\"");
        assert_eq!(parse(&nginx).expect("parses").response_time, Some("0.120"));
        assert_eq!(ResponseTimeUnit::Auto.millis("0.120"), Some(120.0));
        assert_eq!(ResponseTimeUnit::Seconds.millis("2"), Some(2_000.0));
        assert_eq!(ResponseTimeUnit::Milliseconds.millis("15"), Some(15.0));
        assert_eq!(parse(base).expect("parses").response_time, None);
        assert_eq!(parse(&format!("{base} -")).expect("parses").response_time, None);
        assert_eq!(ResponseTimeUnit::Auto.millis("1.2.3"), None);
    }

    #[test]
    fn bad_lines_say_why() {
        assert_eq!(parse(""), Err(LineError::NoClient));
        assert_eq!(parse("1.2.3.4 - - 17/May/2015"), Err(LineError::NoTimestamp));
        assert_eq!(
            parse(r#"1.2.3.4 - - [17/Foo/2015:10:05:03 +0000] "GET / HTTP/1.1" 200 1"#),
            Err(LineError::BadTimestamp)
        );
        assert_eq!(parse(r#"1.2.3.4 - - [17/May/2015:10:05:03 +0000] "\x16\x03" 400 1"#), Err(LineError::BadRequest));
        assert_eq!(
            parse(r#"1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" abc 1"#),
            Err(LineError::BadStatus)
        );
        assert_eq!(
            parse(r#"1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 200 x"#),
            Err(LineError::BadBytes)
        );
        assert_eq!(parse("1.2.3.4 - - [17/May/2015:10:05:03 +0000] \"GET / HTTP/1.1"), Err(LineError::NoRequest));
    }
}
