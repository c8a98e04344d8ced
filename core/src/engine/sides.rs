//! Which registry of a sync an error came from: a run reads the source and writes the
//! destination through these two adapters, which mark every error (a source blob stream's too)
//! with its [`Side`]. The registry itself names its host ([`crate::Error::host`]).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use futures::TryStreamExt;

use crate::error::{ErrorKind, Result, Side};
use crate::reference::Digest;
use crate::registry::{BlobStream, DestRegistry, Manifest, ManifestHead, SourceRegistry};

/// The run's source: every error it returns is the source's.
pub(crate) struct SourceSide(pub Arc<dyn SourceRegistry>);

/// The run's destination: every error it returns is the destination's, unless it came from
/// the source (a blob stream that failed while being uploaded, bytes that do not hash to the
/// digest the source's manifest gives).
pub(crate) struct DestSide(pub Arc<dyn DestRegistry>);

impl fmt::Debug for SourceSide {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for DestSide {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

fn source<T>(result: Result<T>) -> Result<T> {
    result.map_err(|e| e.on_side(Side::Source))
}

fn dest<T>(result: Result<T>) -> Result<T> {
    result.map_err(|e| e.on_side(Side::Destination))
}

#[async_trait]
impl SourceRegistry for SourceSide {
    async fn list_tags(&self, repo: &str) -> Result<Vec<String>> {
        source(self.0.list_tags(repo).await)
    }

    async fn head_manifest(&self, repo: &str, reference: &str) -> Result<Option<ManifestHead>> {
        source(self.0.head_manifest(repo, reference).await)
    }

    async fn get_manifest(&self, repo: &str, reference: &str) -> Result<Manifest> {
        source(self.0.get_manifest(repo, reference).await)
    }

    async fn referrers(
        &self,
        repo: &str,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Option<Manifest>> {
        source(self.0.referrers(repo, digest, artifact_type).await)
    }

    async fn get_blob(&self, repo: &str, digest: &Digest) -> Result<BlobStream> {
        let stream = source(self.0.get_blob(repo, digest).await)?;
        Ok(Box::pin(stream.map_err(|e| e.on_side(Side::Source))))
    }
}

#[async_trait]
impl DestRegistry for DestSide {
    async fn list_tags(&self, repo: &str) -> Result<Vec<String>> {
        dest(self.0.list_tags(repo).await)
    }

    async fn head_manifest(&self, repo: &str, reference: &str) -> Result<Option<ManifestHead>> {
        dest(self.0.head_manifest(repo, reference).await)
    }

    async fn get_manifest(&self, repo: &str, reference: &str) -> Result<Manifest> {
        dest(self.0.get_manifest(repo, reference).await)
    }

    async fn referrers(
        &self,
        repo: &str,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Option<Manifest>> {
        dest(self.0.referrers(repo, digest, artifact_type).await)
    }

    async fn blob_size(&self, repo: &str, digest: &Digest) -> Result<Option<u64>> {
        dest(self.0.blob_size(repo, digest).await)
    }

    async fn has_blob(&self, repo: &str, digest: &Digest) -> Result<bool> {
        dest(self.0.has_blob(repo, digest).await)
    }

    async fn mount_blob(&self, repo: &str, digest: &Digest, from: &str) -> Result<bool> {
        dest(self.0.mount_blob(repo, digest, from).await)
    }

    fn verifies_blobs(&self) -> bool {
        self.0.verifies_blobs()
    }

    async fn push_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        data: BlobStream,
    ) -> Result<()> {
        // Bytes that do not hash to their digest are the source's, whichever side noticed.
        let pushed = self.0.push_blob(repo, digest, size, data).await;
        pushed.map_err(|e| match e.kind() {
            ErrorKind::DigestMismatch => e.on_side(Side::Source),
            _ => e.on_side(Side::Destination),
        })
    }

    async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        manifest: &Manifest,
    ) -> Result<Digest> {
        dest(self.0.push_manifest(repo, reference, manifest).await)
    }

    async fn delete_tag(&self, repo: &str, tag: &str) -> Result<()> {
        dest(self.0.delete_tag(repo, tag).await)
    }
}
