//! The scaling policies a replay compares. Each sets the target for minute t from demand
//! before t only: the loop hands a policy `&demand[..t]`, never more.

use super::capacity::CapacityModel;
use super::hourly::HourlySchedule;
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

/// prewarm's own policy, replayed: the hourly forecast for the minute being provisioned
/// (t + D), corrected by the level the edge's demand counts show against the forecast over the
/// last hour (the nowcast), times the learnt minute burstiness at the chosen quantile. When
/// the last minute ran above that band the worker raises a prewarm signal; the plan then
/// covers the observed rate with the same burstiness margin. Scale-in waits out a short
/// stabilisation window, as the planner's does.
#[derive(Debug)]
pub struct Prewarm<'s> {
    pub schedule: &'s HourlySchedule,
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
    pub fn new(schedule: &'s HourlySchedule, model: CapacityModel, headroom: f64) -> Self {
        Self {
            schedule,
            model,
            headroom,
            nowcast_minutes: 60,
            stabilisation_minutes: 5,
            recent: VecDeque::new(),
            fallback: Hpa::new(0.7, model.unit_rpm),
        }
    }

    /// Observed / forecast over the last `nowcast_minutes` with data, each minute compared with
    /// the forecast that was current then.
    fn nowcast(&self, step: &Step<'_>) -> f64 {
        let from = step.t.saturating_sub(self.nowcast_minutes);
        let (mut observed, mut expected, mut minutes) = (0.0, 0.0, 0);
        for (i, d) in step.past.iter().enumerate().skip(from) {
            let (Some(d), Some(k)) = (d, self.schedule.smooth_at(i, i)) else { continue };
            observed += d;
            expected += k.rate;
            minutes += 1;
        }
        if minutes < self.nowcast_minutes / 2 || expected <= 0.0 { 1.0 } else { (observed / expected).clamp(0.5, 3.0) }
    }
}

impl Policy for Prewarm<'_> {
    fn target(&mut self, step: &Step<'_>) -> u32 {
        let level = self.nowcast(step);
        let band =
            |k: super::hourly::Known| k.rate * level + self.headroom * k.burst.max(0.0) * (k.rate * level).sqrt();
        // N(t) is part of ready(t) … ready(t + D) (a cut is immediate, a raise waits D), so it
        // must cover the need of every minute in that window, not only of t + D.
        let mut need = (0..=self.model.delay)
            .filter_map(|k| self.schedule.smooth_at(step.t, step.t + k))
            .map(band)
            .fold(f64::NAN, f64::max);
        if need.is_nan() {
            return self.fallback.decide(step);
        }
        // The edge's signal: the last minute ran above the band it was given.
        let then = step.t.checked_sub(1).and_then(|prev| self.schedule.smooth_at(step.t, prev));
        if let (Some(Some(last)), Some(then)) = (step.past.last(), then)
            && *last > band(then)
        {
            let observed = super::hourly::Known { rate: *last / level, burst: then.burst };
            need = need.max(band(observed));
        }
        let floor = self.model.units_for(need);
        if self.recent.len() == self.stabilisation_minutes.max(1) {
            self.recent.pop_front();
        }
        self.recent.push_back(floor);
        self.recent.iter().copied().max().unwrap_or(floor)
    }
}
