//! For the engine's unit tests: a [`MemoryRegistry`] wrapped so that tests can inject faults
//! ([`Fault`]), slow blob reads down and read counters ([`FaultyRegistry::counters`]), keeping
//! such hooks out of the public registry. It derefs to the wrapped registry for seeding and
//! inspection.

use std::collections::{HashMap, HashSet};
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use crate::error::{Error, ErrorKind, Result};
use crate::reference::Digest;
use crate::registry::{
    BlobStream, DestRegistry, Manifest, ManifestHead, MemoryRegistry, SourceRegistry,
};

/// A failure a test can make the registry produce.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Fault {
    /// `list_tags` of this repository fails with `Network`.
    ListTags { repo: String },
    /// Reading this blob fails with `Network` (in any repository).
    UnreadableBlob(Digest),
    /// This blob is served with one byte flipped, so it no longer matches its digest.
    CorruptBlob(Digest),
    /// Reading this blob yields nothing until the fault is healed (a stalled connection).
    StallBlob(Digest),
    /// Pushing a manifest to this repository under `reference` (tag or digest) fails with `Network`.
    PushManifest { repo: String, reference: String },
    /// Deleting this tag fails with `Network`.
    DeleteTag { repo: String, tag: String },
}

/// What the registry counted since it was created (or [`FaultyRegistry::reset_counters`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// `get_blob` calls per digest.
    pub blob_reads: HashMap<Digest, usize>,
    /// Completed `push_blob` calls per digest.
    pub blob_pushes: HashMap<Digest, usize>,
    /// Successful `mount_blob` calls.
    pub mounts: usize,
    /// `get_manifest` calls.
    pub manifest_reads: usize,
    /// Successful `push_manifest` calls.
    pub manifest_pushes: usize,
    /// The most blob reads that were streaming at the same time.
    pub max_concurrent_blob_reads: usize,
}

#[derive(Debug, Default)]
struct State {
    faults: HashSet<Fault>,
    counters: Counters,
    /// Blob streams handed out and not yet dropped.
    open_blob_reads: usize,
    /// A pause before each chunk of a blob read, so that reads overlap like network transfers.
    chunk_delay: Option<Duration>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding the lock can only come from a failed test assertion elsewhere.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counts one open blob read until the stream holding it is dropped.
struct OpenRead(Arc<Mutex<State>>);

impl Drop for OpenRead {
    fn drop(&mut self) {
        lock(&self.0).open_blob_reads -= 1;
    }
}

/// A [`MemoryRegistry`] with faults and counters. Cloning shares contents, faults and counters.
#[derive(Debug, Clone, Default)]
pub struct FaultyRegistry {
    inner: MemoryRegistry,
    state: Arc<Mutex<State>>,
}

impl Deref for FaultyRegistry {
    type Target = MemoryRegistry;

    fn deref(&self) -> &MemoryRegistry {
        &self.inner
    }
}

impl FaultyRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Start producing `fault`.
    pub fn inject(&self, fault: Fault) {
        self.state().faults.insert(fault);
    }

    /// Stop producing `fault`.
    pub fn heal(&self, fault: &Fault) {
        self.state().faults.remove(fault);
    }

    fn has_fault(&self, fault: &Fault) -> bool {
        self.state().faults.contains(fault)
    }

    /// Fails with `Network` while `fault` is injected.
    fn check(&self, fault: Fault, what: impl std::fmt::Display) -> Result<()> {
        if self.has_fault(&fault) {
            return Err(Error::new(
                ErrorKind::Network,
                format!("injected fault: {what}"),
            ));
        }
        Ok(())
    }

    /// Pause this long before each chunk of every blob read (chunks are 16 KiB).
    pub fn set_chunk_delay(&self, delay: Option<Duration>) {
        self.state().chunk_delay = delay;
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> Counters {
        self.state().counters.clone()
    }

    /// Zero every counter.
    pub fn reset_counters(&self) {
        self.state().counters = Counters::default();
    }

    /// How many times `digest` was read with `get_blob`.
    pub fn blob_reads(&self, digest: &Digest) -> usize {
        self.state()
            .counters
            .blob_reads
            .get(digest)
            .copied()
            .unwrap_or(0)
    }

    /// How many `get_blob` calls there were in all.
    pub fn total_blob_reads(&self) -> usize {
        self.state().counters.blob_reads.values().sum()
    }

    /// The wrapped registry's blob stream, corrupted if a fault says so, counted as open until
    /// dropped.
    async fn serve_blob(&self, repo: &str, digest: &Digest) -> Result<BlobStream> {
        let stream = SourceRegistry::get_blob(&self.inner, repo, digest).await?;
        let corrupt_at = if self.has_fault(&Fault::CorruptBlob(digest.clone())) {
            DestRegistry::blob_size(&self.inner, repo, digest)
                .await?
                .and_then(|size| size.checked_sub(1))
        } else {
            None
        };
        let (open, delay) = {
            let mut state = self.state();
            state.open_blob_reads += 1;
            state.counters.max_concurrent_blob_reads = state
                .counters
                .max_concurrent_blob_reads
                .max(state.open_blob_reads);
            (OpenRead(Arc::clone(&self.state)), state.chunk_delay)
        };
        let mut offset = 0u64;
        Ok(stream
            .then(move |chunk| async move {
                if let Some(delay) = delay {
                    tokio::time::sleep(delay).await;
                }
                chunk
            })
            .map(move |chunk| {
                let _counted = &open;
                let chunk = chunk?;
                let start = offset;
                offset += chunk.len() as u64;
                match corrupt_at {
                    Some(at) if (start..offset).contains(&at) => {
                        let mut flipped = chunk.to_vec();
                        flipped[(at - start) as usize] ^= 0xff;
                        Ok(Bytes::from(flipped))
                    }
                    _ => Ok(chunk),
                }
            })
            .boxed())
    }
}

#[async_trait]
impl SourceRegistry for FaultyRegistry {
    async fn list_tags(&self, repo: &str) -> Result<Vec<String>> {
        let tags = SourceRegistry::list_tags(&self.inner, repo).await?;
        self.check(
            Fault::ListTags {
                repo: repo.to_owned(),
            },
            format!("listing tags of {repo}"),
        )?;
        Ok(tags)
    }

    async fn head_manifest(&self, repo: &str, reference: &str) -> Result<Option<ManifestHead>> {
        SourceRegistry::head_manifest(&self.inner, repo, reference).await
    }

    async fn get_manifest(&self, repo: &str, reference: &str) -> Result<Manifest> {
        self.state().counters.manifest_reads += 1;
        SourceRegistry::get_manifest(&self.inner, repo, reference).await
    }

    async fn referrers(
        &self,
        repo: &str,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Option<Manifest>> {
        SourceRegistry::referrers(&self.inner, repo, digest, artifact_type).await
    }

    async fn get_blob(&self, repo: &str, digest: &Digest) -> Result<BlobStream> {
        *self
            .state()
            .counters
            .blob_reads
            .entry(digest.clone())
            .or_default() += 1;
        self.check(
            Fault::UnreadableBlob(digest.clone()),
            format!("reading blob {digest}"),
        )?;
        let stalled = self.has_fault(&Fault::StallBlob(digest.clone()));
        if !stalled {
            return self.serve_blob(repo, digest).await;
        }
        let (reg, repo, digest) = (self.clone(), repo.to_owned(), digest.clone());
        let resumed = async move {
            let fault = Fault::StallBlob(digest.clone());
            while reg.has_fault(&fault) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            match reg.serve_blob(&repo, &digest).await {
                Ok(stream) => stream,
                Err(e) => futures::stream::iter([Err(e)]).boxed(),
            }
        };
        Ok(futures::stream::once(resumed).flatten().boxed())
    }
}

#[async_trait]
impl DestRegistry for FaultyRegistry {
    fn verifies_blobs(&self) -> bool {
        self.inner.verifies_blobs()
    }

    async fn list_tags(&self, repo: &str) -> Result<Vec<String>> {
        let tags = DestRegistry::list_tags(&self.inner, repo).await?;
        self.check(
            Fault::ListTags {
                repo: repo.to_owned(),
            },
            format!("listing tags of {repo}"),
        )?;
        Ok(tags)
    }

    async fn head_manifest(&self, repo: &str, reference: &str) -> Result<Option<ManifestHead>> {
        DestRegistry::head_manifest(&self.inner, repo, reference).await
    }

    async fn get_manifest(&self, repo: &str, reference: &str) -> Result<Manifest> {
        self.state().counters.manifest_reads += 1;
        DestRegistry::get_manifest(&self.inner, repo, reference).await
    }

    async fn referrers(
        &self,
        repo: &str,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Option<Manifest>> {
        DestRegistry::referrers(&self.inner, repo, digest, artifact_type).await
    }

    async fn blob_size(&self, repo: &str, digest: &Digest) -> Result<Option<u64>> {
        self.inner.blob_size(repo, digest).await
    }

    async fn mount_blob(&self, repo: &str, digest: &Digest, from: &str) -> Result<bool> {
        let mounted = self.inner.mount_blob(repo, digest, from).await?;
        if mounted {
            self.state().counters.mounts += 1;
        }
        Ok(mounted)
    }

    async fn push_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        data: BlobStream,
    ) -> Result<()> {
        self.inner.push_blob(repo, digest, size, data).await?;
        *self
            .state()
            .counters
            .blob_pushes
            .entry(digest.clone())
            .or_default() += 1;
        Ok(())
    }

    async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        manifest: &Manifest,
    ) -> Result<Digest> {
        self.check(
            Fault::PushManifest {
                repo: repo.to_owned(),
                reference: reference.to_owned(),
            },
            format!("pushing manifest {repo}:{reference}"),
        )?;
        let digest = self.inner.push_manifest(repo, reference, manifest).await?;
        self.state().counters.manifest_pushes += 1;
        Ok(digest)
    }

    async fn delete_tag(&self, repo: &str, tag: &str) -> Result<()> {
        self.check(
            Fault::DeleteTag {
                repo: repo.to_owned(),
                tag: tag.to_owned(),
            },
            format!("deleting tag {repo}:{tag}"),
        )?;
        self.inner.delete_tag(repo, tag).await
    }
}

#[cfg(test)]
mod tests {
    use futures::TryStreamExt;

    use super::*;
    use crate::registry::ManifestKind;

    async fn read_all(s: BlobStream) -> Result<Vec<u8>> {
        let chunks: Vec<Bytes> = s.try_collect().await?;
        Ok(chunks.concat())
    }

    #[tokio::test]
    async fn counts_reads_and_mounts() {
        let reg = FaultyRegistry::new();
        let big = vec![7u8; 40_000];
        let m = reg.seed_image("src/app", Some("v1"), "amd64", &[b"layer", &big]);
        let ManifestKind::Image { layers, .. } = m.kind().unwrap() else {
            panic!("an image")
        };
        let data = read_all(reg.get_blob("src/app", &layers[1].digest).await.unwrap())
            .await
            .unwrap();
        assert_eq!(data, big);
        assert_eq!(reg.blob_reads(&layers[1].digest), 1);
        assert!(
            reg.mount_blob("src/two", &layers[1].digest, "src/app")
                .await
                .unwrap()
        );
        assert!(
            !reg.mount_blob("src/three", &m.digest, "src/none")
                .await
                .unwrap()
        );
        assert_eq!(reg.counters().mounts, 1);
    }

    #[tokio::test]
    async fn faults_break_what_they_name() {
        let reg = FaultyRegistry::new();
        let m = reg.seed_image("s/r", Some("t"), "amd64", &[b"payload"]);
        let ManifestKind::Image { layers, .. } = m.kind().unwrap() else {
            panic!("an image")
        };
        let layer = layers[0].digest.clone();

        reg.inject(Fault::CorruptBlob(layer.clone()));
        let data = read_all(reg.get_blob("s/r", &layer).await.unwrap())
            .await
            .unwrap();
        assert_eq!(data.len(), b"payload".len());
        assert_ne!(Digest::of(&data), layer);

        reg.inject(Fault::UnreadableBlob(layer.clone()));
        assert_eq!(
            reg.get_blob("s/r", &layer).await.err().unwrap().kind(),
            ErrorKind::Network
        );
        reg.heal(&Fault::UnreadableBlob(layer.clone()));
        reg.heal(&Fault::CorruptBlob(layer.clone()));
        let data = read_all(reg.get_blob("s/r", &layer).await.unwrap())
            .await
            .unwrap();
        assert_eq!(data, b"payload");

        reg.inject(Fault::ListTags { repo: "s/r".into() });
        assert!(SourceRegistry::list_tags(&reg, "s/r").await.is_err());

        reg.inject(Fault::DeleteTag {
            repo: "s/r".into(),
            tag: "t".into(),
        });
        assert!(reg.delete_tag("s/r", "t").await.is_err());
        reg.inject(Fault::PushManifest {
            repo: "s/r".into(),
            reference: "u".into(),
        });
        assert!(reg.push_manifest("s/r", "u", &m).await.is_err());
        assert_eq!(reg.blob_reads(&layer), 3);
    }
}
