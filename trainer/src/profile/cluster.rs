//! Clustering: k-means (linfa) with k chosen by silhouette, and a hierarchical option that
//! merges k-means micro-clusters with Ward's criterion.

use linfa::DatasetBase;
use linfa::prelude::*;
use linfa_clustering::{KMeans, KMeansInit};
use ndarray::{Array1, Array2, ArrayView1, Axis};
use rand_xoshiro::Xoshiro256Plus;
use rand_xoshiro::rand_core::{RngCore, SeedableRng};

use super::config::{ClusterMethod, ProfileConfig};

/// A partition of the data.
#[derive(Debug, Clone)]
pub struct Clustering {
    /// k × d, in the same (standardised) units as the data.
    pub centroids: Array2<f64>,
    /// Each point's cluster.
    pub labels: Vec<usize>,
    /// Sum of squared distances to the assigned centroids.
    pub inertia: f64,
    /// The silhouette of this partition on the sample (None when not computed).
    pub silhouette: Option<f64>,
    /// Every candidate k tried and its silhouette (empty when k was not chosen).
    pub candidates: Vec<(usize, f64)>,
}

impl Clustering {
    /// Why this k: the candidates' silhouettes and the rule that picked it.
    pub fn k_reason(&self, tolerance: f64) -> String {
        let k = self.centroids.nrows();
        let Some((best_k, best)) = self.candidates.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1)) else {
            return format!("k = {k}: the only candidate");
        };
        let mine = self.silhouette.unwrap_or(0.0);
        if best_k == k {
            format!("k = {k}: best silhouette {mine:.2} over k = {}..={}", self.k_range().0, self.k_range().1)
        } else {
            format!(
                "k = {k}: silhouette {mine:.2}, the smallest k within {tolerance} of the best ({best:.2} at k = {best_k})"
            )
        }
    }

    fn k_range(&self) -> (usize, usize) {
        let ks = self.candidates.iter().map(|c| c.0);
        (ks.clone().min().unwrap_or(0), ks.max().unwrap_or(0))
    }
}

#[derive(Debug, thiserror::Error)]
/// Why clustering failed.
#[allow(missing_docs, reason = "a variant's fields are named in its message")]
pub enum ClusterError {
    #[error("{points} points cannot make {k} clusters")]
    /// Fewer points than clusters asked for.
    TooFewPoints { points: usize, k: usize },
    /// The k-means library failed.
    #[error("k-means failed: {0}")]
    KMeans(String),
}

fn sq(a: ArrayView1<'_, f64>, b: ArrayView1<'_, f64>) -> f64 {
    a.iter().zip(b.iter()).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Nearest centroid of each row, and the total squared distance. Rows are split across the
/// cores: this pass runs after every fit and over every user.
pub fn assign(data: &Array2<f64>, centroids: &Array2<f64>) -> (Vec<usize>, f64) {
    let nearest = |rows: ndarray::ArrayView2<'_, f64>| -> (Vec<usize>, f64) {
        let mut inertia = 0.0;
        let labels = rows
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
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads == 1 || data.nrows() < 20_000 {
        return nearest(data.view());
    }
    let chunk = data.nrows().div_ceil(threads);
    let parts: Vec<(Vec<usize>, f64)> = std::thread::scope(|scope| {
        let handles: Vec<_> =
            data.axis_chunks_iter(Axis(0), chunk).map(|rows| scope.spawn(move || nearest(rows))).collect();
        // A panic in this arithmetic would be a bug; surface it on the caller's thread.
        handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    });
    let mut labels = Vec::with_capacity(data.nrows());
    let mut inertia = 0.0;
    for (part, part_inertia) in parts {
        labels.extend(part);
        inertia += part_inertia;
    }
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
) -> Result<Array2<f64>, ClusterError> {
    let total_variance: f64 = data.var_axis(Axis(0), 0.0).sum();
    let tolerance = (config.relative_tolerance * total_variance).max(f64::EPSILON);
    let dataset = DatasetBase::from(data.view());
    let model = KMeans::params_with_rng(k, Xoshiro256Plus::seed_from_u64(seed))
        .init_method(init)
        .n_runs(1)
        .max_n_iterations(config.max_iterations)
        .tolerance(tolerance)
        .fit(&dataset)
        .map_err(|e| ClusterError::KMeans(e.to_string()))?;
    Ok(model.centroids().clone())
}

/// A uniform draw in [0, 1) from the top 53 bits.
fn unit(rng: &mut Xoshiro256Plus) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// Greedy k-means++ seeding (Arthur & Vassilvitskii's D² sampling, choosing the best of
/// 2 + ln k candidates at each step, as scikit-learn does). Plain k-means++, which is what
/// linfa offers, regularly puts two seeds in one true cluster and none in another on data with
/// many clusters, and Lloyd's iterations cannot undo that; the greedy variant rarely does.
fn greedy_plus_plus(data: &Array2<f64>, k: usize, rng: &mut Xoshiro256Plus) -> Array2<f64> {
    let n = data.nrows();
    let trials = 2 + (k as f64).ln().floor() as usize;
    let mut centroids = Array2::zeros((k, data.ncols()));
    let first = (rng.next_u64() % n as u64) as usize;
    centroids.row_mut(0).assign(&data.row(first));
    let mut closest: Vec<f64> = data.rows().into_iter().map(|row| sq(row, data.row(first))).collect();
    let mut candidate_closest = vec![0.0; n];
    let mut best_closest = vec![0.0; n];
    for c in 1..k {
        let mut cumulative = Vec::with_capacity(n);
        let mut total = 0.0;
        for d in &closest {
            total += d;
            cumulative.push(total);
        }
        let mut best: Option<(f64, usize)> = None;
        for _ in 0..trials {
            let target = unit(rng) * total;
            let candidate = cumulative.partition_point(|&s| s <= target).min(n - 1);
            let point = data.row(candidate);
            let mut potential = 0.0;
            for ((slot, row), old) in candidate_closest.iter_mut().zip(data.rows()).zip(&closest) {
                *slot = sq(row, point).min(*old);
                potential += *slot;
            }
            if best.is_none_or(|(p, _)| potential < p) {
                best = Some((potential, candidate));
                std::mem::swap(&mut best_closest, &mut candidate_closest);
            }
        }
        let Some((_, chosen)) = best else { break };
        centroids.row_mut(c).assign(&data.row(chosen));
        std::mem::swap(&mut closest, &mut best_closest);
    }
    centroids
}

/// Seeds `runs` times with greedy k-means++ and runs Lloyd's iterations (linfa) from each;
/// the lowest inertia wins.
fn best_of_runs(data: &Array2<f64>, k: usize, config: &ProfileConfig, seed: u64) -> Result<Array2<f64>, ClusterError> {
    let mut rng = Xoshiro256Plus::seed_from_u64(seed);
    let mut best: Option<(f64, Array2<f64>)> = None;
    for _ in 0..config.runs.max(1) {
        let seeds = greedy_plus_plus(data, k, &mut rng);
        let centroids = linfa_fit(data, k, config, seed, KMeansInit::Precomputed(seeds))?;
        let (_, inertia) = assign(data, &centroids);
        if best.as_ref().is_none_or(|(b, _)| inertia < *b) {
            best = Some((inertia, centroids));
        }
    }
    best.map(|(_, c)| c).ok_or(ClusterError::TooFewPoints { points: data.nrows(), k })
}

/// k-means: greedy k-means++ seeding, linfa's Lloyd iterations, `runs` restarts (the lowest
/// inertia wins), and a tolerance relative to the data's total variance (linfa's default is
/// absolute, which is slow on large data). On large data the restarts run on a sample, and the
/// best one is refined on every point: restarts are where k-means escapes poor local minima,
/// and they need not see a million points to do it.
pub fn kmeans(data: &Array2<f64>, k: usize, config: &ProfileConfig, seed: u64) -> Result<Clustering, ClusterError> {
    if data.nrows() < k {
        return Err(ClusterError::TooFewPoints { points: data.nrows(), k });
    }
    let centroids = if data.nrows() > SAMPLE_ABOVE {
        let stride = data.nrows() / SAMPLE_SIZE;
        let rows: Vec<usize> = (0..data.nrows()).step_by(stride.max(1)).take(SAMPLE_SIZE).collect();
        let sample = data.select(Axis(0), &rows);
        let seeded = best_of_runs(&sample, k, config, seed)?;
        linfa_fit(data, k, config, seed, KMeansInit::Precomputed(seeded))?
    } else {
        best_of_runs(data, k, config, seed)?
    };
    let (labels, inertia) = assign(data, &centroids);
    Ok(Clustering { centroids, labels, inertia, silhouette: None, candidates: Vec::new() })
}

/// The pairwise distances of a deterministic sample of at most `sample` points: computed
/// once, the silhouette of every candidate k reads them.
#[derive(Debug, Clone)]
pub struct SampleDistances {
    picked: Vec<usize>,
    /// Row-major, `picked.len()²`.
    distances: Vec<f32>,
}

impl SampleDistances {
    /// Pairwise distances of a uniform sample of `sample` points of `data` (for silhouettes).
    pub fn new(data: &Array2<f64>, sample: usize) -> Self {
        let n = data.nrows();
        let stride = (n / sample.max(1)).max(1);
        let picked: Vec<usize> = (0..n).step_by(stride).take(sample).collect();
        let m = picked.len();
        let mut distances = vec![0.0f32; m * m];
        for (x, &i) in picked.iter().enumerate() {
            for (y, &j) in picked.iter().enumerate().skip(x + 1) {
                let d = sq(data.row(i), data.row(j)).sqrt() as f32;
                distances[x * m + y] = d;
                distances[y * m + x] = d;
            }
        }
        Self { picked, distances }
    }

    /// Mean silhouette of `labels` (one per data point) over the sample.
    pub fn silhouette(&self, labels: &[usize], k: usize) -> f64 {
        let m = self.picked.len();
        let (mut total, mut counted) = (0.0, 0usize);
        for x in 0..m {
            let mut sums = vec![0.0f64; k];
            let mut counts = vec![0usize; k];
            for y in (0..m).filter(|&y| y != x) {
                let label = labels[self.picked[y]];
                sums[label] += f64::from(self.distances[x * m + y]);
                counts[label] += 1;
            }
            let own = labels[self.picked[x]];
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
}

/// Mean silhouette over a deterministic sample of at most `sample` points.
pub fn silhouette(data: &Array2<f64>, labels: &[usize], k: usize, sample: usize) -> f64 {
    SampleDistances::new(data, sample).silhouette(labels, k)
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

/// Clusters at each k in the configured range and keeps the smallest k whose silhouette is
/// within `k_tolerance` of the best: near-equal silhouettes differ by the sample's noise, and a
/// split that buys no separation only divides the demand each forecast sees.
pub fn choose_k(data: &Array2<f64>, config: &ProfileConfig) -> Result<Clustering, ClusterError> {
    let k_max = config.k_max.min(data.nrows().saturating_sub(1)).max(1);
    let k_min = config.k_min.min(k_max);
    let micro = match config.method {
        ClusterMethod::Hierarchical => Some(kmeans(data, (4 * k_max).min(data.nrows()), config, config.seed)?),
        ClusterMethod::Kmeans => None,
    };
    let distances = (k_max > 1).then(|| SampleDistances::new(data, config.silhouette_sample));
    let mut tried = Vec::new();
    for k in k_min..=k_max {
        let mut candidate = match &micro {
            Some(micro) => {
                let centroids = ward_merge(micro, k);
                let (labels, inertia) = assign(data, &centroids);
                Clustering { centroids, labels, inertia, silhouette: None, candidates: Vec::new() }
            }
            None => kmeans(data, k, config, config.seed + k as u64)?,
        };
        let score = match &distances {
            Some(d) if k > 1 => d.silhouette(&candidate.labels, k),
            _ => 0.0,
        };
        candidate.silhouette = Some(score);
        tried.push(candidate);
    }
    let candidates: Vec<(usize, f64)> =
        tried.iter().map(|c| (c.centroids.nrows(), c.silhouette.unwrap_or(0.0))).collect();
    let best = candidates.iter().map(|c| c.1).fold(f64::NEG_INFINITY, f64::max);
    let chosen = tried
        .into_iter()
        .find(|c| c.silhouette.unwrap_or(0.0) >= best - config.k_tolerance)
        .ok_or(ClusterError::TooFewPoints { points: data.nrows(), k: k_min })?;
    Ok(Clustering { candidates, ..chosen })
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

    /// make_blobs-like: `k` centres drawn uniformly in a ±10 box, points spread around them.
    fn random_blobs(k: usize, per: usize, d: usize, seed: u64) -> (Array2<f64>, Vec<usize>) {
        let mut rng = Xoshiro256Plus::seed_from_u64(seed);
        let centres: Vec<Vec<f64>> = (0..k).map(|_| (0..d).map(|_| 20.0 * unit(&mut rng) - 10.0).collect()).collect();
        let mut data = Array2::zeros((k * per, d));
        let mut truth = Vec::new();
        for (c, centre) in centres.iter().enumerate() {
            for p in 0..per {
                for (j, x) in centre.iter().enumerate() {
                    // Sum of three uniforms: roughly normal, σ = 2.
                    let spread = (unit(&mut rng) + unit(&mut rng) + unit(&mut rng) - 1.5) * 4.0;
                    data[[c * per + p, j]] = x + spread;
                }
                truth.push(c);
            }
        }
        (data, truth)
    }

    fn partition_inertia(data: &Array2<f64>, labels: &[usize], k: usize) -> f64 {
        let mut sums = Array2::<f64>::zeros((k, data.ncols()));
        let mut counts = vec![0.0_f64; k];
        for (row, &l) in data.rows().into_iter().zip(labels) {
            sums.row_mut(l).scaled_add(1.0, &row);
            counts[l] += 1.0;
        }
        for (mut row, n) in sums.rows_mut().into_iter().zip(&counts) {
            row /= n.max(1.0);
        }
        data.rows().into_iter().zip(labels).map(|(row, &l)| sq(row, sums.row(l))).sum()
    }

    #[test]
    fn restarts_reach_the_true_partition_of_many_clusters() {
        // Plain k-means++ (linfa's) regularly lands two seeds in one of 16 clusters and none in
        // another here; greedy seeding with restarts finds every cluster.
        for seed in 0..6 {
            let (data, truth) = random_blobs(16, 150, 16, seed);
            let true_inertia = partition_inertia(&data, &truth, 16);
            let config = ProfileConfig { runs: 10, ..ProfileConfig::default() };
            let c = kmeans(&data, 16, &config, seed).expect("clusters");
            assert!(
                c.inertia <= 1.01 * true_inertia,
                "seed {seed}: inertia {} vs the truth's {true_inertia}",
                c.inertia
            );
        }
    }

    #[test]
    fn silhouette_picks_the_true_k() {
        for true_k in [3, 5] {
            let (data, truth) = blobs(true_k, 60, 6);
            let config = ProfileConfig { k_min: 2, k_max: 7, ..ProfileConfig::default() };
            let c = choose_k(&data, &config).expect("clusters");
            assert_eq!(c.centroids.nrows(), true_k);
            assert!(agreement(&c.labels, &truth));
            assert!(c.k_reason(config.k_tolerance).starts_with(&format!("k = {true_k}: ")), "{}", c.k_reason(0.02));
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
