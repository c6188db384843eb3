//! Data in: `prewarm import` (access logs, NDJSON events), and the synthetic data the demo,
//! the tests and the replays use (`prewarm synth`, `prewarm synth-trace`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use prewarm_shared::classify::ClassificationRules;
use prewarm_trainer::config::TrainerConfig;
use prewarm_trainer::import;
use prewarm_trainer::service::system_clock;
use prewarm_trainer::store::{EventStore, Store};

/// The configured `[clickhouse]` event store, if any (else events are in SQLite).
pub fn clickhouse_events(config: &TrainerConfig) -> Result<Option<Box<dyn EventStore + Send>>> {
    let Some(clickhouse) = &config.clickhouse else { return Ok(None) };
    let store = prewarm_trainer::store::clickhouse::open(clickhouse)
        .with_context(|| format!("connecting to ClickHouse at {}", clickhouse.url))?;
    Ok(Some(store))
}

#[derive(clap::Args)]
pub struct ImportArgs {
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The logs' format, as an Apache `LogFormat` or nginx `log_format` string (default: the
    /// configuration's `log_format`, else common or combined).
    #[arg(long)]
    pub log_format: Option<String>,
}

pub fn import(args: &ImportArgs, mut config: TrainerConfig, rules: ClassificationRules) -> Result<()> {
    let ImportArgs { files, log_format } = args;
    if let Some(format) = log_format {
        config.log_format = Some(format.clone());
    }
    let mut store = Store::open(&config.store_path())?;
    let mut clickhouse = clickhouse_events(&config)?;
    let events: &mut dyn EventStore = match clickhouse.as_deref_mut() {
        Some(events) => events,
        None => &mut store,
    };
    let mut last = std::time::Instant::now();
    let summary = import::import_files(files, events, &config, &rules, |lines| {
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

#[derive(clap::Args)]
pub struct SynthArgs {
    /// Where the events go (one JSON object per line).
    #[arg(long)]
    pub out: PathBuf,
    /// Each user's true kind, as CSV `user,region,kind`.
    #[arg(long)]
    pub truth: Option<PathBuf>,
    #[arg(long, default_value_t = 100)]
    pub users_per_kind: usize,
    #[arg(long, default_value_t = 14)]
    pub days: u64,
    /// Regions as `name:utc_offset_minutes`, comma-separated.
    #[arg(long, default_value = "eu:60,us:-300")]
    pub regions: String,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Sessions grow by this fraction a week (0.05: +5 % a week).
    #[arg(long, default_value_t = 0.0)]
    pub growth_per_week: f64,
    /// This share of users arrive during the history instead of before it.
    #[arg(long, default_value_t = 0.0)]
    pub new_users: f64,
    /// A weekly external event, `REGION:KIND:AT:MINUTES:MULTIPLIER`: one kind (its index in
    /// the truth's order, 0 = evening mobile video viewer) in one region comes MULTIPLIER
    /// times as much; AT is the next occurrence (Unix seconds, or `+SECONDS` from now), the
    /// history holds the weekly ones before it.
    #[arg(long)]
    pub event: Option<String>,
    /// Write the event's occurrences (past and next) as a calendar file for the trainer.
    #[arg(long, requires = "event")]
    pub calendar_out: Option<PathBuf>,
    /// Also write the requests as an access log (combined format).
    #[arg(long)]
    pub access_log: Option<PathBuf>,
}

pub fn synth(args: &SynthArgs) -> Result<()> {
    let &SynthArgs {
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
    } = args;
    use prewarm_trainer::synth;
    use std::io::Write;
    let kinds = synth::standard_kinds();
    // The history ends at today's midnight (UTC), so its forecasts reach the present.
    let today = system_clock().0 / 86_400 * 86_400;
    let start = today - days * 86_400;
    let mut events =
        std::io::BufWriter::new(std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?);
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
        let (name, offset) = spec.split_once(':').with_context(|| format!("region {spec:?} is not name:offset"))?;
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
        truth_rows.extend(users.iter().map(|u| format!("{},{},{}", u.user.to_hex(), u.region, kinds[u.kind].name)));
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
        std::fs::write(path, truth_rows.join("\n") + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{count} events for {} users written to {}", truth_rows.len() - 1, out.display());
    Ok(())
}

#[derive(clap::Args)]
pub struct SynthTraceArgs {
    /// The per-minute CSV (`.gz` compresses it).
    #[arg(long)]
    pub out: PathBuf,
    /// The calendar of the scheduled crowds (the trainer's `[[event]]` format).
    #[arg(long)]
    pub calendar_out: Option<PathBuf>,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

pub fn synth_trace(args: &SynthTraceArgs) -> Result<()> {
    let &SynthTraceArgs { ref out, ref calendar_out, seed } = args;
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
