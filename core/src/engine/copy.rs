//! Staging (SEMANTICS.md §3 step 4, §4): copying each tag's blobs and child manifests into the
//! destination by digest, before any tag moves.
//!
//! All tags are staged at once, sharing the run's one bounded pool. Each blob and each manifest
//! is handled at most once per run, however many tags share it. For each blob: HEAD the
//! destination; else mount it from another destination repository known to hold it; else
//! stream it from the source to the destination, verifying size and sha256 on the fly.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::future::{BoxFuture, join_all};
use futures::{FutureExt, Stream, StreamExt, TryStreamExt};
use sha2::{Digest as _, Sha256};

use super::context::{Run, Staged, cell};
use super::platform::{self, PlatformFit};
use super::progress::{BlobTransfer, Progress, ProgressEvent};
use crate::config::{PlatformIndexMode, RollbackMode};
use crate::error::{Error, ErrorKind, Result};
use crate::failure::{Detail, Side};
use crate::reference::Digest;
use crate::registry::manifest::{
    MAX_INDEX_DEPTH, MAX_MANIFESTS_PER_TAG, ManifestKind, Reference, media_types,
};
use crate::registry::{BlobStream, Manifest};

/// Config blobs larger than this are refused when read to learn an image's architecture.
const MAX_CONFIG_BYTES: u64 = 16 << 20;
/// Progress reports a streaming blob about this often.
const PROGRESS_EVERY: u64 = 1 << 20;
/// A blob copy that failed for a temporary reason once its stream had started (the source's
/// connection cut or stalled, the destination dropping the upload or answering its final
/// request with a server error) is started again from a fresh source stream this many times.
/// Failures before the stream started are not repeated here: the HTTP client already repeats
/// requests up to their response headers (opening the upload session, fetching the blob).
const BLOB_RETRIES: u32 = 2;
/// The wait before the first new attempt of a cut-short copy; it doubles each time.
const BLOB_RETRY_DELAY: Duration = Duration::from_millis(500);

/// How far one tag's manifests may reach (SEMANTICS.md §10): indexes nest at most
/// [`MAX_INDEX_DEPTH`] levels and the tag reaches at most [`MAX_MANIFESTS_PER_TAG`] child
/// manifests, so a registry serving endless nesting or fan-out fails that tag instead of
/// keeping the run busy.
#[derive(Debug)]
pub(crate) struct Walk {
    left: AtomicUsize,
}

impl Walk {
    pub(crate) fn new() -> Self {
        Walk {
            left: AtomicUsize::new(MAX_MANIFESTS_PER_TAG),
        }
    }

    /// Account for `children` entries of `index`, an index at nesting `level` (1 for a tag's
    /// own index).
    pub(crate) fn enter(&self, level: usize, children: usize, index: &Digest) -> Result<()> {
        if level > MAX_INDEX_DEPTH {
            return Err(too_deep(index, level));
        }
        let taken = self
            .left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(children)
            });
        if taken.is_err() {
            return Err(Error::new(
                ErrorKind::InvalidManifest,
                format!(
                    "index {index} brings the tag over the limit of {MAX_MANIFESTS_PER_TAG} child manifests"
                ),
            ));
        }
        Ok(())
    }

    /// The nesting height of an index at `level` whose children's heights are `heights` (1
    /// plus the highest), checked against the depth limit; the first child's error if any.
    /// Checked here too because a child staged once per run may have been reached by another
    /// tag at a shallower level.
    pub(crate) fn check_height(
        &self,
        level: usize,
        heights: Vec<Result<usize>>,
        index: &Digest,
    ) -> Result<usize> {
        let highest = heights
            .into_iter()
            .collect::<Result<Vec<usize>>>()?
            .into_iter()
            .max()
            .unwrap_or(0);
        let height = highest + 1;
        let deepest = level + height - 1;
        if deepest > MAX_INDEX_DEPTH {
            return Err(too_deep(index, deepest));
        }
        Ok(height)
    }
}

/// A child manifest the source does not hold, though its index names it: the source is a
/// sparse copy (an OCI layout written for some platforms only, say).
pub(crate) fn missing_child(e: Error) -> Error {
    match e.kind() {
        ErrorKind::NotFound => e.with_detail(Detail::SparseSource),
        _ => e,
    }
}

fn too_deep(index: &Digest, levels: usize) -> Error {
    Error::new(
        ErrorKind::InvalidManifest,
        format!(
            "index {index} nests indexes {levels} levels deep, over the limit of {MAX_INDEX_DEPTH}"
        ),
    )
}

impl Run {
    /// Stage the manifest `digest` a tag points at (once per run, whatever the number of tags).
    pub(crate) async fn stage_top(
        self: &Arc<Self>,
        digest: &Digest,
        fetched: Option<Manifest>,
    ) -> Result<Staged> {
        let cell = cell(&self.tops, digest);
        let staged = cell
            .get_or_init(|| async {
                self.stage_manifest(digest, fetched)
                    .await
                    .map_err(Into::into)
            })
            .await;
        staged.clone().map_err(Into::into)
    }

    async fn stage_manifest(
        self: &Arc<Self>,
        digest: &Digest,
        fetched: Option<Manifest>,
    ) -> Result<Staged> {
        let manifest = match fetched {
            Some(manifest) => manifest,
            None => self.fetch_manifest(digest).await?,
        };
        let ready = |manifest: Manifest| Staged::Ready {
            manifest,
            source_digest: digest.clone(),
        };
        let architectures = &self.config.architectures;
        match manifest.kind()? {
            ManifestKind::Image { config, layers } => {
                let preloaded = match self.platform_fit(&config).await? {
                    PlatformFit::Selected(preloaded) => preloaded,
                    PlatformFit::Excluded(reason) => return Ok(Staged::Skipped { reason }),
                };
                self.stage_image_content(&config, &layers, preloaded)
                    .await?;
                self.stage_top_manifest(&manifest).await?;
                Ok(ready(manifest))
            }
            ManifestKind::Index { manifests } => {
                let chosen = platform::chosen(digest, &manifests, architectures)?;
                let walk = Walk::new();
                walk.enter(1, chosen.len(), digest)?;
                let heights = join_all(chosen.iter().map(|c| self.stage_child(c, &walk, 1))).await;
                walk.check_height(1, heights, digest)?;
                if chosen.len() == manifests.len() {
                    self.stage_top_manifest(&manifest).await?;
                    return Ok(ready(manifest));
                }
                // A sparse index is always staged: whether the destination accepts it must be
                // known before any tag moves.
                match self.push_by_digest(&manifest).await {
                    Ok(()) => Ok(ready(manifest)),
                    // Only a refusal of the content says the index must be rewritten: an
                    // outage or a missing permission is the tag's failure, and rewriting on it
                    // would publish another digest than the source's for no reason.
                    Err(e)
                        if e.kind() == ErrorKind::Cancelled
                            || self.is_aborted()
                            || e.kind().is_temporary()
                            || matches!(
                                e.kind(),
                                ErrorKind::Unauthorized | ErrorKind::Forbidden
                            ) =>
                    {
                        Err(e)
                    }
                    Err(e) if self.config.platform_index == PlatformIndexMode::Rewrite => {
                        let rewritten = platform::rewrite_index(&manifest, &chosen, architectures)?;
                        self.push_by_digest(&rewritten).await.map_err(|e2| {
                            e2.context(format!(
                                "the destination refused the sparse index ({e}) and the rewritten index"
                            ))
                        })?;
                        Ok(ready(rewritten))
                    }
                    Err(e) => {
                        let message = format!(
                            "the destination refused the sparse index {digest} ({} of {} platforms copied): {}; \
                             set platform_index = rewrite to push an index of the selected platforms instead",
                            chosen.len(),
                            manifests.len(),
                            e.message()
                        );
                        Err(e.with_message(message).with_detail(Detail::SparseIndex))
                    }
                }
            }
        }
    }

    /// A child manifest of an index at nesting `level`, staged by digest once per run. Returns
    /// the index nesting below the child (0 for an image).
    pub(crate) fn stage_child<'a>(
        self: &'a Arc<Self>,
        child: &'a Reference,
        walk: &'a Walk,
        level: usize,
    ) -> BoxFuture<'a, Result<usize>> {
        async move {
            let cell = cell(&self.children, &(child.digest.clone(), child.size));
            let done = cell
                .get_or_init(|| async {
                    self.stage_child_once(child, walk, level)
                        .await
                        .map_err(Into::into)
                })
                .await;
            done.clone().map_err(Into::into)
        }
        .boxed()
    }

    async fn stage_child_once(
        self: &Arc<Self>,
        child: &Reference,
        walk: &Walk,
        level: usize,
    ) -> Result<usize> {
        let digest = &child.digest;
        let present = self
            .metadata_unit(self.dest.head_manifest(&self.dest_repo, digest.as_str()))
            .await?;
        if let Some(head) = &present {
            child.check_size(head.size)?;
            // The destination accepted it before, so everything it references is there; only
            // an index's nesting is left to learn, from its bytes.
            if !media_types::is_index(&head.media_type) {
                return Ok(0);
            }
        }
        let manifest = self.fetch_manifest(digest).await.map_err(missing_child)?;
        child.check_size(manifest.bytes.len() as u64)?;
        let height = match manifest.kind()? {
            ManifestKind::Image { config, layers } => {
                self.stage_image_content(&config, &layers, None).await?;
                0
            }
            ManifestKind::Index { manifests } => {
                let level = level + 1;
                walk.enter(level, manifests.len(), digest)?;
                let heights =
                    join_all(manifests.iter().map(|c| self.stage_child(c, walk, level))).await;
                walk.check_height(level, heights, digest)?
            }
        };
        if present.is_none() {
            self.push_manifest_digest(&manifest).await?;
        }
        Ok(height)
    }

    /// The source manifest `digest`, verified.
    pub(crate) async fn fetch_manifest(&self, digest: &Digest) -> Result<Manifest> {
        let manifest = self
            .metadata_unit(self.source.get_manifest(&self.src_repo, digest.as_str()))
            .await?;
        if &manifest.digest != digest {
            return Err(Error::new(
                ErrorKind::DigestMismatch,
                format!(
                    "the source served manifest {digest} with bytes that hash to {}",
                    manifest.digest
                ),
            )
            .on_side(Side::Source));
        }
        Ok(manifest)
    }

    /// With `all_or_nothing`, store a tag's manifest untagged before publishing, so that a
    /// destination refusing it fails the run before any tag moves (nothing to undo). Otherwise
    /// publishing it under the tag is the first push (one round trip less per tag).
    async fn stage_top_manifest(&self, manifest: &Manifest) -> Result<()> {
        if self.config.rollback == RollbackMode::AllOrNothing {
            self.push_by_digest(manifest).await
        } else {
            Ok(())
        }
    }

    /// Store `manifest` untagged, unless the destination already has it.
    async fn push_by_digest(&self, manifest: &Manifest) -> Result<()> {
        let present = self
            .metadata_unit(
                self.dest
                    .head_manifest(&self.dest_repo, manifest.digest.as_str()),
            )
            .await?;
        if present.is_some() {
            return Ok(());
        }
        self.push_manifest_digest(manifest).await
    }

    async fn push_manifest_digest(&self, manifest: &Manifest) -> Result<()> {
        self.unit(
            self.dest
                .push_manifest(&self.dest_repo, manifest.digest.as_str(), manifest),
        )
        .await
        .map(drop)
    }

    async fn stage_image_content(
        self: &Arc<Self>,
        config: &Reference,
        layers: &[Reference],
        preloaded_config: Option<Bytes>,
    ) -> Result<()> {
        let config = self.copy_blob(config, preloaded_config);
        let layers = layers.iter().map(|l| self.copy_blob(l, None));
        all_ok(std::iter::once(config).chain(layers)).await
    }

    /// Whether the architecture filter selects a single-platform manifest with `config`,
    /// reading the config when the filter must know its architecture.
    pub(crate) async fn platform_fit(&self, config: &Reference) -> Result<PlatformFit> {
        let architectures = &self.config.architectures;
        if !platform::reads_config(architectures, config) {
            return Ok(PlatformFit::Selected(None));
        }
        let bytes = self.read_config(config).await?;
        platform::config_fit(bytes, &config.digest, architectures)
    }

    /// Read a config blob whole (it is small) to learn the image's platform, verified.
    async fn read_config(&self, config: &Reference) -> Result<Bytes> {
        if config.size > MAX_CONFIG_BYTES {
            return Err(Error::new(
                ErrorKind::InvalidManifest,
                format!(
                    "config blob {} is {} bytes, over the {MAX_CONFIG_BYTES}-byte limit",
                    config.digest, config.size
                ),
            ));
        }
        self.unit(async {
            let mut retries = 0;
            loop {
                let stream = self.source.get_blob(&self.src_repo, &config.digest).await?;
                let verified = Verified::new(stream, config, Progress::default());
                let started = Arc::clone(&verified.started);
                match verified.try_collect::<Vec<Bytes>>().await {
                    Ok(chunks) => return Ok(Bytes::from(chunks.concat())),
                    Err(e) => match self.reread_wait(&e, &started, retries) {
                        Some(wait) => {
                            retries += 1;
                            tokio::time::sleep(wait).await;
                        }
                        None => return Err(e),
                    },
                }
            }
        })
        .await
    }

    /// How long to wait before reading a blob again after a copy failed with `e`, or `None` to
    /// give up. Only a copy whose stream had started and failed for a temporary reason is
    /// read again (corrupt content is not temporary).
    fn reread_wait(&self, e: &Error, started: &AtomicBool, retries: u32) -> Option<Duration> {
        if !started.load(Ordering::SeqCst)
            || !e.kind().is_temporary()
            || retries >= BLOB_RETRIES
            || self.is_stopped()
        {
            return None;
        }
        let wait = BLOB_RETRY_DELAY * 2u32.pow(retries);
        tracing::debug!(mirror = %self.config.id, "{e}; reading the blob again in {wait:?}");
        Some(wait)
    }

    /// Make `blob` present in the destination repository, once per run.
    async fn copy_blob(self: &Arc<Self>, blob: &Reference, preloaded: Option<Bytes>) -> Result<()> {
        let cell = cell(&self.blobs, &(blob.digest.clone(), blob.size));
        let done = cell
            .get_or_init(|| async {
                let run = Arc::clone(self);
                let blob = blob.clone();
                // On its own task so that hashing runs in parallel with other blobs.
                let task =
                    tokio::spawn(
                        async move { run.unit(run.transfer_blob(&blob, preloaded)).await },
                    );
                match task.await {
                    Ok(result) => result.map_err(Into::into),
                    Err(e) => Err(Error::new(
                        ErrorKind::Internal,
                        format!("copying a blob panicked: {e}"),
                    )
                    .into()),
                }
            })
            .await;
        done.clone()
            .map_err(|e| Error::from(e).context(format!("blob {}", blob.digest)))
    }

    async fn transfer_blob(&self, blob: &Reference, preloaded: Option<Bytes>) -> Result<()> {
        let digest = &blob.digest;
        let finished = |transfer| {
            self.progress.emit(ProgressEvent::BlobFinished {
                digest: digest.clone(),
                transfer,
            });
        };
        // A blob already there (or mountable) is not streamed, so its size is checked here:
        // the digest is right, but a descriptor whose size lies must not be published.
        if let Some(size) = self.dest.blob_size(&self.dest_repo, digest).await? {
            blob.check_size(size)?;
            self.stats.blobs_present.fetch_add(1, Ordering::Relaxed);
            self.known.note(digest, &self.dest_repo, size);
            finished(BlobTransfer::Present);
            return Ok(());
        }
        if let Some((from, size)) = self.known.elsewhere(digest, &self.dest_repo) {
            blob.check_size(size)?;
            // A failed mount is only a missed shortcut: fall through to copying.
            if let Ok(true) = self.dest.mount_blob(&self.dest_repo, digest, &from).await {
                self.stats.blobs_mounted.fetch_add(1, Ordering::Relaxed);
                self.known.note(digest, &self.dest_repo, size);
                finished(BlobTransfer::Mounted);
                return Ok(());
            }
        }
        let mut retries = 0;
        loop {
            let stream: BlobStream = match &preloaded {
                Some(bytes) => {
                    futures::stream::once(futures::future::ready(Ok(bytes.clone()))).boxed()
                }
                None => self.source.get_blob(&self.src_repo, digest).await?,
            };
            let mut verified = Verified::new(stream, blob, self.progress.clone());
            if self.dest.verifies_blobs() {
                verified.hasher = None;
            }
            let started = Arc::clone(&verified.started);
            match self
                .dest
                .push_blob(&self.dest_repo, digest, blob.size, verified.boxed())
                .await
            {
                Ok(()) => break,
                Err(e) => match self.reread_wait(&e, &started, retries) {
                    Some(wait) => {
                        retries += 1;
                        tokio::time::sleep(wait).await;
                        // The destination may have stored it all and only the answer was lost
                        // (it verified the digest): no need to read it again then.
                        if let Ok(true) = self.dest.has_blob(&self.dest_repo, digest).await {
                            break;
                        }
                    }
                    None => return Err(e),
                },
            }
        }
        self.stats.blobs_copied.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes_copied
            .fetch_add(blob.size, Ordering::Relaxed);
        self.known.note(digest, &self.dest_repo, blob.size);
        finished(BlobTransfer::Copied);
        Ok(())
    }
}

/// Wait for every one of `work`, then fail with the first error. Unlike `try_join_all`, no
/// sibling is dropped half-way: it may be the one initializing a once-per-run cell other tags
/// wait on, and dropping it would make a waiter start the same copy again while the first one
/// runs on, detached.
async fn all_ok<F: Future<Output = Result<()>>>(work: impl IntoIterator<Item = F>) -> Result<()> {
    join_all(work).await.into_iter().collect()
}

/// A blob stream checked against its descriptor as it flows: more bytes than declared, fewer,
/// or a different sha256 end the stream with `DigestMismatch` instead of a clean end, so the
/// destination never completes the upload. Without a hasher only the size is checked (for
/// destinations that hash uploads themselves).
struct Verified {
    inner: BlobStream,
    hasher: Option<Sha256>,
    digest: Digest,
    size: u64,
    seen: u64,
    reported: u64,
    progress: Progress,
    done: bool,
    /// Set once any bytes were asked for: a temporary failure from then on may be tried again
    /// from a new stream, since nothing below the engine can replay a consumed stream.
    started: Arc<AtomicBool>,
}

impl Verified {
    fn new(inner: BlobStream, blob: &Reference, progress: Progress) -> Self {
        Verified {
            inner,
            hasher: Some(Sha256::new()),
            digest: blob.digest.clone(),
            size: blob.size,
            seen: 0,
            reported: 0,
            progress,
            done: false,
            started: Arc::new(AtomicBool::new(false)),
        }
    }

    fn mismatch(&self, why: String) -> Error {
        Error::new(
            ErrorKind::DigestMismatch,
            format!("blob {} from the source is corrupt: {why}", self.digest),
        )
    }

    fn report(&mut self) {
        self.reported = self.seen;
        self.progress.emit(ProgressEvent::BlobBytes {
            digest: self.digest.clone(),
            done: self.seen,
            total: self.size,
        });
    }
}

impl Stream for Verified {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        self.started.store(true, Ordering::SeqCst);
        match self.inner.poll_next_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                self.seen += chunk.len() as u64;
                if self.seen > self.size {
                    self.done = true;
                    let e = self.mismatch(format!("more than the declared {} bytes", self.size));
                    return Poll::Ready(Some(Err(e)));
                }
                if let Some(hasher) = &mut self.hasher {
                    hasher.update(&chunk);
                }
                if self.seen - self.reported >= PROGRESS_EVERY {
                    self.report();
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                self.done = true;
                if self.seen != self.size {
                    let e = self.mismatch(format!(
                        "{} bytes instead of the declared {}",
                        self.seen, self.size
                    ));
                    return Poll::Ready(Some(Err(e)));
                }
                if let Some(hasher) = self.hasher.take() {
                    let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
                    if actual != self.digest.as_str() {
                        let e = self.mismatch(format!("its bytes hash to {actual}"));
                        return Poll::Ready(Some(Err(e)));
                    }
                }
                self.report();
                Poll::Ready(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verify(data: &'static [u8], digest: Digest, size: u64) -> Result<Vec<u8>> {
        let chunks: Vec<Result<Bytes>> =
            data.chunks(3).map(|c| Ok(Bytes::from_static(c))).collect();
        let blob = Reference {
            media_type: String::new(),
            digest,
            size,
            platform: None,
        };
        let stream = Verified::new(
            futures::stream::iter(chunks).boxed(),
            &blob,
            Progress::default(),
        );
        futures::executor::block_on(stream.try_collect::<Vec<Bytes>>()).map(|c| c.concat())
    }

    #[test]
    fn verified_stream_passes_matching_bytes_through() {
        let data = b"hello, blob";
        let out = verify(data, Digest::of(data), data.len() as u64).unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn verified_stream_refuses_wrong_digest_and_sizes() {
        let data = b"hello, blob";
        let len = data.len() as u64;
        for (digest, size, why) in [
            (Digest::of(b"other"), len, "hash to"),
            (Digest::of(data), len - 1, "more than the declared"),
            (Digest::of(data), len + 1, "instead of the declared"),
        ] {
            let e = verify(data, digest, size).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::DigestMismatch);
            assert!(e.message().contains(why), "{e}");
        }
    }
}
