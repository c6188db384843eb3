//! The capacity model every policy is judged by, and its scoring.
//!
//! A unit serves `unit_rpm` requests per minute. Each minute t a policy sets a target N(t)
//! from demand before t; a raise is ready `delay` minutes later and a cut is immediate, so
//! ready(t) = min(N(t−D), …, N(t)). Ready units serve demand; *requested* units cost: a pod
//! reserves its node's resources from the moment it is scheduled, and a VM is billed from
//! launch, so capacity that is still starting — or that is cancelled before it is ready —
//! is paid for. Only minutes after the warm-up (and inside the scoring window, when one is
//! set) that have a demand row are scored: a missing minute is neither under- nor
//! over-provisioned, and costs nothing.

use serde::Serialize;

/// Tolerance on units: C is rarely exact in binary, and ⌈d/C⌉·C must count as serving d.
const EPSILON: f64 = 1e-9;

/// How demand turns into units: each unit serves `unit_rpm` a minute and takes the delay to become ready.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CapacityModel {
    /// C: requests per minute one unit serves.
    pub unit_rpm: f64,
    /// D: minutes from a raise to ready capacity.
    pub delay: usize,
    /// Minutes at the start that are never scored (policies learn during them).
    pub warmup: usize,
}

impl CapacityModel {
    /// Units that serve `requests` in one minute.
    pub fn units_for(&self, requests: f64) -> u32 {
        // Less a rounding hair: 7 requests at C = 0.7 are 10 units, not 11.
        (requests / self.unit_rpm - EPSILON).ceil().max(0.0) as u32
    }

    /// ready(t) = min(N(t−D) … N(t)), over the targets that exist.
    pub fn ready(&self, targets: &[u32]) -> Vec<u32> {
        (0..targets.len())
            .map(|t| targets[t.saturating_sub(self.delay)..=t].iter().copied().min().unwrap_or(0))
            .collect()
    }
}

/// The SPEC Research Group elasticity metrics (Herbst et al., "Ready for Rain?", 2015), in
/// percent, with demand in units: the fewest units that serve the minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Elasticity {
    /// θ_U: mean of max(0, demand − supply) / demand.
    pub accuracy_under: f64,
    /// θ_O: mean of max(0, supply − demand) / demand.
    pub accuracy_over: f64,
    /// τ_U: share of minutes with supply below demand.
    pub timeshare_under: f64,
    /// τ_O: share of minutes with supply above demand.
    pub timeshare_over: f64,
}

/// One policy's result under one capacity model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// The policy's name.
    pub policy: String,
    /// The policy's knob (target utilisation, factor or quantile) when it has one.
    pub knob: Option<f64>,
    /// Minutes from asking for a unit to its being ready.
    pub delay: usize,
    /// Minutes scored (after the warm-up, in the scoring range, with data).
    pub scored_minutes: usize,
    /// Σ requested (N) / 60: what was paid for.
    pub cost_unit_hours: f64,
    /// Minutes with d > ready·C.
    pub under_minutes: usize,
    /// Σ max(0, d/C − ready).
    pub under_unit_minutes: f64,
    /// Σ max(0, ready − d/C) / 60.
    pub over_unit_hours: f64,
    /// Minutes where the target changed.
    pub actions: usize,
    /// How closely capacity followed demand.
    pub elasticity: Elasticity,
}

/// Scores `ready` against demand over the minutes `scored` accepts (after the warm-up);
/// `targets` count the actions.
pub fn score(
    policy: &str,
    knob: Option<f64>,
    model: &CapacityModel,
    demand: &[Option<f64>],
    targets: &[u32],
    ready: &[u32],
    scored: &dyn Fn(usize) -> bool,
) -> Outcome {
    let mut outcome = Outcome {
        policy: policy.to_owned(),
        knob,
        delay: model.delay,
        scored_minutes: 0,
        cost_unit_hours: 0.0,
        under_minutes: 0,
        under_unit_minutes: 0.0,
        over_unit_hours: 0.0,
        actions: 0,
        elasticity: Elasticity::default(),
    };
    let mut spec = Elasticity::default();
    for t in model.warmup..demand.len().min(ready.len()) {
        if !scored(t) {
            continue;
        }
        if t > 0 && targets[t] != targets[t - 1] {
            outcome.actions += 1;
        }
        let Some(d) = demand[t] else { continue };
        let supply = ready[t] as f64;
        let need = d / model.unit_rpm;
        outcome.scored_minutes += 1;
        outcome.cost_unit_hours += f64::from(targets[t].max(ready[t])) / 60.0;
        if need > supply + EPSILON {
            outcome.under_minutes += 1;
            outcome.under_unit_minutes += need - supply;
        }
        outcome.over_unit_hours += (supply - need).max(0.0) / 60.0;
        let units = (need - EPSILON).ceil().max(0.0);
        let denominator = units.max(1.0);
        spec.accuracy_under += (units - supply).max(0.0) / denominator;
        spec.accuracy_over += (supply - units).max(0.0) / denominator;
        spec.timeshare_under += f64::from(u8::from(units > supply));
        spec.timeshare_over += f64::from(u8::from(supply > units));
    }
    let per_cent = 100.0 / outcome.scored_minutes.max(1) as f64;
    outcome.elasticity = Elasticity {
        accuracy_under: spec.accuracy_under * per_cent,
        accuracy_over: spec.accuracy_over * per_cent,
        timeshare_under: spec.timeshare_under * per_cent,
        timeshare_over: spec.timeshare_over * per_cent,
    };
    outcome
}

/// Adds `other` (the same policy in another region) into `total`: sums, and the elasticity
/// metrics as means weighted by scored minutes.
pub fn accumulate(total: &mut Outcome, other: &Outcome) {
    let (a, b) = (total.scored_minutes as f64, other.scored_minutes as f64);
    let mean = |x: f64, y: f64| if a + b > 0.0 { (x * a + y * b) / (a + b) } else { 0.0 };
    let (e, f) = (total.elasticity, other.elasticity);
    total.elasticity = Elasticity {
        accuracy_under: mean(e.accuracy_under, f.accuracy_under),
        accuracy_over: mean(e.accuracy_over, f.accuracy_over),
        timeshare_under: mean(e.timeshare_under, f.timeshare_under),
        timeshare_over: mean(e.timeshare_over, f.timeshare_over),
    };
    total.scored_minutes += other.scored_minutes;
    total.cost_unit_hours += other.cost_unit_hours;
    total.under_minutes += other.under_minutes;
    total.under_unit_minutes += other.under_unit_minutes;
    total.over_unit_hours += other.over_unit_hours;
    total.actions += other.actions;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raises_wait_for_the_delay_and_cuts_are_immediate() {
        let model = CapacityModel { unit_rpm: 10.0, delay: 2, warmup: 0 };
        assert_eq!(model.ready(&[1, 5, 5, 5, 2, 2]), vec![1, 1, 1, 5, 2, 2]);
    }

    #[test]
    fn scoring_by_hand() {
        let model = CapacityModel { unit_rpm: 10.0, delay: 0, warmup: 1 };
        // Minute 0 is warm-up, minute 2 has no row.
        let demand = [Some(100.0), Some(25.0), None, Some(5.0)];
        let targets = [1, 2, 2, 3];
        let o = score("x", None, &model, &demand, &targets, &targets, &|_| true);
        assert_eq!(o.scored_minutes, 2);
        assert!((o.cost_unit_hours - 5.0 / 60.0).abs() < 1e-12);
        assert_eq!(o.under_minutes, 1);
        assert!((o.under_unit_minutes - 0.5).abs() < 1e-12);
        assert!((o.over_unit_hours - 2.5 / 60.0).abs() < 1e-12);
        assert_eq!(o.actions, 2);
        // Minute 1: 3 units needed, 2 supplied (1/3 short); minute 3: 1 needed, 3 supplied.
        assert!((o.elasticity.accuracy_under - 100.0 / 6.0).abs() < 1e-9);
        assert!((o.elasticity.accuracy_over - 100.0).abs() < 1e-9);
        assert!((o.elasticity.timeshare_under - 50.0).abs() < 1e-9);
    }
}
