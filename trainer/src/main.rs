//! `prewarm`: the trainer's command line.

use std::path::PathBuf;

mod bench;
mod simulate_cli;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use prewarm_shared::classify::ClassificationRules;
use prewarm_trainer::config::TrainerConfig;
use prewarm_trainer::ingest::import;
use prewarm_trainer::publish::DirPublisher;
use prewarm_trainer::store::Store;
use prewarm_trainer::train::train_and_publish;
use prewarm_trainer::web::{self, AppState, system_clock};

#[derive(Parser)]
#[command(name = "prewarm", version, about = "Predictive scaling driven by user-behaviour profiles: the trainer.")]
struct Cli {
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
    Serve {
        /// Listen address; overrides the file and PREWARM_LISTEN.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Import access logs (common or combined format) or NDJSON events, plain or .gz, into the store.
    Import {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Measure ingest, import and forecasting against their baselines and print the figures.
    Bench {
        /// The access log to import (repeated `--copies` times); default: testdata's sample.
        #[arg(long)]
        log: Option<PathBuf>,
        #[arg(long, default_value_t = 100)]
        copies: usize,
        /// Events sent through the HTTP endpoint.
        #[arg(long, default_value_t = 200_000)]
        events: usize,
        /// Events per request (the baseline commits 10,000 rows per transaction).
        #[arg(long, default_value_t = 1_000)]
        batch: usize,
    },
    /// Time k-means on a raw f64 matrix (the reference set from trainer/benches/blobs.py).
    BenchKmeans {
        data: PathBuf,
        #[arg(long, default_value_t = 16)]
        columns: usize,
        #[arg(long, default_value_t = 16)]
        k: usize,
        #[arg(long, default_value = "1,3")]
        runs: String,
    },
    /// Rolling-origin forecast evaluation of a per-minute CSV (`time,requests`); the defaults
    /// are the reference protocol (hourly sums, 24 h horizon, daily origins after 14 days).
    Backtest {
        csv: PathBuf,
        /// The step scored: `1h` (the reference protocol) or minutes such as `5m`.
        #[arg(long, default_value = "1h")]
        step: String,
        #[arg(long)]
        json: bool,
    },
    /// Replay a trace under a capacity model: prewarm against reactive HPA, seasonal-naive,
    /// AWS-style predictive scaling, a static peak and an oracle.
    Simulate(simulate_cli::SimulateArgs),
    /// Write seeded synthetic behaviour events (NDJSON, the /v1/events schema) with ground truth.
    Synth {
        /// Where the events go (one JSON object per line).
        #[arg(long)]
        out: PathBuf,
        /// Each user's true kind, as CSV `user,region,kind`.
        #[arg(long)]
        truth: Option<PathBuf>,
        #[arg(long, default_value_t = 100)]
        users_per_kind: usize,
        #[arg(long, default_value_t = 14)]
        days: u64,
        /// Regions as `name:utc_offset_minutes`, comma-separated.
        #[arg(long, default_value = "eu:60,us:-300")]
        regions: String,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Sessions grow by this fraction a week (0.05: +5 % a week).
        #[arg(long, default_value_t = 0.0)]
        growth_per_week: f64,
        /// This share of users arrive during the history instead of before it.
        #[arg(long, default_value_t = 0.0)]
        new_users: f64,
        /// A weekly external event, `REGION:KIND:AT:MINUTES:MULTIPLIER`: one kind (its index in
        /// the truth's order, 0 = evening mobile video viewer) in one region comes MULTIPLIER
        /// times as much; AT is the next occurrence (Unix seconds, or `+SECONDS` from now), the
        /// history holds the weekly ones before it.
        #[arg(long)]
        event: Option<String>,
        /// Write the event's occurrences (past and next) as a calendar file for the trainer.
        #[arg(long, requires = "event")]
        calendar_out: Option<PathBuf>,
        /// Also write the requests as an access log (combined format).
        #[arg(long)]
        access_log: Option<PathBuf>,
    },
    /// Write the hard aggregate trace (growth ×9 over 8 weeks, daily scheduled crowds, five
    /// unscheduled ones, a level shift, an outage) as a per-minute CSV, with its calendar.
    SynthTrace {
        /// The per-minute CSV (`.gz` compresses it).
        #[arg(long)]
        out: PathBuf,
        /// The calendar of the scheduled crowds (the trainer's `[[event]]` format).
        #[arg(long)]
        calendar_out: Option<PathBuf>,
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// Push the current model (or a rollback) from <data_dir>/models to Workers KV targets.
    Publish {
        /// Roll back to this version, or to the one before the current with `--rollback` alone.
        #[arg(long, num_args = 0..=1, default_missing_value = "previous")]
        rollback: Option<String>,
        /// The local KV that `wrangler dev --persist-to DIR` reads.
        #[arg(long)]
        local_kv: Option<PathBuf>,
        /// The wrangler executable for `--local-kv`.
        #[arg(long, default_value = "node_modules/.bin/wrangler")]
        wrangler: PathBuf,
        /// The wrangler configuration declaring the KV binding.
        #[arg(long, default_value = "wrangler.toml")]
        wrangler_config: PathBuf,
        /// Also write to Cloudflare Workers KV through its REST API (the `[kv]` configuration).
        #[arg(long)]
        kv: bool,
        /// Also archive to the `[object_store]` target (S3, S3-compatible or file://; needs the
        /// `object-store` build feature).
        #[arg(long)]
        object_store: bool,
    },
    /// Summarise a published model: regions, profiles, costs, forecast peaks.
    Inspect {
        /// A models directory (default: <data_dir>/models) or a single artifact file.
        path: Option<PathBuf>,
        /// A kept version of the models directory instead of the current one.
        #[arg(long, conflicts_with = "path")]
        version: Option<u32>,
        /// What Cloudflare Workers KV serves now (the `[kv]` configuration).
        #[arg(long, conflicts_with_all = ["path", "version"])]
        kv: bool,
        #[arg(long)]
        json: bool,
    },
    /// What changed between two models: profiles added, removed or moved, costs and forecasts.
    /// Each side is a kept version number, `current`, `kv` (what Workers KV serves), a models
    /// directory or an artifact file.
    Diff {
        before: String,
        after: String,
        #[arg(long)]
        json: bool,
    },
    /// The pre-provisioning plan for the published model, with the edge's recent prewarm signals.
    Plan {
        /// Steps to show per region.
        #[arg(long, default_value_t = 12)]
        steps: usize,
        #[arg(long)]
        json: bool,
    },
    /// Train profiles on the store and publish the next model version.
    Train {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        /// Ground truth (`prewarm synth --truth`): report how well profiles recover it.
        #[arg(long)]
        truth: Option<PathBuf>,
    },
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

fn main() -> Result<()> {
    let cli = Cli::parse();
    init_logs(cli.json_logs);
    let config = load_config(&cli)?;
    let rules = ClassificationRules::default();
    match cli.command {
        Command::Serve { listen } => serve(config, rules, listen),
        Command::Import { ref files } => {
            let mut store = Store::open(&config.store_path())?;
            let mut last = std::time::Instant::now();
            let summary = import::import_files(files, &mut store, &config, &rules, |lines| {
                if last.elapsed().as_millis() >= 500 {
                    eprint!("\rimported {lines} lines…");
                    last = std::time::Instant::now();
                }
            })?;
            eprintln!();
            println!(
                "{} files, {} lines: {} imported, {} unparseable, {:.2} s ({:.0} lines/s)",
                summary.files,
                summary.lines,
                summary.imported,
                summary.unparseable,
                summary.seconds,
                summary.lines as f64 / summary.seconds.max(1e-9)
            );
            for sample in &summary.samples {
                println!("  unparseable: {sample}");
            }
            Ok(())
        }
        Command::Bench { ref log, copies, events, batch } => bench(log.clone(), copies, events, batch),
        Command::BenchKmeans { ref data, columns, k, ref runs } => {
            let matrix = bench::read_f64_matrix(data, columns)?;
            println!("k-means, k = {k}, on {} x {columns} ({})", matrix.nrows(), data.display());
            for runs in runs.split(',').filter_map(|r| r.trim().parse::<usize>().ok()) {
                let (seconds, inertia) = bench::kmeans(&matrix, k, runs)?;
                println!(
                    "  prewarm (greedy k-means++ on a 50k sample, {runs} run(s), linfa Lloyd): {seconds:>7.2} s  inertia {inertia:.0}"
                );
            }
            Ok(())
        }
        Command::Synth {
            ref out,
            ref truth,
            users_per_kind,
            days,
            ref regions,
            seed,
            growth_per_week,
            new_users,
            ref event,
            ref calendar_out,
            ref access_log,
        } => {
            use prewarm_trainer::synth;
            use std::io::Write;
            let kinds = synth::standard_kinds();
            // The history ends at today's midnight (UTC), so its forecasts reach the present.
            let today = system_clock().0 / 86_400 * 86_400;
            let start = today - days * 86_400;
            let mut events = std::io::BufWriter::new(
                std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?,
            );
            let event = event.as_deref().map(|spec| parse_synth_event(spec, system_clock().0, start)).transpose()?;
            let scenario = synth::Scenario { growth_per_week, new_users, event: event.clone() };
            if !((0.0..=1.0).contains(&new_users) && growth_per_week > -1.0 && growth_per_week.is_finite()) {
                anyhow::bail!("--new-users must be in [0, 1] and --growth-per-week above -1");
            }
            let mut log = match access_log {
                Some(path) => Some(std::io::BufWriter::new(
                    std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
                )),
                None => None,
            };
            let mut truth_rows = vec!["user,region,kind".to_owned()];
            let mut count = 0;
            for (i, spec) in regions.split(',').enumerate() {
                let (name, offset) =
                    spec.split_once(':').with_context(|| format!("region {spec:?} is not name:offset"))?;
                let offset: i32 = offset.trim().parse().with_context(|| format!("region {spec:?}: bad UTC offset"))?;
                let sessions = (days as usize / 3).max(2);
                let (mut requests, users) = synth::generate_scenario(
                    &kinds,
                    name.trim(),
                    offset,
                    users_per_kind,
                    sessions,
                    start,
                    days,
                    seed + i as u64,
                    &scenario,
                );
                requests.sort_by_key(|r| r.event.time);
                for r in &requests {
                    writeln!(events, "{}", r.to_ndjson())?;
                    if let Some(log) = log.as_mut() {
                        writeln!(log, "{}", r.to_combined_log())?;
                    }
                }
                count += requests.len();
                truth_rows
                    .extend(users.iter().map(|u| format!("{},{},{}", u.user.to_hex(), u.region, kinds[u.kind].name)));
            }
            events.flush()?;
            if let Some(log) = log.as_mut() {
                log.flush()?;
            }
            if let (Some(path), Some(e)) = (calendar_out, &event) {
                let entries: Vec<String> = e
                    .starts
                    .iter()
                    .enumerate()
                    .map(|(n, at)| {
                        format!(
                            "[[event]]\nname = \"match {}\"\nregion = \"{}\"\nstart = \"{}\"\nend = \"{}\"\nkind = \"match\"\n",
                            n + 1,
                            e.region,
                            synth::rfc3339(*at),
                            synth::rfc3339(at + e.minutes * 60)
                        )
                    })
                    .collect();
                std::fs::write(path, entries.join("\n")).with_context(|| format!("writing {}", path.display()))?;
            }
            if let Some(path) = truth {
                std::fs::write(path, truth_rows.join("\n") + "\n")
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            println!("{count} events for {} users written to {}", truth_rows.len() - 1, out.display());
            Ok(())
        }
        Command::SynthTrace { ref out, ref calendar_out, seed } => {
            use std::io::Write;
            let trace = prewarm_trainer::synth::trace::HardTrace::standard(seed);
            let csv = trace.csv();
            let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
            if out.extension().is_some_and(|e| e == "gz") {
                let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::best());
                gz.write_all(csv.as_bytes())?;
                gz.finish()?;
            } else {
                std::io::BufWriter::new(file).write_all(csv.as_bytes())?;
            }
            if let Some(path) = calendar_out {
                std::fs::write(path, trace.calendar()).with_context(|| format!("writing {}", path.display()))?;
            }
            println!("{} minutes of the hard trace (seed {seed}) written to {}", trace.days * 1440, out.display());
            Ok(())
        }
        Command::Publish { ref rollback, ref local_kv, ref wrangler, ref wrangler_config, kv: to_kv, object_store } => {
            use prewarm_trainer::publish::Publisher;
            use prewarm_trainer::publish::local_kv::LocalKv;
            let publisher = DirPublisher::new(config.models_dir());
            let entries = match rollback.as_deref() {
                None => publisher.current_entries()?,
                Some("previous") => publisher.rollback(None)?,
                Some(v) => publisher
                    .rollback(Some(v.parse().with_context(|| format!("--rollback {v:?} is not a version"))?))?,
            };
            let pointer = entries.last().map(|e| prewarm_shared::ModelPointer::from_artifact(&e.value)).transpose()?;
            let version = pointer.map_or(0, |p| p.version.0);
            if rollback.is_some() {
                println!("rolled back {} to version {version}", publisher.root().display());
            }
            let mut targets: Vec<Box<dyn Publisher>> = Vec::new();
            if let Some(dir) = local_kv {
                targets.push(Box::new(LocalKv {
                    wrangler: wrangler.clone(),
                    config: wrangler_config.clone(),
                    binding: "PREWARM_MODEL".into(),
                    persist_to: dir.clone(),
                }));
            }
            if to_kv {
                let kv = config
                    .kv
                    .clone()
                    .context("--kv needs a [kv] section (account_id, namespace_id) and PREWARM_CF_API_TOKEN")?;
                targets.push(Box::new(kv));
            }
            if object_store {
                let settings = config.object_store.as_ref().context(
                    "--object-store needs an [object_store] section (url, and endpoint for S3-compatible stores)",
                )?;
                targets.push(object_store_publisher(settings)?);
            }
            for target in &targets {
                target.publish(&entries)?;
                println!(
                    "version {version}: {} blobs and the pointer written to {}",
                    entries.len() - 1,
                    target.target()
                );
            }
            Ok(())
        }
        Command::Diff { ref before, ref after, json } => {
            let (old, new) = (load_models(before, &config)?, load_models(after, &config)?);
            let diff = prewarm_trainer::publish::diff::diff(&old, &new);
            if json {
                println!("{}", serde_json::to_string_pretty(&diff)?);
            } else {
                print_diff(&diff);
            }
            Ok(())
        }
        Command::Inspect { ref path, version, kv, json } => {
            let spec = match (path, version) {
                _ if kv => "kv".to_owned(),
                (Some(path), _) => path.display().to_string(),
                (None, Some(v)) => v.to_string(),
                (None, None) => "current".to_owned(),
            };
            let regions = load_models(&spec, &config)?;
            // Why each priority and forecast: recorded by the trainer beside the versions.
            let report = regions
                .first()
                .and_then(|r| prewarm_trainer::report::TrainingReport::read(&config.models_dir(), r.model_version));
            let about = |region: &str, id: u16| report.as_ref().and_then(|r| r.profile(region, id)).cloned();
            let why = |region: &str, id: u16| about(region, id).map(|a| a.priority_reason);
            if json {
                let views = regions.iter().map(|r| {
                    let mut view = r.to_json();
                    if let Some(profiles) = view.get_mut("profiles").and_then(|p| p.as_array_mut()) {
                        for p in profiles {
                            let id = p["id"].as_u64().and_then(|id| u16::try_from(id).ok());
                            if let (Some(reason), Some(object)) =
                                (id.and_then(|id| why(&r.region, id)), p.as_object_mut())
                            {
                                object.insert("priority_reason".into(), reason.into());
                            }
                            if let (Some(forecast), Some(object)) =
                                (id.and_then(|id| about(&r.region, id)).and_then(|a| a.forecast), p.as_object_mut())
                            {
                                object.insert("forecast".into(), serde_json::to_value(forecast).unwrap_or_default());
                            }
                        }
                    }
                    view
                });
                println!("{}", serde_json::Value::Array(views.collect()));
                return Ok(());
            }
            for r in &regions {
                println!("region {} (model version {}, {} profiles)", r.region, r.model_version.0, r.k());
                for p in &r.profiles {
                    let peak = r.forecast.series.iter().find(|s| s.profile == p.id).and_then(|s| {
                        let i = (0..s.expected.len()).max_by(|&a, &b| s.expected[a].total_cmp(&s.expected[b]))?;
                        Some((
                            r.forecast.start.0 + i as u64 * u64::from(r.forecast.step_secs),
                            s.expected[i],
                            s.upper[i],
                        ))
                    });
                    println!(
                        "  {:>3} {:<40} {:>5.1}% users  {:?}  cpu {:.1} ms ({:?})  mem {:.2} MB·s ({:?})  {:.0} B",
                        p.id.0,
                        p.label,
                        p.share_of_users * 100.0,
                        p.priority,
                        p.cost.cpu_ms.median,
                        p.cost.cpu_ms.source,
                        p.cost.memory_mb_s.median,
                        p.cost.memory_mb_s.source,
                        p.cost.bytes.median
                    );
                    println!(
                        "      priority {:?}: {}",
                        p.priority,
                        why(&r.region, p.id.0).unwrap_or_else(|| "(no reason recorded for this version)".into())
                    );
                    if let Some(note) = about(&r.region, p.id.0).and_then(|a| a.forecast_note) {
                        println!("      forecast: {note}");
                    }
                    if let Some(f) = about(&r.region, p.id.0).and_then(|a| a.forecast) {
                        let candidates: Vec<String> = f
                            .skill
                            .iter()
                            .filter(|s| s.mase.is_finite())
                            .map(|s| format!("{} {:.3}", s.method.name(), s.mase))
                            .collect();
                        println!("      forecast model: {} — {}", f.method.name(), f.reason);
                        println!("      recent out-of-sample MASE: {}", candidates.join(", "));
                        println!(
                            "      band: p{:.0} of a minute's demand, calibrated on {} out-of-sample minutes; {} outlier runs masked",
                            f.band_quantile * 100.0,
                            f.band_scores,
                            f.masked.runs
                        );
                    }
                    if let Some((at, expected, upper)) = peak {
                        println!(
                            "      forecast peak {expected:.1} req/step (band {upper:.1}) at {:02}:{:02} UTC",
                            at % 86_400 / 3600,
                            at % 3600 / 60
                        );
                    }
                    // The centroid in the features' own units: what a typical member looks like.
                    if let Some(row) = r.profile_index(p.id).and_then(|i| r.raw_centroid(i)) {
                        let raw: Vec<String> = row
                            .iter()
                            .enumerate()
                            .map(|(f, v)| format!("{}={v:.2}", r.schema.names.get(f).map_or("?", String::as_str)))
                            .collect();
                        println!("      centroid: {}", raw.join(" "));
                    }
                }
            }
            Ok(())
        }
        Command::Plan { steps, json } => {
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
        Command::Simulate(ref args) => simulate_cli::run(args, &config, &rules),
        Command::Backtest { ref csv, ref step, json } => {
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
            let report =
                backtest::backtest(&points, &backtest::Protocol::at_step(minutes), &config.forecast, &calendar)?;
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
            println!(
                "  {:<22} {:>7} {:>7} {:>7} {:>8} {:>9}",
                "method", "MASE", "sMAPE", "WAPE", "pinball", "p90 cover"
            );
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
        Command::Train { json, ref truth } => {
            let store = Store::open(&config.store_path())?;
            let publisher = DirPublisher::new(config.models_dir());
            let mut ledger = prewarm_trainer::forecast::ledger::Ledger::default();
            let run = train_and_publish(&store, &config, &rules, &publisher, system_clock(), &mut ledger)?;
            if json {
                let regions: Vec<_> = run.regions.iter().map(|r| r.model.to_json()).collect();
                println!(
                    "{}",
                    serde_json::json!({ "version": run.version.0, "published": run.published, "regions": regions })
                );
                return Ok(());
            }
            println!(
                "model version {} {}",
                run.version.0,
                if run.published { "published" } else { "unchanged (not republished)" }
            );
            if let Some(path) = truth {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                let kinds: std::collections::HashMap<&str, &str> = text
                    .lines()
                    .skip(1)
                    .filter_map(|l| {
                        let mut f = l.split(',');
                        Some((f.next()?, f.nth(1)?))
                    })
                    .collect();
                let mut names: Vec<&str> = kinds.values().copied().collect();
                names.sort_unstable();
                names.dedup();
                let (mut true_kind, mut found) = (Vec::new(), Vec::new());
                // Profiles are per region: compare (region, kind) with (region, profile).
                for (region_index, r) in run.regions.iter().enumerate() {
                    for (user, profile) in &r.user_profiles {
                        if let Some(kind) = kinds.get(user.to_hex().as_str()) {
                            true_kind.push(names.iter().position(|n| n == kind).unwrap_or(0) + 1000 * region_index);
                            found.push(usize::from(profile.0) + 1000 * region_index);
                        }
                    }
                }
                let ari = prewarm_trainer::profile::evaluate::adjusted_rand_index(&true_kind, &found);
                println!(
                    "profiles vs true kinds: adjusted Rand index {ari:.3} over {} users (1 = perfect)",
                    true_kind.len()
                );
            }
            for r in &run.regions {
                let note = if r.borrowed_global { " (too few users: global profiles)" } else { "" };
                println!("region {}: {} users, silhouette {:.2}{note}", r.model.region, r.users, r.silhouette);
                for p in &r.model.profiles {
                    let default = if p.id == r.model.default_profile { " [default for new users]" } else { "" };
                    let trained = r.profiles.get(&p.id);
                    let why = trained.map_or("", |t| t.priority_reason.as_str());
                    let mut gated = String::new();
                    if let Some(f) = trained.and_then(|t| t.forecast.as_ref()) {
                        gated = format!("\n      forecast: {} ({})", f.series.method.name(), f.series.reason);
                    }
                    if let Some(note) = trained.and_then(|t| t.forecast_note.as_ref()) {
                        gated = format!("{gated}\n      forecast: {note}");
                    }
                    println!(
                        "  profile {:>3}  {:<36} {:>5.1}% of users  cpu {:.2} ms ({:?})  bytes {:.0}  {:?} ({why}){default}{gated}",
                        p.id.0,
                        p.label,
                        p.share_of_users * 100.0,
                        p.cost.cpu_ms.median,
                        p.cost.cpu_ms.source,
                        p.cost.bytes.median,
                        p.priority
                    );
                }
            }
            Ok(())
        }
    }
}

fn bench(log: Option<PathBuf>, copies: usize, events: usize, batch: usize) -> Result<()> {
    anyhow::ensure!(batch > 0 && batch <= events, "--batch must be between 1 and --events");
    // Requests of `--batch` events, and of 10,000 (the baseline's transaction size: the same
    // unit of durability). Rounds alternate so that the machine's drift hits every contender.
    let batches = if batch == 10_000 { vec![batch] } else { vec![batch, 10_000.min(events)] };
    println!("ingest: {events} events as NDJSON over 4 keep-alive connections, 3 alternating rounds, medians");
    let mut raw = Vec::new();
    let mut http: Vec<Vec<f64>> = vec![Vec::new(); batches.len()];
    for _ in 0..3 {
        raw.push(bench::ingest_raw(events)?);
        for (rates, &size) in http.iter_mut().zip(&batches) {
            rates.push(bench::ingest_http(events, size, 4)?);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let raw = median(&mut raw);
    println!("  raw rusqlite loop (WAL, synchronous=FULL, 10k-row transactions): {raw:>10.0} rows/s");
    for (rates, size) in http.iter_mut().zip(&batches) {
        let rate = median(rates);
        println!(
            "  POST /v1/events, {size:>6}-event requests, durable before the reply: {rate:>10.0} events/s  ratio {:.2} (target >= 0.5)",
            rate / raw
        );
    }

    let log = log.unwrap_or_else(|| PathBuf::from("testdata/apache_logs/access.log.gz"));
    let file = std::env::temp_dir().join(format!("prewarm-bench-{}.log", std::process::id()));
    let bytes = bench::repeat_log(&log, copies, &file).with_context(|| format!("reading {}", log.display()))?;
    println!("\nimport: {} repeated {copies}x ({} MB)", log.display(), bytes / 1_000_000);
    let (lines, ours) = bench::import_rate(&file)?;
    println!("  prewarm import (parse, classify, hash, store): {ours:>10.0} lines/s ({lines} lines)");
    match bench::goaccess_rate(&file, lines)? {
        Some(goaccess) => {
            println!("  GoAccess --log-format=COMBINED:                {goaccess:>10.0} lines/s");
            println!("  ratio: {:.1}x (target >= 5x)", ours / goaccess);
        }
        None => println!("  GoAccess is not installed (apt-get install goaccess): no ratio"),
    }
    let _ = std::fs::remove_file(&file);

    let seconds = bench::forecast_many(1_000)?;
    println!("\nforecast: MSTL(24, 168) + AutoETS trend, fit and forecast 24 h for 1,000 hourly series of 4 weeks");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("  {seconds:.2} s on {threads} threads ({:.1} ms of wall time per series)", seconds);
    Ok(())
}

/// Region models from a kept version number, `current`, `kv`, a models directory or an artifact file.
fn load_models(spec: &str, config: &TrainerConfig) -> Result<Vec<prewarm_shared::RegionModel>> {
    let models = DirPublisher::new(config.models_dir());
    if spec == "current" {
        return Ok(models.current()?.map(|(_, r)| r).unwrap_or_default());
    }
    if spec == "kv" {
        let kv = config
            .kv
            .as_ref()
            .context("--kv needs a [kv] section (account_id, namespace_id) and PREWARM_CF_API_TOKEN")?;
        return Ok(kv.current()?.map(|(_, r)| r).unwrap_or_default());
    }
    if let Ok(version) = spec.parse::<u32>() {
        return Ok(models.version(version)?.1);
    }
    let path = std::path::Path::new(spec);
    if path.is_dir() {
        return Ok(DirPublisher::new(path).current()?.map(|(_, r)| r).unwrap_or_default());
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(vec![
        prewarm_shared::RegionModel::from_artifact(&bytes)
            .with_context(|| format!("{} is not a region model", path.display()))?,
    ])
}

fn print_diff(diff: &prewarm_trainer::publish::diff::ModelDiff) {
    let version = |v: Option<u32>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    for region in &diff.regions {
        println!(
            "region {} ({}; version {} → {})",
            region.region,
            region.change,
            version(region.version_before),
            version(region.version_after)
        );
        for p in &region.profiles {
            match (&p.before, &p.after) {
                (Some(b), Some(a)) => {
                    let change = |x: f32, y: f32| {
                        if x > 0.0 { format!("{:+.0}%", (y / x - 1.0) * 100.0) } else { format!("{x:.1}→{y:.1}") }
                    };
                    println!(
                        "  {:>3} {:<36} moved {:.2}  users {:.1}%→{:.1}%  cpu {}  mem {}  bytes {}  forecast {}  peak {}",
                        p.id,
                        a.label,
                        p.centroid_moved.unwrap_or(f32::NAN),
                        b.share_of_users * 100.0,
                        a.share_of_users * 100.0,
                        change(b.cpu_ms, a.cpu_ms),
                        change(b.memory_mb_s, a.memory_mb_s),
                        change(b.bytes, a.bytes),
                        change(b.forecast_total, a.forecast_total),
                        change(b.forecast_peak, a.forecast_peak),
                    );
                    if b.label != a.label {
                        println!("      label was {:?}", b.label);
                    }
                }
                (None, Some(a)) => {
                    println!("  {:>3} {:<36} added ({:.1}% of users)", p.id, a.label, a.share_of_users * 100.0)
                }
                (Some(b), None) => {
                    println!("  {:>3} {:<36} removed (was {:.1}% of users)", p.id, b.label, b.share_of_users * 100.0)
                }
                (None, None) => {}
            }
        }
    }
}

/// `REGION:KIND:AT:MINUTES:MULTIPLIER` (AT: Unix seconds or `+SECONDS` from `now`), with the
/// weekly occurrences before AT back to `history_start`.
fn parse_synth_event(spec: &str, now: u64, history_start: u64) -> Result<prewarm_trainer::synth::SynthEvent> {
    let parts: Vec<&str> = spec.split(':').collect();
    let [region, kind, at, minutes, multiplier] = parts.as_slice() else {
        anyhow::bail!("--event {spec:?}: expected REGION:KIND:AT:MINUTES:MULTIPLIER");
    };
    let kind: usize = kind.parse().with_context(|| format!("--event {spec:?}: KIND is an index (0 to 3)"))?;
    anyhow::ensure!(kind < prewarm_trainer::synth::standard_kinds().len(), "--event {spec:?}: no kind {kind}");
    let at: u64 = match at.strip_prefix('+') {
        Some(offset) => now + offset.parse::<u64>().with_context(|| format!("--event {spec:?}: bad +SECONDS"))?,
        None => at.parse().with_context(|| format!("--event {spec:?}: AT is Unix seconds or +SECONDS"))?,
    };
    let minutes: u64 = minutes.parse().with_context(|| format!("--event {spec:?}: bad MINUTES"))?;
    let multiplier: f64 = multiplier.parse().with_context(|| format!("--event {spec:?}: bad MULTIPLIER"))?;
    anyhow::ensure!(minutes > 0 && multiplier >= 1.0, "--event {spec:?}: MINUTES > 0 and MULTIPLIER >= 1");
    let mut starts: Vec<u64> = (1..)
        .map(|k| at.checked_sub(k * 7 * 86_400))
        .take_while(|t| t.is_some_and(|t| t >= history_start))
        .flatten()
        .collect();
    starts.reverse();
    starts.push(at);
    Ok(prewarm_trainer::synth::SynthEvent { region: (*region).to_owned(), kind, starts, minutes, multiplier })
}

#[cfg(feature = "object-store")]
fn object_store_publisher(
    settings: &prewarm_trainer::publish::ObjectStoreConfig,
) -> Result<Box<dyn prewarm_trainer::publish::Publisher>> {
    Ok(Box::new(prewarm_trainer::publish::object_store::ObjectStorePublisher::new(settings)?))
}

#[cfg(not(feature = "object-store"))]
fn object_store_publisher(
    _: &prewarm_trainer::publish::ObjectStoreConfig,
) -> Result<Box<dyn prewarm_trainer::publish::Publisher>> {
    anyhow::bail!("this prewarm was built without object_store support: build it with `--features object-store`")
}

fn serve(mut config: TrainerConfig, rules: ClassificationRules, listen: Option<std::net::SocketAddr>) -> Result<()> {
    if let Some(listen) = listen {
        config.listen = listen;
    }
    let mut store = Store::open(&config.store_path())
        .with_context(|| format!("opening the store {}", config.store_path().display()))?;
    if let Some(mb) = config.store_max_mb {
        store.limit_size(mb * 1024 * 1024)?;
    }
    if config.store_read_only {
        store.set_read_only(true)?;
    }
    let state = AppState::new(config, store, rules, system_clock);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(state.config.listen)
            .await
            .with_context(|| format!("binding {}", state.config.listen))?;
        tracing::info!(addr = %listener.local_addr()?, "prewarm trainer listening");
        tokio::spawn(periodic_training(state.clone()));
        tokio::spawn(periodic_actuation(state.clone()));
        if let Some(keda) = state.config.actuate.keda_listen {
            let listener = tokio::net::TcpListener::bind(keda)
                .await
                .with_context(|| format!("binding the KEDA scaler on {keda}"))?;
            tracing::info!(addr = %listener.local_addr()?, "KEDA external scaler listening");
            let scaler = state.clone();
            tokio::spawn(async move {
                if let Err(e) = prewarm_trainer::actuate::keda::serve_on(scaler, listener).await {
                    tracing::error!(error = %e, "the KEDA external scaler stopped");
                }
            });
        }
        // With the peer address: the signal endpoint is rate-limited per source.
        let app = web::router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
        axum::serve(listener, app).with_graceful_shutdown(shutdown()).await?;
        Ok(())
    })
}

/// Retrains and publishes every `train_interval_secs`, and prunes old events.
/// Every `actuate.interval_secs`: the plan to the webhook, alert rules evaluated, alerts
/// delivered. Runs with or without a webhook (alerts are listed in /v1/status and /metrics).
async fn periodic_actuation(state: AppState) {
    let config = &state.config.actuate;
    let webhook = match (&config.webhook_url, &config.webhook_secret) {
        (Some(url), Some(secret)) => Some(prewarm_trainer::actuate::Webhook::new(url, secret, config)),
        _ => None,
    };
    let mut ticker = tokio::time::interval(std::time::Duration::from_secs(config.interval_secs));
    loop {
        ticker.tick().await;
        let (state, webhook) = (state.clone(), webhook.clone());
        let outcome = tokio::task::spawn_blocking(move || {
            prewarm_trainer::actuate::cycle(&state, webhook.as_ref(), system_clock())
        })
        .await;
        match outcome {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "actuation cycle failed"),
            Err(e) => tracing::warn!(error = %e, "actuation cycle panicked"),
        }
    }
}

async fn periodic_training(state: AppState) {
    let interval = state.config.train_interval_secs;
    if interval == 0 {
        return;
    }
    let mut ticker = tokio::time::interval(std::time::Duration::from_secs(interval));
    ticker.tick().await;
    // Past forecasts, kept between trainings: the skill and bands of each are measured on them.
    let ledger = std::sync::Arc::new(std::sync::Mutex::new(prewarm_trainer::forecast::ledger::Ledger::default()));
    loop {
        ticker.tick().await;
        let state = state.clone();
        let ledger = ledger.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let now = system_clock();
            let cutoff = now.0.saturating_sub(state.config.retention_days * 86_400);
            state.store.lock().map_err(|_| anyhow::anyhow!("store lock poisoned"))?.prune_events(cutoff)?;
            // A connection of its own: WAL readers do not block the ingest endpoint's writes.
            let store = Store::open(&state.config.store_path())?;
            let publisher = DirPublisher::new(state.config.models_dir());
            let mut ledger = ledger.lock().map_err(|_| anyhow::anyhow!("ledger lock poisoned"))?;
            let run = train_and_publish(&store, &state.config, &state.rules, &publisher, now, &mut ledger)?;
            // With `[kv]` configured, each new version goes on to Cloudflare (blobs, then pointer).
            if let Some(kv) = state.config.kv.as_ref().filter(|_| run.published) {
                kv.publish(&publisher.current_entries()?)?;
            }
            // …and to the `[object_store]` archive.
            if let Some(settings) = state.config.object_store.as_ref().filter(|_| run.published) {
                object_store_publisher(settings)?.publish(&publisher.current_entries()?)?;
            }
            anyhow::Ok(run.version.0)
        })
        .await;
        match outcome {
            Ok(Ok(version)) => tracing::info!(version, "periodic training done"),
            Ok(Err(e)) => tracing::warn!(error = %e, "periodic training failed"),
            Err(e) => tracing::warn!(error = %e, "periodic training panicked"),
        }
    }
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = terminate => {} }
    tracing::info!("shutting down");
}
