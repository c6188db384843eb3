//! The `events` table: validated, classified behaviour events, written in multi-row
//! statements and read back per user for training.

use prewarm_shared::classify::{ContentClass, Device, RequestClass, RouteClass};
use prewarm_shared::signals::UserHash;
use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError, Total};
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
    /// which behaviour states are rebuilt.
    pub fn events_by_user(&self, region: Option<&str>) -> Result<Vec<Event>, StoreError> {
        let sql = "SELECT time, user, region, route, content, device, status, bytes, duration_ms, rtt_ms, \
                   utc_offset, cpu_ms, memory_mb_s, value, robots_txt FROM events WHERE (?1 IS NULL OR region = ?1) ORDER BY user, time";
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
                robots_txt: r.get::<_, i64>(14)? != 0,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
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
