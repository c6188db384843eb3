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

/// Observed ÷ forecast over the window, shrunk towards 1 and bounded.
pub fn level(observed: f64, expected: f64) -> f64 {
    ((observed + PSEUDO_REQUESTS) / (expected.max(0.0) + PSEUDO_REQUESTS)).clamp(BOUNDS.0, BOUNDS.1)
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
        assert!((level(6000.0, 3000.0) - 6030.0 / 3030.0).abs() < 1e-12);
        assert_eq!(level(3.0, 30.0), 33.0 / 60.0);
        assert_eq!((level(1e6, 10.0), level(0.0, 1e6)), (3.0, 0.5));
        assert_eq!(factor(2.0, 0), 2.0);
        assert!((factor(2.0, 3600) - 1.5).abs() < 1e-12);
    }
}
