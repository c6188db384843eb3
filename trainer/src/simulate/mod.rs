//! The replay: what prewarm — its own stages, under the operator's configuration — would have
//! done with a real trace, causally, against what operators run instead.
//!
//! At every `train_interval_secs` of simulated time the training stages run on the data
//! before that instant only ([`pipeline`]); every minute the plan stage runs on the latest
//! model with what the edge would have reported (its counts and the prewarm signals the
//! worker's own rule raises, [`edge`]); the capacity is what an HPA delivers from the
//! triggers of the recommended deployment ([`cluster`]): prewarm's KEDA metric beside a
//! utilisation trigger at `[plan] floor_utilisation` (`prewarm`), the KEDA metric alone
//! (`prewarm-alone`, the ablation), or the baselines' triggers ([`baselines`]). Every policy is
//! scored on the same minutes under the same [`capacity::CapacityModel`]; results are ratios to
//! `reactive-hpa` (what a team would otherwise run) and `oracle` (perfect foresight).

pub mod baselines;
pub mod capacity;
pub mod cluster;
pub mod edge;
pub mod pipeline;
pub mod plot;
pub mod store_trace;

use serde::Serialize;

use crate::config::TrainerConfig;
use crate::forecast::calendar::Occurrence;
use crate::forecast::series::{Series, SeriesError};
use capacity::Outcome;

#[derive(Debug, thiserror::Error)]
/// Why a replay could not run.
#[allow(missing_docs, reason = "a variant's fields are named in its message")]
pub enum SimulateError {
    /// The trace is unusable.
    #[error(transparent)]
    Series(#[from] SeriesError),
    #[error("the trace has {minutes} minutes; the warm-up ({warmup}) plus one day is needed")]
    /// Too short for the warm-up.
    TooShort { minutes: usize, warmup: usize },
    /// A policy name nobody knows.
    #[error("unknown policy `{0}`; known: {known}", known = PolicyKind::ALL.map(PolicyKind::name).join(", "))]
    UnknownPolicy(String),
    /// A unit capacity that is not positive.
    #[error("the unit capacity must be a positive number of demand units per minute, got {0}")]
    BadUnit(f64),
    /// The default unit capacity would be zero.
    #[error("the trace's median minute is zero: give the unit capacity explicitly")]
    ZeroMedian,
    /// A delay outside 1..=1440 minutes.
    #[error("the provisioning delay must be between 1 and 1440 minutes, got {0}")]
    BadDelay(usize),
    /// Nothing to replay.
    #[error("no region to replay")]
    NoRegions,
    #[error("training at {at}: {message}")]
    /// A training failed.
    Training { at: u64, message: String },
}

/// Demand per minute; `None` where the trace has no row (never scored, never seen).
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// Unix seconds of minute 0.
    pub start: u64,
    /// What capacity must serve each minute: requests, or with the store, the resource the
    /// requests consume.
    pub demand: Vec<Option<f64>>,
}

impl Trace {
    /// A trace from (Unix seconds, demand) points, by minute.
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

/// A provisioning policy the replay compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyKind {
    /// Knows the future: the lower bound on cost.
    Oracle,
    /// The scored window's peak, all the time.
    StaticPeak,
    /// Kubernetes' HPA on utilisation, reacting after the delay.
    ReactiveHpa,
    /// A reactive HPA with a floor of 1.2 × the demand a week before (Grafana Mimir's way).
    SeasonalNaive7d,
    /// A reactive HPA with an hourly forecast scheduled ahead (EC2 predictive scaling's scheme).
    AwsPredictive,
    /// The recommended deployment: prewarm's KEDA trigger beside the reactive floor.
    Prewarm,
    /// The ablation: prewarm's KEDA trigger alone.
    PrewarmAlone,
}

impl PolicyKind {
    /// Every policy.
    pub const ALL: [PolicyKind; 7] = [
        PolicyKind::Oracle,
        PolicyKind::StaticPeak,
        PolicyKind::ReactiveHpa,
        PolicyKind::SeasonalNaive7d,
        PolicyKind::AwsPredictive,
        PolicyKind::Prewarm,
        PolicyKind::PrewarmAlone,
    ];

    /// The policy's name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Oracle => "oracle",
            PolicyKind::StaticPeak => "static-peak",
            PolicyKind::ReactiveHpa => "reactive-hpa",
            PolicyKind::SeasonalNaive7d => "seasonal-naive-7d",
            PolicyKind::AwsPredictive => "aws-predictive",
            PolicyKind::Prewarm => "prewarm",
            PolicyKind::PrewarmAlone => "prewarm-alone",
        }
    }

    /// The knob a sweep turns: target utilisation (HPA, AWS), floor factor (seasonal naive),
    /// or for prewarm the floor's utilisation target (`[plan] floor_utilisation`).
    pub fn default_knob(self, config: &TrainerConfig) -> Option<f64> {
        match self {
            PolicyKind::Oracle | PolicyKind::StaticPeak | PolicyKind::PrewarmAlone => None,
            PolicyKind::ReactiveHpa | PolicyKind::AwsPredictive => Some(0.7),
            PolicyKind::SeasonalNaive7d => Some(1.2),
            PolicyKind::Prewarm => Some(config.plan.floor_utilisation),
        }
    }

    /// The knob values `--sweep` tries.
    pub fn sweep_knobs(self) -> Vec<f64> {
        match self {
            PolicyKind::Oracle | PolicyKind::StaticPeak | PolicyKind::PrewarmAlone => vec![],
            PolicyKind::ReactiveHpa | PolicyKind::AwsPredictive => vec![0.5, 0.6, 0.7, 0.8, 0.9],
            PolicyKind::SeasonalNaive7d => vec![1.0, 1.1, 1.2, 1.4, 1.6],
            PolicyKind::Prewarm => vec![0.6, 0.7, 0.8, 0.9, 1.0],
        }
    }
}

impl std::str::FromStr for PolicyKind {
    type Err = SimulateError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| SimulateError::UnknownPolicy(s.to_owned()))
    }
}

/// A replay's settings; the trainer's configuration is the operator's own.
#[derive(Debug, Clone)]
pub struct SimulationConfig {
    /// C, demand units one unit of capacity serves per minute; default: the median minute / 10.
    pub unit_rpm: Option<f64>,
    /// Provisioning delays replayed, in minutes.
    pub delays: Vec<usize>,
    /// Days of history before scoring starts.
    pub warmup_days: usize,
    /// Policies compared.
    pub policies: Vec<PolicyKind>,
    /// External events (the aggregate replay; the store replay reads the configured calendar).
    pub calendar: Vec<Occurrence>,
    /// Knobs that replace a policy's default (the references keep theirs).
    pub knobs: Vec<(PolicyKind, f64)>,
    /// Only minutes in `[score_from, score_until)` (Unix seconds) are scored, when set.
    pub score_from: Option<u64>,
    /// Scoring stops here (exclusive).
    pub score_until: Option<u64>,
    /// The trainer configuration the product's stages run with.
    pub trainer: TrainerConfig,
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
            score_from: None,
            score_until: None,
            trainer: TrainerConfig::default(),
        }
    }
}

impl SimulationConfig {
    /// The replay of one delay: the trainer's lead time is the delay, as an operator whose
    /// capacity takes that long would configure it (the band's quantile is chosen, and the
    /// alarm raised, for that lead time).
    pub fn at_delay(&self, delay: usize) -> Self {
        let mut one = Self { delays: vec![delay], ..self.clone() };
        one.trainer.plan.lead_time_secs = delay as u64 * 60;
        one
    }

    /// The knob a plain replay runs `kind` at: the configured one, else its default.
    pub fn knob_of(&self, kind: PolicyKind) -> Option<f64> {
        self.knobs.iter().find(|(k, _)| *k == kind).map(|(_, v)| *v).or(kind.default_knob(&self.trainer))
    }

    /// C for a trace (the configured one, else a tenth of the median minute).
    pub fn unit_for(&self, trace: &Trace) -> Result<f64, SimulateError> {
        match self.unit_rpm {
            Some(c) if c.is_finite() && c > 0.0 => Ok(c),
            Some(c) => Err(SimulateError::BadUnit(c)),
            None => {
                let median = trace.median_minute();
                if median <= 0.0 {
                    return Err(SimulateError::ZeroMedian);
                }
                Ok(median / 10.0)
            }
        }
    }
}

/// An outcome with its ratios to the references run at the same delay.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The policy's figures.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Cost over reactive HPA's at the same delay.
    pub cost_vs_hpa: Option<f64>,
    /// Under-provisioned minutes over HPA's.
    pub under_minutes_vs_hpa: Option<f64>,
    /// Under-provisioned unit-minutes over HPA's.
    pub under_unit_minutes_vs_hpa: Option<f64>,
    /// Cost over the oracle's.
    pub cost_vs_oracle: Option<f64>,
}

/// Every policy's rows, and how prewarm's own signals and bands did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Minutes in the trace.
    pub minutes: usize,
    /// Minutes without data.
    pub missing_minutes: usize,
    /// The unit capacity used.
    pub unit_rpm: f64,
    /// Days of warm-up.
    pub warmup_days: usize,
    /// Trainings run.
    pub trainings: usize,
    /// Every policy at every delay.
    pub rows: Vec<Row>,
    /// Per delay: prewarm's signals, bands and crowd response.
    pub prewarm: Vec<edge::Quality>,
    /// Wall-clock seconds the replay took.
    pub seconds: f64,
}

impl Report {
    /// Adds another delay's replay of the same trace.
    pub fn absorb(&mut self, other: Report) {
        self.rows.extend(other.rows);
        self.prewarm.extend(other.prewarm);
        self.trainings += other.trainings;
        self.seconds = self.seconds.max(other.seconds);
    }
}

impl RegionsReport {
    /// Adds another delay's replay of the same regions.
    pub fn absorb(&mut self, other: RegionsReport) {
        self.total.absorb(other.total);
        for region in other.regions {
            match self.regions.iter_mut().find(|r| r.region == region.region) {
                Some(r) => r.report.absorb(region.report),
                None => self.regions.push(region),
            }
        }
    }
}

/// Regions replayed separately, each on its own capacity, scored together: cost and
/// under-provisioning are sums over regions, the elasticity metrics means weighted by minutes.
#[derive(Debug, Clone, Serialize)]
pub struct RegionsReport {
    /// Every region together.
    pub total: Report,
    /// Each region on its own.
    pub regions: Vec<RegionReport>,
}

/// One region's replay.
#[derive(Debug, Clone, Serialize)]
pub struct RegionReport {
    /// The region.
    pub region: String,
    /// Its figures.
    #[serde(flatten)]
    pub report: Report,
}

/// The rows of `outcomes` asked for, with ratios to the references at each delay.
pub fn with_ratios(outcomes: Vec<Outcome>, asked: &[PolicyKind], config: &SimulationConfig) -> Vec<Row> {
    let mut delays: Vec<usize> = Vec::new();
    for o in &outcomes {
        if !delays.contains(&o.delay) {
            delays.push(o.delay);
        }
    }
    let reference = |kind: PolicyKind, delay: usize| {
        outcomes
            .iter()
            .find(|o| o.policy == kind.name() && o.delay == delay && o.knob == kind.default_knob(&config.trainer))
            .cloned()
    };
    let ratio = |a: f64, b: f64| (b > 0.0).then(|| a / b);
    let mut rows = Vec::with_capacity(outcomes.len());
    for delay in delays {
        let (hpa, oracle) = (reference(PolicyKind::ReactiveHpa, delay), reference(PolicyKind::Oracle, delay));
        for o in outcomes.iter().filter(|o| o.delay == delay && asked.iter().any(|k| k.name() == o.policy)) {
            rows.push(Row {
                cost_vs_hpa: hpa.as_ref().and_then(|h| ratio(o.cost_unit_hours, h.cost_unit_hours)),
                under_minutes_vs_hpa: hpa.as_ref().and_then(|h| ratio(o.under_minutes as f64, h.under_minutes as f64)),
                under_unit_minutes_vs_hpa: hpa.as_ref().and_then(|h| ratio(o.under_unit_minutes, h.under_unit_minutes)),
                cost_vs_oracle: oracle.as_ref().and_then(|r| ratio(o.cost_unit_hours, r.cost_unit_hours)),
                outcome: o.clone(),
            });
        }
    }
    rows
}
