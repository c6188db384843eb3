//! Peak memory of a training on a large store, beside what loading the window's events alone
//! takes (what training did before it read one user at a time), in the same process and run:
//! `cargo bench -p prewarm-trainer --bench train_memory -- [--events 10000000] [--dir DIR]`.
//!
//! Synthetic users (the four standard kinds, one session each, in chunks) are inserted into a
//! SQLite store on disk (kept in `--dir` and topped up, not regenerated); then one training and
//! one `events_by_user` load each run in a fresh process that reports its peak resident set
//! (`VmHWM`, Linux).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use prewarm_shared::UnixSeconds;
use prewarm_shared::artifact::ModelVersion;
use prewarm_shared::classify::ClassificationRules;
use prewarm_trainer::config::TrainerConfig;
use prewarm_trainer::store::Store;
use prewarm_trainer::synth;

#[cfg(feature = "clickhouse")]
#[path = "../tests/support/clickhouse_server.rs"]
mod clickhouse_server;

/// 2024-01-01 00:00 UTC.
const START: u64 = 1_704_067_200;
const DAYS: u64 = 14;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let target: u64 = value("--events").map_or(Ok(10_000_000), |v| v.parse()).context("--events")?;
    let dir = value("--dir").map_or_else(|| std::env::temp_dir().join("prewarm-train-memory"), PathBuf::from);
    match value("--phase").as_deref() {
        Some("train") => return train(&dir),
        Some("load") => return load(&dir),
        #[cfg(feature = "clickhouse")]
        Some(phase @ ("train-clickhouse" | "load-clickhouse")) => {
            return in_clickhouse::measure(phase, &value("--url").context("--url")?);
        }
        _ => {}
    }
    if args.iter().any(|a| a == "--clickhouse") {
        #[cfg(feature = "clickhouse")]
        return in_clickhouse::fill_and_measure(target);
        #[cfg(not(feature = "clickhouse"))]
        anyhow::bail!(
            "--clickhouse needs the feature: cargo bench -p prewarm-trainer --features clickhouse --bench train_memory -- --clickhouse"
        );
    }
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("events.sqlite");
    let mut store = Store::open(&path)?;
    let kinds = synth::standard_kinds();
    let started = Instant::now();
    let mut seed = store.count_events()? + 1;
    while store.count_events()? < target {
        // One session each: many users with few requests, as real traffic has.
        let (events, _) = synth::generate(&kinds, "eu", 60, 5_000, 1, START, DAYS, seed);
        store.insert_events(&events)?;
        seed += 1;
    }
    let events = store.count_events()?;
    let users: u64 = store.regions()?.iter().map(|(_, n)| n).sum();
    println!(
        "store: {events} events of {users} users over {DAYS} days ({:.0} s to generate and insert), {}",
        started.elapsed().as_secs_f64(),
        path.display()
    );
    drop(store);
    // Each measured in a fresh process, so neither inherits the other's (or generation's) heap.
    let phase = |name: &str| -> Result<()> {
        let status =
            std::process::Command::new(std::env::current_exe()?).args(["--phase", name, "--dir"]).arg(&dir).status()?;
        anyhow::ensure!(status.success(), "the {name} phase failed");
        Ok(())
    };
    phase("train")?;
    phase("load")?;
    Ok(())
}

/// A training on the store, as `prewarm train` runs it.
fn train(dir: &std::path::Path) -> Result<()> {
    let store = Store::open(&dir.join("events.sqlite"))?;
    let config = TrainerConfig { data_dir: dir.to_owned(), ..TrainerConfig::default() };
    let before = peak_kib()?;
    let started = Instant::now();
    let trained = prewarm_trainer::train::train(
        &store,
        &config,
        &ClassificationRules::default(),
        &[],
        ModelVersion(1),
        UnixSeconds(START + DAYS * 86_400),
    )?;
    let region = &trained[0];
    println!(
        "training: {:.0} s, peak RSS {} MiB (process before it: {} MiB); {} profiles; {}",
        started.elapsed().as_secs_f64(),
        peak_kib()? / 1024,
        before / 1024,
        region.model.profiles.len(),
        region.quality.k_reason
    );
    Ok(())
}

/// The baseline: loading the window's events, what training did first before it read one
/// user at a time (and nothing else).
fn load(dir: &std::path::Path) -> Result<()> {
    let store = Store::open(&dir.join("events.sqlite"))?;
    let before = peak_kib()?;
    let started = Instant::now();
    let loaded = store.events_by_user(None)?.len();
    println!(
        "baseline, loading the window's {loaded} events (as training did before): {:.0} s, peak RSS {} MiB \
         (process before it: {} MiB)",
        started.elapsed().as_secs_f64(),
        peak_kib()? / 1024,
        before / 1024
    );
    Ok(())
}

#[cfg(feature = "clickhouse")]
mod in_clickhouse {
    use super::*;
    use prewarm_trainer::store::EventStore;
    use prewarm_trainer::store::clickhouse::{ClickHouseConfig, ClickHouseStore};

    fn config(url: &str) -> ClickHouseConfig {
        ClickHouseConfig { url: url.into(), database: "train_memory".into(), validation: false, ..Default::default() }
    }

    /// Starts a server, inserts `target` events of the same synthetic users, and measures
    /// each phase in a fresh process.
    pub(super) fn fill_and_measure(target: u64) -> Result<()> {
        let dir = std::env::temp_dir().join(format!("prewarm-train-memory-clickhouse-{}", std::process::id()));
        let server = clickhouse_server::Server::start(&dir);
        let url = server.config().url;
        let mut store = ClickHouseStore::open(&config(&url))?;
        let kinds = synth::standard_kinds();
        let started = Instant::now();
        let (mut inserted, mut seed) = (0u64, 1);
        while inserted < target {
            let (events, _) = synth::generate(&kinds, "eu", 60, 5_000, 1, START, DAYS, seed);
            inserted += store.insert_batch(None, &events)? as u64;
            seed += 1;
        }
        let users: u64 = store.users_per_region_before(u64::MAX)?.values().sum();
        println!(
            "ClickHouse store: {} events of {users} users over {DAYS} days ({:.0} s to generate and insert)",
            store.event_count()?,
            started.elapsed().as_secs_f64()
        );
        drop(store);
        for phase in ["train-clickhouse", "load-clickhouse"] {
            let status = std::process::Command::new(std::env::current_exe()?)
                .args(["--phase", phase, "--url", &url])
                .status()?;
            anyhow::ensure!(status.success(), "the {phase} phase failed");
        }
        drop(server);
        Ok(())
    }

    pub(super) fn measure(phase: &str, url: &str) -> Result<()> {
        let events = ClickHouseStore::open(&config(url))?;
        let before = peak_kib()?;
        let started = Instant::now();
        if phase == "train-clickhouse" {
            let dir = std::env::temp_dir().join(format!("prewarm-train-memory-ch-data-{}", std::process::id()));
            let config = TrainerConfig { data_dir: dir.clone(), ..TrainerConfig::default() };
            let trained = prewarm_trainer::train::train_from(
                &Store::in_memory()?,
                &events,
                &config,
                &ClassificationRules::default(),
                &[],
                ModelVersion(1),
                UnixSeconds(START + DAYS * 86_400),
                &mut Default::default(),
            )?;
            let _ = std::fs::remove_dir_all(dir);
            println!(
                "training from ClickHouse: {:.0} s, peak RSS {} MiB (process before it: {} MiB); {} profiles",
                started.elapsed().as_secs_f64(),
                peak_kib()? / 1024,
                before / 1024,
                trained.first().map_or(0, |r| r.model.profiles.len())
            );
        } else {
            let mut loaded = Vec::new();
            events.each_event_by_user_before(START + DAYS * 86_400, &mut |e| loaded.push(e))?;
            println!(
                "baseline, collecting the window's {} events from ClickHouse into memory: {:.0} s, peak RSS {} MiB \
                 (process before it: {} MiB)",
                loaded.len(),
                started.elapsed().as_secs_f64(),
                peak_kib()? / 1024,
                before / 1024
            );
        }
        Ok(())
    }
}

/// The process's peak resident set, in KiB.
fn peak_kib() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/self/status")
}
