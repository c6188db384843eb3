//! `prewarm`: the trainer's command line. The service and its subcommands land with the trainer issues.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("prewarm trainer: not built yet (see the trainer issues)")
}
