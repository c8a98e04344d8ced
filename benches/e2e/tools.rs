//! Running the two contenders, `regmirror sync` and `skopeo sync --all`, as child processes:
//! wall time, CPU time as the kernel reports it when the process is reaped (`wait4`'s
//! `rusage`), and peak resident memory sampled from `/proc/PID/status` (`ru_maxrss` will not
//! do: Linux carries the parent's high-water mark across fork and exec into it).

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

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

/// How long a run took, the most memory it held and the CPU it used.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub elapsed: Duration,
    /// `VmHWM`, in KiB (0 if the process ended before the first sample).
    pub peak_rss_kib: u64,
    /// User plus system CPU time (`ru_utime + ru_stime`).
    pub cpu: Duration,
}

/// No run of any dataset takes this long unless something hangs.
const RUN_TIMEOUT: Duration = Duration::from_secs(60 * 60);
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
    /// Mirrors `source_host/repo` into `dest_host/mirror/<last component of repo>`; both
    /// registries speak TLS under the CA in `ca_dir` if given, else plain HTTP.
    pub async fn sync(
        &self,
        tool: Tool,
        source_host: &str,
        repo: &str,
        dest_host: &str,
        ca_dir: Option<&Path>,
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
                    .args(["--tags", "*", "--json"])
                    .args(tls_args(ca_dir));
                c
            }
            Tool::Skopeo => {
                let mut c = Command::new(&self.skopeo);
                // skopeo puts `SRC/a/b` at `DEST/ns/b`: the same destination as regmirror's.
                c.args(["sync", "--all", "--src", "docker", "--dest", "docker"])
                    .args(tls_args(ca_dir))
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

/// The flags both tools take for the registries' transport: trust the CA (`ca.crt` in a
/// directory, as docker's `certs.d`), or allow plain HTTP.
fn tls_args(ca_dir: Option<&Path>) -> Vec<String> {
    match ca_dir {
        Some(dir) => vec![
            format!("--src-cert-dir={}", dir.display()),
            format!("--dest-cert-dir={}", dir.display()),
        ],
        None => vec![
            "--src-tls-verify=false".to_owned(),
            "--dest-tls-verify=false".to_owned(),
        ],
    }
}

/// Runs `command` to completion with its output in `log`: wall time, peak RSS and CPU time.
async fn run_measured(command: &mut Command, log: &Path) -> Result<Run> {
    let log_file = std::fs::File::create(log)?;
    let started = Instant::now();
    let child = command
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .spawn()
        .context("starting the tool")?;
    let pid = libc::pid_t::try_from(child.id()).context("a pid fits pid_t")?;
    // Reaped here, not through `child`, to get its resource usage.
    let mut waiter = tokio::task::spawn_blocking(move || {
        wait_with_usage(pid).map(|(status, usage)| (status, usage, started.elapsed()))
    });
    let mut peak = 0;
    let (status, usage, elapsed) = loop {
        tokio::select! {
            joined = &mut waiter => break joined.context("the waiting thread")??,
            () = tokio::time::sleep(RSS_SAMPLE_EVERY) => {
                // The high-water mark only grows, so the last sample before exit is the peak
                // give or take the final 10 ms.
                if let Some(kib) = vm_hwm_kib(pid) {
                    peak = kib;
                }
                if started.elapsed() > RUN_TIMEOUT {
                    // SAFETY: kill(2) with a pid this harness spawned and has not reaped yet.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    bail!("no result after {RUN_TIMEOUT:?}");
                }
            }
        }
    };
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
        cpu: timeval(usage.ru_utime) + timeval(usage.ru_stime),
    })
}

/// Waits for the child `pid` to exit and reaps it: its status and resource usage.
fn wait_with_usage(pid: libc::pid_t) -> std::io::Result<(ExitStatus, libc::rusage)> {
    let mut status = 0;
    // SAFETY: rusage is plain data; all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: both pointers are to live locals of the right types.
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if reaped == pid {
            return Ok((ExitStatus::from_raw(status), usage));
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// The CPU time (user + system) this process (the harness: its proxies) has used so far.
pub fn own_cpu() -> Duration {
    // SAFETY: an all-zero rusage is a valid value for getrusage to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage; RUSAGE_SELF needs nothing else.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    timeval(usage.ru_utime) + timeval(usage.ru_stime)
}

/// The process's peak resident set size so far (`VmHWM`), in KiB.
fn vm_hwm_kib(pid: libc::pid_t) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

fn timeval(t: libc::timeval) -> Duration {
    Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
        + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_child_s_cpu_time_and_peak_memory_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        // A shell that spins for a while, then exits. The harness holds 64 MiB meanwhile: the
        // child's peak must not include the parent's.
        let ballast = vec![1u8; 64 << 20];
        let run = run_measured(
            Command::new("sh").args(["-c", "i=0; while [ $i -lt 50000 ]; do i=$((i+1)); done"]),
            &dir.path().join("log"),
        )
        .await
        .unwrap();
        assert!(run.cpu > Duration::from_millis(10), "{run:?}");
        assert!(
            run.cpu <= run.elapsed + Duration::from_millis(20),
            "{run:?}"
        );
        assert!(run.peak_rss_kib > 0, "{run:?}");
        assert!(run.peak_rss_kib < 32 << 10, "{run:?}");
        drop(ballast);
        let failed = run_measured(
            Command::new("sh").args(["-c", "echo oops; exit 3"]),
            &dir.path().join("log2"),
        )
        .await
        .unwrap_err();
        assert!(format!("{failed:#}").contains("oops"), "{failed:#}");
    }
}
