//! Clustering: k-means (linfa) with k chosen by silhouette, and a hierarchical option that
//! merges k-means micro-clusters with Ward's criterion.

use linfa::DatasetBase;
use linfa::prelude::*;
use linfa_clustering::{KMeans, KMeansInit};
use ndarray::{Array1, Array2, ArrayView1, Axis};
use rand_xoshiro::Xoshiro256Plus;
use rand_xoshiro::rand_core::SeedableRng;

use crate::config::{ClusterMethod, ProfileConfig};

/// A partition of the data.
#[derive(Debug, Clone)]
pub struct Clustering {
    /// k × d, in the same (standardised) units as the data.
    pub centroids: Array2<f64>,
    pub labels: Vec<usize>,
    pub inertia: f64,
    /// The silhouette of this partition on the sample (None when not computed).
    pub silhouette: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{points} points cannot make {k} clusters")]
    TooFewPoints { points: usize, k: usize },
    #[error("k-means failed: {0}")]
    KMeans(String),
}

fn sq(a: ArrayView1<'_, f64>, b: ArrayView1<'_, f64>) -> f64 {
    a.iter().zip(b.iter()).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Nearest centroid of each row, and the total squared distance.
pub fn assign(data: &Array2<f64>, centroids: &Array2<f64>) -> (Vec<usize>, f64) {
    let mut inertia = 0.0;
    let labels = data
        .rows()
        .into_iter()
        .map(|row| {
            let (best, d) = centroids
                .rows()
                .into_iter()
                .enumerate()
                .map(|(i, c)| (i, sq(row, c)))
                .fold((0, f64::INFINITY), |acc, x| if x.1 < acc.1 { x } else { acc });
            inertia += d;
            best
        })
        .collect();
    (labels, inertia)
}

/// Above this many points, k-means is seeded on a sample and then refined on all the data.
const SAMPLE_ABOVE: usize = 100_000;
/// The sample's size: big enough to place every cluster a profile could matter for.
const SAMPLE_SIZE: usize = 50_000;

fn linfa_fit(
    data: &Array2<f64>,
    k: usize,
    config: &ProfileConfig,
    seed: u64,
    init: KMeansInit<f64>,
    runs: usize,
) -> Result<Array2<f64>, ClusterError> {
    let total_variance: f64 = data.var_axis(Axis(0), 0.0).sum();
    let tolerance = (config.relative_tolerance * total_variance).max(f64::EPSILON);
    let dataset = DatasetBase::from(data.clone());
    let model = KMeans::params_with_rng(k, Xoshiro256Plus::seed_from_u64(seed))
        .init_method(init)
        .n_runs(runs)
        .max_n_iterations(config.max_iterations)
        .tolerance(tolerance)
        .fit(&dataset)
        .map_err(|e| ClusterError::KMeans(e.to_string()))?;
    Ok(model.centroids().clone())
}

/// k-means with linfa: k-means++ initialisation, `runs` restarts (the lowest inertia wins),
/// and a tolerance relative to the data's total variance (linfa's default is absolute, which
/// is slow on large data). On large data the restarts run on a sample, and the best seeding is
/// refined on every point: restarts are where k-means escapes poor local minima, and they
/// need not see a million points to do it.
pub fn kmeans(data: &Array2<f64>, k: usize, config: &ProfileConfig, seed: u64) -> Result<Clustering, ClusterError> {
    if data.nrows() < k {
        return Err(ClusterError::TooFewPoints { points: data.nrows(), k });
    }
    let centroids = if data.nrows() > SAMPLE_ABOVE {
        let stride = data.nrows() / SAMPLE_SIZE;
        let rows: Vec<usize> = (0..data.nrows()).step_by(stride.max(1)).take(SAMPLE_SIZE).collect();
        let sample = data.select(Axis(0), &rows);
        let seeded = linfa_fit(&sample, k, config, seed, KMeansInit::KMeansPlusPlus, config.runs)?;
        linfa_fit(data, k, config, seed, KMeansInit::Precomputed(seeded), 1)?
    } else {
        linfa_fit(data, k, config, seed, KMeansInit::KMeansPlusPlus, config.runs)?
    };
    let (labels, inertia) = assign(data, &centroids);
    Ok(Clustering { centroids, labels, inertia, silhouette: None })
}

/// Mean silhouette over a deterministic sample of at most `sample` points.
pub fn silhouette(data: &Array2<f64>, labels: &[usize], k: usize, sample: usize) -> f64 {
    let n = data.nrows();
    let stride = (n / sample.max(1)).max(1);
    let picked: Vec<usize> = (0..n).step_by(stride).take(sample).collect();
    let mut total = 0.0;
    let mut counted = 0usize;
    for &i in &picked {
        let mut sums = vec![0.0; k];
        let mut counts = vec![0usize; k];
        for &j in &picked {
            if i != j {
                sums[labels[j]] += sq(data.row(i), data.row(j)).sqrt();
                counts[labels[j]] += 1;
            }
        }
        let own = labels[i];
        if counts[own] == 0 {
            continue;
        }
        let a = sums[own] / counts[own] as f64;
        let b = (0..k)
            .filter(|&c| c != own && counts[c] > 0)
            .map(|c| sums[c] / counts[c] as f64)
            .fold(f64::INFINITY, f64::min);
        if b.is_finite() {
            total += (b - a) / a.max(b).max(f64::EPSILON);
            counted += 1;
        }
    }
    if counted == 0 { 0.0 } else { total / counted as f64 }
}

/// Merges micro-clusters pairwise by Ward's criterion until `k` remain.
fn ward_merge(micro: &Clustering, k: usize) -> Array2<f64> {
    let d = micro.centroids.ncols();
    let mut sizes = vec![0usize; micro.centroids.nrows()];
    for &l in &micro.labels {
        sizes[l] += 1;
    }
    let mut clusters: Vec<(Array1<f64>, f64)> = micro
        .centroids
        .rows()
        .into_iter()
        .zip(&sizes)
        .filter(|(_, s)| **s > 0)
        .map(|(c, s)| (c.to_owned(), *s as f64))
        .collect();
    while clusters.len() > k {
        let mut best = (0, 1, f64::INFINITY);
        for i in 0..clusters.len() {
            for j in i + 1..clusters.len() {
                let (ci, ni) = &clusters[i];
                let (cj, nj) = &clusters[j];
                let cost = ni * nj / (ni + nj) * sq(ci.view(), cj.view());
                if cost < best.2 {
                    best = (i, j, cost);
                }
            }
        }
        let (i, j, _) = best;
        let (cj, nj) = clusters.swap_remove(j);
        let (ci, ni) = &mut clusters[i];
        *ci = (&*ci * *ni + &cj * nj) / (*ni + nj);
        *ni += nj;
    }
    let mut out = Array2::zeros((clusters.len(), d));
    for (row, (c, _)) in out.rows_mut().into_iter().zip(&clusters) {
        row.into_iter().zip(c.iter()).for_each(|(o, v)| *o = *v);
    }
    out
}

/// Clusters at each k in the configured range and keeps the best silhouette.
pub fn choose_k(data: &Array2<f64>, config: &ProfileConfig) -> Result<Clustering, ClusterError> {
    let k_max = config.k_max.min(data.nrows().saturating_sub(1)).max(1);
    let k_min = config.k_min.min(k_max);
    let micro = match config.method {
        ClusterMethod::Hierarchical => Some(kmeans(data, (4 * k_max).min(data.nrows()), config, config.seed)?),
        ClusterMethod::Kmeans => None,
    };
    let mut best: Option<Clustering> = None;
    for k in k_min..=k_max {
        let mut candidate = match &micro {
            Some(micro) => {
                let centroids = ward_merge(micro, k);
                let (labels, inertia) = assign(data, &centroids);
                Clustering { centroids, labels, inertia, silhouette: None }
            }
            None => kmeans(data, k, config, config.seed + k as u64)?,
        };
        let score = if k == 1 { 0.0 } else { silhouette(data, &candidate.labels, k, config.silhouette_sample) };
        candidate.silhouette = Some(score);
        if best.as_ref().is_none_or(|b| score > b.silhouette.unwrap_or(f64::NEG_INFINITY)) {
            best = Some(candidate);
        }
    }
    best.ok_or(ClusterError::TooFewPoints { points: data.nrows(), k: k_min })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points around `k` well-separated centres in `d` dimensions (deterministic).
    pub(crate) fn blobs(k: usize, per: usize, d: usize) -> (Array2<f64>, Vec<usize>) {
        let mut seed = 11u64;
        let mut noise = move || {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            ((seed >> 33) as f64 / (1u64 << 31) as f64) - 0.5
        };
        let mut data = Array2::zeros((k * per, d));
        let mut truth = Vec::new();
        for c in 0..k {
            for p in 0..per {
                for j in 0..d {
                    let centre = if j % k == c { 8.0 } else { 0.0 } + (c as f64) * if j == 0 { 3.0 } else { 0.0 };
                    data[[c * per + p, j]] = centre + noise();
                }
                truth.push(c);
            }
        }
        (data, truth)
    }

    fn agreement(labels: &[usize], truth: &[usize]) -> bool {
        // Same partition up to renaming: every pair agrees on "same cluster or not".
        let n = labels.len();
        (0..n).step_by(7).all(|i| (0..n).step_by(5).all(|j| (labels[i] == labels[j]) == (truth[i] == truth[j])))
    }

    #[test]
    fn silhouette_picks_the_true_k() {
        for true_k in [3, 5] {
            let (data, truth) = blobs(true_k, 60, 6);
            let config = ProfileConfig { k_min: 2, k_max: 7, ..ProfileConfig::default() };
            let c = choose_k(&data, &config).expect("clusters");
            assert_eq!(c.centroids.nrows(), true_k);
            assert!(agreement(&c.labels, &truth));
        }
    }

    #[test]
    fn hierarchical_merging_finds_the_same_partition() {
        let (data, truth) = blobs(4, 50, 6);
        let config =
            ProfileConfig { k_min: 2, k_max: 6, method: ClusterMethod::Hierarchical, ..ProfileConfig::default() };
        let c = choose_k(&data, &config).expect("clusters");
        assert_eq!(c.centroids.nrows(), 4);
        assert!(agreement(&c.labels, &truth));
    }
}
