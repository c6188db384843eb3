//! `prewarm bench` and `prewarm bench-kmeans`: the trainer's figures against baselines measured
//! in the same run (the measurements are in [`measure`]).

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::measure;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// The access log to import (repeated `--copies` times); default: testdata's sample.
    #[arg(long)]
    pub log: Option<PathBuf>,
    #[arg(long, default_value_t = 100)]
    pub copies: usize,
    /// Events sent through the HTTP endpoint.
    #[arg(long, default_value_t = 200_000)]
    pub events: usize,
    /// Events per request (the baseline commits 10,000 rows per transaction).
    #[arg(long, default_value_t = 1_000)]
    pub batch: usize,
}

pub fn bench(args: &BenchArgs) -> Result<()> {
    let &BenchArgs { ref log, copies, events, batch } = args;
    ingest_and_import(log.clone(), copies, events, batch)
}

#[derive(clap::Args)]
pub struct BenchKmeansArgs {
    pub data: PathBuf,
    #[arg(long, default_value_t = 16)]
    pub columns: usize,
    #[arg(long, default_value_t = 16)]
    pub k: usize,
    #[arg(long, default_value = "1,3")]
    pub runs: String,
}

pub fn bench_kmeans(args: &BenchKmeansArgs) -> Result<()> {
    let &BenchKmeansArgs { ref data, columns, k, ref runs } = args;
    let matrix = measure::read_f64_matrix(data, columns)?;
    println!("k-means, k = {k}, on {} x {columns} ({})", matrix.nrows(), data.display());
    for runs in runs.split(',').filter_map(|r| r.trim().parse::<usize>().ok()) {
        let (seconds, inertia) = measure::kmeans(&matrix, k, runs)?;
        println!(
            "  prewarm (greedy k-means++ on a 50k sample, {runs} run(s), linfa Lloyd): {seconds:>7.2} s  inertia {inertia:.0}"
        );
    }
    Ok(())
}

fn ingest_and_import(log: Option<PathBuf>, copies: usize, events: usize, batch: usize) -> Result<()> {
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

    let log = log.unwrap_or_else(|| PathBuf::from("testdata/apache_logs/access.log.gz"));
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
