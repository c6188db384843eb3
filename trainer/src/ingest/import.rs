//! `prewarm import FILE...`: access logs (common or combined, plain or gzip) into the store.
//!
//! Logs have no user id: a user is HMAC(salt, client address + "\n" + User-Agent), a documented
//! approximation (users behind one NAT with one browser merge; one user on two networks splits).

use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::Path;
use std::time::Instant;

use prewarm_shared::classify::{ClassificationRules, Device};
use prewarm_shared::signals::UserHash;
use serde::Serialize;

use super::IngestReport;
use super::access_log;
use super::event::Event;
use crate::config::TrainerConfig;
use crate::store::{Store, StoreError};

/// Events per store transaction.
const BATCH: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no salt configured (PREWARM_SALT): log users cannot be hashed")]
    NoSalt,
}

/// What one import did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ImportSummary {
    pub files: usize,
    pub lines: usize,
    pub imported: usize,
    pub unparseable: usize,
    /// A sample of unparseable lines: `file:line: reason`.
    pub samples: Vec<String>,
    pub seconds: f64,
}

/// Turns one parsed log line into an event.
pub fn event_from_log(
    line: &access_log::AccessLine<'_>,
    salt: &[u8],
    config: &TrainerConfig,
    rules: &ClassificationRules,
) -> Event {
    let addr: Option<IpAddr> = line.client.parse().ok();
    let region = config.region_of(addr);
    let user_agent = line.user_agent.unwrap_or("");
    let mut key = Vec::with_capacity(line.client.len() + 1 + user_agent.len());
    key.extend_from_slice(line.client.as_bytes());
    key.push(b'\n');
    key.extend_from_slice(user_agent.as_bytes());
    Event {
        time: line.time,
        user: UserHash::derive(salt, &key),
        region: region.to_owned(),
        class: rules.classify(line.path, None, None),
        device: Device::from_user_agent(user_agent),
        status: line.status,
        bytes: line.bytes,
        duration_ms: 0.0,
        rtt_ms: None,
        utc_offset_minutes: Some(config.utc_offset_of(region)),
        cpu_ms: None,
        memory_mb_s: None,
        value: None,
    }
}

fn open(path: &Path) -> Result<Box<dyn BufRead>, ImportError> {
    let read_error = |source| ImportError::Read { path: path.display().to_string(), source };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let gz = reader.fill_buf().map_err(read_error)?.starts_with(&[0x1f, 0x8b]);
    Ok(if gz {
        Box::new(BufReader::with_capacity(1 << 20, flate2::read::MultiGzDecoder::new(reader)))
    } else {
        Box::new(reader)
    })
}

/// Imports files; `progress` is called with (lines so far, bytes read so far) now and then.
pub fn import_files(
    paths: &[impl AsRef<Path>],
    store: &mut Store,
    config: &TrainerConfig,
    rules: &ClassificationRules,
    mut progress: impl FnMut(usize),
) -> Result<ImportSummary, ImportError> {
    let salt = config.salt.as_deref().ok_or(ImportError::NoSalt)?.as_bytes().to_vec();
    let started = Instant::now();
    let mut summary = ImportSummary::default();
    let mut report = IngestReport::default();
    let mut batch = Vec::with_capacity(BATCH);
    for path in paths {
        let path = path.as_ref();
        summary.files += 1;
        let mut reader = open(path)?;
        let mut buf = Vec::with_capacity(1024);
        let mut number = 0;
        loop {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .map_err(|source| ImportError::Read { path: path.display().to_string(), source })?;
            if n == 0 {
                break;
            }
            number += 1;
            summary.lines += 1;
            let text = String::from_utf8_lossy(&buf);
            if text.trim().is_empty() {
                continue;
            }
            match access_log::parse(&text) {
                Ok(line) => batch.push(event_from_log(&line, &salt, config, rules)),
                Err(e) => {
                    report.reject(number, e.to_string());
                    if summary.samples.len() < 5 {
                        summary.samples.push(format!("{}:{number}: {e}", path.display()));
                    }
                }
            }
            if batch.len() == BATCH {
                summary.imported += store.insert_events(&batch)?;
                batch.clear();
                progress(summary.lines);
            }
        }
    }
    summary.imported += store.insert_events(&batch)?;
    summary.unparseable = report.rejected;
    summary.seconds = started.elapsed().as_secs_f64();
    progress(summary.lines);
    Ok(summary)
}
