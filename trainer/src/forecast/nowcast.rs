//! The level nowcast's arithmetic, shared by the plan (which applies it to what the edge
//! counted in the last half hour) and the ledger (which calibrates the band on forecasts
//! corrected the same way, so that the band is as wide as the errors of what is provisioned).

/// Minutes of counts the level compares.
pub const WINDOW_MINUTES: u64 = 30;
/// Pseudo-requests added to both sides of the ratio: a profile of a few requests a minute
/// cannot swing its plan on noise.
const PSEUDO_REQUESTS: f64 = 30.0;
const BOUNDS: (f64, f64) = (0.5, 3.0);
/// The correction halves every this many seconds ahead.
const HALF_LIFE_SECS: f64 = 3600.0;

/// Minutes at the window's end that must agree with the whole window: the third of it a level
/// is needed on at least (fewer minutes say too little against the count noise).
pub const RECENT_MINUTES: u64 = WINDOW_MINUTES / 3;

/// Observed ÷ forecast, shrunk towards 1 and bounded.
fn ratio((observed, expected): (f64, f64)) -> f64 {
    ((observed + PSEUDO_REQUESTS) / (expected.max(0.0) + PSEUDO_REQUESTS)).clamp(BOUNDS.0, BOUNDS.1)
}

/// The level: observed ÷ forecast over the `whole` window, as far as its last
/// [`RECENT_MINUTES`] (`recent`) agree — the one of the two nearer 1, and none when they
/// point opposite ways. A level shift moves both; a crowd that has passed leaves the half
/// hour high but not its last minutes, and does not go on inflating the plan for half an hour
/// (its onset is the prewarm signal's to answer); demand back after an outage is not held
/// down by the empty minutes before it.
pub fn level(whole: (f64, f64), recent: (f64, f64)) -> f64 {
    let (long, short) = (ratio(whole), ratio(recent));
    if (long - 1.0) * (short - 1.0) <= 0.0 {
        1.0
    } else if long > 1.0 {
        long.min(short)
    } else {
        long.max(short)
    }
}

/// The factor a forecast `ahead_secs` from now is multiplied by.
pub fn factor(level: f64, ahead_secs: u64) -> f64 {
    let fade = (-(ahead_secs as f64) * std::f64::consts::LN_2 / HALF_LIFE_SECS).exp();
    1.0 + (level - 1.0) * fade
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_level_is_shrunk_bounded_and_fades() {
        // 3000 forecast over the half hour, 1000 over its last ten minutes.
        let steady = |per_minute: f64| level((30.0 * per_minute, 3000.0), (10.0 * per_minute, 1000.0));
        // Twice the forecast throughout: the last ten minutes' ratio, shrunk more, is nearer 1.
        assert!((steady(200.0) - 2030.0 / 1030.0).abs() < 1e-12);
        assert_eq!((steady(1e6), steady(0.0)), (3.0, 0.5));
        // A quiet profile: 3 requests against 30 expected cannot say "a tenth".
        assert_eq!(level((3.0, 30.0), (0.0, 10.0)), 0.75);
        assert_eq!(factor(2.0, 0), 2.0);
        assert!((factor(2.0, 3600) - 1.5).abs() < 1e-12);
    }

    #[test]
    fn a_passed_crowd_or_outage_does_not_hold_the_level() {
        // Rising in the last minutes only: the half hour's smaller ratio.
        assert!((level((3500.0, 3000.0), (1500.0, 1000.0)) - 3530.0 / 3030.0).abs() < 1e-12);
        // Ten minutes at four times the forecast, over by the last ten: no correction left.
        assert_eq!(level((2000.0 + 4.0 * 1000.0, 3000.0), (1000.0, 1000.0)), 1.0);
        // Still out: the half hour's ratio, nearer 1 than the last minutes'.
        assert!((level((2000.0, 3000.0), (0.0, 1000.0)) - 2030.0 / 3030.0).abs() < 1e-12);
        // An outage over, demand back: no correction downwards.
        assert_eq!(level((1000.0, 3000.0), (1020.0, 1000.0)), 1.0);
    }
}
