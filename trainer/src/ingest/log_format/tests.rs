use super::*;
use crate::ingest::access_log;

const COMBINED: &str = r#"%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i""#;
const LINE: &str = r#"83.149.9.216 - - [17/May/2015:10:05:03 +0000] "GET /images/kibana-search.png HTTP/1.1" 200 203023 "http://semicomplete.com/" "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_1) Chrome/32.0""#;

#[test]
fn the_combined_format_parses_like_the_built_in_parser() {
    let format = LogFormat::compile(COMBINED).expect("compiles");
    assert_eq!(format.parse(LINE), access_log::parse(LINE));
}

#[test]
fn apache_response_times_take_their_unit_from_the_directive() {
    let base = r#"1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 200 512 "-" "Mozilla/5.0""#;
    let cases = [
        ("%D", "23456", ResponseTimeUnit::Microseconds, 23.456),
        ("%T", "2", ResponseTimeUnit::Seconds, 2_000.0),
        ("%{ms}T", "15", ResponseTimeUnit::Milliseconds, 15.0),
        ("%{us}T", "1500", ResponseTimeUnit::Microseconds, 1.5),
    ];
    for (directive, value, unit, millis) in cases {
        let format = LogFormat::compile(&format!("{COMBINED} {directive}")).expect(directive);
        let text = format!("{base} {value}");
        let line = format.parse(&text).expect(directive);
        assert_eq!((line.response_time, line.response_time_unit), (Some(value), Some(unit)), "{directive}");
        assert_eq!(unit.millis(value), Some(millis));
    }
    // A response time first, before the host (a common custom layout), and a `-`.
    let format = LogFormat::compile(r#"%D %h %l %u %t "%r" %>s %b"#).expect("compiles");
    let line = format.parse(r#"812 10.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /a.gif HTTP/1.0" 304 -"#);
    let line = line.expect("parses");
    assert_eq!((line.client, line.time, line.bytes, line.response_time), ("10.0.0.1", 971_211_336, 0, Some("812")));
    let dash = format.parse(r#"- 10.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /a.gif HTTP/1.0" 304 -"#);
    assert_eq!(dash.expect("parses").response_time, None);
}

#[test]
fn nginx_formats_with_request_time_and_iso_times() {
    let format = LogFormat::compile(
        r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" $request_time "$upstream_addr""#,
    )
    .expect("compiles");
    let line = format
        .parse(r#"10.1.2.3 - - [17/May/2015:10:05:03 +0000] "POST /api/cart HTTP/2.0" 201 87 "-" "curl/8.0" 0.120 "10.0.0.9:8080""#)
        .expect("parses");
    assert_eq!((line.client, line.time, line.method, line.path), ("10.1.2.3", 1_431_857_103, "POST", "/api/cart"));
    assert_eq!((line.status, line.bytes, line.user_agent), (201, 87, Some("curl/8.0")));
    assert_eq!(line.response_time_unit.and_then(|u| u.millis(line.response_time?)), Some(120.0));

    let iso = LogFormat::compile(r#"$time_iso8601 ${remote_addr} $request_method $request_uri $status"#).expect("ok");
    let line = iso.parse("2015-05-17T10:05:03+00:00 10.1.2.3 GET /watch/1?t=3 200").expect("parses");
    assert_eq!((line.time, line.method, line.path, line.bytes), (1_431_857_103, "GET", "/watch/1?t=3", 0));
}

#[test]
fn quoted_fields_keep_escaped_quotes() {
    let format = LogFormat::compile(COMBINED).expect("compiles");
    let line = r#"1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 200 5 "-" "Mozilla/5.0 \"quoted\" (X11)""#;
    assert_eq!(format.parse(line).expect("parses").user_agent, Some(r#"Mozilla/5.0 \"quoted\" (X11)"#));
}

#[test]
fn formats_that_cannot_work_are_refused_with_the_reason() {
    assert!(matches!(LogFormat::compile("%h %t %Z"), Err(FormatError::Unknown(d)) if d == "%Z"));
    assert!(matches!(LogFormat::compile("%h %t \"%r\" %s%b"), Err(FormatError::Adjacent(d)) if d == "%b"));
    assert!(matches!(LogFormat::compile("%h %t %s"), Err(FormatError::Missing("request path", _))));
    assert!(matches!(LogFormat::compile("%t \"%r\" %s"), Err(FormatError::Missing("client address", _))));
    assert!(matches!(LogFormat::compile("%h %{%d/%b}t \"%r\" %s"), Err(FormatError::Unsupported(..))));
    assert_eq!(LogFormat::compile("%h %t \"%r\" %s 100%%").map(|_| ()), Ok(()));
}

#[test]
fn lines_that_do_not_fit_say_why_and_never_panic() {
    let format = LogFormat::compile(&format!("{COMBINED} %D")).expect("compiles");
    assert_eq!(format.parse(""), Err(LineError::Mismatch));
    assert_eq!(format.parse("1.2.3.4 - - [17/May/2015:10:05:03 +0000] GET"), Err(LineError::Mismatch));
    assert_eq!(
        format.parse(r#"1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 999 1 "-" "ua" 5"#),
        Err(LineError::BadStatus)
    );
    // Every prefix of a valid line, cut at any character, is an answer, not a panic.
    let line = r#"1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET /é HTTP/1.1" 200 5 "-" "ü \"x\"" 7"#;
    for (i, _) in line.char_indices() {
        let _ = format.parse(&line[..i]);
    }
    assert!(format.parse(line).is_ok());
}
