//! One training run: the pipeline's stages composed, each a function of (data before `now`,
//! configuration, `now`): [`profile::fit`] → demand series → [`forecast::tables`] →
//! [`model::assemble`] (then the cross-region cold start), and the publish of the result.
//! The CLI, the service's periodic training and the replay (`simulate`) all call these.

use std::collections::BTreeMap;

use prewarm_shared::artifact::{ModelBundle, ModelVersion, RegionMap, RegionModel};
use prewarm_shared::classify::ClassificationRules;
use prewarm_shared::profile_meta::ResourceCost;
use prewarm_shared::{ProfileId, UnixSeconds};

use crate::config::TrainerConfig;
use crate::forecast::calendar::{Calendar, CalendarError};
use crate::forecast::cold_start::{self, RegionHistory};
use crate::forecast::engine::{Context, MinuteSeries};
use crate::forecast::feeds::{self, Feed, FeedPoint, HttpJsonFeed};
use crate::forecast::ledger::Ledger;
use crate::forecast::tables::{self, ProfileSeries};
use crate::model::{self, TrainedRegion};
use crate::profile::{self, FittedRegion, ProfileError};
use crate::publish::{DirPublisher, PublishError};
use crate::report::TrainingReport;
use crate::store::{EventStore, EventsBefore, Store, StoreError, UserEvents};

/// Why a training failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    /// The profile stage failed.
    Profile(#[from] ProfileError),
    #[error(transparent)]
    /// The store failed.
    Store(#[from] StoreError),
    #[error(transparent)]
    /// The calendar could not be read.
    Calendar(#[from] CalendarError),
    #[error(transparent)]
    /// Publishing failed.
    Publish(#[from] PublishError),
    #[error("cannot encode the model: {0}")]
    /// The model could not be encoded.
    Artifact(#[from] prewarm_shared::ArtifactError),
}

/// What the forecast stage reads beside the events: the edge's demand counts per region
/// (profile id, minute, requests), the calendar and the feeds' points.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Per region: the edge's demand counts (profile id, Unix minute, requests).
    pub edge_counts: BTreeMap<String, Vec<(u16, u64, u64)>>,
    /// Scheduled events.
    pub calendar: Calendar,
    /// Each feed's points, by feed name.
    pub feeds: Vec<(String, Vec<FeedPoint>)>,
    /// Per region: the unit capacity comes in, when the caller sizes capacity in one of its own
    /// (the replay: C of one resource a minute) rather than in the plan's instances.
    pub capacity_units: BTreeMap<String, CapacityUnit>,
}

/// A unit of capacity: what it serves a minute, in the resource `cost_of` reads off a
/// profile's cost per request.
#[derive(Debug, Clone, Copy)]
pub struct CapacityUnit {
    /// The resource one unit serves a minute.
    pub per_minute: f64,
    /// One request's cost in that resource.
    pub cost_of: fn(&ResourceCost) -> f64,
}

/// A forecast starts at `now`, unless the data ended over a week earlier (an old log being
/// inspected): then where the data ends.
const MAX_FORECAST_GAP_SECS: u64 = 7 * 86_400;

/// The demand series of each fitted profile, to `until`: its users' requests, then the edge's
/// counts for the minutes after the region's last event (minutes the edge reported nothing
/// for stay unknown).
pub fn demand_series(fitted: &FittedRegion, edge_counts: &[(u16, u64, u64)], until: u64) -> Vec<ProfileSeries> {
    let first = fitted.profiles.values().filter_map(|p| p.first).min().unwrap_or(until);
    let last_event = fitted.profiles.values().filter_map(|p| p.last).max().unwrap_or(first);
    let edge_minutes: std::collections::BTreeSet<u64> =
        edge_counts.iter().filter(|(_, m, _)| m * 60 > last_event).map(|(_, m, _)| *m).collect();
    fitted
        .model
        .profiles
        .iter()
        .map(|meta| {
            let own = fitted.profiles.get(&meta.id).map(|p| &p.per_minute);
            let mut minutes =
                tables::minutes_from_counts(own.into_iter().flatten().map(|(m, n)| (*m, *n)), first, until);
            let boundary = (last_event / 60 + 1) * 60;
            for (i, v) in minutes.values.iter_mut().enumerate() {
                let minute = minutes.start / 60 + i as u64;
                if minute * 60 >= boundary {
                    *v = edge_minutes.contains(&minute).then_some(0.0);
                }
            }
            for &(profile, minute, n) in edge_counts {
                if profile == meta.id.0
                    && minute * 60 >= boundary
                    && let Some(Some(v)) =
                        minute.checked_sub(minutes.start / 60).and_then(|i| minutes.values.get_mut(i as usize))
                {
                    *v += n as f64;
                }
            }
            ProfileSeries { profile: meta.id, minutes }
        })
        .collect()
}

/// Requests a minute one unit serves (an instance of `shape`, or the caller's `unit`), per
/// profile, and for the region's aggregate series the most of any profile (the band's choice
/// then replays an HPA at least that strong: its reference errs towards capacity).
fn unit_requests(
    model: &RegionModel,
    shape: &crate::plan::InstanceShape,
    unit: Option<&CapacityUnit>,
) -> Vec<(u16, f64)> {
    let serves = |cost: &ResourceCost| match unit {
        Some(u) => Some(u.per_minute / (u.cost_of)(cost)).filter(|r| r.is_finite() && *r > 0.0),
        None => crate::plan::requests_per_unit_minute(cost, shape),
    };
    let mut out: Vec<(u16, f64)> = model.profiles.iter().filter_map(|p| Some((p.id.0, serves(&p.cost)?))).collect();
    if let Some(most) = out.iter().map(|(_, u)| *u).reduce(f64::max) {
        out.push((crate::forecast::ledger::AGGREGATE, most));
    }
    out
}

/// The pipeline on `events` (every event before `now`, read one user at a time): profiles,
/// forecasts, models.
/// `ledger` carries the past forecasts that skill and bands are measured on (a fresh one is
/// seeded from the history).
#[allow(clippy::too_many_arguments)]
pub fn train_events(
    events: &dyn UserEvents,
    observed: &Observed,
    config: &TrainerConfig,
    rules: &ClassificationRules,
    previous: &[RegionModel],
    version: ModelVersion,
    now: UnixSeconds,
    ledger: &mut Ledger,
) -> Result<Vec<TrainedRegion>, TrainError> {
    let fitted = profile::fit(events, &config.profile_settings(), rules, previous, version, now)?;
    let mut trained: Vec<TrainedRegion> = Vec::with_capacity(fitted.len());
    let mut histories = Vec::with_capacity(fitted.len());
    for region in fitted {
        let name = region.model.region.clone();
        let last = region.profiles.values().filter_map(|p| p.last).max().unwrap_or(now.0);
        let first = region.profiles.values().filter_map(|p| p.first).min().unwrap_or(last);
        let counts = observed.edge_counts.get(&name).map_or(&[][..], Vec::as_slice);
        let edge_last = counts.iter().map(|(_, m, _)| m * 60 + 60).max().unwrap_or(0);
        let data_end = last.max(edge_last);
        let at = if now.0 <= data_end + MAX_FORECAST_GAP_SECS { now.0.max(data_end) } else { data_end };
        let series = demand_series(&region, counts, at / 60 * 60);
        let unit_requests = unit_requests(&region.model, &config.plan.instance, observed.capacity_units.get(&name));
        let ctx = Context {
            events: observed.calendar.for_region(&name),
            feeds: observed.feeds.iter().map(|(n, p)| (n.clone(), feeds::for_region(p, &name))).collect(),
            step_secs: config.forecast_step_secs,
            steps: (86_400 / config.forecast_step_secs.clamp(60, 3600)) as usize,
            band_minutes: 1,
            lookback_secs: crate::forecast::nowcast::WINDOW_MINUTES * 60,
            nowcast: true,
            lead_secs: config.plan.lead_time_secs,
            choose_band: true,
            floor_utilisation: Some(config.plan.floor_utilisation),
            unit_requests,
        };
        let forecast = tables::tables(&name, &series, UnixSeconds(at), &ctx, &config.forecast, ledger);
        let step = config.forecast_step_secs.max(1);
        let level: BTreeMap<ProfileId, f64> =
            series.iter().map(|s| (s.profile, mean_per_step(&s.minutes, step))).collect();
        histories.push((data_end.saturating_sub(first), level, config.utc_offset_of(&name)));
        trained.push(model::assemble(region, forecast));
    }
    let mut views: Vec<RegionHistory<'_>> = trained
        .iter_mut()
        .zip(histories)
        .map(|(t, (history_secs, level, utc_offset_minutes))| RegionHistory {
            model: &mut t.model,
            history_secs,
            level,
            utc_offset_minutes,
        })
        .collect();
    let notes = cold_start::borrow_across_regions(&mut views);
    for (region, profile, note) in notes {
        if let Some(p) = trained[region].profiles.get_mut(&profile) {
            p.forecast_note = Some(note);
        }
    }
    Ok(trained)
}

/// Mean requests per step from a series' first request on.
fn mean_per_step(minutes: &MinuteSeries, step_secs: u64) -> f64 {
    let Some(first) = minutes.values.iter().position(|v| v.is_some_and(|v| v > 0.0)) else { return 0.0 };
    let known: Vec<f64> = minutes.values[first..].iter().flatten().copied().collect();
    known.iter().sum::<f64>() / known.len().max(1) as f64 * step_secs as f64 / 60.0
}

/// What the forecast stage reads beside the store's events, as of `now`.
pub fn observed(
    store: &Store,
    config: &TrainerConfig,
    events: &dyn UserEvents,
    now: UnixSeconds,
) -> Result<Observed, TrainError> {
    let calendar = match &config.calendar {
        Some(path) => Calendar::load(path)?,
        None => Calendar::default(),
    };
    let mut edge_counts = BTreeMap::new();
    // The regions the events know (wherever they are stored), with the edge's counts.
    for region in events.users_per_region()?.into_keys() {
        let counts = store.demand_for_region(&region)?;
        edge_counts.insert(region, counts);
    }
    let from = events.first_time()?.unwrap_or(now.0);
    Ok(Observed { edge_counts, calendar, feeds: fetch_feeds(config, from, now), capacity_units: BTreeMap::new() })
}

/// Every configured feed's points from the first event (`from`) to two days after `now`. A
/// feed that fails is logged and left out: forecasts without it beat no training at all.
fn fetch_feeds(config: &TrainerConfig, from: u64, now: UnixSeconds) -> Vec<(String, Vec<FeedPoint>)> {
    config
        .feeds
        .iter()
        .filter_map(|feed_config| {
            let feed = HttpJsonFeed::new(feed_config.clone());
            match feed.fetch(from, now.0 + 2 * 86_400) {
                Ok(points) => Some((feed.name().to_owned(), points)),
                Err(e) => {
                    tracing::warn!(error = %e, "feed left out of this training");
                    None
                }
            }
        })
        .collect()
}

/// The pipeline on everything in the store, with a fresh ledger.
pub fn train(
    store: &Store,
    config: &TrainerConfig,
    rules: &ClassificationRules,
    previous: &[RegionModel],
    version: ModelVersion,
    now: UnixSeconds,
) -> Result<Vec<TrainedRegion>, TrainError> {
    train_with(store, config, rules, previous, version, now, &mut Ledger::default())
}

/// The pipeline on everything in the store, with the service's ledger.
pub fn train_with(
    store: &Store,
    config: &TrainerConfig,
    rules: &ClassificationRules,
    previous: &[RegionModel],
    version: ModelVersion,
    now: UnixSeconds,
    ledger: &mut Ledger,
) -> Result<Vec<TrainedRegion>, TrainError> {
    train_from(store, store, config, rules, previous, version, now, ledger)
}

/// The pipeline on the events in `events` (SQLite or ClickHouse) and the edge's counts in
/// `store`, with the service's ledger.
#[allow(clippy::too_many_arguments, reason = "the pipeline's inputs, each distinct")]
pub fn train_from(
    store: &Store,
    events: &dyn EventStore,
    config: &TrainerConfig,
    rules: &ClassificationRules,
    previous: &[RegionModel],
    version: ModelVersion,
    now: UnixSeconds,
    ledger: &mut Ledger,
) -> Result<Vec<TrainedRegion>, TrainError> {
    // Read from the store one user at a time, never all at once.
    let events = EventsBefore { store: events, before: now.0.max(1) };
    let observed = observed(store, config, &events, now)?;
    train_events(&events, &observed, config, rules, previous, version, now, ledger)
}

/// The outcome of a run.
#[derive(Debug)]
pub struct TrainRun {
    /// The version trained (the current one when nothing was published).
    pub version: ModelVersion,
    /// Every region's outcome.
    pub regions: Vec<TrainedRegion>,
    /// False when the model is identical in content to the published one, or publishing is
    /// paused.
    pub published: bool,
    /// Why publishing is paused (after a rollback), when it is.
    pub paused: Option<String>,
}

/// Trains on everything in the store and publishes the result as the next version.
pub fn train_and_publish(
    store: &Store,
    config: &TrainerConfig,
    rules: &ClassificationRules,
    publisher: &DirPublisher,
    now: UnixSeconds,
    ledger: &mut Ledger,
) -> Result<TrainRun, TrainError> {
    train_and_publish_from(store, store, config, rules, publisher, now, ledger)
}

/// [`train_and_publish`] with the events read from `events` (SQLite or ClickHouse).
pub fn train_and_publish_from(
    store: &Store,
    events: &dyn EventStore,
    config: &TrainerConfig,
    rules: &ClassificationRules,
    publisher: &DirPublisher,
    now: UnixSeconds,
    ledger: &mut Ledger,
) -> Result<TrainRun, TrainError> {
    let previous = publisher.current()?;
    let previous_models: Vec<RegionModel> = previous.as_ref().map(|(_, r)| r.clone()).unwrap_or_default();
    let version = ModelVersion(publisher.next_version()?);
    // Events at `now` itself belong to the next training: a stage sees data before `now`.
    let regions = train_from(store, events, config, rules, &previous_models, version, UnixSeconds(now.0 + 1), ledger)?;
    let models: Vec<RegionModel> = regions.iter().map(|r| r.model.clone()).collect();
    // Publishing identical content again is a no-op (versions aside).
    let unchanged = previous_models.len() == models.len()
        && previous_models.iter().zip(&models).all(|(a, b)| {
            let mut b = b.clone();
            b.model_version = a.model_version;
            b.forecast.start = a.forecast.start;
            *a == b
        });
    if unchanged {
        let current = previous.as_ref().map_or(version, |(p, _)| p.version);
        return Ok(TrainRun { version: current, regions, published: false, paused: None });
    }
    let default_region =
        models.iter().find(|m| m.region == config.default_region).or(models.first()).map_or("", |m| m.region.as_str());
    let (_, entries) = ModelBundle::encode(&models, version, now, default_region, RegionMap::default())?;
    match publisher.publish(&entries) {
        Err(crate::publish::PublishError::Paused(note)) => {
            let current = previous.as_ref().map_or(version, |(p, _)| p.version);
            return Ok(TrainRun { version: current, regions, published: false, paused: Some(note) });
        }
        other => other?,
    }
    TrainingReport::of(version, now, &regions).write(&config.models_dir());
    Ok(TrainRun { version, regions, published: true, paused: None })
}
