//! The edge, replayed: the prewarm signals the worker's own rule
//! ([`prewarm_shared::signal_rule`]) raises on each region × profile's minutes, and how much
//! they and the band were worth.
//!
//! - A signal is **true** when demand stays above what the plan (from the forecast alone)
//!   provisioned for — an *episode*: at least [`EPISODE_MINUTES`] consecutive minutes — starting
//!   within the [`PRECISION_MINUTES`] after it (or under way).
//! - An episode is **material** when a minute of it runs above the alarm level (the margin
//!   that matters); recall is the share of material episodes signalled from
//!   [`EARLY_MINUTES`] before to [`LATE_MINUTES`] after their start.
//! - The crowd response is how many minutes after a material episode's start prewarm's
//!   capacity target began to rise (0 when it was already rising).
//! - Band coverage is the share of (profile, minute) pairs whose count stayed under the band.

use prewarm_shared::UnixSeconds;
use prewarm_shared::signal_rule::{self, SliceWatch, WatchSettings};
use serde::Serialize;

use super::capacity::CapacityModel;
use super::pipeline::{PlannedUnits, RegionInput, Replayed};
use crate::config::TrainerConfig;

/// Minutes above plan that make an episode.
pub const EPISODE_MINUTES: usize = 3;
/// A signal is true when an episode starts within this many minutes after it.
pub const PRECISION_MINUTES: usize = 10;
/// A material episode counts as signalled in time from this many minutes before its start…
pub const EARLY_MINUTES: usize = 10;
/// …to this many after.
pub const LATE_MINUTES: usize = 5;
/// The worker's default debounce (`PREWARM_DEBOUNCE_SECS`).
pub const DEBOUNCE_SECS: u64 = 60;

/// A prewarm signal as the trainer receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    /// The region.
    pub region: String,
    /// The profile id.
    pub profile: u16,
    /// Unix seconds.
    pub at: u64,
    /// Requests per forecast step the last minute amounted to.
    pub observed_per_step: f32,
}

/// Each minute's requests are replayed as this many equal parts, spread over the minute, so
/// that the rule's excess builds up within minutes as it does at the edge.
const PARTS_PER_MINUTE: u64 = 4;

/// The signals the worker would have raised in one region: each minute's count, spread evenly
/// over the minute, against the model the edge held then.
pub fn signals(region: &RegionInput, replayed: &Replayed, _config: &TrainerConfig) -> Vec<Signal> {
    let mut out = Vec::new();
    let watch = WatchSettings::default();
    let part_secs = 60 / PARTS_PER_MINUTE;
    for (profile, counts) in &region.live {
        let id = prewarm_shared::ProfileId(*profile);
        let mut slice = SliceWatch::default();
        let mut last = None;
        for (t, n) in counts.iter().enumerate() {
            let n = n.max(0.0).round() as u64;
            let minute = replayed.start + t as u64 * 60;
            let Some(model) = replayed.timeline.model_at(&region.name, minute + 59) else { continue };
            for part in 1..=PARTS_PER_MINUTE {
                let at = UnixSeconds(minute + part * part_secs - 1);
                let requests = n * part / PARTS_PER_MINUTE - n * (part - 1) / PARTS_PER_MINUTE;
                let Some(crossing) = slice.record(&model.forecast, id, at, requests as u32, &watch) else { continue };
                if signal_rule::due(last, at, DEBOUNCE_SECS) {
                    last = Some(at.0);
                    out.push(Signal {
                        region: region.name.clone(),
                        profile: *profile,
                        at: at.0,
                        observed_per_step: crossing.observed_per_step,
                    });
                }
            }
        }
    }
    out.sort_by_key(|s| s.at);
    out
}

/// How prewarm's signals and band did at one delay.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Quality {
    /// Minutes of provisioning delay these figures are for.
    pub delay: usize,
    /// Signals raised.
    pub signals: usize,
    /// Signals followed within 10 minutes by demand above the planned capacity's comfortable level.
    pub true_signals: usize,
    /// Episodes of demand above the planned comfortable level.
    pub episodes: usize,
    /// Those large enough to matter.
    pub material_episodes: usize,
    /// Material episodes signalled in time.
    pub material_signalled: usize,
    /// Minutes from each material episode's start to prewarm's target rising.
    pub response_minutes: Vec<usize>,
    /// Minutes the band was judged on.
    pub band_minutes: usize,
    /// Minutes whose demand stayed under the band.
    pub band_covered: usize,
}

impl Quality {
    /// Share of signals that were followed by high demand.
    pub fn precision(&self) -> Option<f64> {
        (self.signals > 0).then(|| self.true_signals as f64 / self.signals as f64)
    }

    /// Share of material episodes signalled in time.
    pub fn recall(&self) -> Option<f64> {
        (self.material_episodes > 0).then(|| self.material_signalled as f64 / self.material_episodes as f64)
    }

    /// Share of minutes under the band (its empirical coverage).
    pub fn band_coverage(&self) -> Option<f64> {
        (self.band_minutes > 0).then(|| self.band_covered as f64 / self.band_minutes as f64)
    }

    /// The median and 90th percentile of the response.
    pub fn response(&self) -> Option<(usize, usize)> {
        let mut r = self.response_minutes.clone();
        r.sort_unstable();
        let at = |q: f64| r[((r.len() - 1) as f64 * q).round() as usize];
        (!r.is_empty()).then(|| (at(0.5), at(0.9)))
    }

    /// Adds another region's or delay's counts.
    pub fn accumulate(&mut self, other: &Quality) {
        self.signals += other.signals;
        self.true_signals += other.true_signals;
        self.episodes += other.episodes;
        self.material_episodes += other.material_episodes;
        self.material_signalled += other.material_signalled;
        self.response_minutes.extend(&other.response_minutes);
        self.band_minutes += other.band_minutes;
        self.band_covered += other.band_covered;
    }
}

/// Judges one region's signals against its demand and the plan at one delay.
pub fn quality(
    region: &RegionInput,
    replayed: &Replayed,
    planned: &PlannedUnits,
    targets: &[u32],
    model: &CapacityModel,
    scored: &dyn Fn(usize) -> bool,
) -> Quality {
    let demand = &region.trace.demand;
    let c = model.unit_rpm;
    let minute_of = |at: u64| ((at - replayed.start) / 60) as usize;
    // Demand above what the forecast planned for, and above the alarm level, per minute.
    let mut above_plan = vec![false; demand.len()];
    let mut above_alarm = vec![false; demand.len()];
    let mut q = Quality { delay: model.delay, ..Quality::default() };
    for t in 0..demand.len() {
        let (Some(d), Some(units)) = (demand[t], planned.forecast_only.get(t).copied().flatten()) else { continue };
        if !scored(t) {
            continue;
        }
        let now = replayed.start + t as u64 * 60;
        above_plan[t] = d > f64::from(units) * c + 1e-9;
        let Some(m) = replayed.timeline.model_at(&region.name, now) else { continue };
        let Some(slot) = m.forecast.slot(UnixSeconds(now)) else { continue };
        let step_minutes = f64::from(m.forecast.step_secs) / 60.0;
        let mut alarm = 0.0;
        for p in &m.profiles {
            let Some(s) = m.forecast.of(p.id) else { continue };
            alarm += f64::from(s.alarm[slot]) / step_minutes * f64::from(p.cost.cpu_ms.mean);
            if let Some(count) = region.live.get(&p.id.0).and_then(|c| c.get(t)) {
                q.band_minutes += 1;
                q.band_covered += usize::from(*count <= f64::from(s.upper[slot]) / step_minutes + 1e-9);
            }
        }
        above_alarm[t] = d > alarm;
    }
    let mut episodes: Vec<(usize, usize, bool)> = Vec::new();
    let mut t = 0;
    while t < demand.len() {
        if !above_plan[t] {
            t += 1;
            continue;
        }
        let end = t + above_plan[t..].iter().take_while(|a| **a).count();
        if end - t >= EPISODE_MINUTES {
            episodes.push((t, end, above_alarm[t..end].iter().any(|a| *a)));
        }
        t = end;
    }
    let signals: Vec<usize> = replayed
        .signals
        .iter()
        .filter(|s| s.region == region.name && s.at >= replayed.start)
        .map(|s| minute_of(s.at))
        .filter(|&m| m < demand.len() && scored(m))
        .collect();
    q.signals = signals.len();
    q.true_signals = signals
        .iter()
        .filter(|&&s| episodes.iter().any(|&(start, end, _)| start <= s + PRECISION_MINUTES && end > s))
        .count();
    q.episodes = episodes.len();
    for &(start, _, material) in &episodes {
        if !material {
            continue;
        }
        q.material_episodes += 1;
        let in_time = signals.iter().any(|&s| s + EARLY_MINUTES >= start && s <= start + LATE_MINUTES);
        q.material_signalled += usize::from(in_time);
        let before = targets.get(start.saturating_sub(1)).copied().unwrap_or(0);
        let earlier = targets.get(start.saturating_sub(11)).copied().unwrap_or(before);
        let response = if before > earlier {
            Some(0)
        } else {
            (start..(start + 60).min(targets.len())).find(|&u| targets[u] > before).map(|u| u - start)
        };
        if let Some(r) = response {
            q.response_minutes.push(r);
        }
    }
    q
}
