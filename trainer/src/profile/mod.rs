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
mod stage;
pub mod tally;

pub use stage::{fit, in_sample};

use std::collections::BTreeMap;

use prewarm_shared::ProfileId;
use prewarm_shared::artifact::{ProfileRole, RegionModel};
use prewarm_shared::assign::{assign_profile, is_automated};
use prewarm_shared::features::{FEATURE_DIM, FeatureVector};

use self::cluster::{ClusterError, Clustering};
use self::features::UserFeatures;
use self::quality::RegionQuality;
use self::scale::Scaler;
use crate::store::StoreError;

/// Why the profile stage failed.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Clustering failed.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// Nothing to train on.
    #[error("no events in the store: nothing to train on (import logs or POST /v1/events first)")]
    NoData,
    /// Priority rules name route classes the classification does not define.
    #[error("priority rules name route classes the classification rules do not define: {0:?} (defined: {1:?})")]
    UnknownRoute(Vec<String>, Vec<String>),
}

/// What the profile stage reads from the configuration (built by
/// `TrainerConfig::profile_settings`): its own sections, not the whole file, so that this
/// stage depends on nothing above it.
pub struct ProfileSettings<'a> {
    /// `[profiles]`.
    pub profiles: &'a config::ProfileConfig,
    /// `[costs]`.
    pub costs: &'a config::CostConfig,
    /// `[priority]`.
    pub priority: &'a priority::PriorityConfig,
    /// The forecast table a fitted model starts with (filled by the forecast stage).
    pub forecast_step_secs: u64,
    /// The band quantile the forecast table records.
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
    /// Users in the region's window (all of them, sampled or not).
    pub users: usize,
    /// The region had too few users and uses the global profiles.
    pub borrowed_global: bool,
    /// The clustering's silhouette (0 when nothing was clustered).
    pub silhouette: f64,
    /// Ids of the previous model's profiles that no longer exist.
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
    /// Why the profile has its priority.
    pub priority_reason: String,
    /// Requests per Unix minute by its users: the demand it forecasts.
    pub per_minute: BTreeMap<u64, u32>,
    /// Its first and last request (Unix seconds).
    pub first: Option<u64>,
    /// Its last request (Unix seconds).
    pub last: Option<u64>,
}

/// How a visitor is profiled: by rule, or by clustering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sorted {
    Automated,
    New,
    Clustered,
}

/// A clustering and the space it was made in.
struct Fit {
    scaler: Scaler,
    clustering: Option<Clustering>,
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
