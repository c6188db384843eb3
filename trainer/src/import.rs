//! `prewarm import FILE...`: access logs (common or combined) or NDJSON events, plain or gzip,
//! into the store.
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

use crate::config::TrainerConfig;
use crate::ingest::event::Event;
use crate::ingest::{IngestReport, access_log};
use crate::store::{EventStore, StoreError};

/// Events per store transaction.
const BATCH: usize = 10_000;

#[derive(Debug, thiserror::Error)]
/// Why an import stopped.
#[allow(missing_docs, reason = "a variant's fields are named in its message")]
pub enum ImportError {
    #[error("cannot read {path}: {source}")]
    /// A file could not be read.
    Read { path: String, source: std::io::Error },
    #[error(transparent)]
    /// The store refused the events.
    Store(#[from] StoreError),
    #[error("no salt configured (PREWARM_SALT): log users cannot be hashed")]
    /// Users cannot be hashed without a salt.
    NoSalt,
    #[error(transparent)]
    /// The configured `log_format` does not compile.
    Format(#[from] crate::ingest::log_format::FormatError),
}

/// What one import did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ImportSummary {
    /// Files read.
    pub files: usize,
    /// Lines read.
    pub lines: usize,
    /// Events stored.
    pub imported: usize,
    /// Lines that did not parse (skipped, counted).
    pub unparseable: usize,
    /// A sample of unparseable lines: `file:line: reason`.
    pub samples: Vec<String>,
    /// Wall-clock seconds the import took.
    pub seconds: f64,
}

/// Client address + User-Agent → (user hash, device, region). Logs repeat the same visitors
/// thousands of times: hashing and classifying each pair once is most of the import's speed.
#[derive(Debug, Default)]
pub struct VisitorCache {
    known: std::collections::HashMap<Vec<u8>, (UserHash, Device, usize)>,
    /// `client \n user agent`, rebuilt in place for each line: the key that is hashed.
    key: Vec<u8>,
}

/// Bounds the cache's memory on logs with millions of distinct visitors.
const VISITOR_CACHE_LIMIT: usize = 200_000;

impl VisitorCache {
    fn lookup(
        &mut self,
        client: &str,
        user_agent: &str,
        salt: &[u8],
        config: &TrainerConfig,
    ) -> (UserHash, Device, usize) {
        self.key.clear();
        self.key.extend_from_slice(client.as_bytes());
        self.key.push(b'\n');
        self.key.extend_from_slice(user_agent.as_bytes());
        if let Some(hit) = self.known.get(self.key.as_slice()) {
            return *hit;
        }
        let addr: Option<IpAddr> = client.parse().ok();
        let region = config.region_of(addr);
        let region_index = config.regions.iter().position(|r| r.name == region).unwrap_or(usize::MAX);
        let value = (UserHash::derive(salt, &self.key), Device::from_user_agent(user_agent), region_index);
        if self.known.len() >= VISITOR_CACHE_LIMIT {
            self.known.clear();
        }
        self.known.insert(self.key.clone(), value);
        value
    }
}

/// Turns one parsed log line into an event.
pub fn event_from_log(
    line: &access_log::AccessLine<'_>,
    salt: &[u8],
    config: &TrainerConfig,
    rules: &ClassificationRules,
    cache: &mut VisitorCache,
) -> Event {
    let user_agent = line.user_agent.unwrap_or("");
    let (user, device, region_index) = cache.lookup(line.client, user_agent, salt, config);
    let region = config.regions.get(region_index).map_or(config.default_region.as_str(), |r| r.name.as_str());
    Event {
        time: line.time,
        user,
        region: region.to_owned(),
        class: rules.classify(line.path, None, None),
        device,
        status: line.status,
        bytes: line.bytes,
        duration_ms: line
            .response_time
            .and_then(|t| line.response_time_unit.unwrap_or(config.response_time_unit).millis(t))
            .unwrap_or(0.0),
        rtt_ms: None,
        utc_offset_minutes: Some(config.utc_offset_of(region)),
        cpu_ms: None,
        memory_mb_s: None,
        value: None,
        robots_txt: crate::ingest::event::is_robots_txt(line.path),
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

/// Imports files; `progress` is called with the lines read so far, now and then.
///
/// Two threads: one reads, parses, hashes and classifies; this one writes batches to the
/// store. SQLite inserts and parsing cost about the same per line, so the pipeline nearly
/// doubles the rate of doing both in turn.
pub fn import_files(
    paths: &[impl AsRef<Path> + Sync],
    store: &mut dyn EventStore,
    config: &TrainerConfig,
    rules: &ClassificationRules,
    mut progress: impl FnMut(usize),
) -> Result<ImportSummary, ImportError> {
    let salt = config.salt.as_ref().ok_or(ImportError::NoSalt)?.as_bytes().to_vec();
    let started = Instant::now();
    let (batches, received) = std::sync::mpsc::sync_channel::<(Vec<Event>, usize)>(4);
    std::thread::scope(|scope| {
        let parser = scope.spawn(move || parse_files(paths, &salt, config, rules, &batches));
        let mut imported = 0;
        let mut store_error = None;
        for (batch, lines) in received {
            // After a store error, keep draining so the parser finishes; report the error.
            if store_error.is_none() {
                match store.insert_batch(None, &batch) {
                    Ok(n) => imported += n,
                    Err(e) => store_error = Some(e),
                }
            }
            progress(lines);
        }
        let mut summary = parser.join().map_err(|_| ImportError::Read {
            path: "(parser thread)".into(),
            source: std::io::Error::other("the parser thread panicked"),
        })??;
        if let Some(e) = store_error {
            return Err(e.into());
        }
        summary.imported = imported;
        summary.seconds = started.elapsed().as_secs_f64();
        Ok(summary)
    })
}

/// The parsing half of [`import_files`]: sends batches of events with the line count so far.
fn parse_files(
    paths: &[impl AsRef<Path>],
    salt: &[u8],
    config: &TrainerConfig,
    rules: &ClassificationRules,
    batches: &std::sync::mpsc::SyncSender<(Vec<Event>, usize)>,
) -> Result<ImportSummary, ImportError> {
    let mut summary = ImportSummary::default();
    let mut report = IngestReport::default();
    let format = config.log_format.as_deref().map(crate::ingest::log_format::LogFormat::compile).transpose()?;
    let mut batch = Vec::with_capacity(BATCH);
    let mut cache = VisitorCache::default();
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
            let text = match std::str::from_utf8(&buf) {
                Ok(text) => std::borrow::Cow::Borrowed(text),
                Err(_) => String::from_utf8_lossy(&buf),
            };
            if text.trim().is_empty() {
                continue;
            }
            // NDJSON events (the /v1/events schema) or an access log, told apart by the line.
            let parsed = if text.trim_start().starts_with('{') {
                crate::ingest::event::parse_line(&text, rules, &mut crate::ingest::event::DeviceCache::default())
                    .map_err(|e| e.to_string())
            } else {
                match &format {
                    Some(format) => format.parse(&text),
                    None => access_log::parse(&text),
                }
                .map(|line| event_from_log(&line, salt, config, rules, &mut cache))
                .map_err(|e| e.to_string())
            };
            match parsed {
                Ok(event) => batch.push(event),
                Err(e) => {
                    if summary.samples.len() < 5 {
                        summary.samples.push(format!("{}:{number}: {e}", path.display()));
                    }
                    report.reject(number, e);
                }
            }
            if batch.len() == BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                if batches.send((full, summary.lines)).is_err() {
                    break; // the writer stopped
                }
            }
        }
    }
    let _ = batches.send((batch, summary.lines));
    summary.unparseable = report.rejected;
    Ok(summary)
}
