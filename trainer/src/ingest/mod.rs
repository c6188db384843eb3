//! Taking behaviour data in: NDJSON events over HTTP and access-log files, validated line by
//! line. A bad line is reported with its number and reason; it never costs the good ones.

pub mod access_log;
pub mod event;
pub mod guard;
pub mod log_format;

use std::io::Read;

use prewarm_shared::classify::ClassificationRules;
use serde::Serialize;

use self::event::{DeviceCache, Event, parse_line};

/// How many rejected lines a reply lists in full.
pub const REPORTED_REJECTIONS: usize = 20;

/// One rejected line.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Rejection {
    /// 1-based line number in the body or file.
    pub line: usize,
    /// Why it was refused.
    pub reason: String,
}

/// The outcome of one batch, as the reply reports it.
#[derive(Debug, Default, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct IngestReport {
    /// Events stored.
    pub accepted: usize,
    /// Lines refused.
    pub rejected: usize,
    /// The first rejections (at most [`REPORTED_REJECTIONS`]).
    pub rejections: Vec<Rejection>,
}

impl IngestReport {
    /// Counts a refused line, keeping the first reasons.
    pub fn reject(&mut self, line: usize, reason: String) {
        self.rejected += 1;
        if self.rejections.len() < REPORTED_REJECTIONS {
            self.rejections.push(Rejection { line, reason });
        }
    }
}

/// Why a whole body could not be read (as opposed to single bad lines).
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs, reason = "a variant's fields are named in its message")]
pub enum BodyError {
    #[error("body is not valid gzip: {0}")]
    /// The body is not gzip.
    BadGzip(std::io::Error),
    #[error("body decompresses to more than {limit} bytes")]
    /// The body inflates past the limit.
    TooLarge { limit: usize },
}

/// Gunzips a body, refusing to inflate past `limit` (a small gzip can hide a huge body).
pub fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    let mut decoder = flate2::read::GzDecoder::new(body).take(limit as u64 + 1);
    decoder.read_to_end(&mut out).map_err(BodyError::BadGzip)?;
    if out.len() > limit {
        return Err(BodyError::TooLarge { limit });
    }
    Ok(out)
}

/// Parses an NDJSON body: every valid line becomes an event, every invalid one a rejection.
pub fn parse_ndjson(body: &[u8], rules: &ClassificationRules) -> (Vec<Event>, IngestReport) {
    let mut events = Vec::new();
    let mut report = IngestReport::default();
    let mut devices = DeviceCache::default();
    for (i, raw) in body.split(|b| *b == b'\n').enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let line = i + 1;
        match std::str::from_utf8(raw) {
            Err(_) => report.reject(line, "line is not valid UTF-8".into()),
            Ok(text) => match parse_line(text, rules, &mut devices) {
                Ok(event) => events.push(event),
                Err(e) => report.reject(line, e.to_string()),
            },
        }
    }
    report.accepted = events.len();
    (events, report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_lines_survive_bad_ones_and_rejections_are_numbered() {
        let user = "ab".repeat(32);
        let good = format!(
            r#"{{"time":1700000000,"user":"{user}","region":"eu","path":"/","device":"desktop","status":200,"bytes":1,"duration_ms":1}}"#
        );
        let body = format!("{good}\n\n{{broken\n{good}\r\n\u{0}\n");
        let (events, report) = parse_ndjson(body.as_bytes(), &ClassificationRules::default());
        assert_eq!(events.len(), 2);
        assert_eq!((report.accepted, report.rejected), (2, 2));
        assert_eq!(report.rejections.iter().map(|r| r.line).collect::<Vec<_>>(), vec![3, 5]);
    }

    #[test]
    fn gzip_bombs_and_garbage_are_refused() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![b'a'; 1_000_000]).expect("write");
        let bomb = enc.finish().expect("finish");
        assert!(matches!(gunzip(&bomb, 1000), Err(BodyError::TooLarge { limit: 1000 })));
        assert_eq!(gunzip(&bomb, 2_000_000).expect("fits").len(), 1_000_000);
        assert!(matches!(gunzip(b"not gzip at all", 1000), Err(BodyError::BadGzip(_))));
    }
}
