//! The `regmirror` command.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use regmirror::TagFilter;

#[derive(Parser, Debug)]
#[command(
    name = "regmirror",
    version,
    about = "Mirror container repositories between registries"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print which of TAGS the patterns select, sorted, one per line.
    Tags {
        /// Tag patterns: a comma-separated list of globs, `regex:`, `semver:` and `!` exclusions.
        #[arg(long, short)]
        patterns: String,
        /// Candidate tags.
        tags: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Tags { patterns, tags } => match TagFilter::parse(&patterns) {
            Ok(filter) => {
                for tag in filter.select(&tags) {
                    println!("{tag}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("regmirror: {e}");
                ExitCode::from(2)
            }
        },
    }
}
