//! Rolling-origin evaluation: at each origin, refit on all history before it and forecast the
//! horizon; score against seasonal-naive baselines and a skill-gated choice among them.
//!
//! The default protocol is the reference one: hourly sums, a 24-hour horizon, an origin every
//! 24 hours after the first 14 days, MASE scaled by the in-sample MAE of seasonal-naive 1 day,
//! and windows that touch missing or masked data excluded.

use serde::Serialize;

use super::model::{self, Method};
use super::series::Series;

#[derive(Debug, Clone)]
pub struct Protocol {
    pub horizon: usize,
    pub first_origin: usize,
    pub origin_every: usize,
    /// Seasonal periods in steps (daily and weekly).
    pub periods: Vec<usize>,
    /// Band coverage: 0.8 gives the 90th percentile as the upper bound.
    pub level: f64,
    /// The MASE scale: in-sample MAE of seasonal naive at this lag.
    pub scale_lag: usize,
    /// Windows of past skill a gated choice looks at.
    pub gating_window: usize,
}

impl Protocol {
    /// The reference protocol for hourly data.
    pub fn hourly() -> Self {
        Self {
            horizon: 24,
            first_origin: 14 * 24,
            origin_every: 24,
            periods: vec![24, 168],
            level: 0.8,
            scale_lag: 24,
            gating_window: 7,
        }
    }
}

/// One method's scores over all evaluated windows.
#[derive(Debug, Clone, Serialize)]
pub struct Score {
    pub method: String,
    pub mase: f64,
    pub smape: f64,
    pub wape: f64,
    /// Pinball loss of the upper band at its quantile, scaled like MASE.
    pub pinball: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BacktestReport {
    pub points: usize,
    pub windows: usize,
    pub excluded_windows: usize,
    pub scores: Vec<Score>,
    pub seconds: f64,
}

#[derive(Default, Clone)]
struct Accumulator {
    mase: Vec<f64>,
    smape: Vec<f64>,
    abs_error: f64,
    abs_actual: f64,
    pinball: Vec<f64>,
}

impl Accumulator {
    fn add(&mut self, forecast: &model::Forecast, actual: &[f64], scale: f64, quantile: f64) {
        let n = actual.len() as f64;
        let mae = forecast.point.iter().zip(actual).map(|(f, a)| (f - a).abs()).sum::<f64>() / n;
        self.mase.push(mae / scale);
        self.smape.push(
            forecast
                .point
                .iter()
                .zip(actual)
                .map(|(f, a)| if f.abs() + a.abs() > 0.0 { 2.0 * (f - a).abs() / (f.abs() + a.abs()) } else { 0.0 })
                .sum::<f64>()
                / n,
        );
        self.abs_error += forecast.point.iter().zip(actual).map(|(f, a)| (f - a).abs()).sum::<f64>();
        self.abs_actual += actual.iter().map(|a| a.abs()).sum::<f64>();
        let pinball = forecast
            .upper
            .iter()
            .zip(actual)
            .map(|(u, a)| if a >= u { quantile * (a - u) } else { (1.0 - quantile) * (u - a) })
            .sum::<f64>()
            / n;
        self.pinball.push(pinball / scale);
    }

    fn score(&self, method: &str) -> Score {
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        Score {
            method: method.to_owned(),
            mase: mean(&self.mase),
            smape: mean(&self.smape),
            wape: self.abs_error / self.abs_actual.max(f64::EPSILON),
            pinball: mean(&self.pinball),
        }
    }
}

/// In-sample MAE of seasonal naive at `lag`, over pairs where both values are real.
fn scale(series: &Series, end: usize, lag: usize) -> Option<f64> {
    let errors: Vec<f64> =
        (lag..end).filter_map(|i| Some((series.values[i]? - series.values[i - lag]?).abs())).collect();
    let mae = errors.iter().sum::<f64>() / errors.len().max(1) as f64;
    (!errors.is_empty() && mae > 0.0).then_some(mae)
}

/// Runs the protocol. Methods: MSTL, seasonal naive 1 period and the longest period, and a
/// gated choice that, at each origin, uses the method with the lowest MASE over the last
/// `gating_window` windows (MSTL until there is a record).
pub fn backtest(series: &Series, protocol: &Protocol) -> BacktestReport {
    let started = std::time::Instant::now();
    let day = protocol.periods.first().copied().unwrap_or(protocol.scale_lag);
    let week = protocol.periods.last().copied().unwrap_or(day);
    let methods = [Method::Mstl, Method::SeasonalNaive(day), Method::SeasonalNaive(week)];
    let names = ["mstl".to_owned(), format!("seasonal_naive_{day}"), format!("seasonal_naive_{week}")];
    let quantile = 0.5 + protocol.level / 2.0;
    let mut acc = vec![Accumulator::default(); methods.len()];
    let mut gated = Accumulator::default();
    let mut windows = 0;
    let mut excluded = 0;
    let mut origin = protocol.first_origin;
    while origin + protocol.horizon <= series.len() {
        let window = &series.values[origin..origin + protocol.horizon];
        let scale = scale(series, origin, protocol.scale_lag);
        let (Some(scale), true) = (scale, window.iter().all(Option::is_some)) else {
            excluded += 1;
            origin += protocol.origin_every;
            continue;
        };
        let actual: Vec<f64> = window.iter().flatten().copied().collect();
        let history =
            Series { start: series.start, step_secs: series.step_secs, values: series.values[..origin].to_vec() }
                .imputed(day, week);
        // Pick the gated method from past windows only, before seeing this one.
        let recent = |a: &Accumulator| {
            let tail = &a.mase[a.mase.len().saturating_sub(protocol.gating_window)..];
            if tail.is_empty() { f64::INFINITY } else { tail.iter().sum::<f64>() / tail.len() as f64 }
        };
        let choice = if acc[0].mase.is_empty() {
            0
        } else {
            (0..methods.len()).min_by(|&a, &b| recent(&acc[a]).total_cmp(&recent(&acc[b]))).unwrap_or(0)
        };
        let mut forecasts = Vec::with_capacity(methods.len());
        for (i, method) in methods.iter().enumerate() {
            let f = model::forecast(*method, &history, &protocol.periods, protocol.horizon, protocol.level)
                .or_else(|_| model::seasonal_naive(&history, day, protocol.horizon, protocol.level));
            if let Ok(f) = f {
                acc[i].add(&f, &actual, scale, quantile);
                forecasts.push(Some(f));
            } else {
                forecasts.push(None);
            }
        }
        if let Some(Some(f)) = forecasts.get(choice) {
            gated.add(f, &actual, scale, quantile);
        }
        windows += 1;
        origin += protocol.origin_every;
    }
    let mut scores: Vec<Score> = acc.iter().zip(&names).map(|(a, n)| a.score(n)).collect();
    scores.push(gated.score("gated"));
    BacktestReport {
        points: series.len(),
        windows,
        excluded_windows: excluded,
        scores,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// The reference preparation of a per-minute trace: zero runs of 30+ minutes against a busy
/// day-earlier norm are outages and masked; hours are sums of their minutes, missing when any
/// minute is masked or the hour has no row at all.
pub fn hourly_from_minutes(points: &[(u64, f64)]) -> Result<Series, super::series::SeriesError> {
    let mut minutes = Series::from_points(points, 60)?;
    minutes.mask_outages(1440, 30, 1.0);
    let mut values = Vec::with_capacity(minutes.len() / 60 + 1);
    let offset = (minutes.start % 3600) / 60;
    let start = minutes.start - offset * 60;
    let mut padded = vec![None; offset as usize];
    padded.extend(minutes.values.iter().copied());
    // A masked minute and a minute without a row are both None: the hour is then incomplete.
    for chunk in padded.chunks(60) {
        let present: Vec<f64> = chunk.iter().flatten().copied().collect();
        let complete = present.len() == 60;
        values.push(complete.then(|| present.iter().sum()));
    }
    Ok(Series { start, step_secs: 3600, values })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seasonal(hours: usize) -> Vec<f64> {
        crate::forecast::seasonal_hours(hours, 0.0)
    }

    fn mae(forecast: &[f64], actual: &[f64]) -> f64 {
        forecast.iter().zip(actual).map(|(f, a)| (f - a).abs()).sum::<f64>() / actual.len() as f64
    }

    #[test]
    fn an_outage_is_masked_not_learned() {
        let truth = seasonal(24 * 7 * 5);
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
        let (masked_error, learned_error) = (mae(&masked.point, &future[..24]), mae(&naive.point, &future[..24]));
        assert!(masked_error < 3.0, "masked: {masked_error}");
        assert!(masked_error * 3.0 < learned_error, "masked {masked_error} vs learned {learned_error}");
    }

    #[test]
    fn backtest_scores_models_and_excludes_windows_with_gaps() {
        let mut values: Vec<Option<f64>> = seasonal(24 * 7 * 4).into_iter().map(Some).collect();
        for v in &mut values[24 * 20..24 * 20 + 5] {
            *v = None;
        }
        let report = backtest(&Series { start: 0, step_secs: 3600, values }, &Protocol::hourly());
        assert_eq!(report.windows + report.excluded_windows, 14);
        assert_eq!(report.excluded_windows, 1);
        let mstl = &report.scores[0];
        let weekly = &report.scores[2];
        assert!(mstl.mase < 0.2, "{mstl:?}");
        // On a purely weekly-periodic series the weekly naive is perfect; gating must find it.
        assert!(weekly.mase < 1e-9);
        assert!(report.scores[3].mase <= mstl.mase + 1e-9);
    }
}
