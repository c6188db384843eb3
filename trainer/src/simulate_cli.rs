//! `prewarm simulate`: read a trace, replay the policies, print the table, write the plots.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use prewarm_shared::artifact::{ModelVersion, ResourceCost};
use prewarm_shared::classify::ClassificationRules;
use prewarm_shared::signals::UserHash;
use prewarm_shared::{ProfileId, UnixSeconds};
use prewarm_trainer::config::TrainerConfig;
use prewarm_trainer::forecast::series::Series;
use prewarm_trainer::ingest::access_log;
use prewarm_trainer::profile;
use prewarm_trainer::simulate::{self, PolicyKind, RegionReport, Report, SimulationConfig, Trace, plot};
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
    /// the store, each region is replayed with its own capacity, and a request weighs its
    /// profile's cost (see `--resource`). A minute without events counts as zero.
    #[arg(long)]
    store: bool,
    /// With `--store`: what a unit of capacity serves, per minute — `cpu` (a request weighs its
    /// profile's median CPU ms), `memory` (MB·s), `bytes`, or `requests` (every request 1).
    #[arg(long, default_value = "cpu", requires = "store")]
    resource: Resource,
    /// Provisioning delays D in minutes, comma-separated: one table each.
    #[arg(long, default_value = "5", value_delimiter = ',')]
    delay: Vec<usize>,
    /// C, requests per minute one unit serves; default the median minute / 10.
    #[arg(long)]
    unit_rpm: Option<f64>,
    #[arg(long, default_value_t = 14)]
    warmup_days: usize,
    /// Policies to replay, comma-separated (default all).
    #[arg(long, value_delimiter = ',')]
    policies: Vec<String>,
    /// Replace a policy's knob, e.g. `--knob prewarm=1.25` (repeatable); the references
    /// ratios are taken against keep their defaults.
    #[arg(long, value_parser = parse_knob)]
    knob: Vec<(PolicyKind, f64)>,
    #[arg(long)]
    json: bool,
    /// External events (the trainer's calendar format) for the policies that use one.
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
}

/// The resource a replay of the store sizes capacity for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Resource {
    Cpu,
    Memory,
    Bytes,
    Requests,
}

impl Resource {
    fn weight(self, cost: &ResourceCost) -> f64 {
        match self {
            Resource::Cpu => f64::from(cost.cpu_ms.median),
            Resource::Memory => f64::from(cost.memory_mb_s.median),
            Resource::Bytes => f64::from(cost.bytes.median),
            Resource::Requests => 1.0,
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Resource::Cpu => "CPU ms",
            Resource::Memory => "MB·s",
            Resource::Bytes => "bytes",
            Resource::Requests => "requests",
        }
    }
}

pub fn run(args: &SimulateArgs, config: &TrainerConfig, rules: &ClassificationRules) -> Result<()> {
    if args.store {
        return run_store(args, config, rules);
    }
    let (source, points) = read_trace(args)?;
    let mut trace = Trace::from_points(&points)?;
    if args.csv.is_none() {
        // Logs and the store record every request: a minute without one had none.
        trace.demand.iter_mut().for_each(|d| *d = Some(d.unwrap_or(0.0)));
    }
    let sim = simulation_config(args)?;
    let policies = sim.policies.clone();
    if !args.json {
        eprintln!("replaying {} minutes of {source} under {} policies…", trace.demand.len(), policies.len());
    }
    let report = simulate::simulate(&trace, &sim)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&source, &report);
    }
    if let Some(path) = &args.plot {
        write_timeline(args, &sim, &source, &trace, path)?;
    }
    if let Some(path) = &args.sweep {
        let delay = sim.delays.first().copied().unwrap_or(5);
        let swept = simulate::sweep(&trace, &SimulationConfig { delays: vec![delay], ..sim.clone() })?;
        write_frontier(args, &source, delay, &swept, path)?;
    }
    Ok(())
}

fn simulation_config(args: &SimulateArgs) -> Result<SimulationConfig> {
    let policies = if args.policies.is_empty() {
        PolicyKind::ALL.to_vec()
    } else {
        args.policies.iter().map(|p| p.parse()).collect::<Result<Vec<PolicyKind>, _>>()?
    };
    Ok(SimulationConfig {
        unit_rpm: args.unit_rpm,
        delays: args.delay.clone(),
        warmup_days: args.warmup_days,
        policies,
        calendar: match &args.calendar {
            Some(path) => prewarm_trainer::forecast::calendar::Calendar::load(path)?.events,
            None => Vec::new(),
        },
        knobs: args.knob.clone(),
    })
}

fn parse_knob(s: &str) -> Result<(PolicyKind, f64), String> {
    let (policy, value) = s.split_once('=').ok_or_else(|| format!("`{s}`: expected POLICY=VALUE"))?;
    let kind: PolicyKind = policy.parse().map_err(|e: simulate::SimulateError| e.to_string())?;
    if kind.default_knob().is_none() {
        return Err(format!("{policy} has no knob"));
    }
    match value.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok((kind, v)),
        _ => Err(format!("`{value}`: the knob must be a positive number")),
    }
}

/// The store per region × profile: profiles trained on the whole store (who is who), each
/// region's requests per profile weighted by the profile's cost.
fn run_store(args: &SimulateArgs, config: &TrainerConfig, rules: &ClassificationRules) -> Result<()> {
    let store = Store::open(&config.store_path())?;
    let source = config.store_path().display().to_string();
    let now = store.latest_event_time()?.context("the store has no events: import logs or POST /v1/events first")?;
    if !args.json {
        eprintln!("training profiles on {source}…");
    }
    let trained = profile::train(&store, config, rules, &[], ModelVersion(1), UnixSeconds(now))?;
    let events = store.events_by_user(None)?;
    let mut regions: Vec<(String, Trace)> = Vec::with_capacity(trained.len());
    for region in &trained {
        let of_user: HashMap<UserHash, ProfileId> = region.user_profiles.iter().copied().collect();
        let mut profiles: Vec<simulate::ProfilePoints> = region
            .model
            .profiles
            .iter()
            .map(|p| (format!("{} {}", p.id.0, p.label), args.resource.weight(&p.cost), Vec::new()))
            .collect();
        for event in events.iter().filter(|e| e.region == region.model.region) {
            let Some(id) = of_user.get(&event.user) else { continue };
            if let Some(i) = region.model.profiles.iter().position(|p| p.id == *id) {
                profiles[i].2.push((event.time, 1.0));
            }
        }
        profiles.retain(|(_, _, points)| !points.is_empty());
        if profiles.is_empty() {
            continue;
        }
        regions.push((region.model.region.clone(), Trace::from_profiles(&profiles)?));
    }
    let sim = simulation_config(args)?;
    if !args.json {
        let parts: usize = regions.iter().map(|(_, t)| t.profiles.len()).sum();
        eprintln!(
            "replaying {} regions ({parts} region × profile series, demand in {}) under {} policies…",
            regions.len(),
            args.resource.unit(),
            sim.policies.len()
        );
    }
    let report = simulate::simulate_regions(&regions, &sim)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{source}: {} regions, demand in {} (each request weighs its profile's median cost), {:.1} s",
            regions.len(),
            args.resource.unit(),
            report.total.seconds
        );
        for RegionReport { region: name, report: r } in &report.regions {
            let profiles = regions.iter().find(|(n, _)| n == name).map_or(0, |(_, t)| t.profiles.len());
            println!(
                "\nregion {name}: {profiles} profiles, C = {:.2} {} per minute per unit",
                r.unit_rpm,
                args.resource.unit()
            );
            print_rows(r);
        }
        println!("\nall regions (sums; ratios of the sums)");
        print_rows(&report.total);
    }
    // The plot shows the busiest region.
    let busiest = regions.iter().max_by(|a, b| {
        let total = |t: &Trace| t.demand.iter().flatten().sum::<f64>();
        total(&a.1).total_cmp(&total(&b.1))
    });
    if let (Some(path), Some((name, trace))) = (&args.plot, busiest) {
        write_timeline(args, &sim, &format!("{source} region {name}"), trace, path)?;
    }
    if let Some(path) = &args.sweep {
        let delay = sim.delays.first().copied().unwrap_or(5);
        let swept = simulate::sweep_regions(&regions, &SimulationConfig { delays: vec![delay], ..sim.clone() })?;
        write_frontier(args, &source, delay, &swept.total, path)?;
    }
    Ok(())
}

fn write_timeline(args: &SimulateArgs, sim: &SimulationConfig, source: &str, trace: &Trace, path: &Path) -> Result<()> {
    let model = sim.model(trace, sim.delays.first().copied().unwrap_or(5))?;
    let from = (model.warmup + args.plot_offset_days * 1440).min(trace.demand.len());
    let to = (from + args.plot_days * 1440).min(trace.demand.len());
    let forecasts = simulate::Forecasts::build(trace, &sim.policies, &sim.calendar);
    let ready: Vec<(String, Vec<u32>)> = sim
        .policies
        .iter()
        .map(|&k| (k.name().to_owned(), simulate::replay(k, None, trace, &model, &forecasts).1[from..to].to_vec()))
        .collect();
    let demand: Vec<Option<f64>> = trace.demand[from..to].iter().map(|d| d.map(|d| d / model.unit_rpm)).collect();
    let title = format!("{source}: demand and ready units, D = {} min, C = {:.2}", model.delay, model.unit_rpm);
    std::fs::write(path, plot::timeline(&title, &demand, &ready))
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

fn write_frontier(args: &SimulateArgs, source: &str, delay: usize, swept: &Report, path: &Path) -> Result<()> {
    if !args.json {
        println!("\nsweep at D = {delay} min (knob: target utilisation, floor factor or headroom)");
        print_rows(swept);
    }
    let title = format!("{source}: cost against under-provisioning, D = {delay} min (ratios to reactive-hpa)");
    std::fs::write(path, plot::frontier(&title, &swept.rows)).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

fn read_trace(args: &SimulateArgs) -> Result<(String, Vec<(u64, f64)>)> {
    if let Some(csv) = &args.csv {
        return Ok((csv.display().to_string(), Series::read_minute_csv(csv)?));
    }
    if args.log.is_empty() {
        bail!("give a trace: --csv FILE, --log FILE... or --store");
    }
    let mut counts: std::collections::BTreeMap<u64, f64> = std::collections::BTreeMap::new();
    let (mut bad, mut first_bad) = (0usize, None);
    for path in &args.log {
        let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let reader: Box<dyn std::io::Read> = if path.extension().is_some_and(|e| e == "gz") {
            Box::new(flate2::read::MultiGzDecoder::new(file))
        } else {
            Box::new(file)
        };
        for (i, line) in std::io::BufReader::new(reader).split(b'\n').enumerate() {
            let line = line.with_context(|| format!("reading {}", path.display()))?;
            match access_log::parse(&String::from_utf8_lossy(&line)) {
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
        "{source}: {} minutes ({} missing), C = {:.2} requests/min per unit, {}-day warm-up, {:.1} s",
        report.minutes, report.missing_minutes, report.unit_rpm, report.warmup_days, report.seconds
    );
    print_rows(report);
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
}
