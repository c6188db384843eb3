//! The training report: what each training learnt beyond the artifact the edge reads, kept
//! beside the published versions (`reports/<version>.json`) and read back, through these
//! types, by `prewarm inspect`, the monitor, the dashboard and `/v1/status`.

use std::collections::BTreeMap;
use std::path::Path;

use prewarm_shared::UnixSeconds;
use prewarm_shared::artifact::{ModelVersion, PriorityClass};
use serde::{Deserialize, Serialize};

use crate::forecast::engine::SeriesReport;
use crate::model::TrainedRegion;
use crate::profile::quality::RegionQuality;

/// One training run's report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingReport {
    /// The model version trained.
    pub version: u32,
    /// When (Unix seconds).
    pub trained_at: u64,
    /// By region name.
    pub regions: BTreeMap<String, RegionReport>,
}

/// What training found in one region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionReport {
    /// Users in its training window.
    pub users: usize,
    /// The region had too few users and uses the global profiles.
    pub borrowed_global: bool,
    /// The clustering's silhouette.
    pub silhouette: f64,
    /// Profile ids that no longer exist.
    pub retired: Vec<u16>,
    /// Label purity, cost spread, bots placed, stability; why this k.
    #[serde(default)]
    pub quality: RegionQuality,
    /// By profile id.
    pub profiles: BTreeMap<u16, ProfileReport>,
}

/// What training found for one profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileReport {
    /// Its label.
    pub label: String,
    /// Its priority class.
    pub priority: PriorityClass,
    /// Why it has that priority.
    pub priority_reason: String,
    /// The forecast's model, skill and band; none for a profile without history.
    pub forecast: Option<SeriesReport>,
    /// Where the forecast's shape came from when it is not the profile's own.
    pub forecast_note: Option<String>,
}

impl TrainingReport {
    /// The report of a training's regions.
    pub fn of(version: ModelVersion, trained_at: UnixSeconds, regions: &[TrainedRegion]) -> Self {
        let regions = regions
            .iter()
            .map(|r| {
                let profiles = r
                    .model
                    .profiles
                    .iter()
                    .map(|meta| {
                        let trained = r.profiles.get(&meta.id);
                        let report = ProfileReport {
                            label: meta.label.clone(),
                            priority: meta.priority,
                            priority_reason: trained.map(|t| t.priority_reason.clone()).unwrap_or_default(),
                            forecast: trained.and_then(|t| t.forecast.as_ref()).map(|f| f.series.clone()),
                            forecast_note: trained.and_then(|t| t.forecast_note.clone()),
                        };
                        (meta.id.0, report)
                    })
                    .collect();
                let report = RegionReport {
                    users: r.users,
                    borrowed_global: r.borrowed_global,
                    silhouette: r.silhouette,
                    retired: r.retired.iter().map(|id| id.0).collect(),
                    quality: r.quality.clone(),
                    profiles,
                };
                (r.model.region.clone(), report)
            })
            .collect();
        Self { version: version.0, trained_at: trained_at.0, regions }
    }

    fn path(models_dir: &Path, version: u32) -> std::path::PathBuf {
        models_dir.join("reports").join(format!("{version}.json"))
    }

    /// Writes the report beside the versions. Explanations only: a failure is logged, never
    /// fails a publish that succeeded.
    pub fn write(&self, models_dir: &Path) {
        let path = Self::path(models_dir, self.version);
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| serde_json::to_vec(self).map_err(std::io::Error::other))
            .and_then(|bytes| std::fs::write(&path, bytes));
        if let Err(e) = written {
            tracing::warn!(error = %e, "could not write the training report");
        }
    }

    /// The report recorded for `version`, if any (a report of another layout reads as none).
    pub fn read(models_dir: &Path, version: ModelVersion) -> Option<Self> {
        let text = std::fs::read(Self::path(models_dir, version.0)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// One profile's report.
    pub fn profile(&self, region: &str, id: u16) -> Option<&ProfileReport> {
        self.regions.get(region)?.profiles.get(&id)
    }
}
