//! The forecast stage: per region × profile, demand series with gaps, outages and transient
//! outliers masked; candidate models (MSTL variants on the raw and log scales, seasonal
//! naives) chosen by their recent out-of-sample skill; calibrated bands; calendar events,
//! feeds and cold starts; and the rolling-origin backtest that scores what ships.

pub mod backtest;
pub mod band_choice;
pub mod calendar;
pub mod cold_start;
pub mod engine;
pub mod feeds;
pub mod ledger;
pub mod model;
pub mod nowcast;
pub mod robust;
pub mod series;
pub mod tables;

/// Default step of published forecast tables (`forecast_step_secs`); a table covers a day.
pub const DEFAULT_STEP_SECS: u64 = 300;

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
