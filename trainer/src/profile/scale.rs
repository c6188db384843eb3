//! The space profiles are found in: each feature centred and scaled (robustly where a few
//! extreme users could dominate), then weighted so
//! that each kind of behaviour (usage, content, time, device, network) carries a comparable
//! share of the distance. The weights are folded into the published scale, so the edge's
//! plain standardised distance is this weighted one without knowing about weights.

use ndarray::Array2;
use prewarm_shared::features::{FEATURE_DIM, FEATURES, FeatureVector};

use super::config::KindWeights;

/// The smallest spread used to scale a feature: one (nearly) constant in the training data
/// must not turn tiny differences (a person's one empty User-Agent) into large distances.
const MIN_SPREAD: f64 = 0.1;

/// A scale this large makes a feature with weight 0 count for nothing (and stays finite).
const UNWEIGHTED_SCALE: f64 = 1e6;

/// Standardisation parameters of a data set, weights included.
#[derive(Debug, Clone)]
pub struct Scaler {
    /// Per-feature centre.
    pub mean: Vec<f64>,
    /// Per-feature scale (robust spread over the kind's weight; never zero).
    pub scale: Vec<f64>,
}

/// The value at quantile `q` of sorted values (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((q * (sorted.len() - 1) as f64).round() as usize).min(sorted.len() - 1)]
}

/// Features that are unbounded (logarithms of rates and lengths): a handful of extreme users
/// (a crawler's thousand-request session) would set their spread. Shares and cyclic features are
/// bounded, and their spread between groups is exactly what must not be discounted.
fn unbounded(j: usize) -> bool {
    FEATURES[j].unit.starts_with("ln(")
}

/// Winsorising quantiles of the unbounded features.
const CLIP: (f64, f64) = (0.01, 0.99);

impl Scaler {
    /// Centres on the mean and scales by the standard deviation — of the values clipped to their
    /// 1st–99th percentiles for unbounded features, so a few extreme users do not squash
    /// everyone else — at least [`MIN_SPREAD`]; then divides by each feature's weight.
    ///
    /// Not the interquartile range: on shares that are 0 or 1 per user (a user has one device)
    /// it is the gap between groups, and it would shrink exactly the features that separate them.
    pub fn fit(rows: &[&FeatureVector], weights: &KindWeights) -> Self {
        let per_feature = weights.per_feature();
        let mut mean = vec![0.0; FEATURE_DIM];
        let mut scale = vec![1.0; FEATURE_DIM];
        for j in 0..FEATURE_DIM {
            let mut column: Vec<f64> = rows.iter().map(|r| f64::from(r[j])).collect();
            let n = column.len().max(1) as f64;
            mean[j] = column.iter().sum::<f64>() / n;
            if unbounded(j) {
                let mut sorted = column.clone();
                sorted.sort_by(f64::total_cmp);
                let (lo, hi) = (quantile(&sorted, CLIP.0), quantile(&sorted, CLIP.1));
                column.iter_mut().for_each(|x| *x = x.clamp(lo, hi));
            }
            let m = column.iter().sum::<f64>() / n;
            let sd = (column.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n).sqrt();
            let spread = sd.max(MIN_SPREAD);
            scale[j] = if per_feature[j] > 0.0 { spread / per_feature[j] } else { UNWEIGHTED_SCALE };
        }
        Self { mean, scale }
    }

    /// Rows in the weighted, standardised space.
    pub fn matrix(&self, rows: &[&FeatureVector]) -> Array2<f64> {
        Array2::from_shape_fn((rows.len(), FEATURE_DIM), |(i, j)| {
            (f64::from(rows[i][j]) - self.mean[j]) / self.scale[j]
        })
    }

    /// One raw vector in the space.
    pub fn point(&self, raw: &FeatureVector) -> [f64; FEATURE_DIM] {
        let mut out = [0.0; FEATURE_DIM];
        for (j, o) in out.iter_mut().enumerate() {
            *o = (f64::from(raw[j]) - self.mean[j]) / self.scale[j];
        }
        out
    }

    /// A point of the space back in raw feature units.
    pub fn raw(&self, standardised: ndarray::ArrayView1<'_, f64>) -> FeatureVector {
        let mut out = [0.0f32; FEATURE_DIM];
        for (j, o) in out.iter_mut().enumerate() {
            *o = (standardised[j] * self.scale[j] + self.mean[j]) as f32;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prewarm_shared::features::FeatureKind;

    #[test]
    fn each_kind_carries_the_same_share_of_the_distance_whatever_its_width() {
        // Every feature a permutation of the same 400 values: after scaling, each kind's summed
        // variance is the same although kinds have two to four features.
        const COPRIME: [usize; FEATURE_DIM] = [7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67];
        let rows: Vec<FeatureVector> = (0..400)
            .map(|i| {
                let mut v = [0.0f32; FEATURE_DIM];
                for (x, p) in v.iter_mut().zip(COPRIME) {
                    *x = ((i * p) % 400) as f32 / 400.0;
                }
                v
            })
            .collect();
        let refs: Vec<&FeatureVector> = rows.iter().collect();
        let scaler = Scaler::fit(&refs, &KindWeights::default());
        let m = scaler.matrix(&refs);
        let variance = m.var_axis(ndarray::Axis(0), 0.0);
        let kinds = [
            FeatureKind::AppUsage,
            FeatureKind::Content,
            FeatureKind::TimeOfWeek,
            FeatureKind::Device,
            FeatureKind::Network,
        ];
        let shares: Vec<f64> = kinds
            .iter()
            .map(|k| FEATURES.iter().enumerate().filter(|(_, f)| f.kind == *k).map(|(j, _)| variance[j]).sum())
            .collect();
        let (lo, hi) = shares.iter().fold((f64::MAX, 0.0f64), |(lo, hi), s| (lo.min(*s), hi.max(*s)));
        assert!(hi / lo < 1.05, "per-kind variance {shares:?}");
        // A weight of 2 on devices doubles their spread in the space.
        let heavy = Scaler::fit(&refs, &KindWeights { device: 2.0, ..KindWeights::default() });
        let j = prewarm_shared::features::index::DEVICE_MOBILE;
        assert!((scaler.scale[j] / heavy.scale[j] - 2.0).abs() < 1e-9);
    }

    #[test]
    fn a_few_extreme_users_do_not_squash_everyone_else() {
        // Requests per session (a logarithm): 500 ordinary users and one extreme one.
        let mut rows: Vec<FeatureVector> = (0..500).map(|i| [(i % 10) as f32 / 10.0; FEATURE_DIM]).collect();
        rows.push([1_000.0f32; FEATURE_DIM]);
        let refs: Vec<&FeatureVector> = rows.iter().collect();
        let scaler = Scaler::fit(&refs, &KindWeights::default());
        let weight = KindWeights::default().per_feature()[0];
        // The ordinary users' spread (0.29) decides, not the outlier's (about 44).
        assert!(scaler.scale[0] * weight < 0.35, "{}", scaler.scale[0] * weight);
        // A share is bounded: its spread is taken as it is.
        let j = prewarm_shared::features::index::DEVICE_MOBILE;
        assert!(scaler.scale[j] * KindWeights::default().per_feature()[j] > 10.0);
    }
}
