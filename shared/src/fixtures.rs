//! Known, hand-built models for tests, benchmarks, golden files and the edge's test harness.
//!
//! The profiles are the ones the product is built around; their centroids are written in raw
//! feature units (readable) and standardised here exactly as the trainer would.

use crate::artifact::{
    AssignmentParams, CostFigure, CostSource, ForecastTable, ModelVersion, Normalisation, PriorityClass,
    ProfileForecast, ProfileId, ProfileMeta, ProfileRole, RegionMap, RegionModel, ResourceCost,
};
use crate::classify::ClassificationRules;
use crate::features::{FEATURE_DIM, FeatureSchema, FeatureVector, UnixSeconds, cyclic};

/// When the fixture forecasts start: 2024-01-01 00:00 UTC.
pub const FORECAST_START: UnixSeconds = UnixSeconds(1_704_067_200);
/// Fixture forecast step (5 minutes) and horizon (one day).
pub const FORECAST_STEP_SECS: u32 = 300;
/// Slots in the fixture forecasts (a day of 5-minute steps).
pub const FORECAST_SLOTS: usize = 288;

/// A profile's behaviour in readable units.
struct Shape {
    requests_per_session: f32,
    session_minutes: f32,
    routes: f32,
    /// video, text, interactive, api shares
    content: [f32; 4],
    hour: f32,
    weekday: f32,
    /// mobile, tablet, bot shares
    device: [f32; 3],
    rtt_bucket: f32,
    bytes_per_second: f32,
}

impl Shape {
    fn features(&self) -> FeatureVector {
        let (hs, hc) = cyclic(self.hour, 24.0);
        let (ws, wc) = cyclic(self.weekday, 7.0);
        // Means of cyclic encodings shrink towards 0 as activity spreads over the day and week.
        [
            self.requests_per_session.ln_1p(),
            self.session_minutes.ln_1p(),
            self.routes,
            self.content[0],
            self.content[1],
            self.content[2],
            self.content[3],
            hs * 0.8,
            hc * 0.8,
            ws * 0.5,
            wc * 0.5,
            self.device[0],
            self.device[1],
            self.device[2],
            self.rtt_bucket,
            self.bytes_per_second.ln_1p(),
        ]
    }
}

/// The fixture's profiles, in raw units, with their metadata.
pub fn profiles() -> Vec<(FeatureVector, ProfileMeta)> {
    let cost = |cpu: f32, mem: f32, bytes: f32| ResourceCost {
        cpu_ms: CostFigure { mean: cpu * 1.3, median: cpu, p90: cpu * 2.5, source: CostSource::Measured },
        memory_mb_s: CostFigure { mean: mem * 1.2, median: mem, p90: mem * 2.0, source: CostSource::Measured },
        bytes: CostFigure { mean: bytes * 1.5, median: bytes, p90: bytes * 3.0, source: CostSource::Measured },
    };
    let meta = |id: u16, label: &str, priority, share, cost| ProfileMeta {
        id: ProfileId(id),
        label: label.to_owned(),
        priority,
        share_of_users: share,
        cost,
        role: if label.starts_with("bot") { ProfileRole::Automated } else { ProfileRole::Clustered },
    };
    vec![
        (
            Shape {
                requests_per_session: 40.0,
                session_minutes: 35.0,
                routes: 2.0,
                content: [0.85, 0.05, 0.05, 0.0],
                hour: 21.0,
                weekday: 4.0,
                device: [0.9, 0.05, 0.0],
                rtt_bucket: 2.0,
                bytes_per_second: 2.0e6,
            }
            .features(),
            meta(1, "mobile · video · evening", PriorityClass::Standard, 0.35, cost(4.0, 30.0, 1.5e6)),
        ),
        (
            Shape {
                requests_per_session: 120.0,
                session_minutes: 240.0,
                routes: 3.0,
                content: [0.0, 0.1, 0.1, 0.75],
                hour: 11.0,
                weekday: 2.0,
                device: [0.0, 0.0, 0.05],
                rtt_bucket: 1.0,
                bytes_per_second: 5.0e4,
            }
            .features(),
            meta(2, "desktop · api · office hours", PriorityClass::Critical, 0.25, cost(12.0, 8.0, 4.0e3)),
        ),
        (
            Shape {
                requests_per_session: 12.0,
                session_minutes: 15.0,
                routes: 2.0,
                content: [0.05, 0.8, 0.05, 0.0],
                hour: 10.0,
                weekday: 5.5,
                device: [0.3, 0.3, 0.0],
                rtt_bucket: 2.0,
                bytes_per_second: 2.0e5,
            }
            .features(),
            meta(3, "tablet · text · weekend", PriorityClass::Standard, 0.30, cost(2.0, 4.0, 6.0e4)),
        ),
        (
            Shape {
                requests_per_session: 300.0,
                session_minutes: 60.0,
                routes: 4.0,
                content: [0.0, 0.7, 0.0, 0.1],
                hour: 3.0,
                weekday: 3.0,
                device: [0.0, 0.0, 1.0],
                rtt_bucket: 0.5,
                bytes_per_second: 1.0e5,
            }
            .features(),
            meta(4, "bot · text · night", PriorityClass::BestEffort, 0.10, cost(3.0, 2.0, 3.0e4)),
        ),
    ]
}

/// A complete, valid region model with the fixture profiles and a daily forecast.
pub fn region_model(region: &str) -> RegionModel {
    let profiles = profiles();
    let k = profiles.len() as f32;
    let mut mean = [0.0f32; FEATURE_DIM];
    for (raw, _) in &profiles {
        for (m, x) in mean.iter_mut().zip(raw) {
            *m += x / k;
        }
    }
    let mut scale = [0.0f32; FEATURE_DIM];
    for (raw, _) in &profiles {
        for ((s, x), m) in scale.iter_mut().zip(raw).zip(&mean) {
            *s += (x - m) * (x - m) / k;
        }
    }
    let scale: Vec<f32> = scale.iter().map(|v| v.sqrt().max(0.05)).collect();
    let centroids = profiles
        .iter()
        .flat_map(|(raw, _)| raw.iter().zip(&mean).zip(&scale).map(|((x, m), s)| (x - m) / s).collect::<Vec<_>>())
        .collect();
    let series = profiles
        .iter()
        .enumerate()
        .map(|(i, (_, meta))| {
            let base = 100.0 * (i + 1) as f32;
            let expected: Vec<f32> = (0..FORECAST_SLOTS)
                .map(|slot| {
                    let (s, _) = cyclic(slot as f32 + 48.0 * i as f32, FORECAST_SLOTS as f32);
                    base * (1.0 + 0.5 * s)
                })
                .collect();
            let upper = expected.iter().map(|e| e * 1.3 + 5.0).collect();
            let alarm = expected.iter().map(|e| e * 1.6 + 10.0).collect();
            ProfileForecast { profile: meta.id, expected, upper, alarm }
        })
        .collect();
    RegionModel {
        region: region.to_owned(),
        model_version: ModelVersion(1),
        schema: FeatureSchema::current(),
        normalisation: Normalisation { mean: mean.to_vec(), scale },
        centroids,
        default_profile: ProfileId(3),
        profiles: profiles.into_iter().map(|(_, meta)| meta).collect(),
        assignment: AssignmentParams { min_requests: 3, hysteresis_margin: 0.3 },
        rules: ClassificationRules::default(),
        forecast: ForecastTable { start: FORECAST_START, step_secs: FORECAST_STEP_SECS, upper_quantile: 0.9, series },
    }
}

/// A region map for fixture regions `eu`, `us` and `apac`.
pub fn region_map() -> RegionMap {
    let pairs = |items: &[(&str, &str)]| items.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect();
    RegionMap {
        by_colo: pairs(&[("LHR", "eu"), ("IAD", "us")]),
        by_country: pairs(&[("DE", "eu"), ("FR", "eu"), ("US", "us"), ("JP", "apac")]),
        by_continent: pairs(&[("EU", "eu"), ("NA", "us"), ("AS", "apac"), ("OC", "apac")]),
    }
}
