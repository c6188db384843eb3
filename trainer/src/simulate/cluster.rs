//! What the cluster delivers: the Kubernetes Horizontal Pod Autoscaler's algorithm with its
//! default behaviour, over the triggers a policy deploys (the environment every policy is
//! replayed in, not a policy of its own).
//!
//! Per metric (Kubernetes' `replica_calculator`): a utilisation trigger sees the last
//! minute's usage averaged over the pods, with pods that are not ready yet counted as idle and
//! the ready ones capped at 100 % (a saturated pod reports 100 %, not the demand it drops),
//! so desired = ⌈usage ÷ target⌉ where usage = min(demand, ready) in pods; an external
//! `AverageValue` trigger with target 1 (prewarm's KEDA scaler, a scheduled or seasonal
//! floor) asks for its value. Either is ignored within the 10 % tolerance. The HPA takes the
//! largest desired count, scale-down follows the highest recommendation of the last 300 s
//! (the stabilisation window), and scale-up is limited by the default policy — 4 pods or
//! 100 % per 15-second period, whichever is more (four periods a minute).

use std::collections::VecDeque;

/// The HPA's defaults (`autoscaling/v2` behaviour and the controller's flags).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Behaviour {
    /// Changes within this ratio of the target are ignored.
    pub tolerance: f64,
    /// Scale-down stabilisation window.
    pub scale_down_window_minutes: usize,
    /// Scale-up policy: at most this many pods per period…
    pub scale_up_pods: u32,
    /// …or this percentage, whichever is more.
    pub scale_up_percent: f64,
    /// Controller syncs per minute.
    pub periods_per_minute: u32,
    /// Never fewer replicas.
    pub min_replicas: u32,
    /// Never more replicas.
    pub max_replicas: u32,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            tolerance: 0.1,
            scale_down_window_minutes: 5,
            scale_up_pods: 4,
            scale_up_percent: 100.0,
            periods_per_minute: 4,
            min_replicas: 1,
            max_replicas: 100_000,
        }
    }
}

/// What one minute's sync sees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metrics<'a> {
    /// The last minute's demand in units of one pod's capacity; `None` when no metric came.
    pub need: Option<f64>,
    /// Utilisation targets of the utilisation triggers (a CPU trigger at 0.7, say).
    pub utilisation: &'a [f64],
    /// Desired replicas of the external triggers; `None` when a trigger's source failed.
    pub units: &'a [Option<u32>],
}

/// One HorizontalPodAutoscaler.
#[derive(Debug, Clone, Default)]
pub struct Hpa {
    /// Its settings.
    pub behaviour: Behaviour,
    recent: VecDeque<u32>,
}

impl Hpa {
    /// An HPA with these settings and no history.
    pub fn new(behaviour: Behaviour) -> Self {
        Self { behaviour, recent: VecDeque::new() }
    }

    /// The replicas after this minute's syncs, from the current (`spec`) and `ready` ones.
    pub fn step(&mut self, spec: u32, ready: u32, metrics: &Metrics<'_>) -> u32 {
        let b = self.behaviour;
        let current = spec.max(1);
        let within = |ratio: f64| (ratio - 1.0).abs() <= b.tolerance;
        let mut desired: Option<u32> = None;
        if let Some(need) = metrics.need {
            let usage = need.max(0.0).min(f64::from(ready));
            for &target in metrics.utilisation {
                let ratio = usage / (f64::from(current) * target);
                let wanted = if within(ratio) { current } else { (usage / target - 1e-9).ceil().max(0.0) as u32 };
                desired = Some(desired.map_or(wanted, |d| d.max(wanted)));
            }
        }
        for units in metrics.units.iter().flatten() {
            let wanted = if within(f64::from(*units) / f64::from(current)) { current } else { *units };
            desired = Some(desired.map_or(wanted, |d| d.max(wanted)));
        }
        // No metric at all: the HPA keeps the replicas it has.
        let desired = desired.unwrap_or(current).clamp(b.min_replicas, b.max_replicas);
        if self.recent.len() >= b.scale_down_window_minutes.max(1) {
            self.recent.pop_front();
        }
        self.recent.push_back(desired);
        let recommendation =
            if desired < current { self.recent.iter().copied().max().unwrap_or(desired) } else { desired };
        if recommendation <= current {
            return recommendation.max(b.min_replicas);
        }
        let mut limit = current;
        for _ in 0..b.periods_per_minute.max(1) {
            let by_percent = (f64::from(limit) * (1.0 + b.scale_up_percent / 100.0)).floor() as u32;
            limit = limit.saturating_add(b.scale_up_pods).max(by_percent);
        }
        recommendation.min(limit).min(b.max_replicas)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hpa() -> Hpa {
        Hpa::new(Behaviour::default())
    }

    #[test]
    fn utilisation_is_capped_at_the_ready_pods() {
        // 10 ready pods, demand worth 40: the pods report 100 %, so the HPA asks for 10 / 0.7.
        let mut h = hpa();
        let n = h.step(10, 10, &Metrics { need: Some(40.0), utilisation: &[0.7], units: &[] });
        assert_eq!(n, 15);
        // Pods still starting count as idle: 15 asked, 10 ready, the same demand: no further rise.
        assert_eq!(h.step(15, 10, &Metrics { need: Some(40.0), utilisation: &[0.7], units: &[] }), 15);
    }

    #[test]
    fn scale_up_follows_the_15_second_policy_and_scale_down_the_window() {
        let mut h = hpa();
        // From 1 pod, four periods of max(+4, ×2): 1 → 5 → 10 → 20 → 40.
        assert_eq!(h.step(1, 1, &Metrics { need: None, utilisation: &[], units: &[Some(100)] }), 40);
        let mut h = hpa();
        for _ in 0..3 {
            assert_eq!(h.step(20, 20, &Metrics { need: None, utilisation: &[], units: &[Some(20)] }), 20);
        }
        // Desired drops to 5, but 20 was recommended within the last 5 minutes (300 s).
        assert_eq!(h.step(20, 20, &Metrics { need: None, utilisation: &[], units: &[Some(5)] }), 20);
        assert_eq!(h.step(20, 20, &Metrics { need: None, utilisation: &[], units: &[Some(5)] }), 20);
        assert_eq!(h.step(20, 20, &Metrics { need: None, utilisation: &[], units: &[Some(5)] }), 20);
        assert_eq!(h.step(20, 20, &Metrics { need: None, utilisation: &[], units: &[Some(5)] }), 20);
        assert_eq!(h.step(20, 20, &Metrics { need: None, utilisation: &[], units: &[Some(5)] }), 5);
    }

    #[test]
    fn the_largest_trigger_wins_and_the_tolerance_holds() {
        let mut h = hpa();
        // CPU wants 15, the external trigger 30: 30.
        assert_eq!(h.step(20, 20, &Metrics { need: Some(10.5), utilisation: &[0.7], units: &[Some(30)] }), 30);
        // 21 against 20 is within 10 %: nothing moves.
        let mut h = hpa();
        assert_eq!(h.step(20, 20, &Metrics { need: None, utilisation: &[], units: &[Some(21)] }), 20);
        // No metric: keep.
        assert_eq!(hpa().step(7, 7, &Metrics { need: None, utilisation: &[0.7], units: &[None] }), 7);
    }
}
