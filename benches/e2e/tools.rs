//! Running the two contenders, `regmirror sync` and `skopeo sync --all`, as child processes:
//! wall time, and peak resident memory sampled from `/proc/PID/status`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use tokio::process::Command;

/// One of the two tools being compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Tool {
    Regmirror,
    Skopeo,
}

impl Tool {
    pub fn name(self) -> &'static str {
        match self {
            Tool::Regmirror => "regmirror",
            Tool::Skopeo => "skopeo",
        }
    }
}

/// How long a run took and the most memory it held.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub elapsed: Duration,
    /// `VmHWM`, in KiB; `None` if the process ended before the first sample.
    pub peak_rss_kib: Option<u64>,
}

/// No run of any dataset takes this long unless something hangs.
const RUN_TIMEOUT: Duration = Duration::from_secs(30 * 60);
const RSS_SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// Where the tools are and where their output goes.
#[derive(Debug)]
pub struct Tools {
    pub regmirror: PathBuf,
    pub skopeo: PathBuf,
    /// skopeo's `XDG_DATA_HOME` (its blob-info cache), private to this harness run.
    pub skopeo_data: PathBuf,
    pub logs: PathBuf,
}

impl Tools {
    /// Mirrors `source_host/repo` into `dest_host/mirror/<last component of repo>`.
    pub async fn sync(
        &self,
        tool: Tool,
        source_host: &str,
        repo: &str,
        dest_host: &str,
        log_name: &str,
    ) -> Result<Run> {
        let short = repo.rsplit('/').next().unwrap_or(repo);
        let mut command = match tool {
            Tool::Regmirror => {
                let mut c = Command::new(&self.regmirror);
                c.arg("sync")
                    .arg(format!("{source_host}/{repo}"))
                    .arg("--to")
                    .arg(format!("{dest_host}/mirror/{short}"))
                    .args(["--tags", "*"])
                    .args([
                        "--src-tls-verify=false",
                        "--dest-tls-verify=false",
                        "--json",
                    ]);
                c
            }
            Tool::Skopeo => {
                let mut c = Command::new(&self.skopeo);
                // skopeo puts `SRC/a/b` at `DEST/ns/b`: the same destination as regmirror's.
                c.args(["sync", "--all", "--src", "docker", "--dest", "docker"])
                    .args(["--src-tls-verify=false", "--dest-tls-verify=false"])
                    .arg(format!("{source_host}/{repo}"))
                    .arg(format!("{dest_host}/mirror"))
                    .env("XDG_DATA_HOME", &self.skopeo_data);
                c
            }
        };
        let log_path = self.logs.join(format!("{log_name}.log"));
        run_measured(&mut command, &log_path)
            .await
            .with_context(|| {
                format!(
                    "{} ({log_name}; output in {})",
                    tool.name(),
                    log_path.display()
                )
            })
    }
}

/// Runs `command` to completion with its output in `log`, timing it and sampling its memory.
async fn run_measured(command: &mut Command, log: &Path) -> Result<Run> {
    let log_file = std::fs::File::create(log)?;
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .kill_on_drop(true)
        .spawn()
        .context("starting the tool")?;
    let pid = child.id().context("a just-spawned child has a pid")?;
    let mut peak = None;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status?,
            () = tokio::time::sleep(RSS_SAMPLE_EVERY) => {
                // The high-water mark only grows, so the last sample before exit is the peak
                // give or take the final 10 ms.
                if let Some(kib) = vm_hwm_kib(pid) {
                    peak = Some(kib);
                }
                if started.elapsed() > RUN_TIMEOUT {
                    let _ = child.kill().await;
                    bail!("no result after {RUN_TIMEOUT:?}");
                }
            }
        }
    };
    let elapsed = started.elapsed();
    if !status.success() {
        let output = std::fs::read_to_string(log).unwrap_or_default();
        let tail: String = output
            .lines()
            .rev()
            .take(15)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        bail!("exited with {status}:\n{tail}");
    }
    Ok(Run {
        elapsed,
        peak_rss_kib: peak,
    })
}

/// The process's peak resident set size so far (`VmHWM`), in KiB.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_high_water_mark() {
        let kib = vm_hwm_kib(std::process::id()).expect("Linux has /proc/self/status");
        assert!(kib > 0);
    }
}
