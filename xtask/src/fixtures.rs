//! `cargo xtask edge-fixtures DIR`: published models for the worker tests, built by `shared`
//! exactly as the trainer publishes them, with forecasts around the current time.

use std::path::Path;

use anyhow::{Context, Result};
use prewarm_shared::artifact::{ModelBundle, ModelVersion, ProfileForecast, RegionModel};
use prewarm_shared::{UnixSeconds, fixtures};

const REGIONS: [&str; 3] = ["eu", "us", "apac"];
const STEP_SECS: u32 = 300;
const SLOTS: usize = 288;

/// One model variant: its forecast band and a label suffix (so versions differ in content).
struct Variant {
    name: &'static str,
    version: u32,
    expected: f32,
    upper: f32,
    /// The alarm level (the prewarm signal's threshold); `None`: the band itself.
    alarm: Option<f32>,
    /// From this many slots after the current one, the expected demand is multiplied by this.
    rise: Option<(usize, f32)>,
}

/// The forecast starts this many slots before "now".
const SLOTS_BEFORE_NOW: usize = 12;

const VARIANTS: [Variant; 6] = [
    Variant { name: "model-v1", version: 1, expected: 1_000.0, upper: 2_000.0, alarm: None, rise: None },
    Variant { name: "model-v2", version: 2, expected: 1_000.0, upper: 2_000.0, alarm: None, rise: None },
    // A band so low that a handful of requests in a minute is a surge.
    Variant { name: "model-surge", version: 3, expected: 0.5, upper: 1.0, alarm: None, rise: None },
    // A band that takes more than 5 requests in one minute (25 per 5-minute step) to exceed.
    Variant { name: "model-band", version: 5, expected: 10.0, upper: 25.0, alarm: None, rise: None },
    // Demand is forecast to triple two slots from now.
    Variant { name: "model-rise", version: 4, expected: 100.0, upper: 1_000_000.0, alarm: None, rise: Some((2, 3.0)) },
    // A band of 1 request a minute and an alarm level of 5: 25 requests in a minute stand 6
    // alarm margins above the band, so the excess builds up at 6 per second.
    Variant { name: "model-margin", version: 6, expected: 2.0, upper: 5.0, alarm: Some(25.0), rise: None },
];

fn region(name: &str, variant: &Variant, start: UnixSeconds) -> RegionModel {
    let mut model = fixtures::region_model(name);
    model.model_version = ModelVersion(variant.version);
    for profile in &mut model.profiles {
        profile.label = format!("{} (v{})", profile.label, variant.version);
    }
    model.forecast.start = start;
    model.forecast.step_secs = STEP_SECS;
    model.forecast.series = model
        .profiles
        .iter()
        .map(|p| {
            let expected = (0..SLOTS)
                .map(|slot| match variant.rise {
                    Some((after, factor)) if slot >= SLOTS_BEFORE_NOW + after => variant.expected * factor,
                    _ => variant.expected,
                })
                .collect();
            // The edge's prewarm signal tests the alarm level: the variant's, else its band.
            ProfileForecast {
                profile: p.id,
                expected,
                upper: vec![variant.upper; SLOTS],
                alarm: vec![variant.alarm.unwrap_or(variant.upper); SLOTS],
            }
        })
        .collect();
    model
}

pub fn write(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    // Start an hour back, on a step boundary, so "now" is inside every forecast.
    let step = u64::from(STEP_SECS);
    let start = UnixSeconds((now / step - SLOTS_BEFORE_NOW as u64) * step);
    for variant in &VARIANTS {
        let models: Vec<RegionModel> = REGIONS.iter().map(|r| region(r, variant, start)).collect();
        let (pointer, entries) = ModelBundle::encode(
            &models,
            ModelVersion(variant.version),
            UnixSeconds(now),
            "eu",
            fixtures::region_map(),
        )?;
        let json = serde_json::json!({
            "version": variant.version,
            "default_profile": models[0].default_profile.0,
            "profiles": models[0].profiles.iter().map(|p| serde_json::json!({"id": p.id.0, "label": p.label, "role": p.role})).collect::<Vec<_>>(),
            "regions": pointer.regions.iter().map(|r| serde_json::json!({"region": r.region, "key": r.hash.kv_key()})).collect::<Vec<_>>(),
            // In write order: blobs first, the pointer last.
            "entries": entries.iter().map(|e| serde_json::json!({"key": e.key, "base64": base64(&e.value)})).collect::<Vec<_>>(),
        });
        let path = dir.join(format!("{}.json", variant.name));
        std::fs::write(&path, serde_json::to_vec_pretty(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    eprintln!("edge fixtures written to {}", dir.display());
    Ok(())
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
