//! Real `docker-registry` (CNCF distribution) processes on 127.0.0.1, plain HTTP or TLS, and
//! their request logs ("response completed", JSON, one per request, with its end time and
//! duration), which tell how many requests of each kind a tool made, how long the registry
//! spent on them and how many were in flight at once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};

use crate::client::RegistryClient;
use crate::tls::{Certs, TlsMode};

const INSTALL_HINT: &str = "install it with `sudo apt-get install -y docker-registry`";

/// A registry process serving one storage directory; killed when dropped.
#[derive(Debug)]
pub struct Registry {
    addr: SocketAddr,
    tls: Option<Certs>,
    log: PathBuf,
    child: Child,
}

impl Registry {
    /// Starts a registry storing under `dir/storage` (kept if it exists) and logging to `dir/log`,
    /// over TLS with `certs` unless `mode` is [`TlsMode::Off`].
    pub async fn start(dir: &Path, mode: TlsMode, certs: Option<&Certs>) -> Result<Registry> {
        let tls = match (mode, certs) {
            (TlsMode::Off, _) => None,
            (_, Some(certs)) => Some((mode, certs)),
            (_, None) => bail!("TLS mode {} needs certificates", mode.name()),
        };
        let mut last_error = None;
        // Picking a free port and handing it over is racy; a second try covers the rare loss.
        for _ in 0..3 {
            match Self::try_start(dir, tls).await {
                Ok(registry) => return Ok(registry),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.expect("the loop ran at least once"))
    }

    async fn try_start(dir: &Path, tls: Option<(TlsMode, &Certs)>) -> Result<Registry> {
        std::fs::create_dir_all(dir.join("storage"))
            .with_context(|| format!("creating {}", dir.display()))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let config = dir.join("config.yml");
        std::fs::write(&config, config_yaml(&dir.join("storage"), addr, tls))?;
        let log = dir.join("log");
        let log_file = std::fs::File::create(&log)?;
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting docker-registry: {INSTALL_HINT}"))?;
        let tls = tls.map(|(_, certs)| certs.clone());
        let client = RegistryClient::new(&addr.to_string(), tls.as_ref())?;
        for _ in 0..200 {
            if client.ping().await.is_ok() {
                return Ok(Registry {
                    addr,
                    tls,
                    log,
                    child,
                });
            }
            if let Some(status) = child.try_wait()? {
                let output = std::fs::read_to_string(&log).unwrap_or_default();
                bail!("docker-registry exited with {status}: {output}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        bail!("docker-registry on {addr} did not answer within 5 s")
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:PORT`, as the tools want it.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn client(&self) -> Result<RegistryClient> {
        RegistryClient::new(&self.host(), self.tls.as_ref())
    }

    /// Where the access log stands now; pass it to [`Registry::requests_since`].
    pub fn log_position(&self) -> u64 {
        std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0)
    }

    /// Requests served since `position`: counted by kind, and timed.
    pub fn requests_since(&self, position: u64) -> Result<Requests> {
        let log = std::fs::read(&self.log)?;
        let start = usize::try_from(position)
            .unwrap_or(usize::MAX)
            .min(log.len());
        Ok(Requests::from_log(&String::from_utf8_lossy(&log[start..])))
    }

    /// The CPU time (user + system) the registry process has used so far: what a tool run costs
    /// the registry is the difference across it. Counted in clock ticks (10 ms here).
    pub fn cpu(&self) -> Result<Duration> {
        let pid = self.child.id().context("the registry has exited")?;
        process_cpu(&std::fs::read_to_string(format!("/proc/{pid}/stat"))?)
    }

    /// Stops the process now (dropping does too, without waiting).
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// User + system time from a `/proc/PID/stat` line (fields 14 and 15, in clock ticks). The
/// command name before them is in parentheses and may hold spaces, so fields are counted from
/// its closing one.
fn process_cpu(stat: &str) -> Result<Duration> {
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("no command name in /proc/PID/stat")?
        .1
        .split_whitespace()
        .collect();
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .context("a short /proc/PID/stat")
    };
    // SAFETY: sysconf reads a constant of the system; it has no preconditions.
    let per_sec = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100);
    let total = ticks(11)? + ticks(12)?;
    Ok(Duration::from_secs_f64(total as f64 / per_sec as f64))
}

/// The registry's configuration: info-level JSON logs (a "response completed" line per
/// request), no access log (the JSON lines say more), TLS if asked for.
fn config_yaml(storage: &Path, addr: SocketAddr, tls: Option<(TlsMode, &Certs)>) -> String {
    let mut yaml = format!(
        "version: 0.1\n\
         log:\n  level: info\n  formatter: json\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n  \
         cache:\n    blobdescriptor: inmemory\n  maintenance:\n    uploadpurging:\n      enabled: false\n\
         http:\n  addr: {addr}\n  secret: regmirror-bench\n",
        storage = storage.display(),
    );
    if let Some((mode, certs)) = tls {
        yaml.push_str(&format!(
            "  tls:\n    certificate: {}\n    key: {}\n  http2:\n    disabled: {}\n",
            certs.cert_path.display(),
            certs.key_path.display(),
            mode == TlsMode::H1,
        ));
    }
    yaml
}

/// What a registry served for one tool run.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Requests {
    /// By method and kind, e.g. `"GET blob"` → 40, `"POST mount"` → 3.
    pub counts: BTreeMap<String, u64>,
    /// The sum of the requests' durations as the registry measured them.
    pub server_secs: f64,
    /// The time at least one request was in flight (the union of the requests' intervals):
    /// how long the tool kept this registry busy.
    pub busy_secs: f64,
    /// The most requests in flight at once.
    pub max_in_flight: u64,
    /// Distinct client addresses: the connections that carried at least one request.
    pub connections: u64,
}

/// The fields of a "response completed" log line the harness uses.
#[derive(serde::Deserialize)]
struct LogLine {
    msg: String,
    time: String,
    #[serde(rename = "http.request.method")]
    method: Option<String>,
    #[serde(rename = "http.request.uri")]
    uri: Option<String>,
    #[serde(rename = "http.request.remoteaddr")]
    remote: Option<String>,
    #[serde(rename = "http.response.duration")]
    duration: Option<String>,
}

impl Requests {
    /// Reads the JSON log lines; other lines (and other messages) are skipped.
    fn from_log(text: &str) -> Requests {
        let mut counts = BTreeMap::new();
        let mut intervals = Vec::new();
        let mut remotes = std::collections::BTreeSet::new();
        let mut server_secs = 0.0;
        for line in text.lines() {
            let Ok(entry) = serde_json::from_str::<LogLine>(line) else {
                continue;
            };
            if !entry.msg.starts_with("response completed") {
                continue;
            }
            let (Some(method), Some(uri)) = (entry.method, entry.uri) else {
                continue;
            };
            *counts
                .entry(format!("{method} {}", kind_of(&method, &uri)))
                .or_insert(0) += 1;
            if let Some(remote) = entry.remote {
                remotes.insert(remote);
            }
            let end = time::OffsetDateTime::parse(
                &entry.time,
                &time::format_description::well_known::Rfc3339,
            );
            let duration = entry.duration.as_deref().and_then(go_duration_secs);
            if let (Ok(end), Some(duration)) = (end, duration) {
                let end = (end.unix_timestamp_nanos() as f64) / 1e9;
                server_secs += duration;
                intervals.push((end - duration, end));
            }
        }
        let (busy_secs, max_in_flight) = overlap(&mut intervals);
        Requests {
            counts,
            server_secs,
            busy_secs,
            max_in_flight,
            connections: remotes.len() as u64,
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    #[cfg(test)]
    pub fn get(&self, kind: &str) -> u64 {
        self.counts.get(kind).copied().unwrap_or(0)
    }
}

/// What a request was for: `tags`, `manifest`, `blob`, `upload`, `mount` (a cross-repository
/// blob mount), `ping` (`/v2/`), `other`.
fn kind_of(method: &str, uri: &str) -> &'static str {
    let path = uri.split('?').next().unwrap_or(uri);
    if path.contains("/blobs/uploads/") {
        if method == "POST" && uri.contains("mount=") {
            "mount"
        } else {
            "upload"
        }
    } else if path.contains("/blobs/") {
        "blob"
    } else if path.contains("/manifests/") {
        "manifest"
    } else if path.ends_with("/tags/list") {
        "tags"
    } else if path == "/v2/" || path == "/v2" {
        "ping"
    } else {
        "other"
    }
}

/// A Go `time.Duration` string (`1.5ms`, `350µs`, `2m3.1s`) in seconds.
fn go_duration_secs(text: &str) -> Option<f64> {
    let mut total = 0.0;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "µs" | "us" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += number * scale;
        rest = &rest[unit_len..];
    }
    Some(total)
}

/// The length of the union of `intervals` and the most of them open at one instant.
fn overlap(intervals: &mut [(f64, f64)]) -> (f64, u64) {
    let mut events: Vec<(f64, i64)> = intervals
        .iter()
        .flat_map(|&(start, end)| [(start, 1), (end, -1)])
        .collect();
    // Ends before starts at the same instant: back-to-back requests are not concurrent.
    events.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut open, mut max, mut busy, mut since) = (0i64, 0i64, 0.0, 0.0);
    for (at, step) in events {
        if open == 0 && step > 0 {
            since = at;
        }
        open += step;
        if open == 0 {
            busy += at - since;
        }
        max = max.max(open);
    }
    (busy, max as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(method: &str, uri: &str, remote: &str, end: &str, duration: &str) -> String {
        format!(
            r#"{{"http.request.method":"{method}","http.request.uri":"{uri}","http.request.remoteaddr":"{remote}","http.response.duration":"{duration}","level":"info","msg":"response completed","time":"2026-12-06T03:53:{end}Z"}}"#
        )
    }

    #[test]
    fn log_lines_are_counted_by_method_and_kind_and_timed() {
        let log = [
            r#"{"level":"info","msg":"listening on 127.0.0.1:5999","time":"2026-12-06T03:53:58.6Z"}"#.to_owned(),
            "not json".to_owned(),
            line("GET", "/v2/", "127.0.0.1:1", "59.100", "100ms"),
            line("HEAD", "/v2/a/b/manifests/v1", "127.0.0.1:1", "59.300", "100ms"),
            line("GET", "/v2/a/b/blobs/sha256:00", "127.0.0.1:2", "59.350", "100ms"),
            line("GET", "/v2/a/b/blobs/sha256:01", "127.0.0.1:3", "59.330", "50ms"),
            line("POST", "/v2/a/b/blobs/uploads/", "127.0.0.1:2", "59.500", "1µs"),
            line("POST", "/v2/a/b/blobs/uploads/?mount=sha256:00&from=c/d", "127.0.0.1:2", "59.600", "1µs"),
            line("PUT", "/v2/a/b/blobs/uploads/x?digest=sha256:02", "127.0.0.1:2", "59.700", "1µs"),
            line("GET", "/v2/a/b/tags/list?n=100", "127.0.0.1:2", "59.800", "1µs"),
            line("DELETE", "/v2/a/b/other", "127.0.0.1:2", "59.900", "1µs")
                .replace("response completed", "response completed with error"),
        ]
        .join("\n");
        let requests = Requests::from_log(&log);
        assert_eq!(requests.get("GET ping"), 1);
        assert_eq!(requests.get("HEAD manifest"), 1);
        assert_eq!(requests.get("GET blob"), 2);
        assert_eq!(requests.get("POST upload"), 1);
        assert_eq!(requests.get("POST mount"), 1);
        assert_eq!(requests.get("PUT upload"), 1);
        assert_eq!(requests.get("GET tags"), 1);
        assert_eq!(requests.get("DELETE other"), 1);
        assert_eq!(requests.total(), 9);
        assert_eq!(requests.connections, 3);
        // The manifest HEAD (200–300 ms) and both blob GETs (250–350, 280–330) overlap.
        assert_eq!(requests.max_in_flight, 3);
        // 0–100 ms, then 200–350 ms, then five requests of 1 µs.
        assert!(
            (requests.busy_secs - 0.250).abs() < 1e-3,
            "{}",
            requests.busy_secs
        );
        assert!(
            (requests.server_secs - 0.350).abs() < 1e-3,
            "{}",
            requests.server_secs
        );
    }

    #[test]
    fn process_cpu_is_user_plus_system_time_after_the_command_name() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
        let stat = "4242 (docker reg) S 1 2 3 0 -1 4194304 10 0 0 0 150 50 0 0 20 0 9 0";
        assert_eq!(process_cpu(stat).unwrap(), Duration::from_secs(2));
        assert!(process_cpu("4242 no parentheses").is_err());
        assert!(process_cpu("4242 (short) S 1 2").is_err());
    }

    #[tokio::test]
    async fn a_registry_s_cpu_time_grows_as_it_serves() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::start(dir.path(), TlsMode::Off, None)
            .await
            .unwrap();
        let before = registry.cpu().unwrap();
        let client = registry.client().unwrap();
        for _ in 0..2000 {
            client.ping().await.unwrap();
        }
        assert!(registry.cpu().unwrap() > before, "no CPU time counted");
    }

    #[test]
    fn go_durations_parse() {
        assert_eq!(go_duration_secs("1.5ms"), Some(0.0015));
        assert_eq!(go_duration_secs("2m3s"), Some(123.0));
        assert!((go_duration_secs("350µs").unwrap() - 350e-6).abs() < 1e-12);
        assert_eq!(go_duration_secs("12 parsecs"), None);
    }

    #[test]
    fn config_turns_http2_off_only_for_h1() {
        let certs = Certs {
            ca_dir: "/c/ca".into(),
            ca_pem: String::new(),
            cert_path: "/c/server.pem".into(),
            key_path: "/c/key.pem".into(),
        };
        let addr: SocketAddr = ([127, 0, 0, 1], 5000).into();
        let plain = config_yaml(Path::new("/s"), addr, None);
        assert!(!plain.contains("tls:"));
        let h1 = config_yaml(Path::new("/s"), addr, Some((TlsMode::H1, &certs)));
        assert!(h1.contains("certificate: /c/server.pem") && h1.contains("disabled: true"));
        let h2 = config_yaml(Path::new("/s"), addr, Some((TlsMode::H2, &certs)));
        assert!(h2.contains("disabled: false"));
    }
}
