//! Which quantile a series' band is published at: the cheapest that, over the series' own
//! recent minutes, would have left the deployment short in at most `shortfall_vs_reactive` as
//! many minutes as a reactive autoscaler alone.
//!
//! A fixed quantile is a constant chosen on some trace: on smooth traffic it buys capacity
//! nobody needed, on bursty traffic at a short lead time it may not be enough. What an
//! operator asks of prewarm is relative — fewer minutes short than the HPA they run today, for
//! not much more — and both sides of that can be replayed from the ledger at each training:
//! the forecasts the plan had a lead time before each minute (with the nowcast the plan would
//! have applied), widened to each candidate quantile by the calibrated scores, turned into the
//! capacity the recommended deployment would have had ready (desired units over the lead time,
//! the HPA's scale-down stabilisation, the reactive floor, the lead time to come up), against
//! what a reactive HPA would have had ready from the same minutes. Both sides come in whole
//! units of the plan's instance when its size in this series' requests is known, and a reactive
//! HPA never runs below one (its minReplicas): without that floor, an HPA that saw a quiet
//! minute would take many lead times to climb back, and the record would credit prewarm with
//! shortfalls no real HPA has. The reactive side is replayed without rate limits or tolerance
//! (an HPA that reacts at once to what it sees): an optimistic reference, so the choice errs
//! towards capacity.
//!
//! The shortfall asked for is not bought at any price: where it would cost more than
//! `cost_vs_reactive` times the reactive HPA's requested capacity (traffic whose bursts no
//! forecast sees), the band is the highest within that cost, and the choice says so.

use super::ledger::{Actuals, PastForecast, Scores};
use super::model::Method;
use super::nowcast;

/// The range a band's quantile is chosen in, and how finely.
pub const LOWEST: f64 = 0.75;
/// The highest quantile chosen (the alarm, at 0.995, stays above it).
pub const HIGHEST: f64 = 0.99;
const RESOLUTION: f64 = 0.002;
/// Kubernetes' default scale-down stabilisation window (`behavior.scaleDown`): an HPA scales
/// in to the highest recommendation of the last five minutes.
const STABILISATION_MINUTES: usize = 5;
/// The least capacity a deployment runs, in requests a minute (an HPA keeps at least one pod):
/// without it a reactive trigger that saw no usage would never see any again.
const MIN_CAPACITY: f64 = 1.0;
/// Minutes of record (a forecast and an actual) needed before the record chooses.
pub const MIN_RECORD_MINUTES: usize = 1440;

/// The deployment both sides of the comparison are replayed as.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Deployment {
    /// Capacity asked for now is ready this many minutes later; the plan looks this far ahead.
    pub lead_minutes: u64,
    /// The reactive floor deployed beside prewarm's trigger (its utilisation target), if any.
    pub floor_utilisation: Option<f64>,
    /// The utilisation target of the reactive HPA prewarm is compared with.
    pub reactive_utilisation: f64,
    /// The share of the reactive HPA's short minutes prewarm may be short in.
    pub shortfall_vs_reactive: f64,
    /// The most the deployment may cost, as a multiple of the reactive HPA's requested capacity.
    pub cost_vs_reactive: f64,
    /// Requests of this series a minute one unit serves, when known: both sides' capacity comes
    /// in whole units, and the reactive HPA keeps at least one.
    pub unit_requests: Option<f64>,
}

/// A minute's provisioned forecast (requests) and its horizon (minutes after the forecast's
/// origin); `None` where no forecast was made a lead time before it.
pub type Provisioned = Option<(f64, u64)>;

/// What the record chose, and why.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BandChoice {
    /// The quantile chosen.
    pub quantile: f64,
    /// Minutes of record replayed.
    pub minutes: usize,
    /// Of those, minutes the reactive HPA alone would have been short.
    pub reactive_short: usize,
    /// Of those, minutes the deployment would have been short with the band at `quantile`.
    pub prewarm_short: usize,
    /// The deployment's requested capacity over the reactive HPA's, at `quantile`.
    #[serde(default)]
    pub cost_ratio: f64,
    /// The cost allowance, not the shortfall, set the quantile: the shortfall asked for would
    /// have cost more than `cost_vs_reactive` times the reactive HPA.
    #[serde(default)]
    pub cost_bound: bool,
}

impl BandChoice {
    /// One line for `train`, `inspect` and the status page.
    pub fn reason(&self) -> String {
        let (q, short, minutes, reactive) =
            (self.quantile * 100.0, self.prewarm_short, self.minutes, self.reactive_short);
        let cost = self.cost_ratio;
        if self.cost_bound {
            format!(
                "p{q:.1}, the highest within the cost allowance ({cost:.2}× a reactive HPA's capacity), replayed \
                 short in {short} of the last {minutes} minutes (a reactive HPA alone: {reactive}); the \
                 shortfall asked for would have cost more"
            )
        } else {
            format!(
                "p{q:.1}, the cheapest replayed short in {short} of the last {minutes} minutes (a reactive HPA \
                 alone: {reactive}), at {cost:.2}× its capacity"
            )
        }
    }
}

/// The provisioned forecast of every minute in `minutes` (Unix seconds): the weighted combination from
/// the latest entry made at least `lead_minutes` before the minute (what the plan had when it
/// asked for that minute's capacity), times `bias`, corrected by the nowcast the plan would
/// then have applied when `with_nowcast`; with its horizon in minutes.
pub fn provisioned(
    entries: &[PastForecast],
    weights: &[(Method, f64)],
    actual: Actuals<'_>,
    minutes: std::ops::Range<u64>,
    lead_minutes: u64,
    bias: f64,
    with_nowcast: bool,
) -> Vec<Provisioned> {
    let lead = lead_minutes * 60;
    let window = nowcast::WINDOW_MINUTES * 60;
    let rate_of = |entry: &PastForecast, t: u64| -> Option<f64> {
        weights.iter().map(|(m, w)| Some(entry.rate_of(*m, t)? * w)).sum::<Option<f64>>()
    };
    minutes
        .step_by(60)
        .map(|t| {
            let asked = t.checked_sub(lead)?;
            let at = entries.partition_point(|e| e.origin <= asked);
            let entry = entries.get(at.checked_sub(1)?)?;
            let mut p = rate_of(entry, t)? * bias;
            if with_nowcast {
                let (mut whole, mut recent) = ((0.0, 0.0), (0.0, 0.0));
                let recent_from = asked.saturating_sub(nowcast::RECENT_MINUTES * 60);
                for s in (asked.saturating_sub(window)..asked).step_by(60) {
                    if let (Some(a), Some(f)) = (actual.at(s), rate_of(entry, s)) {
                        whole = (whole.0 + a, whole.1 + f * bias);
                        if s >= recent_from {
                            recent = (recent.0 + a, recent.1 + f * bias);
                        }
                    }
                }
                if whole.1 > 0.0 {
                    p *= nowcast::factor(nowcast::level(whole, recent), lead);
                }
            }
            Some((p, (t - entry.origin) / 60))
        })
        .collect()
}

/// Chooses the band's quantile from the record: `provisioned` and `actual` are the same
/// minutes. `None` with under [`MIN_RECORD_MINUTES`] of record, or where the reactive HPA
/// would never have been short (the configured quantile then stands).
pub fn choose(
    provisioned: &[Provisioned],
    actual: &[Option<f64>],
    scores: &Scores,
    deployment: &Deployment,
) -> Option<BandChoice> {
    let n = provisioned.len().min(actual.len());
    let (provisioned, actual) = (&provisioned[..n], &actual[..n]);
    let known: Vec<bool> = provisioned.iter().zip(actual).map(|(p, a)| p.is_some() && a.is_some()).collect();
    let minutes = known.iter().filter(|k| **k).count();
    if minutes < MIN_RECORD_MINUTES || scores.is_empty() {
        return None;
    }
    let lead = deployment.lead_minutes as usize;
    // A gap holds the last known minute (the cluster kept running through it).
    let demand: Vec<f64> = actual
        .iter()
        .scan(0.0, |last, a| {
            *last = a.unwrap_or(*last);
            Some(*last)
        })
        .collect();
    let short =
        |run: &Run| -> usize { (0..demand.len()).filter(|&t| known[t] && demand[t] > run.ready[t] + 1e-9).count() };
    let cost = |run: &Run| -> f64 { (0..demand.len()).filter(|&t| known[t]).map(|t| run.requested[t]).sum() };
    let unit = deployment.unit_requests.filter(|u| u.is_finite() && *u > 0.0);
    let none = vec![0.0; demand.len()];
    let reactive = replay(&none, &demand, Some(deployment.reactive_utilisation), lead, unit);
    let (reactive_short, reactive_cost) = (short(&reactive), cost(&reactive).max(f64::MIN_POSITIVE));
    // An HPA that was never short (one instance carries the series) says nothing about the
    // band: every quantile is as short (never) and, in whole instances, as costly.
    if reactive_short == 0 {
        return None;
    }
    let allowed = (deployment.shortfall_vs_reactive * reactive_short as f64).floor() as usize;
    let at = |q: f64| -> (usize, f64) {
        let band: Vec<f64> =
            provisioned.iter().map(|p| p.and_then(|(p, horizon)| scores.band(p, q, horizon)).unwrap_or(0.0)).collect();
        // Desired units at s cover every minute up to a lead time ahead (`plan::desired_units`).
        let asked = sliding(&band, 0, lead, f64::max);
        let run = replay(&asked, &demand, deployment.floor_utilisation, lead, unit);
        (short(&run), cost(&run) / reactive_cost)
    };
    // Shortfall falls and cost rises as the quantile rises: the lowest quantile within the
    // shortfall allowance (the highest when none is, the lowest when every one is)…
    let mut quantile = lowest_where(|q| at(q).0 <= allowed);
    let mut outcome = at(quantile);
    // …unless it costs more than the allowance: then the highest that does not.
    let cost_bound = outcome.1 > deployment.cost_vs_reactive;
    if cost_bound {
        let within = |q: f64| at(q).1 <= deployment.cost_vs_reactive;
        quantile = if within(LOWEST) { highest_where(LOWEST, quantile, within) } else { LOWEST };
        outcome = at(quantile);
    }
    let (prewarm_short, cost_ratio) = outcome;
    Some(BandChoice { quantile, minutes, reactive_short, prewarm_short, cost_ratio, cost_bound })
}

/// The lowest quantile in [`LOWEST`, `HIGHEST`] where `holds` (which holds from some quantile
/// up), to [`RESOLUTION`]; `HIGHEST` when it holds nowhere.
fn lowest_where(holds: impl Fn(f64) -> bool) -> f64 {
    if !holds(HIGHEST) {
        return HIGHEST;
    }
    if holds(LOWEST) {
        return LOWEST;
    }
    let (mut lo, mut hi) = (LOWEST, HIGHEST);
    while hi - lo > RESOLUTION {
        let mid = (lo + hi) / 2.0;
        if holds(mid) { hi = mid } else { lo = mid }
    }
    hi
}

/// The highest quantile in [`lo`, `hi`] where `holds` (which holds at `lo` and up to some
/// quantile), to [`RESOLUTION`].
fn highest_where(mut lo: f64, mut hi: f64, holds: impl Fn(f64) -> bool) -> f64 {
    if holds(hi) {
        return hi;
    }
    while hi - lo > RESOLUTION {
        let mid = (lo + hi) / 2.0;
        if holds(mid) { lo = mid } else { hi = mid }
    }
    lo
}

/// One side of the comparison, replayed: capacity ready each minute, and requested (what is
/// paid for: capacity still coming up is already requested).
struct Run {
    ready: Vec<f64>,
    requested: Vec<f64>,
}

/// Capacity ready each minute of `demand` when a trigger asks for `asked` and, with
/// `utilisation`, a utilisation trigger beside it asks for the last minute's usage over its
/// target — usage the ready capacity could serve: a saturated pod reports 100 %, not the demand
/// it drops. With a `unit`, capacity comes in whole units and never under one. The HPA holds the
/// highest request of its stabilisation window; a raise is ready `lead` minutes later, a cut is
/// immediate (the replay's capacity model, `simulate/capacity.rs`).
fn replay(asked: &[f64], demand: &[f64], utilisation: Option<f64>, lead: usize, unit: Option<f64>) -> Run {
    let n = asked.len().min(demand.len());
    let least = unit.unwrap_or(MIN_CAPACITY);
    let whole = |x: f64| unit.map_or(x, |u| ((x / u - 1e-9).ceil().max(1.0)) * u);
    let (mut desired, mut held, mut ready): (Vec<f64>, Vec<f64>, Vec<f64>) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    for s in 0..n {
        let reactive = match (utilisation, s.checked_sub(1)) {
            (Some(u), Some(last)) => demand[last].min(ready[last].max(least)) / u.max(f64::EPSILON),
            (Some(u), None) => demand[0] / u.max(f64::EPSILON),
            (None, _) => 0.0,
        };
        desired.push(whole(asked[s].max(reactive)));
        held.push(desired[s.saturating_sub(STABILISATION_MINUTES)..=s].iter().copied().fold(0.0, f64::max));
        // Ready now: the least held over the last lead time (every raise since is still coming up).
        ready.push(held[s.saturating_sub(lead)..=s].iter().copied().fold(f64::INFINITY, f64::min));
    }
    Run { ready, requested: held }
}

/// `f` over each window `[i − before, i + after]`, clipped to the slice.
fn sliding(values: &[f64], before: usize, after: usize, f: fn(f64, f64) -> f64) -> Vec<f64> {
    (0..values.len())
        .map(|i| {
            let window = &values[i.saturating_sub(before)..(i + after + 1).min(values.len())];
            window.iter().copied().reduce(f).unwrap_or(0.0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(lead: u64) -> Deployment {
        Deployment {
            lead_minutes: lead,
            floor_utilisation: None,
            reactive_utilisation: 0.7,
            shortfall_vs_reactive: 0.4,
            cost_vs_reactive: f64::INFINITY,
            unit_requests: None,
        }
    }

    /// A daily curve with 10 % noise and, every four hours, half an hour at twice the level
    /// that no forecast saw coming (deterministic); the forecast is the curve.
    fn day_curve(minutes: usize) -> (Vec<Option<f64>>, Vec<Provisioned>) {
        let mut state = 7u64;
        let mut uniform = move || {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mean = |t: usize| 50.0 + 40.0 * (std::f64::consts::TAU * (t % 1440) as f64 / 1440.0).sin();
        let actual = (0..minutes)
            .map(|t| {
                // Sum of 12 uniforms − 6 ≈ a standard normal.
                let z: f64 = (0..12).map(|_| uniform()).sum::<f64>() - 6.0;
                let burst = if (t + 97 * (t / 240)) % 240 < 30 { 2.0 } else { 1.0 };
                Some((mean(t) * burst * (1.0 + 0.1 * z)).max(0.0))
            })
            .collect();
        let provisioned = (0..minutes).map(|t| Some((mean(t), 30))).collect();
        (actual, provisioned)
    }

    fn scores_of(actual: &[Option<f64>], provisioned: &[Provisioned]) -> Scores {
        let pairs: Vec<(usize, f64, f64)> =
            provisioned.iter().zip(actual).filter_map(|(p, a)| Some((0, p.as_ref()?.0, (*a)?))).collect();
        Scores::from_pairs(&pairs, 1.0)
    }

    #[test]
    fn the_choice_is_the_cheapest_quantile_within_the_allowance() {
        let (actual, provisioned) = day_curve(3 * 1440);
        let scores = scores_of(&actual, &provisioned);
        let chosen = choose(&provisioned, &actual, &scores, &deployment(5)).expect("three days of record");
        assert!(chosen.reactive_short > 0, "{chosen:?}");
        assert!(chosen.prewarm_short as f64 <= 0.4 * chosen.reactive_short as f64, "{chosen:?}");
        // One step cheaper would have been short in more than the allowance.
        assert!(chosen.quantile > LOWEST, "a bursty series at a short lead needs more than the lowest: {chosen:?}");
        let lenient = Deployment { shortfall_vs_reactive: 1.0, ..deployment(5) };
        let as_reactive = choose(&provisioned, &actual, &scores, &lenient).expect("record");
        assert!(as_reactive.quantile < chosen.quantile, "{as_reactive:?} vs {chosen:?}");
        assert!(as_reactive.prewarm_short > chosen.prewarm_short, "{as_reactive:?} vs {chosen:?}");
    }

    #[test]
    fn the_shortfall_is_not_bought_beyond_the_cost_allowance() {
        let (actual, provisioned) = day_curve(3 * 1440);
        let scores = scores_of(&actual, &provisioned);
        let free = choose(&provisioned, &actual, &scores, &deployment(5)).expect("record");
        assert!(!free.cost_bound && free.cost_ratio > 0.0, "{free:?}");
        // An allowance just under what that band costs: the highest band within it instead.
        let allowance = free.cost_ratio - 0.02;
        let bounded = Deployment { cost_vs_reactive: allowance, ..deployment(5) };
        let chosen = choose(&provisioned, &actual, &scores, &bounded).expect("record");
        assert!(chosen.cost_bound && chosen.quantile < free.quantile, "{chosen:?} vs {free:?}");
        assert!(chosen.cost_ratio <= allowance && chosen.prewarm_short > free.prewarm_short, "{chosen:?}");
        // One step higher would have cost more than the allowance.
        let above = Deployment { cost_vs_reactive: chosen.cost_ratio - 1e-6, ..bounded };
        let lower = choose(&provisioned, &actual, &scores, &above).expect("record");
        assert!(lower.quantile < chosen.quantile, "{lower:?} vs {chosen:?}");
        assert!(chosen.reason().contains("cost allowance"), "{}", chosen.reason());
    }

    #[test]
    fn a_reactive_hpa_keeps_one_unit_and_climbs_back_from_it() {
        // Ten quiet minutes (0.5 a minute), then 60 a minute; one unit serves 20.
        let demand: Vec<f64> = (0..60).map(|t| if t < 10 { 0.5 } else { 60.0 }).collect();
        let short = |r: &[f64]| (0..60).filter(|&t| demand[t] > r[t] + 1e-9).count();
        let bare = replay(&[0.0; 60], &demand, Some(0.7), 3, None);
        let units = replay(&[0.0; 60], &demand, Some(0.7), 3, Some(20.0));
        assert!(units.ready.iter().all(|r| *r >= 20.0 && (r / 20.0).fract() == 0.0), "{:?}", units.ready);
        // From one request a minute it takes the saturated trigger many lead times to reach 60;
        // from a unit of 20, two.
        assert!(short(&units.ready) < short(&bare.ready), "{:?} vs {:?}", units.ready, bare.ready);
        assert!(short(&units.ready) <= 8, "{:?}", &units.ready[8..24]);
        assert!(units.requested.iter().zip(&units.ready).all(|(q, r)| q >= r));
    }

    #[test]
    fn a_longer_lead_leaves_the_reactive_hpa_shorter_and_the_band_cheaper() {
        let (actual, provisioned) = day_curve(3 * 1440);
        let scores = scores_of(&actual, &provisioned);
        let short_lead = choose(&provisioned, &actual, &scores, &deployment(2)).expect("record");
        let long_lead = choose(&provisioned, &actual, &scores, &deployment(15)).expect("record");
        assert!(long_lead.reactive_short > short_lead.reactive_short, "{long_lead:?} vs {short_lead:?}");
        assert!(long_lead.quantile <= short_lead.quantile, "{long_lead:?} vs {short_lead:?}");
    }

    #[test]
    fn a_short_record_does_not_choose() {
        let (actual, provisioned) = day_curve(1000);
        let scores = scores_of(&actual, &provisioned);
        assert_eq!(choose(&provisioned, &actual, &scores, &deployment(5)), None);
    }

    #[test]
    fn a_series_one_instance_always_carries_does_not_choose() {
        let (actual, provisioned) = day_curve(3 * 1440);
        let scores = scores_of(&actual, &provisioned);
        // The curve peaks near 180 a minute: an instance of 100 is sometimes short, one of
        // 1,000 never.
        let small = Deployment { unit_requests: Some(100.0), ..deployment(5) };
        assert!(choose(&provisioned, &actual, &scores, &small).is_some_and(|c| c.reactive_short > 0));
        let large = Deployment { unit_requests: Some(1_000.0), ..deployment(5) };
        assert_eq!(choose(&provisioned, &actual, &scores, &large), None);
    }

    #[test]
    fn capacity_is_held_through_the_stabilisation_window_and_comes_up_a_lead_time_late() {
        let mut asked = vec![1.0; 30];
        asked[10] = 5.0;
        let r = replay(&asked, &[0.0; 30], None, 3, None).ready;
        // Asked at 10, held to 15, ready from 13 (a raise takes 3 minutes) to 15.
        let high: Vec<usize> = (0..30).filter(|&i| r[i] == 5.0).collect();
        assert_eq!(high, vec![13, 14, 15]);
    }

    #[test]
    fn a_saturated_reactive_trigger_sees_what_its_capacity_served() {
        // Demand steps from 7 to 70 at minute 10; the trigger had asked for 10 (7 over 0.7),
        // then asks for the capacity it had over 0.7 each minute: 10 → 14.3 → 20.4 …
        let demand: Vec<f64> = (0..40).map(|t| if t < 10 { 7.0 } else { 70.0 }).collect();
        let r = replay(&[0.0; 40], &demand, Some(0.7), 0, None).ready;
        assert!((r[10] - 10.0).abs() < 1e-9 && (r[11] - 10.0 / 0.7).abs() < 1e-9, "{:?}", &r[8..14]);
        assert!(r[11] < 70.0 && r[20] >= 70.0, "{:?}", &r[8..22]);
    }
}
