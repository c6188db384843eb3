//! The event store, replayed per region × profile without hindsight: profiles are trained on
//! the events before each retraining instant only (ids kept stable from one training to the
//! next, as in production), and every request is assigned as the edge would have assigned it
//! then — the region's default profile until the user has `min_requests`, then the nearest
//! centroid with hysteresis, through `shared::assign` on the user's replayed state. Demand is
//! what the requests themselves cost (measured where events carry it, else the configured
//! proxies), in the resource a unit of capacity serves.

use std::collections::BTreeMap;

use prewarm_shared::artifact::{CostFigure, CostSource, ModelVersion, RegionModel, ResourceCost};
use prewarm_shared::assign::assign_profile;
use prewarm_shared::classify::ClassificationRules;
use prewarm_shared::features::{Observation, UnixSeconds, local_time};
use prewarm_shared::state::BehaviourState;

use super::pipeline::{self, RegionInput, Stages, Timeline};
use super::{PolicyKind, RegionsReport};
use super::{SimulateError, SimulationConfig, Trace};
use crate::config::{CostConfig, TrainerConfig};
use crate::forecast::calendar::Calendar;
use crate::forecast::ledger::Ledger;
use crate::ingest::event::Event;
use crate::train::{self, CapacityUnit, Observed};

/// The resource a unit of capacity serves in a store replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// CPU milliseconds.
    Cpu,
    /// Memory MB·s.
    Memory,
    /// Response bytes.
    Bytes,
    /// Every request weighs 1.
    Requests,
}

impl Resource {
    /// The resource's unit, for reports.
    pub fn unit(self) -> &'static str {
        match self {
            Resource::Cpu => "CPU ms",
            Resource::Memory => "MB·s",
            Resource::Bytes => "bytes",
            Resource::Requests => "requests",
        }
    }

    /// What one request consumes: measured where the event carries it, else the proxies, else
    /// the declared defaults (as the profile's cost figures are made).
    pub fn of_event(self, e: &Event, proxy: &CostConfig) -> f64 {
        match self {
            Resource::Cpu => f64::from(proxy.cpu_ms(e).0),
            Resource::Memory => f64::from(proxy.memory_mb_s(e).0),
            Resource::Bytes => e.bytes as f64,
            Resource::Requests => 1.0,
        }
    }

    /// One request's mean cost in this resource.
    pub fn cost_of(self) -> fn(&ResourceCost) -> f64 {
        match self {
            Resource::Cpu => |c| f64::from(c.cpu_ms.mean),
            Resource::Memory => |c| f64::from(c.memory_mb_s.mean),
            Resource::Bytes => |c| f64::from(c.bytes.mean),
            Resource::Requests => |_| 1.0,
        }
    }

    /// A profile's cost figure for this resource.
    fn figure(self, cost: &prewarm_shared::artifact::ResourceCost) -> CostFigure {
        match self {
            Resource::Cpu => cost.cpu_ms,
            Resource::Memory => cost.memory_mb_s,
            Resource::Bytes => cost.bytes,
            Resource::Requests => CostFigure { mean: 1.0, median: 1.0, p90: 1.0, source: CostSource::Measured },
        }
    }
}

/// The plan sizes capacity in the replay's resource: each profile's cost of it goes in the
/// CPU dimension (the replay's instance serves C of it a minute; the others are unbounded).
pub fn for_planning(mut model: RegionModel, resource: Resource) -> RegionModel {
    for p in &mut model.profiles {
        p.cost.cpu_ms = resource.figure(&p.cost);
    }
    model
}

/// The training stages on the store's events before each instant.
#[derive(Debug)]
pub struct StoreStages<'a> {
    /// Ordered by user, then time (as the profile stage reads them).
    pub events: &'a [Event],
    /// The trainer's configuration.
    pub config: &'a TrainerConfig,
    /// How requests are classified.
    pub rules: &'a ClassificationRules,
    /// Scheduled events.
    pub calendar: Calendar,
    /// What capacity serves.
    pub resource: Resource,
    /// Past forecasts, for skill and bands.
    pub ledger: Ledger,
    /// Per region, the replay's unit of capacity (C of `resource` a minute): the band's choice
    /// replays capacity in the same unit as the replay scores it.
    pub units: BTreeMap<String, CapacityUnit>,
    previous: Vec<RegionModel>,
    version: u32,
}

impl<'a> StoreStages<'a> {
    /// Stages over `events`, with a fresh ledger and the replay's unit of capacity per region.
    pub fn new(
        events: &'a [Event],
        config: &'a TrainerConfig,
        rules: &'a ClassificationRules,
        calendar: Calendar,
        resource: Resource,
        units: BTreeMap<String, CapacityUnit>,
    ) -> Self {
        Self {
            events,
            config,
            rules,
            calendar,
            resource,
            ledger: Ledger::default(),
            units,
            previous: Vec::new(),
            version: 0,
        }
    }
}

impl Stages for StoreStages<'_> {
    fn train(&mut self, at: u64) -> Result<Vec<RegionModel>, SimulateError> {
        let before: Vec<Event> = self.events.iter().filter(|e| e.time < at).cloned().collect();
        if before.is_empty() {
            return Ok(Vec::new());
        }
        self.version += 1;
        let observed = Observed {
            edge_counts: BTreeMap::new(),
            calendar: self.calendar.clone(),
            feeds: Vec::new(),
            capacity_units: self.units.clone(),
        };
        let trained = train::train_events(
            &crate::store::InMemory(&before),
            &observed,
            self.config,
            self.rules,
            &self.previous,
            ModelVersion(self.version),
            UnixSeconds(at),
            &mut self.ledger,
        )
        .map_err(|e| SimulateError::Training { at, message: e.to_string() })?;
        self.previous = trained.iter().map(|t| t.model.clone()).collect();
        Ok(trained.into_iter().map(|t| for_planning(t.model, self.resource)).collect())
    }
}

/// Each region's demand in `resource` per minute and what the edge would have counted per
/// profile, assigning every request with the model it held at the time. `events` are ordered
/// by user, then time; minutes run from `start` for `minutes`.
pub fn regions(
    events: &[Event],
    timeline: &Timeline,
    resource: Resource,
    config: &TrainerConfig,
    start: u64,
    minutes: usize,
) -> Vec<RegionInput> {
    let mut demand: BTreeMap<String, Vec<Option<f64>>> = BTreeMap::new();
    let mut live: BTreeMap<String, BTreeMap<u16, Vec<f64>>> = BTreeMap::new();
    let minute_of = |t: u64| ((t.saturating_sub(start)) / 60) as usize;
    let mut i = 0;
    while i < events.len() {
        let user = events[i].user;
        let end = i + events[i..].iter().take_while(|e| e.user == user).count();
        let mut state = BehaviourState::new(UnixSeconds(events[i].time));
        for e in &events[i..end] {
            let m = minute_of(e.time);
            if m >= minutes {
                continue;
            }
            let slot = demand.entry(e.region.clone()).or_insert_with(|| vec![Some(0.0); minutes]);
            slot[m] = Some(slot[m].unwrap_or(0.0) + resource.of_event(e, &config.costs));
            let at = UnixSeconds(e.time);
            let offset = e.utc_offset_minutes.unwrap_or_else(|| config.utc_offset_of(&e.region));
            let (local_hour, local_weekday) = local_time(at, offset);
            let observation = Observation {
                at,
                local_hour,
                local_weekday,
                device: e.device,
                class: e.class,
                rtt_ms: e.rtt_ms,
                response_bytes: e.bytes,
                response_ms: e.duration_ms.round() as u32,
            };
            state.observe_request(&observation);
            if let Some(model) = timeline.model_at(&e.region, e.time) {
                let profile = assign_profile(model, &state, &state.features());
                state.profile = Some(profile);
                let counts =
                    live.entry(e.region.clone()).or_default().entry(profile.0).or_insert_with(|| vec![0.0; minutes]);
                counts[m] += 1.0;
            }
            state.observe_response(e.class.content, e.bytes, observation.response_ms);
        }
        i = end;
    }
    demand
        .into_iter()
        .map(|(name, demand)| {
            let live = live.remove(&name).unwrap_or_default();
            RegionInput { trace: Trace { start, demand }, live, name }
        })
        .collect()
}

/// Sorts events by user, then time (as the profile stage reads them), and gives the first
/// minute (Unix seconds) and the number of minutes they span.
fn sorted_span(events: &mut [Event]) -> Option<(u64, usize)> {
    events.sort_by(|a, b| a.user.cmp(&b.user).then(a.time.cmp(&b.time)));
    let first = events.iter().map(|e| e.time).min()?;
    let last = events.iter().map(|e| e.time).max()?;
    let start = first / 60 * 60;
    Some((start, ((last - start) / 60 + 1) as usize))
}

/// Each region's demand in `resource` per minute as one series, for the same pipeline to
/// forecast without profiles (`prewarm simulate --store --aggregate`): the comparison that
/// says whether profiles pay on a store. The minutes are those [`replay_store`] scores.
pub fn aggregate_traces(mut events: Vec<Event>, resource: Resource, config: &TrainerConfig) -> Vec<(String, Trace)> {
    let Some((start, minutes)) = sorted_span(&mut events) else {
        return Vec::new();
    };
    demand_traces(&events, resource, config, start, minutes)
}

/// Each region's demand in `resource` per minute, from `events` ordered by user, then time.
fn demand_traces(
    events: &[Event],
    resource: Resource,
    config: &TrainerConfig,
    start: u64,
    minutes: usize,
) -> Vec<(String, Trace)> {
    let none = Timeline { trainings: Vec::new() };
    regions(events, &none, resource, config, start, minutes).into_iter().map(|r| (r.name, r.trace)).collect()
}

/// The whole replay of the store: trainings on the events before each instant, the edge's
/// assignment and signals, every policy in every region.
pub fn replay_store(
    mut events: Vec<Event>,
    config: &SimulationConfig,
    rules: &ClassificationRules,
    resource: Resource,
    knobs_of: &dyn Fn(PolicyKind) -> Vec<Option<f64>>,
) -> Result<RegionsReport, SimulateError> {
    let started = std::time::Instant::now();
    let (start, minutes) = sorted_span(&mut events).ok_or(SimulateError::NoRegions)?;
    let mut whole: Option<RegionsReport> = None;
    // Each region's C, from its demand (or the configured one), as the replay will score it.
    let units: BTreeMap<String, CapacityUnit> = demand_traces(&events, resource, &config.trainer, start, minutes)
        .into_iter()
        .filter_map(|(name, trace)| {
            let per_minute = config.unit_for(&trace).ok()?;
            Some((name, CapacityUnit { per_minute, cost_of: resource.cost_of() }))
        })
        .collect();
    // Each delay is its own deployment: the trainer's lead time is the delay.
    for &delay in &config.delays {
        let config = &config.at_delay(delay);
        let calendar = Calendar { events: config.calendar.clone() };
        let mut stages = StoreStages::new(&events, &config.trainer, rules, calendar, resource, units.clone());
        let timeline = pipeline::timeline_for(&mut stages, start, minutes, config)?;
        let regions = regions(&events, &timeline, resource, &config.trainer, start, minutes);
        let replayed = pipeline::with_signals(&regions, timeline, start, minutes, config);
        let one = pipeline::replay(&regions, &replayed, config, knobs_of, started)?;
        match &mut whole {
            Some(w) => w.absorb(one),
            None => whole = Some(one),
        }
    }
    whole.ok_or(SimulateError::NoRegions)
}
