//! The forecast stage scored against the reference methods on a committed trace:
//!
//! ```sh
//! cargo run --release -p prewarm-trainer --example backtest [testdata/hard/per_minute.csv.gz]
//! ```
//!
//! The same as `prewarm backtest`, through the library: what ships (`prewarm`: the candidates,
//! the skill-weighted combination and the conformal band) beside MSTL and the seasonal naives.

use std::path::PathBuf;

use prewarm_trainer::forecast::backtest::{self, Protocol};
use prewarm_trainer::forecast::engine::ForecastConfig;
use prewarm_trainer::forecast::series::Series;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let trace = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/nasa95/per_minute.csv.gz"));
    let points = Series::read_minute_csv(&trace)?;
    let report = backtest::backtest(&points, &Protocol::hourly(), &ForecastConfig::default(), &[])?;
    println!("{}: {} windows (hourly sums, 24 h ahead, daily origins)", trace.display(), report.windows);
    for score in &report.scores {
        println!(
            "  {:<20} MASE {:.3}  WAPE {:.3}  p90 coverage {:.1} %",
            score.method,
            score.mase,
            score.wape,
            score.coverage * 100.0
        );
    }
    Ok(())
}
