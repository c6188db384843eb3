//! The service core of `prewarm serve`: the state it runs on, and what the HTTP layer, the KEDA
//! scaler and the schedulers all call — the plan now, and the plan cached at each actuation
//! cycle that the scaler answers from (so a metrics poll never trains or plans, and a plan that
//! stopped being refreshed is never served as fresh).

use std::sync::{Arc, Mutex, RwLock};

use prewarm_shared::UnixSeconds;
use prewarm_shared::classify::ClassificationRules;

use crate::config::TrainerConfig;
use crate::ingest::guard;
use crate::store::{EventStore, Store, StoreError};

/// Why a service action failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    /// The store failed.
    Store(#[from] StoreError),
    #[error("reading the published model: {0}")]
    /// Publishing failed.
    Publish(#[from] crate::publish::PublishError),
    #[error("the {0} lock is poisoned (a thread panicked holding it)")]
    /// A lock was poisoned by a panic (names which).
    Poisoned(&'static str),
    #[error(transparent)]
    /// Training failed.
    Train(#[from] crate::train::TrainError),
}

/// What `prewarm serve` runs on, shared by the HTTP handlers, the KEDA scaler and the schedulers.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The configuration the service started with.
    pub config: Arc<TrainerConfig>,
    /// The writer's connection (reads go through `readers`).
    pub store: Arc<Mutex<Store>>,
    /// How requests are classified.
    pub rules: Arc<ClassificationRules>,
    /// The clock, injected so tests can pin it.
    pub clock: fn() -> UnixSeconds,
    /// Per-source limits: edge signals, and admin actions (tried before their token).
    pub signal_rate: Arc<guard::RateLimiter>,
    /// Admin actions per source address.
    pub admin_rate: Arc<guard::RateLimiter>,
    /// `trusted_proxies`, parsed.
    pub trusted_proxies: Arc<Vec<crate::config::Cidr>>,
    /// Read connections beside the writer (`store`).
    pub readers: Arc<crate::store::Readers>,
    /// Counters and firing alerts, for /metrics and /v1/status.
    pub monitor: Arc<crate::monitor::Monitor>,
    /// The plan of the last actuation cycle: what the KEDA scaler answers from.
    pub plan_cache: Arc<PlanCache>,
    /// Where events go when not in the SQLite store (`[clickhouse]`): `None`, SQLite.
    pub events: Option<Arc<Mutex<Box<dyn EventStore + Send>>>>,
}

impl AppState {
    /// The service's state, with its rate limiters, readers and monitor.
    pub fn new(config: TrainerConfig, store: Store, rules: ClassificationRules, clock: fn() -> UnixSeconds) -> Self {
        let signal_rate = guard::RateLimiter::new(config.signal_rate_per_sec, f64::from(config.signal_burst));
        let trusted_proxies = config.trusted_proxies.iter().filter_map(|c| crate::config::Cidr::parse(c)).collect();
        let store = Arc::new(Mutex::new(store));
        let readers = crate::store::Readers::new(store.clone(), config.max_concurrent_reads);
        Self {
            signal_rate: Arc::new(signal_rate),
            admin_rate: Arc::new(guard::RateLimiter::new(
                config.admin_attempts_per_min / 60.0,
                f64::from(config.admin_burst),
            )),
            trusted_proxies: Arc::new(trusted_proxies),
            readers: Arc::new(readers),
            config: Arc::new(config),
            store,
            rules: Arc::new(rules),
            clock,
            monitor: Arc::new(crate::monitor::Monitor::default()),
            plan_cache: Arc::new(PlanCache::default()),
            events: None,
        }
    }

    /// Events stored: the event store's count with `[clickhouse]`, else `sqlite` (the SQLite
    /// store's total, read by the caller).
    pub fn events_stored(&self, sqlite: u64) -> Result<u64, StoreError> {
        match &self.events {
            Some(events) => events.lock().map_err(|_| StoreError::Poisoned)?.event_count(),
            None => Ok(sqlite),
        }
    }

    /// The service writing events to `events` (ClickHouse) instead of its SQLite store.
    pub fn with_events(mut self, events: Box<dyn EventStore + Send>) -> Self {
        self.events = Some(Arc::new(Mutex::new(events)));
        self
    }
}

/// The wall clock, in Unix seconds.
pub fn system_clock() -> UnixSeconds {
    UnixSeconds(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

/// Why the cached plan cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[allow(missing_docs, reason = "a variant's fields are named in its message")]
pub enum PlanUnavailable {
    #[error("no plan yet: the first actuation cycle has not run since the trainer started")]
    /// No actuation cycle has run yet.
    NotYet,
    #[error("no model published yet: nothing to plan from")]
    /// Nothing is published.
    NoModel,
    #[error(
        "the last plan is {age_secs} s old (more than [actuate] max_plan_age_secs = {max_secs}): actuation has stopped refreshing it"
    )]
    /// The cached plan is older than allowed.
    Stale { age_secs: u64, max_secs: u64 },
}

/// The plan of the last actuation cycle.
#[derive(Debug, Default)]
pub struct PlanCache {
    latest: RwLock<Option<Arc<PlanView>>>,
}

impl PlanCache {
    /// Replaces the cached plan.
    pub fn store(&self, view: PlanView) {
        let view = Arc::new(view);
        match self.latest.write() {
            Ok(mut latest) => *latest = Some(view),
            // A writer panicked mid-assignment: the slot holds a whole value either way.
            Err(poisoned) => *poisoned.into_inner() = Some(view),
        }
    }

    /// The cached plan when it was made at most `max_age_secs` before `now` and has a model.
    pub fn fresh(&self, now: UnixSeconds, max_age_secs: u64) -> Result<Arc<PlanView>, PlanUnavailable> {
        let latest = match self.latest.read() {
            Ok(latest) => latest.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let view = latest.ok_or(PlanUnavailable::NotYet)?;
        let age_secs = now.0.saturating_sub(view.at.0);
        if age_secs > max_age_secs {
            return Err(PlanUnavailable::Stale { age_secs, max_secs: max_age_secs });
        }
        if view.pointer.is_none() || view.models.is_empty() {
            return Err(PlanUnavailable::NoModel);
        }
        Ok(view)
    }
}

/// The published model and the plan for it now, with the edge's recent prewarm signals.
#[derive(Debug, Clone, Default)]
pub struct PlanView {
    /// The published pointer, if any.
    pub pointer: Option<prewarm_shared::ModelPointer>,
    /// The published region models.
    pub models: Vec<prewarm_shared::RegionModel>,
    /// Each region's plan.
    pub plans: Vec<(String, Vec<crate::plan::PlanStep>)>,
    /// With `[[plan.pool]]`: each region × pool's plan.
    pub pools: Vec<crate::plan::PoolPlan>,
    /// The edge prewarm signals still in effect when it was planned.
    pub signals_in_effect: usize,
    /// When it was planned, and the lead time it was planned with.
    pub at: UnixSeconds,
    /// The lead time it was planned with.
    pub lead_secs: u64,
}

impl PlanView {
    /// A region's (or one of its pools') steps, and the step length.
    fn steps_of(&self, region: &str, pool: Option<&str>) -> Option<(&[crate::plan::PlanStep], u64)> {
        let steps = match pool {
            None => &self.plans.iter().find(|(r, _)| r == region)?.1,
            Some(pool) => &self.pools.iter().find(|p| p.region == region && p.pool == pool)?.steps,
        };
        let step = self.models.iter().find(|m| m.region == region).map_or(300, |m| u64::from(m.forecast.step_secs));
        Some((steps, step))
    }

    /// What a region (or one of its pools) should run at `now`: the most any step up to one
    /// lead time ahead needs. `None` when the plan does not reach `now`.
    pub fn desired(&self, region: &str, pool: Option<&str>, now: UnixSeconds) -> Option<u32> {
        let (steps, step) = self.steps_of(region, pool)?;
        crate::plan::desired_units(steps, now, self.lead_secs, step)
    }

    /// The balloon pods to run at `now` so nodes are ready `node_lead_secs` ahead
    /// ([`crate::plan::node_headroom`]).
    pub fn node_headroom(
        &self,
        region: &str,
        pool: Option<&str>,
        now: UnixSeconds,
        node_lead_secs: u64,
    ) -> Option<u32> {
        let (steps, step) = self.steps_of(region, pool)?;
        crate::plan::node_headroom(steps, now, self.lead_secs, node_lead_secs, step)
    }

    /// The regions of `GET /v1/plan` and of the webhook's plan deliveries: per region its steps
    /// and, with pools configured, each pool's steps and profiles.
    pub fn regions(&self) -> Vec<RegionPlan> {
        self.plans
            .iter()
            .map(|(region, steps)| {
                let pools: Vec<PoolSteps> = self
                    .pools
                    .iter()
                    .filter(|p| &p.region == region)
                    .map(|p| PoolSteps {
                        pool: p.pool.clone(),
                        profiles: p.profiles.iter().map(|id| id.0).collect(),
                        steps: p.steps.clone(),
                    })
                    .collect();
                RegionPlan { region: region.clone(), steps: steps.clone(), pools }
            })
            .collect()
    }
}

/// One region's plan as the API and the webhook send it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct RegionPlan {
    /// The region.
    pub region: String,
    /// Its plan steps.
    pub steps: Vec<crate::plan::PlanStep>,
    /// With pools configured: each pool's steps and the profiles it serves.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<PoolSteps>,
}

/// One pool's share of a region's plan.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct PoolSteps {
    /// The pool.
    pub pool: String,
    /// The profile ids it serves.
    pub profiles: Vec<u16>,
    /// Its plan steps.
    pub steps: Vec<crate::plan::PlanStep>,
}

/// Blocking: reads the store and the models directory.
pub fn plan_now(state: &AppState, now: UnixSeconds) -> Result<PlanView, ServiceError> {
    let config = &state.config;
    let live = state.readers.read(|store| crate::plan::Live::from_store(store, now, config.plan.nowcast_decay_secs))?;
    let current = crate::publish::DirPublisher::new(config.models_dir()).current()?;
    let (pointer, models) = current.map_or((None, Vec::new()), |(p, m)| (Some(p), m));
    let plans = crate::plan::plan_regions(&models, &config.plan, now, &live);
    let pools = crate::plan::plan_pools(&models, &config.plan, now, &live);
    Ok(PlanView {
        pointer,
        models,
        plans,
        pools,
        signals_in_effect: live.signals.len(),
        at: now,
        lead_secs: config.plan.lead_time_secs,
    })
}

/// One tick of the service's periodic training, at `now`: events past `retention_days` are
/// pruned, the stages run on the store (through a connection of its own, so that WAL readers
/// do not block the ingest endpoint's writes), and a new version goes on to the configured
/// targets (`publish::Targets`). `ledger` holds the past forecasts between ticks.
pub fn training_tick(
    state: &AppState,
    now: UnixSeconds,
    ledger: &mut crate::forecast::ledger::Ledger,
) -> Result<crate::train::TrainRun, ServiceError> {
    let cutoff = now.0.saturating_sub(state.config.retention_days * 86_400);
    let pruned = state.store.lock().map_err(|_| ServiceError::Poisoned("store"))?.prune(cutoff)?;
    tracing::debug!(?pruned, "retention");
    let store = Store::open(&state.config.store_path())?;
    let publisher = crate::publish::DirPublisher::new(state.config.models_dir());
    let mut train_on = |events: &mut dyn EventStore| {
        let dropped = events.prune_events(cutoff)?;
        tracing::debug!(?dropped, "retention of the event store");
        crate::train::train_and_publish_from(&store, &*events, &state.config, &state.rules, &publisher, now, ledger)
    };
    let run = match (&state.config.clickhouse, &state.events) {
        // On a connection of its own: ingest never waits for the training's long read.
        (Some(clickhouse), Some(_)) => train_on(&mut *crate::store::clickhouse::open(clickhouse)?)?,
        // An event store given without its configuration (tests): under the writers' lock.
        (None, Some(events)) => train_on(&mut **events.lock().map_err(|_| ServiceError::Poisoned("event store"))?)?,
        (_, None) => crate::train::train_and_publish(&store, &state.config, &state.rules, &publisher, now, ledger)?,
    };
    if let Some(note) = &run.paused {
        tracing::warn!(%note, "trained, not published: publishing is paused");
    }
    if run.published {
        let targets =
            crate::publish::Targets::from_config(state.config.kv.as_ref(), state.config.object_store.as_ref())?;
        targets.publish(&publisher.current_entries()?)?;
    }
    Ok(run)
}

/// Rolls the published model back to `version` (default: the one before the current) and
/// pushes it to the configured targets; publishing stays paused until resumed, so the next
/// periodic training does not undo it.
pub fn rollback(
    state: &AppState,
    version: Option<u32>,
) -> Result<Vec<prewarm_shared::artifact::KvEntry>, ServiceError> {
    let entries = crate::publish::DirPublisher::new(state.config.models_dir()).rollback(version, (state.clock)().0)?;
    crate::publish::Targets::from_config(state.config.kv.as_ref(), state.config.object_store.as_ref())?
        .publish(&entries)?;
    Ok(entries)
}

/// Lifts the pause a rollback put on publishing; returns whether one was in effect.
pub fn resume_publishing(state: &AppState) -> Result<bool, ServiceError> {
    Ok(crate::publish::DirPublisher::new(state.config.models_dir()).resume()?)
}
