//! Human labels from a profile's dominant features (its costs are tallied in [`super::tally`]).

use prewarm_shared::features::{FeatureVector, index};

/// A class is named only when it holds at least this share; below, the label says "mixed".
pub const DOMINANT_SHARE: f32 = 0.5;

/// The class with the largest share, or "mixed" when none reaches [`DOMINANT_SHARE`].
fn dominant(shares: &[(&'static str, f32)], mixed: &'static str) -> &'static str {
    shares
        .iter()
        .copied()
        .fold(None::<(&str, f32)>, |best, s| if best.is_none_or(|b| s.1 > b.1) { Some(s) } else { best })
        .filter(|(_, share)| *share >= DOMINANT_SHARE)
        .map_or(mixed, |(name, _)| name)
}

/// Device shares including the implicit desktop (= 1 − the others).
pub fn device_shares(raw: &FeatureVector) -> [(&'static str, f32); 4] {
    let (mobile, tablet, bot) = (raw[index::DEVICE_MOBILE], raw[index::DEVICE_TABLET], raw[index::DEVICE_BOT]);
    [("desktop", (1.0 - mobile - tablet - bot).max(0.0)), ("mobile", mobile), ("tablet", tablet), ("bot", bot)]
}

/// Content shares including the implicit static (= 1 − the others).
pub fn content_shares(raw: &FeatureVector) -> [(&'static str, f32); 5] {
    let (video, text) = (raw[index::CONTENT_VIDEO], raw[index::CONTENT_TEXT]);
    let (interactive, api) = (raw[index::CONTENT_INTERACTIVE], raw[index::CONTENT_API]);
    let static_share = (1.0 - video - text - interactive - api).max(0.0);
    [("video", video), ("text", text), ("interactive", interactive), ("api", api), ("static", static_share)]
}

/// The dominant device class of a feature vector, or "mixed".
pub fn device_class(raw: &FeatureVector) -> &'static str {
    dominant(&device_shares(raw), "mixed devices")
}

/// The dominant content class of a feature vector, or "mixed".
pub fn content_class(raw: &FeatureVector) -> &'static str {
    dominant(&content_shares(raw), "mixed content")
}

/// "mobile · video · evening": dominant device, dominant content and time of day, from a
/// centroid in raw feature units; a part with no class holding half the share says "mixed".
pub fn label(raw: &FeatureVector) -> String {
    format!("{} · {}", device_class(raw), content_and_time(raw))
}

/// "video · evening": the label without the device.
pub fn content_and_time(raw: &FeatureVector) -> String {
    let content = content_class(raw);
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
    format!("{content} · {when}")
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

    #[test]
    fn no_dominant_class_is_mixed_and_desktop_is_never_claimed_for_bots() {
        let mut raw = fixtures::profiles()[0].0;
        raw[index::DEVICE_MOBILE] = 0.3;
        raw[index::DEVICE_TABLET] = 0.0;
        raw[index::DEVICE_BOT] = 0.3;
        // desktop 0.4, mobile 0.3, bot 0.3: nothing holds half.
        assert!(label(&raw).starts_with("mixed devices · "), "{}", label(&raw));
        raw[index::DEVICE_BOT] = 0.66;
        raw[index::DEVICE_MOBILE] = 0.0;
        assert!(label(&raw).starts_with("bot · "), "{}", label(&raw));
        raw[index::CONTENT_VIDEO] = 0.3;
        raw[index::CONTENT_TEXT] = 0.3;
        raw[index::CONTENT_INTERACTIVE] = 0.0;
        raw[index::CONTENT_API] = 0.0;
        assert_eq!(content_class(&raw), "mixed content");
    }
}
