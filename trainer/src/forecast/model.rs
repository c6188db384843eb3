//! Forecasting models: MSTL (daily and weekly seasonality) with an AutoETS trend (augurs), and
//! the seasonal-naive baselines it must beat.

use augurs::ets::AutoETS;
use augurs::mstl::MSTLModel;
use augurs::prelude::*;

/// A point forecast with an upper band.
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    pub point: Vec<f64>,
    pub upper: Vec<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ForecastError {
    #[error("{have} points of history, {need} needed")]
    TooShort { have: usize, need: usize },
    #[error("model failed: {0}")]
    Model(String),
}

/// Which model produced (or should produce) a forecast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// MSTL over the given periods with an AutoETS trend.
    Mstl,
    /// The value one period (in steps) earlier.
    SeasonalNaive(usize),
}

/// Forecasts `horizon` steps after `history`. `level` is the coverage of the band (0.8 gives a
/// 90th-percentile upper bound). Demand is never negative, so neither is a forecast.
pub fn forecast(
    method: Method,
    history: &[f64],
    periods: &[usize],
    horizon: usize,
    level: f64,
) -> Result<Forecast, ForecastError> {
    let mut f = match method {
        Method::SeasonalNaive(lag) => seasonal_naive(history, lag, horizon, level)?,
        Method::Mstl => {
            let need = 2 * periods.iter().copied().max().unwrap_or(1);
            if history.len() < need {
                return Err(ForecastError::TooShort { have: history.len(), need });
            }
            let model = MSTLModel::new(periods.to_vec(), AutoETS::non_seasonal().into_trend_model());
            let fit = model.fit(history).map_err(|e| ForecastError::Model(e.to_string()))?;
            let prediction = fit.predict(horizon, level).map_err(|e| ForecastError::Model(e.to_string()))?;
            let upper = prediction.intervals.map(|i| i.upper).unwrap_or_else(|| prediction.point.clone());
            Forecast { point: prediction.point, upper }
        }
    };
    for v in f.point.iter_mut().chain(f.upper.iter_mut()) {
        *v = if v.is_finite() { v.max(0.0) } else { 0.0 };
    }
    Ok(f)
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
        let f = forecast(Method::Mstl, history, &[24, 168], 48, 0.8).expect("forecast");
        let mae: f64 = f.point.iter().zip(future).map(|(p, a)| (p - a).abs()).sum::<f64>() / 48.0;
        assert!(mae < 3.0, "mean absolute error {mae} on a series of amplitude 50");
        assert!(f.upper.iter().zip(&f.point).all(|(u, p)| u >= p));
    }

    #[test]
    fn seasonal_naive_repeats_the_last_period() {
        let f = seasonal_naive(&[1.0, 2.0, 3.0, 1.0, 2.0, 3.0], 3, 4, 0.8).expect("forecast");
        assert_eq!(f.point, vec![1.0, 2.0, 3.0, 1.0]);
        assert!(matches!(forecast(Method::Mstl, &[1.0; 10], &[24, 168], 4, 0.8), Err(ForecastError::TooShort { .. })));
    }
}
