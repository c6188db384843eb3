//! The embedded event store: SQLite (bundled) in WAL mode with `synchronous=FULL`, so a commit
//! is on disk before the ingest endpoint acknowledges it.
//!
//! Tables: `events` (validated, classified behaviour events, kept for `retention_days`),
//! `demand` (requests per region × profile × minute, from the edge's signals), `prewarm_signals`,
//! `sampled_states` (anonymised feature vectors from the edge) and `edge_reports` (which model
//! version each signal batch came from). The schema version lives in SQLite's `user_version`.

use std::path::Path;

use prewarm_shared::classify::{ContentClass, Device, RequestClass, RouteClass};
use prewarm_shared::signals::{SignalBatch, UserHash};
use rusqlite::{Connection, OptionalExtension, params};

use crate::ingest::event::Event;

/// Why the store failed. `Full` and `ReadOnly` are the operator's to fix; the server answers 503.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the store is full (its disk, or the store_max_mb cap): free space or raise the cap; nothing stored was changed"
    )]
    Full,
    #[error(
        "the store is read-only (its disk, or store_read_only maintenance mode): writes resume when it is writable"
    )]
    ReadOnly,
    #[error("store schema {found} is newer than this build understands ({supported})")]
    FutureSchema { found: i64, supported: i64 },
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => StoreError::Full,
            Some(rusqlite::ErrorCode::ReadOnly) => StoreError::ReadOnly,
            _ => StoreError::Sqlite(e),
        }
    }
}

/// Schema migrations, in order; `user_version` says how many have run.
const MIGRATIONS: &[&str] = &[
    r#"
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        time INTEGER NOT NULL,
        user BLOB NOT NULL,
        region TEXT NOT NULL,
        route INTEGER NOT NULL,
        content INTEGER NOT NULL,
        device INTEGER NOT NULL,
        status INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        duration_ms REAL NOT NULL,
        rtt_ms INTEGER,
        utc_offset INTEGER,
        cpu_ms REAL,
        memory_mb_s REAL,
        value REAL
    );
    CREATE INDEX events_time ON events(time);
    CREATE TABLE demand (
        region TEXT NOT NULL,
        profile INTEGER NOT NULL,
        minute INTEGER NOT NULL,
        requests INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        PRIMARY KEY (region, profile, minute)
    ) WITHOUT ROWID;
    CREATE TABLE prewarm_signals (
        id INTEGER PRIMARY KEY,
        received_at INTEGER NOT NULL,
        region TEXT NOT NULL,
        profile INTEGER NOT NULL,
        minute INTEGER NOT NULL,
        observed REAL NOT NULL,
        forecast_upper REAL NOT NULL,
        reason TEXT NOT NULL
    );
    CREATE TABLE sampled_states (
        id INTEGER PRIMARY KEY,
        user BLOB NOT NULL,
        region TEXT NOT NULL,
        profile INTEGER NOT NULL,
        at INTEGER NOT NULL,
        features BLOB NOT NULL
    );
    CREATE TABLE edge_reports (
        received_at INTEGER NOT NULL,
        model_version INTEGER
    );
"#,
    // The time index cost two thirds of import speed (logs replayed or merged out of order
    // insert into the middle of it), and only pruning used it: pruning scans instead, once per
    // training interval, as training itself does.
    "DROP INDEX IF EXISTS events_time;",
];

const EVENT_COLUMNS: usize = 14;
/// Rows per INSERT statement (14 values each, well under SQLite's 32,766 parameters).
const ROWS_PER_INSERT: usize = 64;

/// The statement for a full chunk, built once: it is also the statement cache's key, looked up
/// for every chunk.
static INSERT_FULL_CHUNK: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| insert_sql(ROWS_PER_INSERT));

/// `INSERT INTO events (...) VALUES (?, ...), ... ` for `rows` rows.
fn insert_sql(rows: usize) -> String {
    let row = format!("({})", vec!["?"; EVENT_COLUMNS].join(","));
    format!(
        "INSERT INTO events (time, user, region, route, content, device, status, bytes, duration_ms, rtt_ms, \
         utc_offset, cpu_ms, memory_mb_s, value) VALUES {}",
        vec![row; rows].join(",")
    )
}

/// Totals of what the edge has signalled.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EdgeSummary {
    pub signal_batches: u64,
    pub demand_requests: u64,
    /// (reason, count)
    pub prewarm_signals: Vec<(String, u64)>,
    pub sampled_states: u64,
    pub edge_model_version: Option<u32>,
}

/// A handle on the store. Not `Sync`: the server keeps it behind a mutex and uses it from
/// blocking tasks.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
}

fn content_index(c: ContentClass) -> i64 {
    ContentClass::ALL.iter().position(|x| *x == c).unwrap_or(0) as i64
}
fn device_index(d: Device) -> i64 {
    Device::ALL.iter().position(|x| *x == d).unwrap_or(0) as i64
}

impl Store {
    /// Opens (creating if needed) and migrates the store.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        Self::configure(conn)
    }

    /// Caps the database file at about `max_bytes` (SQLite's `max_page_count`): a write beyond
    /// it fails as [`StoreError::Full`] and rolls back, like a full disk would, before the disk
    /// is. Never below the current size.
    pub fn limit_size(&mut self, max_bytes: u64) -> Result<(), StoreError> {
        let page_size: i64 = self.conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
        let pages = (max_bytes / page_size.max(512) as u64).max(1) as i64;
        self.conn.pragma_update(None, "max_page_count", pages)?;
        Ok(())
    }

    /// Maintenance mode (backups, disk moves): every write fails as [`StoreError::ReadOnly`]
    /// (SQLite's `query_only`), reads go on.
    pub fn set_read_only(&mut self, read_only: bool) -> Result<(), StoreError> {
        self.conn.pragma_update(None, "query_only", read_only)?;
        Ok(())
    }

    /// A private in-memory store, for tests.
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::configure(Connection::open_in_memory()?)
    }

    fn configure(conn: Connection) -> Result<Self, StoreError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        // 64 MiB of page cache (the default is 2 MiB): large imports slow down threefold once
        // the table and its time index outgrow the cache.
        conn.pragma_update(None, "cache_size", -65_536)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let mut store = Self { conn };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let version: i64 = self.conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let supported = MIGRATIONS.len() as i64;
        if version > supported {
            return Err(StoreError::FutureSchema { found: version, supported });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = self.conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// Stores events in one transaction; when this returns, they are on disk.
    ///
    /// Rows go in [`ROWS_PER_INSERT`] at a time: one statement step per row costs more than
    /// binding its values, so multi-row statements triple the rate.
    pub fn insert_events(&mut self, events: &[Event]) -> Result<usize, StoreError> {
        let tx = self.conn.transaction()?;
        for chunk in events.chunks(ROWS_PER_INSERT) {
            let mut stmt = if chunk.len() == ROWS_PER_INSERT {
                tx.prepare_cached(&INSERT_FULL_CHUNK)?
            } else {
                tx.prepare_cached(&insert_sql(chunk.len()))?
            };
            let mut column = 1;
            for e in chunk {
                let values: [&dyn rusqlite::ToSql; EVENT_COLUMNS] = [
                    &(e.time as i64),
                    &&e.user.0[..],
                    &e.region,
                    &i64::from(e.class.route.0),
                    &content_index(e.class.content),
                    &device_index(e.device),
                    &i64::from(e.status),
                    &(e.bytes as i64),
                    &f64::from(e.duration_ms),
                    &e.rtt_ms.map(i64::from),
                    &e.utc_offset_minutes.map(i64::from),
                    &e.cpu_ms.map(f64::from),
                    &e.memory_mb_s.map(f64::from),
                    &e.value.map(f64::from),
                ];
                for value in values {
                    stmt.raw_bind_parameter(column, value)?;
                    column += 1;
                }
            }
            stmt.raw_execute()?;
        }
        tx.commit()?;
        Ok(events.len())
    }

    /// Stores one signal batch from the edge in one transaction.
    pub fn insert_signals(&mut self, batch: &SignalBatch, received_at: u64) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut demand = tx.prepare_cached(
                "INSERT INTO demand (region, profile, minute, requests, bytes) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (region, profile, minute) DO UPDATE SET requests = requests + excluded.requests, \
                 bytes = bytes + excluded.bytes",
            )?;
            for d in &batch.demand {
                demand.execute(params![d.region, d.profile.0, d.minute as i64, d.requests, d.bytes as i64])?;
            }
            let mut prewarm = tx.prepare_cached(
                "INSERT INTO prewarm_signals (received_at, region, profile, minute, observed, forecast_upper, reason) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for p in &batch.prewarm {
                let reason = serde_json::to_value(p.reason).ok().and_then(|v| v.as_str().map(str::to_owned));
                prewarm.execute(params![
                    received_at as i64,
                    p.region,
                    p.profile.0,
                    p.minute as i64,
                    f64::from(p.observed),
                    f64::from(p.forecast_upper),
                    reason.unwrap_or_default()
                ])?;
            }
            let mut states = tx.prepare_cached(
                "INSERT INTO sampled_states (user, region, profile, at, features) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for s in &batch.states {
                let features: Vec<u8> = s.features.iter().flat_map(|f| f.to_le_bytes()).collect();
                states.execute(params![&s.user.0[..], s.region, s.profile.0, s.at.0 as i64, features])?;
            }
            tx.execute(
                "INSERT INTO edge_reports (received_at, model_version) VALUES (?1, ?2)",
                params![received_at as i64, batch.model_version.map(|v| v.0)],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The underlying connection, for benchmarks that compare against raw SQLite.
    pub fn connection(&mut self) -> &mut Connection {
        &mut self.conn
    }

    pub fn count_events(&self) -> Result<u64, StoreError> {
        Ok(self.conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get::<_, i64>(0))? as u64)
    }

    /// Regions with events, with their user counts.
    pub fn regions(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut stmt =
            self.conn.prepare("SELECT region, COUNT(DISTINCT user) FROM events GROUP BY region ORDER BY region")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every event of a region (or of all regions), ordered by user then time: the order in
    /// which behaviour states are rebuilt.
    pub fn events_by_user(&self, region: Option<&str>) -> Result<Vec<Event>, StoreError> {
        let sql = "SELECT time, user, region, route, content, device, status, bytes, duration_ms, rtt_ms, \
                   utc_offset, cpu_ms, memory_mb_s, value FROM events WHERE (?1 IS NULL OR region = ?1) ORDER BY user, time";
        let mut stmt = self.conn.prepare(sql)?;
        let rows = stmt.query_map(params![region], |r| {
            let user: Vec<u8> = r.get(1)?;
            let mut hash = [0u8; 32];
            if user.len() == 32 {
                hash.copy_from_slice(&user);
            }
            let content: i64 = r.get(4)?;
            let device: i64 = r.get(5)?;
            Ok(Event {
                time: r.get::<_, i64>(0)? as u64,
                user: UserHash(hash),
                region: r.get(2)?,
                class: RequestClass {
                    route: RouteClass(r.get::<_, i64>(3)? as u8),
                    content: ContentClass::ALL.get(content as usize).copied().unwrap_or(ContentClass::Text),
                },
                device: Device::ALL.get(device as usize).copied().unwrap_or(Device::Desktop),
                status: r.get::<_, i64>(6)? as u16,
                bytes: r.get::<_, i64>(7)? as u64,
                duration_ms: r.get::<_, f64>(8)? as f32,
                rtt_ms: r.get::<_, Option<i64>>(9)?.map(|v| v as u32),
                utc_offset_minutes: r.get::<_, Option<i64>>(10)?.map(|v| v as i32),
                cpu_ms: r.get::<_, Option<f64>>(11)?.map(|v| v as f32),
                memory_mb_s: r.get::<_, Option<f64>>(12)?.map(|v| v as f32),
                value: r.get::<_, Option<f64>>(13)?.map(|v| v as f32),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every demand count the edge sent for a region: (profile, minute, requests).
    pub fn demand_for_region(&self, region: &str) -> Result<Vec<(u16, u64, u64)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT profile, minute, SUM(requests) FROM demand WHERE region = ?1 GROUP BY profile, minute ORDER BY minute",
        )?;
        let rows = stmt.query_map(params![region], |r| {
            Ok((r.get::<_, i64>(0)? as u16, r.get::<_, i64>(1)? as u64, r.get::<_, i64>(2)? as u64))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Demand counts received from the edge for one region × profile, by minute.
    pub fn demand(&self, region: &str, profile: u16) -> Result<Vec<(u64, u64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT minute, requests FROM demand WHERE region = ?1 AND profile = ?2 ORDER BY minute")?;
        let rows =
            stmt.query_map(params![region, profile], |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// What the edge reported: demand requests, prewarm signals by reason, and the newest
    /// model version a batch came from.
    pub fn edge_summary(&self) -> Result<EdgeSummary, StoreError> {
        let demand_requests: i64 =
            self.conn.query_row("SELECT COALESCE(SUM(requests), 0) FROM demand", [], |r| r.get(0))?;
        let mut stmt =
            self.conn.prepare("SELECT reason, COUNT(*) FROM prewarm_signals GROUP BY reason ORDER BY reason")?;
        let prewarm = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?
            .collect::<Result<Vec<_>, _>>()?;
        let batches: i64 = self.conn.query_row("SELECT COUNT(*) FROM edge_reports", [], |r| r.get(0))?;
        let model: Option<i64> = self
            .conn
            .query_row("SELECT model_version FROM edge_reports ORDER BY received_at DESC LIMIT 1", [], |r| r.get(0))
            .optional()?
            .flatten();
        let states: i64 = self.conn.query_row("SELECT COUNT(*) FROM sampled_states", [], |r| r.get(0))?;
        Ok(EdgeSummary {
            signal_batches: batches as u64,
            demand_requests: demand_requests as u64,
            prewarm_signals: prewarm,
            sampled_states: states as u64,
            edge_model_version: model.map(|v| v as u32),
        })
    }

    /// Prewarm signals received since `since` (Unix seconds): (region, profile, at, observed).
    pub fn recent_prewarm(&self, since: u64) -> Result<Vec<(String, u16, u64, f32)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT region, profile, received_at, observed FROM prewarm_signals WHERE received_at >= ?1")?;
        let rows = stmt.query_map(params![since as i64], |r| {
            let observed: f64 = r.get(3)?;
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u16, r.get::<_, i64>(2)? as u64, observed as f32))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every demand count from `since_minute` on: (region, profile, minute, requests), summed
    /// over the isolates that reported it.
    pub fn demand_since(&self, since_minute: u64) -> Result<Vec<(String, u16, u64, u64)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT region, profile, minute, SUM(requests) FROM demand WHERE minute >= ?1 GROUP BY region, profile, minute",
        )?;
        let rows = stmt.query_map(params![since_minute as i64], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)? as u16,
                r.get::<_, i64>(2)? as u64,
                r.get::<_, i64>(3)? as u64,
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The newest demand minute the edge reported per region, as Unix seconds.
    pub fn last_demand_by_region(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT region, MAX(minute) FROM demand GROUP BY region")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64 * 60)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Prewarm signals of one reason (`above_band`, `forecast_rise`) since `since`, per region.
    pub fn prewarm_counts_since(&self, since: u64, reason: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT region, COUNT(*) FROM prewarm_signals WHERE received_at >= ?1 AND reason = ?2 GROUP BY region",
        )?;
        let rows = stmt
            .query_map(params![since as i64, reason], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Requests the edge counted in one minute (Unix minutes), per region.
    pub fn demand_in_minute(&self, minute: u64) -> Result<Vec<(String, u64)>, StoreError> {
        let mut stmt =
            self.conn.prepare("SELECT region, SUM(requests) FROM demand WHERE minute = ?1 GROUP BY region")?;
        let rows =
            stmt.query_map(params![minute as i64], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Requests the edge counted per minute (Unix minutes) for a region, from `since_minute`.
    pub fn demand_by_minute(&self, region: &str, since_minute: u64) -> Result<Vec<(u64, u64)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT minute, SUM(requests) FROM demand WHERE region = ?1 AND minute >= ?2 GROUP BY minute ORDER BY minute",
        )?;
        let rows = stmt.query_map(params![region, since_minute as i64], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Number of prewarm signals received.
    pub fn count_prewarm_signals(&self) -> Result<u64, StoreError> {
        Ok(self.conn.query_row("SELECT COUNT(*) FROM prewarm_signals", [], |r| r.get::<_, i64>(0))? as u64)
    }

    /// Deletes events older than `before` (Unix seconds); returns how many.
    pub fn prune_events(&mut self, before: u64) -> Result<usize, StoreError> {
        Ok(self.conn.execute("DELETE FROM events WHERE time < ?1", params![before as i64])?)
    }

    /// Events per minute over all regions, `(minute start, requests)`: the aggregate a replay
    /// scales.
    pub fn requests_per_minute(&self) -> Result<Vec<(u64, u64)>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT time / 60 * 60 AS m, COUNT(*) FROM events GROUP BY m ORDER BY m")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The newest event time, if any.
    pub fn latest_event_time(&self) -> Result<Option<u64>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT MAX(time) FROM events", [], |r| r.get::<_, Option<i64>>(0))
            .optional()?
            .flatten()
            .map(|t| t as u64))
    }
}
