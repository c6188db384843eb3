//! The `prewarm` command line: one module per group of commands, each a thin layer over the
//! library (the service core, the pipeline's stages, the replay).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use prewarm_shared::classify::ClassificationRules;
use prewarm_trainer::config::TrainerConfig;

mod data;
mod forecast;
mod model;
mod serve;
mod simulate;

#[derive(Parser)]
#[command(name = "prewarm", version, about = "Predictive scaling driven by user-behaviour profiles: the trainer.")]
pub struct Cli {
    /// Configuration file (TOML); environment variables PREWARM_* override it.
    #[arg(long, global = true, env = "PREWARM_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (store, published models); overrides the file and PREWARM_DATA_DIR.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    json_logs: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service: ingest events and signals, retrain periodically.
    Serve(serve::ServeArgs),
    /// Import access logs (common or combined format) or NDJSON events, plain or .gz, into the store.
    Import(data::ImportArgs),
    /// Rolling-origin forecast evaluation of a per-minute CSV (`time,requests`); the defaults
    /// are the reference protocol (hourly sums, 24 h horizon, daily origins after 14 days).
    Backtest(forecast::BacktestArgs),
    /// Replay a trace under a capacity model: prewarm against reactive HPA, seasonal-naive,
    /// AWS-style predictive scaling, a static peak and an oracle.
    Simulate(simulate::SimulateArgs),
    /// Write seeded synthetic behaviour events (NDJSON, the /v1/events schema) with ground truth.
    Synth(data::SynthArgs),
    /// Write the hard aggregate trace (growth ×9 over 8 weeks, daily scheduled crowds, five
    /// unscheduled ones, a level shift, an outage) as a per-minute CSV, with its calendar.
    SynthTrace(data::SynthTraceArgs),
    /// Push the current model (or a rollback) from <data_dir>/models to Workers KV targets.
    Publish(model::PublishArgs),
    /// Summarise a published model: regions, profiles, costs, forecast peaks.
    Inspect(model::InspectArgs),
    /// What changed between two models: profiles added, removed or moved, costs and forecasts.
    /// Each side is a kept version number, `current`, `kv` (what Workers KV serves), a models
    /// directory or an artifact file.
    Diff(model::DiffArgs),
    /// The pre-provisioning plan for the published model, with the edge's recent prewarm signals.
    Plan(forecast::PlanArgs),
    /// Train profiles on the store and publish the next model version.
    Train(model::TrainArgs),
}

/// Parses the command line and runs the command.
pub fn run() -> Result<()> {
    let cli = Cli::parse();
    init_logs(cli.json_logs);
    let config = load_config(&cli)?;
    let rules = ClassificationRules::default();
    match cli.command {
        Command::Serve(ref args) => serve::serve(args, config, rules),
        Command::Import(ref args) => data::import(args, config, rules),
        Command::Backtest(ref args) => forecast::backtest(args, config),
        Command::Simulate(ref args) => simulate::run(args, &config, &rules),
        Command::Synth(ref args) => data::synth(args),
        Command::SynthTrace(ref args) => data::synth_trace(args),
        Command::Publish(ref args) => model::publish(args, config),
        Command::Inspect(ref args) => model::inspect(args, config),
        Command::Diff(ref args) => model::diff(args, config),
        Command::Plan(ref args) => forecast::plan(args, config),
        Command::Train(ref args) => model::train(args, config, rules),
    }
}

fn load_config(cli: &Cli) -> Result<TrainerConfig> {
    let mut config = TrainerConfig::load(cli.config.as_deref())?;
    if let Some(dir) = &cli.data_dir {
        config.data_dir = dir.clone();
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    Ok(config)
}

fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json { builder.json().init() } else { builder.init() }
}
