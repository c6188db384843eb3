//! Installs the build and test tools once and reuses them: the wasm32 target, the pinned npm
//! tools, worker-build and wasm-bindgen-cli at the exact version the lockfile pins.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::run::{cmd, step};

/// worker-build must match the `worker` crate's version.
const WORKER_BUILD_VERSION: &str = "0.8.7";
const WASM_TARGET: &str = "wasm32-unknown-unknown";
/// Supply-chain checks in `cargo xtask test`.
const CARGO_DENY_VERSION: &str = "0.20.2";

pub fn ensure_all(root: &Path) -> Result<()> {
    ensure_wasm_target()?;
    ensure_npm_tools(root)?;
    ensure_cargo_tool("worker-build", "worker-build", WORKER_BUILD_VERSION, true)?;
    let bindgen = wasm_bindgen_version(root)?;
    // Without --locked: its lockfile pins a webpki-roots version the registry here lacks.
    ensure_cargo_tool("wasm-bindgen-cli", "wasm-bindgen", &bindgen, false)?;
    ensure_cargo_tool("cargo-deny", "cargo-deny", CARGO_DENY_VERSION, true)?;
    Ok(())
}

/// A benchmark tool from Debian's packages (wrk, goaccess), installed when missing.
pub fn ensure_apt(package: &str) -> Result<()> {
    if Command::new(package).arg("--version").output().is_ok() {
        return Ok(());
    }
    step(&format!("installing {package} (apt-get)"));
    let _ = Command::new("apt-get").args(["update", "-qq"]).status();
    cmd(Command::new("apt-get").args(["install", "-y", "-qq", package]).env("DEBIAN_FRONTEND", "noninteractive"))
}

/// Python packages (the reference baselines, the manifest validators), installed when the
/// `import` statement fails.
pub fn ensure_python_packages(import: &str, packages: &[&str]) -> Result<()> {
    let probe = Command::new("python3").args(["-c", import]).output();
    if probe.is_ok_and(|o| o.status.success()) {
        return Ok(());
    }
    step(&format!("installing {} (pip)", packages.join(", ")));
    cmd(Command::new("python3").args(["-m", "pip", "install", "-q"]).args(packages))
}

fn ensure_wasm_target() -> Result<()> {
    let installed = output(Command::new("rustup").args(["target", "list", "--installed"]))?;
    if !installed.lines().any(|l| l.trim() == WASM_TARGET) {
        step(&format!("installing the {WASM_TARGET} target"));
        cmd(Command::new("rustup").args(["target", "add", WASM_TARGET]))?;
    }
    Ok(())
}

/// `npm ci` when node_modules is missing or older than the lockfile.
fn ensure_npm_tools(root: &Path) -> Result<()> {
    let lock = root.join("package-lock.json");
    let installed = root.join("node_modules/.package-lock.json");
    let stale = match (std::fs::metadata(&lock), std::fs::metadata(&installed)) {
        (Ok(l), Ok(i)) => l.modified()? > i.modified()?,
        (Ok(_), Err(_)) => true,
        (Err(e), _) => return Err(e).context("package-lock.json is missing"),
    };
    if stale || !root.join("node_modules/.bin/wrangler").exists() {
        step("installing the pinned npm tools (npm ci)");
        cmd(Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(root))?;
    }
    Ok(())
}

/// Installs a cargo binary unless the same version is already on PATH.
pub fn ensure_cargo_tool(package: &str, binary: &str, version: &str, locked: bool) -> Result<()> {
    let current = Command::new(binary).arg("--version").output();
    if let Ok(out) = current
        && String::from_utf8_lossy(&out.stdout).split_whitespace().any(|w| w == version)
    {
        return Ok(());
    }
    step(&format!("installing {package} {version} (once; cached in ~/.cargo/bin)"));
    let mut install = Command::new("cargo");
    // Debug builds install in a quarter of the time and produce byte-identical output.
    install.args(["install", package, "--version", version, "--debug", "--force"]);
    if locked {
        install.arg("--locked");
    }
    // A persistent CARGO_TARGET_DIR must not collect tool builds.
    install.env_remove("CARGO_TARGET_DIR");
    cmd(&mut install)
}

/// The wasm-bindgen version in Cargo.lock: wasm-bindgen-cli must match it exactly.
fn wasm_bindgen_version(root: &Path) -> Result<String> {
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).context("reading Cargo.lock")?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "name = \"wasm-bindgen\""
            && let Some(v) = lines.next().and_then(|l| l.trim().strip_prefix("version = \""))
        {
            return Ok(v.trim_end_matches('"').to_owned());
        }
    }
    bail!("Cargo.lock has no wasm-bindgen entry")
}

fn which(binary: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(binary))
        .find(|p| p.is_file())
        .with_context(|| format!("{binary} is not on PATH"))
}

/// Environment for worker-build: local tools, so it downloads nothing.
pub fn worker_env(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    let bin = root.join("node_modules/.bin");
    Ok(vec![
        ("WASM_BINDGEN_BIN".into(), which("wasm-bindgen")?),
        ("WASM_OPT_BIN".into(), bin.join("wasm-opt")),
        ("ESBUILD_BIN".into(), bin.join("esbuild")),
    ])
}

pub fn output(command: &mut Command) -> Result<String> {
    let out = command.output().with_context(|| format!("running {command:?}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
