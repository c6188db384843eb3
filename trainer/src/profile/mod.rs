//! The profile stage: behaviour profiles per region from the events before `now` — feature
//! vectors, standardised, clustered, matched to the previous model's ids, labelled, costed and
//! prioritised. The result is one [`FittedRegion`] per region: its model without a forecast
//! (the forecast stage fills it) and the request times of each profile.

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
use crate::store::StoreError;

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
    #[error("priority rules name route classes the classification rules do not define: {0:?} (defined: {1:?})")]
    UnknownRoute(Vec<String>, Vec<String>),
}

/// One region's profiles, before forecasting.
#[derive(Debug, Clone)]
pub struct FittedRegion {
    /// The region's model with an empty forecast table.
    pub model: RegionModel,
    pub users: usize,
    /// The region had too few users and uses the global profiles.
    pub borrowed_global: bool,
    pub silhouette: f64,
    pub retired: Vec<ProfileId>,
    /// Each training user's profile (for evaluation and the replay).
    pub user_profiles: Vec<(prewarm_shared::signals::UserHash, ProfileId)>,
    /// Per profile: why its priority, and its users' request times (the demand it forecasts).
    pub profiles: BTreeMap<ProfileId, FittedProfile>,
}

/// What the profile stage knows of one profile beyond its metadata.
#[derive(Debug, Clone, Default)]
pub struct FittedProfile {
    pub priority_reason: String,
    /// Unix seconds of every request its users made, sorted.
    pub request_times: Vec<u64>,
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

/// What every region's fit shares.
struct FitInputs<'a> {
    users: &'a [UserFeatures],
    events: &'a [Event],
    owners: &'a [usize],
    config: &'a TrainerConfig,
    rules: &'a ClassificationRules,
    version: ModelVersion,
    now: UnixSeconds,
}

/// The profile stage: profiles for every region in `events` (every event before `now`, ordered
/// by user then time, as `Store::events_by_user` returns them). `previous` is the currently
/// published model (for stable ids).
pub fn fit(
    events: &[Event],
    config: &TrainerConfig,
    rules: &ClassificationRules,
    previous: &[RegionModel],
    version: ModelVersion,
    now: UnixSeconds,
) -> Result<Vec<FittedRegion>, ProfileError> {
    let unknown = config.priority.unknown_routes(&rules.route_classes);
    if !unknown.is_empty() {
        return Err(ProfileError::UnknownRoute(
            unknown.into_iter().map(str::to_owned).collect(),
            rules.route_classes.clone(),
        ));
    }
    if events.is_empty() {
        return Err(ProfileError::NoData);
    }
    let users = user_features(events, |region| config.utc_offset_of(region));
    let owners = event_owner(events, &users);
    let inputs = FitInputs { users: &users, events, owners: &owners, config, rules, version, now };
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
        out.push(build_region(&inputs, region, members, scaler, clustering, previous_region, borrowed));
    }
    Ok(out)
}

fn build_region(
    inputs: &FitInputs<'_>,
    region: &str,
    members: &[usize],
    scaler: &Scaler,
    clustering: &Clustering,
    previous: Option<&RegionModel>,
    borrowed: bool,
) -> FittedRegion {
    let FitInputs { users, events, owners, config, rules, version, now } = *inputs;
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
    let mut profiles: Vec<ProfileMeta> = (0..k)
        .map(|c| ProfileMeta {
            id: ids.ids[c],
            label: describe::label(&raw[c]),
            // Decided below, once labels are final.
            priority: PriorityClass::Standard,
            share_of_users: counts[c] as f32 / members.len().max(1) as f32,
            cost: describe::costs(of_profile[c].iter().copied(), &config.costs),
        })
        .collect();
    describe::disambiguate(&mut profiles, &raw);
    let mut fitted_profiles = BTreeMap::new();
    for (c, meta) in profiles.iter_mut().enumerate() {
        let facts = priority::facts(&meta.label, of_profile[c].iter().copied(), rules, raw[c][index::DEVICE_BOT]);
        let (class, why) = config.priority.classify(&facts);
        meta.priority = class;
        let mut request_times: Vec<u64> = of_profile[c].iter().map(|e| e.time).collect();
        request_times.sort_unstable();
        fitted_profiles.insert(meta.id, FittedProfile { priority_reason: why, request_times });
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
        forecast: ForecastTable {
            start: now,
            step_secs: config.forecast_step_secs as u32,
            upper_quantile: config.forecast.band_quantile as f32,
            series: Vec::new(),
        },
    };
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
    FittedRegion {
        user_profiles: members.iter().zip(&labels).map(|(&u, &l)| (users[u].user, ids.ids[l])).collect(),
        profiles: fitted_profiles,
        model,
        users: members.len(),
        borrowed_global: borrowed,
        silhouette: clustering.silhouette.unwrap_or(0.0),
        retired: ids.retired,
    }
}
