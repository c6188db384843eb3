//! One training run, end to end: profiles from the store, then a publish of the new model
//! version to the directory publisher.

use prewarm_shared::UnixSeconds;
use prewarm_shared::artifact::{ModelBundle, ModelVersion, RegionMap, RegionModel};
use prewarm_shared::classify::ClassificationRules;

use crate::config::TrainerConfig;
use crate::profile::{self, ProfileError, TrainedRegion};
use crate::publish::{DirPublisher, PublishError};
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("cannot encode the model: {0}")]
    Artifact(#[from] prewarm_shared::ArtifactError),
}

/// The outcome of a run.
#[derive(Debug)]
pub struct TrainRun {
    pub version: ModelVersion,
    pub regions: Vec<TrainedRegion>,
    /// False when the model is identical in content to the published one.
    pub published: bool,
}

/// Trains on everything in the store and publishes the result as the next version.
pub fn train_and_publish(
    store: &Store,
    config: &TrainerConfig,
    rules: &ClassificationRules,
    publisher: &DirPublisher,
    now: UnixSeconds,
) -> Result<TrainRun, TrainError> {
    let previous = publisher.current()?;
    let previous_models: Vec<RegionModel> = previous.as_ref().map(|(_, r)| r.clone()).unwrap_or_default();
    let version = ModelVersion(publisher.next_version()?);
    let regions = profile::train(store, config, rules, &previous_models, version, now)?;
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
        return Ok(TrainRun { version: current, regions, published: false });
    }
    let default_region =
        models.iter().find(|m| m.region == config.default_region).or(models.first()).map_or("", |m| m.region.as_str());
    let region_map = RegionMap::default();
    let (_, entries) = ModelBundle::encode(&models, version, now, default_region, region_map)?;
    publisher.publish(&entries)?;
    write_training_report(&config.models_dir(), version, &regions);
    Ok(TrainRun { version, regions, published: true })
}

/// What a training run learnt about each profile beyond the artifact the edge reads (which
/// stays as small as it is): why its priority, and its held-out forecast skill. Kept beside
/// the published versions as `reasons/<version>.json`: region → profile id →
/// `{"priority_reason", "forecast"}`.
fn write_training_report(models_dir: &std::path::Path, version: ModelVersion, regions: &[TrainedRegion]) {
    let report: serde_json::Map<String, serde_json::Value> = regions
        .iter()
        .map(|r| {
            let by_profile = r
                .model
                .profiles
                .iter()
                .map(|p| {
                    let why = r.priority_reasons.iter().find(|(id, _)| *id == p.id).map(|(_, w)| w.clone());
                    let skill = r.forecast_skill.iter().find(|(id, _)| *id == p.id).map(|(_, s)| *s);
                    let note = r.forecast_notes.iter().find(|(id, _)| *id == p.id).map(|(_, n)| n.clone());
                    (
                        p.id.0.to_string(),
                        serde_json::json!({ "priority_reason": why, "forecast": skill, "forecast_note": note }),
                    )
                })
                .collect();
            (r.model.region.clone(), serde_json::Value::Object(by_profile))
        })
        .collect();
    let dir = models_dir.join("reasons");
    let written = std::fs::create_dir_all(&dir).and_then(|()| {
        std::fs::write(dir.join(format!("{}.json", version.0)), serde_json::Value::Object(report).to_string())
    });
    // Explanations only: a failure to write them must not fail a publish that succeeded.
    if let Err(e) = written {
        tracing::warn!(error = %e, "could not write the training report");
    }
}

/// The report recorded for `version`, if any: region → profile id → {priority_reason, forecast}.
pub fn training_report(models_dir: &std::path::Path, version: ModelVersion) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(models_dir.join("reasons").join(format!("{}.json", version.0))).ok()?;
    serde_json::from_str(&text).ok()
}
