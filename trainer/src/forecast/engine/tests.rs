//! The forecast stage on series with known structure.

use super::*;

/// `days` of minutes with a daily shape (peak 15:00), Poisson-like noise from a fixed
/// generator, `base` requests a minute at night.
pub(crate) fn noisy_days(days: usize, base: f64, seed: u64) -> MinuteSeries {
    let mut state = seed | 1;
    let values = (0..days * 1440)
        .map(|m| {
            let hour = (m % 1440) as f64 / 60.0;
            let rate = base * (2.0 + (std::f64::consts::TAU * (hour - 9.0) / 24.0).sin());
            Some(poisson(rate, &mut state))
        })
        .collect();
    MinuteSeries { start: 0, values }
}

/// A Poisson draw by inversion (rates here are small enough).
pub(crate) fn poisson(rate: f64, state: &mut u64) -> f64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    let u = (*state >> 11) as f64 / (1u64 << 53) as f64;
    let (mut k, mut p) = (0.0, (-rate).exp());
    let mut cumulative = p;
    while u > cumulative && k < 10_000.0 {
        k += 1.0;
        p *= rate / k;
        cumulative += p;
    }
    k
}

fn context() -> Context {
    Context::default()
}

#[test]
fn the_band_covers_its_quantile_of_minutes_on_a_series_with_known_noise() {
    let series = noisy_days(30, 20.0, 7);
    let config = ForecastConfig::default();
    let mut ledger = Ledger::default();
    let key: SeriesKey = ("eu".into(), 1);
    // Train every 6 hours over days 21–28, then count the minutes of the following day
    // under each band published.
    let (mut under, mut total) = (0usize, 0usize);
    for origin in (21 * 1440..29 * 1440).step_by(360) {
        let now = origin as u64 * 60;
        let f = forecast_series(&key, &series, now, &context(), &config, &mut ledger).expect("a forecast");
        for (i, upper) in f.upper.iter().enumerate().take(72) {
            for m in 0..5 {
                let t = ((f.start + i as u64 * 300) / 60) as usize + m;
                if let Some(Some(a)) = series.values.get(t) {
                    total += 1;
                    under += usize::from(*a * 5.0 <= f64::from(*upper) + 1e-9);
                }
            }
        }
    }
    let coverage = under as f64 / total as f64;
    let nominal = config.band_quantile;
    assert!((coverage - nominal).abs() <= 0.05, "coverage {coverage:.3} of {total} minutes, nominal {nominal}");
}

#[test]
fn a_flash_crowd_does_not_distort_the_next_days_shape() {
    // Three weeks of a daily shape; on the last day a 90-minute crowd at 18:00 runs at four
    // times the usual. Tomorrow's 18:00 is forecast as a usual 18:00.
    let mut crowded = noisy_days(22, 20.0, 5);
    let day = 21 * 1440;
    for m in day + 18 * 60..day + 19 * 60 + 30 {
        crowded.values[m] = crowded.values[m].map(|v| v * 4.0);
    }
    let plain = noisy_days(22, 20.0, 5);
    let now = 22 * 86_400;
    let at_18 = |series: &MinuteSeries| {
        let mut ledger = Ledger::default();
        let f = forecast_series(&("eu".into(), 1), series, now, &context(), &ForecastConfig::default(), &mut ledger)
            .expect("forecast");
        let (report, slot) = (f.report.masked, (18 * 3600 / 300) as usize);
        (f.expected[slot..slot + 18].iter().map(|v| f64::from(*v)).sum::<f64>(), report)
    };
    let ((with_crowd, masked), (without, _)) = (at_18(&crowded), at_18(&plain));
    assert!(masked.runs >= 1, "the crowd was masked: {masked:?}");
    assert!((with_crowd / without - 1.0).abs() < 0.15, "tomorrow's 18:00: {with_crowd:.0} vs {without:.0}");
}

#[test]
fn poisson_noise_does_not_cross_the_alarm_level() {
    // A profile of 20–60 requests a minute, pure Poisson noise around its daily shape: over
    // a day, the share of minutes the edge's rule would signal is about the alarm's
    // complement, not the band's.
    let series = noisy_days(23, 20.0, 9);
    let mut ledger = Ledger::default();
    let key: SeriesKey = ("eu".into(), 1);
    let config = ForecastConfig::default();
    let now = 22 * 86_400;
    let f = forecast_series(&key, &series, now, &context(), &config, &mut ledger).expect("forecast");
    let table = prewarm_shared::artifact::ForecastTable {
        start: prewarm_shared::UnixSeconds(f.start),
        step_secs: 300,
        upper_quantile: 0.95,
        series: vec![prewarm_shared::artifact::ProfileForecast {
            profile: prewarm_shared::ProfileId(1),
            expected: f.expected.clone(),
            upper: f.upper.clone(),
            alarm: f.alarm.clone(),
        }],
    };
    let (mut crossed, mut above_band) = (0usize, 0usize);
    for m in 0..1440u64 {
        let t = now + m * 60;
        let count = series.values[(t / 60) as usize].unwrap_or(0.0) as f32;
        let at = prewarm_shared::UnixSeconds(t + 59);
        crossed += usize::from(
            prewarm_shared::signal_rule::crossing(&table, prewarm_shared::ProfileId(1), at, count, 1.0).is_some(),
        );
        let slot = table.slot(at).unwrap_or(0);
        above_band += usize::from(count * 5.0 > f.upper[slot]);
    }
    assert!(crossed <= 1440 / 50, "{crossed} minutes of noise crossed the alarm level");
    assert!(above_band > 2 * crossed.max(1), "the band ({above_band}) is crossed far more than the alarm ({crossed})");
}

#[test]
fn the_product_chooses_the_band_on_its_record_and_says_why() {
    // Pure Poisson noise around a daily shape: a reactive HPA at 0.7 (43 % headroom over the
    // last minutes) is seldom short, so the band is chosen within the allowance or, where no
    // band could be, as high as it goes (capacity first); with the choice off, the configured
    // quantile is published.
    let series = noisy_days(23, 20.0, 11);
    let now = 22 * 86_400;
    let product = Context { choose_band: true, lead_secs: 300, floor_utilisation: Some(0.85), ..context() };
    let config = ForecastConfig::default();
    let mut ledger = Ledger::default();
    let chosen = forecast_series(&("eu".into(), 1), &series, now, &product, &config, &mut ledger).expect("forecast");
    let choice = chosen.report.band_choice.expect("a week of record chooses");
    assert_eq!(chosen.report.band_quantile, choice.quantile);
    assert!(choice.minutes >= band_choice::MIN_RECORD_MINUTES, "{choice:?}");
    let within = choice.prewarm_short as f64 <= config.shortfall_vs_reactive * choice.reactive_short as f64;
    assert!(within || choice.quantile == band_choice::HIGHEST, "{choice:?}");
    assert!(choice.quantile >= 0.95, "noise a reactive HPA rides out needs a high band: {choice:?}");
    assert!(choice.reason().contains("reactive HPA"), "{}", choice.reason());
    let fixed = ForecastConfig { band_choice: false, ..config };
    let mut ledger = Ledger::default();
    let f = forecast_series(&("eu".into(), 1), &series, now, &product, &fixed, &mut ledger).expect("forecast");
    assert_eq!((f.report.band_choice, f.report.band_quantile), (None, fixed.band_quantile));
}
