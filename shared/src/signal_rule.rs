//! When the edge raises a prewarm signal: one rule, run by the worker on every request and by
//! the replay (`prewarm simulate`) on every minute, so that what is replayed is what is
//! deployed.
//!
//! A signal means "demand is above what was planned for, by a margin that matters": the last
//! 60 seconds' requests of a region × profile, scaled to a forecast step and to the whole
//! region, exceed the forecast's *alarm* level — a calibrated quantile of a minute's demand
//! well above the band the plan provisions for (see the trainer's forecast engine). A window
//! of fewer than [`MIN_SIGNAL_REQUESTS`] requests is not judged at all: a profile of a few
//! requests a minute is Poisson noise at that scale. And the excess must *persist*: calibrated
//! noise crosses a per-minute alarm quantile q about (1 − q) · 1,440 times a day on a busy
//! series, mostly for a single minute, while a crowd stays. Since the last minute rose above the
//! band the plan provisions for, its excess over the band, in units of the alarm level's margin
//! over the band, is summed request by request (a CUSUM: each request adds its share of a
//! step's demand, each second takes the band's away); a signal needs [`EXCESS_SECS`] of it (two
//! minutes at the alarm level, or less time further above), the last minute above the alarm
//! level, and the excursion above the band to have lasted as many seconds — a single minute,
//! however far above, is what a per-minute quantile's noise looks like — unless it has run at
//! [`CROWD_ALARMS`] times the alarm level since it began: a crowd that size is answered at once.
//! Signals of one region × profile are at least a debounce window apart.

use crate::artifact::{ForecastTable, ProfileId};
use crate::features::UnixSeconds;

/// The fewest requests in the last minute (as this isolate saw them) a signal is raised on.
pub const MIN_SIGNAL_REQUESTS: f32 = 10.0;

/// The excess above the band a signal needs, by default, in seconds at the alarm level's
/// margin (`PREWARM_SIGNAL_EXCESS_SECS` at the edge), and the seconds the excursion above the
/// band must have lasted (short of a crowd, [`CROWD_ALARMS`]): two minutes at the alarm level
/// over two minutes — the "two consecutive minutes above the band, one above the alarm" a noise
/// spike rarely makes.
pub const EXCESS_SECS: u64 = 120;

/// A crowd running at this many times the alarm level since it rose above the band is signalled
/// as soon as its excess is built, without waiting out the excursion's duration: a minute's
/// noise around a calibrated per-minute quantile does not reach it, and a flash crowd does.
pub const CROWD_ALARMS: f32 = 2.0;

/// The most alarm margins above the band a second's requests count for: the excess then takes
/// at least `EXCESS_SECS / MAX_MARGINS` seconds (12 by default) of a crowd to build, however
/// large, and a few seconds' burst never builds it.
pub const MAX_MARGINS: f32 = 10.0;

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

/// A rate of `per_second` requests this isolate sees, as the region's requests per step of
/// `table` (the isolate sees `traffic_share` of them): what the band and the alarm are in.
fn region_per_step(per_second: f32, table: &ForecastTable, traffic_share: f32) -> f32 {
    per_second * table.step_secs as f32 / traffic_share.max(f32::MIN_POSITIVE)
}

/// Where `last_minute` requests (seen by an isolate that sees `traffic_share` of the region's)
/// stand against `profile`'s band and alarm level at `now`; `None` without a judgement (too few
/// requests, no forecast for the profile or the time).
fn levels(
    table: &ForecastTable,
    profile: ProfileId,
    now: UnixSeconds,
    last_minute: f32,
    traffic_share: f32,
) -> Option<(f32, f32, f32)> {
    if last_minute < MIN_SIGNAL_REQUESTS {
        return None;
    }
    let slot = table.slot(now)?;
    let series = table.of(profile)?;
    let (upper, alarm) = (*series.upper.get(slot)?, *series.alarm.get(slot)?);
    let observed_per_step = region_per_step(last_minute / 60.0, table, traffic_share);
    Some((observed_per_step, upper, alarm))
}

/// Whether `last_minute` requests (seen by an isolate that sees `traffic_share` of the
/// region's) are above `profile`'s alarm level at `now`, persistence aside ([`SliceWatch`]
/// adds it).
pub fn crossing(
    table: &ForecastTable,
    profile: ProfileId,
    now: UnixSeconds,
    last_minute: f32,
    traffic_share: f32,
) -> Option<Crossing> {
    let (observed_per_step, _, alarm) = levels(table, profile, now, last_minute, traffic_share)?;
    (observed_per_step > alarm).then_some(Crossing { observed_per_step, alarm })
}

/// One region × profile as the rule follows it: its last minute's requests and the excess
/// above the band they have built up.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SliceWatch {
    window: MinuteWindow,
    /// Seconds × (excess above the band in units of the alarm's margin over it) since the last
    /// minute rose above the band, summed request by request.
    excess: f32,
    /// When the last minute was last seen above the band.
    last_above: Option<u64>,
    /// What the requests of the second under way may still add to `excess`.
    allowance: f32,
    /// When the last minute rose above the band.
    since: Option<u64>,
    /// Requests counted since then (after the first second above it).
    requests_since: f32,
}

impl SliceWatch {
    /// Counts `requests` at `now`; a crossing when the last minute is above the alarm level, the
    /// excess built up since it rose above the band reaches `watch.excess_secs`, and it rose
    /// that many seconds ago or has run at [`CROWD_ALARMS`] times the alarm level since.
    pub fn record(
        &mut self,
        table: &ForecastTable,
        profile: ProfileId,
        now: UnixSeconds,
        requests: u32,
        watch: &WatchSettings,
    ) -> Option<Crossing> {
        let last_minute = self.window.record(now, requests);
        let levels = levels(table, profile, now, last_minute, watch.traffic_share);
        let Some((observed_per_step, upper, alarm)) = levels.filter(|(observed, upper, _)| observed > upper) else {
            *self = Self { window: self.window, ..Self::default() };
            return None;
        };
        // A CUSUM on the requests themselves: each adds its share of a step's demand, each
        // second takes the band's away, in units of the alarm level's margin over the band. A
        // minute at the alarm level adds 60, a crowd at three times the margin 180 a minute,
        // and a crowd that arrives at once counts from its first requests, not only as the last
        // minute's window fills with it. A second's requests count for at most [`MAX_MARGINS`]
        // above the band: a burst of a few seconds, however dense, is not a crowd that capacity
        // must follow.
        if let Some(last) = self.last_above {
            let seconds = now.0.saturating_sub(last).min(60) as f32;
            let margin = (alarm - upper).max(f32::MIN_POSITIVE);
            if seconds > 0.0 {
                self.allowance = (upper / margin + MAX_MARGINS) * seconds;
                // The sum never carries a deficit into a new second (a CUSUM's floor at 0).
                self.excess = self.excess.max(0.0) - upper / margin * seconds;
            }
            let demand = region_per_step(requests as f32, table, watch.traffic_share) / margin;
            let counted = demand.min(self.allowance);
            self.allowance -= counted;
            self.excess = (self.excess + counted).min(f32::MAX);
            self.requests_since = (self.requests_since + requests as f32).min(f32::MAX);
        }
        self.last_above = Some(now.0);
        let since = *self.since.get_or_insert(now.0);
        let lasted = now.0.saturating_sub(since);
        // The excursion's own rate, per step for the whole region, since it rose above the band.
        let crowd = lasted > 0
            && region_per_step(self.requests_since / lasted as f32, table, watch.traffic_share) >= CROWD_ALARMS * alarm;
        (observed_per_step > alarm && self.excess >= watch.excess_secs as f32 && (lasted >= watch.excess_secs || crowd))
            .then_some(Crossing { observed_per_step, alarm })
    }
}

/// What the rule needs besides the forecast.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WatchSettings {
    /// The share of a region's traffic the counts are taken to be.
    pub traffic_share: f32,
    /// The excess above the band a signal needs, and the seconds it must have lasted short of a
    /// crowd ([`EXCESS_SECS`] by default; 0: the first crossing of the alarm level).
    pub excess_secs: u64,
}

impl Default for WatchSettings {
    fn default() -> Self {
        Self { traffic_share: 1.0, excess_secs: EXCESS_SECS }
    }
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

    /// Feeds `per_minute` requests a minute, in 4 parts a minute, from minute `from` to `to`;
    /// the seconds (from minute `from`) at which the rule crossed.
    fn feed(watch: &mut SliceWatch, per_minute: &dyn Fn(u64) -> u32, from: u64, to: u64) -> Vec<u64> {
        let (t, settings) = (table(), WatchSettings::default());
        let mut crossed = Vec::new();
        for minute in from..to {
            for part in 1..=4u64 {
                let at = UnixSeconds(minute * 60 + part * 15 - 1);
                if watch.record(&t, ProfileId(1), at, per_minute(minute) / 4, &settings).is_some() {
                    crossed.push(at.0 - from * 60);
                }
            }
        }
        crossed
    }

    #[test]
    fn a_one_minute_spike_is_not_signalled_and_a_crowd_is_the_sooner_the_larger() {
        // Per minute: expected 10, band 15, alarm 20 (per step of 5 minutes: 50, 75, 100).
        let normal = 12;
        let mut w = SliceWatch::default();
        assert!(feed(&mut w, &|_| normal, 0, 10).is_empty(), "normal traffic");
        // One minute at 24 (a fifth above the alarm of 20), then normal again.
        assert!(feed(&mut w, &|m| if m == 10 { 24 } else { normal }, 10, 20).is_empty(), "a one-minute spike");
        // A crowd just above the alarm (22 a minute: 1.4 margins above the band) takes about two
        // minutes (120 / 1.4 ≈ 86 s after the window passes the band, which it does after ~20 s)…
        let mut w = SliceWatch::default();
        feed(&mut w, &|_| normal, 0, 10);
        let first = feed(&mut w, &|_| 22, 10, 20)[0];
        assert!((90..=150).contains(&first), "a marginal crowd crossed after {first} s");
        // …a crowd of four times normal (48: 6.6 margins) well within its first minute.
        let mut w = SliceWatch::default();
        feed(&mut w, &|_| normal, 0, 10);
        let first = feed(&mut w, &|_| 48, 10, 20)[0];
        assert!(first < 60, "a large crowd crossed after {first} s");
        // Back under the band, the excess is gone: a later spike starts from nothing.
        feed(&mut w, &|_| normal, 20, 30);
        assert!(feed(&mut w, &|m| if m == 30 { 24 } else { normal }, 30, 40).is_empty());
    }

    #[test]
    fn one_minute_far_above_the_alarm_is_noise_two_are_not_and_a_crowd_is_answered_at_once() {
        let normal = 12;
        // One minute at 30 (1.5 times the alarm of 20, three margins above the band): its excess
        // (about 180) is built within the minute, but the excursion above the band lasts about
        // 90 s — a per-minute quantile's noise, not a crowd.
        let mut w = SliceWatch::default();
        feed(&mut w, &|_| normal, 0, 10);
        assert!(feed(&mut w, &|m| if m == 10 { 30 } else { normal }, 10, 20).is_empty(), "a one-minute spike");
        // Two minutes at 30: signalled in the second, once two minutes above the band have passed.
        let crossed = feed(&mut w, &|m| if m == 20 || m == 21 { 30 } else { normal }, 20, 30);
        assert!(crossed.first().is_some_and(|&s| (120..150).contains(&s)), "two minutes at 30: {crossed:?}");
        // A crowd at twice the alarm level (40 a minute) is signalled in its first minute: its
        // excess is built in about 30 s and its rate since it began is the crowd's.
        let mut w = SliceWatch::default();
        feed(&mut w, &|_| normal, 0, 10);
        let crossed = feed(&mut w, &|_| 40, 10, 20);
        assert!(crossed.first().is_some_and(|&s| s < 60), "a crowd at twice the alarm: {crossed:?}");
        // With no persistence asked for, the first crossing of the alarm level signals.
        let (t, none) = (table(), WatchSettings { excess_secs: 0, ..WatchSettings::default() });
        let mut w = SliceWatch::default();
        assert!(w.record(&t, ProfileId(1), UnixSeconds(59), 21, &none).is_some());
    }

    #[test]
    fn a_crowd_arriving_at_once_counts_from_its_first_requests() {
        // Normal traffic (12 a minute), then a crowd of one request a second (60 a minute, three
        // times the alarm of 20), one request at a time as the worker sees them. The window of
        // the last 60 s passes the alarm after about 10 s; the excess built on requests reaches
        // 120 about 14 s in (built on the filling window it would take about 43 s).
        let (t, settings) = (table(), WatchSettings::default());
        let mut w = SliceWatch::default();
        for second in 0..600u64 {
            if second % 5 == 0 {
                assert!(w.record(&t, ProfileId(1), UnixSeconds(second), 1, &settings).is_none(), "normal traffic");
            }
        }
        let first = (600..720u64).find(|&s| w.record(&t, ProfileId(1), UnixSeconds(s), 1, &settings).is_some());
        let after = first.map(|s| s - 600);
        assert!(after.is_some_and(|a| (10..=25).contains(&a)), "signalled after {after:?} s");
        // A burst of 300 requests in three seconds (the window far above the alarm for a
        // minute after it) is not a crowd: each second counts for at most MAX_MARGINS.
        let mut w = SliceWatch::default();
        let burst = (0..600u64)
            .filter(|s| s % 5 == 0)
            .map(|s| (s, 1))
            .chain((600..603).map(|s| (s, 100)))
            .chain((605..720).step_by(5).map(|s| (s, 1)));
        for (second, requests) in burst {
            assert!(w.record(&t, ProfileId(1), UnixSeconds(second), requests, &settings).is_none(), "at {second} s");
        }
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
