//! The model stage: a region's profiles and its forecast assembled into what is published
//! (the edge's artifact) and what is reported beside it.

use std::collections::BTreeMap;

use prewarm_shared::ProfileId;
use prewarm_shared::artifact::RegionModel;
use prewarm_shared::signals::UserHash;

use crate::forecast::tables::{ProfileForecastReport, RegionForecast};
use crate::profile::FittedRegion;

/// One region's training outcome.
#[derive(Debug, Clone)]
pub struct TrainedRegion {
    /// What the edge reads: profiles, centroids, the forecast table.
    pub model: RegionModel,
    /// Users in the region's training window.
    pub users: usize,
    /// The region had too few users and uses the global profiles.
    pub borrowed_global: bool,
    /// The clustering's silhouette (0 when nothing was clustered).
    pub silhouette: f64,
    /// Profile ids of the previous model that no longer exist.
    pub retired: Vec<ProfileId>,
    /// Label purity, cost spread, bots placed, stability; why this k.
    pub quality: crate::profile::quality::RegionQuality,
    /// Each training user's profile (for evaluation and the replay).
    pub user_profiles: Vec<(UserHash, ProfileId)>,
    /// What the training knows of each profile beyond the artifact.
    pub profiles: BTreeMap<ProfileId, TrainedProfile>,
}

/// What a training learnt about one profile beyond the artifact (which stays small).
#[derive(Debug, Clone, Default)]
pub struct TrainedProfile {
    /// Why the profile has its priority.
    pub priority_reason: String,
    /// How its forecast was made: model, skill, band (none without history).
    pub forecast: Option<ProfileForecastReport>,
    /// When its shape came from elsewhere (cold start across regions).
    pub forecast_note: Option<String>,
}

/// A fitted region and its forecast, as one trained region.
pub fn assemble(fitted: FittedRegion, forecast: RegionForecast) -> TrainedRegion {
    let FittedRegion { mut model, users, borrowed_global, silhouette, retired, quality, user_profiles, profiles } =
        fitted;
    model.forecast = forecast.table;
    let mut reports = forecast.reports;
    let profiles = profiles
        .into_iter()
        .map(|(id, p)| {
            let forecast = reports.remove(&id);
            let forecast_note = forecast.as_ref().and_then(|f| f.note.clone());
            (id, TrainedProfile { priority_reason: p.priority_reason, forecast, forecast_note })
        })
        .collect();
    TrainedRegion { model, users, borrowed_global, silhouette, retired, quality, user_profiles, profiles }
}
