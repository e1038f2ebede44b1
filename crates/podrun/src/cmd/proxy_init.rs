//! Placeholder until this subcommand lands.

use crate::Global;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs the subcommand.
pub fn run(_args: Args, _global: &Global) -> anyhow::Result<u8> {
    anyhow::bail!("this subcommand is not built yet")
}
