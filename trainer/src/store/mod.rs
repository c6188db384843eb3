//! The embedded event store: SQLite (bundled) in WAL mode with `synchronous=FULL`, so a commit
//! is on disk before the ingest endpoint acknowledges it.
//!
//! Tables: `events` (validated, classified behaviour events), `demand` (requests per region ×
//! profile × minute, from the edge's signals), `prewarm_signals`, `sampled_states` (anonymised
//! feature vectors from the edge), `edge_reports` (which model version each signal batch came
//! from), `signal_receipts` (accepted batches' signatures), `signal_batches` (accepted batch
//! ids), `event_batches` (accepted event batch ids) and `totals` (counts kept in the same
//! transactions as the rows, so a status read never scans a table). Every table with
//! per-user or per-edge rows is pruned after `retention_days` ([`Store::prune`]). The schema
//! version lives in SQLite's `user_version`.
//!
//! The server writes through one connection and reads through others ([`Readers`]): WAL lets
//! readers see the last commit while a write is under way, so a dashboard or a scrape never
//! holds up ingest.

mod backend;
pub mod clickhouse;
mod edge;
mod events;
mod readers;

use std::path::{Path, PathBuf};

use rusqlite::{Connection, params};

pub use backend::EventStore;
pub use edge::{EdgeSummary, SignalReceipt};
pub use events::{EventsBefore, InMemory, UserEvents};
pub use readers::Readers;

/// Why the store failed. `Full` and `ReadOnly` are the operator's to fix; the server answers 503.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs, reason = "a variant's fields are named in its message")]
pub enum StoreError {
    #[error(
        "the store is full (its disk, or the store_max_mb cap): free space or raise the cap; nothing stored was changed"
    )]
    /// The disk or the size cap is full.
    Full,
    #[error(
        "the store is read-only (its disk, or store_read_only maintenance mode): writes resume when it is writable"
    )]
    /// The store is in maintenance mode or its disk is read-only.
    ReadOnly,
    #[error("store schema {found} is newer than this build understands ({supported})")]
    /// Written by a newer build.
    FutureSchema { found: i64, supported: i64 },
    #[error("database error: {0}")]
    /// Any other SQLite error.
    Sqlite(rusqlite::Error),
    #[error("event store: {0}")]
    /// A backend other than SQLite failed (ClickHouse unreachable, an insert refused): nothing
    /// the call was to store was acknowledged.
    Backend(String),
    #[error("a store lock is poisoned (a thread panicked holding it)")]
    /// A lock was poisoned by a panic.
    Poisoned,
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
    // Reads that never scan (totals, indexes on what status and pruning query) and accepted
    // batches remembered across restarts.
    r#"
    CREATE TABLE totals (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO totals SELECT 'events', COUNT(*) FROM events;
    INSERT INTO totals SELECT 'demand_requests', COALESCE(SUM(requests), 0) FROM demand;
    INSERT INTO totals SELECT 'signal_batches', COUNT(*) FROM edge_reports;
    INSERT INTO totals SELECT 'sampled_states', COUNT(*) FROM sampled_states;
    CREATE INDEX demand_minute ON demand(minute);
    CREATE INDEX prewarm_signals_received_at ON prewarm_signals(received_at);
    CREATE INDEX sampled_states_at ON sampled_states(at);
    CREATE INDEX edge_reports_received_at ON edge_reports(received_at);
    CREATE TABLE signal_receipts (
        signature BLOB PRIMARY KEY,
        signed_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX signal_receipts_signed_at ON signal_receipts(signed_at);
"#,
    // Whether an event fetched /robots.txt (the automation rule's clue; paths are not kept).
    "ALTER TABLE events ADD COLUMN robots_txt INTEGER NOT NULL DEFAULT 0;",
    // Accepted batches by the edge's batch id, for as long as what they counted is kept: a
    // batch delivered twice (a retry re-signed later, at-least-once delivery) counts once.
    r#"
    CREATE TABLE signal_batches (batch_id INTEGER PRIMARY KEY, received_at INTEGER NOT NULL);
    CREATE INDEX signal_batches_received_at ON signal_batches(received_at);
"#,
    // Accepted event batches by the client's batch id, kept as long as their newest event: a
    // batch retried after a lost answer is stored once.
    r#"
    CREATE TABLE event_batches (batch_id INTEGER PRIMARY KEY, newest INTEGER NOT NULL);
    CREATE INDEX event_batches_newest ON event_batches(newest);
"#,
];

/// A count kept in the `totals` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Total {
    Events,
    DemandRequests,
    SignalBatches,
    SampledStates,
}

impl Total {
    fn name(self) -> &'static str {
        match self {
            Total::Events => "events",
            Total::DemandRequests => "demand_requests",
            Total::SignalBatches => "signal_batches",
            Total::SampledStates => "sampled_states",
        }
    }

    /// Adds `delta` inside the caller's transaction.
    pub(crate) fn add(self, conn: &Connection, delta: i64) -> Result<(), StoreError> {
        if delta != 0 {
            conn.prepare_cached("UPDATE totals SET value = value + ?1 WHERE name = ?2")?
                .execute(params![delta, self.name()])?;
        }
        Ok(())
    }
}

/// What [`Store::prune`] deleted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pruned {
    /// Events deleted.
    pub events: usize,
    /// Demand counts deleted.
    pub demand: usize,
    /// Prewarm signals deleted.
    pub prewarm_signals: usize,
    /// Sampled states deleted.
    pub sampled_states: usize,
    /// Edge reports deleted.
    pub edge_reports: usize,
}

/// A handle on the store. Not `Sync`: the server keeps the writer behind a mutex and uses it
/// from blocking tasks.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    /// The file, for opening readers beside this connection; `None` in memory.
    path: Option<PathBuf>,
}

impl Store {
    /// Opens (creating if needed) and migrates the store.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        Self::configure(conn, Some(path.to_owned()))
    }

    /// A read-only connection on a store's file, opened and migrated before by [`Store::open`]
    /// (WAL: it reads the last commit while the writer writes).
    pub fn open_reader(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(Self { conn, path: None })
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
        Self::configure(Connection::open_in_memory()?, None)
    }

    fn configure(conn: Connection, path: Option<PathBuf>) -> Result<Self, StoreError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        // 64 MiB of page cache (the default is 2 MiB): large imports slow down threefold once
        // the table and its time index outgrow the cache.
        conn.pragma_update(None, "cache_size", -65_536)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let mut store = Self { conn, path };
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

    /// The underlying connection, for benchmarks that compare against raw SQLite.
    pub fn connection(&mut self) -> &mut Connection {
        &mut self.conn
    }

    fn total(&self, total: Total) -> Result<u64, StoreError> {
        let value: i64 = self
            .conn
            .prepare_cached("SELECT value FROM totals WHERE name = ?1")?
            .query_row(params![total.name()], |r| r.get(0))?;
        Ok(value.max(0) as u64)
    }

    /// Events stored (kept as a total: no scan).
    pub fn count_events(&self) -> Result<u64, StoreError> {
        self.total(Total::Events)
    }

    /// Retention: deletes every per-user and per-edge row older than `before` (Unix seconds) —
    /// events, demand counts, prewarm signals, sampled states, edge reports — in one
    /// transaction, with their totals, and the signal receipts whose signatures could no
    /// longer verify anyway.
    pub fn prune(&mut self, before: u64) -> Result<Pruned, StoreError> {
        let before = before as i64;
        let tx = self.conn.transaction()?;
        let events = tx.execute("DELETE FROM events WHERE time < ?1", params![before])?;
        Total::Events.add(&tx, -(events as i64))?;
        let requests: i64 = tx.query_row(
            "SELECT COALESCE(SUM(requests), 0) FROM demand WHERE minute < ?1",
            params![before / 60],
            |r| r.get(0),
        )?;
        let demand = tx.execute("DELETE FROM demand WHERE minute < ?1", params![before / 60])?;
        Total::DemandRequests.add(&tx, -requests)?;
        let prewarm_signals = tx.execute("DELETE FROM prewarm_signals WHERE received_at < ?1", params![before])?;
        let sampled_states = tx.execute("DELETE FROM sampled_states WHERE at < ?1", params![before])?;
        Total::SampledStates.add(&tx, -(sampled_states as i64))?;
        let edge_reports = tx.execute("DELETE FROM edge_reports WHERE received_at < ?1", params![before])?;
        tx.execute("DELETE FROM signal_batches WHERE received_at < ?1", params![before])?;
        tx.execute("DELETE FROM event_batches WHERE newest < ?1", params![before])?;
        Total::SignalBatches.add(&tx, -(edge_reports as i64))?;
        tx.commit()?;
        Ok(Pruned { events, demand, prewarm_signals, sampled_states, edge_reports })
    }
}

#[cfg(test)]
mod tests;
