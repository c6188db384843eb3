//! k-means on the reference data set (trainer/benches/blobs.py writes it), timed with its
//! inertia, for the comparison with scikit-learn (`sklearn_kmeans.py`) that `cargo xtask bench`
//! runs beside it: `cargo bench -p prewarm-trainer --bench kmeans -- FILE [--k 16] [--runs 1,3]`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let data = args
        .iter()
        .enumerate()
        .find(|(i, a)| !a.starts_with("--") && (*i == 0 || !args[i - 1].starts_with("--")))
        .map(|(_, a)| PathBuf::from(a))
        .context("give the matrix file (trainer/benches/blobs.py writes it)")?;
    let columns: usize = value("--columns").map_or(Ok(16), |v| v.parse()).context("--columns")?;
    let k: usize = value("--k").map_or(Ok(16), |v| v.parse()).context("--k")?;
    let runs = value("--runs").unwrap_or_else(|| "1,3".into());
    let matrix = read_f64_matrix(&data, columns)?;
    println!("k-means, k = {k}, on {} x {columns} ({})", matrix.nrows(), data.display());
    for runs in runs.split(',').filter_map(|r| r.trim().parse::<usize>().ok()) {
        let (seconds, inertia) = kmeans(&matrix, k, runs)?;
        println!(
            "  prewarm (greedy k-means++ on a 50k sample, {runs} run(s), linfa Lloyd): {seconds:>7.2} s  inertia {inertia:.0}"
        );
    }
    Ok(())
}

/// Reads a raw little-endian f64 matrix with `columns` columns (the reference data set).
fn read_f64_matrix(path: &Path, columns: usize) -> Result<ndarray::Array2<f64>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(bytes.len() % (8 * columns) == 0, "{} is not a matrix of {columns} f64 columns", path.display());
    let values: Vec<f64> =
        bytes.chunks_exact(8).map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])).collect();
    Ok(ndarray::Array2::from_shape_vec((values.len() / columns, columns), values)?)
}

/// Time and inertia of the trainer's k-means (as configured for training) on a matrix.
fn kmeans(data: &ndarray::Array2<f64>, k: usize, runs: usize) -> Result<(f64, f64)> {
    let config = prewarm_trainer::config::ProfileConfig { runs, ..Default::default() };
    let started = Instant::now();
    let clustering = prewarm_trainer::profile::cluster::kmeans(data, k, &config, config.seed)?;
    Ok((started.elapsed().as_secs_f64(), clustering.inertia))
}
