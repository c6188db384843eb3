//! The plan stage on its own: a published region model (the shared crate's fixture) turned
//! into units per 5-minute step, and what an orchestrator should run now.
//!
//! ```sh
//! cargo run -p prewarm-trainer --example plan
//! ```

use prewarm_shared::{UnixSeconds, fixtures};
use prewarm_trainer::plan::{self, Live, PlanConfig};

fn main() {
    let mut model = fixtures::region_model("eu");
    let now = UnixSeconds(1_800_000_000);
    model.forecast.start = now;
    // The fixture is a small site; make it a busy one whose demand rises over the next hour.
    for series in &mut model.forecast.series {
        for (i, value) in series.expected.iter_mut().chain(series.upper.iter_mut()).enumerate() {
            let step = i % 288;
            *value *= 2_000.0 * (1.0 + step.min(12) as f32 / 12.0);
        }
    }
    let config = PlanConfig::default();
    // No edge counts and no prewarm signals: the forecast alone.
    let steps = plan::plan(&model, &config, now, &Live::default());
    let step_secs = u64::from(model.forecast.step_secs);
    for step in steps.iter().take(12) {
        println!(
            "  +{:>4} min: {:>3} units (critical/standard/best effort {:?})",
            (step.at - now.0) / 60,
            step.units,
            step.by_priority
        );
    }
    let run_now = plan::desired_units(&steps, now, config.lead_time_secs, step_secs);
    let balloons = plan::node_headroom(&steps, now, config.lead_time_secs, 1_800, step_secs);
    println!("run now: {run_now:?} units; keep room for {balloons:?} more on nodes (30 min node lead)");
}
