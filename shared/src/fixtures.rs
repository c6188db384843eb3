//! Known, hand-built models for tests, benchmarks, golden files and the edge's test harness.
//!
//! The profiles are the ones the product is built around; their centroids are written in raw
//! feature units (readable) and standardised here exactly as the trainer would.

use crate::artifact::{
    AssignmentParams, CostFigure, CostSource, ForecastTable, ModelVersion, Normalisation,
    PriorityClass, ProfileForecast, ProfileId, ProfileMeta, RegionMap, RegionModel, ResourceCost,
};
use crate::classify::ClassificationRules;
use crate::features::{FEATURE_DIM, FeatureSchema, FeatureVector, UnixSeconds, cyclic};

/// When the fixture forecasts start: 2024-01-01 00:00 UTC.
pub const FORECAST_START: UnixSeconds = UnixSeconds(1_704_067_200);
/// Fixture forecast step (5 minutes) and horizon (one day).
pub const FORECAST_STEP_SECS: u32 = 300;
pub const FORECAST_SLOTS: usize = 288;

fn raw_profile(
    requests_per_session: f32,
    session_minutes: f32,
    routes: f32,
    content: [f32; 4],
    hour: f32,
    weekday: f32,
    device: [f32; 3],
    rtt: f32,
    bytes_per_second: f32,
) -> FeatureVector {
    let (hs, hc) = cyclic(hour, 24.0);
    let (ws, wc) = cyclic(weekday, 7.0);
    [
        requests_per_session.ln_1p(),
        session_minutes.ln_1p(),
        routes,
        content[0],
        content[1],
        content[2],
        content[3],
        hs * 0.8,
        hc * 0.8,
        ws * 0.5,
        wc * 0.5,
        device[0],
        device[1],
        device[2],
        rtt,
        bytes_per_second.ln_1p(),
    ]
}

/// The fixture's profiles, in raw units, with their metadata.
pub fn profiles() -> Vec<(FeatureVector, ProfileMeta)> {
    let cost = |cpu: f32, mem: f32, bytes: f32| ResourceCost {
        cpu_ms: CostFigure {
            median: cpu,
            p90: cpu * 2.5,
            source: CostSource::Measured,
        },
        memory_mb_s: CostFigure {
            median: mem,
            p90: mem * 2.0,
            source: CostSource::Measured,
        },
        bytes: CostFigure {
            median: bytes,
            p90: bytes * 3.0,
            source: CostSource::Measured,
        },
    };
    let meta = |id: u16, label: &str, priority, share, cost| ProfileMeta {
        id: ProfileId(id),
        label: label.to_owned(),
        priority,
        share_of_users: share,
        cost,
    };
    vec![
        (
            raw_profile(
                40.0,
                35.0,
                2.0,
                [0.85, 0.05, 0.05, 0.0],
                21.0,
                4.0,
                [0.9, 0.05, 0.0],
                2.0,
                2.0e6,
            ),
            meta(
                1,
                "mobile · video · evening",
                PriorityClass::Standard,
                0.35,
                cost(4.0, 30.0, 1.5e6),
            ),
        ),
        (
            raw_profile(
                120.0,
                240.0,
                3.0,
                [0.0, 0.1, 0.1, 0.75],
                11.0,
                2.0,
                [0.0, 0.0, 0.05],
                1.0,
                5.0e4,
            ),
            meta(
                2,
                "desktop · api · office hours",
                PriorityClass::Critical,
                0.25,
                cost(12.0, 8.0, 4.0e3),
            ),
        ),
        (
            raw_profile(
                12.0,
                15.0,
                2.0,
                [0.05, 0.8, 0.05, 0.0],
                10.0,
                5.5,
                [0.3, 0.3, 0.0],
                2.0,
                2.0e5,
            ),
            meta(
                3,
                "tablet · text · weekend",
                PriorityClass::Standard,
                0.30,
                cost(2.0, 4.0, 6.0e4),
            ),
        ),
        (
            raw_profile(
                300.0,
                60.0,
                4.0,
                [0.0, 0.7, 0.0, 0.1],
                3.0,
                3.0,
                [0.0, 0.0, 1.0],
                0.5,
                1.0e5,
            ),
            meta(
                4,
                "bot · text · night",
                PriorityClass::BestEffort,
                0.10,
                cost(3.0, 2.0, 3.0e4),
            ),
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
        .flat_map(|(raw, _)| {
            raw.iter()
                .zip(&mean)
                .zip(&scale)
                .map(|((x, m), s)| (x - m) / s)
                .collect::<Vec<_>>()
        })
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
            ProfileForecast {
                profile: meta.id,
                expected,
                upper,
            }
        })
        .collect();
    RegionModel {
        region: region.to_owned(),
        model_version: ModelVersion(1),
        schema: FeatureSchema::current(),
        normalisation: Normalisation {
            mean: mean.to_vec(),
            scale,
        },
        centroids,
        default_profile: ProfileId(3),
        profiles: profiles.into_iter().map(|(_, meta)| meta).collect(),
        assignment: AssignmentParams {
            min_requests: 3,
            hysteresis_margin: 0.3,
        },
        rules: ClassificationRules::default(),
        forecast: ForecastTable {
            start: FORECAST_START,
            step_secs: FORECAST_STEP_SECS,
            upper_quantile: 0.9,
            series,
        },
    }
}

/// A region map for fixture regions `eu`, `us` and `apac`.
pub fn region_map() -> RegionMap {
    let pairs = |items: &[(&str, &str)]| {
        items
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    };
    RegionMap {
        by_colo: pairs(&[("LHR", "eu"), ("IAD", "us")]),
        by_country: pairs(&[("DE", "eu"), ("FR", "eu"), ("US", "us"), ("JP", "apac")]),
        by_continent: pairs(&[("EU", "eu"), ("NA", "us"), ("AS", "apac"), ("OC", "apac")]),
    }
}
