//! The ledger of past forecasts: what each candidate model forecast at each training, kept
//! for a week and scored once the minutes it forecast have happened.
//!
//! Two things come out of it, both from out-of-sample errors only:
//! - **skill**: each candidate's mean absolute error of hourly demand over the recent
//!   origins, which picks the model a series publishes;
//! - **calibrated bands** (split-conformal, locally weighted): the published forecast's
//!   errors, each divided by the spread expected at its level — a count's variance grows with
//!   its mean (Poisson-like noise) and with its square (model error in proportion), in
//!   proportions fitted on the same errors — give, per horizon bucket, the quantile of a
//!   *minute's* demand the plan provisions for and the higher one the edge's prewarm signal
//!   tests against. Whatever the trace, about `q` of minutes fall under the `q` band, because
//!   the band is the `q` quantile of the series' own errors; the spread model only decides
//!   where the width goes (more at the peak, less at night).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::model::Method;

/// Which series a ledger entry belongs to: a region and a profile id (or the region's
/// aggregate, [`AGGREGATE`]).
pub type SeriesKey = (String, u16);
/// The profile id under which a region's aggregate series is kept.
pub const AGGREGATE: u16 = u16::MAX;

/// Horizon buckets (minutes after the origin, upper bounds) a band is calibrated in.
pub const HORIZON_BUCKETS: [u64; 5] = [60, 180, 360, 720, u64::MAX];
/// Fewer scores than this in a bucket: the bucket borrows the quantile of all buckets.
const MIN_BUCKET_SCORES: usize = 200;
/// Scored hours a candidate needs before its skill can choose it.
pub const MIN_SKILL_HOURS: usize = 24;

/// One training's forecasts of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct PastForecast {
    /// When it was made (minute-aligned Unix seconds).
    pub origin: u64,
    /// Unix seconds of step 0, and the step.
    pub first_step: u64,
    /// Step length.
    pub step_secs: u64,
    /// Each candidate's expected requests per minute, per step.
    pub by_method: Vec<(Method, Vec<f32>)>,
}

impl PastForecast {
    /// The forecast rate per minute of `method` at minute `t`.
    fn rate(&self, method: usize, t: u64) -> Option<f64> {
        let offset = t.checked_sub(self.first_step)?;
        let values = &self.by_method.get(method)?.1;
        values.get((offset / self.step_secs.max(1)) as usize).map(|v| f64::from(*v))
    }

    /// The forecast rate per minute of `method` at minute `t`.
    pub(super) fn rate_of(&self, method: Method, t: u64) -> Option<f64> {
        self.rate(self.by_method.iter().position(|(m, _)| *m == method)?, t)
    }
}

/// Past forecasts of every series, most recent last.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    series: HashMap<SeriesKey, Vec<PastForecast>>,
}

impl Ledger {
    /// A series' kept forecasts, oldest first.
    pub fn entries(&self, key: &SeriesKey) -> &[PastForecast] {
        self.series.get(key).map_or(&[], Vec::as_slice)
    }

    /// Records a forecast; entries older than `keep_secs` before it are dropped.
    pub fn record(&mut self, key: SeriesKey, entry: PastForecast, keep_secs: u64) {
        let entries = self.series.entry(key).or_default();
        let cutoff = entry.origin.saturating_sub(keep_secs);
        entries.retain(|e| e.origin >= cutoff && e.origin != entry.origin);
        let at = entries.partition_point(|e| e.origin < entry.origin);
        entries.insert(at, entry);
    }

    /// Whether an entry exists within `tolerance_secs` of `origin`.
    pub fn has_origin_near(&self, key: &SeriesKey, origin: u64, tolerance_secs: u64) -> bool {
        self.entries(key).iter().any(|e| e.origin.abs_diff(origin) <= tolerance_secs)
    }
}

/// A candidate's recent out-of-sample record.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CandidateSkill {
    /// The candidate.
    pub method: Method,
    /// Mean absolute error of hourly requests over the scored hours.
    pub mae: f64,
    /// `mae` over the in-sample MAE of seasonal naive one day: below 1 beats yesterday's value.
    pub mase: f64,
    /// Hours scored.
    pub hours: usize,
}

/// How much a count spreads around its forecast `p`: variance `poisson × max(p, 1) +
/// relative² × p²`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// The Poisson part's weight.
    pub poisson: f64,
    /// The relative part's weight.
    pub relative: f64,
}

impl Default for Spread {
    fn default() -> Self {
        Self { poisson: 1.0, relative: 0.0 }
    }
}

impl Spread {
    /// The standard deviation expected at `p`.
    pub fn at(&self, p: f64) -> f64 {
        (self.poisson * p.max(1.0) + self.relative * self.relative * p * p).sqrt()
    }

    /// Fitted robustly on (forecast, actual) pairs: in ten bins by forecast, the median
    /// squared error (÷ 0.455, the median of a squared standard normal, so it reads as a
    /// variance), then least squares of those on `p` and `p²` with both terms ≥ 0.
    pub fn fit(pairs: &[(f64, f64)]) -> Self {
        if pairs.len() < 50 {
            return Self::default();
        }
        let mut sorted: Vec<(f64, f64)> = pairs.iter().map(|(p, a)| (p.max(0.0), (a - p) * (a - p))).collect();
        sorted.sort_by(|x, y| x.0.total_cmp(&y.0));
        let bins: Vec<(f64, f64)> = sorted
            .chunks(sorted.len().div_ceil(10))
            .map(|bin| {
                let p = bin.iter().map(|(p, _)| p).sum::<f64>() / bin.len() as f64;
                let mut e: Vec<f64> = bin.iter().map(|(_, e)| *e).collect();
                e.sort_by(f64::total_cmp);
                (p.max(1.0), e[e.len() / 2] / 0.455)
            })
            .collect();
        // Normal equations of v ≈ a·p + b·p².
        let (mut s11, mut s12, mut s22, mut t1, mut t2) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (p, v) in &bins {
            s11 += p * p;
            s12 += p * p * p;
            s22 += p * p * p * p;
            t1 += v * p;
            t2 += v * p * p;
        }
        let det = s11 * s22 - s12 * s12;
        let (mut a, mut b) = if det.abs() > f64::EPSILON {
            ((t1 * s22 - t2 * s12) / det, (s11 * t2 - s12 * t1) / det)
        } else {
            (t1 / s11, 0.0)
        };
        if a < 0.0 {
            (a, b) = (0.0, t2 / s22);
        }
        if b < 0.0 {
            (a, b) = (t1 / s11, 0.0);
        }
        // A floor on the Poisson part keeps a quiet series' spread from collapsing to zero.
        Self { poisson: a.max(0.25), relative: b.max(0.0).sqrt() }
    }
}

/// Out-of-sample errors of one forecast, each over the spread expected at its level, per
/// horizon bucket.
#[derive(Debug, Clone)]
pub struct Scores {
    /// Scores per horizon bucket.
    pub by_bucket: [Vec<f64>; HORIZON_BUCKETS.len()],
    /// Every bucket's scores together, sorted (what a thin bucket borrows).
    pooled: Vec<f64>,
    /// The spread the scores were normalised by.
    pub spread: Spread,
    /// What the forecasts scored were multiplied by to be right on average (actual ÷ forecast
    /// over the window): models of the log scale forecast a median, capacity needs the mean.
    pub bias: f64,
}

impl Default for Scores {
    fn default() -> Self {
        Self { by_bucket: Default::default(), pooled: Vec::new(), spread: Spread::default(), bias: 1.0 }
    }
}

impl Scores {
    /// Scores kept.
    pub fn len(&self) -> usize {
        self.by_bucket.iter().map(Vec::len).sum()
    }

    /// Whether none are kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `q` quantile of the scores for a forecast `horizon_minutes` ahead (split-conformal,
    /// with its finite-sample correction); `None` without scores.
    pub fn quantile(&self, q: f64, horizon_minutes: u64) -> Option<f64> {
        let bucket = bucket_of(horizon_minutes);
        let own = &self.by_bucket[bucket];
        if own.len() >= MIN_BUCKET_SCORES {
            return Some(conformal_quantile(own, q));
        }
        (!self.pooled.is_empty()).then(|| conformal_quantile(&self.pooled, q))
    }

    /// Scores from (bucket, forecast, actual) triples, with the spread fitted on them;
    /// `deflate` divides each error (√2 when the "forecast" is itself an observation).
    pub fn from_pairs(pairs: &[(usize, f64, f64)], deflate: f64) -> Self {
        let deflated: Vec<(usize, f64, f64)> =
            pairs.iter().map(|(b, p, a)| (*b, *p, p + (a - p) / deflate.max(f64::MIN_POSITIVE))).collect();
        let spread = Spread::fit(&deflated.iter().map(|(_, p, a)| (*p, *a)).collect::<Vec<_>>());
        let mut scores = Scores { spread, ..Scores::default() };
        for (bucket, p, a) in deflated {
            scores.by_bucket[bucket.min(HORIZON_BUCKETS.len() - 1)].push((a - p) / spread.at(p));
        }
        scores.sort();
        scores
    }

    /// The band at `q` for a forecast `p` made `horizon_minutes` ahead: `p` plus the score
    /// quantile times the spread expected at `p`, never below `p`. `None` without scores.
    pub fn band(&self, p: f64, q: f64, horizon_minutes: u64) -> Option<f64> {
        let width = self.quantile(q, horizon_minutes)?;
        Some((p + width * self.spread.at(p)).max(p))
    }

    /// Sorts every bucket and pools them (quantiles read sorted scores).
    pub fn sort(&mut self) {
        self.by_bucket.iter_mut().for_each(|b| b.sort_by(f64::total_cmp));
        self.pooled = self.by_bucket.iter().flatten().copied().collect();
        self.pooled.sort_by(f64::total_cmp);
    }
}

/// The bucket of a horizon.
pub fn bucket_of(horizon_minutes: u64) -> usize {
    HORIZON_BUCKETS.iter().position(|&b| horizon_minutes < b).unwrap_or(HORIZON_BUCKETS.len() - 1)
}

/// The ⌈(n + 1)q⌉-th smallest of sorted `scores` (the largest when that exceeds n).
fn conformal_quantile(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    let rank = (((n + 1) as f64) * q.clamp(0.0, 1.0)).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

/// The sum of a block of `len` minutes, scaled up from the known ones when at least three
/// quarters are known.
pub fn block_sum(minutes: impl Iterator<Item = Option<f64>>, len: usize) -> Option<f64> {
    let (mut sum, mut known) = (0.0, 0usize);
    for m in minutes.flatten() {
        sum += m;
        known += 1;
    }
    (known * 4 >= len * 3 && known > 0).then(|| sum * len as f64 / known as f64)
}

/// The minute counts a ledger is scored against: from `start`, `None` unknown.
#[derive(Debug, Clone, Copy)]
pub struct Actuals<'a> {
    /// Unix seconds of the first minute.
    pub start: u64,
    /// Requests per minute (`None` unknown).
    pub minutes: &'a [Option<f64>],
}

impl Actuals<'_> {
    pub(super) fn at(&self, t: u64) -> Option<f64> {
        let i = t.checked_sub(self.start)? / 60;
        self.minutes.get(usize::try_from(i).ok()?).copied().flatten()
    }
}

/// The entries made in the `window_secs` before `now`, with the part of each that has happened.
fn scorable(entries: &[PastForecast], now: u64, window_secs: u64) -> impl Iterator<Item = (&PastForecast, u64, u64)> {
    let from = now.saturating_sub(window_secs);
    entries.iter().filter(move |e| e.origin >= from && e.origin < now).map(move |e| {
        let first = e.first_step.max(e.origin);
        let horizon_end = e.first_step + e.step_secs * e.by_method.first().map_or(0, |(_, v)| v.len()) as u64;
        (e, first, horizon_end.min(now))
    })
}

/// Every candidate's skill on the entries of the last `window_secs`: hourly errors over the
/// hours that have happened (`mase_scale` is hourly, in requests per hour).
pub fn skill(
    entries: &[PastForecast],
    methods: &[Method],
    actual: Actuals<'_>,
    now: u64,
    window_secs: u64,
    mase_scale: f64,
) -> Vec<CandidateSkill> {
    let mut errors: Vec<(f64, usize)> = vec![(0.0, 0); methods.len()];
    for (entry, first, end) in scorable(entries, now, window_secs) {
        let indices: Vec<Option<usize>> =
            methods.iter().map(|m| entry.by_method.iter().position(|(em, _)| em == m)).collect();
        let mut hour_start = first;
        while hour_start + 3600 <= end {
            let minutes: Vec<(u64, f64)> =
                (0..60).filter_map(|k| Some((hour_start + 60 * k, actual.at(hour_start + 60 * k)?))).collect();
            if minutes.len() >= 45 {
                let scale = 60.0 / minutes.len() as f64;
                let observed: f64 = minutes.iter().map(|(_, a)| a).sum::<f64>() * scale;
                for (c, index) in indices.iter().enumerate() {
                    let Some(index) = index else { continue };
                    let forecast: Option<f64> = minutes.iter().map(|(t, _)| entry.rate(*index, *t)).sum();
                    if let Some(forecast) = forecast {
                        errors[c].0 += (observed - forecast * scale).abs();
                        errors[c].1 += 1;
                    }
                }
            }
            hour_start += 3600;
        }
    }
    methods
        .iter()
        .zip(&errors)
        .map(|(m, (sum, hours))| {
            let mae = if *hours > 0 { sum / *hours as f64 } else { f64::INFINITY };
            CandidateSkill { method: *m, mae, mase: mae / mase_scale.max(f64::EPSILON), hours: *hours }
        })
        .collect()
}

/// The band scores of a weighted combination of candidates over the entries of the last
/// `window_secs`, on blocks of `band_minutes` (an entry lacking a weighted candidate is
/// skipped). With `nowcast`, each block's forecast is corrected by the level the plan would
/// have applied then (`nowcast::level` on the half hour before it) — so the band is
/// calibrated on what is provisioned.
#[allow(clippy::too_many_arguments)]
pub fn scores(
    entries: &[PastForecast],
    weights: &[(Method, f64)],
    actual: Actuals<'_>,
    now: u64,
    window_secs: u64,
    band_minutes: u64,
    nowcast: bool,
) -> Scores {
    let mut pairs: Vec<(usize, f64, f64)> = Vec::new();
    let block = band_minutes.max(1);
    let window = super::nowcast::WINDOW_MINUTES * 60;
    for (entry, first, end) in scorable(entries, now, window_secs) {
        let Some(indices) = weights
            .iter()
            .map(|(m, w)| Some((entry.by_method.iter().position(|(em, _)| em == m)?, *w)))
            .collect::<Option<Vec<(usize, f64)>>>()
        else {
            continue;
        };
        let rate = |t: u64| -> Option<f64> { indices.iter().map(|(i, w)| Some(entry.rate(*i, t)? * w)).sum() };
        // Running sums of (observed, forecast) over the known minutes of the entry's span.
        let span_start = entry.first_step;
        let mut prefix: Vec<(f64, f64)> = vec![(0.0, 0.0)];
        let mut t = span_start;
        while t < end {
            let (o, f) = match (actual.at(t), rate(t)) {
                (Some(a), Some(p)) => (a, p),
                _ => (0.0, 0.0),
            };
            let last = prefix[prefix.len() - 1];
            prefix.push((last.0 + o, last.1 + f));
            t += 60;
        }
        let sums_between = |from: u64, to: u64| {
            let i = |t: u64| ((t.saturating_sub(span_start)) / 60) as usize;
            let (a, b) = (prefix[i(from).min(prefix.len() - 1)], prefix[i(to).min(prefix.len() - 1)]);
            (b.0 - a.0, b.1 - a.1)
        };
        let mut t = first;
        while t + block * 60 <= end {
            let a = block_sum((0..block).map(|k| actual.at(t + 60 * k)), block as usize);
            let p: Option<f64> = (0..block).map(|k| rate(t + 60 * k)).sum();
            if let (Some(a), Some(mut p)) = (a, p) {
                if nowcast && t >= span_start + window {
                    let recent = t - super::nowcast::RECENT_MINUTES * 60;
                    p *= super::nowcast::level(sums_between(t - window, t), sums_between(recent, t));
                }
                pairs.push((bucket_of((t - entry.origin) / 60), p, a));
            }
            t += block * 60;
        }
    }
    // The bias first (scored forecasts are corrected by it), then the errors of what is published.
    let (actual_sum, forecast_sum) = pairs.iter().fold((0.0, 0.0), |(a, f), (_, p, x)| (a + x, f + p));
    let bias = if pairs.len() >= 100 && forecast_sum > 0.0 { (actual_sum / forecast_sum).clamp(0.5, 2.0) } else { 1.0 };
    pairs.iter_mut().for_each(|(_, p, _)| *p *= bias);
    let mut scores = Scores::from_pairs(&pairs, 1.0);
    scores.bias = bias;
    scores
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_conformal_and_buckets_borrow_when_thin() {
        let mut s = Scores::default();
        s.by_bucket[0] = (1..=999).map(f64::from).collect();
        s.by_bucket[4] = vec![5.0; 10];
        s.sort();
        // ⌈1000 × 0.9⌉ = 900th smallest.
        assert_eq!(s.quantile(0.9, 30), Some(900.0));
        // Bucket 4 has 10 scores: it borrows all 1,009.
        let mut all: Vec<f64> = (1..=999).map(f64::from).chain([5.0; 10]).collect();
        all.sort_by(f64::total_cmp);
        assert_eq!(s.quantile(0.5, 5_000), Some(conformal_quantile(&all, 0.5)));
        assert_eq!(Scores::default().quantile(0.9, 0), None);
        // The default spread is Poisson's: the band is p + q·√p, never below p.
        assert_eq!(s.band(100.0, 0.9, 30), Some(100.0 + 900.0 * 10.0));
        let negative = Scores::from_pairs(&[(0, 100.0, 50.0)], 1.0);
        assert_eq!(negative.band(100.0, 0.9, 0), Some(100.0), "never below the point");
    }

    #[test]
    fn skill_and_scores_come_from_minutes_after_each_origin_only() {
        // Two candidates: one forecast 10 a minute, the other 20; the truth is 10.
        let entry = PastForecast {
            origin: 3600,
            first_step: 3600,
            step_secs: 300,
            by_method: vec![(Method::MstlLogLevel, vec![10.0; 288]), (Method::SeasonalNaive(24), vec![20.0; 288])],
        };
        let actual: Vec<Option<f64>> = (0..24 * 60).map(|_| Some(10.0)).collect();
        let methods = [Method::MstlLogLevel, Method::SeasonalNaive(24)];
        // Known up to 3 h after the origin.
        let actual = Actuals { start: 0, minutes: &actual };
        let entries = [entry];
        let skill = skill(&entries, &methods, actual, 4 * 3600, 86_400, 60.0);
        assert_eq!(skill[0].hours, 3);
        assert_eq!(skill[0].mae, 0.0);
        assert!((skill[1].mae - 600.0).abs() < 1e-9);
        assert!((skill[1].mase - 10.0).abs() < 1e-9);
        let first = scores(&entries, &[(methods[0], 1.0)], actual, 4 * 3600, 86_400, 1, false);
        assert_eq!(first.len(), 180);
        assert_eq!(first.by_bucket[0].len(), 60);
        let naive = scores(&entries, &[(methods[1], 1.0)], actual, 4 * 3600, 86_400, 1, false);
        // Forecast 20, actual 10, 180 times: the bias (½) is learnt, and once corrected the
        // forecast is exact.
        assert_eq!(naive.bias, 0.5);
        assert_eq!(naive.quantile(0.5, 0), Some(0.0));
        // Half and half: 15 a minute, 900 an hour forecast against 600.
        let both = scores(&entries, &[(methods[0], 0.5), (methods[1], 0.5)], actual, 4 * 3600, 86_400, 60, false);
        assert_eq!(both.len(), 3);
        let z = both.quantile(0.5, 0).unwrap_or(0.0);
        assert!((z * both.spread.at(900.0) + 300.0).abs() < 1e-6);
    }

    #[test]
    fn the_ledger_keeps_a_window_in_order() {
        let mut ledger = Ledger::default();
        let key: SeriesKey = ("eu".into(), 1);
        let entry = |origin| PastForecast { origin, first_step: origin, step_secs: 300, by_method: Vec::new() };
        for origin in [7200, 3600, 10_800, 3600] {
            ledger.record(key.clone(), entry(origin), 86_400);
        }
        let origins: Vec<u64> = ledger.entries(&key).iter().map(|e| e.origin).collect();
        assert_eq!(origins, vec![3600, 7200, 10_800]);
        ledger.record(key.clone(), entry(100_000), 86_400);
        let origins: Vec<u64> = ledger.entries(&key).iter().map(|e| e.origin).collect();
        assert_eq!(origins, vec![100_000], "a day older than the newest is dropped");
        assert!(ledger.has_origin_near(&key, 100_030, 60));
    }
}

#[cfg(test)]
mod spread_tests {
    use super::*;

    #[test]
    fn the_spread_separates_count_noise_from_proportional_error() {
        // Errors with variance 2·p + (0.1·p)², deterministic: ±1.5 standard deviations.
        let pairs: Vec<(f64, f64)> = (1..=2000)
            .map(|i| {
                let p = f64::from(i % 400 + 1);
                let sd = (2.0 * p + 0.01 * p * p).sqrt();
                (p, p + if i % 2 == 0 { 0.674 * sd } else { -0.674 * sd })
            })
            .collect();
        let spread = Spread::fit(&pairs);
        assert!((spread.relative - 0.1).abs() < 0.03, "{spread:?}");
        assert!(spread.poisson > 0.5 && spread.poisson < 4.0, "{spread:?}");
    }
}
