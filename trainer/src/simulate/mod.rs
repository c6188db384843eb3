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
}

/// Demand per minute; `None` where the trace has no row (never scored, never seen).
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// Unix seconds of minute 0.
    pub start: u64,
    pub demand: Vec<Option<f64>>,
}

impl Trace {
    pub fn from_points(points: &[(u64, f64)]) -> Result<Self, SimulateError> {
        let series = Series::from_points(points, 60)?;
        Ok(Self { start: series.start, demand: series.values })
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
}

impl Default for SimulationConfig {
    fn default() -> Self {
        Self {
            unit_rpm: None,
            delays: vec![5],
            warmup_days: 14,
            policies: PolicyKind::ALL.to_vec(),
            calendar: Vec::new(),
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
    prewarm: HourlySchedule,
}

impl Forecasts {
    /// `calendar`: external events for the policies that take a calendar (prewarm's).
    pub fn build(trace: &Trace, policies: &[PolicyKind], calendar: &[Occurrence]) -> Self {
        let empty = || HourlySchedule::build(&[], trace.start, &AWS_SCHEDULE, &[]);
        let wants = |k| policies.contains(&k);
        Self {
            aws: if wants(PolicyKind::AwsPredictive) {
                HourlySchedule::build(&trace.demand, trace.start, &AWS_SCHEDULE, &[])
            } else {
                empty()
            },
            prewarm: if wants(PolicyKind::Prewarm) {
                HourlySchedule::build(&trace.demand, trace.start, &PREWARM_SCHEDULE, calendar)
            } else {
                empty()
            },
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
        PolicyKind::Prewarm => policy::run(&mut Prewarm::new(&forecasts.prewarm, *model, knob), &trace.demand, model),
    };
    let ready = model.ready(&targets);
    (targets, ready)
}

/// Replays and scores the configured policies at each delay, with ratios to the references.
pub fn simulate(trace: &Trace, config: &SimulationConfig) -> Result<Report, SimulateError> {
    run(trace, config, |kind| vec![kind.default_knob()])
}

/// Each policy at each of its knob values, for the cost against under-provisioning frontier.
pub fn sweep(trace: &Trace, config: &SimulationConfig) -> Result<Report, SimulateError> {
    run(trace, config, |kind| match kind.sweep_knobs() {
        knobs if knobs.is_empty() => vec![None],
        knobs => knobs.into_iter().map(Some).collect(),
    })
}

/// Every (policy, knob) at every delay. The references (oracle, HPA at its default) are
/// scored even when not asked for: every ratio needs them.
fn run(
    trace: &Trace,
    config: &SimulationConfig,
    knobs_of: impl Fn(PolicyKind) -> Vec<Option<f64>>,
) -> Result<Report, SimulateError> {
    let started = std::time::Instant::now();
    let forecasts = Forecasts::build(trace, &config.policies, &config.calendar);
    let mut rows = Vec::new();
    let mut unit_rpm = 0.0;
    for &delay in &config.delays {
        let model = config.model(trace, delay)?;
        unit_rpm = model.unit_rpm;
        let mut outcomes: Vec<Outcome> = Vec::new();
        let references = [PolicyKind::Oracle, PolicyKind::ReactiveHpa].map(|k| (k, k.default_knob()));
        let asked = config.policies.iter().flat_map(|&k| knobs_of(k).into_iter().map(move |knob| (k, knob)));
        for (kind, knob) in references.into_iter().chain(asked) {
            if outcomes.iter().any(|o| o.policy == kind.name() && o.knob == knob) {
                continue;
            }
            let (targets, ready) = replay(kind, knob, trace, &model, &forecasts);
            outcomes.push(capacity::score(kind.name(), knob, &model, &trace.demand, &targets, &ready));
        }
        rows.extend(with_ratios(outcomes, &config.policies));
    }
    Ok(Report {
        minutes: trace.demand.len(),
        missing_minutes: trace.demand.iter().filter(|d| d.is_none()).count(),
        unit_rpm,
        warmup_days: config.warmup_days,
        rows,
        seconds: started.elapsed().as_secs_f64(),
    })
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
