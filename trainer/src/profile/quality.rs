//! What a training's profiles are worth without ground truth: how pure each label is, how
//! much the profiles' costs differ, whether automated traffic landed where it belongs, and
//! whether the previous model would have grouped the same users the same way.

use prewarm_shared::artifact::{ProfileRole, RegionModel};
use prewarm_shared::features::FeatureVector;
use serde::{Deserialize, Serialize};

use super::describe;

/// One region's profile quality, reported by `train`, `inspect --json`, `/v1/status` and
/// `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RegionQuality {
    /// Why the clustering has its k.
    pub k_reason: String,
    /// Of the requests sent with an automation User-Agent, the share in the automated profile.
    pub bot_requests_in_automated: Option<f64>,
    /// Highest over lowest mean CPU per request among the clustered profiles.
    pub cost_spread: Option<f64>,
    /// Adjusted Rand index between where the previous model (as the edge assigns) and this one
    /// put this training's clustered visitors: 1 is the same grouping.
    pub stability: Option<f64>,
    /// Each profile's quality.
    pub profiles: Vec<ProfileQuality>,
}

impl RegionQuality {
    /// The quality of profile `id`, if it was measured.
    pub fn profile(&self, id: prewarm_shared::ProfileId) -> Option<&ProfileQuality> {
        self.profiles.iter().find(|p| p.id == id.0)
    }
}

/// One profile's quality.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProfileQuality {
    /// The profile id.
    pub id: u16,
    /// `clustered`, `new_visitors` or `automated`.
    #[schema(value_type = String)]
    pub role: ProfileRole,
    /// Its users in the fit.
    pub users: usize,
    /// Share of its visitors whose own dominant device class is the one its label names (when
    /// the label says "mixed", the share of the commonest class).
    pub device_purity: f64,
    /// Likewise for the content class.
    pub content_purity: f64,
}

/// The share of `classes` equal to `labelled`, or of the commonest one when `labelled` is mixed.
fn purity(classes: &[&str], labelled: &str) -> f64 {
    if classes.is_empty() {
        return 1.0;
    }
    let share = |c: &str| classes.iter().filter(|x| **x == c).count() as f64 / classes.len() as f64;
    if labelled.starts_with("mixed") { classes.iter().map(|c| share(c)).fold(0.0, f64::max) } else { share(labelled) }
}

/// The purity of one profile whose centroid is `centroid` (raw units) over its visitors'
/// feature vectors.
pub fn profile_quality(
    id: u16,
    role: ProfileRole,
    centroid: &FeatureVector,
    members: &[&FeatureVector],
) -> ProfileQuality {
    let devices: Vec<&str> = members.iter().map(|f| describe::device_class(f)).collect();
    let contents: Vec<&str> = members.iter().map(|f| describe::content_class(f)).collect();
    ProfileQuality {
        id,
        role,
        users: members.len(),
        device_purity: purity(&devices, describe::device_class(centroid)),
        content_purity: purity(&contents, describe::content_class(centroid)),
    }
}

/// Highest over lowest mean CPU per request among the clustered profiles (None below two).
pub fn cost_spread(model: &RegionModel) -> Option<f64> {
    let costs: Vec<f64> = model
        .profiles
        .iter()
        .filter(|p| p.role == ProfileRole::Clustered)
        .map(|p| f64::from(p.cost.cpu_ms.mean))
        .collect();
    let lo = costs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = costs.iter().copied().fold(0.0, f64::max);
    (costs.len() >= 2 && lo > 0.0).then(|| hi / lo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purity_counts_the_labelled_class_or_the_commonest_when_mixed() {
        assert!((purity(&["mobile", "mobile", "desktop", "mobile"], "mobile") - 0.75).abs() < 1e-12);
        assert!((purity(&["mobile", "desktop", "desktop"], "mixed devices") - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(purity(&["bot", "bot"], "desktop"), 0.0);
    }
}
