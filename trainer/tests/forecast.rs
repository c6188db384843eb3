//! The forecast stage on the committed traces: nasa95 and the hard synthetic trace
//! (testdata/), scored by the reference backtest.

use prewarm_trainer::forecast::backtest::{self, Protocol};
use prewarm_trainer::forecast::calendar::Calendar;
use prewarm_trainer::forecast::engine::ForecastConfig;
use prewarm_trainer::forecast::series::Series;

fn testdata(relative: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata").join(relative)
}

#[test]
fn on_the_hard_trace_what_ships_beats_the_seasonal_naives_with_a_calibrated_band() {
    let points = Series::read_minute_csv(&testdata("hard/per_minute.csv.gz")).expect("the hard trace");
    let calendar = Calendar::load(&testdata("hard/calendar.toml")).expect("its calendar").events;
    let report =
        backtest::backtest(&points, &Protocol::hourly(), &ForecastConfig::default(), &calendar).expect("backtest");
    let score = |name: &str| report.scores.iter().find(|s| s.method == name).expect(name).clone();
    let shipped = score("prewarm");
    for naive in ["seasonal_naive_24", "seasonal_naive_168"] {
        let baseline = score(naive);
        assert!(shipped.mase < baseline.mase && shipped.wape < baseline.wape, "{shipped:?} vs {baseline:?}");
    }
    // The reference model alone runs away on the growth and the crowds.
    assert!(shipped.mase < score("mstl").mase, "{shipped:?}");
    assert!((0.85..=0.95).contains(&shipped.coverage), "p90 band coverage {:.3}", shipped.coverage);
}

#[test]
fn on_nasa95_what_ships_beats_the_seasonal_naives_with_a_calibrated_band() {
    let points = Series::read_minute_csv(&testdata("nasa95/per_minute.csv.gz")).expect("nasa95");
    let report = backtest::backtest(&points, &Protocol::hourly(), &ForecastConfig::default(), &[]).expect("backtest");
    let score = |name: &str| report.scores.iter().find(|s| s.method == name).expect(name).clone();
    let shipped = score("prewarm");
    for naive in ["seasonal_naive_24", "seasonal_naive_168"] {
        let baseline = score(naive);
        assert!(shipped.mase < baseline.mase && shipped.wape < baseline.wape, "{shipped:?} vs {baseline:?}");
    }
    assert!((0.80..=0.95).contains(&shipped.coverage), "p90 band coverage {:.3}", shipped.coverage);
}

#[test]
fn the_committed_hard_trace_is_what_synth_trace_writes() {
    use std::io::Read;
    let file = std::fs::File::open(testdata("hard/per_minute.csv.gz")).expect("the hard trace");
    let mut committed = String::new();
    flate2::read::GzDecoder::new(file).read_to_string(&mut committed).expect("gzip");
    let trace = prewarm_trainer::synth::trace::HardTrace::standard(7);
    assert!(committed == trace.csv(), "testdata/hard/per_minute.csv.gz differs from `prewarm synth-trace --seed 7`");
    let calendar = std::fs::read_to_string(testdata("hard/calendar.toml")).expect("its calendar");
    assert_eq!(calendar, trace.calendar());
}
