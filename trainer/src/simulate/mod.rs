//! Replay simulator: how prewarm's forecaster and planner would have scaled a real trace,
//! against what operators use instead (Kubernetes' reactive HPA, Grafana Mimir's
//! seasonal-naive floor, AWS-style predictive scaling), a static peak and an oracle.
//!
//! Every policy is replayed under the same [`CapacityModel`] and scored on the same minutes;
//! results are reported as ratios to `reactive-hpa` (what a team would otherwise run) and to
//! `oracle` (perfect foresight: the cost floor).

pub mod capacity;
pub mod hourly;
pub mod plot;
pub mod policy;

use serde::Serialize;

use crate::forecast::calendar::Occurrence;
use crate::forecast::series::{Series, SeriesError};
use capacity::{CapacityModel, Outcome};
use hourly::{HourlySchedule, ScheduleConfig};
use policy::{AwsPredictive, Hpa, Prewarm, SeasonalNaive7d};

#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error(transparent)]
    Series(#[from] SeriesError),
    #[error("the trace has {minutes} minutes; the warm-up ({warmup}) plus one day is needed")]
    TooShort { minutes: usize, warmup: usize },
    #[error(
        "unknown policy `{0}`; known: oracle, static-peak, reactive-hpa, seasonal-naive-7d, aws-predictive, prewarm"
    )]
    UnknownPolicy(String),
    #[error("the unit capacity must be a positive number of requests per minute, got {0}")]
    BadUnit(f64),
    #[error("the trace's median minute is zero: give the unit capacity explicitly")]
    ZeroMedian,
    #[error("the provisioning delay must be between 1 and 1440 minutes, got {0}")]
    BadDelay(usize),
    #[error("profile `{profile}` weighs {weight} per request: a weight must be a number ≥ 0")]
    BadWeight { profile: String, weight: f64 },
    #[error("no region to replay")]
    NoRegions,
}

/// Demand per minute; `None` where the trace has no row (never scored, never seen).
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// Unix seconds of minute 0.
    pub start: u64,
    /// What capacity must serve each minute: requests, or with profiles, Σ requests × weight.
    pub demand: Vec<Option<f64>>,
    /// The profiles the demand is made of, when the input has them (the event store); empty
    /// for an aggregate trace.
    pub profiles: Vec<ProfileDemand>,
}

/// One profile's share of a trace: its requests per minute and what one request weighs in
/// the trace's demand (its cost per request).
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileDemand {
    pub name: String,
    pub weight: f64,
    /// Requests per minute, aligned with the trace's minutes.
    pub requests: Vec<Option<f64>>,
}

/// A profile's name, weight per request, and `(unix seconds, requests)` points.
pub type ProfilePoints = (String, f64, Vec<(u64, f64)>);

impl Trace {
    pub fn from_points(points: &[(u64, f64)]) -> Result<Self, SimulateError> {
        let series = Series::from_points(points, 60)?;
        Ok(Self { start: series.start, demand: series.values, profiles: Vec::new() })
    }

    /// A trace made of profiles: each `(name, weight, [(unix seconds, requests)])` is counted
    /// per minute (a minute without requests is zero: the store records every request) and the
    /// demand is Σ requests × weight.
    pub fn from_profiles(profiles: &[ProfilePoints]) -> Result<Self, SimulateError> {
        let minute = |t: u64| t / 60 * 60;
        let times = || profiles.iter().flat_map(|(_, _, points)| points.iter().map(|(t, _)| minute(*t)));
        let (Some(start), Some(end)) = (times().min(), times().max()) else {
            return Err(SimulateError::Series(SeriesError::Empty));
        };
        let len = ((end - start) / 60 + 1) as usize;
        let mut demand = vec![Some(0.0); len];
        let mut out = Vec::with_capacity(profiles.len());
        for (name, weight, points) in profiles {
            if !(weight.is_finite() && *weight >= 0.0) {
                return Err(SimulateError::BadWeight { profile: name.clone(), weight: *weight });
            }
            let mut requests = vec![Some(0.0); len];
            for (t, n) in points {
                let i = ((minute(*t) - start) / 60) as usize;
                requests[i] = Some(requests[i].unwrap_or(0.0) + n);
                demand[i] = Some(demand[i].unwrap_or(0.0) + n * weight);
            }
            out.push(ProfileDemand { name: name.clone(), weight: *weight, requests });
        }
        Ok(Self { start, demand, profiles: out })
    }

    /// The median over minutes that have a row.
    pub fn median_minute(&self) -> f64 {
        let mut present: Vec<f64> = self.demand.iter().flatten().copied().collect();
        if present.is_empty() {
            return 0.0;
        }
        present.sort_by(f64::total_cmp);
        let mid = present.len() / 2;
        if present.len().is_multiple_of(2) { (present[mid - 1] + present[mid]) / 2.0 } else { present[mid] }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyKind {
    Oracle,
    StaticPeak,
    ReactiveHpa,
    SeasonalNaive7d,
    AwsPredictive,
    Prewarm,
}

impl PolicyKind {
    pub const ALL: [PolicyKind; 6] = [
        PolicyKind::Oracle,
        PolicyKind::StaticPeak,
        PolicyKind::ReactiveHpa,
        PolicyKind::SeasonalNaive7d,
        PolicyKind::AwsPredictive,
        PolicyKind::Prewarm,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Oracle => "oracle",
            PolicyKind::StaticPeak => "static-peak",
            PolicyKind::ReactiveHpa => "reactive-hpa",
            PolicyKind::SeasonalNaive7d => "seasonal-naive-7d",
            PolicyKind::AwsPredictive => "aws-predictive",
            PolicyKind::Prewarm => "prewarm",
        }
    }

    /// The knob a sweep turns, and its default: target utilisation (HPA, AWS), floor factor
    /// (seasonal naive) or burstiness headroom (prewarm).
    pub fn default_knob(self) -> Option<f64> {
        match self {
            PolicyKind::Oracle | PolicyKind::StaticPeak => None,
            PolicyKind::ReactiveHpa | PolicyKind::AwsPredictive => Some(0.7),
            PolicyKind::SeasonalNaive7d => Some(1.2),
            PolicyKind::Prewarm => Some(1.5),
        }
    }

    pub fn sweep_knobs(self) -> Vec<f64> {
        match self {
            PolicyKind::Oracle | PolicyKind::StaticPeak => vec![],
            PolicyKind::ReactiveHpa | PolicyKind::AwsPredictive => vec![0.5, 0.6, 0.7, 0.8, 0.9],
            PolicyKind::SeasonalNaive7d => vec![1.0, 1.1, 1.2, 1.4, 1.6],
            PolicyKind::Prewarm => vec![0.5, 1.0, 1.25, 1.5, 2.0, 2.5],
        }
    }
}

impl std::str::FromStr for PolicyKind {
    type Err = SimulateError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| SimulateError::UnknownPolicy(s.to_owned()))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SimulationConfig {
    /// C; default: the trace's median minute / 10.
    pub unit_rpm: Option<f64>,
    pub delays: Vec<usize>,
    pub warmup_days: usize,
    pub policies: Vec<PolicyKind>,
    /// External events, passed to the policies that use a calendar.
    pub calendar: Vec<Occurrence>,
    /// Knobs that replace a policy's default (the references keep theirs).
    pub knobs: Vec<(PolicyKind, f64)>,
}

impl Default for SimulationConfig {
    fn default() -> Self {
        Self {
            unit_rpm: None,
            delays: vec![5],
            warmup_days: 14,
            policies: PolicyKind::ALL.to_vec(),
            calendar: Vec::new(),
            knobs: Vec::new(),
        }
    }
}

/// An outcome with its ratios to the references run at the same delay.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    #[serde(flatten)]
    pub outcome: Outcome,
    pub cost_vs_hpa: Option<f64>,
    pub under_minutes_vs_hpa: Option<f64>,
    pub under_unit_minutes_vs_hpa: Option<f64>,
    pub cost_vs_oracle: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub minutes: usize,
    pub missing_minutes: usize,
    pub unit_rpm: f64,
    pub warmup_days: usize,
    pub rows: Vec<Row>,
    pub seconds: f64,
}

/// Forecasts every forecasting policy needs, built once per trace (they do not depend on the
/// delay or on any knob).
#[derive(Debug)]
pub struct Forecasts {
    aws: HourlySchedule,
    /// prewarm forecasts each profile on its own (one schedule for an aggregate trace), each
    /// with its weight.
    prewarm: Vec<(HourlySchedule, f64)>,
    /// With profiles, the whole trace's minute burstiness (the margin), per origin.
    prewarm_total: Option<HourlySchedule>,
}

impl Forecasts {
    /// `calendar`: external events for the policies that take a calendar (prewarm's).
    pub fn build(trace: &Trace, policies: &[PolicyKind], calendar: &[Occurrence]) -> Self {
        let empty = || HourlySchedule::build(&[], trace.start, &AWS_SCHEDULE, &[]);
        let wants = |k| policies.contains(&k);
        let prewarm = if !wants(PolicyKind::Prewarm) {
            Vec::new()
        } else if trace.profiles.is_empty() {
            vec![(HourlySchedule::build(&trace.demand, trace.start, &PREWARM_SCHEDULE, calendar), 1.0)]
        } else {
            trace
                .profiles
                .iter()
                .map(|p| (HourlySchedule::build(&p.requests, trace.start, &PREWARM_SCHEDULE, calendar), p.weight))
                .collect()
        };
        // Only its burstiness is read: a zero horizon skips the model fits.
        let burst_only = ScheduleConfig { horizon_hours: 0, ..PREWARM_SCHEDULE };
        let prewarm_total = (wants(PolicyKind::Prewarm) && !trace.profiles.is_empty())
            .then(|| HourlySchedule::build(&trace.demand, trace.start, &burst_only, &[]));
        Self {
            prewarm_total,
            aws: if wants(PolicyKind::AwsPredictive) {
                HourlySchedule::build(&trace.demand, trace.start, &AWS_SCHEDULE, &[])
            } else {
                empty()
            },
            prewarm,
        }
    }
}

/// AWS: every 6 h, 48 h ahead, from up to 14 days; the point forecast is what it scales to.
pub const AWS_SCHEDULE: ScheduleConfig =
    ScheduleConfig { every_hours: 6, horizon_hours: 48, history_days: 14, level: 0.8, burst_quantile: 0.5 };

/// prewarm: refit every hour (the trainer's cadence), from up to 28 days, with the 90th
/// percentile of minute burstiness.
pub const PREWARM_SCHEDULE: ScheduleConfig =
    ScheduleConfig { every_hours: 1, horizon_hours: 3, history_days: 28, level: 0.8, burst_quantile: 0.9 };

impl SimulationConfig {
    /// The knob a plain replay runs `kind` at: the configured one, else its default.
    fn knob_of(&self, kind: PolicyKind) -> Vec<Option<f64>> {
        vec![self.knobs.iter().find(|(k, _)| *k == kind).map(|(_, v)| *v).or(kind.default_knob())]
    }

    pub fn model(&self, trace: &Trace, delay: usize) -> Result<CapacityModel, SimulateError> {
        if !(1..=1440).contains(&delay) {
            return Err(SimulateError::BadDelay(delay));
        }
        let unit_rpm = match self.unit_rpm {
            Some(c) if c.is_finite() && c > 0.0 => c,
            Some(c) => return Err(SimulateError::BadUnit(c)),
            None => {
                let median = trace.median_minute();
                if median <= 0.0 {
                    return Err(SimulateError::ZeroMedian);
                }
                median / 10.0
            }
        };
        let warmup = self.warmup_days * 1440;
        if trace.demand.len() < warmup + 1440 {
            return Err(SimulateError::TooShort { minutes: trace.demand.len(), warmup });
        }
        Ok(CapacityModel { unit_rpm, delay, warmup })
    }
}

/// One policy's targets and ready units over the whole trace.
pub fn replay(
    kind: PolicyKind,
    knob: Option<f64>,
    trace: &Trace,
    model: &CapacityModel,
    forecasts: &Forecasts,
) -> (Vec<u32>, Vec<u32>) {
    let knob = knob.or(kind.default_knob()).unwrap_or(1.0);
    let c = model.unit_rpm;
    let targets = match kind {
        PolicyKind::Oracle => {
            // Perfect foresight and no delay: exactly what each minute needs.
            let ready: Vec<u32> = trace.demand.iter().map(|d| model.units_for(d.unwrap_or(0.0))).collect();
            return (ready.clone(), ready);
        }
        PolicyKind::StaticPeak => {
            let peak = trace.demand[model.warmup..].iter().flatten().copied().fold(0.0, f64::max);
            vec![model.units_for(peak).max(1); trace.demand.len()]
        }
        PolicyKind::ReactiveHpa => policy::run(&mut Hpa::new(knob, c), &trace.demand, model),
        PolicyKind::SeasonalNaive7d => policy::run(
            &mut SeasonalNaive7d { hpa: Hpa::new(0.7, c), factor: knob, model: *model },
            &trace.demand,
            model,
        ),
        PolicyKind::AwsPredictive => policy::run(
            &mut AwsPredictive {
                hpa: Hpa::new(0.7, c),
                schedule: &forecasts.aws,
                target_utilisation: knob,
                model: *model,
            },
            &trace.demand,
            model,
        ),
        PolicyKind::Prewarm => {
            let parts: Vec<policy::Part<'_>> = if trace.profiles.is_empty() {
                forecasts
                    .prewarm
                    .iter()
                    .map(|(schedule, weight)| policy::Part { schedule, weight: *weight, requests: &trace.demand })
                    .collect()
            } else {
                forecasts
                    .prewarm
                    .iter()
                    .zip(&trace.profiles)
                    .map(|((schedule, weight), p)| policy::Part { schedule, weight: *weight, requests: &p.requests })
                    .collect()
            };
            let mut prewarm = Prewarm::new(parts, *model, knob);
            prewarm.total = forecasts.prewarm_total.as_ref();
            policy::run(&mut prewarm, &trace.demand, model)
        }
    };
    let ready = model.ready(&targets);
    (targets, ready)
}

/// Replays and scores the configured policies at each delay, with ratios to the references.
pub fn simulate(trace: &Trace, config: &SimulationConfig) -> Result<Report, SimulateError> {
    run(trace, config, &|kind| config.knob_of(kind))
}

/// Each policy at each of its knob values, for the cost against under-provisioning frontier.
pub fn sweep(trace: &Trace, config: &SimulationConfig) -> Result<Report, SimulateError> {
    run(trace, config, &sweep_knobs)
}

fn sweep_knobs(kind: PolicyKind) -> Vec<Option<f64>> {
    match kind.sweep_knobs() {
        knobs if knobs.is_empty() => vec![None],
        knobs => knobs.into_iter().map(Some).collect(),
    }
}

/// Regions replayed separately, each with its own capacity (a region's units cannot serve
/// another's users), scored together: cost, under-provisioned minutes and unit-minutes are
/// sums over regions (a region-minute is a minute), the elasticity metrics means weighted by
/// scored minutes.
#[derive(Debug, Clone, Serialize)]
pub struct RegionsReport {
    pub total: Report,
    pub regions: Vec<RegionReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RegionReport {
    pub region: String,
    #[serde(flatten)]
    pub report: Report,
}

pub fn simulate_regions(
    regions: &[(String, Trace)],
    config: &SimulationConfig,
) -> Result<RegionsReport, SimulateError> {
    run_regions(regions, config, &|kind| config.knob_of(kind))
}

pub fn sweep_regions(regions: &[(String, Trace)], config: &SimulationConfig) -> Result<RegionsReport, SimulateError> {
    run_regions(regions, config, &sweep_knobs)
}

fn run_regions(
    regions: &[(String, Trace)],
    config: &SimulationConfig,
    knobs_of: &dyn Fn(PolicyKind) -> Vec<Option<f64>>,
) -> Result<RegionsReport, SimulateError> {
    let started = std::time::Instant::now();
    let mut per_region = Vec::with_capacity(regions.len());
    let mut all: Vec<Outcome> = Vec::new();
    for (name, trace) in regions {
        let (outcomes, unit_rpm) = score_all(trace, config, knobs_of)?;
        for o in &outcomes {
            match all.iter_mut().find(|a| a.policy == o.policy && a.knob == o.knob && a.delay == o.delay) {
                Some(a) => capacity::accumulate(a, o),
                None => all.push(o.clone()),
            }
        }
        per_region
            .push(RegionReport { region: name.clone(), report: report(trace, config, outcomes, unit_rpm, started) });
    }
    let (minutes, missing) =
        per_region.iter().fold((0, 0), |(m, x), r| (m + r.report.minutes, x + r.report.missing_minutes));
    let first = per_region.first().ok_or(SimulateError::NoRegions)?;
    let total = Report {
        minutes,
        missing_minutes: missing,
        unit_rpm: first.report.unit_rpm,
        warmup_days: config.warmup_days,
        rows: with_ratios_by_delay(all, &config.policies),
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok(RegionsReport { total, regions: per_region })
}

/// Every (policy, knob) at every delay. The references (oracle, HPA at its default) are
/// scored even when not asked for: every ratio needs them.
fn run(
    trace: &Trace,
    config: &SimulationConfig,
    knobs_of: &dyn Fn(PolicyKind) -> Vec<Option<f64>>,
) -> Result<Report, SimulateError> {
    let started = std::time::Instant::now();
    let (outcomes, unit_rpm) = score_all(trace, config, knobs_of)?;
    Ok(report(trace, config, outcomes, unit_rpm, started))
}

fn report(
    trace: &Trace,
    config: &SimulationConfig,
    outcomes: Vec<Outcome>,
    unit_rpm: f64,
    started: std::time::Instant,
) -> Report {
    Report {
        minutes: trace.demand.len(),
        missing_minutes: trace.demand.iter().filter(|d| d.is_none()).count(),
        unit_rpm,
        warmup_days: config.warmup_days,
        rows: with_ratios_by_delay(outcomes, &config.policies),
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// The outcomes of every asked (policy, knob) and of the references, at every delay; and C.
fn score_all(
    trace: &Trace,
    config: &SimulationConfig,
    knobs_of: &dyn Fn(PolicyKind) -> Vec<Option<f64>>,
) -> Result<(Vec<Outcome>, f64), SimulateError> {
    let forecasts = Forecasts::build(trace, &config.policies, &config.calendar);
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut unit_rpm = 0.0;
    for &delay in &config.delays {
        let model = config.model(trace, delay)?;
        unit_rpm = model.unit_rpm;
        let references = [PolicyKind::Oracle, PolicyKind::ReactiveHpa].map(|k| (k, k.default_knob()));
        let asked = config.policies.iter().flat_map(|&k| knobs_of(k).into_iter().map(move |knob| (k, knob)));
        for (kind, knob) in references.into_iter().chain(asked) {
            if outcomes.iter().any(|o| o.policy == kind.name() && o.knob == knob && o.delay == delay) {
                continue;
            }
            let (targets, ready) = replay(kind, knob, trace, &model, &forecasts);
            outcomes.push(capacity::score(kind.name(), knob, &model, &trace.demand, &targets, &ready));
        }
    }
    Ok((outcomes, unit_rpm))
}

fn with_ratios_by_delay(outcomes: Vec<Outcome>, asked: &[PolicyKind]) -> Vec<Row> {
    let mut delays: Vec<usize> = Vec::new();
    for o in &outcomes {
        if !delays.contains(&o.delay) {
            delays.push(o.delay);
        }
    }
    let mut rows = Vec::with_capacity(outcomes.len());
    for delay in delays {
        let at: Vec<Outcome> = outcomes.iter().filter(|o| o.delay == delay).cloned().collect();
        rows.extend(with_ratios(at, asked));
    }
    rows
}

fn with_ratios(outcomes: Vec<Outcome>, asked: &[PolicyKind]) -> Vec<Row> {
    let find = |k: PolicyKind| outcomes.iter().find(|o| o.policy == k.name() && o.knob == k.default_knob()).cloned();
    let (hpa, oracle) = (find(PolicyKind::ReactiveHpa), find(PolicyKind::Oracle));
    let ratio = |a: f64, b: f64| (b > 0.0).then(|| a / b);
    outcomes
        .into_iter()
        .filter(|o| asked.iter().any(|k| k.name() == o.policy))
        .map(|o| Row {
            cost_vs_hpa: hpa.as_ref().and_then(|h| ratio(o.cost_unit_hours, h.cost_unit_hours)),
            under_minutes_vs_hpa: hpa.as_ref().and_then(|h| ratio(o.under_minutes as f64, h.under_minutes as f64)),
            under_unit_minutes_vs_hpa: hpa.as_ref().and_then(|h| ratio(o.under_unit_minutes, h.under_unit_minutes)),
            cost_vs_oracle: oracle.as_ref().and_then(|r| ratio(o.cost_unit_hours, r.cost_unit_hours)),
            outcome: o,
        })
        .collect()
}
