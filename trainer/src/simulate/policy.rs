//! The scaling policies a replay compares. Each sets the target for minute t from demand
//! before t only: the loop hands a policy `&demand[..t]`, never more.

use super::capacity::CapacityModel;
use super::hourly::{HourlySchedule, Known};
use std::collections::VecDeque;

/// What a policy knows when it sets minute t's target.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    pub t: usize,
    /// Demand of minutes 0..t; `None` where the trace has no row.
    pub past: &'a [Option<f64>],
    /// The previous minute's target and ready units.
    pub target_prev: u32,
    pub ready_prev: u32,
}

pub trait Policy {
    fn target(&mut self, step: &Step<'_>) -> u32;
}

/// Runs a policy over the trace: the targets N(t), at least one unit.
pub fn run(policy: &mut dyn Policy, demand: &[Option<f64>], model: &CapacityModel) -> Vec<u32> {
    let mut targets: Vec<u32> = Vec::with_capacity(demand.len());
    for t in 0..demand.len() {
        let ready_prev =
            if t == 0 { 1 } else { targets[(t - 1).saturating_sub(model.delay)..t].iter().copied().min().unwrap_or(1) };
        let step = Step { t, past: &demand[..t], target_prev: targets.last().copied().unwrap_or(1), ready_prev };
        targets.push(policy.target(&step).max(1));
    }
    targets
}

/// Kubernetes' Horizontal Pod Autoscaler with its defaults, on a one-minute loop: target
/// utilisation with a 10 % tolerance; scale-up by at most max(+4, ×2) per step; scale-down to
/// the highest recommendation of the last 5 minutes (300 s stabilisation window).
#[derive(Debug, Clone)]
pub struct Hpa {
    pub target_utilisation: f64,
    pub tolerance: f64,
    unit_rpm: f64,
    recent: VecDeque<u32>,
}

impl Hpa {
    pub fn new(target_utilisation: f64, unit_rpm: f64) -> Self {
        Self { target_utilisation, tolerance: 0.1, unit_rpm, recent: VecDeque::with_capacity(5) }
    }

    /// The HPA's decision given the current target (which a floor may have raised).
    fn decide(&mut self, step: &Step<'_>) -> u32 {
        let current = step.target_prev;
        // No metric for the last minute: the HPA keeps its replicas.
        let Some(Some(demand)) = step.past.last() else { return current };
        let ready = f64::from(step.ready_prev.max(1));
        let ratio = demand / (ready * self.unit_rpm) / self.target_utilisation;
        let desired = if (ratio - 1.0).abs() <= self.tolerance { current } else { (ready * ratio).ceil() as u32 };
        if self.recent.len() == 5 {
            self.recent.pop_front();
        }
        self.recent.push_back(desired);
        if desired > current {
            desired.min((current + 4).max(current * 2))
        } else {
            current.min(self.recent.iter().copied().max().unwrap_or(desired))
        }
    }
}

impl Policy for Hpa {
    fn target(&mut self, step: &Step<'_>) -> u32 {
        self.decide(step)
    }
}

/// HPA plus a floor of `factor` × the demand 7 days before the minute being provisioned
/// (t + D): the trick Grafana Mimir's autoscaling uses.
#[derive(Debug, Clone)]
pub struct SeasonalNaive7d {
    pub hpa: Hpa,
    pub factor: f64,
    pub model: CapacityModel,
}

impl Policy for SeasonalNaive7d {
    fn target(&mut self, step: &Step<'_>) -> u32 {
        let reactive = self.hpa.decide(step);
        let week_ago =
            (step.t + self.model.delay).checked_sub(7 * 1440).and_then(|i| step.past.get(i).copied().flatten());
        let floor = week_ago.map_or(0, |d| self.model.units_for(self.factor * d));
        reactive.max(floor)
    }
}

/// AWS-style predictive scaling: every 6 h an hourly forecast of the next 48 h from up to 14
/// days of history; each hour's capacity, sized for the target utilisation, is scheduled 300 s
/// before the hour. Scale-out from the forecast, scale-in through HPA's rules.
#[derive(Debug)]
pub struct AwsPredictive<'s> {
    pub hpa: Hpa,
    pub schedule: &'s HourlySchedule,
    pub target_utilisation: f64,
    pub model: CapacityModel,
}

impl Policy for AwsPredictive<'_> {
    fn target(&mut self, step: &Step<'_>) -> u32 {
        let reactive = self.hpa.decide(step);
        let floor = self
            .schedule
            .known_at(step.t, step.t + 5)
            .map_or(0, |k| self.model.units_for(k.rate / self.target_utilisation));
        reactive.max(floor)
    }
}

/// One forecast prewarm's policy sums: a profile's requests (or the whole trace's), with what
/// one request weighs in the trace's demand.
#[derive(Debug, Clone, Copy)]
pub struct Part<'s> {
    pub schedule: &'s HourlySchedule,
    pub weight: f64,
    /// Requests per minute over the whole trace; the policy reads only minutes before t.
    pub requests: &'s [Option<f64>],
}

/// prewarm's own policy, replayed: per part (each profile, or the whole trace), the hourly
/// forecast for the minutes being provisioned, corrected by the level the edge's demand
/// counts show against the forecast over the last half hour (the nowcast). The parts' rates
/// are weighted by their cost and summed; the margin on top is the minute burstiness learnt
/// (at the chosen quantile) on the whole trace, since profiles' bursts are neither Poisson
/// nor independent. When a part's last minute ran above its own band the worker raises a
/// prewarm signal; the plan then covers that part's observed rate with the same margin.
/// Scale-in waits out a short stabilisation window, as the planner's does.
#[derive(Debug)]
pub struct Prewarm<'s> {
    pub parts: Vec<Part<'s>>,
    /// The whole trace's schedule when the parts are profiles: whose burstiness is the margin.
    pub total: Option<&'s HourlySchedule>,
    pub model: CapacityModel,
    /// Multiplies the burstiness margin: the sweep's knob.
    pub headroom: f64,
    /// Minutes of demand counts the nowcast compares with the forecast.
    pub nowcast_minutes: usize,
    pub stabilisation_minutes: usize,
    recent: VecDeque<u32>,
    /// Before the first forecast exists, scaling is reactive.
    fallback: Hpa,
}

impl<'s> Prewarm<'s> {
    pub fn new(parts: Vec<Part<'s>>, model: CapacityModel, headroom: f64) -> Self {
        Self {
            parts,
            total: None,
            model,
            headroom,
            // 30 rather than 60 minutes: on nasa95 both delays gain a little (D = 5: under
            // 0.46 → 0.45 of HPA's at 1.03 → 1.02 its cost).
            nowcast_minutes: 30,
            stabilisation_minutes: 5,
            recent: VecDeque::new(),
            fallback: Hpa::new(0.7, model.unit_rpm),
        }
    }

    /// Observed / forecast over the last `nowcast_minutes` with data before `t`, each minute
    /// compared with the forecast that was current then.
    fn nowcast(&self, part: &Part<'_>, t: usize) -> f64 {
        let from = t.saturating_sub(self.nowcast_minutes);
        let (mut observed, mut expected, mut minutes) = (0.0, 0.0, 0);
        for (i, d) in part.requests.iter().enumerate().take(t).skip(from) {
            let (Some(d), Some(k)) = (d, part.schedule.smooth_at(i, i)) else { continue };
            observed += d;
            expected += k.rate;
            minutes += 1;
        }
        if minutes < self.nowcast_minutes / 2 || expected <= 0.0 { 1.0 } else { (observed / expected).clamp(0.5, 3.0) }
    }

    /// The capacity (in demand units) that covers every part at its known rates: Σ weight ×
    /// rate plus `headroom` × the burstiness margin (the whole trace's when known at `now`).
    fn band(&self, now: usize, known: &[(f64, Known)]) -> f64 {
        let mean: f64 = known.iter().map(|(weight, k)| weight * k.rate).sum();
        let margin = match self.total.and_then(|t| t.burst_at(now)) {
            Some(burst) => burst.max(0.0) * mean.max(0.0).sqrt(),
            None => known
                .iter()
                .map(|(weight, k)| (weight * k.burst.max(0.0) * k.rate.max(0.0).sqrt()).powi(2))
                .sum::<f64>()
                .sqrt(),
        };
        mean + self.headroom * margin
    }
}

impl Policy for Prewarm<'_> {
    fn target(&mut self, step: &Step<'_>) -> u32 {
        let levels: Vec<f64> = self.parts.iter().map(|p| self.nowcast(p, step.t)).collect();
        let at = |now: usize, target: usize| -> Option<Vec<(f64, Known)>> {
            self.parts
                .iter()
                .zip(&levels)
                .map(|(p, level)| {
                    p.schedule
                        .smooth_at(now, target)
                        .map(|k| (p.weight, Known { rate: k.rate * level, burst: k.burst }))
                })
                .collect()
        };
        // N(t) is part of ready(t) … ready(t + D) (a cut is immediate, a raise waits D), so it
        // must cover the need of every minute in that window, not only of t + D.
        let mut need = (0..=self.model.delay)
            .filter_map(|k| at(step.t, step.t + k))
            .map(|known| self.band(step.t, &known))
            .fold(f64::NAN, f64::max);
        if need.is_nan() {
            return self.fallback.decide(step);
        }
        // The edge's signal: a part's last minute ran above the band it was given; the plan
        // then covers that part at its observed rate.
        if let Some(prev) = step.t.checked_sub(1)
            && let Some(mut then) = at(step.t, prev)
        {
            let mut signalled = false;
            for (part, (_, known)) in self.parts.iter().zip(then.iter_mut()) {
                let Some(Some(last)) = part.requests.get(prev) else { continue };
                let alone = known.rate + self.headroom * known.burst.max(0.0) * known.rate.max(0.0).sqrt();
                if *last > alone {
                    known.rate = *last;
                    signalled = true;
                }
            }
            if signalled {
                need = need.max(self.band(step.t, &then));
            }
        }
        let floor = self.model.units_for(need);
        if self.recent.len() == self.stabilisation_minutes.max(1) {
            self.recent.pop_front();
        }
        self.recent.push_back(floor);
        self.recent.iter().copied().max().unwrap_or(floor)
    }
}
