//! Real `docker-registry` (CNCF distribution) processes on 127.0.0.1, and their access logs,
//! which tell how many requests of each kind a tool made.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};

use crate::client::RegistryClient;

const INSTALL_HINT: &str = "install it with `sudo apt-get install -y docker-registry`";

/// A registry process serving one storage directory; killed when dropped.
#[derive(Debug)]
pub struct Registry {
    addr: SocketAddr,
    log: PathBuf,
    child: Child,
}

impl Registry {
    /// Starts a registry storing under `dir/storage` (kept if it exists) and logging to `dir/log`.
    pub async fn start(dir: &Path) -> Result<Registry> {
        let mut last_error = None;
        // Picking a free port and handing it over is racy; a second try covers the rare loss.
        for _ in 0..3 {
            match Self::try_start(dir).await {
                Ok(registry) => return Ok(registry),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.expect("the loop ran at least once"))
    }

    async fn try_start(dir: &Path) -> Result<Registry> {
        std::fs::create_dir_all(dir.join("storage"))
            .with_context(|| format!("creating {}", dir.display()))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\n\
                 log:\n  level: warn\n  formatter: text\n\
                 storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n  \
                 cache:\n    blobdescriptor: inmemory\n  maintenance:\n    uploadpurging:\n      enabled: false\n\
                 http:\n  addr: {addr}\n  secret: regmirror-bench\n",
                storage = dir.join("storage").display(),
            ),
        )?;
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
        let client = RegistryClient::new(&addr.to_string())?;
        for _ in 0..200 {
            if client.ping().await.is_ok() {
                return Ok(Registry { addr, log, child });
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
        RegistryClient::new(&self.host())
    }

    /// Where the access log stands now; pass it to [`Registry::requests_since`].
    pub fn log_position(&self) -> u64 {
        std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0)
    }

    /// Requests served since `position`, counted by kind.
    pub fn requests_since(&self, position: u64) -> Result<Requests> {
        let log = std::fs::read(&self.log)?;
        let start = usize::try_from(position)
            .unwrap_or(usize::MAX)
            .min(log.len());
        Ok(Requests::from_access_log(&String::from_utf8_lossy(
            &log[start..],
        )))
    }

    /// Stops the process now (dropping does too, without waiting).
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Requests by kind, e.g. `"GET blob"` → 40.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Requests(pub BTreeMap<String, u64>);

impl Requests {
    /// Reads the combined-format access log lines:
    /// `127.0.0.1 - - [date] "GET /v2/repo/blobs/sha256:… HTTP/1.1" 200 …`.
    fn from_access_log(text: &str) -> Requests {
        let mut counts = BTreeMap::new();
        for line in text.lines() {
            let Some((_, request)) = line.split_once("] \"") else {
                continue;
            };
            let mut parts = request.split(' ');
            let (Some(method), Some(uri)) = (parts.next(), parts.next()) else {
                continue;
            };
            let kind = if uri.contains("/blobs/uploads/") {
                "upload"
            } else if uri.contains("/blobs/") {
                "blob"
            } else if uri.contains("/manifests/") {
                "manifest"
            } else if uri.contains("/tags/list") {
                "tags"
            } else {
                "other"
            };
            *counts.entry(format!("{method} {kind}")).or_insert(0) += 1;
        }
        Requests(counts)
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    pub fn get(&self, kind: &str) -> u64 {
        self.0.get(kind).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_log_lines_are_counted_by_method_and_kind() {
        let log = "\
time=\"x\" level=warning msg=\"something\"
127.0.0.1 - - [27/Nov/2026:08:42:28 +0000] \"GET /v2/ HTTP/1.1\" 200 2 \"\" \"curl\"
127.0.0.1 - - [27/Nov/2026:08:42:28 +0000] \"HEAD /v2/a/b/manifests/v1 HTTP/1.1\" 200 0 \"\" \"x\"
127.0.0.1 - - [27/Nov/2026:08:42:28 +0000] \"GET /v2/a/b/blobs/sha256:00 HTTP/1.1\" 200 9 \"\" \"x\"
127.0.0.1 - - [27/Nov/2026:08:42:28 +0000] \"GET /v2/a/b/blobs/sha256:01 HTTP/1.1\" 200 9 \"\" \"x\"
127.0.0.1 - - [27/Nov/2026:08:42:28 +0000] \"POST /v2/a/b/blobs/uploads/ HTTP/1.1\" 202 0 \"\" \"x\"
127.0.0.1 - - [27/Nov/2026:08:42:28 +0000] \"GET /v2/a/b/tags/list HTTP/1.1\" 200 9 \"\" \"x\"
";
        let requests = Requests::from_access_log(log);
        assert_eq!(requests.get("GET blob"), 2);
        assert_eq!(requests.get("HEAD manifest"), 1);
        assert_eq!(requests.get("POST upload"), 1);
        assert_eq!(requests.get("GET tags"), 1);
        assert_eq!(requests.get("GET other"), 1);
        assert_eq!(requests.total(), 6);
    }
}
