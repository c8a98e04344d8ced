//! What a package installs beside the binary: shell completion scripts and manual pages. Both
//! are generated from the parser's own clap definition, so they cannot drift from the options.

use std::path::Path;

use clap::CommandFactory as _;
use clap_complete::Shell;

use crate::Cli;
use crate::failure::{CliResult, Failure};
use crate::output;

/// Print the completion script for `shell` on stdout.
pub fn completions(shell: Shell) {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "regmirror", &mut script);
    print(&script);
}

/// Print the `regmirror(1)` page on stdout, or with `dir` write one page per command into it
/// (`regmirror.1`, `regmirror-sync.1`, `regmirror-mirror-add.1`, ...).
pub fn man(dir: Option<&Path>) -> CliResult<()> {
    let command = Cli::command();
    match dir {
        Some(dir) => clap_mangen::generate_to(command, dir).map_err(|e| {
            Failure::failed(format!(
                "cannot write the manual pages into {}: {e}",
                dir.display()
            ))
        }),
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command)
                .render(&mut page)
                .map_err(|e| Failure::failed(format!("cannot render the manual page: {e}")))?;
            print(&page);
            Ok(())
        }
    }
}

/// Generated text on stdout through [`output::line`] (which ends a closed pipe quietly).
fn print(text: &[u8]) {
    let text = String::from_utf8_lossy(text);
    output::line(text.strip_suffix('\n').unwrap_or(&text));
}
