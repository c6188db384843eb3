//! The forecast stage for one series: from its minutes before `now` to the next day's
//! expected requests per step, the calibrated band the plan provisions for, and the alarm
//! level the edge's prewarm signal tests against.
//!
//! At each training:
//! 1. the history (the last `history_days`, before `now` only) is cleaned: outages (zero runs
//!    against a busy norm) and gaps stay missing, past calendar events are learnt and masked,
//!    transient outliers such as flash crowds are masked ([`super::robust`]);
//! 2. every candidate model is fitted on the hourly sums (a seasonal model sees an hour's
//!    total: less noise, and 60× fewer points than minutes) and its forecast is interpolated
//!    between hour centres to the table's steps, with calendar and feed effects applied;
//! 3. the ledger of past forecasts ([`super::ledger`]) picks the candidate with the best
//!    recent out-of-sample skill and calibrates its band;
//! 4. in the product, the band's quantile is chosen on the same record against a reactive HPA
//!    ([`super::band_choice`]);
//! 5. this training's forecasts join the ledger.
//!
//! A first training (an empty ledger) replays past origins every `bootstrap_every_hours`
//! over the last `skill_days`, each fitted on the data before it: what the ledger would hold
//! had the trainer been running.

use serde::{Deserialize, Serialize};

use super::band_choice::{self, BandChoice, Deployment};
use super::calendar::{self, Occurrence};
use super::feeds::{self, Effect, FeedPoint};
use super::ledger::{self, CandidateSkill, Ledger, PastForecast, Scores, SeriesKey};
use super::model::{self, Method};
use super::robust::{self, Masked};
use super::series::Series;

mod config;
pub use config::ForecastConfig;

const HOUR: u64 = 3600;
const DAY: u64 = 86_400;

/// The candidates every series is forecast with, in order of preference when skill cannot
/// tell them apart (the simplest robust model first).
pub fn candidates() -> [Method; 5] {
    [
        Method::MstlLogLevel,
        Method::MstlLogDamped,
        Method::MstlDamped,
        Method::SeasonalNaive(24),
        Method::SeasonalNaive(168),
    ]
}

/// Requests per minute; `None` where nothing is known (a gap).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MinuteSeries {
    /// Unix seconds of the first minute (a multiple of 60).
    pub start: u64,
    /// Requests per minute.
    pub values: Vec<Option<f64>>,
}

impl MinuteSeries {
    /// Unix seconds just after the last minute.
    pub fn end(&self) -> u64 {
        self.start + self.values.len() as u64 * 60
    }

    /// The minutes in `[from, to)` (clipped to the series), with their start.
    pub fn window(&self, from: u64, to: u64) -> (u64, &[Option<f64>]) {
        let from = from.max(self.start) / 60 * 60;
        let lo = ((from - self.start) / 60) as usize;
        let hi = (to.saturating_sub(self.start) / 60) as usize;
        let hi = hi.min(self.values.len()).max(lo.min(self.values.len()));
        (from, &self.values[lo.min(self.values.len())..hi])
    }
}

/// What a region's series share: its calendar and its feeds, and the table to make.
#[derive(Debug, Clone)]
pub struct Context {
    /// Scheduled events of the region.
    pub events: Vec<Occurrence>,
    /// Feed points of the region, by feed.
    pub feeds: Vec<(String, Vec<FeedPoint>)>,
    /// The table's step and length.
    pub step_secs: u64,
    /// Steps in the table.
    pub steps: usize,
    /// The unit of demand the band is calibrated on, in minutes: 1 for the product (capacity
    /// must hold every minute, and the edge tests a minute), the step of a backtest's protocol
    /// when its actuals are hourly or 5-minute sums.
    pub band_minutes: u64,
    /// The table also covers this much before `now` (the product: the nowcast's window, so that
    /// the edge's last half hour is compared with what was forecast for it).
    pub lookback_secs: u64,
    /// Whether the plan corrects the forecast by the edge's recent level (the product: yes; a
    /// backtest scores forecasts as made): the band is calibrated on what is provisioned.
    pub nowcast: bool,
    /// The plan's lead time (the product; 0 in a backtest). The alarm level of a step is raised
    /// to the band of every step up to this long after it: capacity running at a step was
    /// provisioned for the band a lead time ahead, so demand under that is not above what was
    /// planned for. The band's quantile is chosen on a replay of the deployment at this lead.
    pub lead_secs: u64,
    /// Whether the band's quantile is chosen from the series' record ([`band_choice`]; the
    /// product, when `[forecast] band_choice` is on) rather than fixed at `band_quantile`.
    pub choose_band: bool,
    /// The reactive floor deployed beside prewarm's trigger (`[plan] floor_utilisation`),
    /// replayed when the band's quantile is chosen.
    pub floor_utilisation: Option<f64>,
    /// Requests a minute one unit of the plan's instance serves, per series (profile id, or
    /// [`super::ledger::AGGREGATE`]): the band's choice replays capacity in whole units.
    pub unit_requests: Vec<(u16, f64)>,
}

impl Default for Context {
    fn default() -> Self {
        Self {
            events: Vec::new(),
            feeds: Vec::new(),
            step_secs: super::DEFAULT_STEP_SECS,
            steps: 288,
            band_minutes: 1,
            lookback_secs: 0,
            nowcast: false,
            lead_secs: 0,
            choose_band: false,
            floor_utilisation: None,
            unit_requests: Vec::new(),
        }
    }
}

/// One series' forecast, as published, and how it was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesForecast {
    /// Unix seconds of step 0.
    pub start: u64,
    /// Step length.
    pub step_secs: u64,
    /// Requests per step: expected, the calibrated band, and the alarm level.
    pub expected: Vec<f32>,
    /// The calibrated band per step.
    pub upper: Vec<f32>,
    /// The alarm level per step.
    pub alarm: Vec<f32>,
    /// How the forecast was made.
    pub report: SeriesReport,
}

/// Why a series' forecast is what it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesReport {
    /// The candidate with the largest weight.
    pub method: Method,
    /// What is published: the candidates combined, with their weights (summing to 1).
    pub weights: Vec<(Method, f64)>,
    /// Why those weights: the candidates' recent skill, or why skill could not decide.
    pub reason: String,
    /// Every candidate's recent out-of-sample skill.
    pub skill: Vec<CandidateSkill>,
    /// Outlier runs masked in this training's history.
    pub masked: Masked,
    /// Out-of-sample minutes the band was calibrated on (0: a fallback from in-sample errors).
    pub band_scores: usize,
    /// The combination's recent actual ÷ forecast, which the published forecast is corrected by.
    pub bias: f64,
    /// The quantile the band was calibrated to.
    pub band_quantile: f64,
    /// How the record chose that quantile (`None`: the configured `band_quantile`).
    #[serde(default)]
    pub band_choice: Option<BandChoice>,
    /// Feed effects found: (feed, effect per unit, per hour).
    pub effects: Vec<(String, Effect)>,
}

/// Every candidate's forecast made at one origin.
#[derive(Debug, Clone)]
pub struct Fitted {
    /// Each candidate's forecast, for the ledger.
    pub entry: PastForecast,
    /// In-sample MAE of seasonal naive one day, per hour: the MASE scale.
    pub mase_scale: f64,
    /// Outlier runs masked before fitting.
    pub masked: Masked,
    /// Feed effects found: (feed, effect).
    pub effects: Vec<(String, Effect)>,
    /// Square-root-scale errors of yesterday's minute against today's, in-sample: the band
    /// when the ledger has nothing yet.
    pub fallback: Scores,
}

/// Fits every candidate on the minutes before `origin` and forecasts `ctx.steps` steps from
/// the first step at or after it. `None` when there is not an hour of history.
pub fn fit_at(minutes: &MinuteSeries, origin: u64, ctx: &Context, config: &ForecastConfig) -> Option<Fitted> {
    let origin = origin / 60 * 60;
    let (from, window) = minutes.window(origin.saturating_sub(config.history_days * DAY), origin);
    let mut cleaned = Series { start: from, step_secs: 60, values: window.to_vec() };
    cleaned.mask_outages(1440, 30, 1.0);
    // Whole hours before the origin's hour.
    let first_hour = from.div_ceil(HOUR) * HOUR;
    let last_hour = origin / HOUR * HOUR;
    let hours: Vec<Option<f64>> = (first_hour..last_hour)
        .step_by(HOUR as usize)
        .map(|h| {
            let i = ((h - from) / 60) as usize;
            let present: Vec<f64> = cleaned.values.get(i..i + 60)?.iter().flatten().copied().collect();
            (present.len() >= 45).then(|| present.iter().sum::<f64>() * 60.0 / present.len() as f64)
        })
        .collect();
    hours.iter().flatten().next()?;
    let mut hourly = Series { start: first_hour, step_secs: HOUR, values: hours };
    let learnt = calendar::learn(&mut hourly, &ctx.events);
    let masked = robust::mask_transients(&mut hourly.values, config.outlier_mads, config.outlier_max_hours);
    let history = hourly.imputed(24, 168);
    let mase_scale = naive_day_mae(&hourly.values);
    // Steps from the origin's step; hours from the origin's hour to past the last step.
    let step = ctx.step_secs.clamp(60, HOUR);
    let first_step = origin.saturating_sub(ctx.lookback_secs).div_ceil(step) * step;
    let steps = ctx.steps + (ctx.lookback_secs / step) as usize;
    let table_end = first_step + steps as u64 * step;
    let horizon_hours = ((table_end - last_hour).div_ceil(HOUR) + 1) as usize;
    let periods: Vec<usize> = [24, 168].into_iter().filter(|p| history.len() >= 2 * p).collect();
    let covariates: Vec<(&str, Vec<Option<f64>>)> = ctx
        .feeds
        .iter()
        .map(|(name, points)| (name.as_str(), feeds::align(points, first_hour, HOUR, history.len() + horizon_hours)))
        .collect();
    let mut effects = Vec::new();
    let mut found: Vec<(Effect, Vec<Option<f64>>)> = Vec::new();
    for (name, covariate) in &covariates {
        let (past, future) = covariate.split_at(history.len().min(covariate.len()));
        if let Some(effect) = feeds::learn(&history, past, 24) {
            effects.push(((*name).to_owned(), effect));
            found.push((effect, future.to_vec()));
        }
    }
    let last_rate = history.last().copied().unwrap_or(0.0) / 60.0;
    let shape = within_hour_shape(&cleaned.values, from, &hourly, step);
    let by_method = candidates()
        .into_iter()
        .filter_map(|method| {
            let mut f = hourly_forecast(method, &history, &periods, horizon_hours)?;
            for (effect, future) in &found {
                feeds::apply(&mut f, effect, future);
            }
            let rates = to_steps(&f.point, last_hour, last_rate, first_step, step, steps, &shape);
            let rates = with_events(rates, first_step, step, &ctx.events, &learnt);
            Some((method, rates.into_iter().map(|r| r as f32).collect()))
        })
        .collect();
    let entry = PastForecast { origin, first_step, step_secs: step, by_method };
    Some(Fitted { entry, mase_scale, masked, effects, fallback: in_sample_scores(&cleaned.values, ctx.band_minutes) })
}

/// One candidate's hourly forecast; seasonal naive stands in where the history is too short
/// for the candidate (under two days, even for it: the last hours repeated).
fn hourly_forecast(method: Method, history: &[f64], periods: &[usize], horizon: usize) -> Option<model::Forecast> {
    let level = 0.8;
    match method {
        Method::SeasonalNaive(lag) if history.len() >= lag => model::seasonal_naive(history, lag, horizon, level).ok(),
        Method::SeasonalNaive(_) => None,
        _ if periods.is_empty() => model::seasonal_naive(history, history.len().clamp(1, 24), horizon, level)
            .ok()
            .filter(|_| method == candidates()[0]),
        _ => model::forecast(method, history, periods, horizon, level).ok(),
    }
}

/// Days the within-hour shape is learnt from.
const SHAPE_DAYS: u64 = 7;
/// Pseudo-requests that pull a step's share towards an even split of its hour: a quiet
/// series' shape is mostly noise.
const SHAPE_PSEUDO_REQUESTS: f64 = 30.0;

/// How each step of the day shares its hour's demand, from the last week's steps in hours
/// that are not masked (1 everywhere for a step of an hour): the hourly model cannot see a
/// ramp at 08:00, the same step on the days before can.
fn within_hour_shape(minutes: &[Option<f64>], from: u64, hourly: &Series, step: u64) -> Vec<f64> {
    let per_day = (DAY / step) as usize;
    let per_hour = (HOUR / step).max(1) as usize;
    if per_hour == 1 {
        return vec![1.0; per_day];
    }
    let (mut observed, mut even) = (vec![0.0; per_day], vec![0.0; per_day]);
    let end = hourly.start + hourly.len() as u64 * HOUR;
    let first = end.saturating_sub(SHAPE_DAYS * DAY).max(hourly.start);
    for (h, value) in hourly.values.iter().enumerate() {
        let (Some(value), hour_start) = (value, hourly.start + h as u64 * HOUR) else { continue };
        if hour_start < first {
            continue;
        }
        for j in 0..per_hour {
            let at = hour_start + j as u64 * step;
            let i = ((at - from) / 60) as usize;
            let Some(block) = minutes.get(i..i + (step / 60) as usize) else { continue };
            if block.iter().any(Option::is_none) {
                continue;
            }
            let slot = ((at % DAY) / step) as usize;
            observed[slot] += block.iter().flatten().sum::<f64>();
            even[slot] += value / per_hour as f64;
        }
    }
    let mut shape: Vec<f64> =
        observed.iter().zip(&even).map(|(o, e)| (o + SHAPE_PSEUDO_REQUESTS) / (e + SHAPE_PSEUDO_REQUESTS)).collect();
    // Each hour's steps share it: their mean is 1.
    for hour in shape.chunks_mut(per_hour) {
        let mean = hour.iter().sum::<f64>() / hour.len() as f64;
        hour.iter_mut().for_each(|v| *v /= mean.max(f64::MIN_POSITIVE));
    }
    shape
}

/// Requests per minute at each step: its hour's forecast, shared by the hour's steps as the
/// last week's were; steps before `first_hour` (the look-back) take the last hour's rate.
fn to_steps(
    hourly: &[f64],
    first_hour: u64,
    last_rate: f64,
    first_step: u64,
    step: u64,
    steps: usize,
    shape: &[f64],
) -> Vec<f64> {
    (0..steps)
        .map(|i| {
            let at = first_step + i as u64 * step;
            let hour = match at.checked_sub(first_hour) {
                Some(offset) => hourly.get((offset / HOUR) as usize).or(hourly.last()).map_or(last_rate, |v| v / 60.0),
                None => last_rate,
            };
            let slot = ((at % DAY) / step) as usize;
            (hour * shape.get(slot).copied().unwrap_or(1.0)).max(0.0)
        })
        .collect()
}

/// Applies a future calendar event's learnt (else own) effect to the steps it covers.
fn with_events(
    mut rates: Vec<f64>,
    first_step: u64,
    step: u64,
    events: &[Occurrence],
    learnt: &std::collections::HashMap<String, calendar::EventEffect>,
) -> Vec<f64> {
    let mut f = model::Forecast { upper: rates.clone(), point: std::mem::take(&mut rates) };
    // `rates` are requests per minute.
    calendar::apply(&mut f, first_step, step, 60, events, learnt);
    f.point
}

/// Mean |x_t − x_{t−24}| over known pairs of hours (≥ a request an hour).
fn naive_day_mae(hours: &[Option<f64>]) -> f64 {
    let pairs: Vec<f64> = (24..hours.len()).filter_map(|i| Some((hours[i]? - hours[i - 24]?).abs())).collect();
    (pairs.iter().sum::<f64>() / pairs.len().max(1) as f64).max(1.0)
}

/// In-sample band scores: a block of `band_minutes` against the same block a day earlier,
/// the difference divided by √2 (both sides are noisy; a forecast is not).
fn in_sample_scores(minutes: &[Option<f64>], band_minutes: u64) -> Scores {
    let block = band_minutes.max(1) as usize;
    let sums: Vec<Option<f64>> = minutes.chunks(block).map(|c| ledger::block_sum(c.iter().copied(), block)).collect();
    let lag = (1440 / block).max(1);
    let pairs: Vec<(usize, f64, f64)> = (lag..sums.len()).filter_map(|i| Some((0, sums[i - lag]?, sums[i]?))).collect();
    Scores::from_pairs(&pairs, std::f64::consts::SQRT_2)
}

/// The candidates published together: the [`COMBINED`] with the lowest recent error, weighted
/// by the inverse of their squared error (a combination of good forecasts is steadier than
/// any one chosen on a week's record). Without a record, the default candidate alone.
pub fn combination(skill: &[CandidateSkill]) -> (Vec<(Method, f64)>, String) {
    let mut scored: Vec<&CandidateSkill> =
        skill.iter().filter(|s| s.hours >= ledger::MIN_SKILL_HOURS && s.mae.is_finite()).collect();
    if scored.is_empty() {
        let reason = format!("under {} scored hours of past forecasts: the default candidate", ledger::MIN_SKILL_HOURS);
        return (vec![(candidates()[0], 1.0)], reason);
    }
    scored.sort_by(|a, b| a.mae.total_cmp(&b.mae));
    scored.truncate(COMBINED);
    let inverse: Vec<f64> = scored.iter().map(|s| s.mae.max(1e-9).powi(-2)).collect();
    let total: f64 = inverse.iter().sum();
    let weights: Vec<(Method, f64)> = scored.iter().zip(&inverse).map(|(s, w)| (s.method, w / total)).collect();
    let parts: Vec<String> = scored
        .iter()
        .zip(&weights)
        .map(|(s, (_, w))| format!("{} {:.0} % (MASE {:.2})", s.method.name(), w * 100.0, s.mase))
        .collect();
    let reason = format!(
        "the {} best over the last {} scored hours, by inverse squared error: {}",
        scored.len(),
        scored[0].hours,
        parts.join(", ")
    );
    (weights, reason)
}

/// How many of the best candidates are combined.
pub const COMBINED: usize = 3;

/// The forecast stage for one series at `now`; its forecasts join `ledger` under `key`.
/// `None` when the series has no history before `now`.
pub fn forecast_series(
    key: &SeriesKey,
    minutes: &MinuteSeries,
    now: u64,
    ctx: &Context,
    config: &ForecastConfig,
    ledger: &mut Ledger,
) -> Option<SeriesForecast> {
    let now = now / 60 * 60;
    let window = config.skill_days * DAY;
    bootstrap(key, minutes, now, ctx, config, ledger);
    let fitted = fit_at(minutes, now, ctx, config)?;
    let methods: Vec<Method> = fitted.entry.by_method.iter().map(|(m, _)| *m).collect();
    // What happened since the ledger's origins, outages masked: a forecast is not judged (nor
    // a band calibrated) against an outage.
    let (actual_start, actual) = minutes.window(now.saturating_sub(window + 3 * DAY), now);
    let mut actual = Series { start: actual_start, step_secs: 60, values: actual.to_vec() };
    actual.mask_outages(1440, 30, 1.0);
    let actuals = ledger::Actuals { start: actual_start, minutes: &actual.values };
    let entries = ledger.entries(key);
    let skill = ledger::skill(entries, &methods, actuals, now, window, fitted.mase_scale);
    let (weights, reason) = combination(&skill);
    let band = ledger::scores(entries, &weights, actuals, now, window, ctx.band_minutes, ctx.nowcast);
    let (band_scores, scores) = if band.len() >= 100 { (band.len(), &band) } else { (0, &fitted.fallback) };
    let steps = fitted.entry.by_method.first().map_or(0, |(_, v)| v.len());
    let rates: Vec<f64> = (0..steps)
        .map(|i| {
            let combined: f64 = weights
                .iter()
                .filter_map(|(m, w)| {
                    Some(f64::from(*fitted.entry.by_method.iter().find(|(em, _)| em == m)?.1.get(i)?) * w)
                })
                .sum();
            combined * scores.bias
        })
        .collect();
    let step = fitted.entry.step_secs;
    let step_minutes = step as f64 / 60.0;
    let block = ctx.band_minutes.max(1) as f64;
    let at_quantile = |q: f64| -> Vec<f32> {
        rates
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let p = *p;
                let horizon = (fitted.entry.first_step + i as u64 * step).saturating_sub(now) / 60;
                let band = scores.band(p * block, q, horizon).unwrap_or(p * block);
                (band / block * step_minutes) as f32
            })
            .collect()
    };
    let expected = rates.iter().map(|p| (p * step_minutes) as f32).collect();
    let choice = if ctx.choose_band && config.band_choice && band_scores > 0 {
        let from = now.saturating_sub(window).max(actual_start);
        let lead_minutes = ctx.lead_secs / 60;
        let provisioned =
            band_choice::provisioned(entries, &weights, actuals, from..now, lead_minutes, scores.bias, ctx.nowcast);
        let record = actual.values.get(((from - actual_start) / 60) as usize..).unwrap_or(&[]);
        let deployment = Deployment {
            lead_minutes,
            floor_utilisation: ctx.floor_utilisation,
            reactive_utilisation: config.reactive_utilisation,
            shortfall_vs_reactive: config.shortfall_vs_reactive,
            cost_vs_reactive: config.cost_vs_reactive,
            unit_requests: ctx.unit_requests.iter().find(|(id, _)| *id == key.1).map(|(_, u)| *u),
        };
        band_choice::choose(&provisioned, record, scores, &deployment)
    } else {
        None
    };
    let band_quantile = choice.map_or(config.band_quantile, |c| c.quantile);
    let (upper, alarm) = (at_quantile(band_quantile), at_quantile(config.alarm_quantile.max(band_quantile)));
    let forecast = SeriesForecast {
        start: fitted.entry.first_step,
        step_secs: step,
        expected,
        upper,
        alarm,
        report: SeriesReport {
            method: weights.first().map_or(candidates()[0], |(m, _)| *m),
            weights,
            reason,
            skill,
            masked: fitted.masked,
            band_scores,
            bias: scores.bias,
            band_quantile,
            band_choice: choice,
            effects: fitted.effects.clone(),
        },
    };
    ledger.record(key.clone(), fitted.entry, window + 2 * DAY);
    Some(forecast)
}

/// Seeds an empty ledger with the origins a running trainer would have made.
fn bootstrap(
    key: &SeriesKey,
    minutes: &MinuteSeries,
    now: u64,
    ctx: &Context,
    config: &ForecastConfig,
    ledger: &mut Ledger,
) {
    let window = config.skill_days * DAY;
    let recent = ledger.entries(key).iter().filter(|e| e.origin + window >= now && e.origin < now).count();
    if recent >= 4 {
        return;
    }
    let every = config.bootstrap_every_hours * HOUR;
    let last = now / HOUR * HOUR;
    let mut origin = last.saturating_sub(window / every * every);
    while origin < last {
        let enough = origin >= minutes.start + 2 * DAY;
        if enough
            && !ledger.has_origin_near(key, origin, every / 2)
            && let Some(fitted) = fit_at(minutes, origin, ctx, config)
        {
            ledger.record(key.clone(), fitted.entry, window + 2 * DAY);
        }
        origin += every;
    }
}

#[cfg(test)]
mod tests;
