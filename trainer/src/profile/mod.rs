//! Behaviour profiles per region: feature vectors from the store, standardised, clustered,
//! matched to the previous model's ids, labelled and costed; the result is one `RegionModel`
//! per region, ready to publish.

pub mod cluster;
pub mod describe;
pub mod evaluate;
pub mod features;
pub mod priority;
pub mod stable_ids;

use std::collections::BTreeMap;

use ndarray::Array2;
use prewarm_shared::ProfileId;
use prewarm_shared::artifact::{
    AssignmentParams, ForecastTable, ModelVersion, Normalisation, PriorityClass, ProfileMeta, RegionModel,
};
use prewarm_shared::assign::assign_profile;
use prewarm_shared::classify::ClassificationRules;
use prewarm_shared::features::{FEATURE_DIM, FeatureSchema, FeatureVector, UnixSeconds, index};

use self::cluster::{ClusterError, Clustering};
use self::features::{UserFeatures, event_owner, user_features};
use crate::config::TrainerConfig;
use crate::ingest::event::Event;
use crate::publish::diff::raw_centroid;
use crate::store::{Store, StoreError};

/// The smallest standard deviation used to standardise a feature: a feature (nearly) constant
/// in the training data must not turn tiny differences into huge distances.
const MIN_SCALE: f64 = 0.05;

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("no events in the store: nothing to train on (import logs or POST /v1/events first)")]
    NoData,
    #[error(transparent)]
    Calendar(#[from] crate::forecast::calendar::CalendarError),
    #[error("priority rules name route classes the classification rules do not define: {0:?} (defined: {1:?})")]
    UnknownRoute(Vec<String>, Vec<String>),
}

/// One region's training outcome.
#[derive(Debug, Clone)]
pub struct TrainedRegion {
    pub model: RegionModel,
    pub users: usize,
    /// The region had too few users and uses the global profiles.
    pub borrowed_global: bool,
    pub silhouette: f64,
    pub retired: Vec<ProfileId>,
    /// Each training user's profile index, in `users_of_region` order (for evaluation).
    pub user_profiles: Vec<(prewarm_shared::signals::UserHash, ProfileId)>,
    /// Why each profile has its priority class.
    pub priority_reasons: Vec<(ProfileId, String)>,
    /// Each profile's held-out forecast skill (profiles with 15 days or more of history).
    pub forecast_skill: Vec<(ProfileId, crate::forecast::demand::Skill)>,
    /// Seconds of history the region has (its first event to its last).
    pub history_secs: u64,
    /// Each profile's mean requests per forecast step since its first request.
    pub level: Vec<(ProfileId, f64)>,
    /// How a profile's forecast was made when not from its own history.
    pub forecast_notes: Vec<(ProfileId, String)>,
}

/// A region with under this much history borrows each profile's daily shape from the most
/// similar profile of a region that has more (its own too short to show a day and a week).
const YOUNG_REGION_SECS: u64 = 14 * 86_400;

/// Cold start across regions: each profile of a young region takes the forecast shape of the
/// nearest profile (same label first, else nearest centroid in raw units) of a mature region,
/// moved to its own local time and scaled to its own level.
pub fn borrow_across_regions(regions: &mut [TrainedRegion], config: &TrainerConfig) {
    let day_steps = |r: &TrainedRegion| (86_400 / u64::from(r.model.forecast.step_secs.max(1))) as usize;
    let mature: Vec<usize> = (0..regions.len()).filter(|&i| regions[i].history_secs >= YOUNG_REGION_SECS).collect();
    if mature.is_empty() {
        return;
    }
    for young in 0..regions.len() {
        if regions[young].history_secs >= YOUNG_REGION_SECS {
            continue;
        }
        let offset = config.utc_offset_of(&regions[young].model.region);
        let mut borrowed = Vec::new();
        for (i, meta) in regions[young].model.profiles.iter().enumerate() {
            let Some(raw) = raw_centroid(&regions[young].model, i) else { continue };
            let level = regions[young].level.iter().find(|(id, _)| *id == meta.id).map_or(0.0, |(_, l)| *l);
            if level <= 0.0 {
                continue;
            }
            // Same label first, then the nearest centroid (in the donor's standard units).
            let donor = mature
                .iter()
                .flat_map(|&d| (0..regions[d].model.profiles.len()).map(move |j| (d, j)))
                .filter_map(|(d, j)| {
                    let model = &regions[d].model;
                    let other = raw_centroid(model, j)?;
                    let distance: f64 = raw
                        .iter()
                        .zip(&other)
                        .zip(&model.normalisation.scale)
                        .map(|((a, b), s)| (f64::from(a - b) / f64::from(s.max(0.05))).powi(2))
                        .sum::<f64>()
                        .sqrt();
                    let label_differs = model.profiles[j].label != meta.label;
                    Some(((label_differs, distance), d, j))
                })
                .min_by(|a, b| a.0.0.cmp(&b.0.0).then(a.0.1.total_cmp(&b.0.1)));
            let Some((_, d, j)) = donor else { continue };
            let donor_model = &regions[d].model;
            let Some(series) = donor_model.forecast.series.iter().find(|s| s.profile == donor_model.profiles[j].id)
            else {
                continue;
            };
            let day = day_steps(&regions[d]).min(series.expected.len()).max(1);
            let mean = series.expected[..day].iter().map(|v| f64::from(*v)).sum::<f64>() / day as f64;
            if mean <= 0.0 {
                continue;
            }
            // The same local time: the donor's UTC slot plus the offset difference, and the
            // two tables' start difference; a day wraps around.
            let step = i64::from(donor_model.forecast.step_secs.max(1));
            let shift_secs = i64::from(offset - config.utc_offset_of(&donor_model.region)) * 60
                + (regions[young].model.forecast.start.0 as i64 - donor_model.forecast.start.0 as i64);
            let shift = shift_secs / step;
            let scale = level / mean;
            let len = regions[young].model.forecast.series.iter().map(|s| s.expected.len()).max().unwrap_or(day);
            let at = |values: &[f32], k: usize| -> f32 {
                let index = (k as i64 + shift).rem_euclid(day as i64) as usize;
                (f64::from(values[index]) * scale) as f32
            };
            let expected: Vec<f32> = (0..len).map(|k| at(&series.expected, k)).collect();
            let upper: Vec<f32> = (0..len).map(|k| at(&series.upper, k)).collect();
            let note = format!(
                "region under 14 days old: shape of region {} profile {} ({}), moved {:+} min to local time, scaled to {:.1} requests per step",
                donor_model.region,
                donor_model.profiles[j].id.0,
                donor_model.profiles[j].label,
                offset - config.utc_offset_of(&donor_model.region),
                level
            );
            borrowed.push((meta.id, expected, upper, note));
        }
        let region = &mut regions[young];
        for (id, expected, upper, note) in borrowed {
            if let Some(s) = region.model.forecast.series.iter_mut().find(|s| s.profile == id) {
                s.expected = expected;
                s.upper = upper;
                region.forecast_notes.push((id, note));
            }
        }
    }
}

/// Every configured feed's points from the first event to two days after `now`. A feed that
/// fails is logged and left out: forecasts without it beat no training at all.
fn fetch_feeds(
    config: &TrainerConfig,
    events: &[Event],
    now: UnixSeconds,
) -> Vec<(String, Vec<crate::forecast::feeds::FeedPoint>)> {
    use crate::forecast::feeds::{Feed, HttpJsonFeed};
    let from = events.iter().map(|e| e.time).min().unwrap_or(now.0);
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

/// Standardisation parameters of a data set.
struct Scaler {
    mean: Vec<f64>,
    scale: Vec<f64>,
}

impl Scaler {
    fn fit(rows: &[&UserFeatures]) -> Self {
        let n = rows.len().max(1) as f64;
        let mut mean = vec![0.0; FEATURE_DIM];
        for r in rows {
            for (m, x) in mean.iter_mut().zip(&r.features) {
                *m += f64::from(*x) / n;
            }
        }
        let mut var = [0.0; FEATURE_DIM];
        for r in rows {
            for ((v, x), m) in var.iter_mut().zip(&r.features).zip(&mean) {
                *v += (f64::from(*x) - m).powi(2) / n;
            }
        }
        Self { mean, scale: var.iter().map(|v| v.sqrt().max(MIN_SCALE)).collect() }
    }

    fn matrix(&self, rows: &[&UserFeatures]) -> Array2<f64> {
        Array2::from_shape_fn((rows.len(), FEATURE_DIM), |(i, j)| {
            (f64::from(rows[i].features[j]) - self.mean[j]) / self.scale[j]
        })
    }

    fn raw(&self, standardised: ndarray::ArrayView1<'_, f64>) -> FeatureVector {
        let mut out = [0.0f32; FEATURE_DIM];
        for (j, o) in out.iter_mut().enumerate() {
            *o = (standardised[j] * self.scale[j] + self.mean[j]) as f32;
        }
        out
    }
}

/// Trains every region found in the store. `previous` is the currently published model (for
/// stable ids); `now` stamps the (empty, until forecasting runs) forecast table.
pub fn train(
    store: &Store,
    config: &TrainerConfig,
    rules: &ClassificationRules,
    previous: &[RegionModel],
    version: ModelVersion,
    now: UnixSeconds,
) -> Result<Vec<TrainedRegion>, ProfileError> {
    let unknown = config.priority.unknown_routes(&rules.route_classes);
    if !unknown.is_empty() {
        return Err(ProfileError::UnknownRoute(
            unknown.into_iter().map(str::to_owned).collect(),
            rules.route_classes.clone(),
        ));
    }
    let events = store.events_by_user(None)?;
    if events.is_empty() {
        return Err(ProfileError::NoData);
    }
    let calendar = match &config.calendar {
        Some(path) => crate::forecast::calendar::Calendar::load(path)?,
        None => crate::forecast::calendar::Calendar::default(),
    };
    let feeds = fetch_feeds(config, &events, now);
    let users = user_features(&events, |region| config.utc_offset_of(region));
    let owners = event_owner(&events, &users);
    let mut by_region: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, u) in users.iter().enumerate() {
        by_region.entry(&u.region).or_default().push(i);
    }
    let all: Vec<usize> = (0..users.len()).collect();
    let mut global: Option<(Scaler, Clustering)> = None;
    let mut out = Vec::new();
    for (region, members) in &by_region {
        let borrowed = members.len() < config.profiles.min_users_per_region;
        let fit = |indices: &[usize]| -> Result<(Scaler, Clustering), ProfileError> {
            let rows: Vec<&UserFeatures> = indices.iter().map(|&i| &users[i]).collect();
            let scaler = Scaler::fit(&rows);
            let clustering = cluster::choose_k(&scaler.matrix(&rows), &config.profiles)?;
            Ok((scaler, clustering))
        };
        let owned;
        let (scaler, clustering) = if borrowed {
            if global.is_none() {
                global = Some(fit(&all)?);
            }
            let Some(g) = global.as_ref() else { unreachable!() };
            (&g.0, &g.1)
        } else {
            owned = fit(members)?;
            (&owned.0, &owned.1)
        };
        let previous_region = previous.iter().find(|m| m.region == *region);
        out.push(build_region(
            region,
            members,
            &users,
            &events,
            &owners,
            scaler,
            clustering,
            previous_region,
            config,
            rules,
            version,
            now,
            borrowed,
            &calendar,
            &feeds,
            &store.demand_for_region(region)?,
        ));
    }
    borrow_across_regions(&mut out, config);
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn build_region(
    region: &str,
    members: &[usize],
    users: &[UserFeatures],
    events: &[Event],
    owners: &[usize],
    scaler: &Scaler,
    clustering: &Clustering,
    previous: Option<&RegionModel>,
    config: &TrainerConfig,
    rules: &ClassificationRules,
    version: ModelVersion,
    now: UnixSeconds,
    borrowed: bool,
    calendar: &crate::forecast::calendar::Calendar,
    feeds: &[(String, Vec<crate::forecast::feeds::FeedPoint>)],
    edge_counts: &[(u16, u64, u64)],
) -> TrainedRegion {
    let k = clustering.centroids.nrows();
    let raw: Vec<FeatureVector> = clustering.centroids.rows().into_iter().map(|c| scaler.raw(c)).collect();
    // Stable ids: compare with the previous centroids in this training's standard units.
    let (old_ids, old_raw): (Vec<ProfileId>, Vec<FeatureVector>) = previous
        .map(|p| {
            p.profiles
                .iter()
                .enumerate()
                .filter_map(|(i, meta)| {
                    let z = p.centroid(i)?;
                    let mut raw = [0.0f32; FEATURE_DIM];
                    for j in 0..FEATURE_DIM {
                        raw[j] = z[j] * p.normalisation.scale[j] + p.normalisation.mean[j];
                    }
                    Some((meta.id, raw))
                })
                .unzip()
        })
        .unwrap_or_default();
    let next_id = old_ids.iter().map(|id| id.0).max().map_or(1, |m| m.saturating_add(1));
    let distance = |i: usize, j: usize| -> f64 {
        (0..FEATURE_DIM)
            .map(|f| ((f64::from(raw[i][f]) - f64::from(old_raw[j][f])) / scaler.scale[f]).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let ids = stable_ids::assign_ids(k, &old_ids, distance, f64::from(config.profiles.max_match_distance), next_id);

    // Region members and their clusters (a borrowed clustering labels all users; re-assign).
    let member_rows: Vec<&UserFeatures> = members.iter().map(|&i| &users[i]).collect();
    let (labels, _) = cluster::assign(&scaler.matrix(&member_rows), &clustering.centroids);
    let mut counts = vec![0usize; k];
    labels.iter().for_each(|&l| counts[l] += 1);
    let profile_of_user: std::collections::HashMap<usize, usize> =
        members.iter().zip(&labels).map(|(&u, &l)| (u, l)).collect();

    // Each profile's events, gathered once for costs, priorities and the demand series.
    let mut of_profile: Vec<Vec<&Event>> = vec![Vec::new(); k];
    for (event, owner) in events.iter().zip(owners) {
        if let Some(&c) = profile_of_user.get(owner) {
            of_profile[c].push(event);
        }
    }
    let profiles: Vec<ProfileMeta> = (0..k)
        .map(|c| {
            let cost = describe::costs(of_profile[c].iter().copied(), &config.costs);
            ProfileMeta {
                id: ids.ids[c],
                label: describe::label(&raw[c]),
                // Decided below, once labels are final.
                priority: PriorityClass::Standard,
                share_of_users: counts[c] as f32 / members.len().max(1) as f32,
                cost,
            }
        })
        .collect();
    let mut profiles = profiles;
    describe::disambiguate(&mut profiles, &raw);
    let mut priority_reasons = Vec::with_capacity(k);
    for (c, meta) in profiles.iter_mut().enumerate() {
        let facts = priority::facts(&meta.label, of_profile[c].iter().copied(), rules, raw[c][index::DEVICE_BOT]);
        let (class, why) = config.priority.classify(&facts);
        meta.priority = class;
        priority_reasons.push((meta.id, why));
    }
    let mut model = RegionModel {
        region: region.to_owned(),
        model_version: version,
        schema: FeatureSchema::current(),
        normalisation: Normalisation {
            mean: scaler.mean.iter().map(|v| *v as f32).collect(),
            scale: scaler.scale.iter().map(|v| *v as f32).collect(),
        },
        centroids: clustering.centroids.iter().map(|v| *v as f32).collect(),
        default_profile: ids.ids[0],
        profiles,
        assignment: AssignmentParams {
            min_requests: config.profiles.min_requests,
            hysteresis_margin: config.profiles.hysteresis_margin,
        },
        rules: rules.clone(),
        forecast: ForecastTable { start: now, step_secs: 300, upper_quantile: 0.9, series: Vec::new() },
    };
    // Each profile's request history, forecast for the next day.
    let mut requests: Vec<(ProfileId, Vec<u64>)> =
        ids.ids.iter().zip(&of_profile).map(|(id, events)| (*id, events.iter().map(|e| e.time).collect())).collect();
    // The edge's counts carry the series past the last event (events arrive late, or only
    // for a sample): minutes after it are counted from the edge, under the published ids.
    let last_event = requests.iter().flat_map(|(_, t)| t.iter().copied()).max().unwrap_or(0);
    for &(profile, minute, n) in edge_counts {
        let start = minute * 60;
        if start <= last_event {
            continue;
        }
        if let Some((_, times)) = requests.iter_mut().find(|(id, _)| id.0 == profile) {
            times.extend((0..n).map(|i| start + i % 60));
        }
    }
    let region_feeds: Vec<(String, Vec<crate::forecast::feeds::FeedPoint>)> =
        feeds.iter().map(|(name, points)| (name.clone(), crate::forecast::feeds::for_region(points, region))).collect();
    let report = crate::forecast::demand::table_with_skill(
        &requests,
        now,
        &calendar.for_region(region),
        &region_feeds,
        config.forecast_step_secs,
    );
    model.forecast = report.table;
    let forecast_skill = report.skills;
    let mut forecast_notes: Vec<(ProfileId, String)> = Vec::new();
    for (id, feed, effect) in &report.effects {
        let note = format!(
            "feed `{feed}`: {:+.2} requests per step per unit above its mean {:.2} (t = {:.1}, {} steps)",
            effect.per_unit, effect.mean, effect.t_stat, effect.steps
        );
        match forecast_notes.iter_mut().find(|(p, _)| p == id) {
            Some((_, text)) => {
                text.push_str("; ");
                text.push_str(&note);
            }
            None => forecast_notes.push((*id, note)),
        }
    }
    let times = || requests.iter().flat_map(|(_, t)| t.iter().copied());
    let history_secs = times().max().unwrap_or(0).saturating_sub(times().min().unwrap_or(0));
    let step = u64::from(model.forecast.step_secs.max(1));
    let level: Vec<(ProfileId, f64)> = requests
        .iter()
        .map(|(id, t)| {
            let (first, last) = (t.iter().min().copied().unwrap_or(0), t.iter().max().copied().unwrap_or(0));
            let steps = ((last - first) / step + 1) as f64;
            (*id, t.len() as f64 / steps)
        })
        .collect();
    // The default profile: where most newcomers land, judged on their first session alone.
    let mut landing = vec![0usize; k];
    for u in &member_rows {
        let mut first = u.first_session.clone();
        first.requests = first.requests.max(model.assignment.min_requests);
        first.profile = None;
        let id = assign_profile(&model, &first, &first.features());
        if let Some(i) = model.profile_index(id) {
            landing[i] += 1;
        }
    }
    let most = landing.iter().enumerate().max_by_key(|(_, n)| **n).map_or(0, |(i, _)| i);
    model.default_profile = ids.ids[most];
    TrainedRegion {
        user_profiles: members.iter().zip(&labels).map(|(&u, &l)| (users[u].user, ids.ids[l])).collect(),
        priority_reasons,
        forecast_skill,
        history_secs,
        level,
        forecast_notes,
        model,
        users: members.len(),
        borrowed_global: borrowed,
        silhouette: clustering.silhouette.unwrap_or(0.0),
        retired: ids.retired,
    }
}
