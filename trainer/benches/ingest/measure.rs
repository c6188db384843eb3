//! The measurements behind the ingest bench, each against a baseline measured in the same run.
//!
//! - ingest: events/s through `POST /v1/events` on loopback (durable: committed before the
//!   reply) vs a raw rusqlite loop (same schema and pragmas, 10,000-row transactions, one
//!   prepared statement); and the same ingest with readers polling `/v1/status` and
//!   `/metrics` beside it vs without them;
//! - import: access-log lines/s (parse, classify, hash, store) vs GoAccess 1.7 on the same file.
//!
//! Figures are printed, never asserted: they depend on the machine.

use std::path::{Path, PathBuf};
use std::time::Instant;

use prewarm_shared::classify::ClassificationRules;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use prewarm_trainer::config::TrainerConfig;
use prewarm_trainer::import::import_files;
use prewarm_trainer::store::Store;
use prewarm_trainer::web::{AppState, system_clock};

const TOKEN: &str = "bench-token-0123456789abcdef";

/// Where the benchmark writes its stores and files (removed afterwards).
fn scratch(name: &str) -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("prewarm-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

pub(crate) fn ndjson_batch(batch: usize, size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size * 230);
    for i in 0..size {
        let user = (batch * size + i) % 50_000;
        out.extend_from_slice(
            format!(
                r#"{{"time":{},"user":"{user:064x}","region":"eu","path":"/api/v1/items/{i}","content_type":"application/json","user_agent":"Mozilla/5.0 (X11; Linux x86_64)","status":200,"bytes":1200,"duration_ms":8.5,"rtt_ms":30}}"#,
                1_700_000_000 + (batch * size + i) as u64
            )
            .as_bytes(),
        );
        out.push(b'\n');
    }
    out
}

/// Sends `bodies` over one keep-alive connection; returns events acknowledged.
async fn client(addr: std::net::SocketAddr, bodies: Vec<Vec<u8>>) -> std::io::Result<u64> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut acknowledged = 0;
    let mut buf = vec![0u8; 64 * 1024];
    for body in bodies {
        let head = format!(
            "POST /v1/events HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&body).await?;
        let reply = read_response(&mut stream, &mut buf).await?;
        let reply: serde_json::Value = serde_json::from_slice(&reply).unwrap_or_default();
        acknowledged += reply["accepted"].as_u64().unwrap_or(0);
    }
    Ok(acknowledged)
}

/// Reads one HTTP/1.1 response (headers, then `Content-Length` bytes); returns its body.
async fn read_response(stream: &mut tokio::net::TcpStream, buf: &mut [u8]) -> std::io::Result<Vec<u8>> {
    let mut got = Vec::new();
    loop {
        let n = stream.read(buf).await?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "server closed"));
        }
        got.extend_from_slice(&buf[..n]);
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:").and_then(|v| v.trim().parse::<usize>().ok()))
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return Ok(got.split_off(end + 4));
            }
        }
    }
}

/// Each reader's pause between polls: a dashboard or a scraper polls, it does not spin (50
/// readers spinning on 2 cores measure CPU contention, not locking).
const POLL_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// One reader: polls `/v1/status` and `/metrics` in turn, every [`POLL_EVERY`], until `done`;
/// returns the reads.
async fn poller(
    addr: std::net::SocketAddr,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<u64> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut reads = 0;
    while !done.load(std::sync::atomic::Ordering::Relaxed) {
        let path = if reads % 2 == 0 { "/v1/status" } else { "/metrics" };
        stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n").as_bytes()).await?;
        if read_response(&mut stream, &mut buf).await.is_err() {
            return Ok(reads); // the server closed the connection
        }
        reads += 1;
        tokio::time::sleep(POLL_EVERY).await;
    }
    Ok(reads)
}

/// Events per second through the HTTP endpoint (the server `prewarm serve` runs), durable
/// before each reply, with `readers` connections polling the status and metrics meanwhile.
pub fn ingest_http(events: usize, batch: usize, connections: usize, readers: usize) -> anyhow::Result<f64> {
    ingest_http_into(None, events, batch, connections, readers)
}

/// [`ingest_http`] with the events going to `event_store` (ClickHouse) instead of SQLite.
pub fn ingest_http_into(
    event_store: Option<Box<dyn prewarm_trainer::store::EventStore + Send>>,
    events: usize,
    batch: usize,
    connections: usize,
    readers: usize,
) -> anyhow::Result<f64> {
    let dir = scratch("ingest")?;
    let config = TrainerConfig {
        ingest_token: Some(TOKEN.into()),
        data_dir: dir.clone(),
        max_body_bytes: 64 * 1024 * 1024,
        ..TrainerConfig::default()
    };
    let store = Store::open(&config.store_path())?;
    let mut state = AppState::new(config, store, ClassificationRules::default(), system_clock);
    if let Some(event_store) = event_store {
        state = state.with_events(event_store);
    }
    let batches = events / batch;
    let bodies: Vec<Vec<u8>> = (0..batches).map(|b| ndjson_batch(b, batch)).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (elapsed, acknowledged) = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(prewarm_trainer::web::serve(listener, state, std::future::pending()));
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let pollers: Vec<_> = (0..readers).map(|_| tokio::spawn(poller(addr, done.clone()))).collect();
        let mut per_client: Vec<Vec<Vec<u8>>> = vec![Vec::new(); connections];
        for (i, body) in bodies.into_iter().enumerate() {
            per_client[i % connections].push(body);
        }
        let started = Instant::now();
        let tasks: Vec<_> = per_client.into_iter().map(|bodies| tokio::spawn(client(addr, bodies))).collect();
        let mut acknowledged = 0;
        for task in tasks {
            acknowledged += task.await??;
        }
        let elapsed = started.elapsed().as_secs_f64();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        for poller in pollers {
            poller.await??;
        }
        anyhow::Ok((elapsed, acknowledged))
    })?;
    let _ = std::fs::remove_dir_all(&dir);
    anyhow::ensure!(acknowledged as usize == batches * batch, "only {acknowledged} events acknowledged");
    Ok(acknowledged as f64 / elapsed)
}

/// The baseline: rows/s of a raw rusqlite loop into the same table, same pragmas.
pub fn ingest_raw(rows: usize) -> anyhow::Result<f64> {
    let dir = scratch("raw")?;
    let mut store = Store::open(&dir.join("raw.sqlite"))?;
    let conn = store.connection();
    let started = Instant::now();
    let user = [7u8; 32];
    for chunk in 0..rows.div_ceil(10_000) {
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare(
                "INSERT INTO events (time, user, region, route, content, device, status, bytes, duration_ms, rtt_ms, \
                 utc_offset, cpu_ms, memory_mb_s, value) VALUES (?1, ?2, 'eu', 1, 3, 0, 200, 1200, 8.5, 30, NULL, NULL, NULL, NULL)",
            )?;
            for i in 0..10_000.min(rows - chunk * 10_000) {
                stmt.execute(rusqlite::params![1_700_000_000 + i as i64, &user[..]])?;
            }
        }
        tx.commit()?;
    }
    let rate = rows as f64 / started.elapsed().as_secs_f64();
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(rate)
}

/// Writes `copies` copies of a (possibly gzipped) log into one plain file.
pub fn repeat_log(source: &Path, copies: usize, out: &Path) -> anyhow::Result<u64> {
    let mut text = Vec::new();
    let file = std::fs::File::open(source)?;
    let mut reader: Box<dyn std::io::Read> = if source.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    std::io::Read::read_to_end(&mut reader, &mut text)?;
    let mut writer = std::io::BufWriter::new(std::fs::File::create(out)?);
    for _ in 0..copies {
        std::io::Write::write_all(&mut writer, &text)?;
    }
    std::io::Write::flush(&mut writer)?;
    Ok(text.len() as u64 * copies as u64)
}

/// Lines/s of `prewarm import` on a file (into a fresh on-disk store).
pub fn import_rate(log: &Path) -> anyhow::Result<(usize, f64)> {
    let dir = scratch("import")?;
    let config = TrainerConfig { salt: Some("bench-salt".into()), data_dir: dir.clone(), ..TrainerConfig::default() };
    let mut store = Store::open(&config.store_path())?;
    let summary = import_files(&[log], &mut store, &config, &ClassificationRules::default(), |_| {})?;
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    Ok((summary.lines, summary.lines as f64 / summary.seconds))
}

/// Lines/s of GoAccess on the same file, or None when it is not installed.
pub fn goaccess_rate(log: &Path, lines: usize) -> anyhow::Result<Option<f64>> {
    let dir = scratch("goaccess")?;
    let started = Instant::now();
    let status = std::process::Command::new("goaccess")
        .arg(log)
        .args(["--log-format=COMBINED", "--no-progress", "-o"])
        .arg(dir.join("report.json"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    let elapsed = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    match status {
        Ok(s) if s.success() => Ok(Some(lines as f64 / elapsed)),
        Ok(s) => anyhow::bail!("goaccess failed: {s}"),
        Err(_) => Ok(None),
    }
}

/// Seconds to fit MSTL + AutoETS and forecast a day for `count` hourly series of four weeks.
pub fn forecast_many(count: usize) -> anyhow::Result<f64> {
    use prewarm_trainer::forecast::model::{Method, forecast};
    let mut rng = prewarm_trainer::synth::SplitMix::new(3);
    let series: Vec<Vec<f64>> = (0..count)
        .map(|_| {
            let (level, phase, noise) = (50.0 + 500.0 * rng.unit(), 24.0 * rng.unit(), 0.1 + 0.2 * rng.unit());
            (0..24 * 28)
                .map(|h| {
                    let day = (std::f64::consts::TAU * ((h as f64 + phase) % 24.0) / 24.0).sin();
                    let weekend = if (h / 24) % 7 >= 5 { 0.7 } else { 1.0 };
                    (level * (1.0 + 0.5 * day) * weekend * (1.0 + noise * rng.normal())).max(0.0)
                })
                .collect()
        })
        .collect();
    // Series are independent: one thread per core.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = Instant::now();
    std::thread::scope(|scope| {
        let handles: Vec<_> = series
            .chunks(series.len().div_ceil(threads))
            .map(|chunk| {
                scope.spawn(move || {
                    chunk.iter().try_for_each(|h| forecast(Method::Mstl, h, &[24, 168], 24, 0.8).map(drop))
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join().map_err(|_| anyhow::anyhow!("a forecasting thread panicked"))?.map_err(anyhow::Error::from)
        })
    })?;
    Ok(started.elapsed().as_secs_f64())
}
