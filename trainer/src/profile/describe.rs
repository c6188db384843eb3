//! Human labels from a profile's dominant features, and per-profile resource costs.

use prewarm_shared::artifact::{CostFigure, CostSource, ResourceCost};
use prewarm_shared::features::{FeatureVector, index};

use crate::config::CostConfig;
use crate::ingest::event::Event;

/// "mobile · video · evening": dominant device, dominant content and time of day, from a
/// centroid in raw feature units.
pub fn label(raw: &FeatureVector) -> String {
    let mobile = raw[index::DEVICE_MOBILE];
    let tablet = raw[index::DEVICE_TABLET];
    let bot = raw[index::DEVICE_BOT];
    let desktop = (1.0 - mobile - tablet - bot).max(0.0);
    let device = [("desktop", desktop), ("mobile", mobile), ("tablet", tablet), ("bot", bot)]
        .into_iter()
        .fold(("desktop", f32::MIN), |a, b| if b.1 > a.1 { b } else { a })
        .0;
    let video = raw[index::CONTENT_VIDEO];
    let text = raw[index::CONTENT_TEXT];
    let interactive = raw[index::CONTENT_INTERACTIVE];
    let api = raw[index::CONTENT_API];
    let static_share = (1.0 - video - text - interactive - api).max(0.0);
    let content =
        [("video", video), ("text", text), ("interactive", interactive), ("api", api), ("static", static_share)]
            .into_iter()
            .fold(("text", f32::MIN), |a, b| if b.1 > a.1 { b } else { a })
            .0;
    let (s, c) = (raw[index::HOUR_SIN], raw[index::HOUR_COS]);
    let when = if (s * s + c * c).sqrt() < 0.25 {
        "all day"
    } else {
        let hour = (s.atan2(c).rem_euclid(std::f32::consts::TAU) / std::f32::consts::TAU) * 24.0;
        match hour {
            h if h < 6.0 => "night",
            h if h < 9.0 => "early morning",
            h if h < 17.0 => "office hours",
            h if h < 22.0 => "evening",
            _ => "night",
        }
    };
    // Activity concentrated on Saturday and Sunday says more than the hour.
    let (ws, wc) = (raw[index::WEEKDAY_SIN], raw[index::WEEKDAY_COS]);
    let weekday = (ws.atan2(wc).rem_euclid(std::f32::consts::TAU) / std::f32::consts::TAU) * 7.0;
    let when = if (ws * ws + wc * wc).sqrt() >= 0.45 && (4.5..6.6).contains(&weekday) { "weekend" } else { when };
    format!("{device} · {content} · {when}")
}

/// Profiles that share a label get the trait that tells them apart: how many requests their
/// sessions have, and how long the sessions last.
pub fn disambiguate(profiles: &mut [prewarm_shared::artifact::ProfileMeta], raw: &[FeatureVector]) {
    let labels: Vec<String> = profiles.iter().map(|p| p.label.clone()).collect();
    for (i, p) in profiles.iter_mut().enumerate() {
        if labels.iter().filter(|l| **l == labels[i]).count() > 1 {
            let requests = raw[i][index::REQUESTS_PER_SESSION].exp_m1();
            let minutes = raw[i][index::SESSION_MINUTES].exp_m1();
            p.label = format!("{} · {requests:.0} req/session, {minutes:.0} min", p.label);
        }
    }
}

fn quantile(sorted: &[f32], q: f32) -> f32 {
    if sorted.is_empty() {
        return 0.0;
    }
    let pos = (q * (sorted.len() - 1) as f32).round() as usize;
    sorted[pos.min(sorted.len() - 1)]
}

fn figure(mut values: Vec<f32>, source: CostSource) -> CostFigure {
    values.sort_by(f32::total_cmp);
    let mean = values.iter().map(|v| f64::from(*v)).sum::<f64>() / values.len().max(1) as f64;
    CostFigure { mean: mean as f32, median: quantile(&values, 0.5), p90: quantile(&values, 0.9), source }
}

/// Cost per request of one profile's events: measured where every event carries the field,
/// otherwise estimated from durations and sizes with the configured proxies.
pub fn costs<'a>(events: impl Iterator<Item = &'a Event> + Clone, proxy: &CostConfig) -> ResourceCost {
    let all_cpu = events.clone().all(|e| e.cpu_ms.is_some());
    let all_mem = events.clone().all(|e| e.memory_mb_s.is_some());
    let cpu = events
        .clone()
        .map(|e| if all_cpu { e.cpu_ms.unwrap_or(0.0) } else { e.duration_ms * proxy.cpu_ms_per_duration_ms })
        .collect();
    let memory = events
        .clone()
        .map(|e| {
            if all_mem {
                e.memory_mb_s.unwrap_or(0.0)
            } else {
                proxy.memory_mb_s_per_request + e.bytes as f32 / 1024.0 * proxy.memory_mb_s_per_kb
            }
        })
        .collect();
    let bytes = events.map(|e| e.bytes as f32).collect();
    let source = |measured| if measured { CostSource::Measured } else { CostSource::Estimated };
    ResourceCost {
        cpu_ms: figure(cpu, source(all_cpu)),
        memory_mb_s: figure(memory, source(all_mem)),
        bytes: figure(bytes, CostSource::Measured),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prewarm_shared::fixtures;

    #[test]
    fn labels_name_the_dominant_traits() {
        let labels: Vec<String> = fixtures::profiles().iter().map(|(raw, _)| label(raw)).collect();
        assert_eq!(labels[0], "mobile · video · evening");
        assert_eq!(labels[1], "desktop · api · office hours");
        assert!(labels[2].ends_with(" · text · weekend"), "{}", labels[2]);
        assert!(labels[3].starts_with("bot · text"));
    }
}
