//! Cold start across regions: a region under two weeks old is too young to show a day's and a
//! week's shape of its own. Each of its profiles takes the forecast shape of the most similar
//! profile of a mature region (same label first, else the nearest centroid), moved to its own
//! local time and scaled to its own level.

use std::collections::BTreeMap;

use prewarm_shared::ProfileId;
use prewarm_shared::artifact::RegionModel;

/// A region with under this much history borrows shapes.
pub const YOUNG_REGION_SECS: u64 = 14 * 86_400;

/// One region as the cold start sees it.
#[derive(Debug)]
pub struct RegionHistory<'a> {
    /// The region's model, whose forecasts may be borrowed into.
    pub model: &'a mut RegionModel,
    /// Seconds from its first request to its last.
    pub history_secs: u64,
    /// Each profile's mean requests per step since its first request.
    pub level: BTreeMap<ProfileId, f64>,
    /// Its UTC offset, for aligning another region's daily shape.
    pub utc_offset_minutes: i32,
}

/// Borrows shapes for every young region; returns (region index, profile, note) of each.
pub fn borrow_across_regions(regions: &mut [RegionHistory<'_>]) -> Vec<(usize, ProfileId, String)> {
    let mature: Vec<usize> = (0..regions.len()).filter(|&i| regions[i].history_secs >= YOUNG_REGION_SECS).collect();
    let mut notes = Vec::new();
    if mature.is_empty() {
        return notes;
    }
    for young in 0..regions.len() {
        if regions[young].history_secs >= YOUNG_REGION_SECS {
            continue;
        }
        let offset = regions[young].utc_offset_minutes;
        let mut borrowed = Vec::new();
        for (i, meta) in regions[young].model.profiles.iter().enumerate() {
            let Some(raw) = regions[young].model.raw_centroid(i) else { continue };
            let level = regions[young].level.get(&meta.id).copied().unwrap_or(0.0);
            if level <= 0.0 {
                continue;
            }
            // Same label first, then the nearest centroid (in the donor's standard units).
            let donor = mature
                .iter()
                .flat_map(|&d| (0..regions[d].model.profiles.len()).map(move |j| (d, j)))
                .filter_map(|(d, j)| {
                    let model = &*regions[d].model;
                    let other = model.raw_centroid(j)?;
                    let distance: f64 = raw
                        .iter()
                        .zip(&other)
                        .zip(&model.normalisation.scale)
                        .map(|((a, b), s)| (f64::from(a - b) / f64::from(s.max(0.05))).powi(2))
                        .sum::<f64>()
                        .sqrt();
                    let label_differs = model.profiles[j].label != meta.label;
                    Some(((label_differs, distance), d, j))
                })
                .min_by(|a, b| a.0.0.cmp(&b.0.0).then(a.0.1.total_cmp(&b.0.1)));
            let Some((_, d, j)) = donor else { continue };
            let donor_model = &*regions[d].model;
            let Some(series) = donor_model.forecast.of(donor_model.profiles[j].id) else { continue };
            let day = ((86_400 / u64::from(donor_model.forecast.step_secs.max(1))) as usize)
                .min(series.expected.len())
                .max(1);
            let mean = series.expected[..day].iter().map(|v| f64::from(*v)).sum::<f64>() / day as f64;
            if mean <= 0.0 {
                continue;
            }
            // The same local time: the donor's UTC slot plus the offset difference, and the
            // two tables' start difference; a day wraps around.
            let step = i64::from(donor_model.forecast.step_secs.max(1));
            let moved_minutes = offset - regions[d].utc_offset_minutes;
            let shift_secs = i64::from(moved_minutes) * 60
                + (regions[young].model.forecast.start.0 as i64 - donor_model.forecast.start.0 as i64);
            let shift = shift_secs / step;
            let scale = level / mean;
            let len = regions[young].model.forecast.series.iter().map(|s| s.expected.len()).max().unwrap_or(day);
            let at = |values: &[f32], k: usize| -> f32 {
                let index = (k as i64 + shift).rem_euclid(day as i64) as usize;
                (f64::from(values.get(index).copied().unwrap_or(0.0)) * scale) as f32
            };
            let shaped = |values: &[f32]| (0..len).map(|k| at(values, k)).collect::<Vec<f32>>();
            let note = format!(
                "region under 14 days old: shape of region {} profile {} ({}), moved {moved_minutes:+} min to local time, scaled to {level:.1} requests per step",
                donor_model.region, donor_model.profiles[j].id.0, donor_model.profiles[j].label,
            );
            borrowed.push((meta.id, shaped(&series.expected), shaped(&series.upper), shaped(&series.alarm), note));
        }
        for (id, expected, upper, alarm, note) in borrowed {
            if let Some(s) = regions[young].model.forecast.series.iter_mut().find(|s| s.profile == id) {
                s.expected = expected;
                s.upper = upper;
                s.alarm = alarm;
                notes.push((young, id, note));
            }
        }
    }
    notes
}
