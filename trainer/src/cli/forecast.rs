//! The forecast and the plan from the command line: `prewarm backtest` and `prewarm plan`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use prewarm_trainer::config::TrainerConfig;
use prewarm_trainer::publish::DirPublisher;
use prewarm_trainer::service::system_clock;
use prewarm_trainer::store::Store;

#[derive(clap::Args)]
pub struct BacktestArgs {
    pub csv: PathBuf,
    /// The step scored: `1h` (the reference protocol) or minutes such as `5m`.
    #[arg(long, default_value = "1h")]
    pub step: String,
    #[arg(long)]
    pub json: bool,
}

pub fn backtest(args: &BacktestArgs, config: TrainerConfig) -> Result<()> {
    let &BacktestArgs { ref csv, ref step, json } = args;
    use prewarm_trainer::forecast::{backtest, series::Series};
    let minutes = match step.trim() {
        "1h" | "60m" => 60,
        other => other
            .strip_suffix('m')
            .and_then(|m| m.parse().ok())
            .with_context(|| format!("--step {other:?}: `1h` or a number of minutes such as `5m`"))?,
    };
    let points = Series::read_minute_csv(csv)?;
    let calendar = match &config.calendar {
        Some(path) => prewarm_trainer::forecast::calendar::Calendar::load(path)?.events,
        None => Vec::new(),
    };
    let report = backtest::backtest(&points, &backtest::Protocol::at_step(minutes), &config.forecast, &calendar)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "{}: {} steps of {} min, {} windows evaluated, {} excluded (most of the horizon unknown), {:.2} s",
        csv.display(),
        report.points,
        report.step_minutes,
        report.windows,
        report.excluded_windows,
        report.seconds
    );
    println!("  {:<22} {:>7} {:>7} {:>7} {:>8} {:>9}", "method", "MASE", "sMAPE", "WAPE", "pinball", "p90 cover");
    for s in &report.scores {
        println!(
            "  {:<22} {:>7.3} {:>7.3} {:>7.3} {:>8.3} {:>8.1}%",
            s.method,
            s.mase,
            s.smape,
            s.wape,
            s.pinball,
            s.coverage * 100.0
        );
    }
    let choices: Vec<String> = report.prewarm_choices.iter().map(|(m, n)| format!("{m} ×{n}")).collect();
    println!("  prewarm published: {}", choices.join(", "));
    Ok(())
}

#[derive(clap::Args)]
pub struct PlanArgs {
    /// Steps to show per region.
    #[arg(long, default_value_t = 12)]
    pub steps: usize,
    #[arg(long)]
    pub json: bool,
}

pub fn plan(args: &PlanArgs, config: TrainerConfig) -> Result<()> {
    let &PlanArgs { steps, json } = args;
    let models = DirPublisher::new(config.models_dir()).current()?.map(|(_, r)| r).unwrap_or_default();
    let store = Store::open(&config.store_path())?;
    let now = system_clock();
    let live = prewarm_trainer::plan::Live::from_store(&store, now, config.plan.nowcast_decay_secs)?;
    let signals = &live.signals;
    let plans = prewarm_trainer::plan::plan_regions(&models, &config.plan, now, &live);
    let pools = prewarm_trainer::plan::plan_pools(&models, &config.plan, now, &live);
    if json {
        let view: Vec<_> = plans
            .iter()
            .map(|(r, p)| {
                let pools: Vec<_> = pools
                    .iter()
                    .filter(|p| &p.region == r)
                    .map(|p| serde_json::json!({"pool": p.pool, "steps": &p.steps[..p.steps.len().min(steps)]}))
                    .collect();
                serde_json::json!({"region": r, "steps": &p[..p.len().min(steps)], "pools": pools})
            })
            .collect();
        println!("{}", serde_json::Value::Array(view));
        return Ok(());
    }
    let units = |plan: &[prewarm_trainer::plan::PlanStep]| -> Vec<String> {
        plan.iter().take(steps).map(|s| s.units.to_string()).collect()
    };
    for (region, plan) in &plans {
        let boosted = signals.iter().filter(|s| &s.0 == region).count();
        println!(
            "region {region}: units for the next {} steps of 5 min: {}  ({boosted} recent prewarm signals)",
            units(plan).len(),
            units(plan).join(" ")
        );
        for p in pools.iter().filter(|p| &p.region == region) {
            println!("  pool {}: {}", p.pool, units(&p.steps).join(" "));
        }
    }
    Ok(())
}
