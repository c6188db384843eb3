//! Nearest-centroid assignment with hysteresis, O(k·d) and allocation-free.

use crate::artifact::{ProfileId, ProfileRole, RegionModel};
use crate::features::{FEATURE_DIM, FeatureVector, index};
use crate::state::BehaviourState;

/// Requests a visitor makes before leaving the region's new-visitor (default) profile. One
/// notion for both sides: the trainer clusters only visitors with at least this many requests,
/// and the edge assigns by distance only from then on.
pub const DEFAULT_MIN_REQUESTS: u16 = 3;

/// A visitor is automated when at least this share of its requests came with an automation
/// User-Agent (crawler, script, empty): the one rule both the edge and the trainer apply.
pub const AUTOMATED_BOT_SHARE: f32 = 0.5;

/// Whether a feature vector (raw units) is an automated client's by the shared rule.
pub fn is_automated(features: &FeatureVector) -> bool {
    features[index::DEVICE_BOT] >= AUTOMATED_BOT_SHARE
}

/// Standardises a feature vector with the model's normalisation.
pub fn normalise(model: &RegionModel, features: &FeatureVector) -> FeatureVector {
    let mut out = [0.0; FEATURE_DIM];
    let params = model.normalisation.mean.iter().zip(&model.normalisation.scale);
    for ((o, x), (mean, scale)) in out.iter_mut().zip(features).zip(params) {
        *o = (x - mean) / scale;
    }
    out
}

/// The application-usage features (requests per session, session length, route classes used)
/// describe whole sessions: until a user has finished one, they only say "new", so they are
/// left out of the distance.
const SESSION_FEATURES: usize = 3;

/// Which features take part in the distance for a user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Maturity {
    /// The user has completed at least one session: every feature counts.
    Complete,
    /// Still in the first session: session-level features are skipped.
    FirstSession,
}

impl Maturity {
    /// The assignment inputs of a state.
    pub fn of(state: &BehaviourState) -> Self {
        if state.sessions > 1 { Maturity::Complete } else { Maturity::FirstSession }
    }

    fn first_feature(self) -> usize {
        match self {
            Maturity::Complete => 0,
            Maturity::FirstSession => SESSION_FEATURES,
        }
    }
}

/// Squared Euclidean distance between a point and one centroid row, over the features that count.
#[inline]
fn distance_sq(point: &FeatureVector, centroid: &[f32], maturity: Maturity) -> f32 {
    let from = maturity.first_feature();
    point[from..].iter().zip(&centroid[from..]).map(|(a, b)| (a - b) * (a - b)).sum()
}

/// Index and squared distance of the closest centroid a user can be assigned to by distance
/// (every profile but the new-visitor one).
pub fn nearest(model: &RegionModel, point: &FeatureVector, maturity: Maturity) -> Option<(usize, f32)> {
    let mut best: Option<(usize, f32)> = None;
    let rows = model.centroids.chunks_exact(FEATURE_DIM).zip(&model.profiles).enumerate();
    for (i, (row, meta)) in rows {
        if meta.role == ProfileRole::NewVisitors {
            continue;
        }
        let d = distance_sq(point, row, maturity);
        if best.is_none_or(|(_, b)| d < b) {
            best = Some((i, d));
        }
    }
    best
}

/// Picks the profile for a user whose state already includes this request.
///
/// Automated clients get the region's automated profile from their first request. New users
/// (fewer than `min_requests`) get the region's default profile. A user keeps the profile it
/// has unless another centroid is closer by more than the hysteresis margin.
pub fn assign_profile(model: &RegionModel, state: &BehaviourState, features: &FeatureVector) -> ProfileId {
    if is_automated(features)
        && let Some(automated) = model.automated_profile()
    {
        return automated;
    }
    if state.requests < model.assignment.min_requests {
        return state.profile.filter(|p| model.profile_index(*p).is_some()).unwrap_or(model.default_profile);
    }
    let point = normalise(model, features);
    let maturity = Maturity::of(state);
    let Some((best, best_sq)) = nearest(model, &point, maturity) else {
        return model.default_profile;
    };
    let current = state.profile.and_then(|p| model.profile_index(p).map(|i| (p, i)));
    if let Some((current_id, i)) = current
        && i != best
        && let Some(row) = model.centroid(i)
    {
        let current_distance = distance_sq(&point, row, maturity).sqrt();
        if best_sq.sqrt() + model.assignment.hysteresis_margin >= current_distance {
            return current_id;
        }
    }
    model.profiles.get(best).map_or(model.default_profile, |p| p.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::ModelVersion;
    use crate::features::UnixSeconds;
    use crate::fixtures;

    fn user_with(profile: Option<ProfileId>, requests: u16) -> BehaviourState {
        let mut s = BehaviourState::new(UnixSeconds(0));
        s.requests = requests;
        s.sessions = 2;
        s.profile = profile;
        s.model_version = ModelVersion(1);
        s
    }

    /// A point on the segment between centroid 0 and centroid 1, at fraction `t` from 0, in raw units.
    fn between(model: &RegionModel, t: f32) -> FeatureVector {
        let (a, b) = (model.centroid(0).expect("row 0"), model.centroid(1).expect("row 1"));
        let mut raw = [0.0; FEATURE_DIM];
        for j in 0..FEATURE_DIM {
            let z = a[j] + t * (b[j] - a[j]);
            raw[j] = z * model.normalisation.scale[j] + model.normalisation.mean[j];
        }
        raw
    }

    #[test]
    fn new_users_get_the_default_profile() {
        let model = fixtures::region_model("eu");
        let features = between(&model, 1.0);
        assert_eq!(assign_profile(&model, &user_with(None, 1), &features), model.default_profile);
    }

    #[test]
    fn nearest_centroid_wins_without_a_current_profile() {
        let model = fixtures::region_model("eu");
        for i in 0..model.k() {
            let mut raw = [0.0; FEATURE_DIM];
            let row = model.centroid(i).expect("row");
            for j in 0..FEATURE_DIM {
                raw[j] = row[j] * model.normalisation.scale[j] + model.normalisation.mean[j];
            }
            assert_eq!(assign_profile(&model, &user_with(None, 10), &raw), model.profiles[i].id);
        }
    }

    #[test]
    fn hysteresis_keeps_a_profile_near_the_boundary() {
        let model = fixtures::region_model("eu");
        let (p0, p1) = (model.profiles[0].id, model.profiles[1].id);
        // Just past the midpoint, profile 1 is nearer, but not by the margin.
        let slightly_past = between(&model, 0.52);
        assert_eq!(assign_profile(&model, &user_with(Some(p0), 10), &slightly_past), p0);
        assert_eq!(assign_profile(&model, &user_with(None, 10), &slightly_past), p1);
        // Far past it, the user moves.
        let far_past = between(&model, 0.95);
        assert_eq!(assign_profile(&model, &user_with(Some(p0), 10), &far_past), p1);
    }

    #[test]
    fn first_session_users_are_placed_by_what_they_do_not_by_session_length() {
        let model = fixtures::region_model("eu");
        // Profile 0's behaviour, but the session-level features of profile 3 (the default).
        let mut raw = between(&model, 0.0);
        let other = model.centroid(3).expect("row 3");
        for j in 0..SESSION_FEATURES {
            raw[j] = other[j] * model.normalisation.scale[j] + model.normalisation.mean[j];
        }
        let mut user = user_with(None, 10);
        user.sessions = 1;
        assert_eq!(assign_profile(&model, &user, &raw), model.profiles[0].id);
    }

    #[test]
    fn a_profile_unknown_to_this_model_is_ignored() {
        let model = fixtures::region_model("eu");
        let features = between(&model, 0.0);
        let user = user_with(Some(ProfileId(999)), 10);
        assert_eq!(assign_profile(&model, &user, &features), model.profiles[0].id);
    }

    #[test]
    fn automated_clients_go_to_the_automated_profile_from_the_first_request() {
        let model = fixtures::region_model("eu");
        let bot = model.automated_profile().expect("the fixture has a bot profile");
        let mut features = between(&model, 0.0);
        features[index::DEVICE_BOT] = 1.0;
        assert_eq!(assign_profile(&model, &user_with(None, 1), &features), bot);
        assert_eq!(assign_profile(&model, &user_with(Some(model.profiles[0].id), 10), &features), bot);
        features[index::DEVICE_BOT] = 0.2;
        assert_ne!(assign_profile(&model, &user_with(None, 1), &features), bot);
    }

    #[test]
    fn the_new_visitor_profile_is_never_a_distance_target() {
        let mut model = fixtures::region_model("eu");
        model.profiles[0].role = ProfileRole::NewVisitors;
        // A user sitting exactly on profile 0's centroid goes to the next nearest instead.
        let on_it = between(&model, 0.0);
        let got = assign_profile(&model, &user_with(None, 10), &on_it);
        assert_ne!(got, model.profiles[0].id);
        assert!(model.profile_index(got).is_some());
    }
}
