//! Demand forecasting: series with gaps and outages masked, MSTL + AutoETS (augurs) against
//! seasonal-naive baselines, rolling-origin backtests, and skill gating.

pub mod backtest;
pub mod calendar;
pub mod demand;
pub mod feeds;
pub mod model;
pub mod series;

/// Hourly demand with daily and weekly shapes, for tests.
#[cfg(test)]
pub(crate) fn seasonal_hours(hours: usize, trend_per_hour: f64) -> Vec<f64> {
    (0..hours)
        .map(|h| {
            let day = (std::f64::consts::TAU * (h % 24) as f64 / 24.0).sin();
            let weekend = if (h / 24) % 7 >= 5 { 0.6 } else { 1.0 };
            (100.0 + 50.0 * day) * weekend + h as f64 * trend_per_hour
        })
        .collect()
}
