//! The replay's time line: the product's training stages at every `train_interval_secs` on
//! the data before that instant, the plan stage every minute on the latest model with what the
//! edge reported until then, and every policy's triggers through the same HPA.

use std::collections::BTreeMap;

use prewarm_shared::artifact::{
    AssignmentParams, CostFigure, CostSource, ForecastTable, ModelVersion, Normalisation, PriorityClass, ProfileMeta,
    ProfileRole, RegionModel, ResourceCost,
};
use prewarm_shared::classify::ClassificationRules;
use prewarm_shared::features::{FEATURE_DIM, FeatureSchema};
use prewarm_shared::{ProfileId, UnixSeconds};

use super::baselines::{self, HourlySchedule};
use super::capacity::{self, CapacityModel, Outcome};
use super::cluster::{Behaviour, Hpa, Metrics};
use super::edge::{self, Signal};
use super::{PolicyKind, Report, SimulateError, SimulationConfig, Trace};
use crate::forecast::engine::{Context, MinuteSeries};
use crate::forecast::ledger::{AGGREGATE, Ledger};
use crate::forecast::tables::{self, ProfileSeries};
use crate::plan::{self, InstanceShape, Live, PlanConfig};

/// One region's replay input.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionInput {
    /// The region's name.
    pub name: String,
    /// What capacity must serve per minute (aligned to the replay's start).
    pub trace: Trace,
    /// What the edge counts per profile id per minute, as it would have assigned requests.
    pub live: BTreeMap<u16, Vec<f64>>,
}

/// The training stages, run at an instant on the data before it.
pub trait Stages {
    /// Every region's model trained on the data before `at` (Unix seconds).
    fn train(&mut self, at: u64) -> Result<Vec<RegionModel>, SimulateError>;
}

/// Each training's models, in time order.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    /// (instant, every region's models trained then).
    pub trainings: Vec<(u64, Vec<RegionModel>)>,
}

impl Timeline {
    /// Runs the stages at every interval from the one before the scored period starts.
    pub fn run(stages: &mut dyn Stages, from: u64, to: u64, interval: u64) -> Result<Self, SimulateError> {
        let interval = interval.max(60);
        let mut trainings = Vec::new();
        let mut at = from / interval * interval;
        while at < to {
            trainings.push((at, stages.train(at)?));
            at += interval;
        }
        Ok(Self { trainings })
    }

    /// The latest model of `region` trained at or before `t`.
    pub fn model_at(&self, region: &str, t: u64) -> Option<&RegionModel> {
        let i = self.trainings.partition_point(|(at, _)| *at <= t).checked_sub(1)?;
        self.trainings[i].1.iter().find(|m| m.region == region)
    }
}

/// The aggregate trace's region and profile names.
pub const TRACE_REGION: &str = "trace";
/// The aggregate trace's one profile.
pub const TRACE_PROFILE: ProfileId = ProfileId(1);

/// The stages for an aggregate trace (a CSV or log counts): one profile — every request —
/// whose forecast is the product's forecast stage on the trace before each instant.
#[derive(Debug)]
pub struct AggregateStages<'a> {
    /// The trace replayed.
    pub trace: &'a Trace,
    /// The replay's settings.
    pub config: &'a SimulationConfig,
    /// Past forecasts, for skill and bands.
    pub ledger: Ledger,
}

impl Stages for AggregateStages<'_> {
    fn train(&mut self, at: u64) -> Result<Vec<RegionModel>, SimulateError> {
        let minutes = ((at.saturating_sub(self.trace.start)) / 60) as usize;
        let values = self.trace.demand[..minutes.min(self.trace.demand.len())].to_vec();
        let series =
            [ProfileSeries { profile: TRACE_PROFILE, minutes: MinuteSeries { start: self.trace.start, values } }];
        let trainer = &self.config.trainer;
        let step = trainer.forecast_step_secs.clamp(60, 3600);
        // The trace's one profile costs a demand unit a request; an instance serves C of them.
        let unit = self.config.unit_for(self.trace).ok();
        let ctx = Context {
            events: self.config.calendar.clone(),
            step_secs: step,
            steps: (86_400 / step) as usize,
            lookback_secs: crate::forecast::nowcast::WINDOW_MINUTES * 60,
            nowcast: true,
            lead_secs: trainer.plan.lead_time_secs,
            choose_band: true,
            floor_utilisation: Some(trainer.plan.floor_utilisation),
            unit_requests: unit.map(|u| vec![(TRACE_PROFILE.0, u), (AGGREGATE, u)]).unwrap_or_default(),
            ..Context::default()
        };
        let forecast =
            tables::tables(TRACE_REGION, &series, UnixSeconds(at), &ctx, &trainer.forecast, &mut self.ledger);
        let mut model = aggregate_model(forecast.table);
        model.model_version = ModelVersion(1);
        Ok(vec![model])
    }
}

/// A one-profile model around a forecast table: every request is the same profile, costing
/// one unit of demand.
pub fn aggregate_model(forecast: ForecastTable) -> RegionModel {
    let one = CostFigure { mean: 1.0, median: 1.0, p90: 1.0, source: CostSource::Measured };
    RegionModel {
        region: TRACE_REGION.into(),
        model_version: ModelVersion(1),
        schema: FeatureSchema::current(),
        normalisation: Normalisation { mean: vec![0.0; FEATURE_DIM], scale: vec![1.0; FEATURE_DIM] },
        centroids: vec![0.0; FEATURE_DIM],
        profiles: vec![ProfileMeta {
            id: TRACE_PROFILE,
            label: "all requests".into(),
            priority: PriorityClass::Standard,
            share_of_users: 1.0,
            cost: ResourceCost { cpu_ms: one, memory_mb_s: one, bytes: one },
            role: ProfileRole::Clustered,
        }],
        default_profile: TRACE_PROFILE,
        assignment: AssignmentParams { min_requests: 1, hysteresis_margin: 0.0 },
        rules: ClassificationRules::default(),
        forecast,
    }
}

/// The plan stage's configuration in the replay: the operator's `[plan]` with the lead time
/// set to the delay replayed and an instance that serves `unit_rpm` demand units a minute
/// (the capacity model's unit; demand is carried in the CPU dimension of each profile's cost).
pub fn replay_plan_config(config: &SimulationConfig, delay_minutes: usize, unit_rpm: f64) -> PlanConfig {
    let plan = &config.trainer.plan;
    PlanConfig {
        instance: InstanceShape {
            cpu_ms_per_sec: unit_rpm / 60.0,
            memory_mb: f64::INFINITY,
            bytes_per_sec: f64::INFINITY,
        },
        lead_time_secs: delay_minutes as u64 * 60,
        min_units: plan.min_units.max(1),
        max_units: u32::MAX,
        budget_units: None,
        pools: Vec::new(),
        ..plan.clone()
    }
}

/// What the replay needs of every region at every minute, shared by all delays and policies.
#[derive(Debug, Clone)]
pub struct Replayed {
    /// Unix seconds of the first minute.
    pub start: u64,
    /// Minutes replayed.
    pub minutes: usize,
    /// Every training's models.
    pub timeline: Timeline,
    /// The signals the edge would have raised.
    pub signals: Vec<Signal>,
}

/// Per region, the prewarm trigger's units at every minute for one delay: with the edge's
/// counts and signals (what KEDA gets), and as planned from the forecast alone (what the
/// signals are judged against).
#[derive(Debug, Clone)]
pub struct PlannedUnits {
    /// With the edge's counts and signals (what KEDA gets).
    pub live: Vec<Option<u32>>,
    /// From the forecast alone.
    pub forecast_only: Vec<Option<u32>>,
}

/// The plan stage at every minute of one region for one delay.
pub fn planned_units(
    region: &RegionInput,
    replayed: &Replayed,
    config: &SimulationConfig,
    delay: usize,
    unit_rpm: f64,
) -> PlannedUnits {
    let plan_config = replay_plan_config(config, delay, unit_rpm);
    let lead = delay as u64 * 60;
    let mut live_units = Vec::with_capacity(replayed.minutes);
    let mut forecast_units = Vec::with_capacity(replayed.minutes);
    let region_signals: Vec<&Signal> = replayed.signals.iter().filter(|s| s.region == region.name).collect();
    let decay = plan_config.nowcast_decay_secs;
    for t in 0..replayed.minutes {
        let now = replayed.start + t as u64 * 60;
        let Some(model) = replayed.timeline.model_at(&region.name, now) else {
            live_units.push(None);
            forecast_units.push(None);
            continue;
        };
        let step = u64::from(model.forecast.step_secs.max(1));
        // The edge's complete minutes of the last half hour, and its signals so far.
        let from = t.saturating_sub(plan::nowcast::LEVEL_WINDOW_MINUTES as usize);
        let mut live = Live::default();
        for (profile, counts) in &region.live {
            for (m, n) in counts.iter().enumerate().take(t).skip(from) {
                if *n > 0.0 {
                    live.counts.push((region.name.clone(), *profile, (replayed.start / 60) + m as u64, *n as u64));
                }
            }
        }
        live.signals = region_signals
            .iter()
            .filter(|s| s.at < now && s.at + decay >= now)
            .map(|s| (s.region.clone(), s.profile, s.at, s.observed_per_step))
            .collect();
        let steps = plan::plan(model, &plan_config, UnixSeconds(now), &live);
        live_units.push(plan::desired_units(&steps, UnixSeconds(now), lead, step));
        let plain = plan::plan(model, &plan_config, UnixSeconds(now), &Live::default());
        forecast_units.push(plan::desired_units(&plain, UnixSeconds(now), lead, step));
    }
    PlannedUnits { live: live_units, forecast_only: forecast_units }
}

/// Targets and ready units of one policy in one region.
#[allow(clippy::too_many_arguments)]
pub fn replay_policy(
    kind: PolicyKind,
    knob: Option<f64>,
    trace: &Trace,
    model: &CapacityModel,
    planned: &PlannedUnits,
    aws: &HourlySchedule,
) -> (Vec<u32>, Vec<u32>) {
    let c = model.unit_rpm;
    let n = trace.demand.len();
    match kind {
        PolicyKind::Oracle => {
            // Perfect foresight and no delay: exactly what each minute needs.
            let ready: Vec<u32> = trace.demand.iter().map(|d| model.units_for(d.unwrap_or(0.0)).max(1)).collect();
            return (ready.clone(), ready);
        }
        PolicyKind::StaticPeak => {
            let peak = trace.demand[model.warmup.min(n)..].iter().flatten().copied().fold(0.0, f64::max);
            let targets = vec![model.units_for(peak).max(1); n];
            return (targets.clone(), targets);
        }
        _ => {}
    }
    let mut hpa = Hpa::new(Behaviour::default());
    let mut targets: Vec<u32> = Vec::with_capacity(n);
    let mut ready: Vec<u32> = Vec::with_capacity(n);
    let mut window: std::collections::VecDeque<u32> = std::collections::VecDeque::new();
    for t in 0..n {
        let (spec, ready_now) = (targets.last().copied().unwrap_or(1), ready.last().copied().unwrap_or(1));
        let need = t.checked_sub(1).and_then(|p| trace.demand[p]).map(|d| d / c);
        let hpa_target = knob.unwrap_or(0.7);
        let (utilisation, units): (Vec<f64>, Vec<Option<u32>>) = match kind {
            PolicyKind::ReactiveHpa => (vec![hpa_target], vec![]),
            PolicyKind::Prewarm => (vec![hpa_target], vec![planned.live[t]]),
            PolicyKind::PrewarmAlone => (vec![], vec![planned.live[t]]),
            PolicyKind::AwsPredictive => {
                let at = t + baselines::aws_buffer_minutes(model.delay);
                let scheduled = aws.known_at(t, at).map(|rate| model.units_for(rate / hpa_target));
                (vec![0.7], vec![scheduled])
            }
            PolicyKind::SeasonalNaive7d => {
                let factor = knob.unwrap_or(1.2);
                let week_ago =
                    (t + model.delay).checked_sub(7 * 1440).and_then(|i| trace.demand.get(i).copied().flatten());
                (vec![0.7], vec![week_ago.map(|d| model.units_for(factor * d))])
            }
            PolicyKind::Oracle | PolicyKind::StaticPeak => unreachable!("handled above"),
        };
        let next = hpa.step(spec, ready_now, &Metrics { need, utilisation: &utilisation, units: &units });
        targets.push(next);
        // ready(t) = min(N(t − D) … N(t)): a raise waits the delay, a cut is immediate.
        window.push_back(next);
        if window.len() > model.delay + 1 {
            window.pop_front();
        }
        ready.push(window.iter().copied().min().unwrap_or(next));
    }
    (targets, ready)
}

/// Each replayed policy's ready units: (policy, delay, ready per minute).
pub type ReadySeries = Vec<(String, usize, Vec<u32>)>;

/// Replays and scores one region at every delay for every asked (policy, knob); with `ready`,
/// keeps each policy's ready units at its default knob (for plots).
pub fn replay_region(
    region: &RegionInput,
    replayed: &Replayed,
    config: &SimulationConfig,
    knobs_of: &dyn Fn(PolicyKind) -> Vec<Option<f64>>,
    mut ready_out: Option<&mut ReadySeries>,
) -> Result<(Vec<Outcome>, Vec<edge::Quality>, f64), SimulateError> {
    let trace = &region.trace;
    let unit_rpm = config.unit_for(trace)?;
    let warmup = config.warmup_days * 1440;
    if trace.demand.len() < warmup + 1440 {
        return Err(SimulateError::TooShort { minutes: trace.demand.len(), warmup });
    }
    let wants = |k: PolicyKind| config.policies.contains(&k);
    let aws = if wants(PolicyKind::AwsPredictive) {
        HourlySchedule::build(&trace.demand, trace.start)
    } else {
        HourlySchedule::default()
    };
    let scored = |t: usize| {
        let at = trace.start + t as u64 * 60;
        t >= warmup && config.score_from.is_none_or(|f| at >= f) && config.score_until.is_none_or(|u| at < u)
    };
    let mut outcomes = Vec::new();
    let mut quality = Vec::new();
    for &delay in &config.delays {
        if !(1..=1440).contains(&delay) {
            return Err(SimulateError::BadDelay(delay));
        }
        let model = CapacityModel { unit_rpm, delay, warmup };
        let planned = planned_units(region, replayed, config, delay, unit_rpm);
        let references = [PolicyKind::Oracle, PolicyKind::ReactiveHpa].map(|k| (k, k.default_knob(&config.trainer)));
        let asked = config.policies.iter().flat_map(|&k| knobs_of(k).into_iter().map(move |knob| (k, knob)));
        let mut prewarm_targets = None;
        for (kind, knob) in references.into_iter().chain(asked) {
            if outcomes.iter().any(|o: &Outcome| o.policy == kind.name() && o.knob == knob && o.delay == delay) {
                continue;
            }
            let (targets, ready) = replay_policy(kind, knob, trace, &model, &planned, &aws);
            outcomes.push(capacity::score(kind.name(), knob, &model, &trace.demand, &targets, &ready, &scored));
            if let Some(out) = ready_out.as_deref_mut()
                && knob == config.knob_of(kind)
                && config.policies.contains(&kind)
            {
                out.push((kind.name().to_owned(), delay, ready));
            }
            if kind == PolicyKind::Prewarm && knob == config.knob_of(PolicyKind::Prewarm) {
                prewarm_targets = Some(targets);
            }
        }
        if let Some(targets) = prewarm_targets {
            quality.push(edge::quality(region, replayed, &planned, &targets, &model, &scored));
        }
    }
    Ok((outcomes, quality, unit_rpm))
}

/// Replays every region and scores them together.
pub fn replay(
    regions: &[RegionInput],
    replayed: &Replayed,
    config: &SimulationConfig,
    knobs_of: &dyn Fn(PolicyKind) -> Vec<Option<f64>>,
    started: std::time::Instant,
) -> Result<super::RegionsReport, SimulateError> {
    if regions.is_empty() {
        return Err(SimulateError::NoRegions);
    }
    let mut all: Vec<Outcome> = Vec::new();
    let mut all_quality: Vec<edge::Quality> = Vec::new();
    let mut per_region = Vec::with_capacity(regions.len());
    for region in regions {
        let (outcomes, quality, unit_rpm) = replay_region(region, replayed, config, knobs_of, None)?;
        for o in &outcomes {
            match all.iter_mut().find(|a| a.policy == o.policy && a.knob == o.knob && a.delay == o.delay) {
                Some(a) => capacity::accumulate(a, o),
                None => all.push(o.clone()),
            }
        }
        for q in &quality {
            match all_quality.iter_mut().find(|a| a.delay == q.delay) {
                Some(a) => a.accumulate(q),
                None => all_quality.push(q.clone()),
            }
        }
        per_region.push(super::RegionReport {
            region: region.name.clone(),
            report: report(&region.trace, config, outcomes, quality, unit_rpm, replayed, started),
        });
    }
    let (minutes, missing) =
        per_region.iter().fold((0, 0), |(m, x), r| (m + r.report.minutes, x + r.report.missing_minutes));
    let unit_rpm = per_region.first().map_or(0.0, |r| r.report.unit_rpm);
    let total = Report {
        minutes,
        missing_minutes: missing,
        unit_rpm,
        warmup_days: config.warmup_days,
        trainings: replayed.timeline.trainings.len(),
        rows: super::with_ratios(all, &config.policies, config),
        prewarm: all_quality,
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok(super::RegionsReport { total, regions: per_region })
}

fn report(
    trace: &Trace,
    config: &SimulationConfig,
    outcomes: Vec<Outcome>,
    quality: Vec<edge::Quality>,
    unit_rpm: f64,
    replayed: &Replayed,
    started: std::time::Instant,
) -> Report {
    Report {
        minutes: trace.demand.len(),
        missing_minutes: trace.demand.iter().filter(|d| d.is_none()).count(),
        unit_rpm,
        warmup_days: config.warmup_days,
        trainings: replayed.timeline.trainings.len(),
        rows: super::with_ratios(outcomes, &config.policies, config),
        prewarm: quality,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// The whole replay of an aggregate trace: trainings, the edge's signals, every policy; with
/// `keep_ready`, every policy's ready units too.
pub fn replay_trace(
    trace: &Trace,
    config: &SimulationConfig,
    knobs_of: &dyn Fn(PolicyKind) -> Vec<Option<f64>>,
    keep_ready: bool,
) -> Result<(Report, ReadySeries), SimulateError> {
    let started = std::time::Instant::now();
    let region = RegionInput {
        name: TRACE_REGION.into(),
        trace: trace.clone(),
        live: BTreeMap::from([(TRACE_PROFILE.0, trace.demand.iter().map(|d| d.unwrap_or(0.0)).collect())]),
    };
    let regions = std::slice::from_ref(&region);
    let mut ready = Vec::new();
    let mut whole: Option<Report> = None;
    // Each delay is its own deployment: the trainer's lead time is the delay.
    for &delay in &config.delays {
        let config = &config.at_delay(delay);
        let mut stages = AggregateStages { trace, config, ledger: Ledger::default() };
        let replayed = replay_inputs(regions, &mut stages, trace.start, config)?;
        let (outcomes, quality, unit_rpm) =
            replay_region(&region, &replayed, config, knobs_of, keep_ready.then_some(&mut ready))?;
        let one = report(trace, config, outcomes, quality, unit_rpm, &replayed, started);
        match &mut whole {
            Some(w) => w.absorb(one),
            None => whole = Some(one),
        }
    }
    Ok((whole.ok_or(SimulateError::BadDelay(0))?, ready))
}

/// The trainings: every training interval from the day before the scored period (so the first
/// scored minute has a model) to the end of the trace.
pub fn timeline_for(
    stages: &mut dyn Stages,
    start: u64,
    minutes: usize,
    config: &SimulationConfig,
) -> Result<Timeline, SimulateError> {
    let end = start + minutes as u64 * 60;
    let warmup = config.warmup_days as u64 * 86_400;
    let from =
        config.score_from.map_or(start + warmup, |f| f.max(start + warmup)).saturating_sub(86_400).max(start + 86_400);
    let to = config.score_until.map_or(end, |u| u.min(end));
    // `train_interval_secs = 0` (train only on demand) replays the default hourly training.
    let interval = match config.trainer.train_interval_secs {
        0 => 3600,
        secs => secs.max(60),
    };
    Timeline::run(stages, from, to, interval)
}

/// The trainings' time line with the signals the edge would have raised under it.
pub fn with_signals(
    regions: &[RegionInput],
    timeline: Timeline,
    start: u64,
    minutes: usize,
    config: &SimulationConfig,
) -> Replayed {
    let mut replayed = Replayed { start, minutes, timeline, signals: Vec::new() };
    replayed.signals = regions.iter().flat_map(|r| edge::signals(r, &replayed, &config.trainer)).collect();
    replayed
}

/// The trainings and the edge's signals, for regions known before any training.
pub fn replay_inputs(
    regions: &[RegionInput],
    stages: &mut dyn Stages,
    start: u64,
    config: &SimulationConfig,
) -> Result<Replayed, SimulateError> {
    let minutes = regions.iter().map(|r| r.trace.demand.len()).max().unwrap_or(0);
    let timeline = timeline_for(stages, start, minutes, config)?;
    Ok(with_signals(regions, timeline, start, minutes, config))
}
