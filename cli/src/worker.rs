//! `regmirror worker --config regmirror.toml`: the mirroring daemon. It declares the file's
//! mirrors in the state store, then polls for due mirrors and syncs them until SIGINT/SIGTERM.

use std::path::PathBuf;

use clap::Args;

use crate::failure::{CliResult, Failure};
use crate::manage::apply_declared;
use crate::worker_config::WorkerConfig;

#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// The worker's config file (TOML): state store, destination, webhooks, mirrors.
    #[arg(long, value_name = "FILE", default_value = "regmirror.toml")]
    pub config: PathBuf,
}

pub async fn run(args: WorkerArgs) -> CliResult<()> {
    let config = WorkerConfig::load(&args.config)?;
    let store = config.state.open().await?;
    apply_declared(&store, &config.mirrors).await?;
    Err(Failure::failed("the worker loop is not wired in yet"))
}
