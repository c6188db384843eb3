//! The forecast stage for a region: each profile's series forecast by [`super::engine`], and
//! the table the model carries.
//!
//! Cold start: a profile with under two weeks of its own history, in a region that has more,
//! takes the shape of the region's aggregate forecast, scaled by its share of the aggregate
//! since it appeared, instead of waiting for a history of its own.

use std::collections::BTreeMap;

use prewarm_shared::artifact::{ForecastTable, ProfileForecast};
use prewarm_shared::{ProfileId, UnixSeconds};
use serde::{Deserialize, Serialize};

use super::engine::{self, Context, ForecastConfig, MinuteSeries, SeriesForecast, SeriesReport};
use super::ledger::{AGGREGATE, Ledger};

const DAY: u64 = 86_400;
/// A profile younger than this (its first request to now) borrows the aggregate's shape.
const YOUNG_PROFILE_SECS: u64 = 14 * DAY;

/// A profile's requests per minute.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileSeries {
    /// The profile.
    pub profile: ProfileId,
    /// Its requests per minute.
    pub minutes: MinuteSeries,
}

/// How one profile's forecast was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileForecastReport {
    /// The series' own model, skill and band; for a borrowed shape, the aggregate's.
    pub series: SeriesReport,
    /// When the shape is not the profile's own: where it came from.
    pub note: Option<String>,
}

/// A region's forecast table and how each profile's forecast was made.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionForecast {
    /// The published table.
    pub table: ForecastTable,
    /// How each profile's forecast was made.
    pub reports: BTreeMap<ProfileId, ProfileForecastReport>,
}

/// The forecast stage for one region at `now`: a table of `steps` steps from the step at or
/// after `now` (plus the context's look-back). Profiles whose series has no data before `now`
/// get zeros.
pub fn tables(
    region: &str,
    series: &[ProfileSeries],
    now: UnixSeconds,
    ctx: &Context,
    config: &ForecastConfig,
    ledger: &mut Ledger,
) -> RegionForecast {
    let step = ctx.step_secs.clamp(60, 3600);
    let start = now.0.saturating_sub(ctx.lookback_secs).div_ceil(step) * step;
    let zeros = || vec![0.0f32; ctx.steps + (ctx.lookback_secs / step) as usize];
    let aggregate = aggregate_of(series);
    let region_start = aggregate.values.iter().position(Option::is_some).map(|i| aggregate.start + i as u64 * 60);
    let mut aggregate_forecast: Option<Option<SeriesForecast>> = None;
    let mut reports = BTreeMap::new();
    let mut out = Vec::with_capacity(series.len());
    for s in series {
        let appeared = first_request(&s.minutes);
        let own = appeared.map(|t| now.0.saturating_sub(t));
        let region_age = region_start.map_or(0, |t| now.0.saturating_sub(t));
        let young = own.is_some_and(|own| own < YOUNG_PROFILE_SECS && region_age >= own + DAY);
        let forecast = if young {
            let from = appeared.unwrap_or(now.0);
            let share = share_since(&s.minutes, &aggregate, from, now.0);
            let borrowed = aggregate_forecast
                .get_or_insert_with(|| {
                    engine::forecast_series(&(region.to_owned(), AGGREGATE), &aggregate, now.0, ctx, config, ledger)
                })
                .as_ref();
            borrowed.map(|a| {
                let scale = |v: &[f32]| v.iter().map(|x| x * share as f32).collect::<Vec<f32>>();
                let note = format!(
                    "profile under 14 days old: the region's shape ({}), scaled to its share {:.1} %",
                    a.report.method.name(),
                    share * 100.0
                );
                (scale(&a.expected), scale(&a.upper), scale(&a.alarm), a.report.clone(), Some(note))
            })
        } else {
            engine::forecast_series(&(region.to_owned(), s.profile.0), &s.minutes, now.0, ctx, config, ledger)
                .map(|f| (f.expected, f.upper, f.alarm, f.report, None))
        };
        let (expected, upper, alarm) = match forecast {
            Some((expected, upper, alarm, series_report, note)) => {
                reports.insert(s.profile, ProfileForecastReport { series: series_report, note });
                (expected, upper, alarm)
            }
            None => (zeros(), zeros(), zeros()),
        };
        let alarm = covered_alarm(alarm, &upper, (ctx.lead_secs / step) as usize);
        out.push(ProfileForecast { profile: s.profile, expected, upper, alarm });
    }
    if out.len() > 1 {
        let total = aggregate_forecast
            .get_or_insert_with(|| {
                engine::forecast_series(&(region.to_owned(), AGGREGATE), &aggregate, now.0, ctx, config, ledger)
            })
            .as_ref();
        if let Some(total) = total {
            reconcile_bands(&mut out, &total.upper);
        }
    }
    // The quantile the region's bands were chosen at: its total's when the profiles were
    // reconciled to it, else its one series'.
    let total_quantile = aggregate_forecast.flatten().filter(|_| out.len() > 1).map(|t| t.report.band_quantile);
    let upper_quantile = total_quantile
        .or_else(|| reports.values().next().map(|r| r.series.band_quantile))
        .unwrap_or(config.band_quantile);
    let table = ForecastTable {
        start: UnixSeconds(start),
        step_secs: step as u32,
        upper_quantile: upper_quantile as f32,
        series: out,
    };
    RegionForecast { table, reports }
}

/// Narrows the profiles' bands so that, together, they reach no higher than the band of the
/// region's total (`total_upper`, calibrated on the total's own errors), keeping each profile's
/// expected demand and its share of the margin.
///
/// Each profile's band holds `q` of its own minutes, but quantiles do not add: the sum of the
/// profiles' bands holds far more than `q` of the total's minutes (their excursions seldom
/// coincide), so planning each profile at its band bought capacity that planning the total at
/// its band did not (docs/replay.md, per profile vs aggregate). Only narrowed, never widened:
/// where the total's band is above the sum of the profiles' bands, they stay as they are.
fn reconcile_bands(series: &mut [ProfileForecast], total_upper: &[f32]) {
    for (slot, &target) in total_upper.iter().enumerate() {
        let (mut expected, mut margin) = (0.0f64, 0.0f64);
        for s in series.iter() {
            let (e, u) = (s.expected.get(slot).copied().unwrap_or(0.0), s.upper.get(slot).copied().unwrap_or(0.0));
            expected += f64::from(e);
            margin += f64::from((u - e).max(0.0));
        }
        if margin <= 0.0 {
            continue;
        }
        let keep = ((f64::from(target) - expected) / margin).clamp(0.0, 1.0) as f32;
        for s in series.iter_mut() {
            if let (Some(e), Some(u)) = (s.expected.get(slot).copied(), s.upper.get_mut(slot)) {
                *u = e + (*u - e).max(0.0) * keep;
            }
        }
    }
}

/// Each step's alarm level, at least the band of the `steps` steps after it.
fn covered_alarm(mut alarm: Vec<f32>, upper: &[f32], steps: usize) -> Vec<f32> {
    for (i, a) in alarm.iter_mut().enumerate() {
        let ahead = upper.iter().skip(i).take(steps + 1).copied().fold(f32::MIN, f32::max);
        *a = a.max(ahead);
    }
    alarm
}

/// The sum of the profiles' minutes (a minute is known when any profile knows it).
pub fn aggregate_of(series: &[ProfileSeries]) -> MinuteSeries {
    let start = series.iter().map(|s| s.minutes.start).min().unwrap_or(0);
    let end = series.iter().map(|s| s.minutes.end()).max().unwrap_or(start);
    let mut values = vec![None; ((end - start) / 60) as usize];
    for s in series {
        let offset = ((s.minutes.start - start) / 60) as usize;
        for (i, v) in s.minutes.values.iter().enumerate() {
            if let Some(v) = v {
                *values[offset + i].get_or_insert(0.0) += v;
            }
        }
    }
    MinuteSeries { start, values }
}

fn first_request(minutes: &MinuteSeries) -> Option<u64> {
    minutes.values.iter().position(|v| v.is_some_and(|v| v > 0.0)).map(|i| minutes.start + i as u64 * 60)
}

/// The profile's share of the aggregate's requests in `[from, to)`.
fn share_since(own: &MinuteSeries, aggregate: &MinuteSeries, from: u64, to: u64) -> f64 {
    let total = |m: &MinuteSeries| m.window(from, to).1.iter().flatten().sum::<f64>();
    let all = total(aggregate);
    if all > 0.0 { total(own) / all } else { 0.0 }
}

/// Requests per minute from `(Unix minute, requests)` counts, from `from` to `to` (seconds): a
/// minute without requests is zero (the store records every request).
pub fn minutes_from_counts(counts: impl IntoIterator<Item = (u64, u32)>, from: u64, to: u64) -> MinuteSeries {
    let start = from / 60 * 60;
    let len = (to.saturating_sub(start) / 60) as usize;
    let mut values = vec![Some(0.0); len];
    for (minute, n) in counts {
        if let Some(Some(v)) = minute.checked_sub(start / 60).and_then(|o| values.get_mut(o as usize)) {
            *v += f64::from(n);
        }
    }
    MinuteSeries { start, values }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::calendar::Occurrence;

    fn ctx() -> Context {
        Context { step_secs: 300, steps: 288, ..Context::default() }
    }

    #[test]
    fn the_alarm_is_at_least_the_band_a_lead_time_ahead() {
        // A band rising at step 3: with one step of lead, the capacity running at step 2 was
        // provisioned for step 3's band, so step 2's alarm is at least that.
        let upper = [10.0, 10.0, 10.0, 30.0, 30.0, 10.0];
        let alarm = vec![15.0, 15.0, 15.0, 40.0, 40.0, 15.0];
        assert_eq!(covered_alarm(alarm.clone(), &upper, 0), alarm);
        assert_eq!(covered_alarm(alarm, &upper, 1), vec![15.0, 15.0, 30.0, 40.0, 40.0, 15.0]);
    }

    #[test]
    fn the_profiles_bands_together_reach_no_higher_than_the_band_of_their_total() {
        let profile = |id: u16, expected: f32, upper: f32| ProfileForecast {
            profile: ProfileId(id),
            expected: vec![expected; 3],
            upper: vec![upper; 3],
            alarm: vec![upper * 2.0; 3],
        };
        let mut series = [profile(0, 100.0, 120.0), profile(1, 50.0, 80.0)];
        // Total expected 150, margins 20 + 30: a total band of 160 keeps a fifth of each margin;
        // one above 200 keeps them whole; one below 150 keeps none.
        reconcile_bands(&mut series, &[160.0, 260.0, 140.0]);
        assert_eq!(series[0].upper, vec![104.0, 120.0, 100.0]);
        assert_eq!(series[1].upper, vec![56.0, 80.0, 50.0]);
        assert_eq!(series[0].expected, vec![100.0; 3], "the expected demand and its mix stay");
        assert_eq!(series[1].alarm, vec![160.0; 3], "the alarm stays the profile's own");
    }

    #[test]
    fn a_calendar_event_raises_the_published_forecast_where_it_recurs() {
        // 10 requests a minute for 15 days; a 3-hour match on days 7 and 14 doubles them.
        let matches = |day: u64| Occurrence {
            name: format!("match {day}"),
            region: "all".into(),
            start: day * DAY + 18 * 3600,
            end: day * DAY + 21 * 3600,
            kind: "match".into(),
            multiplier: None,
        };
        let past = [matches(7), matches(14)];
        let values = (0..15 * 1440u64)
            .map(|m| Some(if past.iter().any(|e| (e.start..e.end).contains(&(m * 60))) { 20.0 } else { 10.0 }))
            .collect();
        let series = [ProfileSeries { profile: ProfileId(0), minutes: MinuteSeries { start: 0, values } }];
        let context = Context { events: vec![past[0].clone(), past[1].clone(), matches(15)], ..ctx() };
        let mut ledger = Ledger::default();
        let f = tables("eu", &series, UnixSeconds(15 * DAY), &context, &ForecastConfig::default(), &mut ledger);
        assert_eq!(f.table.start, UnixSeconds(15 * DAY));
        let expected = &f.table.series[0].expected;
        let (inside, outside) = (expected[18 * 12 + 6], expected[12 * 12]);
        assert!((outside - 50.0).abs() < 5.0, "a normal step: {outside}");
        assert!((inside / outside - 2.0).abs() < 0.2, "inside the next match: {inside} vs {outside}");
    }

    #[test]
    fn a_new_profile_borrows_the_regions_daily_shape_from_day_one() {
        // Three weeks of a region with a strong daily shape; a new profile appears in the last
        // two days as 20 % of the traffic.
        let rate = |m: u64| {
            let hour = (m % 1440) as f64 / 60.0;
            (4.0 + 3.0 * (std::f64::consts::TAU * (hour - 9.0) / 24.0).cos()).round()
        };
        let minutes = 21 * 1440u64;
        let newcomer = |m: u64| if m >= minutes - 2 * 1440 { (rate(m) / 5.0).round() } else { 0.0 };
        let old = (0..minutes).map(|m| Some(rate(m) - newcomer(m))).collect();
        let new = (0..minutes).map(|m| Some(newcomer(m))).collect();
        let series = [
            ProfileSeries { profile: ProfileId(0), minutes: MinuteSeries { start: 0, values: old } },
            ProfileSeries { profile: ProfileId(1), minutes: MinuteSeries { start: 0, values: new } },
        ];
        let mut ledger = Ledger::default();
        let f = tables("eu", &series, UnixSeconds(minutes * 60), &ctx(), &ForecastConfig::default(), &mut ledger);
        let fresh = &f.table.series[1].expected;
        let (max, min) = fresh.iter().fold((f32::MIN, f32::MAX), |(a, b), v| (a.max(*v), b.min(*v)));
        assert!(min >= 0.0 && max > 3.0 * min.max(0.5), "a daily shape, not a flat line: {min}..{max}");
        assert!(f.reports[&ProfileId(1)].note.as_deref().is_some_and(|n| n.contains("share")));
        let (new_total, all_total): (f32, f32) =
            (fresh.iter().sum(), f.table.series.iter().flat_map(|s| s.expected.iter()).sum());
        assert!((new_total / all_total - 0.2).abs() < 0.06, "scaled by its own share: {}", new_total / all_total);
    }
}
