//! The plan stage: how many instances each region (or pool) needs at each forecast step,
//! from each profile's forecast demand times what its requests cost.
//!
//! Per step: each profile's demand at its priority's level (critical and standard: the
//! calibrated band, the demand a minute stays under with the band's probability; best
//! effort: the expected value), corrected by the nowcast (the edge's recent counts against
//! the forecast, [`nowcast`]) and by the edge's prewarm signals, times the profile's mean cost
//! per request, gives CPU, memory and bandwidth rates; the instance shape turns each into
//! units and the largest wins. Then min/max, a budget cap that serves priorities in order, and
//! stabilised scale-in (no scale-in soon after a scale-out, bounded steps down).
//!
//! What an orchestrator should run *now* is [`desired_units`]: the most any step between now
//! and one lead time ahead needs (capacity takes the lead time to come up, and going down is
//! immediate). Deployed with KEDA it is one trigger beside a utilisation trigger at
//! `floor_utilisation`, the reactive floor: the HPA takes the larger.

pub mod nowcast;

pub use nowcast::Live;

use prewarm_shared::artifact::{PriorityClass, RegionModel};
use prewarm_shared::profile_meta::ResourceCost;
use prewarm_shared::{ProfileId, UnixSeconds};

use serde::{Deserialize, Serialize};

/// What one instance provides.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct InstanceShape {
    /// CPU milliseconds per second (1000 per core).
    pub cpu_ms_per_sec: f64,
    /// Memory, MB.
    pub memory_mb: f64,
    /// Network throughput, bytes per second.
    pub bytes_per_sec: f64,
}

/// Planning parameters for a region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanConfig {
    /// What one unit of capacity provides.
    pub instance: InstanceShape,
    /// Capacity takes this long to become ready: plan this far ahead.
    pub lead_time_secs: u64,
    /// Never fewer units.
    pub min_units: u32,
    /// Never more units.
    pub max_units: u32,
    /// The most units the budget allows; priorities are served in order when it binds.
    pub budget_units: Option<u32>,
    /// No scale-in within this long after a scale-out.
    pub scale_in_cooldown_secs: u64,
    /// At most this many units removed per step.
    pub max_step_down: u32,
    /// A prewarm signal's boost fades over this long.
    pub nowcast_decay_secs: u64,
    /// The reactive floor: the utilisation target of the CPU (or other utilisation) trigger
    /// deployed beside prewarm's (the ScaledObject's second trigger, and what the replay's
    /// `prewarm` row runs). A safety net: the forecast does the work, so it sits above what a
    /// reactive HPA alone would need.
    pub floor_utilisation: f64,
    /// `[[plan.pool]]`: profiles served by separate pools (e.g. a video pool and an API pool,
    /// which the origin's balancer picks by `x-prewarm-profile`), each planned on its own.
    #[serde(rename = "pool")]
    pub pools: Vec<PoolConfig>,
}

/// A pool: the profiles it serves, and where its instances differ from `[plan]`'s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// The pool's name (the KEDA trigger and the plan name it).
    pub name: String,
    /// Profiles whose requests are at least `min_share` of this content class (video, text,
    /// interactive, api, static), from the profile's centroid…
    pub content: Option<String>,
    /// …or whose label contains this. The first pool that matches takes the profile;
    /// profiles no pool takes form the pool `default`.
    pub label: Option<String>,
    /// The content share a profile needs for `content` to match.
    #[serde(default = "default_pool_share")]
    pub min_share: f64,
    /// Its instance shape, if not `[plan]`'s.
    pub instance: Option<InstanceShape>,
    /// Its minimum, if not `[plan]`'s.
    pub min_units: Option<u32>,
    /// Its maximum, if not `[plan]`'s.
    pub max_units: Option<u32>,
    /// Its budget, if not `[plan]`'s.
    pub budget_units: Option<u32>,
}

fn default_pool_share() -> f64 {
    0.5
}

impl PoolConfig {
    /// Whether it serves profile `i` of `model`.
    fn takes(&self, model: &RegionModel, i: usize) -> bool {
        let Some(meta) = model.profiles.get(i) else { return false };
        if let Some(label) = &self.label
            && !meta.label.contains(label.as_str())
        {
            return false;
        }
        if let Some(content) = &self.content {
            let Some(feature) = content_feature(content) else { return false };
            let share = model.raw_centroid(i).map_or(0.0, |raw| f64::from(raw[feature]));
            if share < self.min_share {
                return false;
            }
        }
        self.content.is_some() || self.label.is_some()
    }

    fn plan_config(&self, base: &PlanConfig) -> PlanConfig {
        PlanConfig {
            instance: self.instance.unwrap_or(base.instance),
            min_units: self.min_units.unwrap_or(base.min_units),
            max_units: self.max_units.unwrap_or(base.max_units),
            budget_units: self.budget_units.or(base.budget_units),
            pools: Vec::new(),
            ..base.clone()
        }
    }
}

/// The centroid feature holding a content class's share of requests.
fn content_feature(content: &str) -> Option<usize> {
    use prewarm_shared::features::index;
    match content {
        "video" => Some(index::CONTENT_VIDEO),
        "text" => Some(index::CONTENT_TEXT),
        "interactive" => Some(index::CONTENT_INTERACTIVE),
        "api" => Some(index::CONTENT_API),
        _ => None,
    }
}

/// The floor's default utilisation target: chosen once on the tuning split of nasa95
/// (before 1995-08-01); see docs/replay.md.
pub const DEFAULT_FLOOR_UTILISATION: f64 = 0.85;

impl PlanConfig {
    /// Pools name a content class the centroid holds, or a label; names are unique.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.floor_utilisation > 0.0 && self.floor_utilisation <= 1.0) {
            return Err(format!("[plan] floor_utilisation = {}: in (0, 1]", self.floor_utilisation));
        }
        for (i, pool) in self.pools.iter().enumerate() {
            let n = i + 1;
            if pool.name.is_empty() || pool.name == "default" {
                return Err(format!("pool {n}: a name other than `default` (which holds the profiles no pool takes)"));
            }
            if self.pools[..i].iter().any(|p| p.name == pool.name) {
                return Err(format!("pool {n}: the name `{}` is used twice", pool.name));
            }
            if pool.content.is_none() && pool.label.is_none() {
                return Err(format!("pool `{}` names no content class or label", pool.name));
            }
            if let Some(content) = &pool.content
                && content_feature(content).is_none()
            {
                return Err(format!(
                    "pool `{}`: content `{content}` must be video, text, interactive or api",
                    pool.name
                ));
            }
            if !(pool.min_share > 0.0 && pool.min_share <= 1.0) {
                return Err(format!("pool `{}`: min_share must be in (0, 1]", pool.name));
            }
        }
        Ok(())
    }
}

impl Default for PlanConfig {
    fn default() -> Self {
        Self {
            instance: InstanceShape { cpu_ms_per_sec: 2_000.0, memory_mb: 4_096.0, bytes_per_sec: 125_000_000.0 },
            lead_time_secs: 300,
            min_units: 1,
            max_units: 1_000,
            budget_units: None,
            scale_in_cooldown_secs: 900,
            max_step_down: 2,
            nowcast_decay_secs: 300,
            floor_utilisation: DEFAULT_FLOOR_UTILISATION,
            pools: Vec::new(),
        }
    }
}

/// One planned step.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PlanStep {
    /// When the units must be ready.
    pub at: u64,
    /// Units to have ready at `at`.
    pub units: u32,
    /// Before min/max, budget and stabilisation.
    pub required_units: u32,
    /// Units granted to each priority class, in order critical, standard, best effort.
    pub by_priority: [u32; 3],
    /// The budget cut some lower-priority demand.
    pub budget_bound: bool,
}

/// Whether a priority class is provisioned at the band (else at the expected value).
fn at_band(priority: PriorityClass) -> bool {
    matches!(priority, PriorityClass::Critical | PriorityClass::Standard)
}

fn priority_index(p: PriorityClass) -> usize {
    match p {
        PriorityClass::Critical => 0,
        PriorityClass::Standard => 1,
        PriorityClass::BestEffort => 2,
    }
}

/// Plans every forecast step of a region from the one holding `now` on.
pub fn plan(model: &RegionModel, config: &PlanConfig, now: UnixSeconds, live: &Live) -> Vec<PlanStep> {
    let table = &model.forecast;
    let step = u64::from(table.step_secs.max(1));
    let step_minutes = step as f64 / 60.0;
    let slots = table.series.first().map_or(0, |s| s.expected.len());
    let first = table.slot(now).unwrap_or(if now.0 < table.start.0 { 0 } else { slots });
    let shape = config.instance;
    let region_live = live.for_region(&model.region, table, now, config.nowcast_decay_secs);
    let mut out: Vec<PlanStep> = Vec::with_capacity(slots.saturating_sub(first));
    let mut last_scale_out: Option<u64> = None;
    for slot in first..slots {
        let at = table.start.0 + slot as u64 * step;
        let ahead = at.saturating_sub(now.0);
        let mut by_priority = [0.0f64; 3];
        for (profile, series) in model.profiles.iter().filter_map(|p| Some((p, table.of(p.id)?))) {
            let (expected, upper) = (f64::from(series.expected[slot]), f64::from(series.upper[slot]));
            let demand =
                region_live.demand(profile.id, expected, upper, at_band(profile.priority), ahead, at, step_minutes);
            let per_sec = demand / step as f64;
            by_priority[priority_index(profile.priority)] += per_sec * units_per_request(&profile.cost, &shape);
        }
        let wanted = by_priority.map(|u| u.ceil() as u32);
        let required = by_priority.iter().sum::<f64>().ceil() as u32;
        let (mut units, mut budget_bound) = (required.clamp(config.min_units, config.max_units), false);
        if let Some(budget) = config.budget_units
            && units > budget
        {
            budget_bound = true;
            units = budget;
        }
        // Serve critical, then standard, then best effort, within the units granted.
        let mut left = units;
        let served = wanted.map(|w| {
            let s = w.min(left);
            left -= s;
            s
        });
        if let Some(previous) = out.last() {
            if units > previous.units {
                last_scale_out = Some(at);
            } else if units < previous.units {
                let cooling = last_scale_out.is_some_and(|t| at - t < config.scale_in_cooldown_secs);
                units = if cooling {
                    previous.units
                } else {
                    units.max(previous.units.saturating_sub(config.max_step_down))
                };
            }
        }
        out.push(PlanStep { at, units, required_units: required, by_priority: served, budget_bound });
    }
    out
}

/// Units one request a second of a profile takes: its CPU, memory and bandwidth against the
/// instance's, the largest (the resource that runs out first).
pub fn units_per_request(cost: &ResourceCost, shape: &InstanceShape) -> f64 {
    let cpu = f64::from(cost.cpu_ms.mean) / shape.cpu_ms_per_sec;
    let memory = f64::from(cost.memory_mb_s.mean) / shape.memory_mb;
    let bandwidth = f64::from(cost.bytes.mean) / shape.bytes_per_sec;
    cpu.max(memory).max(bandwidth)
}

/// Requests of a profile one instance serves a minute; `None` for a profile that costs nothing.
pub fn requests_per_unit_minute(cost: &ResourceCost, shape: &InstanceShape) -> Option<f64> {
    let units = units_per_request(cost, shape);
    (units.is_finite() && units > 0.0).then(|| 60.0 / units)
}

/// The units to run now: the most any step from `now` to `now + lead` needs (raised capacity
/// takes the lead time to be ready; lowered capacity is gone at once). `None` when the plan
/// does not reach `now`.
pub fn desired_units(steps: &[PlanStep], now: UnixSeconds, lead_secs: u64, step_secs: u64) -> Option<u32> {
    let horizon = now.0 + lead_secs;
    steps.iter().filter(|s| s.at + step_secs > now.0 && s.at <= horizon).map(|s| s.units).max()
}

/// Units to keep warm as node capacity (balloon pods): what the plan needs within a node's
/// provisioning time `node_lead_secs` beyond what the workload is scaled to now (the plan within
/// the pod lead time), never below 0. Nodes take longer to come up than pods, so the cluster
/// must hold room for the pods the plan will ask for next.
pub fn node_headroom(
    steps: &[PlanStep],
    now: UnixSeconds,
    pod_lead_secs: u64,
    node_lead_secs: u64,
    step_secs: u64,
) -> Option<u32> {
    let ahead = desired_units(steps, now, node_lead_secs.max(pod_lead_secs), step_secs)?;
    let scaled_to = desired_units(steps, now, pod_lead_secs, step_secs)?;
    Some(ahead.saturating_sub(scaled_to))
}

/// One region × pool's plan, with the profiles the pool serves.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolPlan {
    /// The region planned.
    pub region: String,
    /// The pool planned.
    pub pool: String,
    /// The profiles the pool serves.
    pub profiles: Vec<ProfileId>,
    /// Units per step.
    pub steps: Vec<PlanStep>,
}

/// Which pool serves each profile of `model`: (pool name, profile ids), `default` last.
pub fn pools_of(model: &RegionModel, pools: &[PoolConfig]) -> Vec<(String, Vec<ProfileId>)> {
    let mut out: Vec<(String, Vec<ProfileId>)> = pools.iter().map(|p| (p.name.clone(), Vec::new())).collect();
    let mut rest = Vec::new();
    for (i, meta) in model.profiles.iter().enumerate() {
        match pools.iter().position(|p| p.takes(model, i)) {
            Some(k) => out[k].1.push(meta.id),
            None => rest.push(meta.id),
        }
    }
    if !rest.is_empty() {
        out.push(("default".to_owned(), rest));
    }
    out
}

/// With `[[plan.pool]]`: a plan per region × pool, each over its pool's profiles with its own
/// instance shape and bounds.
pub fn plan_pools(models: &[RegionModel], config: &PlanConfig, now: UnixSeconds, live: &Live) -> Vec<PoolPlan> {
    if config.pools.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for model in models {
        for (pool, ids) in pools_of(model, &config.pools) {
            let mut part = model.clone();
            part.profiles.retain(|p| ids.contains(&p.id));
            let pool_config = config
                .pools
                .iter()
                .find(|p| p.name == pool)
                .map_or_else(|| PlanConfig { pools: Vec::new(), ..config.clone() }, |p| p.plan_config(config));
            let steps = plan(&part, &pool_config, now, live);
            out.push(PoolPlan { region: model.region.clone(), pool, profiles: ids, steps });
        }
    }
    out
}

/// Plans for every region of the published model, with the edge's recent counts and signals.
pub fn plan_regions(
    models: &[RegionModel],
    config: &PlanConfig,
    now: UnixSeconds,
    live: &Live,
) -> Vec<(String, Vec<PlanStep>)> {
    models.iter().map(|m| (m.region.clone(), plan(m, config, now, live))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prewarm_shared::artifact::{ForecastTable, ProfileForecast};
    use prewarm_shared::fixtures;

    /// The fixture region with a forecast that is flat, then triples from slot `rise`.
    fn model(rise: usize) -> RegionModel {
        let mut m = fixtures::region_model("eu");
        m.forecast = ForecastTable {
            start: UnixSeconds(0),
            step_secs: 300,
            upper_quantile: 0.9,
            series: m
                .profiles
                .iter()
                .map(|p| {
                    let expected: Vec<f32> = (0..48).map(|s| if s >= rise { 300_000.0 } else { 100_000.0 }).collect();
                    let upper = expected.iter().map(|e| e * 1.2).collect();
                    let alarm = expected.iter().map(|e| e * 1.5).collect();
                    ProfileForecast { profile: p.id, upper, alarm, expected }
                })
                .collect(),
        };
        m
    }

    fn quiet() -> Live {
        Live::default()
    }

    #[test]
    fn node_headroom_is_what_the_plan_needs_within_a_node_lead_beyond_what_runs_now() {
        let step = |at: u64, units: u32| PlanStep {
            at,
            units,
            required_units: units,
            by_priority: [0, units, 0],
            budget_bound: false,
        };
        // 5-minute steps: 4 units now and next, a rise to 9 in 10 minutes, 6 after.
        let steps = [step(0, 4), step(300, 4), step(600, 9), step(900, 6)];
        let now = UnixSeconds(10);
        // Pods take 5 minutes: the workload runs 4; nodes take 10: room for 9 is wanted, 5 more.
        assert_eq!(node_headroom(&steps, now, 300, 600, 300), Some(5));
        // Once the rise is within the pod lead, the workload itself asks for it: no balloons.
        assert_eq!(node_headroom(&steps, UnixSeconds(310), 300, 600, 300), Some(0));
        // A falling plan needs no headroom (never negative), and a node lead shorter than the
        // pod lead is the pod lead.
        assert_eq!(node_headroom(&steps, UnixSeconds(610), 300, 900, 300), Some(0));
        assert_eq!(node_headroom(&steps, now, 300, 60, 300), Some(0));
        assert_eq!(node_headroom(&steps, UnixSeconds(5_000), 300, 600, 300), None, "past the plan's end");
    }

    #[test]
    fn what_runs_now_covers_every_step_up_to_one_lead_time_ahead() {
        let config = PlanConfig { min_units: 1, max_units: 10_000, ..PlanConfig::default() };
        let steps = plan(&model(20), &config, UnixSeconds(0), &quiet());
        // The plan starts at the step holding now.
        assert_eq!(steps[0].at, 0);
        let before = steps.iter().find(|s| s.at == 19 * 300).expect("step before").units;
        let at_rise = steps.iter().find(|s| s.at == 20 * 300).expect("rise step").units;
        assert!(at_rise >= 2 * before, "{before} → {at_rise}");
        // Five minutes before the rise with a 5-minute lead, the rise's units are wanted now.
        let now = UnixSeconds(19 * 300);
        let steps = plan(&model(20), &config, now, &quiet());
        assert_eq!(desired_units(&steps, now, 300, 300), Some(at_rise));
        assert_eq!(desired_units(&steps, UnixSeconds(19 * 300 - 301), 300, 300), None, "before the plan's first step");
        let earlier = plan(&model(20), &config, UnixSeconds(17 * 300), &quiet());
        assert_eq!(desired_units(&earlier, UnixSeconds(17 * 300), 300, 300), Some(before));
    }

    #[test]
    fn best_effort_is_provisioned_at_its_expected_value_the_rest_at_the_band() {
        let mut m = model(0);
        let config = PlanConfig { min_units: 0, max_units: 100_000, ..PlanConfig::default() };
        for p in &mut m.profiles {
            p.priority = PriorityClass::BestEffort;
        }
        let expected = plan(&m, &config, UnixSeconds(0), &quiet())[0].required_units;
        for p in &mut m.profiles {
            p.priority = PriorityClass::Standard;
        }
        let band = plan(&m, &config, UnixSeconds(0), &quiet())[0].required_units;
        assert!(f64::from(band) > f64::from(expected) * 1.15, "{band} vs {expected}");
    }

    #[test]
    fn min_max_and_the_budget_are_honoured() {
        let config = PlanConfig { min_units: 3, max_units: 5, ..PlanConfig::default() };
        assert!(plan(&model(20), &config, UnixSeconds(0), &quiet()).iter().all(|s| (3..=5).contains(&s.units)));
        let free = plan(&model(0), &PlanConfig::default(), UnixSeconds(0), &quiet());
        let budget = free[0].units / 2;
        let capped = PlanConfig { budget_units: Some(budget), ..PlanConfig::default() };
        let p = plan(&model(0), &capped, UnixSeconds(0), &quiet());
        assert!(p.iter().all(|s| s.units <= budget && s.budget_bound));
        // Critical demand is served first: it gets all it asked for, best effort gets the rest.
        let critical_alone = free[0].by_priority[0];
        assert!(critical_alone > 0 && critical_alone <= budget);
        assert_eq!(p[0].by_priority[0], critical_alone);
        assert!(p[0].by_priority[2] < free[0].by_priority[2]);
    }

    #[test]
    fn scale_in_waits_for_the_cooldown_and_steps_down_gently() {
        let mut m = model(0);
        for s in &mut m.forecast.series {
            for slot in 10..48 {
                s.expected[slot] = 1_000.0;
                s.upper[slot] = 1_200.0;
            }
        }
        let config = PlanConfig { scale_in_cooldown_secs: 0, max_step_down: 1, ..PlanConfig::default() };
        let p = plan(&m, &config, UnixSeconds(0), &quiet());
        for pair in p.windows(2) {
            assert!(pair[0].units <= pair[1].units + 1, "dropped more than one unit per step");
        }
        let mut rising = model(5);
        for s in &mut rising.forecast.series {
            for slot in 6..48 {
                s.expected[slot] = 1_000.0;
                s.upper[slot] = 1_200.0;
            }
        }
        let cooling = PlanConfig { scale_in_cooldown_secs: 3_600, ..PlanConfig::default() };
        let p = plan(&rising, &cooling, UnixSeconds(0), &quiet());
        let peak = p.iter().map(|s| s.units).max().expect("peak");
        let peak_at = p.iter().find(|s| s.units == peak).expect("peak step").at;
        assert!(p.iter().filter(|s| s.at > peak_at && s.at < peak_at + 3_600).all(|s| s.units == peak));
    }

    #[test]
    fn a_prewarm_signal_raises_the_plan_and_fades() {
        let m = model(100);
        let config = PlanConfig { scale_in_cooldown_secs: 0, max_step_down: 1_000, ..PlanConfig::default() };
        let quiet = plan(&m, &config, UnixSeconds(0), &quiet());
        let video = m.profiles[0].id;
        let surge = Live { counts: Vec::new(), signals: vec![("eu".into(), video.0, 0, 400_000.0)] };
        let raised = plan(&m, &config, UnixSeconds(0), &surge);
        assert!(raised[0].units > quiet[0].units);
        assert_eq!(raised.last().map(|s| s.units), quiet.last().map(|s| s.units), "the boost fades");
    }
}
