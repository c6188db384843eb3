//! `prewarm`: the trainer's command line ([`cli`]).

mod cli;

fn main() -> anyhow::Result<()> {
    cli::run()
}
