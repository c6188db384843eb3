//! Forecasting models: MSTL (daily and weekly seasonality, augurs) with a trend model, on the
//! raw or the log scale, and the seasonal-naive baselines every model must beat.
//!
//! The log scale (`ln(1 + x)`) stabilises the variance of a series that grows or whose daily
//! swing scales with its level; the trend is either absent (the deseasonalised level is
//! smoothed, never extrapolated) or damped, so that a day's forecast cannot carry a week's
//! growth rate unchecked. Which of them a series gets is decided by its recent skill
//! ([`super::ledger`]), not here.

use augurs::ets::AutoETS;
use augurs::mstl::MSTLModel;
use augurs::prelude::*;

/// A point forecast with an upper band.
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    /// Expected value per step.
    pub point: Vec<f64>,
    /// Upper band per step.
    pub upper: Vec<f64>,
}

#[derive(Debug, thiserror::Error)]
/// Why a model could not forecast.
#[allow(missing_docs, reason = "a variant's fields are named in its message")]
pub enum ForecastError {
    #[error("{have} points of history, {need} needed")]
    /// Too little history.
    TooShort { have: usize, need: usize },
    /// The model failed.
    #[error("model failed: {0}")]
    Model(String),
}

/// Which model produced (or should produce) a forecast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// MSTL with AutoETS choosing any trend (undamped included): the reference model, which
    /// can run away on growing or bursty series.
    Mstl,
    /// MSTL with a damped trend, raw scale.
    MstlDamped,
    /// MSTL on `ln(1 + x)` with a damped trend.
    MstlLogDamped,
    /// MSTL on `ln(1 + x)` with no trend: STL's smoothed level held, never extrapolated.
    MstlLogLevel,
    /// The value one period (in steps) earlier.
    SeasonalNaive(usize),
}

impl Method {
    /// A short stable name (reports, metrics labels).
    pub fn name(&self) -> String {
        match self {
            Method::Mstl => "mstl".into(),
            Method::MstlDamped => "mstl_damped".into(),
            Method::MstlLogDamped => "mstl_log_damped".into(),
            Method::MstlLogLevel => "mstl_log_level".into(),
            Method::SeasonalNaive(lag) => format!("seasonal_naive_{lag}"),
        }
    }
}

/// How MSTL's deseasonalised part is modelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trend {
    Auto,
    Damped,
    LevelOnly,
}

/// Forecasts `horizon` steps after `history`. `level` is the coverage of the model's own band
/// (0.8 gives a 90th-percentile upper bound; the published band is calibrated separately).
/// Demand is never negative, so neither is a forecast.
pub fn forecast(
    method: Method,
    history: &[f64],
    periods: &[usize],
    horizon: usize,
    level: f64,
) -> Result<Forecast, ForecastError> {
    let mut f = match method {
        Method::SeasonalNaive(lag) => seasonal_naive(history, lag, horizon, level)?,
        Method::Mstl => mstl(history, periods, horizon, level, false, Trend::Auto)?,
        Method::MstlDamped => mstl(history, periods, horizon, level, false, Trend::Damped)?,
        Method::MstlLogDamped => mstl(history, periods, horizon, level, true, Trend::Damped)?,
        Method::MstlLogLevel => mstl(history, periods, horizon, level, true, Trend::LevelOnly)?,
    };
    for v in f.point.iter_mut().chain(f.upper.iter_mut()) {
        *v = if v.is_finite() { v.max(0.0) } else { 0.0 };
    }
    Ok(f)
}

fn mstl(
    history: &[f64],
    periods: &[usize],
    horizon: usize,
    level: f64,
    log: bool,
    trend: Trend,
) -> Result<Forecast, ForecastError> {
    let need = 2 * periods.iter().copied().max().unwrap_or(1);
    if history.len() < need || periods.is_empty() {
        return Err(ForecastError::TooShort { have: history.len(), need });
    }
    let data: Vec<f64> = if log { history.iter().map(|v| v.max(0.0).ln_1p()).collect() } else { history.to_vec() };
    let model_error = |e: &dyn std::fmt::Display| ForecastError::Model(e.to_string());
    let prediction = match trend {
        // The deseasonalised level held, never extrapolated: the median of the last day's, so
        // that a crowd of less than half a day at the end of the history is not carried
        // forward (the nowcast answers it while it lasts) and a level shift is after 12 hours.
        Trend::LevelOnly => {
            let fitted = MSTLModel::naive(periods.to_vec()).fit(&data).map_err(|e| model_error(&e))?;
            let decomposition = fitted.fit();
            let mut deseasonalised: Vec<f64> =
                decomposition.trend().iter().zip(decomposition.remainder()).map(|(t, r)| f64::from(t + r)).collect();
            let last = deseasonalised.last().copied().unwrap_or(0.0);
            let day = periods.iter().copied().min().unwrap_or(1).min(deseasonalised.len());
            let recent = &mut deseasonalised[data.len().saturating_sub(day)..];
            recent.sort_by(f64::total_cmp);
            let robust = recent.get(recent.len() / 2).copied().unwrap_or(last);
            let mut prediction = fitted.predict(horizon, level).map_err(|e| model_error(&e))?;
            let shift = robust - last;
            prediction.point.iter_mut().for_each(|v| *v += shift);
            if let Some(intervals) = prediction.intervals.as_mut() {
                intervals.lower.iter_mut().chain(intervals.upper.iter_mut()).for_each(|v| *v += shift);
            }
            prediction
        }
        Trend::Auto | Trend::Damped => {
            let ets = match trend {
                Trend::Damped => AutoETS::non_seasonal().damped(true).map_err(|e| model_error(&e))?,
                _ => AutoETS::non_seasonal(),
            };
            MSTLModel::new(periods.to_vec(), ets.into_trend_model())
                .fit(&data)
                .and_then(|fit| fit.predict(horizon, level))
                .map_err(|e| model_error(&e))?
        }
    };
    let upper = prediction.intervals.map(|i| i.upper).unwrap_or_else(|| prediction.point.clone());
    let back = |v: Vec<f64>| if log { v.into_iter().map(|x| x.min(50.0).exp_m1()).collect() } else { v };
    Ok(Forecast { point: back(prediction.point), upper: back(upper) })
}

/// Repeats the last `lag` values; the band is the point plus the in-sample error quantile.
pub fn seasonal_naive(history: &[f64], lag: usize, horizon: usize, level: f64) -> Result<Forecast, ForecastError> {
    if history.len() < lag || lag == 0 {
        return Err(ForecastError::TooShort { have: history.len(), need: lag.max(1) });
    }
    let point: Vec<f64> = (0..horizon).map(|h| history[history.len() - lag + h % lag]).collect();
    let mut errors: Vec<f64> = (lag..history.len()).map(|i| history[i] - history[i - lag]).collect();
    errors.sort_by(f64::total_cmp);
    let q = (0.5 + level / 2.0).clamp(0.5, 1.0);
    let margin = errors.get(((errors.len().saturating_sub(1)) as f64 * q) as usize).copied().unwrap_or(0.0).max(0.0);
    let upper = point.iter().map(|p| p + margin).collect();
    Ok(Forecast { point, upper })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seasonal(hours: usize) -> Vec<f64> {
        crate::forecast::seasonal_hours(hours, 0.05)
    }

    #[test]
    fn mstl_recovers_a_known_seasonal_series() {
        let series = seasonal(24 * 7 * 5);
        let (history, future) = series.split_at(24 * 7 * 4);
        for method in [Method::Mstl, Method::MstlDamped, Method::MstlLogDamped, Method::MstlLogLevel] {
            let f = forecast(method, history, &[24, 168], 48, 0.8).expect("forecast");
            let mae: f64 = f.point.iter().zip(future).map(|(p, a)| (p - a).abs()).sum::<f64>() / 48.0;
            // The level model holds the level, so on a trending series it lags by the trend.
            let bound = if method == Method::MstlLogLevel { 10.0 } else { 6.0 };
            assert!(mae < bound, "{method:?}: mean absolute error {mae} on a series of amplitude 50");
            assert!(f.upper.iter().zip(&f.point).all(|(u, p)| u >= p));
        }
    }

    #[test]
    fn the_level_model_does_not_carry_a_late_surge_forward() {
        // Four weeks of a steady daily shape, then the last 10 hours climb steeply (+15 % an
        // hour): a trend extrapolated from them would multiply tomorrow's demand.
        let mut history = crate::forecast::seasonal_hours(24 * 28, 0.0);
        let n = history.len();
        for (i, v) in history[n - 10..].iter_mut().enumerate() {
            *v *= 1.15f64.powi(i as i32 + 1);
        }
        // Tomorrow's usual: the same day a week earlier (the shape has weekends).
        let usual = history[n - 168..n - 144].iter().sum::<f64>() / 24.0;
        let f = forecast(Method::MstlLogLevel, &history, &[24, 168], 24, 0.8).expect("forecast");
        let tomorrow = f.point.iter().sum::<f64>() / 24.0;
        assert!(tomorrow < 1.3 * usual, "tomorrow averages {tomorrow:.0} against {usual:.0}");
    }

    #[test]
    fn a_runaway_trend_is_damped() {
        // Three weeks of a daily shape on a level that grows faster and faster (+8 % a day,
        // compounding): undamped, the trend is extrapolated at full slope.
        let history: Vec<f64> = (0..24 * 21)
            .map(|h| {
                let day = (std::f64::consts::TAU * (h % 24) as f64 / 24.0).sin();
                (100.0 + 50.0 * day) * 1.08f64.powf(h as f64 / 24.0)
            })
            .collect();
        let day_mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        for method in [Method::MstlDamped, Method::MstlLogDamped] {
            let f = forecast(method, &history, &[24, 168], 72, 0.8).expect("forecast");
            let (first, third) = (day_mean(&f.point[..24]), day_mean(&f.point[48..]));
            let last = day_mean(&history[history.len() - 24..]);
            // Damped: the third day grows less over the second than 8 % compounding would.
            assert!(third < first * 1.08 * 1.08, "{method:?}: day 1 {first:.0}, day 3 {third:.0}");
            assert!(first < last * 1.3, "{method:?}: day 1 {first:.0} after {last:.0}");
        }
    }

    #[test]
    fn seasonal_naive_repeats_the_last_period() {
        let f = seasonal_naive(&[1.0, 2.0, 3.0, 1.0, 2.0, 3.0], 3, 4, 0.8).expect("forecast");
        assert_eq!(f.point, vec![1.0, 2.0, 3.0, 1.0]);
        assert!(matches!(forecast(Method::Mstl, &[1.0; 10], &[24, 168], 4, 0.8), Err(ForecastError::TooShort { .. })));
    }
}
