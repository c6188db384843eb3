//! What changed between two published models: regions and profiles added or removed, how far
//! each kept profile's centroid moved, and its share, cost and forecast before and after.

use prewarm_shared::artifact::RegionModel;
use prewarm_shared::{FEATURE_DIM, ProfileId};
use serde::Serialize;

/// What changed between two published models.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelDiff {
    /// Per region.
    pub regions: Vec<RegionDiff>,
}

/// What changed in one region.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegionDiff {
    /// The region.
    pub region: String,
    /// `added`, `removed` or `kept`.
    pub change: &'static str,
    /// Its model version before.
    pub version_before: Option<u32>,
    /// Its model version after.
    pub version_after: Option<u32>,
    /// Per profile id.
    pub profiles: Vec<ProfileDiff>,
}

/// One profile id; `before` or `after` is absent when it was added or removed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProfileDiff {
    /// The profile id.
    pub id: u16,
    /// `added`, `removed` or `kept`.
    pub change: &'static str,
    /// Its figures before.
    pub before: Option<ProfileFigures>,
    /// Its figures after.
    pub after: Option<ProfileFigures>,
    /// Distance between the two centroids in the newer model's standardised units.
    pub centroid_moved: Option<f32>,
}

/// What one profile looked like in one model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProfileFigures {
    /// Its label.
    pub label: String,
    /// Its share of the region's users.
    pub share_of_users: f32,
    /// CPU ms per request (mean).
    pub cpu_ms: f32,
    /// Memory MB·s per request (mean).
    pub memory_mb_s: f32,
    /// Bytes per request (mean).
    pub bytes: f32,
    /// Requests expected over the forecast horizon, and the highest step.
    pub forecast_total: f32,
    /// The highest step's expected requests.
    pub forecast_peak: f32,
}

fn figures(model: &RegionModel, index: usize) -> ProfileFigures {
    let p = &model.profiles[index];
    let series = model.forecast.series.iter().find(|s| s.profile == p.id);
    ProfileFigures {
        label: p.label.clone(),
        share_of_users: p.share_of_users,
        cpu_ms: p.cost.cpu_ms.median,
        memory_mb_s: p.cost.memory_mb_s.median,
        bytes: p.cost.bytes.median,
        forecast_total: series.map_or(0.0, |s| s.expected.iter().sum()),
        forecast_peak: series.map_or(0.0, |s| s.expected.iter().copied().fold(0.0, f32::max)),
    }
}

fn moved(before: &RegionModel, i: usize, after: &RegionModel, j: usize) -> Option<f32> {
    let (a, b) = (before.raw_centroid(i)?, after.raw_centroid(j)?);
    let squares: f32 = (0..FEATURE_DIM)
        .map(|f| {
            let scale = after.normalisation.scale.get(f).copied().filter(|s| *s > 0.0).unwrap_or(1.0);
            ((a[f] - b[f]) / scale).powi(2)
        })
        .sum();
    Some(squares.sqrt())
}

/// Compares region by region and profile id by id (ids are stable across retraining).
pub fn diff(before: &[RegionModel], after: &[RegionModel]) -> ModelDiff {
    let mut names: Vec<&str> = before.iter().chain(after).map(|r| r.region.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let regions = names
        .into_iter()
        .map(|name| {
            let (old, new) = (before.iter().find(|r| r.region == name), after.iter().find(|r| r.region == name));
            let mut ids: Vec<ProfileId> =
                old.iter().chain(new.iter()).flat_map(|r| r.profiles.iter().map(|p| p.id)).collect();
            ids.sort_unstable();
            ids.dedup();
            let profiles = ids
                .into_iter()
                .map(|id| {
                    let i = old.and_then(|r| r.profile_index(id));
                    let j = new.and_then(|r| r.profile_index(id));
                    let change = match (i, j) {
                        (Some(_), Some(_)) => "kept",
                        (None, Some(_)) => "added",
                        _ => "removed",
                    };
                    ProfileDiff {
                        id: id.0,
                        change,
                        before: old.zip(i).map(|(r, i)| figures(r, i)),
                        after: new.zip(j).map(|(r, j)| figures(r, j)),
                        centroid_moved: match (old.zip(i), new.zip(j)) {
                            (Some((a, i)), Some((b, j))) => moved(a, i, b, j),
                            _ => None,
                        },
                    }
                })
                .collect();
            RegionDiff {
                region: name.to_owned(),
                change: match (old, new) {
                    (Some(_), Some(_)) => "kept",
                    (None, Some(_)) => "added",
                    _ => "removed",
                },
                version_before: old.map(|r| r.model_version.0),
                version_after: new.map(|r| r.model_version.0),
                profiles,
            }
        })
        .collect();
    ModelDiff { regions }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prewarm_shared::fixtures::region_model;

    #[test]
    fn added_removed_moved_and_changed_profiles_are_reported() {
        let before = region_model("eu");
        let mut after = before.clone();
        // Profile 0 moves by 2 standardised units on feature 0, costs twice as much and its
        // forecast doubles; the last profile is dropped; a new region appears.
        after.centroids[0] += 2.0;
        after.profiles[0].cost.cpu_ms.median *= 2.0;
        let first = after.profiles[0].id;
        for s in after.forecast.series.iter_mut().filter(|s| s.profile == first) {
            s.expected.iter_mut().for_each(|v| *v *= 2.0);
        }
        let dropped = after.profiles.len() - 1;
        let dropped_id = after.profiles[dropped].id;
        after.profiles.truncate(dropped);
        after.centroids.truncate(dropped * FEATURE_DIM);
        let d = diff(std::slice::from_ref(&before), &[after, region_model("us")]);
        assert_eq!(d.regions.len(), 2);
        let eu = &d.regions[0];
        assert_eq!((eu.region.as_str(), eu.change), ("eu", "kept"));
        assert_eq!(d.regions[1].change, "added");
        let p0 = eu.profiles.iter().find(|p| p.id == first.0).expect("profile 0");
        assert_eq!(p0.change, "kept");
        assert!((p0.centroid_moved.expect("moved") - 2.0).abs() < 1e-4, "{p0:?}");
        let (b, a) = (p0.before.as_ref().expect("before"), p0.after.as_ref().expect("after"));
        assert!((a.cpu_ms - 2.0 * b.cpu_ms).abs() < 1e-4);
        assert!((a.forecast_total - 2.0 * b.forecast_total).abs() < 1e-2 * b.forecast_total.max(1.0));
        let gone = eu.profiles.iter().find(|p| p.id == dropped_id.0).expect("dropped");
        assert_eq!(gone.change, "removed");
        assert!(gone.after.is_none() && gone.centroid_moved.is_none());
        // Unchanged profiles did not move.
        let still = eu.profiles.iter().find(|p| p.id != first.0 && p.change == "kept").expect("another");
        assert!(still.centroid_moved.expect("moved") < 1e-5);
    }
}
