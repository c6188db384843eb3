//! The pre-provisioning plan: how many instances each region needs, one provisioning delay
//! ahead, from each profile's forecast demand times what its requests cost.
//!
//! Per step t: demand(t + lead) per profile, at a quantile that depends on the profile's
//! priority (critical: the upper band; standard: halfway to it; best effort: the expected
//! value), times the profile's cost per request, gives CPU, memory and bandwidth rates; the
//! instance shape turns each into units and the largest wins. Then min/max, a budget cap that
//! serves priorities in order, a nowcast boost from the edge's prewarm signals, and stabilised
//! scale-in (no scale-in soon after a scale-out, bounded steps down).

use prewarm_shared::artifact::{PriorityClass, RegionModel};
use prewarm_shared::{ProfileId, UnixSeconds};
use serde::{Deserialize, Serialize};

/// What one instance provides.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct InstanceShape {
    /// CPU milliseconds per second (1000 per core).
    pub cpu_ms_per_sec: f64,
    pub memory_mb: f64,
    pub bytes_per_sec: f64,
}

/// Planning parameters for a region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanConfig {
    pub instance: InstanceShape,
    /// Capacity takes this long to become ready: plan this far ahead.
    pub lead_time_secs: u64,
    pub min_units: u32,
    pub max_units: u32,
    /// The most units the budget allows; priorities are served in order when it binds.
    pub budget_units: Option<u32>,
    /// No scale-in within this long after a scale-out.
    pub scale_in_cooldown_secs: u64,
    /// At most this many units removed per step.
    pub max_step_down: u32,
    /// A prewarm signal's boost fades over this long.
    pub nowcast_decay_secs: u64,
    /// `[[plan.pool]]`: profiles served by separate pools (e.g. a video pool and an API pool,
    /// which the origin's balancer picks by `x-prewarm-profile`), each planned on its own.
    #[serde(rename = "pool")]
    pub pools: Vec<PoolConfig>,
}

/// A pool: the profiles it serves, and where its instances differ from `[plan]`'s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    pub name: String,
    /// Profiles whose requests are at least `min_share` of this content class (video, text,
    /// interactive, api, static), from the profile's centroid…
    pub content: Option<String>,
    /// …or whose label contains this. The first pool that matches takes the profile;
    /// profiles no pool takes form the pool `default`.
    pub label: Option<String>,
    #[serde(default = "default_pool_share")]
    pub min_share: f64,
    pub instance: Option<InstanceShape>,
    pub min_units: Option<u32>,
    pub max_units: Option<u32>,
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
            let share = crate::publish::diff::raw_centroid(model, i).map_or(0.0, |raw| f64::from(raw[feature]));
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

impl PlanConfig {
    /// Pools name a content class the centroid holds, or a label; names are unique.
    pub fn validate(&self) -> Result<(), String> {
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
            nowcast_decay_secs: 1_800,
            pools: Vec::new(),
        }
    }
}

/// A recent prewarm signal: demand the edge observed above the forecast for a profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Nowcast {
    pub profile: ProfileId,
    /// Observed requests per forecast step (region-wide, as the edge extrapolated it).
    pub observed: f32,
    pub at: UnixSeconds,
}

/// One planned step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanStep {
    /// When the units must be ready.
    pub at: u64,
    pub units: u32,
    /// Before min/max, budget and stabilisation.
    pub required_units: u32,
    /// Units granted to each priority class, in order critical, standard, best effort.
    pub by_priority: [u32; 3],
    /// The budget cut some lower-priority demand.
    pub budget_bound: bool,
}

fn quantile_demand(expected: f32, upper: f32, priority: PriorityClass) -> f64 {
    let (e, u) = (f64::from(expected), f64::from(upper.max(expected)));
    match priority {
        PriorityClass::Critical => u,
        PriorityClass::Standard => (e + u) / 2.0,
        PriorityClass::BestEffort => e,
    }
}

fn priority_index(p: PriorityClass) -> usize {
    match p {
        PriorityClass::Critical => 0,
        PriorityClass::Standard => 1,
        PriorityClass::BestEffort => 2,
    }
}

/// Plans every forecast step of a region from `now` on (the step for time t is ready at t, so
/// it is decided from the forecast at t: the lead time shifts the decision, not the demand).
pub fn plan(model: &RegionModel, config: &PlanConfig, now: UnixSeconds, nowcasts: &[Nowcast]) -> Vec<PlanStep> {
    let table = &model.forecast;
    let step = u64::from(table.step_secs.max(1));
    let slots = table.series.first().map_or(0, |s| s.expected.len());
    let first = table.slot(UnixSeconds(now.0 + config.lead_time_secs)).unwrap_or(slots);
    let shape = config.instance;
    let mut out: Vec<PlanStep> = Vec::with_capacity(slots.saturating_sub(first));
    let mut last_scale_out: Option<u64> = None;
    for slot in first..slots {
        let at = table.start.0 + slot as u64 * step;
        let mut by_priority = [0.0f64; 3];
        for (profile, series) in
            model.profiles.iter().filter_map(|p| Some((p, table.series.iter().find(|s| s.profile == p.id)?)))
        {
            let mut demand = quantile_demand(series.expected[slot], series.upper[slot], profile.priority);
            // The observed level holds for a while and fades: the forecast may know nothing of it.
            for n in nowcasts.iter().filter(|n| n.profile == profile.id && n.at.0 <= at) {
                let fade = 1.0 - (at - n.at.0) as f64 / config.nowcast_decay_secs.max(1) as f64;
                if fade > 0.0 {
                    demand = demand.max(f64::from(n.observed) * fade);
                }
            }
            let per_sec = demand / step as f64;
            let cost = &profile.cost;
            let cpu = per_sec * f64::from(cost.cpu_ms.p90) / shape.cpu_ms_per_sec;
            let memory = per_sec * f64::from(cost.memory_mb_s.p90) / shape.memory_mb;
            let bandwidth = per_sec * f64::from(cost.bytes.p90) / shape.bytes_per_sec;
            by_priority[priority_index(profile.priority)] += cpu.max(memory).max(bandwidth);
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

/// One region × pool's plan, with the profiles the pool serves.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolPlan {
    pub region: String,
    pub pool: String,
    pub profiles: Vec<ProfileId>,
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
pub fn plan_pools(
    models: &[RegionModel],
    config: &PlanConfig,
    now: UnixSeconds,
    signals: &[(String, u16, u64, f32)],
) -> Vec<PoolPlan> {
    if config.pools.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for model in models {
        let nowcasts = nowcasts_of(&model.region, signals);
        for (pool, ids) in pools_of(model, &config.pools) {
            let mut part = model.clone();
            part.profiles.retain(|p| ids.contains(&p.id));
            let pool_config = config
                .pools
                .iter()
                .find(|p| p.name == pool)
                .map_or_else(|| PlanConfig { pools: Vec::new(), ..config.clone() }, |p| p.plan_config(config));
            let steps = plan(&part, &pool_config, now, &nowcasts);
            out.push(PoolPlan { region: model.region.clone(), pool, profiles: ids, steps });
        }
    }
    out
}

fn nowcasts_of(region: &str, signals: &[(String, u16, u64, f32)]) -> Vec<Nowcast> {
    signals
        .iter()
        .filter(|(r, ..)| r == region)
        .map(|(_, profile, at, observed)| Nowcast {
            profile: ProfileId(*profile),
            observed: *observed,
            at: UnixSeconds(*at),
        })
        .collect()
}

/// Plans for every region of the published model, boosted by the edge's recent prewarm signals.
pub fn plan_regions(
    models: &[RegionModel],
    config: &PlanConfig,
    now: UnixSeconds,
    signals: &[(String, u16, u64, f32)],
) -> Vec<(String, Vec<PlanStep>)> {
    models.iter().map(|m| (m.region.clone(), plan(m, config, now, &nowcasts_of(&m.region, signals)))).collect()
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
                    ProfileForecast { profile: p.id, upper: expected.iter().map(|e| e * 1.2).collect(), expected }
                })
                .collect(),
        };
        m
    }

    #[test]
    fn capacity_is_ready_one_lead_time_ahead_of_a_rise() {
        let config = PlanConfig { min_units: 1, max_units: 10_000, ..PlanConfig::default() };
        let plan = plan(&model(20), &config, UnixSeconds(0), &[]);
        // The first planned step is the one ready at now + lead time.
        assert_eq!(plan[0].at, 300);
        let before = plan.iter().find(|s| s.at == 19 * 300).expect("step before").units;
        let at_rise = plan.iter().find(|s| s.at == 20 * 300).expect("rise step").units;
        assert!(at_rise >= 2 * before, "{before} → {at_rise}");
    }

    #[test]
    fn min_max_and_the_budget_are_honoured() {
        let config = PlanConfig { min_units: 3, max_units: 5, ..PlanConfig::default() };
        assert!(plan(&model(20), &config, UnixSeconds(0), &[]).iter().all(|s| (3..=5).contains(&s.units)));
        let free = plan(&model(0), &PlanConfig::default(), UnixSeconds(0), &[]);
        let budget = free[0].units / 2;
        let capped = PlanConfig { budget_units: Some(budget), ..PlanConfig::default() };
        let p = plan(&model(0), &capped, UnixSeconds(0), &[]);
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
        let p = plan(&m, &config, UnixSeconds(0), &[]);
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
        let p = plan(&rising, &cooling, UnixSeconds(0), &[]);
        let peak = p.iter().map(|s| s.units).max().expect("peak");
        let peak_at = p.iter().find(|s| s.units == peak).expect("peak step").at;
        assert!(p.iter().filter(|s| s.at > peak_at && s.at < peak_at + 3_600).all(|s| s.units == peak));
    }

    #[test]
    fn a_prewarm_signal_raises_the_plan_and_fades() {
        let m = model(100);
        let config = PlanConfig { scale_in_cooldown_secs: 0, max_step_down: 1_000, ..PlanConfig::default() };
        let quiet = plan(&m, &config, UnixSeconds(0), &[]);
        let video = m.profiles[0].id;
        let surge = [Nowcast { profile: video, observed: 400_000.0, at: UnixSeconds(0) }];
        let raised = plan(&m, &config, UnixSeconds(0), &surge);
        assert!(raised[0].units > quiet[0].units);
        assert_eq!(raised.last().map(|s| s.units), quiet.last().map(|s| s.units), "the boost fades");
    }
}
