//! `cargo xtask demo`: the whole loop on this machine. Behaviour history in, profiles found and
//! checked against the truth, a model published to the local KV of a real worker in workerd,
//! live traffic (with a surge) through that worker, and its signals arriving at the trainer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use prewarm_tests::{Origin, TempDir, Trainer, WranglerDev, request};

use crate::run::{cmd, step};
use crate::tools;

mod traffic;
use traffic::{Tally, VISITORS, Visitor, visit};

const SALT: &str = "demo-salt-not-for-production";
const SIGNAL_KEY: &str = "demo-signal-token-0123456789";
const INGEST_TOKEN: &str = "demo-ingest-token-0123456789";

/// No silent minutes while a long step runs: a spinner with the elapsed time on a terminal, a
/// line every 5 s in a log (where a spinner's carriage returns would be noise).
struct Progress {
    done: Arc<AtomicBool>,
    ticker: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    fn start(what: &str) -> Self {
        use std::io::{IsTerminal, Write};
        let done = Arc::new(AtomicBool::new(false));
        let (stop, what) = (done.clone(), what.to_owned());
        let ticker = std::thread::spawn(move || {
            let started = Instant::now();
            let terminal = std::io::stdout().is_terminal();
            let frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
            let mut next_line = 5;
            let mut frame = 0;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                let elapsed = started.elapsed().as_secs();
                if terminal {
                    print!("\r  {} {what}: {elapsed} s ", frames[frame % frames.len()]);
                    let _ = std::io::stdout().flush();
                    frame += 1;
                } else if elapsed >= next_line {
                    println!("  … {what}: {next_line} s");
                    next_line += 5;
                }
            }
            if terminal {
                print!("\r{}\r", " ".repeat(what.len() + 16));
                let _ = std::io::stdout().flush();
            }
        });
        Self { done, ticker: Some(ticker) }
    }

    fn finish(mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
    }
}

/// Runs the trainer's CLI on the demo's data directory (with the demo's events calendar,
/// `calendar.toml` beside it, once written).
fn prewarm(bin: &Path, data: &Path, args: &[&str]) -> Result<String> {
    let mut command = Command::new(bin);
    command.arg("--data-dir").arg(data).args(args).env("PREWARM_SALT", SALT);
    if let Some(calendar) = data.parent().map(|d| d.join("calendar.toml")).filter(|c| c.exists()) {
        command.env("PREWARM_CALENDAR", calendar);
    }
    let progress = Progress::start(args.first().copied().unwrap_or("prewarm"));
    let out = command.output();
    progress.finish();
    if interrupted() {
        bail!("interrupted by Ctrl-C");
    }
    let out = out?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("prewarm {args:?} failed:\n{stdout}{}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(stdout)
}

fn json(addr: SocketAddr, path: &str) -> serde_json::Value {
    request(addr, "GET", path, &[], b"")
        .ok()
        .and_then(|(_, body)| serde_json::from_slice(&body).ok())
        .unwrap_or_default()
}

/// A profile's forecast at one moment, in requests a second: expected, the band, the alarm.
#[derive(Clone, Copy, Default)]
struct ProfileRates {
    expected: f64,
    upper: f64,
    alarm: f64,
}

/// Each profile's forecast at `now` in the first region's published table.
fn forecast_by_profile(models: &serde_json::Value, now: u64) -> HashMap<u64, ProfileRates> {
    let mut rates = HashMap::new();
    for region in models.as_array().into_iter().flatten().take(1) {
        let forecast = &region["forecast"];
        let (start, step) =
            (forecast["start"].as_u64().unwrap_or(0), forecast["step_secs"].as_u64().unwrap_or(300).max(1));
        let slot = (now.saturating_sub(start) / step) as usize;
        for series in forecast["series"].as_array().into_iter().flatten() {
            let Some(profile) = series["profile"].as_u64() else { continue };
            let at = |key: &str| series[key][slot].as_f64().unwrap_or(0.0) / step as f64;
            rates.insert(profile, ProfileRates { expected: at("expected"), upper: at("upper"), alarm: at("alarm") });
        }
    }
    rates
}

/// Replays the store under reactive HPA, the seasonal-naive floor, prewarm's own stages and
/// the oracle; prints the table and returns prewarm's line for the summary. The replay trains
/// once a simulated day (an operator's service trains hourly; the demo keeps its replay to a
/// minute or so).
fn replay_against_reactive(bin: &Path, data: &Path) -> Result<String> {
    let config = data.join("replay.toml");
    std::fs::write(&config, "train_interval_secs = 86400\n")?;
    let out = prewarm(
        bin,
        data,
        &[
            "simulate",
            "--config",
            &config.display().to_string(),
            "--store",
            "--delay",
            "5",
            "--policies",
            "oracle,reactive-hpa,seasonal-naive-7d,prewarm",
            "--json",
        ],
    )?;
    let report: serde_json::Value = serde_json::from_str(&out).context("simulate --json")?;
    for region in report["regions"].as_array().into_iter().flatten() {
        println!(
            "  region {}: {} minutes, C = {:.2} CPU ms/min per unit (each request weighs its profile's cost)",
            region["region"].as_str().unwrap_or("?"),
            region["minutes"],
            region["unit_rpm"].as_f64().unwrap_or(f64::NAN)
        );
    }
    println!("  all regions, 14-day warm-up, D = 5 min:");
    let report = &report["total"];
    println!(
        "  {:<18} {:>10} {:>9} {:>12} {:>16}",
        "policy", "unit-hours", "cost×hpa", "under-min×hpa", "under-unit-min×hpa"
    );
    let mut line = String::from("no prewarm row");
    for row in report["rows"].as_array().into_iter().flatten() {
        let ratio = |k: &str| row[k].as_f64().map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
        let policy = row["policy"].as_str().unwrap_or("?");
        println!(
            "  {policy:<18} {:>10.1} {:>9} {:>12} {:>16}",
            row["cost_unit_hours"].as_f64().unwrap_or(f64::NAN),
            ratio("cost_vs_hpa"),
            ratio("under_minutes_vs_hpa"),
            ratio("under_unit_minutes_vs_hpa")
        );
        if policy == "prewarm" {
            line = format!(
                "prewarm costs {}× and is under-provisioned {}× as many minutes ({}× the unit-minutes)",
                ratio("cost_vs_hpa"),
                ratio("under_minutes_vs_hpa"),
                ratio("under_unit_minutes_vs_hpa")
            );
        }
    }
    Ok(line)
}

/// About how long generating, importing, training and starting everything takes before the
/// live traffic begins (about a minute here): the synthetic calendar's next match is set
/// to kick off that long plus half the live phase after the synthesis, when the surge joins.
const PREP_SECS: u64 = 75;

/// Visitors the surge adds (their rate is set from the forecast at kick-off).
const SURGE_VISITORS: u64 = 40;

/// Set by Ctrl-C: the demo stops its traffic, prints what it has and stops everything it
/// started (the trainer, the worker, the origin, the temporary directory) as it returns.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn watch_ctrl_c() {
    std::thread::spawn(|| {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        if runtime.block_on(tokio::signal::ctrl_c()).is_ok() {
            INTERRUPTED.store(true, Ordering::Relaxed);
            println!("\n  Ctrl-C: stopping the traffic and everything the demo started …");
        }
    });
}

fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// Sleeps up to `span`, waking early on Ctrl-C.
fn nap(span: Duration) {
    let until = Instant::now() + span;
    while !interrupted() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100).min(until.saturating_duration_since(Instant::now())));
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

pub fn demo(root: &Path, duration: Duration) -> Result<()> {
    let started = Instant::now();
    watch_ctrl_c();
    step("installing what is missing");
    tools::ensure_all(root)?;
    step("building the trainer and the worker");
    // With the features `cargo xtask test` builds, so the short demo there reuses its binary.
    cmd(Command::new("cargo")
        .args(["build", "--locked", "-p", "prewarm-trainer", "--features", "object-store"])
        .current_dir(root))?;
    crate::run::build_worker(root, &tools::worker_env(root)?)?;
    let bin = crate::run::target_dir(root)?.join("debug/prewarm");
    let dir = TempDir::new("demo");
    let data = dir.0.join("data");
    let events = dir.0.join("history.ndjson");
    let truth = dir.0.join("truth.csv");

    // 500 users per kind: fewer make every minute a handful of sessions, which no forecast
    // (and no capacity planning) can follow.
    step(
        "1/6 generating four weeks of behaviour: 2 regions × 4 kinds of users × 500, growing 3 % a week, \
         10 % of users arriving during it, a weekly match that brings eu's video viewers out four times as much, \
         with ground truth",
    );
    let path = |p: &Path| p.to_str().map(str::to_owned).context("non-UTF-8 temp path");
    let calendar = dir.0.join("calendar.toml");
    // The next match starts when the live surge will: its weekly predecessors are in the
    // history, and the calendar tells the trainer it is coming.
    let match_in = PREP_SECS + duration.as_secs() / 2;
    let event = format!("eu:0:+{match_in}:60:4");
    print!(
        "{}",
        prewarm(
            &bin,
            &data,
            &[
                "synth",
                "--out",
                &path(&events)?,
                "--truth",
                &path(&truth)?,
                "--days",
                "28",
                "--users-per-kind",
                "500",
                "--growth-per-week",
                "0.03",
                "--new-users",
                "0.1",
                "--event",
                &event,
                "--calendar-out",
                &path(&calendar)?,
                "--access-log",
                &path(&dir.0.join("history.log"))?,
            ]
        )?
    );
    println!("  also written: the same history as an access log (combined format), and the match calendar");
    let match_at = unix_now() + match_in;
    println!(
        "  the next match (eu, video viewers) starts at {:02}:{:02} UTC: the calendar tells the trainer",
        match_at % 86_400 / 3600,
        match_at % 3600 / 60
    );
    step("2/6 importing it into a fresh embedded store");
    print!("{}", prewarm(&bin, &data, &["import", &path(&events)?])?);
    step("3/6 training profiles per region, with costs and a day of forecasts");
    let trained = prewarm(&bin, &data, &["train", "--truth", &path(&truth)?])?;
    print!("{trained}");
    let ari: f64 = trained
        .lines()
        .find_map(|l| l.split("adjusted Rand index ").nth(1)?.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN);

    step("3/6 … and what reactive scaling would have done on the same four weeks (prewarm simulate --store)");
    let replay = replay_against_reactive(&bin, &data)?;

    step("4/6 starting the trainer (prewarm serve), an origin and the worker (wrangler dev), then publishing");
    // Instances sized for the synthetic population (a few units at its evening peak), so the
    // plan's movements are visible; a 5-minute provisioning delay.
    let trainer_config = dir.0.join("trainer.toml");
    std::fs::write(
        &trainer_config,
        "train_interval_secs = 0\n[plan]\nlead_time_secs = 300\nmin_units = 1\nmax_units = 500\n\
         [plan.instance]\ncpu_ms_per_sec = 5.0\nmemory_mb = 16.0\nbytes_per_sec = 200000.0\n",
    )?;
    let trainer = Trainer::start_binary(
        &bin,
        &data,
        &[
            ("PREWARM_CONFIG", &path(&trainer_config)?),
            ("PREWARM_CALENDAR", &path(&calendar)?),
            ("PREWARM_SIGNAL_KEY", SIGNAL_KEY),
            ("PREWARM_INGEST_TOKEN", INGEST_TOKEN),
            ("PREWARM_SALT", SALT),
        ],
    );
    let plan_units = |trainer: SocketAddr| -> Vec<u64> {
        let plan = json(trainer, "/v1/plan");
        let steps = plan["regions"].as_array().and_then(|r| r.first()).map(|r| r["steps"].clone()).unwrap_or_default();
        steps.as_array().into_iter().flatten().take(6).filter_map(|s| s["units"].as_u64()).collect()
    };
    let plan_before = plan_units(trainer.addr);
    let plan_read_at = unix_now();
    println!("plan for the default region, next 30 min in 5-min steps (units): {plan_before:?}");
    let origin = Origin::start();
    let models =
        serde_json::from_str::<serde_json::Value>(&prewarm(&bin, &data, &["inspect", "--json"])?).unwrap_or_default();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    // The driver plays the modelled population at its own rate (more than the region's when
    // the history is small: a time-compressed replay): tell the worker the ratio, so it compares
    // like with like against the region's forecast, normal traffic at 2/3 of the forecast.
    let normal_rate = VISITORS.len() as f64 * 2.0; // 4 kinds × 2 visitors × 1 request/s
    let expected = forecast_by_profile(&models, now);
    let modelled: f64 = expected.values().map(|r| r.expected).sum();
    let share = if modelled > 0.0 { (normal_rate * 1.5 / modelled).clamp(0.001, 1000.0) } else { 1.0 };
    println!(
        "forecast now: {modelled:.2} req/s in the default region; the live driver sends {normal_rate:.0} req/s, a share of {share:.3}"
    );
    let config = dir.0.join("wrangler.toml");
    std::fs::write(
        &config,
        format!(
            "name = \"prewarm-demo\"\nmain = \"{}\"\ncompatibility_date = \"2026-04-01\"\n[vars]\nORIGIN_URL = \"http://{}\"\n\
             TRAINER_URL = \"http://{}\"\nSIGNAL_KEY = \"{SIGNAL_KEY}\"\nPREWARM_SALT = \"{SALT}\"\nCOOKIE_SECRET = \"demo-cookie-secret\"\n\
             MODEL_CHECK_SECS = \"2\"\nSIGNAL_FLUSH_SECS = \"2\"\nPREWARM_DEBOUNCE_SECS = \"20\"\nEDGE_TRAFFIC_SHARE = \"{share}\"\n\
             STATE_SAMPLE_RATE = \"0.5\"\n[[kv_namespaces]]\nbinding = \"PREWARM_MODEL\"\nid = \"00000000000000000000000000000000\"\n",
            root.join("edge/worker.mjs").display(),
            origin.addr,
            trainer.addr
        ),
    )?;
    let kv = dir.0.join("kv");
    let wrangler = root.join("node_modules/.bin/wrangler");
    print!(
        "{}",
        prewarm(
            &bin,
            &data,
            &[
                "publish",
                "--local-kv",
                &path(&kv)?,
                "--wrangler",
                &path(&wrangler)?,
                "--wrangler-config",
                &path(&config)?
            ]
        )?
    );
    let worker = WranglerDev::start(&config, &kv);
    let mut loaded = serde_json::Value::Null;
    for _ in 0..100 {
        let _ = request(worker.addr, "GET", "/", &[], b"");
        loaded = json(worker.addr, "/__prewarm/status");
        if loaded["model"]["version"].as_u64().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!(
        "worker at http://{} loaded model version {} (regions {})",
        worker.addr, loaded["model"]["version"], loaded["model"]["regions_loaded"]
    );
    println!("dashboard, while the demo runs: http://{}/", trainer.addr);

    step(&format!(
        "5/6 live traffic through the worker for {} s: normal, then a surge of video viewers",
        duration.as_secs()
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let worker_addr = worker.addr;
    let spawn = |visitor: &'static Visitor, id: u64, interval: Arc<AtomicU64>| {
        let (stop, tally) = (stop.clone(), tally.clone());
        std::thread::spawn(move || visit(worker_addr, visitor, id, interval, stop, tally))
    };
    let mut threads = Vec::new();
    let kinds: Vec<&str> = VISITORS.iter().map(|v| v.kind).collect();
    println!("  2 visitors of each kind, one request per second each to begin with: {}", kinds.join(", "));
    let intervals: Vec<Arc<AtomicU64>> = VISITORS.iter().map(|_| Arc::new(AtomicU64::new(1000))).collect();
    for (k, visitor) in VISITORS.iter().enumerate() {
        for i in 0..2 {
            threads.push(spawn(visitor, (k * 10 + i) as u64, intervals[k].clone()));
        }
    }
    // Normal traffic is normal for every profile, not only in total: once the worker has
    // assigned each kind (after `min_requests`), each kind's rate is set to two thirds of its
    // profile's forecast (through the isolate's traffic share).
    nap(Duration::from_secs(8).min(duration / 2));
    let by_kind = traffic::profiles_by_kind(&origin.seen.lock().map(|s| s.clone()).unwrap_or_default());
    let mut matched = Vec::new();
    for (k, visitor) in VISITORS.iter().enumerate() {
        let Some(profile) = by_kind.get(visitor.kind) else { continue };
        let sharing = VISITORS.iter().filter(|v| by_kind.get(v.kind) == Some(profile)).count();
        let per_sec = expected.get(profile).map_or(0.0, |r| r.expected) * share * 2.0 / 3.0 / sharing as f64;
        intervals[k].store(traffic::interval_ms(per_sec, 2), Ordering::Relaxed);
        matched.push(format!("{} → profile {profile}, {per_sec:.2} req/s", visitor.kind));
    }
    println!("  each kind at two thirds of its profile's forecast: {}", matched.join("; "));
    let prewarm_count = |status: &serde_json::Value| -> u64 {
        status["edge"]["prewarm_signals"].as_array().into_iter().flatten().filter_map(|p| p[1].as_u64()).sum()
    };
    let report = |phase: &str| {
        let status = json(trainer.addr, "/v1/status");
        println!(
            "  [{phase}] {:>5} requests sent, {:>5} answered 200 | trainer: {} signal batches, {} requests counted, prewarm signals {}",
            tally.sent.load(Ordering::Relaxed),
            tally.ok.load(Ordering::Relaxed),
            status["edge"]["signal_batches"],
            status["edge"]["demand_requests"],
            status["edge"]["prewarm_signals"]
        );
        status
    };
    // Normal traffic until the match kicks off (kept between a quarter and three quarters of
    // the live phase, should preparing have been much faster or slower than PREP_SECS).
    let live_start = Instant::now();
    let normal = Duration::from_secs(match_at.saturating_sub(unix_now())).clamp(duration / 4, duration * 3 / 4);
    let tick = Duration::from_secs(5).min(duration / 4).max(Duration::from_secs(1));
    while live_start.elapsed() < normal && !interrupted() {
        nap(tick.min(normal.saturating_sub(live_start.elapsed())));
        if !interrupted() {
            report("normal");
        }
    }
    let before_surge = prewarm_count(&json(trainer.addr, "/v1/status"));
    let kickoff = i128::from(unix_now()) - i128::from(match_at);
    if !interrupted() {
        println!(
            "  the match kicks off ({:02}:{:02}:{:02} UTC; {}): {SURGE_VISITORS} more mobile video viewers join",
            match_at % 86_400 / 3600,
            match_at % 3600 / 60,
            match_at % 60,
            match kickoff {
                0 => "on time".to_owned(),
                k if k > 0 => format!("the surge joins {k} s after it"),
                k => format!("the surge joins {} s before it", -k),
            }
        );
    }
    if !interrupted() {
        // A crowd beyond what the calendar announced: at kick-off the video viewers' profile
        // runs at five times the band the plan provisioned for (calendar included), and at
        // least three times the alarm level (a profile of a few requests a minute has an alarm
        // far above its band: five bands may be a crowd the rule rightly waits on).
        let at_kickoff = forecast_by_profile(&models, match_at);
        let video = by_kind.get(VISITORS[0].kind).and_then(|p| at_kickoff.get(p)).copied().unwrap_or_default();
        let target = (5.0 * video.upper).max(3.0 * video.alarm) * share;
        let surge = Arc::new(AtomicU64::new(traffic::interval_ms(target, SURGE_VISITORS as usize)));
        let each_ms = surge.load(Ordering::Relaxed).max(1);
        println!(
            "  the surge: {:.0} req/s more ({target:.0} wanted; the viewers' profile at kick-off, req/s in the \
             region: expected {:.2}, band {:.2}, alarm {:.2}; traffic share {share:.2})",
            SURGE_VISITORS as f64 * 1000.0 / each_ms as f64,
            video.expected,
            video.upper,
            video.alarm
        );
        for i in 0..SURGE_VISITORS {
            threads.push(spawn(&VISITORS[0], 100 + i, surge.clone()));
        }
    }
    // The surge lasts half the live phase whenever it began (preparing faster than PREP_SECS
    // lengthens the normal phase, not the run's share of surge).
    let surge_start = Instant::now();
    let surge_for = duration / 2;
    let mut first_surge_signal: Option<u64> = None;
    while surge_start.elapsed() < surge_for && !interrupted() {
        nap(tick.min(surge_for.saturating_sub(surge_start.elapsed())));
        if !interrupted() && prewarm_count(&report("surge ")) > before_surge {
            first_surge_signal.get_or_insert(surge_start.elapsed().as_secs());
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    if interrupted() {
        let (sent, ok) = (tally.sent.load(Ordering::Relaxed), tally.ok.load(Ordering::Relaxed));
        println!(
            "interrupted after {:.0} s: {ok} of {sent} demo requests answered 200",
            started.elapsed().as_secs_f64()
        );
        // Returning drops the trainer, the worker, the origin and the data directory.
        bail!("interrupted by Ctrl-C; everything the demo started was stopped");
    }
    std::thread::sleep(Duration::from_secs(3)); // the last signal batches

    step("6/6 summary");
    let status = report("final ");
    let edge = json(worker.addr, "/__prewarm/status");
    let (sent, ok) = (tally.sent.load(Ordering::Relaxed), tally.ok.load(Ordering::Relaxed));
    let after_surge = prewarm_count(&status);
    let plan_after = plan_units(trainer.addr);
    let seen = origin.seen.lock().map(|s| s.len()).unwrap_or(0);
    println!("profiles vs true kinds: adjusted Rand index {ari:.3} (target >= 0.8)");
    println!("worker: {ok} of {sent} demo requests answered 200; the origin saw {seen} requests tagged with profiles");
    println!("worker status: model version {}, counters {}", edge["model"]["version"], edge["counters"]);
    println!(
        "prewarm signals at the trainer: {before_surge} before the surge, {} during it ({})",
        after_surge.saturating_sub(before_surge),
        first_surge_signal.map_or("none".to_owned(), |s| format!("the first seen {s} s after it began"))
    );
    println!("plan, next 30 min (units): before the live traffic {plan_before:?}, after the surge {plan_after:?}");
    // What the scheduled match did to the plan before anyone arrived: where the plan read
    // before the live traffic rose, against when the match kicked off.
    let ahead_secs = match_at.saturating_sub(plan_read_at);
    let peak = plan_before.iter().copied().max().unwrap_or(0);
    match (plan_before.first(), plan_before.iter().position(|u| *u == peak)) {
        (Some(now_units), Some(at)) if peak > *now_units => println!(
            "the plan carried the match before any live traffic: {now_units} units when read, {peak} from +{} min (+{} units); the match kicked off {ahead_secs} s after the plan was read",
            at * 5,
            peak - now_units
        ),
        _ => println!(
            "the plan read {ahead_secs} s before the match did not rise within the 30 minutes shown: {plan_before:?}"
        ),
    }
    println!("replay of the history, D = 5 min, ratios to reactive HPA: {replay}");
    println!("dashboard (stopped with the demo): http://{}/", trainer.addr);
    println!("not built yet: see the README's Status");
    println!("data directory (removed on exit): {}; total {:.0} s", dir.0.display(), started.elapsed().as_secs_f64());
    if ok != sent {
        let log = std::fs::read_to_string(dir.0.join("wrangler.log")).unwrap_or_default();
        let unusual: Vec<&str> = log.lines().filter(|l| !l.contains(" 200 OK")).take(60).collect();
        eprintln!("first failure: {:?}", tally.first_error.lock().ok().and_then(|f| f.clone()));
        eprintln!("wrangler dev's log, without its 200 lines:\n{}", unusual.join("\n"));
        bail!("{} demo requests were not answered 200", sent - ok);
    }
    drop(worker);
    drop(trainer);
    if ari.is_nan() || ari < 0.8 {
        bail!("profiles recovered the true kinds poorly: adjusted Rand index {ari:.3}");
    }
    Ok(())
}
