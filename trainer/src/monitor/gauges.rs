//! What `/metrics` and `/v1/status` read at scrape time beside the counters: gauges from the
//! store and the published model, and the published forecasts' skill.

/// Gauges read from the store and the published model at scrape time.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    /// Events in the store.
    pub events_stored: u64,
    /// Requests the edge counted.
    pub demand_requests: u64,
    /// Prewarm signals, per reason.
    pub prewarm_signals: Vec<(String, u64)>,
    /// The model version the edge last reported.
    pub edge_model_version: Option<u32>,
    /// The published version.
    pub published_version: Option<u32>,
    /// Seconds since it was published.
    pub publish_age_secs: Option<u64>,
    /// Units the plan wants at its first step, per region.
    pub planned_units: Vec<(String, u32)>,
    /// The forecast's expected and upper requests per step now, and what the edge counted in
    /// the last complete minute scaled to a step, per region.
    pub demand_now: Vec<(String, f64, f64, f64)>,
    /// The published version's held-out forecast skill per region × profile.
    pub forecast_skill: Vec<SkillRow>,
    /// The published version's profile quality per region.
    pub profile_quality: Vec<(String, crate::profile::quality::RegionQuality)>,
    /// Prewarm signals the plan still covers (each fades over `nowcast_decay_secs`).
    pub signals_in_effect: usize,
}

/// One region × profile's forecast: the model its recent skill chose, every candidate's
/// out-of-sample MASE, and what its band was calibrated on, from the training report.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct SkillRow {
    /// The region.
    pub region: String,
    /// The profile id.
    pub profile: u16,
    /// The published model.
    pub method: String,
    /// Why that model was chosen.
    pub reason: String,
    /// Each candidate's MASE over the recent origins (lower is better; below 1 beats yesterday).
    #[schema(value_type = Vec<Vec<serde_json::Value>>)]
    pub candidates: Vec<(String, f64)>,
    /// Out-of-sample minutes the band was calibrated on (0: in-sample fallback).
    pub band_scores: usize,
    /// The quantile of a minute's demand the band covers.
    pub band_quantile: f64,
    /// How the series' record chose that quantile (none: the configured one).
    pub band_reason: Option<String>,
    /// Outlier runs masked before fitting.
    pub masked_runs: usize,
}

/// The skill rows of the training report for a published version (none before any report).
pub fn skill_rows(report: Option<&crate::report::TrainingReport>) -> Vec<SkillRow> {
    let Some(report) = report else { return Vec::new() };
    let mut rows = Vec::new();
    for (region, r) in &report.regions {
        for (id, p) in &r.profiles {
            let Some(f) = &p.forecast else { continue };
            rows.push(SkillRow {
                region: region.clone(),
                profile: *id,
                method: f.method.name(),
                reason: f.reason.clone(),
                candidates: f.skill.iter().filter(|s| s.mase.is_finite()).map(|s| (s.method.name(), s.mase)).collect(),
                band_scores: f.band_scores,
                band_quantile: f.band_quantile,
                band_reason: f.band_choice.map(|c| c.reason()),
                masked_runs: f.masked.runs,
            });
        }
    }
    rows
}
