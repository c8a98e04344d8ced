//! The few OCI distribution calls the harness makes itself: seeding a source, moving the
//! incremental scenario's tag, and reading back which digests a destination serves.
//!
//! Deliberately independent of regmirror's own client, so that a bug there cannot make the
//! benchmark's checks agree with it.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt};
use reqwest::{Body, Client, StatusCode, header};

use crate::tls::Certs;

/// Every manifest type the datasets use, for `Accept`.
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// One registry on loopback, over plain HTTP or over TLS trusting the harness's CA.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    http: Client,
    base: String,
}

impl RegistryClient {
    /// `host` is `127.0.0.1:PORT`; `tls` the certificates it serves, if it speaks TLS.
    pub fn new(host: &str, tls: Option<&Certs>) -> Result<Self> {
        let mut builder = Client::builder().pool_max_idle_per_host(32);
        let scheme = match tls {
            Some(certs) => {
                builder = builder
                    .tls_certs_only([reqwest::Certificate::from_pem(certs.ca_pem.as_bytes())?]);
                "https"
            }
            None => "http",
        };
        let http = builder
            .build()
            .context("building the harness's HTTP client")?;
        Ok(RegistryClient {
            http,
            base: format!("{scheme}://{host}"),
        })
    }

    pub async fn blob_exists(&self, repo: &str, digest: &str) -> Result<bool> {
        let url = format!("{}/v2/{repo}/blobs/{digest}", self.base);
        let resp = self.http.head(&url).send().await?;
        Ok(resp.status() == StatusCode::OK)
    }

    /// Uploads a blob in one request unless the repository has it already.
    pub async fn push_blob(&self, repo: &str, digest: &str, body: impl Into<Body>) -> Result<()> {
        if self.blob_exists(repo, digest).await? {
            return Ok(());
        }
        let start = format!("{}/v2/{repo}/blobs/uploads/", self.base);
        let resp = self.http.post(&start).send().await?;
        if resp.status() != StatusCode::ACCEPTED {
            bail!("starting an upload to {repo}: {}", resp.status());
        }
        let location = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .context("upload start without a Location")?;
        let mut url = if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            location.to_owned()
        };
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&format!("digest={digest}"));
        let resp = self
            .http
            .put(&url)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(body)
            .send()
            .await?;
        if resp.status() != StatusCode::CREATED {
            bail!("uploading {digest} to {repo}: {}", resp.status());
        }
        Ok(())
    }

    /// Streams a file as a blob.
    pub async fn push_blob_file(&self, repo: &str, digest: &str, path: &Path) -> Result<()> {
        if self.blob_exists(repo, digest).await? {
            return Ok(());
        }
        let file = tokio::fs::File::open(path)
            .await
            .with_context(|| format!("opening {}", path.display()))?;
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20);
        self.push_blob(repo, digest, Body::wrap_stream(stream))
            .await
    }

    /// Puts a manifest under `reference` (a tag, or its digest for an index's children).
    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: Vec<u8>,
    ) -> Result<()> {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let resp = self
            .http
            .put(&url)
            .header(header::CONTENT_TYPE, media_type)
            .body(bytes)
            .send()
            .await?;
        if resp.status() != StatusCode::CREATED {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            bail!("putting manifest {repo}:{reference}: {status} {text}");
        }
        Ok(())
    }

    /// The digest `reference` resolves to, or `None` if the repository does not have it.
    pub async fn manifest_digest(&self, repo: &str, reference: &str) -> Result<Option<String>> {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let resp = self
            .http
            .head(&url)
            .header(header::ACCEPT, ACCEPT)
            .send()
            .await?;
        match resp.status() {
            StatusCode::OK => {
                let digest = resp
                    .headers()
                    .get("docker-content-digest")
                    .and_then(|d| d.to_str().ok())
                    .context("manifest HEAD without Docker-Content-Digest")?;
                Ok(Some(digest.to_owned()))
            }
            StatusCode::NOT_FOUND => Ok(None),
            other => bail!("HEAD manifest {repo}:{reference}: {other}"),
        }
    }

    /// Deletes a manifest by digest, which also removes every tag pointing at it.
    pub async fn delete_manifest(&self, repo: &str, digest: &str) -> Result<()> {
        let url = format!("{}/v2/{repo}/manifests/{digest}", self.base);
        let resp = self.http.delete(&url).send().await?;
        if !matches!(resp.status(), StatusCode::ACCEPTED | StatusCode::NOT_FOUND) {
            bail!("deleting manifest {repo}@{digest}: {}", resp.status());
        }
        Ok(())
    }

    /// Tag → manifest digest for a whole repository (empty if it does not exist).
    pub async fn tag_digests(&self, repo: &str) -> Result<BTreeMap<String, String>> {
        #[derive(serde::Deserialize)]
        struct TagList {
            tags: Option<Vec<String>>,
        }
        // Every dataset has fewer tags than one page of this size.
        let url = format!("{}/v2/{repo}/tags/list?n=100000", self.base);
        let resp = self.http.get(&url).send().await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(BTreeMap::new());
        }
        if resp.status() != StatusCode::OK {
            bail!("listing tags of {repo}: {}", resp.status());
        }
        let list: TagList = resp.json().await?;
        futures::stream::iter(list.tags.unwrap_or_default())
            .map(|tag| async move {
                let digest = self
                    .manifest_digest(repo, &tag)
                    .await?
                    .with_context(|| format!("{repo}:{tag} is listed but has no manifest"))?;
                anyhow::Ok((tag, digest))
            })
            .buffer_unordered(16)
            .try_collect()
            .await
    }

    /// Starts a GET of a blob and returns the response, for the link probes.
    pub async fn get_blob(&self, repo: &str, digest: &str) -> Result<reqwest::Response> {
        let url = format!("{}/v2/{repo}/blobs/{digest}", self.base);
        let resp = self.http.get(&url).send().await?;
        if resp.status() != StatusCode::OK {
            bail!("GET blob {repo}@{digest}: {}", resp.status());
        }
        Ok(resp)
    }

    /// `GET /v2/`, for the round-trip probe.
    pub async fn ping(&self) -> Result<()> {
        let resp = self.http.get(format!("{}/v2/", self.base)).send().await?;
        if resp.status() != StatusCode::OK {
            bail!("GET /v2/: {}", resp.status());
        }
        Ok(())
    }
}
