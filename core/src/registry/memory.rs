//! An in-memory registry implementing both [`SourceRegistry`] and [`DestRegistry`]: for tests,
//! and for embedders that want a scratch destination.
//!
//! It behaves like CNCF distribution where the engine can tell the difference: blobs are
//! verified on push, an image manifest is refused while its blobs are missing, and an index is
//! refused while its children are missing (distribution's `MANIFEST_BLOB_UNKNOWN`) unless
//! [`MemoryRegistry::set_accept_sparse_index`] allows it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::json;

use crate::error::{Error, ErrorKind, Result};
use crate::reference::{Digest, validate_repository, validate_tag};
use crate::registry::manifest::{ManifestKind, media_types};
use crate::registry::{BlobStream, DestRegistry, Manifest, ManifestHead, SourceRegistry};

/// Blobs are streamed in chunks of this size, so consumers see a real stream.
const CHUNK: usize = 16 * 1024;

#[derive(Debug, Default)]
struct Repo {
    tags: BTreeMap<String, Digest>,
    manifests: HashMap<Digest, Manifest>,
    blobs: HashSet<Digest>,
}

#[derive(Debug, Default)]
struct Inner {
    repos: BTreeMap<String, Repo>,
    /// Blob bytes by digest, shared by every repository that links the blob.
    blobs: HashMap<Digest, Bytes>,
    accept_sparse_index: bool,
}

/// An in-memory, multi-repository registry. Cloning shares the same contents.
#[derive(Debug, Clone, Default)]
pub struct MemoryRegistry {
    inner: Arc<Mutex<Inner>>,
}

fn is_digest(reference: &str) -> bool {
    reference.starts_with("sha256:")
}

impl MemoryRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock can only come from a failed test assertion elsewhere;
        // the data is still consistent because every mutation is a single step.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Let pushes of an index whose children are missing succeed (as Quay and OCI layouts do).
    pub fn set_accept_sparse_index(&self, accept: bool) {
        self.lock().accept_sparse_index = accept;
    }

    /// The tags of `repo` and their digests (empty for an absent repository).
    pub fn tag_map(&self, repo: &str) -> BTreeMap<String, Digest> {
        self.lock()
            .repos
            .get(repo)
            .map(|r| r.tags.clone())
            .unwrap_or_default()
    }

    /// Whether `repo` holds the manifest `digest` (tagged or not).
    pub fn has_manifest(&self, repo: &str, digest: &Digest) -> bool {
        self.lock()
            .repos
            .get(repo)
            .is_some_and(|r| r.manifests.contains_key(digest))
    }

    /// Store a blob in `repo` without verification or counting; returns its digest.
    pub fn put_blob(&self, repo: &str, bytes: impl Into<Bytes>) -> Digest {
        let bytes = bytes.into();
        let digest = Digest::of(&bytes);
        self.put_blob_as(repo, &digest, bytes);
        digest
    }

    /// Store bytes in `repo` under `digest` without checking that they match it (to model a
    /// destination that does not verify uploads).
    pub fn put_blob_as(&self, repo: &str, digest: &Digest, bytes: impl Into<Bytes>) {
        let mut inner = self.lock();
        inner.blobs.insert(digest.clone(), bytes.into());
        inner
            .repos
            .entry(repo.to_owned())
            .or_default()
            .blobs
            .insert(digest.clone());
    }

    /// Store a manifest in `repo`, tagged `tag` if given, without checking what it references.
    pub fn put_manifest(&self, repo: &str, tag: Option<&str>, manifest: &Manifest) {
        let mut inner = self.lock();
        let r = inner.repos.entry(repo.to_owned()).or_default();
        r.manifests
            .insert(manifest.digest.clone(), manifest.clone());
        if let Some(tag) = tag {
            r.tags.insert(tag.to_owned(), manifest.digest.clone());
        }
    }

    /// Seed a single-platform OCI image: a config blob naming `architecture` and one layer per
    /// entry of `layers`. Tagged `tag` if given. Returns the manifest.
    pub fn seed_image(
        &self,
        repo: &str,
        tag: Option<&str>,
        architecture: &str,
        layers: &[&[u8]],
    ) -> Manifest {
        let layer_descriptors: Vec<_> = layers
            .iter()
            .map(|l| {
                let digest = self.put_blob(repo, Bytes::copy_from_slice(l));
                json!({
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": digest.as_str(),
                    "size": l.len(),
                })
            })
            .collect();
        let diff_ids: Vec<String> = layers.iter().map(|l| Digest::of(l).to_string()).collect();
        let config = serde_json::to_vec(&json!({
            "architecture": architecture,
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .expect("a json! value always serializes");
        let config_size = config.len();
        let config_digest = self.put_blob(repo, config);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": media_types::OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest.as_str(),
                "size": config_size,
            },
            "layers": layer_descriptors,
        }))
        .expect("a json! value always serializes");
        let manifest =
            Manifest::from_bytes(manifest, media_types::OCI_MANIFEST).expect("built valid above");
        self.put_manifest(repo, tag, &manifest);
        manifest
    }

    /// Seed an OCI index over `children` (architecture, image manifest already in `repo`),
    /// tagged `tag` if given. Returns the index.
    pub fn seed_index(
        &self,
        repo: &str,
        tag: Option<&str>,
        children: &[(&str, &Manifest)],
    ) -> Manifest {
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": media_types::OCI_INDEX,
            "manifests": children.iter().map(|(arch, m)| json!({
                "mediaType": m.media_type,
                "digest": m.digest.as_str(),
                "size": m.bytes.len(),
                "platform": {"architecture": arch, "os": "linux"},
            })).collect::<Vec<_>>(),
        }))
        .expect("a json! value always serializes");
        let index = Manifest::from_bytes(index, media_types::OCI_INDEX).expect("built valid above");
        self.put_manifest(repo, tag, &index);
        index
    }

    /// The referrers API's answer: the manifests of `repo` whose subject is `digest`.
    fn referrers_of(&self, repo: &str, digest: &Digest, artifact_type: Option<&str>) -> Manifest {
        let inner = self.lock();
        let mut found: Vec<&Manifest> = inner
            .repos
            .get(repo)
            .map(|r| {
                r.manifests
                    .values()
                    .filter(|m| m.subject().as_ref() == Some(digest))
                    .filter(|m| {
                        artifact_type.is_none_or(|t| m.artifact_type().as_deref() == Some(t))
                    })
                    .collect()
            })
            .unwrap_or_default();
        found.sort_by(|a, b| a.digest.cmp(&b.digest));
        crate::registry::manifest::referrers_index(found)
    }

    fn resolve(inner: &Inner, repo: &str, reference: &str) -> Option<Manifest> {
        let r = inner.repos.get(repo)?;
        let digest = if is_digest(reference) {
            Digest::parse(reference).ok()?
        } else {
            r.tags.get(reference)?.clone()
        };
        r.manifests.get(&digest).cloned()
    }

    fn head(&self, repo: &str, reference: &str) -> Option<ManifestHead> {
        Self::resolve(&self.lock(), repo, reference).map(|m| ManifestHead {
            size: m.bytes.len() as u64,
            digest: m.digest,
            media_type: m.media_type,
        })
    }

    fn get(&self, repo: &str, reference: &str) -> Result<Manifest> {
        Self::resolve(&self.lock(), repo, reference).ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("manifest {repo}:{reference} not found"),
            )
        })
    }

    /// The blob's bytes from `repo`, in chunks.
    fn serve_blob(&self, repo: &str, digest: &Digest) -> Result<BlobStream> {
        let inner = self.lock();
        let linked = inner
            .repos
            .get(repo)
            .is_some_and(|r| r.blobs.contains(digest));
        let bytes = match inner.blobs.get(digest) {
            Some(b) if linked => b.clone(),
            _ => {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!("blob {digest} not found in {repo}"),
                ));
            }
        };
        let chunks: Vec<Result<Bytes>> = (0..bytes.len())
            .step_by(CHUNK)
            .map(|start| Ok(bytes.slice(start..(start + CHUNK).min(bytes.len()))))
            .collect();
        Ok(futures::stream::iter(chunks).boxed())
    }

    /// The manifest `reference` (tag or digest) of `repo`, if present.
    pub fn manifest(&self, repo: &str, reference: &str) -> Option<Manifest> {
        Self::resolve(&self.lock(), repo, reference)
    }

    /// The stored bytes of the blob `digest` (in any repository), if present.
    pub fn blob(&self, digest: &Digest) -> Option<Bytes> {
        self.lock().blobs.get(digest).cloned()
    }

    fn tags(&self, repo: &str) -> Result<Vec<String>> {
        Ok(self
            .lock()
            .repos
            .get(repo)
            .map(|r| r.tags.keys().cloned().collect())
            .unwrap_or_default())
    }
}

#[async_trait]
impl SourceRegistry for MemoryRegistry {
    async fn list_tags(&self, repo: &str) -> Result<Vec<String>> {
        if !self.lock().repos.contains_key(repo) {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("repository {repo} not found"),
            ));
        }
        self.tags(repo)
    }

    async fn head_manifest(&self, repo: &str, reference: &str) -> Result<Option<ManifestHead>> {
        Ok(self.head(repo, reference))
    }

    async fn get_manifest(&self, repo: &str, reference: &str) -> Result<Manifest> {
        self.get(repo, reference)
    }

    async fn referrers(
        &self,
        repo: &str,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Option<Manifest>> {
        Ok(Some(self.referrers_of(repo, digest, artifact_type)))
    }

    async fn get_blob(&self, repo: &str, digest: &Digest) -> Result<BlobStream> {
        self.serve_blob(repo, digest)
    }
}

#[async_trait]
impl DestRegistry for MemoryRegistry {
    /// Uploads are hashed and a mismatch is never stored.
    fn verifies_blobs(&self) -> bool {
        true
    }

    async fn list_tags(&self, repo: &str) -> Result<Vec<String>> {
        self.tags(repo)
    }

    async fn head_manifest(&self, repo: &str, reference: &str) -> Result<Option<ManifestHead>> {
        Ok(self.head(repo, reference))
    }

    async fn get_manifest(&self, repo: &str, reference: &str) -> Result<Manifest> {
        self.get(repo, reference)
    }

    async fn referrers(
        &self,
        repo: &str,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Option<Manifest>> {
        Ok(Some(self.referrers_of(repo, digest, artifact_type)))
    }

    async fn blob_size(&self, repo: &str, digest: &Digest) -> Result<Option<u64>> {
        let inner = self.lock();
        let linked = inner
            .repos
            .get(repo)
            .is_some_and(|r| r.blobs.contains(digest));
        Ok(linked
            .then(|| inner.blobs.get(digest).map(|b| b.len() as u64))
            .flatten())
    }

    async fn mount_blob(&self, repo: &str, digest: &Digest, from: &str) -> Result<bool> {
        validate_repository(repo)?;
        let mut inner = self.lock();
        let present = inner
            .repos
            .get(from)
            .is_some_and(|r| r.blobs.contains(digest));
        if present {
            inner
                .repos
                .entry(repo.to_owned())
                .or_default()
                .blobs
                .insert(digest.clone());
        }
        Ok(present)
    }

    async fn push_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        mut data: BlobStream,
    ) -> Result<()> {
        validate_repository(repo)?;
        let mut buf = Vec::new();
        while let Some(chunk) = data.next().await {
            buf.extend_from_slice(&chunk?);
        }
        let actual = Digest::of(&buf);
        if &actual != digest || buf.len() as u64 != size {
            return Err(Error::new(
                ErrorKind::DigestMismatch,
                format!(
                    "blob pushed as {digest} ({size} bytes) is {actual} ({} bytes)",
                    buf.len()
                ),
            ));
        }
        self.put_blob(repo, buf);
        Ok(())
    }

    async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        manifest: &Manifest,
    ) -> Result<Digest> {
        validate_repository(repo)?;
        // `Manifest`'s fields are public, so the label may not match the bytes: trust the bytes.
        let actual = Digest::of(&manifest.bytes);
        if actual != manifest.digest {
            return Err(Error::new(
                ErrorKind::DigestMismatch,
                format!("manifest labelled {} hashes to {actual}", manifest.digest),
            ));
        }
        if is_digest(reference) {
            if reference != manifest.digest.as_str() {
                return Err(Error::new(
                    ErrorKind::DigestMismatch,
                    format!(
                        "manifest pushed as {reference} hashes to {}",
                        manifest.digest
                    ),
                ));
            }
        } else {
            validate_tag(reference)?;
        }
        let kind = manifest.kind()?;
        let mut inner = self.lock();
        let accept_sparse = inner.accept_sparse_index;
        let r = inner.repos.entry(repo.to_owned()).or_default();
        let missing = match &kind {
            ManifestKind::Image { config, layers } => std::iter::once(config)
                .chain(layers)
                .find(|d| !r.blobs.contains(&d.digest))
                .map(|d| format!("blob {}", d.digest)),
            ManifestKind::Index { manifests } if !accept_sparse => manifests
                .iter()
                .find(|d| !r.manifests.contains_key(&d.digest))
                .map(|d| format!("child manifest {}", d.digest)),
            ManifestKind::Index { .. } => None,
        };
        if let Some(missing) = missing {
            return Err(Error::new(
                ErrorKind::InvalidManifest,
                format!(
                    "manifest {repo}:{reference} refused: {missing} is unknown (MANIFEST_BLOB_UNKNOWN)"
                ),
            ));
        }
        r.manifests
            .insert(manifest.digest.clone(), manifest.clone());
        if !is_digest(reference) {
            r.tags.insert(reference.to_owned(), manifest.digest.clone());
        }
        Ok(manifest.digest.clone())
    }

    async fn delete_tag(&self, repo: &str, tag: &str) -> Result<()> {
        match self
            .lock()
            .repos
            .get_mut(repo)
            .and_then(|r| r.tags.remove(tag))
        {
            Some(_) => Ok(()),
            None => Err(Error::new(
                ErrorKind::NotFound,
                format!("tag {repo}:{tag} not found"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::TryStreamExt;

    use super::*;

    async fn read_all(s: BlobStream) -> Result<Vec<u8>> {
        let chunks: Vec<Bytes> = s.try_collect().await?;
        Ok(chunks.concat())
    }

    fn stream_of(bytes: &'static [u8]) -> BlobStream {
        futures::stream::iter([Ok(Bytes::from_static(bytes))]).boxed()
    }

    #[tokio::test]
    async fn seeded_image_reads_back() {
        let reg = MemoryRegistry::new();
        let big = vec![7u8; CHUNK * 2 + 5];
        let m = reg.seed_image("src/app", Some("v1"), "amd64", &[b"layer", &big]);
        assert_eq!(
            SourceRegistry::list_tags(&reg, "src/app").await.unwrap(),
            ["v1"]
        );
        let head = SourceRegistry::head_manifest(&reg, "src/app", "v1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(head.digest, m.digest);
        let ManifestKind::Image { layers, .. } = m.kind().unwrap() else {
            panic!("an image")
        };
        let data = read_all(reg.get_blob("src/app", &layers[1].digest).await.unwrap())
            .await
            .unwrap();
        assert_eq!(data, big);
        assert_eq!(reg.blob(&layers[1].digest).unwrap(), big);
        let missing = SourceRegistry::list_tags(&reg, "src/none")
            .await
            .unwrap_err();
        assert_eq!(missing.kind(), ErrorKind::NotFound);
    }

    #[tokio::test]
    async fn push_verifies_digest_and_size() {
        let reg = MemoryRegistry::new();
        let right = Digest::of(b"abc");
        reg.push_blob("d/r", &right, 3, stream_of(b"abc"))
            .await
            .unwrap();
        assert!(reg.has_blob("d/r", &right).await.unwrap());
        let e = reg
            .push_blob("d/r", &Digest::of(b"xyz"), 3, stream_of(b"abc"))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::DigestMismatch);
        let e = reg
            .push_blob("d/r", &right, 4, stream_of(b"abc"))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::DigestMismatch);
        assert!(!reg.has_blob("d/r", &Digest::of(b"xyz")).await.unwrap());
    }

    #[tokio::test]
    async fn manifest_needs_its_blobs_and_index_its_children() {
        let src = MemoryRegistry::new();
        let image = src.seed_image("s/r", None, "arm64", &[b"l"]);
        let index = src.seed_index("s/r", Some("multi"), &[("arm64", &image)]);

        let dest = MemoryRegistry::new();
        let e = dest.push_manifest("d/r", "v1", &image).await.unwrap_err();
        assert!(e.message().contains("MANIFEST_BLOB_UNKNOWN"), "{e}");
        let e = dest
            .push_manifest("d/r", "multi", &index)
            .await
            .unwrap_err();
        assert!(e.message().contains("child manifest"), "{e}");
        dest.set_accept_sparse_index(true);
        dest.push_manifest("d/r", "multi", &index).await.unwrap();
        assert_eq!(dest.tag_map("d/r")["multi"], index.digest);
    }

    #[tokio::test]
    async fn mount_links_a_blob_from_another_repository() {
        let reg = MemoryRegistry::new();
        let d = reg.put_blob("a/one", &b"shared"[..]);
        assert!(reg.mount_blob("a/two", &d, "a/one").await.unwrap());
        assert!(reg.has_blob("a/two", &d).await.unwrap());
        assert!(!reg.mount_blob("a/three", &d, "a/none").await.unwrap());
        assert!(!reg.has_blob("a/three", &d).await.unwrap());
    }

    #[tokio::test]
    async fn delete_tag_keeps_other_tags() {
        let reg = MemoryRegistry::new();
        let m = reg.seed_image("s/r", Some("a"), "amd64", &[b"x"]);
        reg.put_manifest("s/r", Some("b"), &m);
        reg.delete_tag("s/r", "a").await.unwrap();
        assert_eq!(reg.tag_map("s/r").keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(
            reg.delete_tag("s/r", "a").await.unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }
}
