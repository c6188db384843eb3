//! The trainer's figures, each against a baseline measured in the same run (`cargo xtask bench`
//! runs it; `cargo bench -p prewarm-trainer --bench ingest -- [--log FILE] [--copies N]
//! [--events N] [--batch N]`): ingest over HTTP against a raw rusqlite loop, ingest beside
//! readers against ingest alone, import against GoAccess, and the forecasting rate; with
//! `--features clickhouse` and `-- --clickhouse`, ingest into ClickHouse against the raw
//! `clickhouse` insert loop instead. Figures are printed, never asserted.

#[cfg(feature = "clickhouse")]
mod clickhouse;
#[cfg(feature = "clickhouse")]
#[path = "../../tests/support/clickhouse_server.rs"]
mod clickhouse_server;
mod measure;

use std::path::PathBuf;

use anyhow::{Context, Result};

/// `--name value` from the command line (cargo passes `--bench` too; it is ignored).
fn option(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn number(args: &[String], name: &str, default: usize) -> Result<usize> {
    option(args, name).map_or(Ok(default), |v| v.parse().with_context(|| format!("{name} {v:?} is not a number")))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--clickhouse") {
        #[cfg(feature = "clickhouse")]
        return clickhouse::compare(number(&args, "--events", 200_000)?, number(&args, "--batch", 1_000)?);
        #[cfg(not(feature = "clickhouse"))]
        anyhow::bail!(
            "--clickhouse needs the feature: cargo bench -p prewarm-trainer --features clickhouse --bench ingest -- --clickhouse"
        );
    }
    let log = option(&args, "--log").map(PathBuf::from);
    // Run from the crate's directory by cargo: the default log is the repository's sample.
    let log =
        log.unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/apache_logs/access.log.gz"));
    ingest_and_import(
        log,
        number(&args, "--copies", 100)?,
        number(&args, "--events", 200_000)?,
        number(&args, "--batch", 1_000)?,
    )
}

fn ingest_and_import(log: PathBuf, copies: usize, events: usize, batch: usize) -> Result<()> {
    anyhow::ensure!(batch > 0 && batch <= events, "--batch must be between 1 and --events");
    // Requests of `--batch` events, and of 10,000 (the baseline's transaction size: the same
    // unit of durability). Rounds alternate so that the machine's drift hits every contender.
    let batches = if batch == 10_000 { vec![batch] } else { vec![batch, 10_000.min(events)] };
    println!("ingest: {events} events as NDJSON over 4 keep-alive connections, 3 alternating rounds, medians");
    let mut raw = Vec::new();
    let mut http: Vec<Vec<f64>> = vec![Vec::new(); batches.len()];
    for _ in 0..3 {
        raw.push(measure::ingest_raw(events)?);
        for (rates, &size) in http.iter_mut().zip(&batches) {
            rates.push(measure::ingest_http(events, size, 4, 0)?);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let raw = median(&mut raw);
    println!("  raw rusqlite loop (WAL, synchronous=FULL, 10k-row transactions): {raw:>10.0} rows/s");
    for (rates, size) in http.iter_mut().zip(&batches) {
        let rate = median(rates);
        println!(
            "  POST /v1/events, {size:>6}-event requests, durable before the reply: {rate:>10.0} events/s  ratio {:.2} (target >= 0.5)",
            rate / raw
        );
    }

    // Reads never block ingest: the same ingest with 50 connections polling /v1/status and
    // /metrics, in rounds paired with the ingest alone (alternating which goes first).
    println!(
        "\ningest beside 50 readers each polling /v1/status or /metrics 4 times a second ({batch}-event requests), 5 paired rounds"
    );
    let mut ratios = Vec::new();
    for round in 0..5 {
        let (alone, beside) = if round % 2 == 0 {
            let alone = measure::ingest_http(events, batch, 4, 0)?;
            (alone, measure::ingest_http(events, batch, 4, 50)?)
        } else {
            let beside = measure::ingest_http(events, batch, 4, 50)?;
            (measure::ingest_http(events, batch, 4, 0)?, beside)
        };
        println!("  round {}: alone {alone:>9.0} events/s, with 50 readers {beside:>9.0} events/s", round + 1);
        ratios.push(beside / alone);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "  ratio with/without readers: median {:.2} (min {:.2}, max {:.2}; target >= 0.9)",
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1]
    );

    let file = std::env::temp_dir().join(format!("prewarm-bench-{}.log", std::process::id()));
    let bytes = measure::repeat_log(&log, copies, &file).with_context(|| format!("reading {}", log.display()))?;
    println!("\nimport: {} repeated {copies}x ({} MB)", log.display(), bytes / 1_000_000);
    let (lines, ours) = measure::import_rate(&file)?;
    println!("  prewarm import (parse, classify, hash, store): {ours:>10.0} lines/s ({lines} lines)");
    match measure::goaccess_rate(&file, lines)? {
        Some(goaccess) => {
            println!("  GoAccess --log-format=COMBINED:                {goaccess:>10.0} lines/s");
            println!("  ratio: {:.1}x (target >= 5x)", ours / goaccess);
        }
        None => println!("  GoAccess is not installed (apt-get install goaccess): no ratio"),
    }
    let _ = std::fs::remove_file(&file);

    let seconds = measure::forecast_many(1_000)?;
    println!("\nforecast: MSTL(24, 168) + AutoETS trend, fit and forecast 24 h for 1,000 hourly series of 4 weeks");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("  {seconds:.2} s on {threads} threads ({:.1} ms of wall time per series)", seconds);
    Ok(())
}
