//! What operators run instead of prewarm, as their real counterparts behave; each becomes a
//! trigger beside a CPU trigger on the same HPA ([`super::cluster`]).
//!
//! - **AWS predictive scaling** (EC2 Auto Scaling): every 6 hours an hourly forecast of the
//!   next 48 hours from up to 14 days of history; each hour's capacity, sized for the target
//!   utilisation, is scheduled `SchedulingBufferTime` before the hour — set to the launch
//!   time, at least 300 s (the buffer exists to cover it); dynamic target tracking (the CPU
//!   trigger) acts on top. AWS documents its model only as machine learning on the metric's
//!   history; MSTL stands in for it here.
//! - **Seasonal naive 7 d** (what Grafana Mimir's autoscaling does): a floor of a factor times
//!   the demand a week before the minute being provisioned.

use crate::forecast::model::{self, Method};
use crate::forecast::series::Series;

/// AWS refits this often, this far ahead, from at most this much history.
const EVERY_HOURS: usize = 6;
const HORIZON_HOURS: usize = 48;
const HISTORY_DAYS: usize = 14;

/// One origin's hourly forecast (requests per minute for the hours from `minute`).
#[derive(Debug, Clone, PartialEq)]
struct Origin {
    minute: usize,
    rate: Vec<f64>,
}

/// AWS-style hourly forecasts as they were known at each moment of a replay: each fitted on
/// the complete hours before its origin only.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HourlySchedule {
    origins: Vec<Origin>,
}

impl HourlySchedule {
    /// `start` is the Unix time of minute 0 of `demand`.
    pub fn build(demand: &[Option<f64>], start: u64) -> Self {
        let first_boundary = ((3600 - start % 3600) % 3600 / 60) as usize;
        let history = HISTORY_DAYS * 1440;
        let mut origins = Vec::new();
        let mut minute = first_boundary + 24 * 60;
        while minute < demand.len() {
            let from = first_boundary + (minute - first_boundary).saturating_sub(history) / 60 * 60;
            if let Some(rate) = fit(&demand[from.max(first_boundary)..minute]) {
                origins.push(Origin { minute, rate });
            }
            minute += EVERY_HOURS * 60;
        }
        Self { origins }
    }

    /// The forecast rate (per minute) for the hour holding minute `target`, made at the latest
    /// origin not after `now`.
    pub fn known_at(&self, now: usize, target: usize) -> Option<f64> {
        let i = self.origins.partition_point(|o| o.minute <= now).checked_sub(1)?;
        let origin = &self.origins[i];
        let hour = target.checked_sub(origin.minute)? / 60;
        origin.rate.get(hour).or(origin.rate.last()).copied()
    }
}

/// Hourly means of `minutes` (which start on an hour boundary and end at the origin), with
/// outages masked from this history only, forecast 48 hours ahead.
fn fit(minutes: &[Option<f64>]) -> Option<Vec<f64>> {
    let mut series = Series { start: 0, step_secs: 60, values: minutes.to_vec() };
    series.mask_outages(1440, 30, 1.0);
    let hours: Vec<Option<f64>> = series
        .values
        .chunks(60)
        .map(|c| {
            let present: Vec<f64> = c.iter().flatten().copied().collect();
            (c.len() == 60 && present.len() >= 45).then(|| present.iter().sum::<f64>() / present.len() as f64)
        })
        .collect();
    hours.iter().flatten().next()?;
    let filled = Series { start: 0, step_secs: 3600, values: hours }.imputed(24, 168);
    let f = model::forecast(Method::Mstl, &filled, &[24, 168], HORIZON_HOURS, 0.8)
        .or_else(|_| model::seasonal_naive(&filled, 24.min(filled.len()), HORIZON_HOURS, 0.8))
        .ok()?;
    Some(f.point)
}

/// The AWS buffer: capacity for an hour is in place this long before it.
pub fn aws_buffer_minutes(delay_minutes: usize) -> usize {
    delay_minutes.max(5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forecasts_only_know_the_past() {
        let mut demand: Vec<Option<f64>> = (0..20 * 1440)
            .map(|m| Some(50.0 + 30.0 * ((m % 1440) as f64 / 1440.0 * std::f64::consts::TAU).sin()))
            .collect();
        let before = HourlySchedule::build(&demand, 0);
        // A spike on day 17 must not change any forecast made before it.
        for d in &mut demand[17 * 1440..17 * 1440 + 30] {
            *d = Some(5000.0);
        }
        let after = HourlySchedule::build(&demand, 0);
        for now in (0..17 * 1440).step_by(37) {
            assert_eq!(before.known_at(now, now + 5), after.known_at(now, now + 5), "minute {now}");
        }
        assert_ne!(before.known_at(18 * 1440, 18 * 1440 + 5), after.known_at(18 * 1440, 18 * 1440 + 5));
        let rate = before.known_at(10 * 1440 + 360, 10 * 1440 + 365).expect("a forecast");
        assert!((rate - 80.0).abs() < 8.0, "{rate}");
        assert_eq!((aws_buffer_minutes(1), aws_buffer_minutes(15)), (5, 15));
    }
}
