//! Events in ClickHouse (feature `clickhouse`): the official `clickhouse` crate, RowBinary
//! over HTTP with LZ4, for stores past one machine.
//!
//! - `events` is a `ReplacingMergeTree` partitioned by day and ordered by (region, user, time,
//!   batch, seq): rows of a batch delivered twice are the same rows, collapsed on merge and
//!   read `FINAL`, so a retried batch counts once even if it was half-written before.
//! - `event_batches` remembers accepted batch ids: a retry of an acknowledged batch stores
//!   nothing. It is written only after the events' insert was confirmed.
//! - An insert is acknowledged only after ClickHouse answered it (`wait_end_of_query=1`); an
//!   error aborts the whole `INSERT` (the crate's `Insert`, not its buffering `Inserter`, which
//!   drops its buffer on error) and reaches the caller.
//! - Retention drops whole days (`ALTER TABLE … DROP PARTITION`): the SQL runs on ClickHouse
//!   18.16 (the one server Debian ships) and on current releases alike, which table `TTL`
//!   (19.6+) would not.
//!
//! The trainer's code is synchronous (blocking tasks, the CLI): the store owns a small runtime
//! and blocks on each call, so it must not be called from inside an async task.

use prewarm_shared::Secret;
use serde::Deserialize;

#[cfg(feature = "clickhouse")]
pub use backend::ClickHouseStore;

/// Where the events live.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClickHouseConfig {
    /// The HTTP interface, e.g. `http://127.0.0.1:8123`.
    pub url: String,
    /// The database; created if missing.
    pub database: String,
    /// The user, if not `default`.
    pub user: Option<String>,
    /// Its password.
    pub password: Option<Secret>,
    /// Check row types against the server's schema (RowBinaryWithNamesAndTypes): on for
    /// current servers; off for servers before 24.x that lack the format (Debian's 18.16).
    pub validation: bool,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8123".into(),
            database: "prewarm".into(),
            user: None,
            password: None,
            validation: true,
        }
    }
}

/// A connection to the configured ClickHouse event store: one per writer or long reader (a
/// training streams on its own connection, so ingest never waits for it). Without the
/// `clickhouse` feature, an error saying so.
pub fn open(config: &ClickHouseConfig) -> Result<Box<dyn crate::store::EventStore + Send>, crate::store::StoreError> {
    #[cfg(feature = "clickhouse")]
    {
        Ok(Box::new(ClickHouseStore::open(config)?))
    }
    #[cfg(not(feature = "clickhouse"))]
    {
        Err(crate::store::StoreError::Backend(format!(
            "[clickhouse] ({}) needs prewarm built with the clickhouse feature",
            config.url
        )))
    }
}

#[cfg(feature = "clickhouse")]
mod backend {
    use std::collections::BTreeMap;
    use std::hash::{BuildHasher, RandomState};

    use clickhouse::{Client, Row};
    use prewarm_shared::classify::{ContentClass, Device, RequestClass, RouteClass};
    use prewarm_shared::signals::UserHash;
    use serde::{Deserialize, Serialize};

    use super::ClickHouseConfig;
    use crate::ingest::event::{Event, days_from_civil};
    use crate::store::{EventStore, StoreError};

    /// One event as stored: the batch it came in and its place there, then the event's fields.
    #[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
    struct EventRow {
        batch: u64,
        seq: u32,
        time: u32,
        user: [u8; 32],
        region: String,
        route: u8,
        content: u8,
        device: u8,
        status: u16,
        bytes: u64,
        duration_ms: f32,
        rtt_ms: Option<u32>,
        utc_offset: Option<i32>,
        cpu_ms: Option<f32>,
        memory_mb_s: Option<f32>,
        value: Option<f32>,
        robots_txt: u8,
    }

    /// The columns in [`EventRow`]'s order (RowBinary without validation is positional).
    const EVENT_COLUMNS: &str = "batch, seq, time, user, region, route, content, device, status, bytes, duration_ms, \
                             rtt_ms, utc_offset, cpu_ms, memory_mb_s, value, robots_txt";

    #[derive(Debug, Clone, Row, Serialize, Deserialize)]
    struct BatchRow {
        batch: u64,
        newest: u32,
    }

    impl EventRow {
        fn of(batch: u64, seq: usize, e: &Event) -> Self {
            Self {
                batch,
                seq: seq as u32,
                time: u32::try_from(e.time).unwrap_or(u32::MAX),
                user: e.user.0,
                region: e.region.clone(),
                route: e.class.route.0,
                content: ContentClass::ALL.iter().position(|c| *c == e.class.content).unwrap_or(0) as u8,
                device: Device::ALL.iter().position(|d| *d == e.device).unwrap_or(0) as u8,
                status: e.status,
                bytes: e.bytes,
                duration_ms: e.duration_ms,
                rtt_ms: e.rtt_ms,
                utc_offset: e.utc_offset_minutes,
                cpu_ms: e.cpu_ms,
                memory_mb_s: e.memory_mb_s,
                value: e.value,
                robots_txt: u8::from(e.robots_txt),
            }
        }

        fn event(self) -> Event {
            Event {
                time: u64::from(self.time),
                user: UserHash(self.user),
                region: self.region,
                class: RequestClass {
                    route: RouteClass(self.route),
                    content: ContentClass::ALL.get(usize::from(self.content)).copied().unwrap_or(ContentClass::Text),
                },
                device: Device::ALL.get(usize::from(self.device)).copied().unwrap_or(Device::Desktop),
                status: self.status,
                bytes: self.bytes,
                duration_ms: self.duration_ms,
                rtt_ms: self.rtt_ms,
                utc_offset_minutes: self.utc_offset,
                cpu_ms: self.cpu_ms,
                memory_mb_s: self.memory_mb_s,
                value: self.value,
                robots_txt: self.robots_txt != 0,
            }
        }
    }

    /// The single-node schema, in the configured database. The cluster variant
    /// (ReplicatedMergeTree behind a Distributed table) is in docs/scale.md.
    const SCHEMA: [&str; 2] = [
        "CREATE TABLE IF NOT EXISTS events (
        batch UInt64, seq UInt32, time DateTime('UTC'), user FixedString(32), region String,
        route UInt8, content UInt8, device UInt8, status UInt16, bytes UInt64, duration_ms Float32,
        rtt_ms Nullable(UInt32), utc_offset Nullable(Int32), cpu_ms Nullable(Float32),
        memory_mb_s Nullable(Float32), value Nullable(Float32), robots_txt UInt8
    ) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMMDD(time) ORDER BY (region, user, time, batch, seq)",
        "CREATE TABLE IF NOT EXISTS event_batches (batch UInt64, newest DateTime('UTC'))
     ENGINE = ReplacingMergeTree PARTITION BY toYYYYMMDD(newest) ORDER BY batch",
    ];

    /// The client's runtime, which may be dropped anywhere: a server drops its state (and so
    /// this store) inside an async task at shutdown, where dropping a runtime would panic.
    struct OwnRuntime(Option<tokio::runtime::Runtime>);

    impl OwnRuntime {
        fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
            match &self.0 {
                Some(runtime) => runtime.block_on(future),
                // Taken only by `drop`.
                None => unreachable!("the ClickHouse client's runtime is gone"),
            }
        }
    }

    impl Drop for OwnRuntime {
        fn drop(&mut self) {
            if let Some(runtime) = self.0.take() {
                runtime.shutdown_background();
            }
        }
    }

    /// The events in a ClickHouse database.
    pub struct ClickHouseStore {
        client: Client,
        database: String,
        runtime: OwnRuntime,
        ids: RandomState,
        inserted: u64,
    }

    impl std::fmt::Debug for ClickHouseStore {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("ClickHouseStore").field("database", &self.database).finish_non_exhaustive()
        }
    }

    fn failed(e: clickhouse::error::Error) -> StoreError {
        StoreError::Backend(e.to_string())
    }

    impl ClickHouseStore {
        /// Connects and creates the database and tables if missing.
        pub fn open(config: &ClickHouseConfig) -> Result<Self, StoreError> {
            if config.database.is_empty() || !config.database.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(StoreError::Backend(format!(
                    "[store.clickhouse] database = {:?}: letters, digits and _ only",
                    config.database
                )));
            }
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| StoreError::Backend(format!("starting the ClickHouse client's runtime: {e}")))?;
            let mut client = Client::default()
                .with_url(&config.url)
                .with_validation(config.validation)
                .with_setting("wait_end_of_query", "1");
            if let Some(user) = &config.user {
                client = client.with_user(user);
            }
            if let Some(password) = &config.password {
                client = client.with_password(password.expose());
            }
            let create = format!("CREATE DATABASE IF NOT EXISTS {}", config.database);
            runtime.block_on(client.query(&create).execute()).map_err(failed)?;
            let client = client.with_database(&config.database);
            for ddl in SCHEMA {
                runtime.block_on(client.query(ddl).execute()).map_err(failed)?;
            }
            Ok(Self {
                client,
                database: config.database.clone(),
                runtime: OwnRuntime(Some(runtime)),
                ids: RandomState::new(),
                inserted: 0,
            })
        }

        /// A batch id for a write that brought none: unique, so no other batch's rows collapse
        /// into it.
        fn fresh_batch_id(&mut self) -> u64 {
            self.inserted += 1;
            self.ids.hash_one((self.inserted, std::time::SystemTime::now()))
        }

        fn count(&self, sql: &str) -> Result<u64, StoreError> {
            self.runtime.block_on(self.client.query(sql).fetch_one::<u64>()).map_err(failed)
        }
    }

    impl EventStore for ClickHouseStore {
        fn insert_batch(&mut self, batch: Option<u64>, events: &[Event]) -> Result<usize, StoreError> {
            if events.is_empty() {
                return Ok(0);
            }
            if let Some(id) = batch {
                let sql = format!("SELECT count() FROM event_batches WHERE batch = {id}");
                if self.count(&sql)? > 0 {
                    return Ok(0);
                }
            }
            let id = match batch {
                Some(id) => id,
                None => self.fresh_batch_id(),
            };
            let newest = events.iter().map(|e| e.time).max().unwrap_or(0);
            let client = &self.client;
            self.runtime
                .block_on(async {
                    let mut insert = client.insert::<EventRow>("events").await?;
                    for (seq, e) in events.iter().enumerate() {
                        insert.write(&EventRow::of(id, seq, e)).await?;
                    }
                    insert.end().await?;
                    // Only once the events are confirmed: a batch marked but not stored would be
                    // lost to its retry.
                    let mut marker = client.insert::<BatchRow>("event_batches").await?;
                    marker.write(&BatchRow { batch: id, newest: u32::try_from(newest).unwrap_or(u32::MAX) }).await?;
                    marker.end().await
                })
                .map_err(failed)?;
            Ok(events.len())
        }

        fn event_count(&self) -> Result<u64, StoreError> {
            self.count("SELECT count() FROM events FINAL")
        }

        fn users_per_region_before(&self, before: u64) -> Result<BTreeMap<String, u64>, StoreError> {
            let sql = format!(
                "SELECT region, uniqExact(user) FROM events FINAL WHERE time < {} GROUP BY region ORDER BY region",
                clamp(before)
            );
            let rows = self.runtime.block_on(self.client.query(&sql).fetch_all::<(String, u64)>()).map_err(failed)?;
            Ok(rows.into_iter().collect())
        }

        fn first_event_time_before(&self, before: u64) -> Result<Option<u64>, StoreError> {
            let sql = format!("SELECT count(), toUInt32(min(time)) FROM events FINAL WHERE time < {}", clamp(before));
            let (n, first) =
                self.runtime.block_on(self.client.query(&sql).fetch_one::<(u64, u32)>()).map_err(failed)?;
            Ok((n > 0).then_some(u64::from(first)))
        }

        fn latest_event_time(&self) -> Result<Option<u64>, StoreError> {
            let sql = "SELECT count(), toUInt32(max(time)) FROM events FINAL";
            let (n, last) = self.runtime.block_on(self.client.query(sql).fetch_one::<(u64, u32)>()).map_err(failed)?;
            Ok((n > 0).then_some(u64::from(last)))
        }

        fn requests_per_minute(&self) -> Result<Vec<(u64, u64)>, StoreError> {
            let sql = "SELECT toUInt64(intDiv(toUInt32(time), 60) * 60) AS m, count() FROM events FINAL GROUP BY m ORDER BY m";
            self.runtime.block_on(self.client.query(sql).fetch_all::<(u64, u64)>()).map_err(failed)
        }

        fn each_event_by_user_before(&self, before: u64, each: &mut dyn FnMut(Event)) -> Result<(), StoreError> {
            let sql = format!(
                "SELECT {EVENT_COLUMNS} FROM events FINAL WHERE time < {} ORDER BY user, time, batch, seq",
                clamp(before)
            );
            self.runtime
                .block_on(async {
                    let mut cursor = self.client.query(&sql).fetch::<EventRow>()?;
                    while let Some(row) = cursor.next().await? {
                        each(row.event());
                    }
                    Ok(())
                })
                .map_err(failed)
        }

        fn prune_events(&mut self, before: u64) -> Result<Option<u64>, StoreError> {
            let day = before / 86_400 * 86_400;
            for table in ["events", "event_batches"] {
                let sql = format!(
                    "SELECT DISTINCT partition FROM system.parts WHERE database = '{}' AND table = '{table}' AND active",
                    self.database
                );
                let partitions =
                    self.runtime.block_on(self.client.query(&sql).fetch_all::<String>()).map_err(failed)?;
                for p in partitions {
                    // Partitions are days, YYYYMMDD: drop those wholly before the cut.
                    let Some(start) = day_start(&p) else { continue };
                    if start + 86_400 <= day {
                        let drop = format!("ALTER TABLE {table} DROP PARTITION {p}");
                        self.runtime.block_on(self.client.query(&drop).execute()).map_err(failed)?;
                    }
                }
            }
            Ok(None)
        }
    }

    /// A time bound as a `DateTime` (seconds in 32 bits) compares.
    fn clamp(t: u64) -> u64 {
        t.min(u64::from(u32::MAX))
    }

    /// Unix seconds at the start of a `YYYYMMDD` partition's day.
    fn day_start(partition: &str) -> Option<u64> {
        if partition.len() != 8 || !partition.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let (y, m, d) = (partition[..4].parse().ok()?, partition[4..6].parse().ok()?, partition[6..].parse().ok()?);
        u64::try_from(days_from_civil(y, m, d) * 86_400).ok()
    }
}
