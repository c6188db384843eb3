//! Ingest into ClickHouse (`--features clickhouse`, `-- --clickhouse`): events/s through
//! `POST /v1/events` with `[clickhouse]` (acknowledged after ClickHouse confirmed the insert)
//! against the raw `clickhouse` crate inserting the same rows in a loop, on the same server in
//! the same run. The server is Debian's 18.16, started here as a plain process.

use std::time::Instant;

use clickhouse::{Client, Row};
use prewarm_trainer::store::clickhouse::{ClickHouseConfig, ClickHouseStore};
use serde::Serialize;

use crate::clickhouse_server::Server;
use crate::measure;

/// The `events` table's columns, as the store writes them (RowBinary is positional).
#[derive(Row, Serialize)]
struct RawRow {
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

/// A fresh database on the server (its tables made by the store, as `prewarm serve` makes them).
fn database(server: &Server, name: &str) -> anyhow::Result<ClickHouseConfig> {
    let config = ClickHouseConfig { database: name.into(), ..server.config() };
    drop(ClickHouseStore::open(&config)?);
    Ok(config)
}

/// The baseline: rows/s of the crate's `insert` in a loop, `chunk` rows per INSERT, each
/// awaited to the end (`wait_end_of_query`, as the store does) before the next.
fn ingest_raw(server: &Server, name: &str, rows: usize, chunk: usize) -> anyhow::Result<f64> {
    let config = database(server, name)?;
    let client = Client::default()
        .with_url(&config.url)
        .with_database(&config.database)
        .with_validation(false)
        .with_setting("wait_end_of_query", "1");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let started = Instant::now();
    runtime.block_on(async {
        for (n, start) in (0..rows).step_by(chunk).enumerate() {
            let mut insert = client.insert::<RawRow>("events").await?;
            for i in start..(start + chunk).min(rows) {
                let mut user = [0u8; 32];
                user[..8].copy_from_slice(&((i % 50_000) as u64).to_be_bytes());
                insert
                    .write(&RawRow {
                        batch: n as u64 + 1,
                        seq: (i - start) as u32,
                        time: 1_700_000_000 + i as u32,
                        user,
                        region: "eu".into(),
                        route: 1,
                        content: 3,
                        device: 0,
                        status: 200,
                        bytes: 1200,
                        duration_ms: 8.5,
                        rtt_ms: Some(30),
                        utc_offset: None,
                        cpu_ms: None,
                        memory_mb_s: None,
                        value: None,
                        robots_txt: 0,
                    })
                    .await?;
            }
            insert.end().await?;
        }
        anyhow::Ok(())
    })?;
    Ok(rows as f64 / started.elapsed().as_secs_f64())
}

fn median(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// Runs the comparison at `batch` and at 10,000 events per request: 5 paired rounds, which of
/// the pair goes first alternating, each contender into a fresh database.
pub fn compare(events: usize, batch: usize) -> anyhow::Result<()> {
    const ROUNDS: usize = 5;
    let dir = std::env::temp_dir().join(format!("prewarm-bench-clickhouse-{}", std::process::id()));
    let server = Server::start(&dir);
    let sizes = if batch == 10_000 { vec![batch] } else { vec![batch, 10_000.min(events)] };
    println!(
        "ingest into ClickHouse 18.16 (local, one process): {events} events, 4 keep-alive connections, \
         {ROUNDS} paired rounds"
    );
    for size in sizes {
        let (mut raw, mut http, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let raw_rate = || ingest_raw(&server, &format!("raw_{round}_{size}"), events, size);
            let http_rate = || -> anyhow::Result<f64> {
                let store = ClickHouseStore::open(&database(&server, &format!("http_{round}_{size}"))?)?;
                measure::ingest_http_into(Some(Box::new(store)), events, size, 4, 0)
            };
            let (r, h) = if round % 2 == 0 {
                let r = raw_rate()?;
                (r, http_rate()?)
            } else {
                let h = http_rate()?;
                (raw_rate()?, h)
            };
            raw.push(r);
            http.push(h);
            ratios.push(h / r);
        }
        let (raw, raw_min, raw_max) = median(&mut raw);
        let (ours, ours_min, ours_max) = median(&mut http);
        let (ratio, ratio_min, ratio_max) = median(&mut ratios);
        println!(
            "  {size:>6} events per insert: raw clickhouse insert loop {raw:>9.0} rows/s ({raw_min:.0}–{raw_max:.0}); \
             POST /v1/events {ours:>9.0} events/s ({ours_min:.0}–{ours_max:.0}); paired ratio median {ratio:.2} \
             (min {ratio_min:.2}, max {ratio_max:.2}; target >= 0.5)"
        );
    }
    drop(server);
    Ok(())
}
