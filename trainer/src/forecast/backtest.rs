//! Rolling-origin evaluation of a per-minute trace: at each origin, every method is fitted on
//! the history before it only (gaps and outages masked on that history alone) and forecasts
//! the horizon; `prewarm` is what ships — the forecast stage ([`super::engine`]) with its
//! ledger, model choice and calibrated band, run at each origin.
//!
//! The reference protocol: hourly sums, a 24-hour horizon, an origin every 24 hours after the
//! first 14 days, MASE scaled by the in-sample MAE of seasonal naive one day (before the
//! origin). `--step 5m` runs the same protocol on 5-minute sums. Outages are masked in the
//! actuals for scoring (a forecast is not judged against an outage); a window is excluded
//! only when most of its horizon is unknown, and otherwise scored on the steps it has.

use serde::Serialize;

use super::engine::{self, Context, ForecastConfig, MinuteSeries};
use super::ledger::Ledger;
use super::model::{self, Method};
use super::series::Series;

/// The evaluation protocol.
#[derive(Debug, Clone)]
pub struct Protocol {
    /// Minutes per step of the evaluated series (60: hourly sums; 5: 5-minute sums).
    pub step_minutes: usize,
    /// Hours each origin forecasts.
    pub horizon_hours: usize,
    /// Days of history before the first origin.
    pub first_origin_days: usize,
    /// Hours between origins.
    pub origin_every_hours: usize,
    /// The band quantile every method's coverage is measured at.
    pub quantile: f64,
}

impl Protocol {
    /// The reference protocol for hourly data.
    pub fn hourly() -> Self {
        Self { step_minutes: 60, horizon_hours: 24, first_origin_days: 14, origin_every_hours: 24, quantile: 0.9 }
    }

    /// The same on `step_minutes` sums.
    pub fn at_step(step_minutes: usize) -> Self {
        Self { step_minutes, ..Self::hourly() }
    }

    fn steps_per_day(&self) -> usize {
        1440 / self.step_minutes.max(1)
    }
}

#[derive(Debug, thiserror::Error)]
/// Why a backtest could not run.
#[allow(missing_docs, reason = "a variant's fields are named in its message")]
pub enum BacktestError {
    /// A step that does not divide a day.
    #[error("the step must divide a day into whole minutes (1 to 60 minutes), got {0} minutes")]
    BadStep(usize),
    #[error(
        "no window could be scored: {windows} origins, every one with most of its horizon missing, or under {days} days of history"
    )]
    /// No window could be scored.
    NothingScored { windows: usize, days: usize },
    /// The series is unusable.
    #[error(transparent)]
    Series(#[from] super::series::SeriesError),
}

/// One method's scores over all evaluated windows.
#[derive(Debug, Clone, Serialize)]
pub struct Score {
    /// The method's name.
    pub method: String,
    /// Mean absolute scaled error (below 1 beats seasonal naive 1 d in-sample).
    pub mase: f64,
    /// Symmetric mean absolute percentage error.
    pub smape: f64,
    /// Weighted absolute percentage error.
    pub wape: f64,
    /// Pinball loss of the upper band at its quantile, scaled like MASE.
    pub pinball: f64,
    /// Share of actuals under the band.
    pub coverage: f64,
}

/// A backtest's scores, every method on the same windows.
#[derive(Debug, Clone, Serialize)]
pub struct BacktestReport {
    /// Minutes per step evaluated.
    pub step_minutes: usize,
    /// Points in the series.
    pub points: usize,
    /// Windows scored.
    pub windows: usize,
    /// Windows left out (most of the horizon missing).
    pub excluded_windows: usize,
    /// One row per method.
    pub scores: Vec<Score>,
    /// What `prewarm` published at each origin (method name → windows).
    pub prewarm_choices: Vec<(String, usize)>,
    /// Wall-clock seconds.
    pub seconds: f64,
}

#[derive(Default, Clone)]
struct Accumulator {
    mase: Vec<f64>,
    smape: Vec<f64>,
    abs_error: f64,
    abs_actual: f64,
    pinball: Vec<f64>,
    covered: usize,
    scored: usize,
}

impl Accumulator {
    /// Adds one window: forecasts and actuals, `None` where the actual is unknown.
    fn add(&mut self, point: &[f64], upper: &[f64], actual: &[Option<f64>], scale: f64, quantile: f64) {
        let pairs: Vec<(f64, f64, f64)> =
            actual.iter().zip(point).zip(upper).filter_map(|((a, p), u)| Some(((*a)?, *p, *u))).collect();
        let n = pairs.len().max(1) as f64;
        self.mase.push(pairs.iter().map(|(a, p, _)| (p - a).abs()).sum::<f64>() / n / scale);
        self.smape.push(
            pairs
                .iter()
                .map(|(a, p, _)| if p.abs() + a.abs() > 0.0 { 2.0 * (p - a).abs() / (p.abs() + a.abs()) } else { 0.0 })
                .sum::<f64>()
                / n,
        );
        self.abs_error += pairs.iter().map(|(a, p, _)| (p - a).abs()).sum::<f64>();
        self.abs_actual += pairs.iter().map(|(a, ..)| a.abs()).sum::<f64>();
        let pinball = pairs
            .iter()
            .map(|(a, _, u)| if a >= u { quantile * (a - u) } else { (1.0 - quantile) * (u - a) })
            .sum::<f64>()
            / n;
        self.pinball.push(pinball / scale);
        self.covered += pairs.iter().filter(|(a, _, u)| a <= &(u + 1e-9)).count();
        self.scored += pairs.len();
    }

    fn score(&self, method: &str) -> Score {
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        Score {
            method: method.to_owned(),
            mase: mean(&self.mase),
            smape: mean(&self.smape),
            wape: self.abs_error / self.abs_actual.max(f64::EPSILON),
            pinball: mean(&self.pinball),
            coverage: self.covered as f64 / self.scored.max(1) as f64,
        }
    }
}

/// Sums of `step` minutes (missing when under three quarters are known).
fn sums(minutes: &[Option<f64>], step: usize) -> Vec<Option<f64>> {
    minutes.chunks(step).map(|c| super::ledger::block_sum(c.iter().copied(), step)).collect()
}

/// The reference methods, each fitted on the steps before the origin.
fn reference_methods(day: usize) -> Vec<Method> {
    vec![
        Method::Mstl,
        Method::MstlLogLevel,
        Method::MstlLogDamped,
        Method::MstlDamped,
        Method::SeasonalNaive(day),
        Method::SeasonalNaive(7 * day),
    ]
}

/// Runs the protocol on per-minute `points` (Unix seconds, requests). `events` is the
/// calendar `prewarm` (what ships) reads; its band is measured at the protocol's quantile.
pub fn backtest(
    points: &[(u64, f64)],
    protocol: &Protocol,
    config: &ForecastConfig,
    events: &[super::calendar::Occurrence],
) -> Result<BacktestReport, BacktestError> {
    let config = &ForecastConfig { band_quantile: protocol.quantile, band_choice: false, ..config.clone() };
    let started = std::time::Instant::now();
    let step = protocol.step_minutes;
    if step == 0 || step > 60 || 1440 % step != 0 {
        return Err(BacktestError::BadStep(step));
    }
    // Minutes from a whole step on, so steps line up with the clock.
    let raw = Series::from_points(points, 60)?;
    let offset = ((raw.start / 60) % step as u64) as usize;
    let start = raw.start - offset as u64 * 60;
    let mut minutes = vec![None; offset];
    minutes.extend(raw.values.iter().copied());
    // What is scored: outages masked over the whole trace (an evaluation choice, never a
    // model's input).
    let mut judged = Series { start, step_secs: 60, values: minutes.clone() };
    judged.mask_outages(1440, 30, 1.0);
    let actual_steps = sums(&judged.values, step);
    let day = protocol.steps_per_day();
    let horizon = protocol.horizon_hours * 60 / step;
    let methods = reference_methods(day);
    let names: Vec<String> = methods.iter().map(Method::name).chain(["prewarm".to_owned()]).collect();
    let mut acc = vec![Accumulator::default(); names.len()];
    let mut choices: Vec<(String, usize)> = Vec::new();
    let (mut windows, mut excluded) = (0, 0);
    let series = MinuteSeries { start, values: minutes.clone() };
    let ctx = Context {
        step_secs: step as u64 * 60,
        steps: horizon,
        band_minutes: step as u64,
        events: events.to_vec(),
        ..Context::default()
    };
    let mut ledger = Ledger::default();
    let key = ("backtest".to_owned(), 0u16);
    let mut origin = protocol.first_origin_days * day;
    while origin + horizon <= actual_steps.len() {
        let window = &actual_steps[origin..origin + horizon];
        let known = window.iter().flatten().count();
        // History before the origin only: masked on itself, then summed to steps.
        let mut history = Series { start, step_secs: 60, values: minutes[..origin * step].to_vec() };
        history.mask_outages(1440, 30, 1.0);
        let history_steps = sums(&history.values, step);
        let scale = naive_scale(&history_steps, day);
        let (Some(scale), true) = (scale, known * 2 > horizon) else {
            excluded += 1;
            origin += protocol.origin_every_hours * 60 / step;
            continue;
        };
        let filled = Series { start, step_secs: step as u64 * 60, values: history_steps }.imputed(day, 7 * day);
        let periods: Vec<usize> = [day, 7 * day].into_iter().filter(|p| filled.len() >= 2 * p).collect();
        let level = 2.0 * protocol.quantile - 1.0;
        for (i, method) in methods.iter().enumerate() {
            let f = model::forecast(*method, &filled, &periods, horizon, level)
                .or_else(|_| model::seasonal_naive(&filled, day, horizon, level));
            if let Ok(f) = f {
                acc[i].add(&f.point, &f.upper, window, scale, protocol.quantile);
            }
        }
        // What ships: the forecast stage at the origin, with the ledger of the origins before.
        let now = start + (origin * step) as u64 * 60;
        let shipped = engine::forecast_series(&key, &series, now, &ctx, config, &mut ledger);
        if let Some(f) = shipped {
            let point: Vec<f64> = f.expected.iter().map(|v| f64::from(*v)).collect();
            let upper: Vec<f64> = f.upper.iter().map(|v| f64::from(*v)).collect();
            let last = acc.len() - 1;
            acc[last].add(&point, &upper, window, scale, protocol.quantile);
            let name = f.report.method.name();
            match choices.iter_mut().find(|(n, _)| *n == name) {
                Some((_, count)) => *count += 1,
                None => choices.push((name, 1)),
            }
        }
        windows += 1;
        origin += protocol.origin_every_hours * 60 / step;
    }
    if windows == 0 {
        return Err(BacktestError::NothingScored { windows: excluded, days: protocol.first_origin_days });
    }
    Ok(BacktestReport {
        step_minutes: step,
        points: actual_steps.len(),
        windows,
        excluded_windows: excluded,
        scores: acc.iter().zip(&names).map(|(a, n)| a.score(n)).collect(),
        prewarm_choices: choices,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// In-sample MAE of seasonal naive at one day, over pairs where both values are known.
fn naive_scale(history: &[Option<f64>], day: usize) -> Option<f64> {
    let errors: Vec<f64> = (day..history.len()).filter_map(|i| Some((history[i]? - history[i - day]?).abs())).collect();
    let mae = errors.iter().sum::<f64>() / errors.len().max(1) as f64;
    (!errors.is_empty() && mae > 0.0).then_some(mae)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Per-minute points: `hours` of the seasonal test shape spread evenly over each hour.
    fn minutes_of(hours: &[f64]) -> Vec<(u64, f64)> {
        hours
            .iter()
            .enumerate()
            .flat_map(|(h, v)| (0..60).map(move |m| ((h * 3600 + m * 60) as u64, v / 60.0)))
            .collect()
    }

    #[test]
    fn an_outage_is_masked_not_learned() {
        let truth = crate::forecast::seasonal_hours(24 * 7 * 5, 0.0);
        let (history, future) = truth.split_at(24 * 7 * 4);
        // A 30-hour outage in the last week of history: the trace reads zero.
        let mut observed: Vec<Option<f64>> = history.iter().map(|v| Some(*v)).collect();
        for v in &mut observed[24 * 7 * 3 + 40..24 * 7 * 3 + 70] {
            *v = Some(0.0);
        }
        let mut series = Series { start: 0, step_secs: 3600, values: observed.clone() };
        assert_eq!(series.mask_outages(24, 3, 10.0), 1);
        let masked = model::forecast(Method::Mstl, &series.imputed(24, 168), &[24, 168], 24, 0.8).expect("forecast");
        let learned: Vec<f64> = observed.iter().map(|v| v.unwrap_or(0.0)).collect();
        let naive = model::forecast(Method::Mstl, &learned, &[24, 168], 24, 0.8).expect("forecast");
        let mae = |f: &[f64]| f.iter().zip(&future[..24]).map(|(a, b)| (a - b).abs()).sum::<f64>() / 24.0;
        let (masked_error, learned_error) = (mae(&masked.point), mae(&naive.point));
        assert!(masked_error < 3.0, "masked: {masked_error}");
        assert!(masked_error * 3.0 < learned_error, "masked {masked_error} vs learned {learned_error}");
    }

    #[test]
    fn a_short_daily_gap_excludes_nothing_and_what_ships_is_scored() {
        // Three weeks and a day, with a 20-minute gap every day at 03:00: every window touches
        // a gap, none is mostly missing.
        let hours = crate::forecast::seasonal_hours(24 * 22, 0.0);
        let points: Vec<(u64, f64)> = minutes_of(&hours)
            .into_iter()
            .filter(|(t, _)| !(3 * 3600..3 * 3600 + 1200).contains(&(t % 86_400)))
            .collect();
        let report = backtest(&points, &Protocol::hourly(), &ForecastConfig::default(), &[]).expect("scored");
        // Origins on days 14 to 21, each with a day to score.
        assert_eq!((report.windows, report.excluded_windows), (8, 0));
        let by_name = |n: &str| report.scores.iter().find(|s| s.method == n).expect(n);
        let (mstl, weekly, shipped) = (by_name("mstl"), by_name("seasonal_naive_168"), by_name("prewarm"));
        assert!(mstl.mase < 0.3, "{mstl:?}");
        // On a purely weekly-periodic series the weekly naive is perfect; what ships must find
        // a forecast about as good.
        assert!(weekly.mase < 1e-9);
        assert!(shipped.mase <= mstl.mase + 0.05, "{shipped:?} vs {mstl:?}");
    }

    #[test]
    fn a_trace_with_nothing_to_score_is_an_error() {
        let hours = crate::forecast::seasonal_hours(24 * 10, 0.0);
        let err =
            backtest(&minutes_of(&hours), &Protocol::hourly(), &ForecastConfig::default(), &[]).expect_err("too short");
        assert!(err.to_string().contains("no window could be scored"), "{err}");
        assert!(matches!(
            backtest(&minutes_of(&hours), &Protocol::at_step(7), &ForecastConfig::default(), &[]),
            Err(BacktestError::BadStep(7))
        ));
    }
}
