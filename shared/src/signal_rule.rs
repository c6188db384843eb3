//! When the edge raises a prewarm signal: one rule, run by the worker on every request and by
//! the replay (`prewarm simulate`) on every minute, so that what is replayed is what is
//! deployed.
//!
//! A signal means "demand is above what was planned for, by a margin that matters": the last
//! 60 seconds' requests of a region × profile, scaled to a forecast step and to the whole
//! region, exceed the forecast's *alarm* level — a calibrated quantile of a minute's demand
//! well above the band the plan provisions for (see the trainer's forecast engine). A window
//! of fewer than [`MIN_SIGNAL_REQUESTS`] requests is not judged at all: a profile of a few
//! requests a minute is Poisson noise at that scale. Signals of one region × profile are at
//! least a debounce window apart.

use crate::artifact::{ForecastTable, ProfileId};
use crate::features::UnixSeconds;

/// The fewest requests in the last minute (as this isolate saw them) a signal is raised on.
pub const MIN_SIGNAL_REQUESTS: f32 = 10.0;

/// Requests of one region × profile in the current and the previous minute: an estimate of
/// the last 60 seconds that needs no history (the previous minute weighted by how much of it
/// the window still covers).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MinuteWindow {
    minute: u64,
    this: u32,
    before: u32,
}

impl MinuteWindow {
    /// Counts `requests` at `now`; returns the estimate of requests in the last 60 seconds.
    pub fn record(&mut self, now: UnixSeconds, requests: u32) -> f32 {
        let minute = now.minute();
        if self.minute != minute {
            let before = if self.minute + 1 == minute { self.this } else { 0 };
            *self = Self { minute, this: 0, before };
        }
        self.this = self.this.saturating_add(requests);
        let covered = (60 - now.0 % 60) as f32 / 60.0;
        self.this as f32 + self.before as f32 * covered
    }
}

/// A signal the rule raised: the observed rate and the level it crossed, per forecast step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Crossing {
    /// Requests per forecast step the last minute amounts to (for the whole region).
    pub observed_per_step: f32,
    /// The alarm level it exceeded.
    pub alarm: f32,
}

/// Whether `last_minute` requests (seen by an isolate that sees `traffic_share` of the
/// region's) are above `profile`'s alarm level at `now`.
pub fn crossing(
    table: &ForecastTable,
    profile: ProfileId,
    now: UnixSeconds,
    last_minute: f32,
    traffic_share: f32,
) -> Option<Crossing> {
    if last_minute < MIN_SIGNAL_REQUESTS {
        return None;
    }
    let slot = table.slot(now)?;
    let alarm = *table.of(profile)?.alarm.get(slot)?;
    let observed_per_step = last_minute * table.step_secs as f32 / 60.0 / traffic_share.max(f32::MIN_POSITIVE);
    (observed_per_step > alarm).then_some(Crossing { observed_per_step, alarm })
}

/// Whether a signal may go out at `now` when the last one went out at `last` (debounce).
pub fn due(last: Option<u64>, now: UnixSeconds, debounce_secs: u64) -> bool {
    last.is_none_or(|last| now.0.saturating_sub(last) >= debounce_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::ProfileForecast;

    fn table() -> ForecastTable {
        ForecastTable {
            start: UnixSeconds(0),
            step_secs: 300,
            upper_quantile: 0.9,
            series: vec![ProfileForecast {
                profile: ProfileId(1),
                expected: vec![50.0; 12],
                upper: vec![75.0; 12],
                alarm: vec![100.0; 12],
            }],
        }
    }

    #[test]
    fn the_window_slides_across_the_minute_boundary() {
        let mut w = MinuteWindow::default();
        assert_eq!(w.record(UnixSeconds(600), 30), 30.0);
        // 30 s into the next minute: this minute's 10 plus half of the previous minute's 30.
        assert_eq!(w.record(UnixSeconds(690), 10), 25.0);
        // A minute skipped: nothing carries over.
        assert_eq!(w.record(UnixSeconds(900), 1), 1.0);
    }

    #[test]
    fn only_a_minute_above_the_alarm_level_with_enough_requests_signals() {
        let t = table();
        // 100 per step is 20 a minute.
        assert!(crossing(&t, ProfileId(1), UnixSeconds(60), 20.0, 1.0).is_none());
        let c = crossing(&t, ProfileId(1), UnixSeconds(60), 21.0, 1.0).expect("a crossing");
        assert_eq!(c, Crossing { observed_per_step: 105.0, alarm: 100.0 });
        // An isolate seeing a tenth of the region: 3 requests scale to 150 a step, but 3 say nothing.
        assert!(crossing(&t, ProfileId(1), UnixSeconds(60), 3.0, 0.1).is_none());
        assert!(crossing(&t, ProfileId(1), UnixSeconds(60), 10.0, 0.1).is_some());
        assert!(crossing(&t, ProfileId(2), UnixSeconds(60), 50.0, 1.0).is_none(), "unknown profile");
        assert!(crossing(&t, ProfileId(1), UnixSeconds(3600), 50.0, 1.0).is_none(), "past the table");
        assert!(
            due(None, UnixSeconds(0), 60) && due(Some(0), UnixSeconds(60), 60) && !due(Some(1), UnixSeconds(60), 60)
        );
    }
}
