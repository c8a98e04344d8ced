//! An OCI distribution client: [`HttpRegistry`] reads from and writes to any registry that
//! speaks the distribution API (Quay, Docker Hub, GHCR, Harbor, ECR, CNCF distribution).
//!
//! One value serves one registry host: one connection pool, one token cache, one cap on
//! concurrent requests. It is cheap to clone.
//!
//! ```no_run
//! # async fn demo() -> regmirror::Result<()> {
//! use regmirror::SourceRegistry;
//! use regmirror::registry::http::{HttpOptions, HttpRegistry};
//!
//! let quay = HttpRegistry::new("quay.io", HttpOptions::default())?;
//! let tags = SourceRegistry::list_tags(&quay, "coreos/etcd").await?;
//! # Ok(()) }
//! ```

mod auth;
mod blobs;
mod client;
mod docker_config;
mod guard;
mod manifests;
mod referrers;
mod retry;
mod tags;
mod token;
mod upload;
mod window;

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::OwnedSemaphorePermit;

pub use guard::AddressGuard;
pub use retry::RetryPolicy;
pub use tags::MAX_TAG_LISTING_BYTES;

use self::auth::{pull_scope, push_scope};
use self::client::Client;
use crate::config::{Credentials, ProxyConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::reference::{Digest, validate_repository};
use crate::registry::{
    BlobStream, DestRegistry, Manifest, ManifestHead, SMALL_BLOB_MAX, SourceRegistry,
};

/// Where Docker Hub's API lives (`docker.io` is only its name).
const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// The default of [`HttpOptions::max_tags`].
pub const DEFAULT_MAX_TAGS: usize = 1_000_000;

/// How to reach one registry. Every field has a sensible default.
#[derive(Clone)]
pub struct HttpOptions {
    /// Username and password (or token). Explicit credentials win over the docker config.
    pub credentials: Option<Credentials>,
    /// Verify the registry's certificate (default). `false` skips verification *and* permits
    /// plain HTTP when the TLS handshake fails: skopeo's meaning of `--tls-verify=false`.
    pub tls_verify: bool,
    /// Extra PEM CA bundles to trust, or directories of `*.crt` files (docker's `certs.d`); a
    /// directory's `NAME.cert` + `NAME.key` pair is the client certificate to present.
    pub ca_certs: Vec<PathBuf>,
    /// Proxies for reaching the registry. All unset: the usual `*_proxy` environment variables.
    pub proxy: ProxyConfig,
    /// At most this many requests in flight to this registry at once (a blob download counts
    /// until its stream is dropped), and apart from those, at most this many blob uploads.
    /// Small reads have their own cap, `max_concurrent_metadata_requests`.
    pub max_concurrent_requests: usize,
    /// This many small reads in flight to this registry at once (manifest `HEAD`s and `GET`s,
    /// blob `HEAD`s, tag lists), apart from the requests above: they carry no bulk, and a
    /// run's planning is a burst of them where each wave costs a round trip. Where the
    /// registry's round trip (its fastest answer to a window of manifest and blob `HEAD`s) is
    /// 20 ms or more, the cap grows in proportion (as many requests a second as this many at
    /// 5 ms), to at most 8 times this ([`max_metadata_window`]), unless its answers then slow
    /// down with it (a busy registry, not a far one).
    pub max_concurrent_metadata_requests: usize,
    /// Connecting (TCP and TLS) may take at most this long.
    pub connect_timeout: Duration,
    /// No answer, or no body bytes moving, for this long fails a request with `Timeout`.
    /// Small requests (and each `PATCH` chunk) must be sent and answered within it; a streamed
    /// upload or download only needs to keep bytes moving.
    pub stall_timeout: Duration,
    /// Look up credentials as docker and podman store them (`$REGISTRY_AUTH_FILE`,
    /// `$XDG_RUNTIME_DIR/containers/auth.json`, `$DOCKER_CONFIG` or `~/.docker/config.json`,
    /// credential helpers) when none are given. The files that exist are read when the
    /// registry is made; one that cannot be parsed is an error naming it, a missing one holds
    /// no logins.
    pub docker_config: bool,
    /// Read stored credentials from this auth file (`auth.json` / `config.json` format,
    /// skopeo's `--authfile`) instead of the default locations. It must exist.
    pub auth_file: Option<PathBuf>,
    /// The `User-Agent` header.
    pub user_agent: String,
    /// Retries of requests that are safe to repeat (connection errors, 5xx, 429).
    pub retry: RetryPolicy,
    /// Tags asked for per page when listing (`n`); registries may send fewer.
    pub tags_page_size: usize,
    /// A repository listing more tags than this fails to list (a registry sending an endless
    /// tag list is stopped here, its memory bounded). Default 1 000 000.
    pub max_tags: usize,
    /// Upload blobs in `PATCH` chunks of this size instead of one streamed `PUT`. Chunks are
    /// used anyway when a registry asks for them (`OCI-Chunk-Min-Length`).
    pub upload_chunk_size: Option<usize>,
    /// The SSRF guard (off by default): refuse loopback, private, link-local, metadata and
    /// other non-public addresses for this registry, its token service and its redirects,
    /// unless its allow-list names them. Host names are checked as they resolve, at connect
    /// time; a proxy's own address is checked like any other.
    pub address_guard: Option<AddressGuard>,
}

/// The most small reads one run has in flight when its concurrency is smaller than this.
const MAX_METADATA_CONCURRENCY: usize = 32;

/// How many small reads (manifest `HEAD`s and `GET`s, blob `HEAD`s) a run of `concurrency`
/// units has in flight to a registry nearby, apart from those units: four per unit, up to 32
/// (or `concurrency` itself when that is larger). Planning is a burst of such reads, one per
/// tag, each a round trip; the blob transfers keep the smaller limit. A registry farther away
/// gets more, up to [`max_metadata_window`] of this (see
/// [`HttpOptions::max_concurrent_metadata_requests`]).
pub fn metadata_concurrency(concurrency: usize) -> usize {
    concurrency.max(concurrency.saturating_mul(4).min(MAX_METADATA_CONCURRENCY))
}

/// The most small reads in flight to one registry whose
/// [`HttpOptions::max_concurrent_metadata_requests`] is `cap`, reached when its round trip is
/// 40 ms or longer: 8 times `cap` (256 at the default 32).
pub fn max_metadata_window(cap: usize) -> usize {
    cap.max(1).saturating_mul(window::GROWTH)
}

impl HttpOptions {
    /// These options with the request caps of a run of `concurrency` units:
    /// `max_concurrent_requests` that many, `max_concurrent_metadata_requests` the
    /// [`metadata_concurrency`] of it.
    pub fn with_concurrency(self, concurrency: usize) -> HttpOptions {
        HttpOptions {
            max_concurrent_requests: concurrency,
            max_concurrent_metadata_requests: metadata_concurrency(concurrency),
            ..self
        }
    }
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            credentials: None,
            tls_verify: true,
            ca_certs: Vec::new(),
            proxy: ProxyConfig::default(),
            max_concurrent_requests: 8,
            max_concurrent_metadata_requests: 32,
            connect_timeout: Duration::from_secs(30),
            stall_timeout: Duration::from_secs(60),
            docker_config: true,
            auth_file: None,
            user_agent: format!("regmirror/{}", env!("CARGO_PKG_VERSION")),
            retry: RetryPolicy::default(),
            tags_page_size: 1000,
            max_tags: DEFAULT_MAX_TAGS,
            upload_chunk_size: None,
            address_guard: None,
        }
    }
}

impl fmt::Debug for HttpOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpOptions")
            .field("credentials", &self.credentials)
            .field("tls_verify", &self.tls_verify)
            .field("ca_certs", &self.ca_certs)
            .field("proxy", &self.proxy)
            .field("max_concurrent_requests", &self.max_concurrent_requests)
            .field(
                "max_concurrent_metadata_requests",
                &self.max_concurrent_metadata_requests,
            )
            .field("connect_timeout", &self.connect_timeout)
            .field("stall_timeout", &self.stall_timeout)
            .field("docker_config", &self.docker_config)
            .field("auth_file", &self.auth_file)
            .field("user_agent", &self.user_agent)
            .field("retry", &self.retry)
            .field("tags_page_size", &self.tags_page_size)
            .field("max_tags", &self.max_tags)
            .field("upload_chunk_size", &self.upload_chunk_size)
            .field("address_guard", &self.address_guard)
            .finish()
    }
}

/// A registry reached over the OCI distribution API; implements [`SourceRegistry`] and
/// [`DestRegistry`]. Cheap to clone; `Debug` never shows credentials or tokens.
#[derive(Clone)]
pub struct HttpRegistry {
    client: Arc<Client>,
}

impl fmt::Debug for HttpRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpRegistry")
            .field("client", &self.client)
            .finish()
    }
}

impl HttpRegistry {
    /// A client for registry `host` (`quay.io`, `127.0.0.1:5000`, `docker.io`), no scheme.
    /// Nothing is contacted until the first request; invalid settings (a CA file that does not
    /// exist, a malformed proxy, an auth file that is missing when given as `auth_file` or
    /// cannot be parsed) fail here.
    pub fn new(host: &str, options: HttpOptions) -> Result<Self> {
        check_host(host)?;
        let api_host = api_host(host);
        let http = build_http(host, &options)?;
        Ok(HttpRegistry {
            client: Arc::new(Client::new(
                host.to_owned(),
                api_host.to_owned(),
                http,
                options,
            )?),
        })
    }

    /// The registry host as given to [`HttpRegistry::new`].
    pub fn host(&self) -> &str {
        &self.client.host
    }
}

/// Where the API of the registry named `host` lives: Docker Hub's names mean
/// `registry-1.docker.io`, any other host is its own.
pub(crate) fn api_host(host: &str) -> &str {
    match host {
        "docker.io" | "index.docker.io" => DOCKER_HUB_API,
        other => other,
    }
}

fn check_host(host: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::new(
            ErrorKind::InvalidConfig,
            format!("registry host {host:?} is not valid: {why} (expected host[:port])"),
        ))
    };
    if host.is_empty() {
        return bad("it is empty");
    }
    if host.contains("://") {
        return bad("it has a scheme");
    }
    if host
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, '/' | '@' | '?' | '#'))
    {
        return bad("it has a path, user or query");
    }
    match url::Url::parse(&format!("https://{host}/")) {
        Ok(url) if url.host_str().is_some() => Ok(()),
        Ok(_) => bad("it has no host"),
        Err(e) => bad(&e.to_string()),
    }
}

/// The reqwest client for one registry: TLS trust, proxies, timeouts, no automatic redirects
/// (they are followed by hand, so credentials never leave the registry's origin).
fn build_http(host: &str, options: &HttpOptions) -> Result<reqwest::Client> {
    let invalid = |what: String| Error::new(ErrorKind::InvalidConfig, what);
    let mut builder = reqwest::Client::builder()
        .user_agent(options.user_agent.clone())
        .connect_timeout(options.connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(90));
    if !options.tls_verify {
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    let mut certs = Vec::new();
    for path in &options.ca_certs {
        for file in ca_files(path)? {
            let pem = std::fs::read(&file)
                .map_err(|e| invalid(format!("cannot read CA bundle {}: {e}", file.display())))?;
            let found = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                invalid(format!(
                    "CA bundle {} is not valid PEM: {e}",
                    file.display()
                ))
            })?;
            if found.is_empty() {
                return Err(invalid(format!(
                    "CA bundle {} holds no certificate",
                    file.display()
                )));
            }
            certs.extend(found);
        }
    }
    if !certs.is_empty() {
        builder = builder.tls_certs_merge(certs);
    }
    if let Some(identity) = client_identity(&options.ca_certs)? {
        builder = builder.identity(identity);
    }
    // Always ours, guard or not: a name that does not resolve is then told apart by type.
    builder = builder.dns_resolver(guard::Resolver::new(options.address_guard.clone()));
    let proxy = &options.proxy;
    if proxy.http_proxy.is_some() || proxy.https_proxy.is_some() {
        // Explicit proxies replace the environment's.
        builder = builder.no_proxy();
        let no_proxy = proxy
            .no_proxy
            .as_deref()
            .and_then(reqwest::NoProxy::from_string);
        let make = |field: &str, url: &str, scheme_http: bool| {
            // A proxy named by address is connected to without a DNS look-up.
            if let Some(guard) = &options.address_guard
                && let Ok(parsed) = url::Url::parse(url)
                && let Some(addr) = literal_ip(&parsed)
            {
                guard
                    .check(&addr.to_string(), addr)
                    .map_err(|e| e.context(format!("{field} for {host}")))?;
            }
            let made = if scheme_http {
                reqwest::Proxy::http(url)
            } else {
                reqwest::Proxy::https(url)
            };
            // The URL may hold proxy credentials: name the field, not the value.
            made.map(|p| p.no_proxy(no_proxy.clone()))
                .map_err(|e| invalid(format!("{field} for {host} is not a valid proxy URL: {e}")))
        };
        if let Some(url) = &proxy.http_proxy {
            builder = builder.proxy(make("http_proxy", url, true)?);
        }
        if let Some(url) = &proxy.https_proxy {
            builder = builder.proxy(make("https_proxy", url, false)?);
        }
    } else if is_loopback(host) {
        // As Go's ProxyFromEnvironment does (so skopeo and docker): a `*_proxy` set for the
        // outside world is never asked for this machine's own registries, which it cannot reach.
        builder = builder.no_proxy();
    }
    builder.build().map_err(|e| {
        invalid(format!(
            "cannot set up an HTTP client for {host}: {}",
            e.without_url()
        ))
    })
}

/// `localhost`, `127.0.0.1`, `[::1]` (and the rest of 127/8), with or without a port.
fn is_loopback(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if !port.contains(']') => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The address of a URL whose host is an IP address (`http://10.0.0.1/`, `https://[::1]/`).
fn literal_ip(url: &url::Url) -> Option<std::net::IpAddr> {
    match url.host()? {
        url::Host::Ipv4(v4) => Some(v4.into()),
        url::Host::Ipv6(v6) => Some(v6.into()),
        url::Host::Domain(_) => None,
    }
}

/// A CA path: a PEM file, or a directory whose `*.crt` files are CA certificates.
fn ca_files(path: &Path) -> Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let entries = std::fs::read_dir(path).map_err(|e| {
        Error::new(
            ErrorKind::InvalidConfig,
            format!("cannot read CA directory {}: {e}", path.display()),
        )
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|ext| ext == "crt"))
        .collect();
    files.sort();
    Ok(files)
}

/// The client certificate of the first CA directory holding one, as docker's `certs.d` layout
/// has it: `NAME.cert` (PEM, the certificate chain) beside `NAME.key` (its private key).
fn client_identity(paths: &[PathBuf]) -> Result<Option<reqwest::Identity>> {
    let invalid = |what: String| Error::new(ErrorKind::InvalidConfig, what);
    for dir in paths.iter().filter(|p| p.is_dir()) {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| invalid(format!("cannot read CA directory {}: {e}", dir.display())))?;
        let mut certs: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|ext| ext == "cert"))
            .collect();
        certs.sort();
        let Some(cert) = certs.first() else {
            continue;
        };
        let key = cert.with_extension("key");
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| {
                invalid(format!(
                    "cannot read client certificate file {}: {e}",
                    path.display()
                ))
            })
        };
        if !key.is_file() {
            return Err(invalid(format!(
                "client certificate {} has no key beside it ({})",
                cert.display(),
                key.display()
            )));
        }
        let mut pem = read(cert)?;
        pem.push(b'\n');
        pem.extend(read(&key)?);
        // The error names the files, never their contents (the key is a secret).
        let identity = reqwest::Identity::from_pem(&pem).map_err(|_| {
            invalid(format!(
                "{} and {} are not a PEM certificate and its private key",
                cert.display(),
                key.display()
            ))
        })?;
        return Ok(Some(identity));
    }
    Ok(None)
}

impl HttpRegistry {
    /// `repo` validated, and on Docker Hub a single name gets `library/` (`alpine` →
    /// `library/alpine`), as `docker pull` does.
    fn repo<'a>(&self, repo: &'a str) -> Result<Cow<'a, str>> {
        validate_repository(repo)?;
        if self.client.api_host == DOCKER_HUB_API && !repo.contains('/') {
            Ok(Cow::Owned(format!("library/{repo}")))
        } else {
            Ok(Cow::Borrowed(repo))
        }
    }

    /// `repo` as [`HttpRegistry::repo`] gives it, and a slot under the per-host request cap for
    /// the caller to hold while its request runs.
    async fn slot<'a>(&self, repo: &'a str) -> Result<(Cow<'a, str>, OwnedSemaphorePermit)> {
        let repo = self.repo(repo)?;
        Ok((repo, self.client.permit().await))
    }

    /// `work`'s result as it leaves this client: every error passes here, and is scrubbed of the
    /// client's secrets (see [`crate::redact`]) whatever the registry echoed into it, and names
    /// the registry's host as a field.
    async fn scrubbed<T>(&self, work: impl Future<Output = Result<T>>) -> Result<T> {
        work.await.map_err(|e| {
            self.client
                .secrets
                .scrub_error(e)
                .at_host(&self.client.host)
        })
    }

    /// `tags` without those holding one of the client's secrets: a registry can only have
    /// learnt it from our requests, and its tag names reach every output.
    fn without_secrets(&self, mut tags: Vec<String>) -> Vec<String> {
        let before = tags.len();
        tags.retain(|tag| !self.client.secrets.found_in(tag));
        if tags.len() != before {
            tracing::warn!(
                target: "regmirror::http",
                "{} listed {} tags holding a credential of ours; they are left out",
                self.client.host,
                before - tags.len()
            );
        }
        tags
    }

    /// [`SourceRegistry::head_manifest`] and [`DestRegistry::head_manifest`], which differ only
    /// in the token scope they ask for (`pull_scope` or `push_scope`).
    async fn head_manifest_as(
        &self,
        repo: &str,
        reference: &str,
        scope: fn(&str) -> String,
    ) -> Result<Option<ManifestHead>> {
        self.scrubbed(async {
            let (repo, _permit) = self.metadata_slot(repo).await?;
            self.client
                .head_manifest(&repo, reference, &[scope(&repo)])
                .await
        })
        .await
    }

    /// Both traits' `get_manifest`, under the given token scope.
    async fn get_manifest_as(
        &self,
        repo: &str,
        reference: &str,
        scope: fn(&str) -> String,
    ) -> Result<Manifest> {
        self.scrubbed(async {
            let (repo, _permit) = self.metadata_slot(repo).await?;
            self.client
                .get_manifest(&repo, reference, &[scope(&repo)])
                .await
        })
        .await
    }

    /// Both traits' `referrers`, under the given token scope.
    async fn referrers_as(
        &self,
        repo: &str,
        digest: &Digest,
        artifact_type: Option<&str>,
        scope: fn(&str) -> String,
    ) -> Result<Option<Manifest>> {
        self.scrubbed(async {
            let (repo, _permit) = self.metadata_slot(repo).await?;
            self.client
                .referrers(&repo, digest, artifact_type, &[scope(&repo)])
                .await
        })
        .await
    }

    /// Like [`HttpRegistry::slot`], under the cap of small reads.
    async fn metadata_slot<'a>(
        &self,
        repo: &'a str,
    ) -> Result<(Cow<'a, str>, OwnedSemaphorePermit)> {
        let repo = self.repo(repo)?;
        Ok((repo, self.client.metadata_permit().await))
    }
}

#[async_trait]
impl SourceRegistry for HttpRegistry {
    async fn list_tags(&self, repo: &str) -> Result<Vec<String>> {
        self.scrubbed(async {
            let (repo, _permit) = self.metadata_slot(repo).await?;
            let tags = self.client.list_tags(&repo).await?.ok_or_else(|| {
                Error::new(
                    ErrorKind::NotFound,
                    format!("repository {repo} not found on {}", self.client.host),
                )
            })?;
            Ok(self.without_secrets(tags))
        })
        .await
    }

    async fn head_manifest(&self, repo: &str, reference: &str) -> Result<Option<ManifestHead>> {
        self.head_manifest_as(repo, reference, pull_scope).await
    }

    async fn get_manifest(&self, repo: &str, reference: &str) -> Result<Manifest> {
        self.get_manifest_as(repo, reference, pull_scope).await
    }

    async fn referrers(
        &self,
        repo: &str,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Option<Manifest>> {
        self.referrers_as(repo, digest, artifact_type, pull_scope)
            .await
    }

    async fn get_blob(&self, repo: &str, digest: &Digest) -> Result<BlobStream> {
        self.scrubbed(async {
            let (repo, permit) = self.metadata_slot(repo).await?;
            self.client
                .get_blob(&repo, digest, &[pull_scope(&repo)], permit)
                .await
        })
        .await
    }
}

/// Destination operations ask for push access from the start, so one token serves a whole
/// repository's copy.
#[async_trait]
impl DestRegistry for HttpRegistry {
    /// Uploads are hashed and a mismatch is never stored.
    fn verifies_blobs(&self) -> bool {
        true
    }

    async fn list_tags(&self, repo: &str) -> Result<Vec<String>> {
        self.scrubbed(async {
            let (repo, _permit) = self.metadata_slot(repo).await?;
            let tags = self.client.list_tags(&repo).await?.unwrap_or_default();
            Ok(self.without_secrets(tags))
        })
        .await
    }

    async fn head_manifest(&self, repo: &str, reference: &str) -> Result<Option<ManifestHead>> {
        self.head_manifest_as(repo, reference, push_scope).await
    }

    async fn get_manifest(&self, repo: &str, reference: &str) -> Result<Manifest> {
        self.get_manifest_as(repo, reference, push_scope).await
    }

    async fn referrers(
        &self,
        repo: &str,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Option<Manifest>> {
        self.referrers_as(repo, digest, artifact_type, push_scope)
            .await
    }

    async fn blob_size(&self, repo: &str, digest: &Digest) -> Result<Option<u64>> {
        self.scrubbed(async {
            let (repo, _permit) = self.metadata_slot(repo).await?;
            self.client
                .blob_size(&repo, digest, &[push_scope(&repo)])
                .await
        })
        .await
    }

    async fn mount_blob(&self, repo: &str, digest: &Digest, from: &str) -> Result<bool> {
        self.scrubbed(async {
            let (repo, from) = (self.repo(repo)?, self.repo(from)?);
            let (repo, from) = (&*repo, &*from);
            let _permit = self.client.permit().await;
            self.client.mount_blob(repo, digest, from).await
        })
        .await
    }

    /// Streams `data` to the registry without holding it in memory (blobs up to 1 MiB are
    /// checked before sending, so their upload can be retried). An error of a temporary kind
    /// ([`ErrorKind::is_temporary`]) means the upload was abandoned cleanly: open the source
    /// stream again and call this again, which starts a new upload session.
    async fn push_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        data: BlobStream,
    ) -> Result<()> {
        self.scrubbed(async {
            let repo = self.repo(repo)?;
            let repo = &*repo;
            // A small blob goes under the cap of small requests: the stream it is read from
            // never holds one of those (`get_blob` reads small ones whole and frees it first),
            // so this cannot wait on itself.
            let _permit = if size <= SMALL_BLOB_MAX {
                self.client.metadata_permit().await
            } else {
                self.client.upload_permit().await
            };
            self.client.push_blob(repo, digest, size, data).await
        })
        .await
    }

    async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        manifest: &Manifest,
    ) -> Result<Digest> {
        self.scrubbed(async {
            let (repo, _permit) = self.slot(repo).await?;
            self.client
                .put_manifest(&repo, reference, manifest, &[push_scope(&repo)])
                .await
        })
        .await
    }

    async fn delete_tag(&self, repo: &str, tag: &str) -> Result<()> {
        self.scrubbed(async {
            let repo = self.repo(repo)?;
            let repo = &*repo;
            crate::reference::validate_tag(tag)?;
            let _permit = self.client.permit().await;
            self.client.delete_tag(repo, tag).await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runs_concurrency_sets_both_request_caps_and_nothing_else() {
        let options = HttpOptions {
            max_tags: 7,
            ..HttpOptions::default()
        }
        .with_concurrency(2);
        assert_eq!(options.max_concurrent_requests, 2);
        assert_eq!(options.max_concurrent_metadata_requests, 8);
        assert_eq!(options.max_tags, 7);
        let options = HttpOptions::default().with_concurrency(64);
        assert_eq!(
            (
                options.max_concurrent_requests,
                options.max_concurrent_metadata_requests
            ),
            (64, 64)
        );
    }

    #[test]
    fn hosts_are_checked() {
        for good in [
            "quay.io",
            "127.0.0.1:5000",
            "[::1]:5000",
            "localhost",
            "docker.io",
        ] {
            assert!(
                HttpRegistry::new(good, HttpOptions::default()).is_ok(),
                "{good}"
            );
        }
        for bad in [
            "",
            "https://quay.io",
            "quay.io/ns",
            "user@quay.io",
            "a b",
            "quay.io:x",
        ] {
            let e = HttpRegistry::new(bad, HttpOptions::default()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{bad}");
        }
    }

    #[test]
    fn docker_io_means_registry_1_and_single_names_mean_library() {
        let r = HttpRegistry::new("docker.io", HttpOptions::default()).unwrap();
        assert_eq!(r.host(), "docker.io");
        assert_eq!(r.client.api_host, "registry-1.docker.io");
        assert_eq!(r.repo("alpine").unwrap(), "library/alpine");
        assert_eq!(r.repo("bitnami/redis").unwrap(), "bitnami/redis");
        let quay = HttpRegistry::new("quay.io", HttpOptions::default()).unwrap();
        assert_eq!(quay.repo("alpine").unwrap(), "alpine");
        assert_eq!(
            quay.repo("../etc").unwrap_err().kind(),
            ErrorKind::InvalidReference
        );
    }

    #[test]
    fn debug_never_shows_secrets() {
        let options = HttpOptions {
            credentials: Some(Credentials::new("robot", "pa55-w0rd")),
            proxy: ProxyConfig {
                https_proxy: Some("http://proxyuser:proxy-secret@127.0.0.1:3128".into()),
                ..ProxyConfig::default()
            },
            ..HttpOptions::default()
        };
        let r = HttpRegistry::new("127.0.0.1:5000", options.clone()).unwrap();
        for shown in [format!("{r:?}"), format!("{options:?}"), format!("{r:#?}")] {
            assert!(shown.contains("robot"), "{shown}");
            assert!(!shown.contains("pa55-w0rd"), "{shown}");
            assert!(!shown.contains("proxy-secret"), "{shown}");
        }
    }

    #[test]
    fn the_ssrf_guard_checks_a_proxy_given_by_address() {
        let options = |allow: &[&str]| HttpOptions {
            proxy: ProxyConfig {
                https_proxy: Some("http://user:proxy-secret@169.254.169.254:3128".into()),
                ..ProxyConfig::default()
            },
            address_guard: Some(AddressGuard::new(allow).unwrap()),
            ..HttpOptions::default()
        };
        let e = HttpRegistry::new("quay.io", options(&[])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Forbidden);
        assert!(e.message().contains("https_proxy for quay.io"), "{e}");
        assert!(
            e.message().contains("169.254.169.254 (cloud metadata)"),
            "{e}"
        );
        assert!(!e.message().contains("proxy-secret"), "{e}");
        HttpRegistry::new("quay.io", options(&["169.254.0.0/16"])).unwrap();
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        for host in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "quay.io",
            "10.0.0.1:5000",
            "[fe80::1]:5000",
            "localhost.example.com",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn bad_ca_and_proxy_settings_fail_early_and_name_the_problem() {
        let options = HttpOptions {
            ca_certs: vec![PathBuf::from("/nonexistent/ca.pem")],
            ..HttpOptions::default()
        };
        let e = HttpRegistry::new("quay.io", options).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
        assert!(e.message().contains("/nonexistent/ca.pem"), "{e}");

        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.crt");
        std::fs::write(&junk, "not a certificate").unwrap();
        let options = HttpOptions {
            ca_certs: vec![dir.path().to_owned()],
            ..HttpOptions::default()
        };
        let e = HttpRegistry::new("quay.io", options).unwrap_err();
        assert!(e.message().contains("junk.crt"), "{e}");

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("client.cert"), "not a certificate").unwrap();
        let options = HttpOptions {
            ca_certs: vec![dir.path().to_owned()],
            ..HttpOptions::default()
        };
        let e = HttpRegistry::new("quay.io", options.clone()).unwrap_err();
        assert!(e.message().contains("has no key beside it"), "{e}");
        std::fs::write(dir.path().join("client.key"), "secret key material").unwrap();
        let e = HttpRegistry::new("quay.io", options).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
        assert!(e.message().contains("client.cert and"), "{e}");
        assert!(!e.message().contains("secret key material"), "{e}");

        let options = HttpOptions {
            proxy: ProxyConfig {
                http_proxy: Some("::not a url with secret::".into()),
                ..ProxyConfig::default()
            },
            ..HttpOptions::default()
        };
        let e = HttpRegistry::new("quay.io", options).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
        assert!(e.message().contains("http_proxy"), "{e}");
        assert!(!e.message().contains("secret"), "{e}");
    }
}
