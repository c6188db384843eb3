//! The profile stage: behaviour profiles per region from the events before `now`. Visitors
//! are first sorted by rule — automated clients (User-Agent or behaviour) to the region's
//! automated profile, visitors with fewer than `min_requests` to its new-visitor (default)
//! profile — and only the rest are clustered, in a robustly scaled space where each kind of
//! behaviour carries a comparable weight. Clusters are matched to the previous model's ids,
//! labelled, costed, prioritised and judged ([`quality`]). The result is one [`FittedRegion`]
//! per region: its model without a forecast (the forecast stage fills it) and the request
//! times of each profile.

pub mod automation;
pub mod cluster;
pub mod config;
pub mod describe;
pub mod evaluate;
pub mod features;
pub mod priority;
pub mod quality;
pub mod scale;
pub mod stable_ids;

use std::collections::{BTreeMap, HashMap};

use prewarm_shared::ProfileId;
use prewarm_shared::artifact::{
    AssignmentParams, ForecastTable, ModelVersion, Normalisation, PriorityClass, ProfileMeta, ProfileRole, RegionModel,
};
use prewarm_shared::assign::{assign_profile, is_automated};
use prewarm_shared::classify::{ClassificationRules, Device};
use prewarm_shared::features::{FEATURE_DIM, FeatureSchema, FeatureVector, UnixSeconds};

use self::cluster::{ClusterError, Clustering};
use self::features::{UserFeatures, event_owner, user_features};
use self::quality::RegionQuality;
use self::scale::Scaler;
use crate::ingest::event::Event;
use crate::store::StoreError;

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

/// What the profile stage reads from the configuration (built by
/// `TrainerConfig::profile_settings`): its own sections, not the whole file, so that this
/// stage depends on nothing above it.
pub struct ProfileSettings<'a> {
    pub profiles: &'a config::ProfileConfig,
    pub costs: &'a config::CostConfig,
    pub priority: &'a priority::PriorityConfig,
    /// The forecast table a fitted model starts with (filled by the forecast stage).
    pub forecast_step_secs: u64,
    pub band_quantile: f64,
    /// A region's UTC offset in minutes, for events that carry none.
    pub utc_offset: Box<dyn Fn(&str) -> i32 + 'a>,
}

impl std::fmt::Debug for ProfileSettings<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileSettings")
            .field("profiles", self.profiles)
            .field("costs", self.costs)
            .field("priority", self.priority)
            .field("forecast_step_secs", &self.forecast_step_secs)
            .field("band_quantile", &self.band_quantile)
            .finish_non_exhaustive()
    }
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
    /// Label purity, cost spread, bots placed, stability; why this k.
    pub quality: RegionQuality,
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

/// How a visitor is profiled: by rule, or by clustering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sorted {
    Automated,
    New,
    Clustered,
}

/// What every region's fit shares.
struct FitInputs<'a> {
    users: &'a [UserFeatures],
    sorted: &'a [Sorted],
    events: &'a [Event],
    owners: &'a [usize],
    config: &'a ProfileSettings<'a>,
    rules: &'a ClassificationRules,
    version: ModelVersion,
    now: UnixSeconds,
}

/// A clustering and the space it was made in.
struct Fit {
    scaler: Scaler,
    clustering: Option<Clustering>,
}

/// Sorts each visitor by rule: automated (the shared User-Agent rule, then behaviour), new
/// (fewer than `min_requests` requests), or to be clustered.
fn sort_visitors(
    users: &[UserFeatures],
    events: &[Event],
    owners: &[usize],
    config: &ProfileSettings<'_>,
) -> Vec<Sorted> {
    let mut of_user: Vec<Vec<&Event>> = vec![Vec::new(); users.len()];
    for (e, &owner) in events.iter().zip(owners) {
        of_user[owner].push(e);
    }
    let rules = &config.profiles.automation;
    let site_serves_assets = automation::serves_assets(events, rules);
    users
        .iter()
        .zip(&of_user)
        .map(|(u, own)| {
            if is_automated(&u.features) || automation::by_behaviour(own, rules, site_serves_assets) {
                Sorted::Automated
            } else if u.events < usize::from(config.profiles.min_requests) {
                Sorted::New
            } else {
                Sorted::Clustered
            }
        })
        .collect()
}

/// Scales and clusters `indices` (users to cluster). Rows are put in the order of their
/// features, not of their hashes, so a different salt cannot change the result.
fn fit_space(users: &[UserFeatures], indices: &[usize], config: &ProfileSettings<'_>) -> Result<Fit, ProfileError> {
    let mut rows: Vec<&FeatureVector> = indices.iter().map(|&i| &users[i].features).collect();
    rows.sort_by(|a, b| {
        a.iter().zip(b.iter()).map(|(x, y)| x.total_cmp(y)).find(|o| o.is_ne()).unwrap_or(std::cmp::Ordering::Equal)
    });
    let scaler = Scaler::fit(&rows, &config.profiles.weights);
    let clustering =
        if rows.is_empty() { None } else { Some(cluster::choose_k(&scaler.matrix(&rows), config.profiles)?) };
    Ok(Fit { scaler, clustering })
}

/// The profile stage: profiles for every region in `events` (every event before `now`, ordered
/// by user then time, as `Store::events_by_user` returns them). `previous` is the currently
/// published model (for stable ids).
pub fn fit(
    events: &[Event],
    config: &ProfileSettings<'_>,
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
    let users = user_features(events, |region| (config.utc_offset)(region));
    let owners = event_owner(events, &users);
    let sorted = sort_visitors(&users, events, &owners, config);
    let inputs = FitInputs { users: &users, sorted: &sorted, events, owners: &owners, config, rules, version, now };
    let mut by_region: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, u) in users.iter().enumerate() {
        by_region.entry(&u.region).or_default().push(i);
    }
    let clustered = |members: &[usize]| -> Vec<usize> {
        members.iter().copied().filter(|&i| sorted[i] == Sorted::Clustered).collect()
    };
    let all: Vec<usize> = (0..users.len()).collect();
    let mut global: Option<Fit> = None;
    let mut out = Vec::new();
    for (region, members) in &by_region {
        let to_cluster = clustered(members);
        let borrowed = to_cluster.len() < config.profiles.min_users_per_region;
        let owned;
        let fit = if borrowed {
            if global.is_none() {
                global = Some(fit_space(&users, &clustered(&all), config)?);
            }
            let Some(g) = global.as_ref() else { unreachable!() };
            g
        } else {
            owned = fit_space(&users, &to_cluster, config)?;
            &owned
        };
        let previous_region = previous.iter().find(|m| m.region == *region);
        out.push(build_region(&inputs, region, members, fit, previous_region, borrowed));
    }
    Ok(out)
}

/// The mean of some raw feature vectors.
fn mean_of(rows: &[&FeatureVector]) -> FeatureVector {
    let mut out = [0.0f32; FEATURE_DIM];
    for r in rows {
        for (o, x) in out.iter_mut().zip(r.iter()) {
            *o += x / rows.len().max(1) as f32;
        }
    }
    out
}

/// Ids for this training's profiles: clustered ones matched to the previous clustered
/// centroids (in this training's units), role profiles keeping their role's previous id.
fn profile_ids(
    clustered: &[FeatureVector],
    roles: &[ProfileRole],
    previous: Option<&RegionModel>,
    scaler: &Scaler,
    max_match_distance: f32,
) -> (Vec<ProfileId>, Vec<ProfileId>) {
    let old: Vec<(ProfileId, ProfileRole, FeatureVector)> = previous
        .map(|p| p.profiles.iter().enumerate().filter_map(|(i, m)| Some((m.id, m.role, p.raw_centroid(i)?))).collect())
        .unwrap_or_default();
    let (old_ids, old_raw): (Vec<ProfileId>, Vec<FeatureVector>) =
        old.iter().filter(|o| o.1 == ProfileRole::Clustered).map(|o| (o.0, o.2)).unzip();
    let mut next_id = old.iter().map(|o| o.0.0).max().map_or(1, |m| m.saturating_add(1));
    let distance = |i: usize, j: usize| -> f64 {
        (0..FEATURE_DIM)
            .map(|f| ((f64::from(clustered[i][f]) - f64::from(old_raw[j][f])) / scaler.scale[f]).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let matched = stable_ids::assign_ids(clustered.len(), &old_ids, distance, f64::from(max_match_distance), next_id);
    next_id = matched.ids.iter().map(|id| id.0.saturating_add(1)).max().unwrap_or(next_id).max(next_id);
    let mut ids = matched.ids;
    let mut retired = matched.retired;
    for role in roles {
        let id = old.iter().find(|o| o.1 == *role).map(|o| o.0).unwrap_or_else(|| {
            let id = ProfileId(next_id);
            next_id = next_id.saturating_add(1);
            id
        });
        ids.push(id);
    }
    retired.extend(old.iter().filter(|o| o.1 != ProfileRole::Clustered && !roles.contains(&o.1)).map(|o| o.0));
    (ids, retired)
}

fn build_region(
    inputs: &FitInputs<'_>,
    region: &str,
    members: &[usize],
    fit: &Fit,
    previous: Option<&RegionModel>,
    borrowed: bool,
) -> FittedRegion {
    let FitInputs { users, sorted, events, owners, config, rules, version, now } = *inputs;
    let scaler = &fit.scaler;
    // Rows: the clustered profiles, then new visitors, then automated clients (if any).
    let k = fit.clustering.as_ref().map_or(0, |c| c.centroids.nrows());
    let mut raw: Vec<FeatureVector> =
        fit.clustering.iter().flat_map(|c| c.centroids.rows().into_iter().map(|r| scaler.raw(r))).collect();
    let mut roles: Vec<ProfileRole> = vec![ProfileRole::Clustered; k];
    let clustered_members: Vec<usize> = members.iter().copied().filter(|&i| sorted[i] == Sorted::Clustered).collect();
    let mut row_of_user: HashMap<usize, usize> = HashMap::new();
    if let Some(clustering) = &fit.clustering {
        let rows: Vec<&FeatureVector> = clustered_members.iter().map(|&i| &users[i].features).collect();
        let (labels, _) = cluster::assign(&scaler.matrix(&rows), &clustering.centroids);
        row_of_user.extend(clustered_members.iter().copied().zip(labels));
    }
    for (role, kind) in [(ProfileRole::NewVisitors, Sorted::New), (ProfileRole::Automated, Sorted::Automated)] {
        let of_role: Vec<usize> = members.iter().copied().filter(|&i| sorted[i] == kind).collect();
        if of_role.is_empty() {
            continue;
        }
        let rows: Vec<&FeatureVector> = of_role.iter().map(|&i| &users[i].features).collect();
        raw.push(mean_of(&rows));
        roles.push(role);
        row_of_user.extend(of_role.into_iter().map(|i| (i, raw.len() - 1)));
    }
    let n_rows = raw.len();
    let role_rows: Vec<ProfileRole> = roles[k..].to_vec();
    let (ids, retired) = profile_ids(&raw[..k], &role_rows, previous, scaler, config.profiles.max_match_distance);

    let mut counts = vec![0usize; n_rows];
    row_of_user.values().for_each(|&r| counts[r] += 1);
    // Each profile's events, gathered once for costs, priorities and the demand series.
    let mut of_profile: Vec<Vec<&Event>> = vec![Vec::new(); n_rows];
    for (event, owner) in events.iter().zip(owners) {
        if let Some(&r) = row_of_user.get(owner) {
            of_profile[r].push(event);
        }
    }
    let mut profiles: Vec<ProfileMeta> = (0..n_rows)
        .map(|r| ProfileMeta {
            id: ids[r],
            label: match roles[r] {
                ProfileRole::Clustered => describe::label(&raw[r]),
                ProfileRole::NewVisitors => format!("new visitors · {}", describe::label(&raw[r])),
                ProfileRole::Automated => format!("automated · {}", describe::content_and_time(&raw[r])),
            },
            // Decided below, once labels are final.
            priority: PriorityClass::Standard,
            share_of_users: counts[r] as f32 / members.len().max(1) as f32,
            cost: describe::costs(of_profile[r].iter().copied(), config.costs),
            role: roles[r],
        })
        .collect();
    describe::disambiguate(&mut profiles[..k], &raw[..k]);
    let mut fitted_profiles = BTreeMap::new();
    for (r, meta) in profiles.iter_mut().enumerate() {
        let bot_share = raw[r][prewarm_shared::features::index::DEVICE_BOT];
        let mut facts = priority::facts(&meta.label, of_profile[r].iter().copied(), rules, bot_share);
        facts.automated = meta.role == ProfileRole::Automated;
        let (class, why) = config.priority.classify(&facts);
        meta.priority = class;
        let mut request_times: Vec<u64> = of_profile[r].iter().map(|e| e.time).collect();
        request_times.sort_unstable();
        fitted_profiles.insert(meta.id, FittedProfile { priority_reason: why, request_times });
    }
    let centroids: Vec<f32> = raw.iter().flat_map(|v| scaler.point(v)).map(|v| v as f32).collect();
    let mut model = RegionModel {
        region: region.to_owned(),
        model_version: version,
        schema: FeatureSchema::current(),
        normalisation: Normalisation {
            mean: scaler.mean.iter().map(|v| *v as f32).collect(),
            scale: scaler.scale.iter().map(|v| *v as f32).collect(),
        },
        centroids,
        default_profile: ids[0],
        profiles,
        assignment: AssignmentParams {
            min_requests: config.profiles.min_requests,
            hysteresis_margin: config.profiles.hysteresis_margin,
        },
        rules: rules.clone(),
        forecast: ForecastTable {
            start: now,
            step_secs: config.forecast_step_secs as u32,
            upper_quantile: config.band_quantile as f32,
            series: Vec::new(),
        },
    };
    model.default_profile = default_profile(&model, members, users);
    let quality = region_quality(&model, fit, previous, members, &row_of_user, inputs, &of_profile);
    FittedRegion {
        user_profiles: members.iter().filter_map(|u| Some((users[*u].user, ids[*row_of_user.get(u)?]))).collect(),
        profiles: fitted_profiles,
        model,
        users: members.len(),
        borrowed_global: borrowed,
        silhouette: fit.clustering.as_ref().and_then(|c| c.silhouette).unwrap_or(0.0),
        retired,
        quality,
    }
}

/// The new-visitor profile when the region has one; otherwise where most human newcomers
/// land, judged on their first session alone.
fn default_profile(model: &RegionModel, members: &[usize], users: &[UserFeatures]) -> ProfileId {
    if let Some(p) = model.profiles.iter().find(|p| p.role == ProfileRole::NewVisitors) {
        return p.id;
    }
    let mut landing = vec![0usize; model.profiles.len()];
    // A newcomer the User-Agent rule did not catch is a person: the automated profile is
    // never the default.
    for &u in members.iter().filter(|&&u| !is_automated(&users[u].features)) {
        let mut first = users[u].first_session.clone();
        first.requests = first.requests.max(model.assignment.min_requests);
        first.profile = None;
        if let Some(i) = model.profile_index(assign_profile(model, &first, &first.features())) {
            landing[i] += 1;
        }
    }
    let most = landing
        .iter()
        .enumerate()
        .filter(|(i, _)| model.profiles[*i].role != ProfileRole::Automated)
        .max_by_key(|(_, n)| **n)
        .map_or(0, |(i, _)| i);
    model.profiles.get(most).map_or(model.default_profile, |p| p.id)
}

/// Purity, cost spread, bots placed and stability of one region's fit.
fn region_quality(
    model: &RegionModel,
    fit: &Fit,
    previous: Option<&RegionModel>,
    members: &[usize],
    row_of_user: &HashMap<usize, usize>,
    inputs: &FitInputs<'_>,
    of_profile: &[Vec<&Event>],
) -> RegionQuality {
    let users = inputs.users;
    let profiles = model
        .profiles
        .iter()
        .enumerate()
        .map(|(r, meta)| {
            let of: Vec<&FeatureVector> =
                members.iter().filter(|u| row_of_user.get(u) == Some(&r)).map(|&u| &users[u].features).collect();
            let centroid = model.raw_centroid(r).unwrap_or([0.0; FEATURE_DIM]);
            quality::profile_quality(meta.id.0, meta.role, &centroid, &of)
        })
        .collect();
    // Requests sent with an automation User-Agent: all of them, and those in the automated profile.
    let (mut all_bots, mut placed) = (0usize, 0usize);
    for (events, meta) in of_profile.iter().zip(&model.profiles) {
        let bots = events.iter().filter(|e| e.device == Device::Bot).count();
        all_bots += bots;
        placed += if meta.role == ProfileRole::Automated { bots } else { 0 };
    }
    // Where the previous model, as the edge assigns, put this training's clustered visitors.
    let stability = previous.filter(|p| p.validate().is_ok()).and_then(|prev| {
        let (mut was, mut is) = (Vec::new(), Vec::new());
        for &u in members.iter().filter(|&&u| inputs.sorted[u] == Sorted::Clustered) {
            let mut state = users[u].final_state.clone();
            state.profile = None;
            state.requests = state.requests.max(prev.assignment.min_requests);
            was.push(usize::from(assign_profile(prev, &state, &users[u].features).0));
            is.push(*row_of_user.get(&u)?);
        }
        (was.len() >= 2).then(|| evaluate::adjusted_rand_index(&was, &is))
    });
    RegionQuality {
        k_reason: fit
            .clustering
            .as_ref()
            .map_or_else(|| "no visitor to cluster".to_owned(), |c| c.k_reason(inputs.config.profiles.k_tolerance)),
        bot_requests_in_automated: (all_bots > 0).then(|| placed as f64 / all_bots as f64),
        cost_spread: quality::cost_spread(model),
        stability,
        profiles,
    }
}
