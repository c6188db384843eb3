//! Outlier-robust fitting: flash crowds and partial outages are masked before a seasonal model
//! sees them, so one evening's crowd does not become every evening's.
//!
//! Each hour is compared, on the log scale, with the median of the same hour on the days
//! before it (the seasonal norm, from the past only). Deviations are centred on their median
//! (a series that grows sits above last week's norm everywhere; that is trend, not outlier) and
//! judged in units of their median absolute deviation. A run of hours beyond `k` MADs is
//! masked only when it is *transient*: at most `max_run` hours long and followed by normal
//! hours. A run that lasts, or that reaches the end of the history, may be a level shift:
//! it stays, so the model (and the nowcast) can follow it.

/// The norm: the median of the same hour on this many earlier weeks (when two are known),
/// else on this many earlier days (a series without a week of history).
const NORM_WEEKS: usize = 3;
const NORM_DAYS: usize = 7;
/// Hours after a run that must be normal for it to count as over.
const SETTLE_HOURS: usize = 2;

/// What was masked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Masked {
    /// Runs of hours masked as outliers (crowds above the norm, dips below it).
    pub runs: usize,
    /// Hours masked.
    pub hours: usize,
}

/// Masks transient outlier runs of `hours` (one value per hour, `None` missing) in place.
pub fn mask_transients(hours: &mut [Option<f64>], k: f64, max_run: usize) -> Masked {
    let day = 24;
    let n = hours.len();
    // Log deviation of each hour from its norm (the median of the same hour on earlier days).
    let deviation: Vec<Option<f64>> = (0..n)
        .map(|i| {
            let value = hours[i]?;
            let earlier = |lag: usize| hours.get(i.checked_sub(lag)?).copied().flatten();
            let mut weekly: Vec<f64> = (1..=NORM_WEEKS).filter_map(|w| earlier(w * 7 * day)).collect();
            let mut daily: Vec<f64> = (1..=NORM_DAYS).filter_map(|d| earlier(d * day)).collect();
            let norm = if weekly.len() >= 2 {
                median(&mut weekly)
            } else if daily.len() >= 3 {
                median(&mut daily)
            } else {
                return None;
            };
            Some(value.ln_1p() - norm.ln_1p())
        })
        .collect();
    let mut present: Vec<f64> = deviation.iter().flatten().copied().collect();
    if present.len() < 2 * day {
        return Masked::default();
    }
    let centre = median(&mut present);
    let mut spread: Vec<f64> = present.iter().map(|d| (d - centre).abs()).collect();
    // The MAD of a clean seasonal series can be tiny: a floor keeps ordinary wobble unmasked
    // (a fifth on the log scale is ±22 %).
    let mad = median(&mut spread).max(0.04);
    let outlier = |i: usize| deviation[i].is_some_and(|d| (d - centre).abs() > k * mad);
    let mut masked = Masked::default();
    let mut i = 0;
    while i < n {
        if !outlier(i) {
            i += 1;
            continue;
        }
        let end = i + (i..n).take_while(|&j| outlier(j)).count();
        let settled = end + SETTLE_HOURS <= n && (end..end + SETTLE_HOURS).all(|j| !outlier(j));
        if end - i <= max_run && settled {
            hours[i..end].iter_mut().for_each(|v| *v = None);
            masked.runs += 1;
            masked.hours += end - i;
        }
        i = end;
    }
    masked
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn days(n: usize) -> Vec<Option<f64>> {
        crate::forecast::seasonal_hours(24 * n, 0.0).into_iter().map(Some).collect()
    }

    #[test]
    fn a_flash_crowd_is_masked_and_a_level_shift_is_kept() {
        let mut crowd = days(21);
        for v in &mut crowd[24 * 15 + 18..24 * 15 + 20] {
            *v = v.map(|v| v * 4.0);
        }
        let masked = mask_transients(&mut crowd, 5.0, 6);
        assert_eq!(masked, Masked { runs: 1, hours: 2 });
        assert!(crowd[24 * 15 + 18].is_none() && crowd[24 * 15 + 20].is_some());

        // The last two days run at twice the level: a shift that reaches the end stays.
        let mut shifted = days(21);
        for v in &mut shifted[24 * 19..] {
            *v = v.map(|v| v * 2.0);
        }
        assert_eq!(mask_transients(&mut shifted, 5.0, 6), Masked::default());
        assert!(shifted.iter().all(Option::is_some));
    }

    #[test]
    fn steady_growth_is_not_an_outlier() {
        // +5 % a day for three weeks: every hour is above last week's norm, by the same amount.
        let mut growing: Vec<Option<f64>> =
            days(21).into_iter().enumerate().map(|(h, v)| v.map(|v| v * 1.05f64.powf(h as f64 / 24.0))).collect();
        assert_eq!(mask_transients(&mut growing, 5.0, 6).runs, 0);
    }
}
