//! What the engine needs from registries: [`SourceRegistry`] to read from, [`DestRegistry`] to
//! write to, and the manifest and blob types that cross between them.
//!
//! Both traits address repositories by path, so one value serves a whole registry (one HTTP
//! client with one connection pool and token cache, one layout root, one in-memory map).

#[cfg(test)]
pub(crate) mod faulty;
pub mod http;
pub mod layout;
pub mod manifest;
pub mod memory;

use std::fmt;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

use crate::error::Result;
use crate::reference::Digest;

pub use http::{HttpOptions, HttpRegistry};
pub use layout::LayoutRegistry;
pub use manifest::{Manifest, ManifestKind, Platform, media_types};
pub use memory::MemoryRegistry;

/// A blob's bytes as they arrive. Consumers verify digest and size while reading.
pub type BlobStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// The largest small blob. A blob this small costs round trips, not bandwidth, so it is
/// handled like a small request: the engine copies it under the run's pool of small copies (at
/// most twice `metadata_concurrency` of them, so a few MiB in flight) rather than under its units; the
/// HTTP client reads it whole under the per-host cap of small requests (freed as soon as it is
/// read) and uploads it under that cap, rather than streaming it under the cap of bulk requests.
pub(crate) const SMALL_BLOB_MAX: u64 = 256 << 10;

/// What a HEAD of a manifest tells: its digest, media type and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
}

/// A registry to read images from (one mirror's external source).
#[async_trait]
pub trait SourceRegistry: Send + Sync + fmt::Debug {
    /// Every tag of `repo`, following pagination. `NotFound` if the repository does not exist.
    async fn list_tags(&self, repo: &str) -> Result<Vec<String>>;

    /// The digest of the manifest `reference` (a tag or a digest) points at, or `None` if absent.
    async fn head_manifest(&self, repo: &str, reference: &str) -> Result<Option<ManifestHead>>;

    /// The manifest's exact bytes. Fetched by digest, it is verified against that digest; fetched
    /// by tag, its digest is computed from the bytes.
    async fn get_manifest(&self, repo: &str, reference: &str) -> Result<Manifest>;

    /// The index of the manifests whose `subject` is `digest`, from the OCI 1.1 referrers API,
    /// narrowed to `artifact_type` when given (a registry may ignore the filter: callers filter
    /// again); `None` when the registry has no referrers API (the default).
    async fn referrers(
        &self,
        _repo: &str,
        _digest: &Digest,
        _artifact_type: Option<&str>,
    ) -> Result<Option<Manifest>> {
        Ok(None)
    }

    /// Stream a blob. The stream yields the registry's bytes unverified; the caller checks them.
    async fn get_blob(&self, repo: &str, digest: &Digest) -> Result<BlobStream>;
}

/// A registry to write images to (the mirror's destination).
#[async_trait]
pub trait DestRegistry: Send + Sync + fmt::Debug {
    /// Every tag of `repo`; an absent repository has no tags (not an error).
    async fn list_tags(&self, repo: &str) -> Result<Vec<String>>;

    /// The digest `reference` (a tag or a digest) points at, or `None`.
    async fn head_manifest(&self, repo: &str, reference: &str) -> Result<Option<ManifestHead>>;

    /// The manifest's exact bytes (used to restore a tag on rollback).
    async fn get_manifest(&self, repo: &str, reference: &str) -> Result<Manifest>;

    /// Like [`SourceRegistry::referrers`]: `None` when the registry has no referrers API, and a
    /// manifest pushed with a `subject` is then found only through the referrers tag schema.
    async fn referrers(
        &self,
        _repo: &str,
        _digest: &Digest,
        _artifact_type: Option<&str>,
    ) -> Result<Option<Manifest>> {
        Ok(None)
    }

    /// The size of the blob `repo` holds under `digest`, or `None` when it holds none (or will
    /// not say its size: the engine then copies it, verifying it on the way).
    async fn blob_size(&self, repo: &str, digest: &Digest) -> Result<Option<u64>>;

    /// Whether `repo` already holds the blob.
    async fn has_blob(&self, repo: &str, digest: &Digest) -> Result<bool> {
        Ok(self.blob_size(repo, digest).await?.is_some())
    }

    /// Try to make a blob of repository `from` (same registry) available in `repo` without
    /// copying. `Ok(false)` when the registry cannot or will not mount it.
    async fn mount_blob(&self, repo: &str, digest: &Digest, from: &str) -> Result<bool>;

    /// Whether [`DestRegistry::push_blob`] hashes what it uploads itself (every built-in backend
    /// does). The engine then checks only sizes while streaming instead of hashing each blob a
    /// second time; with the default `false` it hashes too.
    fn verifies_blobs(&self) -> bool {
        false
    }

    /// Upload a blob from a stream, verifying `digest` and `size` as it flows. On a mismatch the
    /// upload is not completed and the error is `DigestMismatch`.
    async fn push_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        data: BlobStream,
    ) -> Result<()>;

    /// Store a manifest's exact bytes under `reference` (a tag, or its own digest to stage it
    /// untagged). Returns the manifest's digest.
    async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        manifest: &Manifest,
    ) -> Result<Digest>;

    /// Remove one tag. Other tags on the same manifest stay.
    async fn delete_tag(&self, repo: &str, tag: &str) -> Result<()>;
}
