//! The `regmirror` command: one-shot syncs (`sync`), the mirroring worker (`worker`), mirror
//! management in a state store (`mirror`), tag-pattern checks (`tags`), and the shell
//! completions and manual pages a package installs (`completions`, `man`).
//!
//! Exit status: 0 success, 1 a tag (or the run, or a registry or the store) failed, 2 invalid
//! input — clap's own usage errors exit 2 as well.

mod api;
mod credentials;
mod failure;
mod hint;
mod location;
mod manage;
mod output;
mod packaging;
mod progress;
mod store;
mod summary;
mod sync;
mod worker;
mod worker_config;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use regmirror::TagFilter;

use crate::failure::{CliResult, Failure};

#[derive(Parser, Debug)]
#[command(
    name = "regmirror",
    version,
    about = "Mirror container repositories between registries",
    long_about = "Mirror container repositories between registries (Quay-style repository \
                  mirroring): one-shot with `regmirror sync`, on a schedule with \
                  `regmirror worker`, and mirrors managed with `regmirror mirror`."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Mirror one repository once: copy the tags the patterns select, delete the others.
    Sync(sync::SyncArgs),
    /// Run the mirroring worker: sync the mirrors in the state store on their schedules.
    Worker(worker::WorkerArgs),
    /// Manage the mirrors in a state store.
    Mirror(manage::MirrorArgs),
    /// Print which of TAGS the patterns select, sorted, one per line.
    Tags {
        /// Tag patterns: a comma-separated list of globs, `regex:`, `semver:` and `!` exclusions.
        /// May be repeated.
        #[arg(long, short, required = true)]
        patterns: Vec<String>,
        /// Candidate tags.
        tags: Vec<String>,
    },
    /// Print the shell completion script for SHELL on stdout.
    ///
    /// bash: `regmirror completions bash > /usr/share/bash-completion/completions/regmirror`;
    /// zsh: into a file named `_regmirror` on `$fpath`; fish: into
    /// `~/.config/fish/completions/regmirror.fish`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page regmirror(1) on stdout, or write one page per command into DIR.
    Man {
        /// Write regmirror.1, regmirror-sync.1, ... into this directory (e.g.
        /// /usr/local/share/man/man1) instead of printing regmirror.1.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // A script that asked for JSON reads stdout: a usage error is JSON there too.
            if e.use_stderr() && std::env::args().any(|a| a == "--json") {
                output::print_json(&Failure::invalid(usage_error(&e)).json());
            }
            if let Some(tip) = bool_flag_tip(std::env::args()) {
                eprintln!("regmirror: {tip}");
            }
            e.exit();
        }
    };
    let json = match &cli.command {
        Command::Sync(args) => args.json,
        Command::Mirror(args) => args.json,
        Command::Worker(_)
        | Command::Tags { .. }
        | Command::Completions { .. }
        | Command::Man { .. } => false,
    };
    // Small requests to a far registry take up to 256 connections (HTTP/1.1), and a worker may
    // sync from several such at once: more than the usual soft limit of 1024 open files. It is
    // raised to the hard limit, as Go programs do at start; where that fails, the limit stands.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("regmirror: cannot start the async runtime: {e}");
            return ExitCode::from(failure::EXIT_FAILED);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("regmirror: {}", output::escaped(&failure.to_string()));
            if json {
                output::print_json(&failure.json());
            }
            failure.exit_code()
        }
    }
}

/// `--src-tls-verify false` (a space, not `=`) leaves `false` as a stray argument; say how to
/// write it.
fn bool_flag_tip(args: impl Iterator<Item = String>) -> Option<String> {
    let args: Vec<String> = args.collect();
    args.windows(2).find_map(|pair| {
        let [flag, value] = pair else { return None };
        let is_bool_flag = matches!(flag.as_str(), "--src-tls-verify" | "--dest-tls-verify");
        (is_bool_flag && matches!(value.as_str(), "true" | "false"))
            .then(|| format!("write {flag}={value}, with an equals sign"))
    })
}

/// clap's error as one line: the text before the usage block, without its `error: ` prefix.
fn usage_error(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let words: Vec<&str> = text
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .flat_map(str::split_whitespace)
        .collect();
    let line = words.join(" ");
    line.strip_prefix("error: ").unwrap_or(&line).to_owned()
}

async fn run(cli: Cli) -> CliResult<ExitCode> {
    match cli.command {
        Command::Sync(args) => sync::run(args).await,
        Command::Worker(args) => worker::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Mirror(args) => manage::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Tags { patterns, tags } => {
            let filter =
                TagFilter::new(&patterns).map_err(|e| Failure::from(e).context("--patterns"))?;
            for tag in filter.select(&tags) {
                output::line(tag);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            packaging::completions(shell);
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { dir } => packaging::man(dir.as_deref()).map(|()| ExitCode::SUCCESS),
    }
}
