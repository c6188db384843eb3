//! `prewarm simulate`: read a trace, replay prewarm's own stages and the baselines, print the
//! table, write the plots.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use prewarm_shared::classify::ClassificationRules;
use prewarm_trainer::config::TrainerConfig;
use prewarm_trainer::forecast::series::Series;
use prewarm_trainer::ingest::access_log;
use prewarm_trainer::ingest::log_format::LogFormat;
use prewarm_trainer::simulate::store_trace::{self, Resource};
use prewarm_trainer::simulate::{self, PolicyKind, RegionReport, Report, SimulationConfig, Trace, pipeline, plot};
use prewarm_trainer::store::Store;

#[derive(clap::Args)]
pub struct SimulateArgs {
    /// Per-minute demand CSV `minute,requests[,bytes]` (`YYYY-MM-DD HH:MM` or Unix seconds;
    /// minutes without a row are missing), plain or .gz.
    #[arg(long, conflicts_with_all = ["log", "store"])]
    csv: Option<PathBuf>,
    /// Access logs (common or combined format, plain or .gz): requests are counted per minute,
    /// and a minute without a request counts as zero (a log records every request).
    #[arg(long, num_args = 1.., conflicts_with = "store")]
    log: Vec<PathBuf>,
    /// The event store of the data directory, per region × profile: profiles are trained on
    /// the events before each retraining, requests assigned as the edge would have, and each
    /// region replayed with its own capacity (see `--resource`).
    #[arg(long)]
    store: bool,
    /// With `--store`: what a unit of capacity serves per minute — `cpu` (ms), `memory`
    /// (MB·s), `bytes`, or `requests`.
    #[arg(long, default_value = "cpu", requires = "store")]
    resource: ResourceArg,
    /// Provisioning delays D in minutes, comma-separated: one table each (the plan's lead
    /// time is set to D).
    #[arg(long, default_value = "5", value_delimiter = ',')]
    delay: Vec<usize>,
    /// C, demand units one unit of capacity serves a minute; default the median minute / 10.
    #[arg(long)]
    unit_rpm: Option<f64>,
    #[arg(long, default_value_t = 14)]
    warmup_days: usize,
    /// Score only minutes from this time on (`YYYY-MM-DD` or Unix seconds), e.g. to report a
    /// split the defaults were not tuned on.
    #[arg(long, value_parser = parse_time)]
    score_from: Option<u64>,
    /// Score only minutes before this time.
    #[arg(long, value_parser = parse_time)]
    score_until: Option<u64>,
    /// Policies to replay, comma-separated (default all).
    #[arg(long, value_delimiter = ',')]
    policies: Vec<String>,
    /// Replace a policy's knob, e.g. `--knob prewarm=0.75` (repeatable); the references the
    /// ratios are taken against keep their defaults.
    #[arg(long, value_parser = parse_knob)]
    knob: Vec<(PolicyKind, f64)>,
    #[arg(long)]
    json: bool,
    /// External events (the trainer's calendar format); default: the configured calendar.
    #[arg(long)]
    calendar: Option<PathBuf>,
    /// Write an SVG of demand against each policy's ready capacity.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Days the plot shows, from the end of the warm-up plus `--plot-offset-days`.
    #[arg(long, default_value_t = 3)]
    plot_days: usize,
    #[arg(long, default_value_t = 0)]
    plot_offset_days: usize,
    /// Run each policy over its knob and write the cost against under-provisioning SVG here.
    #[arg(long)]
    sweep: Option<PathBuf>,
    /// With `--store`: also replay each region's total demand as one series through the same
    /// pipeline (no profiles), for the comparison that says whether profiles pay.
    #[arg(long, requires = "store")]
    aggregate: bool,
}

/// The resource a replay of the store sizes capacity for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ResourceArg {
    Cpu,
    Memory,
    Bytes,
    Requests,
}

impl From<ResourceArg> for Resource {
    fn from(r: ResourceArg) -> Self {
        match r {
            ResourceArg::Cpu => Resource::Cpu,
            ResourceArg::Memory => Resource::Memory,
            ResourceArg::Bytes => Resource::Bytes,
            ResourceArg::Requests => Resource::Requests,
        }
    }
}

fn parse_time(s: &str) -> Result<u64, String> {
    if let Ok(t) = s.parse::<u64>() {
        return Ok(t);
    }
    prewarm_trainer::ingest::event::parse_rfc3339_utc(&format!("{s}T00:00:00Z"))
        .or_else(|| prewarm_trainer::ingest::event::parse_rfc3339_utc(s))
        .ok_or_else(|| format!("`{s}`: expected YYYY-MM-DD, an RFC 3339 time or Unix seconds"))
}

pub fn run(args: &SimulateArgs, config: &TrainerConfig, rules: &ClassificationRules) -> Result<()> {
    let sim = simulation_config(args, config)?;
    if args.store {
        return run_store(args, &sim, rules);
    }
    let (source, points) = read_trace(args, config)?;
    let mut trace = Trace::from_points(&points)?;
    if args.csv.is_none() {
        // Logs record every request: a minute without one had none.
        trace.demand.iter_mut().for_each(|d| *d = Some(d.unwrap_or(0.0)));
    }
    if !args.json {
        eprintln!("replaying {} minutes of {source} under {} policies…", trace.demand.len(), sim.policies.len());
    }
    let knobs = |kind: PolicyKind| vec![sim.knob_of(kind)];
    let (report, ready) = pipeline::replay_trace(&trace, &sim, &knobs, args.plot.is_some())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&source, &report);
    }
    if let Some(path) = &args.plot {
        write_timeline(args, &report, &source, &trace, &ready, path)?;
    }
    if let Some(path) = &args.sweep {
        let delay = sim.delays.first().copied().unwrap_or(5);
        let one = SimulationConfig { delays: vec![delay], ..sim.clone() };
        let (swept, _) = pipeline::replay_trace(&trace, &one, &sweep_knobs, false)?;
        write_frontier(args, &source, delay, &swept, path)?;
    }
    Ok(())
}

fn sweep_knobs(kind: PolicyKind) -> Vec<Option<f64>> {
    match kind.sweep_knobs() {
        knobs if knobs.is_empty() => vec![None],
        knobs => knobs.into_iter().map(Some).collect(),
    }
}

fn simulation_config(args: &SimulateArgs, config: &TrainerConfig) -> Result<SimulationConfig> {
    let policies = if args.policies.is_empty() {
        PolicyKind::ALL.to_vec()
    } else {
        args.policies.iter().map(|p| p.parse()).collect::<Result<Vec<PolicyKind>, _>>()?
    };
    let calendar = match args.calendar.as_ref().or(config.calendar.as_ref()) {
        Some(path) => prewarm_trainer::forecast::calendar::Calendar::load(path)?.events,
        None => Vec::new(),
    };
    Ok(SimulationConfig {
        unit_rpm: args.unit_rpm,
        delays: args.delay.clone(),
        warmup_days: args.warmup_days,
        policies,
        calendar,
        knobs: args.knob.clone(),
        score_from: args.score_from,
        score_until: args.score_until,
        trainer: config.clone(),
    })
}

fn parse_knob(s: &str) -> Result<(PolicyKind, f64), String> {
    let (policy, value) = s.split_once('=').ok_or_else(|| format!("`{s}`: expected POLICY=VALUE"))?;
    let kind: PolicyKind = policy.parse().map_err(|e: simulate::SimulateError| e.to_string())?;
    if kind.default_knob(&TrainerConfig::default()).is_none() {
        return Err(format!("{policy} has no knob"));
    }
    match value.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok((kind, v)),
        _ => Err(format!("`{value}`: the knob must be a positive number")),
    }
}

/// The store per region × profile, without hindsight.
fn run_store(args: &SimulateArgs, sim: &SimulationConfig, rules: &ClassificationRules) -> Result<()> {
    let config = &sim.trainer;
    let store = Store::open(&config.store_path())?;
    let source = config.store_path().display().to_string();
    let events = store.events_by_user(None)?;
    if events.is_empty() {
        bail!("the store has no events: import logs or POST /v1/events first");
    }
    let resource: Resource = args.resource.into();
    if !args.json {
        eprintln!(
            "replaying {} events of {source} (demand in {}): training every {} s on the events before each instant…",
            events.len(),
            resource.unit(),
            config.train_interval_secs
        );
    }
    let knobs = |kind: PolicyKind| vec![sim.knob_of(kind)];
    let report = store_trace::replay_store(events.clone(), sim, rules, resource, &knobs)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{source}: {} regions, demand in {} (each request weighs what it cost), {} trainings, {:.1} s",
            report.regions.len(),
            resource.unit(),
            report.total.trainings,
            report.total.seconds
        );
        for RegionReport { region: name, report: r } in &report.regions {
            println!("\nregion {name}: C = {:.2} {} per minute per unit", r.unit_rpm, resource.unit());
            print_rows(r);
        }
        println!("\nall regions (sums; ratios of the sums)");
        print_rows(&report.total);
    }
    if args.aggregate {
        run_aggregate(args, sim, &events, resource, &knobs)?;
    }
    if let Some(path) = &args.sweep {
        let delay = sim.delays.first().copied().unwrap_or(5);
        let one = SimulationConfig { delays: vec![delay], ..sim.clone() };
        let swept = store_trace::replay_store(events, &one, rules, resource, &sweep_knobs)?;
        write_frontier(args, &source, delay, &swept.total, path)?;
    }
    Ok(())
}

/// Each region's total demand through the same pipeline as one series (no profiles, every
/// request in one forecast), beside the per-profile replay above; with `--sweep`, over the
/// knob too, so the two can be compared at matched cost.
fn run_aggregate(
    args: &SimulateArgs,
    sim: &SimulationConfig,
    events: &[prewarm_trainer::ingest::event::Event],
    resource: Resource,
    knobs: &dyn Fn(PolicyKind) -> Vec<Option<f64>>,
) -> Result<()> {
    let policies = vec![PolicyKind::Oracle, PolicyKind::ReactiveHpa, PolicyKind::Prewarm];
    let one_series = SimulationConfig { policies, ..sim.clone() };
    for (region, trace) in store_trace::aggregate_traces(events.to_vec(), resource, &sim.trainer) {
        let (report, _) = pipeline::replay_trace(&trace, &one_series, knobs, false)?;
        if args.json {
            println!("{}", serde_json::json!({ "aggregate": { "region": region, "report": report } }));
        } else {
            println!("\nregion {region}, aggregate (the same pipeline on the region's total demand, no profiles)");
            print_rows(&report);
        }
        if args.sweep.is_some() {
            let delay = sim.delays.first().copied().unwrap_or(5);
            let one = SimulationConfig { delays: vec![delay], ..one_series.clone() };
            let (swept, _) = pipeline::replay_trace(&trace, &one, &sweep_knobs, false)?;
            if !args.json {
                println!("\nregion {region}, aggregate sweep at D = {delay} min");
                print_rows(&swept);
            }
        }
    }
    Ok(())
}

fn write_timeline(
    args: &SimulateArgs,
    report: &Report,
    source: &str,
    trace: &Trace,
    ready: &pipeline::ReadySeries,
    path: &Path,
) -> Result<()> {
    let delay = args.delay.first().copied().unwrap_or(5);
    let from = (report.warmup_days * 1440 + args.plot_offset_days * 1440).min(trace.demand.len());
    let to = (from + args.plot_days * 1440).min(trace.demand.len());
    let series: Vec<(String, Vec<u32>)> = ready
        .iter()
        .filter(|(_, d, _)| *d == delay)
        .map(|(name, _, r)| (name.clone(), r[from..to.min(r.len())].to_vec()))
        .collect();
    let c = report.unit_rpm;
    let demand: Vec<Option<f64>> = trace.demand[from..to].iter().map(|d| d.map(|d| d / c)).collect();
    let title = format!("{source}: demand and ready units, D = {delay} min, C = {c:.2}");
    std::fs::write(path, plot::timeline(&title, &demand, &series))
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

fn write_frontier(args: &SimulateArgs, source: &str, delay: usize, swept: &Report, path: &Path) -> Result<()> {
    if !args.json {
        println!("\nsweep at D = {delay} min (knob: target utilisation, floor factor, or prewarm's floor_utilisation)");
        print_rows(swept);
    }
    let title = format!("{source}: cost against under-provisioning, D = {delay} min (ratios to reactive-hpa)");
    std::fs::write(path, plot::frontier(&title, &swept.rows)).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

fn read_trace(args: &SimulateArgs, config: &TrainerConfig) -> Result<(String, Vec<(u64, f64)>)> {
    if let Some(csv) = &args.csv {
        return Ok((csv.display().to_string(), Series::read_minute_csv(csv)?));
    }
    if args.log.is_empty() {
        bail!("give a trace: --csv FILE, --log FILE... or --store");
    }
    let mut counts: std::collections::BTreeMap<u64, f64> = std::collections::BTreeMap::new();
    let (mut bad, mut first_bad) = (0usize, None);
    let format = config.log_format.as_deref().map(LogFormat::compile).transpose()?;
    for path in &args.log {
        let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let reader: Box<dyn std::io::Read> = if path.extension().is_some_and(|e| e == "gz") {
            Box::new(flate2::read::MultiGzDecoder::new(file))
        } else {
            Box::new(file)
        };
        for (i, line) in std::io::BufReader::new(reader).split(b'\n').enumerate() {
            let line = line.with_context(|| format!("reading {}", path.display()))?;
            let text = String::from_utf8_lossy(&line);
            let parsed = match &format {
                Some(format) => format.parse(&text),
                None => access_log::parse(&text),
            };
            match parsed {
                Ok(l) => *counts.entry(l.time / 60 * 60).or_default() += 1.0,
                Err(e) => {
                    bad += 1;
                    first_bad.get_or_insert_with(|| format!("{}:{}: {e}", path.display(), i + 1));
                }
            }
        }
    }
    if let Some(first) = first_bad {
        eprintln!("{bad} unparseable log lines skipped (first: {first})");
    }
    Ok((args.log.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "), counts.into_iter().collect()))
}

fn print_table(source: &str, report: &Report) {
    println!(
        "{source}: {} minutes ({} missing), C = {:.2} requests/min per unit, {}-day warm-up, {} trainings, {:.1} s",
        report.minutes, report.missing_minutes, report.unit_rpm, report.warmup_days, report.trainings, report.seconds
    );
    print_rows(report);
}

/// prewarm's signals, band and crowd response at each delay.
fn print_quality(report: &Report) {
    let share = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
    for q in &report.prewarm {
        let response = q.response().map_or_else(|| "-".to_owned(), |(m, p)| format!("{m} min (p90 {p})"));
        println!(
            "  prewarm at D = {}: {} signals, precision {}; {} material episodes above plan, recall {}; capacity rises {response} after their start; band coverage {}",
            q.delay,
            q.signals,
            share(q.precision()),
            q.material_episodes,
            share(q.recall()),
            share(q.band_coverage()),
        );
    }
}

fn print_rows(report: &Report) {
    let ratio = |r: Option<f64>| r.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"));
    let mut delay = None;
    for row in &report.rows {
        let o = &row.outcome;
        if delay != Some(o.delay) {
            delay = Some(o.delay);
            println!("\nD = {} min, {} scored minutes", o.delay, o.scored_minutes);
            println!(
                "  {:<18} {:>5} {:>9} {:>5} {:>6} {:>7} {:>5} {:>9} {:>5} {:>8} {:>7} {:>6} {:>6} {:>6} {:>6}",
                "policy",
                "knob",
                "cost u·h",
                "×hpa",
                "×orcl",
                "under m",
                "×hpa",
                "under u·m",
                "×hpa",
                "over u·h",
                "actions",
                "θU %",
                "θO %",
                "τU %",
                "τO %"
            );
        }
        println!(
            "  {:<18} {:>5} {:>9.1} {:>5} {:>6} {:>7} {:>5} {:>9.1} {:>5} {:>8.1} {:>7} {:>6.1} {:>6.1} {:>6.1} {:>6.1}",
            o.policy,
            o.knob.map_or_else(|| "-".to_owned(), |k| format!("{k}")),
            o.cost_unit_hours,
            ratio(row.cost_vs_hpa),
            ratio(row.cost_vs_oracle),
            o.under_minutes,
            ratio(row.under_minutes_vs_hpa),
            o.under_unit_minutes,
            ratio(row.under_unit_minutes_vs_hpa),
            o.over_unit_hours,
            o.actions,
            o.elasticity.accuracy_under,
            o.elasticity.accuracy_over,
            o.elasticity.timeshare_under,
            o.elasticity.timeshare_over,
        );
    }
    print_quality(report);
}
