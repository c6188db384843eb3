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
//! what a reactive HPA would have had ready from the same minutes. Both are replayed without
//! unit rounding, and the reactive side without its saturation cap or rate limits (an HPA that
//! reacts perfectly to what it sees): an optimistic reference, so the choice errs towards
//! capacity.

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
}

impl BandChoice {
    /// One line for `train`, `inspect` and the status page.
    pub fn reason(&self) -> String {
        format!(
            "p{:.1}, the cheapest replayed short in {} of the last {} minutes (a reactive HPA alone: {})",
            self.quantile * 100.0,
            self.prewarm_short,
            self.minutes,
            self.reactive_short
        )
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
/// minutes. `None` with under [`MIN_RECORD_MINUTES`] of record.
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
        |ready: &[f64]| -> usize { (0..demand.len()).filter(|&t| known[t] && demand[t] > ready[t] + 1e-9).count() };
    let none = vec![0.0; demand.len()];
    let reactive = ready(&none, &demand, Some(deployment.reactive_utilisation), lead);
    let reactive_short = short(&reactive);
    let allowed = (deployment.shortfall_vs_reactive * reactive_short as f64).floor() as usize;
    let prewarm_short = |q: f64| -> usize {
        let band: Vec<f64> =
            provisioned.iter().map(|p| p.and_then(|(p, horizon)| scores.band(p, q, horizon)).unwrap_or(0.0)).collect();
        // Desired units at s cover every minute up to a lead time ahead (`plan::desired_units`).
        let asked = sliding(&band, 0, lead, f64::max);
        short(&ready(&asked, &demand, deployment.floor_utilisation, lead))
    };
    // Shortfall falls as the quantile rises: bisect for the lowest quantile within the allowance
    // (the highest when none is, the lowest when every one is).
    let (mut lo, mut hi) = (LOWEST, HIGHEST);
    let mut at_hi = prewarm_short(hi);
    if at_hi <= allowed {
        let at_lo = prewarm_short(lo);
        if at_lo <= allowed {
            (hi, at_hi) = (lo, at_lo);
        }
        while hi - lo > RESOLUTION {
            let mid = (lo + hi) / 2.0;
            let s = prewarm_short(mid);
            if s <= allowed {
                (hi, at_hi) = (mid, s);
            } else {
                lo = mid;
            }
        }
    }
    Some(BandChoice { quantile: hi, minutes, reactive_short, prewarm_short: at_hi })
}

/// Capacity ready each minute of `demand` when a trigger asks for `asked` and, with
/// `utilisation`, a utilisation trigger beside it asks for the last minute's usage over its
/// target — usage the ready capacity could serve: a saturated pod reports 100 %, not the demand
/// it drops. The HPA holds the highest request of its stabilisation window; a raise is ready
/// `lead` minutes later, a cut is immediate (the replay's capacity model, `simulate/capacity.rs`).
fn ready(asked: &[f64], demand: &[f64], utilisation: Option<f64>, lead: usize) -> Vec<f64> {
    let n = asked.len().min(demand.len());
    let (mut desired, mut held, mut ready): (Vec<f64>, Vec<f64>, Vec<f64>) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    for s in 0..n {
        let reactive = match (utilisation, s.checked_sub(1)) {
            (Some(u), Some(last)) => demand[last].min(ready[last].max(MIN_CAPACITY)) / u.max(f64::EPSILON),
            (Some(u), None) => demand[0] / u.max(f64::EPSILON),
            (None, _) => 0.0,
        };
        desired.push(asked[s].max(reactive));
        held.push(desired[s.saturating_sub(STABILISATION_MINUTES)..=s].iter().copied().fold(0.0, f64::max));
        // Ready now: the least held over the last lead time (every raise since is still coming up).
        ready.push(held[s.saturating_sub(lead)..=s].iter().copied().fold(f64::INFINITY, f64::min));
    }
    ready
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
    fn capacity_is_held_through_the_stabilisation_window_and_comes_up_a_lead_time_late() {
        let mut asked = vec![1.0; 30];
        asked[10] = 5.0;
        let r = ready(&asked, &[0.0; 30], None, 3);
        // Asked at 10, held to 15, ready from 13 (a raise takes 3 minutes) to 15.
        let high: Vec<usize> = (0..30).filter(|&i| r[i] == 5.0).collect();
        assert_eq!(high, vec![13, 14, 15]);
    }

    #[test]
    fn a_saturated_reactive_trigger_sees_what_its_capacity_served() {
        // Demand steps from 7 to 70 at minute 10; the trigger had asked for 10 (7 over 0.7),
        // then asks for the capacity it had over 0.7 each minute: 10 → 14.3 → 20.4 …
        let demand: Vec<f64> = (0..40).map(|t| if t < 10 { 7.0 } else { 70.0 }).collect();
        let r = ready(&[0.0; 40], &demand, Some(0.7), 0);
        assert!((r[10] - 10.0).abs() < 1e-9 && (r[11] - 10.0 / 0.7).abs() < 1e-9, "{:?}", &r[8..14]);
        assert!(r[11] < 70.0 && r[20] >= 70.0, "{:?}", &r[8..22]);
    }
}
