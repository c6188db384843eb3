//! External events: a calendar of launches, matches, sales… whose effect on demand is learnt
//! from past occurrences of the same kind and applied to the next ones.
//!
//! Past occurrences are masked before a model is fitted (so a match is not learnt as a normal
//! Saturday) and measured against the same steps a week (else a day) earlier; a kind's
//! multiplier is the median of those ratios. A kind never seen before uses the event's own
//! `multiplier`, else none.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use super::model::Forecast;
use super::series::Series;

/// One entry of the calendar file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarEvent {
    /// The event's name.
    pub name: String,
    /// A region name, or `all` (the default).
    #[serde(default = "all")]
    pub region: String,
    /// RFC 3339 times.
    pub start: String,
    /// RFC 3339 end.
    pub end: String,
    /// Its kind: occurrences of one kind teach each other's effect.
    pub kind: String,
    /// Expected demand multiplier, used until past occurrences of the kind teach one.
    pub multiplier: Option<f64>,
}

fn all() -> String {
    "all".into()
}

/// An event with parsed times.
#[derive(Debug, Clone, PartialEq)]
pub struct Occurrence {
    /// The event's name.
    pub name: String,
    /// A region, or `all`.
    pub region: String,
    /// Start, Unix seconds.
    pub start: u64,
    /// End, Unix seconds.
    pub end: u64,
    /// Its kind.
    pub kind: String,
    /// The declared multiplier, if any.
    pub multiplier: Option<f64>,
}

/// Scheduled events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Calendar {
    /// Every occurrence.
    pub events: Vec<Occurrence>,
}

#[derive(Debug, thiserror::Error)]
/// Why the calendar could not be read.
#[allow(missing_docs, reason = "a variant's fields are named in its message")]
pub enum CalendarError {
    #[error("cannot read the calendar {path}: {source}")]
    /// The file could not be read.
    Read { path: String, source: std::io::Error },
    #[error("calendar {path}: {message}")]
    /// The file is not a calendar.
    Parse { path: String, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CalendarFile {
    #[serde(default)]
    event: Vec<CalendarEvent>,
}

impl Calendar {
    /// Reads a TOML file of `[[event]]` tables.
    pub fn load(path: &Path) -> Result<Self, CalendarError> {
        let shown = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|source| CalendarError::Read { path: shown.clone(), source })?;
        Self::parse(&text).map_err(|message| CalendarError::Parse { path: shown, message })
    }

    /// Parses a calendar file's text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: CalendarFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut events = Vec::with_capacity(file.event.len());
        for (i, e) in file.event.into_iter().enumerate() {
            let time = |s: &str| {
                crate::ingest::event::parse_rfc3339_utc(s)
                    .ok_or_else(|| format!("event {} ({}): {s:?} is not an RFC 3339 time", i + 1, e.name))
            };
            let (start, end) = (time(&e.start)?, time(&e.end)?);
            if end <= start {
                return Err(format!("event {} ({}): ends before it starts", i + 1, e.name));
            }
            if e.multiplier.is_some_and(|m| !(m.is_finite() && m > 0.0)) {
                return Err(format!("event {} ({}): multiplier must be a positive number", i + 1, e.name));
            }
            events.push(Occurrence {
                name: e.name,
                region: e.region,
                start,
                end,
                kind: e.kind,
                multiplier: e.multiplier,
            });
        }
        Ok(Self { events })
    }

    /// The events that concern a region (its own and `all`).
    pub fn for_region(&self, region: &str) -> Vec<Occurrence> {
        self.events.iter().filter(|e| e.region == "all" || e.region == region).cloned().collect()
    }
}

/// Steps of `series` an occurrence overlaps, each with the share of the step it covers (an
/// event at 20:45 covers a quarter of the 20:00 hour): masking takes every overlapped step,
/// so no part of an event is learnt as ordinary demand.
fn steps(series: &Series, e: &Occurrence) -> Vec<(usize, f64)> {
    overlaps(series.start, series.step_secs, series.len(), e)
}

fn overlaps(start: u64, step_secs: u64, len: usize, e: &Occurrence) -> Vec<(usize, f64)> {
    let step = step_secs.max(1);
    let from = e.start.max(start);
    if e.end <= from {
        return Vec::new();
    }
    let first = ((from - start) / step) as usize;
    let last = ((e.end - start).div_ceil(step) as usize).min(len);
    (first..last)
        .map(|i| {
            let (s0, s1) = (start + i as u64 * step, start + (i as u64 + 1) * step);
            let covered = e.end.min(s1).saturating_sub(e.start.max(s0));
            (i, covered as f64 / step as f64)
        })
        .filter(|(_, share)| *share > 0.0)
        .collect()
}

/// What a kind of event does to demand: a multiplier where it lands on real demand, or an
/// added rate where it lands on (almost) none — a night-time match draws viewers out of
/// nowhere, which no multiple of nothing can forecast.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EventEffect {
    /// Demand multiple while it runs.
    pub multiplier: f64,
    /// Requests per second added while the event runs.
    pub extra_per_sec: f64,
}

impl EventEffect {
    fn multiplier(multiplier: f64) -> Self {
        Self { multiplier, extra_per_sec: 0.0 }
    }
}

/// Baseline demand during an event below this share of the series' typical step (the median
/// of its busy steps): the effect is learnt as an added rate, not a multiplier.
const MULTIPLICATIVE_SHARE_OF_TYPICAL: f64 = 0.1;

/// Learns each kind's effect from the occurrences inside `series`, then masks them.
pub fn learn(series: &mut Series, events: &[Occurrence]) -> HashMap<String, EventEffect> {
    let step = series.step_secs.max(1);
    let (day, week) = ((86_400 / step) as usize, (7 * 86_400 / step) as usize);
    let typical = {
        let mut busy: Vec<f64> = series.values.iter().flatten().copied().filter(|v| *v > 0.0).collect();
        busy.sort_by(f64::total_cmp);
        busy.get(busy.len() / 2).copied().unwrap_or(0.0)
    };
    // Per kind and occurrence: the multiplier (where the baseline is real demand) and the
    // added rate.
    let mut seen: HashMap<String, Vec<(Option<f64>, f64)>> = HashMap::new();
    for e in events {
        let covered = steps(series, e);
        if covered.is_empty() || e.end > series.start + series.len() as u64 * step {
            continue; // not (wholly) in the past
        }
        let first = covered[0].0;
        // The same steps a week earlier, else a day earlier: a weekly event's previous
        // occurrence is masked by then, so its baseline comes from the day before, scaled by
        // how the steps just before the event compare with the same steps that day (a Monday
        // event is not judged against a Sunday's level). The multiplier is of the event's own
        // time: the excess over the baseline, divided by the baseline of the covered share of
        // each step (an event covering a quarter of an hour that tripled its demand adds half
        // the hour's baseline, not a 1.5× hour).
        for lag in [week, day] {
            let triples: Vec<(f64, f64, f64)> = covered
                .iter()
                .filter_map(|&(i, share)| Some((series.values[i]?, series.values[i.checked_sub(lag)?]?, share)))
                .collect();
            if triples.is_empty() {
                continue;
            }
            let level = if lag == day {
                let before = first.saturating_sub(covered.len().max(1))..first;
                let (now, then): (f64, f64) = before
                    .filter_map(|i| Some((series.values[i]?, series.values[i.checked_sub(day)?]?)))
                    .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
                if now > 0.0 && then > 0.0 { now / then } else { 1.0 }
            } else {
                1.0
            };
            let excess: f64 = triples.iter().map(|(a, b, _)| a - b * level).sum();
            let inside: f64 = triples.iter().map(|(_, b, share)| b * level * share).sum();
            let secs: f64 = triples.iter().map(|(_, _, share)| share * step as f64).sum();
            // A multiplier where the event lands on demand of at least a tenth of the series'
            // typical step; an added rate where it lands on (almost) none.
            let per_step = inside / triples.iter().map(|(_, _, share)| share).sum::<f64>().max(f64::MIN_POSITIVE);
            let ratio = (inside > 0.0 && per_step >= MULTIPLICATIVE_SHARE_OF_TYPICAL * typical)
                .then(|| (1.0 + excess / inside).max(0.0));
            seen.entry(e.kind.clone()).or_default().push((ratio, (excess / secs.max(1.0)).max(0.0)));
            break;
        }
        for (i, _) in covered {
            series.values[i] = None;
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    seen.into_iter()
        .map(|(kind, occurrences)| {
            let ratios: Vec<f64> = occurrences.iter().filter_map(|(r, _)| *r).collect();
            let effect = if ratios.len() * 2 >= occurrences.len() {
                EventEffect::multiplier(median(ratios))
            } else {
                EventEffect { multiplier: 1.0, extra_per_sec: median(occurrences.iter().map(|(_, x)| *x).collect()) }
            };
            (kind, effect)
        })
        .collect()
}

/// Applies each future occurrence's learnt effect (else its own multiplier) to the forecast,
/// which starts at `start` and whose values count requests over `value_secs` (60: rates per
/// minute; `step_secs`: sums per step). Returns the steps changed.
pub fn apply(
    forecast: &mut Forecast,
    start: u64,
    step_secs: u64,
    value_secs: u64,
    events: &[Occurrence],
    learnt: &HashMap<String, EventEffect>,
) -> usize {
    let mut changed = 0;
    for e in events {
        let Some(effect) = learnt.get(&e.kind).copied().or(e.multiplier.map(EventEffect::multiplier)) else { continue };
        let (m, extra) = (effect.multiplier, effect.extra_per_sec * value_secs as f64);
        // A step the event covers in part gets the multiplier on that part.
        for (i, share) in overlaps(start, step_secs, forecast.point.len(), e) {
            let factor = 1.0 + (m - 1.0) * share;
            forecast.point[i] = forecast.point[i] * factor + extra * share;
            forecast.upper[i] = forecast.upper[i] * factor + extra * share;
            changed += 1;
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::model::{self, Method};

    const HOUR: u64 = 3600;

    fn event(day: u64, kind: &str, multiplier: Option<f64>) -> Occurrence {
        Occurrence {
            name: format!("match day {day}"),
            region: "all".into(),
            start: day * 86_400 + 18 * HOUR,
            end: day * 86_400 + 21 * HOUR,
            kind: kind.into(),
            multiplier,
        }
    }

    #[test]
    fn a_learnt_event_effect_appears_in_the_next_occurrence() {
        // Four weeks of hourly demand; matches on days 10 and 17 double demand for 3 hours.
        let mut values: Vec<Option<f64>> =
            crate::forecast::seasonal_hours(24 * 28, 0.0).into_iter().map(Some).collect();
        let past = [event(10, "match", None), event(17, "match", None)];
        for e in &past {
            for v in &mut values[(e.start / HOUR) as usize..(e.end / HOUR) as usize] {
                *v = v.map(|v| v * 2.0);
            }
        }
        let mut series = Series { start: 0, step_secs: HOUR, values };
        let next = event(29, "match", None);
        let learnt = learn(&mut series, &[past[0].clone(), past[1].clone(), next.clone()]);
        assert!((learnt["match"].multiplier - 2.0).abs() < 0.05, "{learnt:?}");
        assert!(series.values[10 * 24 + 18].is_none(), "past occurrences are masked");
        let history = series.imputed(24, 168);
        let mut f = model::forecast(Method::Mstl, &history, &[24, 168], 48, 0.8).expect("forecast");
        let plain = f.point.clone();
        let changed = apply(&mut f, 28 * 86_400, HOUR, HOUR, &[next], &learnt);
        assert_eq!(changed, 3);
        let slot = 24 + 18;
        assert!((f.point[slot] / plain[slot] - 2.0).abs() < 0.05);
        assert!(plain[slot] > 50.0, "the masked history did not teach a dip or a spike: {}", plain[slot]);
        assert_eq!(f.point[slot - 1], plain[slot - 1], "outside the event nothing changes");
    }

    #[test]
    fn an_unseen_kind_uses_its_own_multiplier_and_bad_files_are_errors() {
        let mut f = Forecast { point: vec![10.0; 48], upper: vec![12.0; 48] };
        let launch = Occurrence { kind: "launch".into(), ..event(1, "launch", Some(3.0)) };
        assert_eq!(apply(&mut f, 86_400, HOUR, HOUR, &[launch], &HashMap::new()), 3);
        assert_eq!((f.point[18], f.upper[18], f.point[17]), (30.0, 36.0, 10.0));

        let ok = Calendar::parse(
            "[[event]]\nname = \"Cup final\"\nregion = \"eu\"\nstart = \"2026-12-01T18:00:00Z\"\nend = \"2026-12-01T21:00:00Z\"\nkind = \"match\"\nmultiplier = 2.5\n",
        )
        .expect("valid");
        assert_eq!(ok.for_region("eu").len(), 1);
        assert!(ok.for_region("us").is_empty());
        let backwards =
            "[[event]]\nname = \"x\"\nstart = \"2026-12-01T21:00:00Z\"\nend = \"2026-12-01T18:00:00Z\"\nkind = \"k\"\n";
        assert!(Calendar::parse(backwards).is_err_and(|e| e.contains("ends before")));
        assert!(Calendar::parse("[[event]]\nname = \"x\"\nstart = \"soon\"\nend = \"later\"\nkind = \"k\"\n").is_err());
    }

    #[test]
    fn a_weekly_event_is_learnt_although_each_baseline_week_held_the_previous_one() {
        // The first occurrence is on day 0: only the later ones can teach, from the day before.

        let mut values: Vec<Option<f64>> =
            crate::forecast::seasonal_hours(24 * 28, 0.0).into_iter().map(Some).collect();
        let past: Vec<Occurrence> = [0, 7, 14, 21].iter().map(|d| event(*d, "match", None)).collect();
        for e in &past {
            for v in &mut values[(e.start / HOUR) as usize..(e.end / HOUR) as usize] {
                *v = v.map(|v| v * 3.0);
            }
        }
        let mut series = Series { start: 0, step_secs: HOUR, values };
        let learnt = learn(&mut series, &past);
        assert!((learnt["match"].multiplier - 3.0).abs() < 0.3, "{learnt:?}");
    }

    #[test]
    fn an_event_off_the_hour_is_learnt_at_its_own_strength_masked_whole_and_applied_in_part() {
        // Per-minute demand of 60 a minute; a kick-off at 20:45 quadruples it for an hour, on
        // days 7 and 14. Learnt on hourly sums, as the engine learns.
        let minutes = 21 * 1440;
        let at = |day: u64| day * 86_400 + 20 * HOUR + 45 * 60;
        let kickoff = |day: u64| Occurrence { start: at(day), end: at(day) + HOUR, ..event(day, "match", None) };
        let mut per_minute = vec![60.0; minutes];
        for day in [7, 14] {
            let first = (at(day) / 60) as usize;
            per_minute[first..first + 60].iter_mut().for_each(|v| *v *= 4.0);
        }
        let hourly: Vec<Option<f64>> = per_minute.chunks(60).map(|h| Some(h.iter().sum())).collect();
        let mut series = Series { start: 0, step_secs: HOUR, values: hourly };
        let learnt = learn(&mut series, &[kickoff(7), kickoff(14)]);
        assert!(
            (learnt["match"].multiplier - 4.0).abs() < 0.05,
            "the event's own multiplier, not the hours': {learnt:?}"
        );
        for hour in [20, 21] {
            assert!(series.values[14 * 24 + hour].is_none(), "hour {hour}:00, which the event overlaps, is masked");
        }
        assert!(series.values[14 * 24 + 22].is_some());
        // Applied to 5-minute steps from 20:00 of day 21: the 20:45 step gets it whole, nothing before.
        let mut f = Forecast { point: vec![300.0; 36], upper: vec![400.0; 36] };
        apply(&mut f, 21 * 86_400 + 20 * HOUR, 300, 300, &[kickoff(21)], &learnt);
        assert_eq!(f.point[8], 300.0, "20:40");
        assert!((f.point[9] / 300.0 - 4.0).abs() < 0.05, "20:45: {}", f.point[9]);
        assert!((f.point[20] / 300.0 - 4.0).abs() < 0.05, "21:40");
        assert_eq!(f.point[21], 300.0, "21:45, after the hour");
        // A step the event covers in part: an hourly table's 20:00 hour, a quarter inside.
        let mut hourly_f = Forecast { point: vec![3_600.0; 3], upper: vec![4_000.0; 3] };
        apply(&mut hourly_f, 21 * 86_400 + 20 * HOUR, HOUR, HOUR, &[kickoff(21)], &learnt);
        assert!((hourly_f.point[0] / 3_600.0 - 1.75).abs() < 0.02, "1 + 3 × 1/4: {}", hourly_f.point[0]);
        assert!((hourly_f.point[1] / 3_600.0 - 3.25).abs() < 0.02, "1 + 3 × 3/4: {}", hourly_f.point[1]);
    }

    #[test]
    fn an_event_on_no_demand_is_learnt_as_an_added_rate() {
        // Nobody at 04:00, except on match nights (days 7 and 14): 40 requests a minute for an
        // hour from 04:20. No multiple of nothing forecasts that; an added rate does.
        let at = |day: u64| day * 86_400 + 4 * HOUR + 20 * 60;
        let night = |day: u64| Occurrence { start: at(day), end: at(day) + HOUR, ..event(day, "match", None) };
        let mut per_minute = vec![0.0; 21 * 1440];
        for (m, v) in per_minute.iter_mut().enumerate() {
            let hour = (m / 60) % 24;
            *v = if (8..22).contains(&hour) { 30.0 } else { 0.0 };
        }
        for day in [7, 14] {
            let first = (at(day) / 60) as usize;
            per_minute[first..first + 60].iter_mut().for_each(|v| *v += 40.0);
        }
        let hourly: Vec<Option<f64>> = per_minute.chunks(60).map(|h| Some(h.iter().sum())).collect();
        let mut series = Series { start: 0, step_secs: HOUR, values: hourly };
        let learnt = learn(&mut series, &[night(7), night(14)]);
        let effect = learnt["match"];
        assert_eq!(effect.multiplier, 1.0, "{effect:?}");
        assert!((effect.extra_per_sec * 60.0 - 40.0).abs() < 0.5, "40 a minute added: {effect:?}");
        // Applied to a per-minute forecast of zero in 5-minute steps from 04:00 of day 21.
        let mut f = Forecast { point: vec![0.0; 24], upper: vec![0.0; 24] };
        apply(&mut f, 21 * 86_400 + 4 * HOUR, 300, 60, &[night(21)], &learnt);
        assert_eq!(f.point[3], 0.0, "04:15, before the match");
        assert!((f.point[4] - 40.0).abs() < 0.5 && (f.upper[15] - 40.0).abs() < 0.5, "{:?}", &f.point[..18]);
        assert_eq!(f.point[16], 0.0, "05:20, after it");
    }
}
