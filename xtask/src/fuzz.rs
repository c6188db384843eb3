//! `cargo xtask fuzz [SECONDS]`: every cargo-fuzz target for SECONDS each (default 60), from a
//! seed corpus of real inputs, and a table of executions and crashes. Needs a nightly toolchain
//! (libFuzzer's sanitizer flags); installs cargo-fuzz when missing.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use prewarm_shared::artifact::ModelVersion;
use prewarm_shared::signals::{DemandCount, PrewarmReason, PrewarmRequest, SampledState, SignalBatch, UserHash};
use prewarm_shared::state::{BehaviourState, CookieKey};
use prewarm_shared::{ProfileId, UnixSeconds};

use crate::run::step;

pub const TARGETS: [&str; 8] = [
    "artifact_decode",
    "state_cookie",
    "access_log_line",
    "event_ndjson",
    "signal_batch",
    "user_agent",
    "wire_fields",
    "log_format",
];

pub fn fuzz(root: &Path, seconds: u64, only: &[String]) -> Result<()> {
    let targets: Vec<&'static str> =
        TARGETS.into_iter().filter(|t| only.is_empty() || only.iter().any(|o| o == t)).collect();
    if targets.is_empty() {
        bail!("no such fuzz target among {only:?}; targets: {}", TARGETS.join(", "));
    }
    let toolchains =
        String::from_utf8_lossy(&Command::new("rustup").args(["toolchain", "list"]).output()?.stdout).into_owned();
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        bail!("cargo fuzz needs a nightly toolchain (`rustup toolchain install nightly`); none is installed");
    }
    crate::tools::ensure_cargo_tool("cargo-fuzz", "cargo-fuzz", "0.13.2", true)?;
    step("writing the seed corpus (golden artifacts, real access-log lines, events, signals)");
    seed(root)?;
    step("building the fuzz targets (nightly, sanitizers; fuzz/target)");
    crate::run::cmd(
        Command::new("cargo").args(["+nightly", "fuzz", "build"]).current_dir(root).env_remove("CARGO_TARGET_DIR"),
    )?;
    // One libFuzzer process per core: two targets at a time on this machine kind.
    let parallel = std::thread::available_parallelism().map_or(1, usize::from).max(1);
    let mut results = Vec::new();
    for chunk in targets.chunks(parallel) {
        step(&format!("fuzzing {} for {seconds} s", chunk.join(", ")));
        let runs: Vec<_> = chunk
            .iter()
            .map(|&target| {
                let root = root.to_path_buf();
                std::thread::spawn(move || run_target(&root, target, seconds))
            })
            .collect();
        for run in runs {
            results.push(run.join().map_err(|_| anyhow::anyhow!("a fuzz thread panicked"))??);
        }
    }
    println!("\n{:<16} {:>8} {:>14} {:>10}  result", "target", "seconds", "executions", "exec/s");
    for (target, executions, ok, crash) in &results {
        println!(
            "{target:<16} {seconds:>8} {executions:>14} {:>10}  {}",
            executions / seconds.max(1),
            if *ok { "no crash".to_owned() } else { crash.clone().unwrap_or_else(|| "failed".into()) }
        );
    }
    if results.iter().any(|r| !r.2) {
        bail!("a fuzz target crashed: fix it and keep its input as a regression test");
    }
    Ok(())
}

/// Longest input: a region blob needs room (the golden one is 11 KB); text inputs stay short so
/// a growing corpus of long inputs does not slow every execution (event_ndjson: 4.7k → 17k exec/s).
fn max_len(target: &str) -> usize {
    if target == "artifact_decode" { 16_384 } else { 1_024 }
}

/// One target: (name, executions, finished without a crash, the crash input's path).
fn run_target(root: &Path, target: &'static str, seconds: u64) -> Result<(&'static str, u64, bool, Option<String>)> {
    let corpus = root.join("fuzz/corpus").join(target);
    let mut child = Command::new("cargo")
        .args(["+nightly", "fuzz", "run", target])
        .arg(&corpus)
        .args([
            "--",
            &format!("-max_total_time={seconds}"),
            &format!("-max_len={}", max_len(target)),
            "-print_final_stats=1",
        ])
        .current_dir(root)
        // Sanitizer builds stay in fuzz/target, away from a shared CARGO_TARGET_DIR.
        .env_remove("CARGO_TARGET_DIR")
        .stderr(Stdio::piped())
        .spawn()
        .context("starting cargo fuzz")?;
    let mut log = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        stderr.read_to_string(&mut log)?;
    }
    let ok = child.wait()?.success();
    let stat =
        |name: &str| log.lines().find_map(|l| l.strip_prefix(&format!("stat::{name}:"))?.trim().parse::<u64>().ok());
    let executions = stat("number_of_executed_units").unwrap_or(0);
    let crash = log.lines().find(|l| l.contains("Test unit written to")).map(str::to_owned);
    if !ok {
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        eprintln!("{target}:\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
    }
    Ok((target, executions, ok, crash))
}

fn write_seeds(root: &Path, target: &str, seeds: &[Vec<u8>]) -> Result<()> {
    let dir = root.join("fuzz/corpus").join(target);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for (i, seed) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:04}")), seed)?;
    }
    Ok(())
}

fn seed(root: &Path) -> Result<()> {
    let fixtures = root.join("shared/tests/fixtures");
    let artifacts: Vec<Vec<u8>> = ["pointer.pwrm", "region-eu.pwrm"]
        .iter()
        .map(|f| std::fs::read(fixtures.join(f)))
        .collect::<Result<_, _>>()
        .context("reading the golden artifacts")?;
    write_seeds(root, "artifact_decode", &artifacts)?;

    // Cookies signed with the key the target checks, so mutations start from valid ones.
    let key = CookieKey::new(1, b"fuzz-cookie-secret".to_vec());
    let mut cookies = vec![std::fs::read(fixtures.join("state-cookie.txt"))?];
    cookies.push(
        BehaviourState::new(UnixSeconds(1_700_000_000))
            .to_cookie(&key, "0123456789abcdef0123456789abcdef")
            .into_bytes(),
    );
    write_seeds(root, "state_cookie", &cookies)?;

    let log = root.join("testdata/apache_logs/access.log.gz");
    let mut lines = Vec::new();
    if let Ok(file) = std::fs::File::open(&log) {
        let mut text = String::new();
        gunzip_to_string(file, &mut text)?;
        lines = text.lines().take(400).map(str::to_owned).collect();
    }
    if lines.is_empty() {
        lines.push(r#"203.0.113.9 - - [17/May/2015:10:05:03 +0000] "GET /index.html HTTP/1.1" 200 512 "-" "Mozilla/5.0 (iPhone) Mobile""#.into());
    }
    write_seeds(root, "access_log_line", &lines.iter().map(|l| l.clone().into_bytes()).collect::<Vec<_>>())?;
    let agents: Vec<Vec<u8>> = lines
        .iter()
        .filter_map(|l| l.rsplit('"').nth(1))
        .map(|ua| format!("{ua}\n/watch/1\nvideo/mp4").into_bytes())
        .collect();
    write_seeds(root, "user_agent", &agents)?;

    let events: Vec<Vec<u8>> = (0..12)
        .map(|i| {
            format!(
                r#"{{"time":{},"user":"{}","region":"eu","path":"/api/items/{i}","content_type":"application/json","user_agent":"Mozilla/5.0 (Windows NT 10.0)","status":200,"bytes":{},"duration_ms":{},"rtt_ms":30,"cpu_ms":1.5,"memory_mb_s":0.2}}
{{"time":"2026-11-28T10:00:0{}Z","user":"{}","region":"us","route":"video","device":"mobile","status":206,"bytes":1000,"duration_ms":4}}"#,
                1_700_000_000 + i,
                "ab".repeat(32),
                100 * i,
                i,
                i % 10,
                "cd".repeat(32)
            )
            .into_bytes()
        })
        .collect();
    let mut events = events;
    // A regression input: a multi-byte character in a time offset once panicked the parser.
    events.push(
        format!(r#"{{"time":"2023-11-14T22:13:20+1€0","user":"{}","region":"eu","path":"/","status":200,"bytes":1,"duration_ms":1}}"#, "ab".repeat(32))
            .into_bytes(),
    );
    write_seeds(root, "event_ndjson", &events)?;
    // Structure-aware: `arbitrary` builds its inputs from raw bytes; random ones are a start.
    let raw: Vec<Vec<u8>> = (0u8..16).map(|i| (0..256u32).map(|j| (j as u8).wrapping_mul(i | 1)).collect()).collect();
    write_seeds(root, "wire_fields", &raw)?;

    let mut batch = SignalBatch::new(UnixSeconds(1_800_000_000), Some(ModelVersion(3)));
    batch.batch_id = 42;
    batch.demand.push(DemandCount {
        region: "eu".into(),
        profile: ProfileId(1),
        minute: 30_000_000,
        requests: 9,
        bytes: 100,
    });
    batch.prewarm.push(PrewarmRequest {
        region: "eu".into(),
        profile: ProfileId(1),
        minute: 30_000_000,
        observed: 50.0,
        forecast_upper: 10.0,
        reason: PrewarmReason::AboveBand,
    });
    batch.states.push(SampledState {
        user: UserHash::derive(b"salt", b"id"),
        region: "eu".into(),
        profile: ProfileId(2),
        at: UnixSeconds(1_800_000_000),
        features: [0.5; prewarm_shared::FEATURE_DIM],
    });
    let signed = [b"1800000000|0000\n".to_vec(), batch.to_json()].concat();
    write_seeds(root, "signal_batch", &[batch.to_json(), SignalBatch::new(UnixSeconds(0), None).to_json(), signed])
}

/// `gzip -dc`: the one gzip reader every machine has, so xtask needs no compression crate.
fn gunzip_to_string(file: std::fs::File, out: &mut String) -> Result<()> {
    let mut bytes = Vec::new();
    let mut gunzip = Command::new("gzip").args(["-dc"]).stdin(file).stdout(Stdio::piped()).spawn()?;
    if let Some(mut stdout) = gunzip.stdout.take() {
        stdout.read_to_end(&mut bytes)?;
    }
    gunzip.wait()?;
    *out = String::from_utf8_lossy(&bytes).into_owned();
    Ok(())
}
