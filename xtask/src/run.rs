//! The test pipeline and its summary.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::tools;

/// Where the worker tests find their published models (gitignored).
pub const EDGE_FIXTURES: &str = "tests/edge/.fixtures";

/// Optional features the tests (and clippy, and cargo deny) cover too, so that code is checked
/// and the binary the end-to-end tests run is built once.
pub const TEST_FEATURES: &str = "prewarm-trainer/object-store,prewarm-trainer/clickhouse";

/// Announces a step, so no minute passes silently.
pub fn step(what: &str) {
    eprintln!("\n==> {what}");
}

/// Runs a command, inheriting output; fails on a non-zero exit.
pub fn cmd(command: &mut Command) -> Result<()> {
    let status = command.status().with_context(|| format!("starting {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}

/// Passed/failed counts gathered from every test runner.
#[derive(Debug, Default)]
struct Tally {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Tally {
    /// Reads cargo's `test result: ok. 3 passed; 0 failed; 1 ignored; ...` and node's
    /// `# pass 3` / `# fail 0` lines.
    fn read_line(&mut self, line: &str) {
        let number_before = |text: &str, word: &str| -> Option<u64> {
            let mut prev = None;
            for token in text.split([' ', ';', '.']).filter(|t| !t.is_empty()) {
                if token == word {
                    return prev;
                }
                prev = token.parse().ok();
            }
            None
        };
        if let Some(rest) = line.trim().strip_prefix("test result:") {
            self.passed += number_before(rest, "passed").unwrap_or(0);
            self.failed += number_before(rest, "failed").unwrap_or(0);
            self.ignored += number_before(rest, "ignored").unwrap_or(0);
        } else if let Some(n) = line.trim().strip_prefix("# pass ") {
            self.passed += n.trim().parse().unwrap_or(0);
        } else if let Some(n) = line.trim().strip_prefix("# fail ") {
            self.failed += n.trim().parse().unwrap_or(0);
        } else if let Some(n) = line.trim().strip_prefix("# skipped ") {
            self.ignored += n.trim().parse().unwrap_or(0);
        }
    }
}

/// Runs a test command, echoing its stdout and counting its results.
fn counted(command: &mut Command, tally: &mut Tally) -> Result<bool> {
    let mut child = command.stdout(Stdio::piped()).spawn().with_context(|| format!("starting {command:?}"))?;
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = line?;
            println!("{line}");
            tally.read_line(&line);
        }
    }
    Ok(child.wait()?.success())
}

/// Where cargo puts build output (honours CARGO_TARGET_DIR).
pub fn target_dir(root: &Path) -> Result<PathBuf> {
    Ok(match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => root.join("target"),
    })
}

pub fn build_worker(root: &Path, env: &[(String, PathBuf)]) -> Result<()> {
    step("building the edge worker (wasm32, size-tuned release)");
    let mut build = Command::new("worker-build");
    build.args(["--profile", "wasm-release"]).current_dir(root.join("edge"));
    for (k, v) in env {
        build.env(k, v);
    }
    cmd(&mut build)?;
    let wasm = root.join("edge/build/index_bg.wasm");
    // worker-build keeps the names section (function names for stack traces): 10 % of the
    // module, and Cloudflare counts it against the size limit. Panics are reported by message.
    let wasm_opt =
        env.iter().find(|(k, _)| k == "WASM_OPT_BIN").map_or_else(|| PathBuf::from("wasm-opt"), |(_, v)| v.clone());
    let mut strip = Command::new(wasm_opt);
    strip.arg(&wasm).args(["--strip-debug", "--strip-producers", "-o"]).arg(&wasm);
    // The features worker-build enables, so that nothing newer than workerd supports is written.
    for feature in [
        "mutable-globals",
        "sign-ext",
        "nontrapping-float-to-int",
        "bulk-memory",
        "multivalue",
        "reference-types",
        "exception-handling",
    ] {
        strip.arg(format!("--enable-{feature}"));
    }
    cmd(&mut strip)?;
    let size = std::fs::metadata(&wasm).with_context(|| format!("{} was not built", wasm.display()))?.len();
    eprintln!("worker wasm: {} KiB", size / 1024);
    Ok(())
}

pub fn test(root: &Path) -> Result<()> {
    step("installing what is missing");
    tools::ensure_all(root)?;
    // The dashboard test opens the page in a real browser.
    tools::ensure_apt("chromium")?;
    // deploy/ is checked by the ecosystem's tools: promtool (Debian's prometheus), kubectl's
    // kustomize, and the schema validators from PyPI.
    tools::ensure_apt("prometheus")?;
    tools::ensure_apt("kubectl")?;
    // The ClickHouse event store is tested against a real server: Debian's, started by the
    // tests themselves as a plain process.
    tools::ensure_apt("clickhouse-server")?;
    tools::ensure_python_packages(
        "import yaml, kubernetes_validate, check_jsonschema",
        &["pyyaml", "kubernetes-validate", "check-jsonschema"],
    )?;
    // The API fuzzing run against the live trainer (tests/tests/trainer_openapi.rs), pinned so
    // a run is repeatable.
    tools::ensure_python_packages(
        "import sys, schemathesis; sys.exit(schemathesis.__version__ != '4.32.5')",
        &["schemathesis==4.32.5"],
    )?;
    let env = tools::worker_env(root)?;

    step("module imports: no cycle in shared, trainer or edge");
    crate::modules::check(root)?;
    step("cargo fmt --check");
    cmd(Command::new("cargo").args(["fmt", "--all", "--", "--check"]).current_dir(root))?;
    step("cargo clippy (native crates)");
    cmd(Command::new("cargo")
        .args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--features",
            TEST_FEATURES,
            "--",
            "-D",
            "warnings",
        ])
        .current_dir(root))?;
    step("cargo clippy (edge, wasm32)");
    cmd(Command::new("cargo")
        .args([
            "clippy",
            "-p",
            "prewarm-edge",
            "--target",
            "wasm32-unknown-unknown",
            "--locked",
            "--",
            "-D",
            "warnings",
        ])
        .current_dir(root))?;
    step("shared builds for wasm32 without OS, randomness or heavy crates");
    cmd(Command::new("cargo")
        .args(["build", "-p", "prewarm-shared", "--target", "wasm32-unknown-unknown", "--release", "--locked"])
        .current_dir(root))?;
    check_shared_tree(root)?;
    step("cargo deny check licenses bans sources (deny.toml), and no heavy crate twice");
    cmd(Command::new("cargo")
        .args(["deny", "--log-level", "error", "--features", TEST_FEATURES, "check", "licenses", "bans", "sources"])
        .current_dir(root))?;
    check_heavy_duplicates(root)?;

    build_worker(root, &env)?;
    step("wrangler deploy --dry-run (the worker bundles for Cloudflare)");
    cmd(Command::new(root.join("node_modules/.bin/wrangler"))
        .args(["deploy", "--dry-run", "--outdir"])
        .arg(std::env::temp_dir().join("prewarm-dry-run"))
        .env("CI", "true")
        .env("WRANGLER_SEND_METRICS", "false")
        .current_dir(root))?;

    let mut tally = Tally::default();
    let mut ok = true;
    step(
        "cargo test (unit, integration, doc and end-to-end tests, with those that need Node, wrangler, Chromium or promtool)",
    );
    ok &= counted(
        Command::new("cargo")
            .args([
                "test",
                "--workspace",
                "--no-fail-fast",
                "--locked",
                "--features",
                TEST_FEATURES,
                "--",
                "--include-ignored",
            ])
            .current_dir(root),
        &mut tally,
    )?;
    step("the library example (trainer/examples/plan.rs) runs");
    cmd(Command::new("cargo")
        .args(["run", "--locked", "-q", "-p", "prewarm-trainer", "--example", "plan"])
        .current_dir(root))?;
    let node_tests = root.join("tests/edge");
    if node_tests.is_dir() {
        step("worker tests under workerd (node --test + Miniflare)");
        crate::fixtures::write(&root.join(EDGE_FIXTURES))?;
        ok &= counted(
            Command::new("node").args(["--test", "--test-reporter=tap"]).arg(&node_tests).current_dir(root),
            &mut tally,
        )?;
    }
    step("a short demo, end to end (cargo xtask demo --duration 10)");
    match crate::demo::demo(root, std::time::Duration::from_secs(10)) {
        Ok(()) => {
            println!("demo: ok");
            tally.passed += 1;
        }
        Err(e) => {
            println!("demo: FAILED: {e:#}");
            tally.failed += 1;
            ok = false;
        }
    }
    println!("\nsummary: {} passed, {} failed, {} skipped", tally.passed, tally.failed, tally.ignored);
    println!("{} passed, {} failed", tally.passed, tally.failed);
    if !ok || tally.failed > 0 {
        bail!("tests failed");
    }
    if tally.passed == 0 {
        bail!("no test ran");
    }
    Ok(())
}

/// The contract crate must stay free of what the edge cannot or should not carry.
fn check_shared_tree(root: &Path) -> Result<()> {
    let out = Command::new("cargo")
        .args([
            "tree",
            "-p",
            "prewarm-shared",
            "--target",
            "wasm32-unknown-unknown",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .current_dir(root)
        .output()?;
    let tree = String::from_utf8_lossy(&out.stdout);
    let forbidden = ["getrandom", "rand ", "rand_core", "ndarray", "linfa", "bincode"];
    let found: Vec<&str> = forbidden.iter().copied().filter(|f| tree.lines().any(|l| l.starts_with(f))).collect();
    if !found.is_empty() {
        bail!("prewarm-shared depends on {found:?} for wasm32");
    }
    Ok(())
}

/// Two versions of a heavy crate double build time and binary size: a dependency update that
/// does that fails here instead of going unnoticed (light duplicates such as `syn` are only
/// warned about by cargo deny).
fn check_heavy_duplicates(root: &Path) -> Result<()> {
    let out = Command::new("cargo")
        .args(["tree", "--workspace", "--duplicates", "-e", "normal", "--target", "all", "--prefix", "none"])
        .args(["--format", "{p}"])
        .current_dir(root)
        .output()?;
    let heavy = [
        "ndarray",
        "linfa",
        "augurs",
        "tokio",
        "axum",
        "hyper",
        "rusqlite",
        "rustls",
        "ring",
        "worker",
        "wasm-bindgen",
        "serde_json",
        "postcard",
    ];
    let tree = String::from_utf8_lossy(&out.stdout);
    // Each duplicated crate heads a block (then the crates that pull it in).
    let twice: Vec<&str> = tree
        .split("\n\n")
        .filter_map(|block| block.lines().next()?.split_whitespace().next())
        .filter(|name| heavy.iter().any(|h| name == h || name.starts_with(&format!("{h}-"))))
        .collect();
    if !twice.is_empty() {
        bail!("heavy crates in two versions: {twice:?} (cargo tree --duplicates)");
    }
    Ok(())
}

pub fn bench(root: &Path) -> Result<()> {
    step("benchmarks: shared (assignment, state, decode)");
    cmd(Command::new("cargo").args(["bench", "-p", "prewarm-shared", "--bench", "shared"]).current_dir(root))?;

    step("benchmarks: trainer ingest and import against their baselines (trainer/benches/ingest)");
    tools::ensure_apt("goaccess")?;
    let bench = |name: &str, args: &[&std::ffi::OsStr]| {
        cmd(Command::new("cargo")
            .args(["bench", "--locked", "-p", "prewarm-trainer", "--bench", name, "--"])
            .args(args)
            .current_dir(root))
    };
    let log = root.join("testdata/apache_logs/access.log.gz");
    bench("ingest", &["--log".as_ref(), log.as_os_str()])?;

    step("benchmark: training's peak memory on 10M events vs loading them (trainer/benches/train_memory.rs)");
    bench("train_memory", &[])?;

    step("benchmarks: ingest into ClickHouse vs the raw insert loop; training memory on 10M events from ClickHouse");
    tools::ensure_apt("clickhouse-server")?;
    let clickhouse_bench = |name: &str| {
        cmd(Command::new("cargo")
            .args(["bench", "--locked", "-p", "prewarm-trainer", "--features", "clickhouse", "--bench", name])
            .args(["--", "--clickhouse"])
            .current_dir(root))
    };
    clickhouse_bench("ingest")?;
    clickhouse_bench("train_memory")?;

    step("benchmark: k-means on the reference data set (trainer/benches/blobs.py) vs scikit-learn");
    tools::ensure_python_packages("import numpy, sklearn", &["numpy", "scikit-learn"])?;
    let blobs = std::env::temp_dir().join("prewarm-blobs");
    let data = blobs.join("blobs_1m_16.f64");
    if !data.exists() {
        cmd(Command::new("python3").arg(root.join("trainer/benches/blobs.py")).arg(&blobs))?;
    }
    bench("kmeans", &[data.as_os_str()])?;
    cmd(Command::new("python3").arg(root.join("trainer/benches/sklearn_kmeans.py")).arg(&data))?;

    tools::ensure_all(root)?;
    tools::ensure_apt("wrk")?;
    build_worker(root, &tools::worker_env(root)?)?;
    let wasm = std::fs::read(root.join("edge/build/index_bg.wasm"))?;
    let gzip = Command::new("gzip").arg("-9c").arg(root.join("edge/build/index_bg.wasm")).output()?.stdout.len();
    println!("\nworker wasm: {} KiB raw, {} KiB gzip (target <= 250 KiB gzip)", wasm.len() / 1024, gzip / 1024);
    crate::fixtures::write(&root.join(EDGE_FIXTURES))?;
    step("benchmark: requests/s through the prewarm worker vs a plain pass-through worker (workerd, wrk)");
    cmd(Command::new("node").arg("edge/bench/throughput.mjs").current_dir(root))
}
