//! Hourly forecasts as they were known at each moment of a replay.
//!
//! At each origin (an hour boundary, every `every_hours`) a model is fitted on the complete
//! hours before the origin only, after masking outages with data before the origin only, so
//! no forecast can contain anything that happened after it was made.

use crate::forecast::calendar::{self, Occurrence};
use crate::forecast::model::{self, Method};
use crate::forecast::series::Series;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScheduleConfig {
    pub every_hours: usize,
    pub horizon_hours: usize,
    /// History the model sees, at most.
    pub history_days: usize,
    /// Band coverage of the upper forecast.
    pub level: f64,
    /// The quantile of a minute's deviation from its hour's mean, in units of √mean, learnt
    /// per origin from the last week: minute-level burstiness the hourly model cannot see.
    pub burst_quantile: f64,
}

/// One origin's forecast.
#[derive(Debug, Clone, PartialEq)]
struct Origin {
    minute: usize,
    /// Requests per minute for the hours starting at `minute`.
    point: Vec<f64>,
    /// The observed rate of the hour before the origin (what interpolation starts from).
    last_hour: Option<f64>,
    /// (minute − hour mean) / √(hour mean) at `burst_quantile` over the last week.
    burst: f64,
    /// Calendar multipliers per kind, learnt from occurrences before the origin.
    learnt: Vec<(String, f64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HourlySchedule {
    origins: Vec<Origin>,
    /// Unix seconds of minute 0, and the calendar: events apply at minute precision.
    start: u64,
    events: Vec<Occurrence>,
}

/// A forecast of the rate at some minute, as known at a given time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Known {
    /// Requests per minute.
    pub rate: f64,
    /// The burstiness margin in units of √rate.
    pub burst: f64,
}

impl HourlySchedule {
    /// `start` is the Unix time of minute 0.
    /// Calendar `events` (absolute times) are masked in each fit's history, their effect
    /// learnt from the occurrences before the origin, and applied to the forecast.
    pub fn build(demand: &[Option<f64>], start: u64, config: &ScheduleConfig, events: &[Occurrence]) -> Self {
        let first_boundary = ((3600 - start % 3600) % 3600 / 60) as usize;
        let history = config.history_days * 1440;
        let mut origins = Vec::new();
        let mut minute = first_boundary + 24 * 60;
        while minute < demand.len() {
            let from = first_boundary + (minute - first_boundary).saturating_sub(history) / 60 * 60;
            let from = from.max(first_boundary);
            let from_time = start + from as u64 * 60;
            if let Some(origin) = forecast_at(&demand[from..minute], minute, from_time, config, events) {
                origins.push(origin);
            }
            minute += config.every_hours * 60;
        }
        Self { origins, start, events: events.to_vec() }
    }

    /// The multiplier of an event under way at minute `target` (1 outside events): learnt from
    /// its kind's past occurrences, else the event's own.
    fn event_factor(&self, origin: &Origin, target: usize) -> f64 {
        let at = self.start + target as u64 * 60;
        self.events
            .iter()
            .filter(|e| (e.start..e.end).contains(&at))
            .filter_map(|e| origin.learnt.iter().find(|(k, _)| *k == e.kind).map(|(_, m)| *m).or(e.multiplier))
            .fold(1.0, f64::max)
    }

    fn origin_at(&self, now: usize) -> Option<&Origin> {
        let i = self.origins.partition_point(|o| o.minute <= now).checked_sub(1)?;
        self.origins.get(i)
    }

    /// The minute burstiness learnt at the latest origin not after `now`.
    pub fn burst_at(&self, now: usize) -> Option<f64> {
        self.origin_at(now).map(|o| o.burst)
    }

    /// The forecast for the hour holding minute `target`, made at the latest origin not after
    /// `now`: a step per hour, as hourly scaling schedules are.
    pub fn known_at(&self, now: usize, target: usize) -> Option<Known> {
        let origin = self.origin_at(now)?;
        let index = target.checked_sub(origin.minute)? / 60;
        let rate = *origin.point.get(index).or(origin.point.last())? * self.event_factor(origin, target);
        Some(Known { rate, burst: origin.burst })
    }

    /// Like [`known_at`](Self::known_at) but interpolated between hour centres, so a ramp is
    /// followed minute by minute instead of in hourly steps.
    pub fn smooth_at(&self, now: usize, target: usize) -> Option<Known> {
        let origin = self.origin_at(now)?;
        // Centres: the hour before the origin at −30, forecast hour k at 60k + 30.
        let offset = target.checked_sub(origin.minute)? as f64 - 30.0;
        let value = |k: isize| -> Option<f64> {
            if k < 0 {
                origin.last_hour.or(origin.point.first().copied())
            } else {
                origin.point.get(k as usize).copied()
            }
        };
        let k = (offset / 60.0).floor() as isize;
        let rate = match (value(k), value(k + 1)) {
            (Some(a), Some(b)) => {
                let w = (offset - 60.0 * k as f64) / 60.0;
                a + (b - a) * w
            }
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => *origin.point.last()?,
        };
        Some(Known { rate: rate * self.event_factor(origin, target), burst: origin.burst })
    }
}

/// Fits on `minutes` (which end at the origin, start on an hour boundary).
fn forecast_at(
    minutes: &[Option<f64>],
    minute: usize,
    from_time: u64,
    config: &ScheduleConfig,
    events: &[Occurrence],
) -> Option<Origin> {
    let mut series = Series { start: 0, step_secs: 60, values: minutes.to_vec() };
    series.mask_outages(1440, 30, 1.0);
    let hours: Vec<Option<f64>> = series
        .values
        .chunks(60)
        .map(|c| (c.len() == 60 && c.iter().all(Option::is_some)).then(|| c.iter().flatten().sum::<f64>() / 60.0))
        .collect();
    hours.iter().flatten().next()?;
    let mut hourly = Series { start: from_time, step_secs: 3600, values: hours.clone() };
    // Only occurrences that ended before the origin can teach anything.
    let origin_time = from_time + hours.len() as u64 * 3600;
    let past: Vec<Occurrence> = events.iter().filter(|e| e.end <= origin_time).cloned().collect();
    // Masked and learnt here; applied minute by minute when the forecast is read, so an
    // event's edges are sharp rather than interpolated across hours.
    let burst = burst(&series.values, &hours, config.burst_quantile);
    // A zero horizon asks for the burstiness alone: no model to fit.
    if config.horizon_hours == 0 {
        return Some(Origin { minute, point: Vec::new(), last_hour: None, burst, learnt: Vec::new() });
    }
    let learnt = calendar::learn(&mut hourly, &past).into_iter().collect();
    let filled = hourly.imputed(24, 168);
    let f = model::forecast(Method::Mstl, &filled, &[24, 168], config.horizon_hours, config.level)
        .or_else(|_| model::seasonal_naive(&filled, 24.min(filled.len()), config.horizon_hours, config.level))
        .ok()?;
    Some(Origin { minute, point: f.point, last_hour: hours.last().copied().flatten(), burst, learnt })
}

/// The quantile of (minute − hour mean) / √(hour mean) over the last week's complete,
/// non-empty hours: Poisson-like noise grows with √rate, so one number fits day and night.
/// (Per hour of day and against the curve through hour centres were tried on nasa95: no better.)
fn burst(minutes: &[Option<f64>], hours: &[Option<f64>], quantile: f64) -> f64 {
    let week = hours.len().saturating_sub(168);
    let mut ratios: Vec<f64> = Vec::with_capacity(168 * 60);
    for (h, mean) in hours.iter().enumerate().skip(week) {
        // Below a request a minute, √rate says little about the spread (a quiet night of
        // 0.1/min with one 3-request minute would read as z = 9): such hours would inflate
        // the margin of every busy hour.
        let Some(mean) = *mean else { continue };
        let scale = mean.max(1.0).sqrt();
        ratios.extend(minutes[h * 60..(h + 1) * 60].iter().flatten().map(|d| (d - mean) / scale));
    }
    if ratios.is_empty() {
        return 0.0;
    }
    ratios.sort_by(f64::total_cmp);
    ratios[((ratios.len() - 1) as f64 * quantile.clamp(0.0, 1.0)) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forecasts_only_know_the_past() {
        let mut demand: Vec<Option<f64>> = (0..20 * 1440)
            .map(|m| Some(50.0 + 30.0 * ((m % 1440) as f64 / 1440.0 * std::f64::consts::TAU).sin()))
            .collect();
        let config =
            ScheduleConfig { every_hours: 6, horizon_hours: 12, history_days: 14, level: 0.8, burst_quantile: 0.9 };
        let before = HourlySchedule::build(&demand, 0, &config, &[]);
        // A spike on day 17 must not change any forecast made before it.
        for d in &mut demand[17 * 1440..17 * 1440 + 30] {
            *d = Some(5000.0);
        }
        let after = HourlySchedule::build(&demand, 0, &config, &[]);
        for now in (0..17 * 1440).step_by(37) {
            assert_eq!(before.known_at(now, now + 5), after.known_at(now, now + 5), "minute {now}");
        }
        assert_ne!(before.known_at(18 * 1440, 18 * 1440 + 5), after.known_at(18 * 1440, 18 * 1440 + 5));
        let known = before.known_at(10 * 1440 + 360, 10 * 1440 + 365).expect("a forecast");
        assert!((known.rate - 80.0).abs() < 8.0, "{known:?}");
    }
}
