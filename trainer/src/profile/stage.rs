//! The profile stage in two passes over the events, one user at a time, so that no pass holds
//! more than one user's events: the first rebuilds the features of a uniform sample of each
//! region's users (all of them up to `max_users_per_fit`) and fits the profiles on them; the
//! second sorts and assigns every user — as the fit did, rule first, then nearest centroid —
//! and tallies each profile's requests, costs and demand.

use std::collections::{BTreeMap, HashMap};

use prewarm_shared::ProfileId;
use prewarm_shared::artifact::{
    AssignmentParams, ForecastTable, ModelVersion, Normalisation, PriorityClass, ProfileMeta, ProfileRole, RegionModel,
};
use prewarm_shared::assign::{assign_profile, is_automated};
use prewarm_shared::classify::{ClassificationRules, ContentClass};
use prewarm_shared::features::{FEATURE_DIM, FeatureSchema, FeatureVector, UnixSeconds};
use prewarm_shared::signals::UserHash;

use super::features::{UserFeatures, user_features_of};
use super::quality::{self, RegionQuality};
use super::tally::ProfileTally;
use super::{
    Fit, FittedProfile, FittedRegion, ProfileError, ProfileSettings, Sorted, automation, cluster, default_profile,
    describe, evaluate, fit_space, mean_of, profile_ids,
};
use crate::ingest::event::Event;
use crate::store::UserEvents;

/// Whether `user` is in its region's sample: every user while the region has at most `max`,
/// else those whose hash (uniform, being an HMAC) falls in the first `max / users` of the range.
pub fn in_sample(user: &UserHash, users: u64, max: usize) -> bool {
    if users <= max as u64 {
        return true;
    }
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&user.0[..8]);
    (u64::from_be_bytes(prefix) as f64) < max as f64 / users as f64 * u64::MAX as f64
}

/// One user read: their features, and the behaviour rule's verdict on a site without and with
/// its own assets (which of the two applies is known once every event has been read).
struct Read {
    features: UserFeatures,
    automated: [bool; 2],
}

fn read_user(events: &[Event], config: &ProfileSettings<'_>) -> Read {
    let features = user_features_of(events, &*config.utc_offset);
    let refs: Vec<&Event> = events.iter().collect();
    let rules = &config.profiles.automation;
    let automated = [automation::by_behaviour(&refs, rules, false), automation::by_behaviour(&refs, rules, true)];
    Read { features, automated }
}

fn sort(read: &Read, serves_assets: bool, config: &ProfileSettings<'_>) -> Sorted {
    if is_automated(&read.features.features) || read.automated[usize::from(serves_assets)] {
        Sorted::Automated
    } else if read.features.events < usize::from(config.profiles.min_requests) {
        Sorted::New
    } else {
        Sorted::Clustered
    }
}

/// A region between the two passes: its profiles' rows (clustered, then the role rows), ids,
/// and the tallies the second pass fills.
struct Region {
    name: String,
    fit: usize,
    borrowed: bool,
    /// Its sampled users (indices into the sample).
    members: Vec<usize>,
    raw: Vec<FeatureVector>,
    roles: Vec<ProfileRole>,
    ids: Vec<ProfileId>,
    retired: Vec<ProfileId>,
    /// The sampled users' rows.
    row_of_user: HashMap<usize, usize>,
    tallies: Vec<ProfileTally>,
    users_per_row: Vec<usize>,
    users: usize,
    user_profiles: Vec<(UserHash, ProfileId)>,
}

impl Region {
    /// The row a user goes to: its role's row, or the nearest clustered centroid.
    fn row(&self, sorted: Sorted, features: &FeatureVector, fit: &Fit) -> usize {
        let role = |role| self.roles.iter().position(|r| *r == role);
        let nearest = || {
            fit.clustering.as_ref().map(|c| {
                let (labels, _) = cluster::assign(&fit.scaler.matrix(&[features]), &c.centroids);
                labels.first().copied().unwrap_or(0)
            })
        };
        let found = match sorted {
            Sorted::Automated => role(ProfileRole::Automated).or_else(nearest),
            Sorted::New => role(ProfileRole::NewVisitors).or_else(nearest),
            Sorted::Clustered => nearest().or_else(|| role(ProfileRole::NewVisitors)),
        };
        found.unwrap_or(0)
    }
}

/// The profile stage: profiles for every region in `events` (every event before `now`).
/// `previous` is the currently published model (for stable ids).
pub fn fit(
    events: &dyn UserEvents,
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
    let per_region = events.users_per_region()?;
    if per_region.is_empty() {
        return Err(ProfileError::NoData);
    }
    let max = config.profiles.max_users_per_fit.max(1);

    // Pass 1: the sample's features, and how much of the traffic is assets.
    let (mut reads, mut assets, mut all) = (Vec::new(), 0u64, 0u64);
    events.for_each_user(&mut |user| {
        all += user.len() as u64;
        assets += user.iter().filter(|e| e.class.content == ContentClass::Static).count() as u64;
        let users = per_region.get(&user[0].region).copied().unwrap_or(0);
        if in_sample(&user[0].user, users, max) {
            reads.push(read_user(user, config));
        }
    })?;
    let serves_assets = all > 0 && assets as f64 >= config.profiles.automation.assets_min_share * all as f64;
    let sorted: Vec<Sorted> = reads.iter().map(|r| sort(r, serves_assets, config)).collect();
    let users: Vec<UserFeatures> = reads.into_iter().map(|r| r.features).collect();

    // The fits: each region's own, or the global one for regions with too few users.
    let mut by_region: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, u) in users.iter().enumerate() {
        by_region.entry(&u.region).or_default().push(i);
    }
    let clustered = |members: &[usize]| -> Vec<usize> {
        members.iter().copied().filter(|&i| sorted[i] == Sorted::Clustered).collect()
    };
    let mut fits: Vec<Fit> = Vec::new();
    let mut global: Option<usize> = None;
    let mut regions: Vec<Region> = Vec::new();
    for (name, members) in &by_region {
        let to_cluster = clustered(members);
        let borrowed = to_cluster.len() < config.profiles.min_users_per_region;
        let fit = if borrowed {
            match global {
                Some(g) => g,
                None => {
                    fits.push(fit_space(&users, &clustered(&(0..users.len()).collect::<Vec<_>>()), config)?);
                    global = Some(fits.len() - 1);
                    fits.len() - 1
                }
            }
        } else {
            fits.push(fit_space(&users, &to_cluster, config)?);
            fits.len() - 1
        };
        let previous_region = previous.iter().find(|m| m.region == *name);
        regions.push(prepare(name, members, &users, &sorted, &fits[fit], fit, borrowed, previous_region, config));
    }

    // Pass 2: every user sorted, assigned and tallied.
    let index: HashMap<String, usize> = regions.iter().enumerate().map(|(i, r)| (r.name.clone(), i)).collect();
    events.for_each_user(&mut |user| {
        let Some(&at) = index.get(&user[0].region) else { return };
        let read = read_user(user, config);
        let sorted = sort(&read, serves_assets, config);
        let region = &mut regions[at];
        let row = region.row(sorted, &read.features.features, &fits[region.fit]);
        for e in user {
            region.tallies[row].add(e, config.costs);
        }
        region.users_per_row[row] += 1;
        region.users += 1;
        region.user_profiles.push((read.features.user, region.ids[row]));
    })?;

    Ok(regions
        .into_iter()
        .map(|region| {
            let fit = &fits[region.fit];
            finish(region, fit, &users, &sorted, rules, previous, version, now, config)
        })
        .collect())
}

/// Rows, ids and the sample's assignment of one region, before the second pass.
#[allow(clippy::too_many_arguments)]
fn prepare(
    name: &str,
    members: &[usize],
    users: &[UserFeatures],
    sorted: &[Sorted],
    fit: &Fit,
    fit_index: usize,
    borrowed: bool,
    previous: Option<&RegionModel>,
    config: &ProfileSettings<'_>,
) -> Region {
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
    let (ids, retired) = profile_ids(&raw[..k], &roles[k..], previous, scaler, config.profiles.max_match_distance);
    let n_rows = raw.len();
    Region {
        name: name.to_owned(),
        fit: fit_index,
        borrowed,
        members: members.to_vec(),
        raw,
        roles,
        ids,
        retired,
        row_of_user,
        tallies: (0..n_rows).map(|r| ProfileTally::new(r as u64)).collect(),
        users_per_row: vec![0; n_rows],
        users: 0,
        user_profiles: Vec::new(),
    }
}

/// The region's model and report from its tallies.
#[allow(clippy::too_many_arguments)]
fn finish(
    region: Region,
    fit: &Fit,
    users: &[UserFeatures],
    sorted: &[Sorted],
    rules: &ClassificationRules,
    previous: &[RegionModel],
    version: ModelVersion,
    now: UnixSeconds,
    config: &ProfileSettings<'_>,
) -> FittedRegion {
    let scaler = &fit.scaler;
    let k = region.roles.iter().filter(|r| **r == ProfileRole::Clustered).count();
    let raw = &region.raw;
    let mut profiles: Vec<ProfileMeta> = (0..raw.len())
        .map(|r| ProfileMeta {
            id: region.ids[r],
            label: match region.roles[r] {
                ProfileRole::Clustered => describe::label(&raw[r]),
                ProfileRole::NewVisitors => format!("new visitors · {}", describe::label(&raw[r])),
                ProfileRole::Automated => format!("automated · {}", describe::content_and_time(&raw[r])),
            },
            // Decided below, once labels are final.
            priority: PriorityClass::Standard,
            share_of_users: region.users_per_row[r] as f32 / region.users.max(1) as f32,
            cost: region.tallies[r].costs(),
            role: region.roles[r],
        })
        .collect();
    describe::disambiguate(&mut profiles[..k], &raw[..k]);
    let mut fitted_profiles = BTreeMap::new();
    for (r, meta) in profiles.iter_mut().enumerate() {
        let bot_share = raw[r][prewarm_shared::features::index::DEVICE_BOT];
        let tally = &region.tallies[r];
        let mut facts = tally.facts(&meta.label, rules, bot_share);
        facts.automated = meta.role == ProfileRole::Automated;
        let (class, why) = config.priority.classify(&facts);
        meta.priority = class;
        fitted_profiles.insert(
            meta.id,
            FittedProfile {
                priority_reason: why,
                per_minute: tally.per_minute.clone(),
                first: tally.first,
                last: tally.last,
            },
        );
    }
    let centroids: Vec<f32> = raw.iter().flat_map(|v| scaler.point(v)).map(|v| v as f32).collect();
    let mut model = RegionModel {
        region: region.name.clone(),
        model_version: version,
        schema: FeatureSchema::current(),
        normalisation: Normalisation {
            mean: scaler.mean.iter().map(|v| *v as f32).collect(),
            scale: scaler.scale.iter().map(|v| *v as f32).collect(),
        },
        centroids,
        default_profile: region.ids[0],
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
    model.default_profile = default_profile(&model, &region.members, users);
    let previous_region = previous.iter().find(|m| m.region == region.name);
    let quality = region_quality(&model, fit, previous_region, &region, users, sorted, config);
    FittedRegion {
        user_profiles: region.user_profiles,
        profiles: fitted_profiles,
        model,
        users: region.users,
        borrowed_global: region.borrowed,
        silhouette: fit.clustering.as_ref().and_then(|c| c.silhouette).unwrap_or(0.0),
        retired: region.retired,
        quality,
    }
}

/// Purity, cost spread, bots placed and stability of one region's fit (purity and stability
/// on the sampled users, bots placed on every request).
fn region_quality(
    model: &RegionModel,
    fit: &Fit,
    previous: Option<&RegionModel>,
    region: &Region,
    users: &[UserFeatures],
    sorted: &[Sorted],
    config: &ProfileSettings<'_>,
) -> RegionQuality {
    let members = &region.members;
    let row_of_user = &region.row_of_user;
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
    let (mut all_bots, mut placed) = (0u64, 0u64);
    for (tally, meta) in region.tallies.iter().zip(&model.profiles) {
        all_bots += tally.bot_requests();
        placed += if meta.role == ProfileRole::Automated { tally.bot_requests() } else { 0 };
    }
    // Where the previous model, as the edge assigns, put this training's clustered visitors.
    let stability = previous.filter(|p| p.validate().is_ok()).and_then(|prev| {
        let (mut was, mut is) = (Vec::new(), Vec::new());
        for &u in members.iter().filter(|&&u| sorted[u] == Sorted::Clustered) {
            let mut state = users[u].final_state.clone();
            state.profile = None;
            state.requests = state.requests.max(prev.assignment.min_requests);
            was.push(usize::from(assign_profile(prev, &state, &users[u].features).0));
            is.push(*row_of_user.get(&u)?);
        }
        (was.len() >= 2).then(|| evaluate::adjusted_rand_index(&was, &is))
    });
    let mut k_reason = fit
        .clustering
        .as_ref()
        .map_or_else(|| "no visitor to cluster".to_owned(), |c| c.k_reason(config.profiles.k_tolerance));
    if members.len() < region.users {
        k_reason.push_str(&format!(
            " (fitted on a uniform sample of {} of the region's {} users: max_users_per_fit)",
            members.len(),
            region.users
        ));
    }
    RegionQuality {
        k_reason,
        bot_requests_in_automated: (all_bots > 0).then(|| placed as f64 / all_bots as f64),
        cost_spread: quality::cost_spread(model),
        stability,
        profiles,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_is_every_user_up_to_the_cap_then_a_uniform_share() {
        let user = |i: u64| UserHash::derive(b"sample-test-salt", &i.to_le_bytes());
        assert!((0..1000).all(|i| in_sample(&user(i), 1000, 1000)));
        let kept = (0..100_000).filter(|&i| in_sample(&user(i), 100_000, 10_000)).count();
        assert!((9_000..11_000).contains(&kept), "{kept} of 100,000 for a sample of 10,000");
    }
}
