//! The forecast table a model carries: expected requests and an upper band per profile and
//! step, for the next day, from each profile's request history.

use prewarm_shared::ProfileId;
use prewarm_shared::UnixSeconds;
use prewarm_shared::artifact::{ForecastTable, ProfileForecast};

use super::calendar::{self, Occurrence};
use super::model::{self, Method};
use super::series::Series;

/// Default step of published forecasts (`forecast_step_secs`; the edge compares a minute's
/// count scaled to the table's step). Tables cover one day of steps.
pub const STEP_SECS: u64 = 300;
/// Band coverage: the upper bound is the 90th percentile.
pub const LEVEL: f64 = 0.8;
/// Zero runs this long (steps) against a busy norm are outages.
const OUTAGE_MIN_STEPS: usize = 6;

/// Forecasts each profile's requests per step from its request times. The table starts at the
/// step after the data ends, or at `now` when the data reaches it; history shorter than two
/// weeks drops the weekly period, shorter than two days falls back to the last day repeated.
///
/// Calendar `events` are masked in the history, their effect learnt per kind, and applied to
/// the forecast where the next occurrences fall.
///
/// Cold start: a profile with under two weeks of its own history, in a region that has more,
/// borrows the shape of the region's aggregate forecast, scaled by its share of the aggregate
/// since it appeared, instead of waiting for history of its own.
pub fn table(requests: &[(ProfileId, Vec<u64>)], now: UnixSeconds, events: &[Occurrence]) -> ForecastTable {
    table_with_skill(requests, now, events, &[], STEP_SECS).table
}

/// One profile's forecast, its held-out skill, and the feed effects applied to it.
type Fitted = (model::Forecast, Option<Skill>, Vec<(String, super::feeds::Effect)>);

/// A forecast table and what was learnt making it.
#[derive(Debug, Clone, PartialEq)]
pub struct TableReport {
    pub table: ForecastTable,
    /// Held-out skill of the profiles with 15 days or more of history.
    pub skills: Vec<(ProfileId, Skill)>,
    /// Feed effects found per profile: (profile, feed name, effect).
    pub effects: Vec<(ProfileId, String, super::feeds::Effect)>,
}

/// A profile's forecast skill on the last day of its history, held out: MASE of the model and
/// of the seasonal-naive baselines (the value a day and a week earlier), all scaled by the
/// in-sample MAE of seasonal naive 1 d. When a baseline beats the model, the published
/// forecast is that baseline's (skill gating).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Skill {
    pub model_mase: f64,
    pub naive_day_mase: f64,
    pub naive_week_mase: f64,
    /// What the published forecast comes from.
    pub published: Method,
}

impl Skill {
    pub fn gated(&self) -> bool {
        self.published != Method::Mstl
    }
}

/// [`table`], with each profile's held-out skill when its history allows (15 days or more of
/// its own; cold-start profiles borrow a shape and have none).
/// `feeds`: each external feed's points for this region (see [`super::feeds::for_region`]).
pub fn table_with_skill(
    requests: &[(ProfileId, Vec<u64>)],
    now: UnixSeconds,
    events: &[Occurrence],
    feeds: &[(String, Vec<super::feeds::FeedPoint>)],
    step_secs: u64,
) -> TableReport {
    let step = step_secs.clamp(60, 3600);
    let end = requests.iter().flat_map(|(_, t)| t.iter().copied()).max().unwrap_or(now.0);
    let data_end = (end / step + 1) * step;
    // Forecast up to now + horizon, but never more than a week past the data.
    let start = if now.0 > data_end && now.0 - data_end <= 7 * 86_400 { now.0 / step * step } else { data_end };
    let skip = ((start - data_end) / step) as usize;
    let first = requests.iter().flat_map(|(_, t)| t.iter().copied()).min().unwrap_or(start);
    let base = first / step * step;
    let len = ((data_end - base) / step) as usize;
    let day = (86_400 / step) as usize;
    let counts: Vec<Vec<f64>> = requests
        .iter()
        .map(|(_, times)| {
            let mut c = vec![0.0; len];
            for t in times {
                if let Some(slot) = c.get_mut(((t - base) / step) as usize) {
                    *slot += 1.0;
                }
            }
            c
        })
        .collect();
    let horizon = skip + day;
    // Each feed on the grid of the history and the horizon after it.
    let covariates: Vec<(&str, Vec<Option<f64>>)> = feeds
        .iter()
        .map(|(name, points)| (name.as_str(), super::feeds::align(points, base, step, len + horizon)))
        .collect();
    let fit = |values: &[f64]| -> Option<Fitted> {
        let mut s = Series { start: base, step_secs: step, values: values.iter().map(|v| Some(*v)).collect() };
        s.mask_outages(day, OUTAGE_MIN_STEPS, 1.0);
        let learnt = calendar::learn(&mut s, events);
        let history = s.imputed(day, 7 * day);
        let periods: Vec<usize> = [day, 7 * day].into_iter().filter(|p| history.len() >= 2 * p).collect();
        let skill = held_out_skill(&history, &periods, day);
        let f = match skill.map(|s| s.published) {
            Some(Method::SeasonalNaive(lag)) => model::seasonal_naive(&history, lag, horizon, LEVEL),
            _ if periods.is_empty() => model::seasonal_naive(&history, day.min(history.len().max(1)), horizon, LEVEL),
            _ => model::forecast(Method::Mstl, &history, &periods, horizon, LEVEL)
                .or_else(|_| model::seasonal_naive(&history, day.min(history.len()), horizon, LEVEL)),
        };
        let mut f = f.ok()?;
        let mut effects = Vec::new();
        for (name, covariate) in &covariates {
            let (past, future) = covariate.split_at(len.min(covariate.len()));
            if let Some(effect) = super::feeds::learn(&history, past, day) {
                super::feeds::apply(&mut f, &effect, future);
                effects.push(((*name).to_owned(), effect));
            }
        }
        calendar::apply(&mut f, data_end, step, events, &learnt);
        Some((f, skill, effects))
    };
    let aggregate: Vec<f64> = (0..len).map(|i| counts.iter().map(|c| c[i]).sum()).collect();
    let mut aggregate_forecast: Option<Option<model::Forecast>> = None;
    let mut skills = Vec::new();
    let mut effects = Vec::new();
    let series = requests
        .iter()
        .zip(&counts)
        .map(|((profile, _), values)| {
            let appeared = values.iter().position(|v| *v > 0.0).unwrap_or(len);
            let own = len - appeared;
            let cold = own < 14 * day && appeared >= day && own > 0;
            let f = if cold {
                let share = values[appeared..].iter().sum::<f64>() / aggregate[appeared..].iter().sum::<f64>().max(1.0);
                aggregate_forecast.get_or_insert_with(|| fit(&aggregate).map(|(f, ..)| f)).as_ref().map(|a| {
                    model::Forecast {
                        point: a.point.iter().map(|v| v * share).collect(),
                        upper: a.upper.iter().map(|v| v * share).collect(),
                    }
                })
            } else {
                fit(values).map(|(f, skill, found)| {
                    if let Some(skill) = skill {
                        skills.push((*profile, skill));
                    }
                    effects.extend(found.into_iter().map(|(name, e)| (*profile, name, e)));
                    f
                })
            };
            let (expected, upper) = match f {
                Some(f) => (f.point[skip..].to_vec(), f.upper[skip..].to_vec()),
                None => (vec![0.0; day], vec![0.0; day]),
            };
            ProfileForecast {
                profile: *profile,
                expected: expected.iter().map(|v| *v as f32).collect(),
                upper: upper.iter().map(|v| *v as f32).collect(),
            }
        })
        .collect();
    let table = ForecastTable {
        start: UnixSeconds(start),
        step_secs: step as u32,
        upper_quantile: (0.5 + LEVEL / 2.0) as f32,
        series,
    };
    TableReport { table, skills, effects }
}

/// Holds out the last day: the model fitted on the days before it against the seasonal-naive
/// forecasts from the same history. `None` under 15 days (no weekly baseline to compare).
fn held_out_skill(history: &[f64], periods: &[usize], day: usize) -> Option<Skill> {
    if history.len() < 15 * day || periods.is_empty() {
        return None;
    }
    let (train, test) = history.split_at(history.len() - day);
    let scale = train.iter().zip(&train[day..]).map(|(a, b)| (a - b).abs()).sum::<f64>() / (train.len() - day) as f64;
    if scale <= 0.0 {
        return None;
    }
    let periods: Vec<usize> = periods.iter().copied().filter(|p| train.len() >= 2 * p).collect();
    let model = model::forecast(Method::Mstl, train, &periods, day, LEVEL).ok()?;
    let mase = |predicted: &[f64]| {
        test.iter().zip(predicted).map(|(a, p)| (a - p).abs()).sum::<f64>() / test.len() as f64 / scale
    };
    let naive = |lag: usize| mase(&(0..day).map(|h| train[train.len() - lag + h % lag]).collect::<Vec<_>>());
    let (model_mase, naive_day_mase, naive_week_mase) = (mase(&model.point), naive(day), naive(7 * day));
    let published = if model_mase <= naive_day_mase.min(naive_week_mase) {
        Method::Mstl
    } else if naive_day_mase <= naive_week_mase {
        Method::SeasonalNaive(day)
    } else {
        Method::SeasonalNaive(7 * day)
    };
    Some(Skill { model_mase, naive_day_mase, naive_week_mase, published })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_calendar_event_raises_the_published_forecast_where_it_recurs() {
        // 10 requests per step for 15 days; a 3-hour match on days 7 and 14 doubles them.
        let matches = |day: u64| Occurrence {
            name: format!("match {day}"),
            region: "all".into(),
            start: day * 86_400 + 18 * 3600,
            end: day * 86_400 + 21 * 3600,
            kind: "match".into(),
            multiplier: None,
        };
        let past = [matches(7), matches(14)];
        let mut times = Vec::new();
        for step in 0..15 * 288u64 {
            let t = step * STEP_SECS;
            let n = if past.iter().any(|e| (e.start..e.end).contains(&t)) { 20 } else { 10 };
            times.extend((0..n).map(|i| t + i));
        }
        let events = [past[0].clone(), past[1].clone(), matches(15)];
        let table = table(&[(ProfileId(0), times)], UnixSeconds(15 * 86_400), &events);
        assert_eq!(table.start, UnixSeconds(15 * 86_400));
        let expected = &table.series[0].expected;
        let (inside, outside) = (expected[18 * 12 + 6], expected[12 * 12]);
        assert!((outside - 10.0).abs() < 1.5, "a normal step: {outside}");
        assert!((inside / outside - 2.0).abs() < 0.2, "inside the next match: {inside} vs {outside}");
    }

    #[test]
    fn a_new_profile_borrows_the_regions_daily_shape_from_day_one() {
        // Three weeks of a region with a strong daily shape; a new profile appears in the last
        // 12 hours, as 20 % of the traffic.
        let rate = |step: u64| {
            let hour = (step % 288) as f64 / 12.0;
            (20.0 + 15.0 * (std::f64::consts::TAU * (hour - 9.0) / 24.0).cos()).round() as u64
        };
        let (mut old, mut new) = (Vec::new(), Vec::new());
        let steps = 21 * 288u64;
        for step in 0..steps {
            let n = rate(step);
            let newcomers = if step >= steps - 144 { n / 5 } else { 0 };
            old.extend((0..n - newcomers).map(|i| step * STEP_SECS + i));
            new.extend((0..newcomers).map(|i| step * STEP_SECS + i));
        }
        let table = table(&[(ProfileId(0), old), (ProfileId(1), new)], UnixSeconds(steps * STEP_SECS), &[]);
        let fresh = &table.series[1].expected;
        let (max, min) = fresh.iter().fold((f32::MIN, f32::MAX), |(a, b), v| (a.max(*v), b.min(*v)));
        assert!(min >= 0.0 && max > 3.0 * min.max(0.5), "a daily shape, not a flat line: {min}..{max}");
        let (new_total, all_total): (f32, f32) =
            (fresh.iter().sum(), table.series.iter().flat_map(|s| s.expected.iter()).sum());
        assert!((new_total / all_total - 0.2).abs() < 0.05, "scaled by its own share: {}", new_total / all_total);
    }

    #[test]
    fn a_model_that_loses_to_seasonal_naive_on_the_held_out_day_is_gated_to_it() {
        // Every weekday has its own arbitrary shape, repeated exactly each week: the value a
        // week earlier is perfect, yesterday's is not, and the model only approximates it.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut weekly = Vec::with_capacity(7 * 288);
        for _ in 0..7 * 288 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            weekly.push(5 + state % 40);
        }
        let steps = 21 * 288u64;
        let mut times = Vec::new();
        for step in 0..steps {
            times.extend((0..weekly[(step % (7 * 288)) as usize]).map(|i| step * STEP_SECS + i));
        }
        let report = table_with_skill(&[(ProfileId(7), times)], UnixSeconds(steps * STEP_SECS), &[], &[], STEP_SECS);
        let (table, skills) = (report.table, report.skills);
        let [(id, skill)] = skills.as_slice() else { panic!("one profile's skill: {skills:?}") };
        assert_eq!(*id, ProfileId(7));
        assert!(skill.naive_week_mase < 1e-9, "{skill:?}");
        assert!(skill.model_mase > skill.naive_week_mase && skill.naive_day_mase > 0.5, "{skill:?}");
        assert!(skill.gated());
        assert_eq!(skill.published, Method::SeasonalNaive(7 * 288));
        // The published day is the week-old one, exactly.
        let expected = &table.series[0].expected;
        for (i, e) in expected.iter().enumerate() {
            assert_eq!(*e as u64, weekly[((steps + i as u64) % (7 * 288)) as usize], "step {i}");
        }
    }

    #[test]
    fn a_model_that_wins_is_published_with_its_skill() {
        // A smooth daily shape with noise: MSTL beats both baselines on the held-out day.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let steps = 21 * 288u64;
        let mut times = Vec::new();
        for step in 0..steps {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let hour = (step % 288) as f64 / 12.0;
            let n = (40.0 + 30.0 * (std::f64::consts::TAU * (hour - 14.0) / 24.0).cos()).round() as u64 + state % 9;
            times.extend((0..n).map(|i| step * STEP_SECS + i));
        }
        let skills =
            table_with_skill(&[(ProfileId(1), times)], UnixSeconds(steps * STEP_SECS), &[], &[], STEP_SECS).skills;
        let skill = skills[0].1;
        assert_eq!(skill.published, Method::Mstl, "{skill:?}");
        assert!(skill.model_mase <= skill.naive_day_mase.min(skill.naive_week_mase));
    }

    #[test]
    fn a_feed_with_a_clear_effect_moves_the_forecast_where_its_future_values_differ() {
        use crate::forecast::feeds::FeedPoint;
        // Demand = a daily shape + 2 requests per step per degree above 20; the temperature
        // wanders by the hour, and tomorrow is 10 degrees hotter than usual.
        let days = 16u64;
        let temperature =
            |hour: u64| -> f64 { if hour >= days * 24 { 30.0 } else { 14.0 + ((hour * 7919) % 13) as f64 } };
        let mut times = Vec::new();
        for step in 0..days * 288 {
            let hour_of_day = (step % 288) as f64 / 12.0;
            let shape = 40.0 + 20.0 * (std::f64::consts::TAU * (hour_of_day - 15.0) / 24.0).cos();
            let n = (shape + 2.0 * (temperature(step / 12) - 20.0)).round().max(0.0) as u64;
            times.extend((0..n).map(|i| step * STEP_SECS + i));
        }
        let points: Vec<FeedPoint> = (0..(days + 2) * 24)
            .map(|h| FeedPoint { region: "all".into(), time: h * 3600, value: temperature(h) })
            .collect();
        let now = UnixSeconds(days * 86_400);
        let requests = [(ProfileId(1), times)];
        let plain = table_with_skill(&requests, now, &[], &[], STEP_SECS);
        let fed = table_with_skill(&requests, now, &[], &[("temperature".to_owned(), points)], STEP_SECS);
        let [(_, name, effect)] = fed.effects.as_slice() else { panic!("one effect: {:?}", fed.effects) };
        assert_eq!(name, "temperature");
        assert!((effect.per_unit - 2.0).abs() < 0.3, "{effect:?}");
        // Tomorrow at 30 degrees: about 2 × (30 − mean) more per step than without the feed.
        let lift: f32 =
            fed.table.series[0].expected.iter().zip(&plain.table.series[0].expected).map(|(a, b)| a - b).sum::<f32>()
                / 288.0;
        let expected_lift = effect.per_unit * (30.0 - effect.mean);
        assert!((f64::from(lift) - expected_lift).abs() < 1.0, "lift {lift} vs {expected_lift}");
        assert!(expected_lift > 15.0);
    }

    #[test]
    fn the_step_is_configurable_and_a_table_still_covers_a_day() {
        let times: Vec<u64> = (0..3 * 86_400u64).step_by(30).collect();
        let report = table_with_skill(&[(ProfileId(1), times)], UnixSeconds(3 * 86_400), &[], &[], 900);
        assert_eq!(report.table.step_secs, 900);
        assert_eq!(report.table.series[0].expected.len(), 96);
        // 2 requests a minute: 30 per 15-minute step.
        assert!(
            report.table.series[0].expected.iter().all(|e| (e - 30.0).abs() < 1.0),
            "{:?}",
            &report.table.series[0].expected[..4]
        );
    }
}
