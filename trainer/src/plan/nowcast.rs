//! Nowcasting: what the edge sees now corrects the plan within a minute, without waiting for
//! the next training.
//!
//! - **Level**: over the last half hour of the edge's demand counts, observed ÷ forecast per
//!   profile, shrunk towards 1 by a pseudo-count (a profile of a few requests a minute cannot
//!   swing its plan on noise), bounded to [½, 3], and fading towards the forecast with the
//!   horizon (half-life an hour), as far as the last five minutes agree: a level shift moves
//!   the plan, a crowd that has passed does not hold it up.
//! - **Prewarm signals**: a signal says a minute ran above the alarm level; its observed rate
//!   is covered from the step it arrived in, fading over `nowcast_decay_secs` (a crowd that
//!   lasts keeps signalling, once a debounce window). A flash crowd the calendar did not announce is answered at the
//!   first signal.

use std::collections::BTreeMap;

use prewarm_shared::artifact::ForecastTable;
use prewarm_shared::{ProfileId, UnixSeconds};

use crate::forecast::nowcast;

/// Minutes of counts the level compares.
pub const LEVEL_WINDOW_MINUTES: u64 = nowcast::WINDOW_MINUTES;

/// What the edge has reported lately, for every region.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Live {
    /// Demand counts: (region, profile, minute since the epoch, requests), region-wide.
    pub counts: Vec<(String, u16, u64, u64)>,
    /// Prewarm signals: (region, profile, Unix seconds, observed requests per step).
    pub signals: Vec<(String, u16, u64, f32)>,
}

/// One region's corrections, ready for the plan.
#[derive(Debug, Clone, Default)]
pub struct RegionLive {
    levels: BTreeMap<u16, f64>,
    signals: Vec<(u16, u64, f32)>,
    decay_secs: u64,
}

impl Live {
    /// What the store holds of the edge's last half hour and of the signals still in effect.
    pub fn from_store(
        store: &crate::store::Store,
        now: UnixSeconds,
        decay_secs: u64,
    ) -> Result<Self, crate::store::StoreError> {
        let since_minute = (now.0 / 60).saturating_sub(LEVEL_WINDOW_MINUTES);
        Ok(Self {
            counts: store.demand_since(since_minute)?,
            signals: store.recent_prewarm(now.0.saturating_sub(decay_secs))?,
        })
    }

    /// The corrections for one region's table at `now`.
    pub fn for_region(&self, region: &str, table: &ForecastTable, now: UnixSeconds, decay_secs: u64) -> RegionLive {
        let step_minutes = f64::from(table.step_secs.max(1)) / 60.0;
        let to = now.0 / 60; // the minute under way is not complete
        let from = to.saturating_sub(LEVEL_WINDOW_MINUTES);
        let counts: Vec<&(String, u16, u64, u64)> =
            self.counts.iter().filter(|(r, _, m, _)| r == region && (from..to).contains(m)).collect();
        let mut levels = BTreeMap::new();
        // No count at all from the region: the edge is not reporting, nothing to correct.
        if !counts.is_empty() {
            for series in &table.series {
                let (mut whole, mut recent, mut minutes) = ((0.0, 0.0), (0.0, 0.0), 0u64);
                let recent_from = to.saturating_sub(nowcast::RECENT_MINUTES);
                for minute in from..to {
                    // Only the minutes the table forecast (a table starts at its training).
                    let Some(slot) = table.slot(UnixSeconds(minute * 60)) else { continue };
                    let expected = f64::from(series.expected[slot]) / step_minutes;
                    let observed = counts
                        .iter()
                        .filter(|(_, p, m, _)| *p == series.profile.0 && *m == minute)
                        .map(|c| c.3 as f64)
                        .sum::<f64>();
                    whole = (whole.0 + observed, whole.1 + expected);
                    if minute >= recent_from {
                        recent = (recent.0 + observed, recent.1 + expected);
                    }
                    minutes += 1;
                }
                if minutes < LEVEL_WINDOW_MINUTES / 3 {
                    continue;
                }
                levels.insert(series.profile.0, nowcast::level(whole, recent));
            }
        }
        let since = now.0.saturating_sub(decay_secs);
        let signals = self
            .signals
            .iter()
            .filter(|(r, _, at, _)| r == region && *at >= since && *at <= now.0)
            .map(|(_, p, at, observed)| (*p, *at, *observed))
            .collect();
        RegionLive { levels, signals, decay_secs }
    }
}

impl RegionLive {
    /// The level correction of a profile (1: none).
    pub fn level(&self, profile: ProfileId) -> f64 {
        self.levels.get(&profile.0).copied().unwrap_or(1.0)
    }

    /// A profile's demand per step for the step at `at`, `ahead` seconds from now: expected,
    /// or at the band when `at_band`, with the level and the signals applied. When the level
    /// moves the expected value, the band's width moves with it (in proportion when it rises,
    /// as its square root when it falls: never narrower than the count noise allows).
    #[allow(clippy::too_many_arguments)]
    pub fn demand(
        &self,
        profile: ProfileId,
        expected: f64,
        upper: f64,
        at_band: bool,
        ahead_secs: u64,
        at: u64,
        step_minutes: f64,
    ) -> f64 {
        let width = (upper - expected).max(0.0);
        let covered = |e: f64| {
            if !at_band {
                return e;
            }
            let ratio = if expected > 0.0 { e / expected } else { 1.0 };
            e + width * if ratio >= 1.0 { ratio } else { ratio.sqrt() }
        };
        let factor = nowcast::factor(self.level(profile), ahead_secs);
        let mut demand = covered(expected * factor);
        for (p, signalled, observed) in &self.signals {
            // From the step the signal arrived in on.
            if *p != profile.0 || at + (step_minutes * 60.0) as u64 <= *signalled {
                continue;
            }
            // The rate the edge saw is covered as it is: it is already a minute's (a peak's)
            // demand, the band's width for the minute-to-minute noise is in it.
            let left = 1.0 - at.saturating_sub(*signalled) as f64 / self.decay_secs.max(1) as f64;
            if left > 0.0 {
                demand = demand.max(f64::from(*observed) * left);
            }
        }
        demand
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prewarm_shared::artifact::ProfileForecast;

    fn table(expected: f32, upper: f32) -> ForecastTable {
        ForecastTable {
            start: UnixSeconds(0),
            step_secs: 300,
            upper_quantile: 0.9,
            series: vec![ProfileForecast {
                profile: ProfileId(1),
                expected: vec![expected; 288],
                upper: vec![upper; 288],
                alarm: vec![upper * 2.0; 288],
            }],
        }
    }

    fn counts(per_minute: u64, minutes: std::ops::Range<u64>) -> Live {
        Live { counts: minutes.map(|m| ("eu".to_owned(), 1, m, per_minute)).collect(), signals: Vec::new() }
    }

    #[test]
    fn a_level_shift_moves_the_plan_at_once_and_fades_with_the_horizon() {
        // Forecast 100 a minute (500 per step); the edge has counted 200 a minute for 30 min.
        let t = table(500.0, 600.0);
        let now = UnixSeconds(3600);
        let live = counts(200, 30..60).for_region("eu", &t, now, 1800);
        let level = live.level(ProfileId(1));
        // The half hour says 6030 / 3030, its last ten minutes 2030 / 1030 (shrunk a little
        // more): the nearer 1 of the two.
        assert!((level - (2000.0 + 30.0) / (1000.0 + 30.0)).abs() < 1e-9, "{level}");
        let near = live.demand(ProfileId(1), 500.0, 600.0, false, 0, 3600, 5.0);
        let far = live.demand(ProfileId(1), 500.0, 600.0, false, 6 * 3600, 3600, 5.0);
        assert!((near - 500.0 * level).abs() < 1e-6, "{near}");
        assert!(far < 520.0, "six half-lives later the forecast holds: {far}");
        // At the band, the band's width rides on the corrected level.
        let band = live.demand(ProfileId(1), 500.0, 600.0, true, 0, 3600, 5.0);
        assert!(band > near && band < near * 1.3, "{band} vs {near}");
    }

    #[test]
    fn a_quiet_profile_is_not_swung_by_noise_and_a_silent_edge_corrects_nothing() {
        // Forecast 1 a minute; the edge counted 3 in one minute of the half hour.
        let t = table(5.0, 8.0);
        let now = UnixSeconds(3600);
        let mut live = counts(0, 30..60);
        live.counts.push(("eu".into(), 1, 45, 3));
        let level = live.for_region("eu", &t, now, 1800).level(ProfileId(1));
        // The half hour says 33 / 60, its last ten minutes 30 / 40: shrunk towards 1, not 0.1.
        assert!((level - 30.0 / 40.0).abs() < 1e-9, "{level}");
        assert_eq!(Live::default().for_region("eu", &t, now, 1800).level(ProfileId(1)), 1.0);
    }

    #[test]
    fn a_crowd_that_has_passed_leaves_the_plan_alone() {
        // Forecast 100 a minute; the edge counted 400 a minute for ten minutes, then 100 again
        // for the last twelve: the half hour is well above the forecast, its end is not.
        let t = table(500.0, 600.0);
        let mut live = counts(100, 30..60);
        live.counts.retain(|c| !(36..46).contains(&c.2));
        live.counts.extend((36..46).map(|m| ("eu".to_owned(), 1, m, 400)));
        let level = live.for_region("eu", &t, UnixSeconds(3600), 1800).level(ProfileId(1));
        assert_eq!(level, 1.0);
        // Still under way at the end of the window: corrected by the half hour.
        let mut live = counts(100, 30..60);
        live.counts.retain(|c| c.2 < 50);
        live.counts.extend((50..60).map(|m| ("eu".to_owned(), 1, m, 400)));
        let level = live.for_region("eu", &t, UnixSeconds(3600), 1800).level(ProfileId(1));
        assert!((level - (2000.0 + 4000.0 + 30.0) / (3000.0 + 30.0)).abs() < 1e-9, "{level}");
    }

    #[test]
    fn a_signal_covers_its_observed_rate_and_fades() {
        let t = table(500.0, 600.0);
        let live = Live { counts: Vec::new(), signals: vec![("eu".into(), 1, 3600, 2000.0)] };
        let region = live.for_region("eu", &t, UnixSeconds(3600), 1800);
        let now_step = region.demand(ProfileId(1), 500.0, 600.0, false, 0, 3600, 5.0);
        let later = region.demand(ProfileId(1), 500.0, 600.0, false, 900, 4500, 5.0);
        let gone = region.demand(ProfileId(1), 500.0, 600.0, false, 1800, 5400, 5.0);
        assert_eq!(now_step, 2000.0);
        assert_eq!(later, 1000.0);
        assert_eq!(gone, 500.0);
    }
}
