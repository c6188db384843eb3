//! Developer commands: `cargo xtask test`, `cargo xtask build-worker`, `cargo xtask bench`,
//! `cargo xtask fuzz`, `cargo xtask demo`. Each installs what it needs first, so a fresh machine needs nothing else.

mod demo;
mod fixtures;
mod fuzz;
mod gen_keda;
mod modules;
mod run;
mod tools;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  test           install what is missing, then fmt, clippy, the worker build, every test
  build-worker   build the edge worker (wasm32, release) into edge/build
  bench          run the benchmarks and print their figures
  edge-fixtures  write the published models the worker tests load (tests/edge/.fixtures)
  modules        the import graph between each crate's top-level modules; fails on a cycle
  gen-keda       regenerate the KEDA scaler's gRPC code from trainer/proto (protoc, tonic)
  fuzz [SECONDS [TARGET...]]
                 every (or the named) cargo-fuzz target for SECONDS each (default 60; nightly)
  demo [--duration SECONDS]
                 the whole loop on this machine: history, profiles, a published model, a real
                 worker under live traffic with a surge, and its signals at the trainer
";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root()?;
    match args.first().map(String::as_str) {
        Some("test") => run::test(&root),
        Some("build-worker") => {
            tools::ensure_all(&root)?;
            run::build_worker(&root, &tools::worker_env(&root)?)
        }
        Some("bench") => run::bench(&root),
        Some("edge-fixtures") => fixtures::write(&root.join(run::EDGE_FIXTURES)),
        Some("modules") => modules::check(&root),
        Some("gen-keda") => gen_keda::gen_keda(&root),
        Some("fuzz") => {
            let seconds = args.get(1).map(|s| s.parse()).transpose().context("fuzz takes seconds")?.unwrap_or(60);
            fuzz::fuzz(&root, seconds, &args[2.min(args.len())..])
        }
        Some("demo") => {
            let seconds = match args.get(1).map(String::as_str) {
                Some("--duration") => args.get(2).and_then(|s| s.parse().ok()).context("--duration takes seconds")?,
                _ => 60,
            };
            demo::demo(&root, std::time::Duration::from_secs(seconds))
        }
        Some("-h" | "--help" | "help") | None => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown command {other:?}\n{USAGE}"),
    }
}

/// The workspace root: xtask's manifest directory's parent.
fn workspace_root() -> Result<PathBuf> {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").context("run this through `cargo xtask`")?;
    PathBuf::from(manifest).parent().map(PathBuf::from).context("xtask has no parent directory")
}
