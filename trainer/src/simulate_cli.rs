//! `prewarm simulate`: read a trace, replay the policies, print the table, write the plots.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use prewarm_trainer::config::TrainerConfig;
use prewarm_trainer::forecast::series::Series;
use prewarm_trainer::ingest::access_log;
use prewarm_trainer::simulate::{self, PolicyKind, Report, SimulationConfig, Trace, plot};
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
    /// The event store of the data directory: all regions' events per minute (a minute without
    /// events counts as zero).
    #[arg(long)]
    store: bool,
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

pub fn run(args: &SimulateArgs, config: &TrainerConfig) -> Result<()> {
    let (source, points) = read_trace(args, config)?;
    let mut trace = Trace::from_points(&points)?;
    if args.csv.is_none() {
        // Logs and the store record every request: a minute without one had none.
        trace.demand.iter_mut().for_each(|d| *d = Some(d.unwrap_or(0.0)));
    }
    let policies = if args.policies.is_empty() {
        PolicyKind::ALL.to_vec()
    } else {
        args.policies.iter().map(|p| p.parse()).collect::<Result<Vec<PolicyKind>, _>>()?
    };
    let sim = SimulationConfig {
        unit_rpm: args.unit_rpm,
        delays: args.delay.clone(),
        warmup_days: args.warmup_days,
        policies: policies.clone(),
        calendar: match &args.calendar {
            Some(path) => prewarm_trainer::forecast::calendar::Calendar::load(path)?.events,
            None => Vec::new(),
        },
    };
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
        let model = sim.model(&trace, sim.delays.first().copied().unwrap_or(5))?;
        let from = (model.warmup + args.plot_offset_days * 1440).min(trace.demand.len());
        let to = (from + args.plot_days * 1440).min(trace.demand.len());
        let forecasts = simulate::Forecasts::build(&trace, &policies, &sim.calendar);
        let ready: Vec<(String, Vec<u32>)> = policies
            .iter()
            .map(|&k| (k.name().to_owned(), simulate::replay(k, None, &trace, &model, &forecasts).1[from..to].to_vec()))
            .collect();
        let demand: Vec<Option<f64>> = trace.demand[from..to].iter().map(|d| d.map(|d| d / model.unit_rpm)).collect();
        let title = format!("{source}: demand and ready units, D = {} min, C = {:.2}", model.delay, model.unit_rpm);
        std::fs::write(path, plot::timeline(&title, &demand, &ready))
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &args.sweep {
        let delay = sim.delays.first().copied().unwrap_or(5);
        let swept = simulate::sweep(&trace, &SimulationConfig { delays: vec![delay], ..sim.clone() })?;
        if !args.json {
            println!("\nsweep at D = {delay} min (knob: target utilisation, floor factor or headroom)");
            print_rows(&swept);
        }
        let title = format!("{source}: cost against under-provisioning, D = {delay} min (ratios to reactive-hpa)");
        std::fs::write(path, plot::frontier(&title, &swept.rows))
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn read_trace(args: &SimulateArgs, config: &TrainerConfig) -> Result<(String, Vec<(u64, f64)>)> {
    if let Some(csv) = &args.csv {
        return Ok((csv.display().to_string(), Series::read_minute_csv(csv)?));
    }
    if args.store {
        let store = Store::open(&config.store_path())?;
        let points = store.requests_per_minute()?.into_iter().map(|(m, n)| (m, n as f64)).collect();
        return Ok((config.store_path().display().to_string(), points));
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
