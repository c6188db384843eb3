//! The `events` table: validated, classified behaviour events, written in multi-row
//! statements and read back per user for training.

use prewarm_shared::classify::{ContentClass, Device, RequestClass, RouteClass};
use prewarm_shared::signals::UserHash;
use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, params};

use super::{EventStore, Store, StoreError, Total};
use crate::ingest::event::Event;

const EVENT_COLUMNS: usize = 15;
/// Rows per INSERT statement (15 values each, well under SQLite's 32,766 parameters).
const ROWS_PER_INSERT: usize = 64;

/// The statement for a full chunk, built once: it is also the statement cache's key, looked up
/// for every chunk.
static INSERT_FULL_CHUNK: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| insert_sql(ROWS_PER_INSERT));

/// `INSERT INTO events (...) VALUES (?, ...), ... ` for `rows` rows.
fn insert_sql(rows: usize) -> String {
    let row = format!("({})", vec!["?"; EVENT_COLUMNS].join(","));
    format!(
        "INSERT INTO events (time, user, region, route, content, device, status, bytes, duration_ms, rtt_ms, \
         utc_offset, cpu_ms, memory_mb_s, value, robots_txt) VALUES {}",
        vec![row; rows].join(",")
    )
}

fn content_index(c: ContentClass) -> i64 {
    ContentClass::ALL.iter().position(|x| *x == c).unwrap_or(0) as i64
}
fn device_index(d: Device) -> i64 {
    Device::ALL.iter().position(|x| *x == d).unwrap_or(0) as i64
}

impl Store {
    /// Stores events in one transaction; when this returns, they are on disk.
    ///
    /// Rows go in [`ROWS_PER_INSERT`] at a time: one statement step per row costs more than
    /// binding its values, so multi-row statements triple the rate.
    pub fn insert_events(&mut self, events: &[Event]) -> Result<usize, StoreError> {
        self.insert_events_once(None, events)
    }

    /// [`Store::insert_events`], once per `batch` id: a batch id already stored (kept as long
    /// as its newest event) stores nothing and returns 0.
    pub(crate) fn insert_events_once(&mut self, batch: Option<u64>, events: &[Event]) -> Result<usize, StoreError> {
        let tx = self.conn.transaction()?;
        if let Some(batch) = batch {
            let newest = events.iter().map(|e| e.time).max().unwrap_or(0);
            let fresh = tx.execute(
                "INSERT OR IGNORE INTO event_batches (batch_id, newest) VALUES (?1, ?2)",
                params![batch as i64, newest as i64],
            )?;
            if fresh == 0 {
                return Ok(0);
            }
        }
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
                    &i64::from(e.robots_txt),
                ];
                for value in values {
                    stmt.raw_bind_parameter(column, value)?;
                    column += 1;
                }
            }
            stmt.raw_execute()?;
        }
        Total::Events.add(&tx, events.len() as i64)?;
        tx.commit()?;
        Ok(events.len())
    }

    /// Regions with events, with their user counts.
    pub fn regions(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut stmt =
            self.conn.prepare("SELECT region, COUNT(DISTINCT user) FROM events GROUP BY region ORDER BY region")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every event of a region (or of all regions), ordered by user then time: the order in
    /// which behaviour states are rebuilt. Loads them all: for tests and small inspections;
    /// training reads [`EventsBefore`] one user at a time.
    pub fn events_by_user(&self, region: Option<&str>) -> Result<Vec<Event>, StoreError> {
        let mut out = Vec::new();
        self.each_event_by_user(region, None, &mut |e| out.push(e))?;
        Ok(out)
    }

    /// Streams events (of `region`, before `before`) in user then time order to `each`, row by
    /// row: SQLite sorts on disk past its cache, so memory does not grow with the table.
    pub(super) fn each_event_by_user(
        &self,
        region: Option<&str>,
        before: Option<u64>,
        each: &mut dyn FnMut(Event),
    ) -> Result<(), StoreError> {
        let sql = "SELECT time, user, region, route, content, device, status, bytes, duration_ms, rtt_ms, \
                   utc_offset, cpu_ms, memory_mb_s, value, robots_txt FROM events \
                   WHERE (?1 IS NULL OR region = ?1) AND (?2 IS NULL OR time < ?2) ORDER BY user, time";
        let mut stmt = self.conn.prepare(sql)?;
        let mut rows = stmt.query(params![region, before.map(|b| b as i64)])?;
        while let Some(r) = rows.next()? {
            each(event_of_row(r)?);
        }
        Ok(())
    }

    /// Users per region among the events before `before`, counted by the store.
    pub fn users_per_region_before(&self, before: u64) -> Result<BTreeMap<String, u64>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT region, COUNT(DISTINCT user) FROM events WHERE time < ?1 GROUP BY region ORDER BY region",
        )?;
        let rows =
            stmt.query_map(params![before as i64], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The oldest event time before `before`, if any.
    pub fn first_event_time_before(&self, before: u64) -> Result<Option<u64>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT MIN(time) FROM events WHERE time < ?1", params![before as i64], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .optional()?
            .flatten()
            .map(|t| t as u64))
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

fn event_of_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
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
        robots_txt: r.get::<_, i64>(14)? != 0,
    })
}

/// Events grouped by user, read as many times as a stage needs, one user at a time: what the
/// profile stage trains on, so that its memory is bounded by one user's events and the users
/// it samples, never by the window's events.
pub trait UserEvents {
    /// Calls `visit` with each user's events (in time order), users in a stable order.
    fn for_each_user(&self, visit: &mut dyn FnMut(&[Event])) -> Result<(), StoreError>;
    /// Users per region.
    fn users_per_region(&self) -> Result<BTreeMap<String, u64>, StoreError>;
    /// The oldest event's time.
    fn first_time(&self) -> Result<Option<u64>, StoreError>;
}

/// Events already in memory, ordered by user then time (the replay's windows, tests).
#[derive(Debug, Clone, Copy)]
pub struct InMemory<'a>(pub &'a [Event]);

impl UserEvents for InMemory<'_> {
    fn for_each_user(&self, visit: &mut dyn FnMut(&[Event])) -> Result<(), StoreError> {
        let events = self.0;
        let mut start = 0;
        while start < events.len() {
            let user = events[start].user;
            let end = start + events[start..].iter().take_while(|e| e.user == user).count();
            visit(&events[start..end]);
            start = end;
        }
        Ok(())
    }

    fn users_per_region(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let mut out = BTreeMap::new();
        self.for_each_user(&mut |events| *out.entry(events[0].region.clone()).or_insert(0) += 1)?;
        Ok(out)
    }

    fn first_time(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.0.iter().map(|e| e.time).min())
    }
}

/// A store's events before a time, streamed one user at a time.
#[derive(Debug, Clone, Copy)]
pub struct EventsBefore<'a> {
    /// The store read.
    pub store: &'a dyn EventStore,
    /// Events at or after this instant (Unix seconds) are left out.
    pub before: u64,
}

impl UserEvents for EventsBefore<'_> {
    fn for_each_user(&self, visit: &mut dyn FnMut(&[Event])) -> Result<(), StoreError> {
        let mut user: Vec<Event> = Vec::new();
        self.store.each_event_by_user_before(self.before, &mut |e| {
            if user.first().is_some_and(|first| first.user != e.user) {
                visit(&user);
                user.clear();
            }
            user.push(e);
        })?;
        if !user.is_empty() {
            visit(&user);
        }
        Ok(())
    }

    fn users_per_region(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        self.store.users_per_region_before(self.before)
    }

    fn first_time(&self) -> Result<Option<u64>, StoreError> {
        self.store.first_event_time_before(self.before)
    }
}
