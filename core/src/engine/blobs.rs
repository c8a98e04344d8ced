//! Copying blobs (SEMANTICS.md §4): each blob at most once per run, however many tags share
//! it. HEAD the destination; else mount it from another destination repository known to hold
//! it; else stream it from the source to the destination, verifying size and sha256 on the
//! fly. Also the one blob the engine reads whole: an image's config, for its platform.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use sha2::{Digest as _, Sha256};

use super::context::{Run, Staging, cell};
use super::progress::{BlobTransfer, Progress, ProgressEvent};
use crate::error::{Error, ErrorKind, Result};
use crate::reference::Digest;
use crate::registry::manifest::Reference;
use crate::registry::{BlobStream, SMALL_BLOB_MAX};

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

impl Run {
    /// Read a config blob whole (it is small) to learn the image's platform, verified.
    pub(crate) async fn read_config(&self, config: &Reference) -> Result<Bytes> {
        if config.size > MAX_CONFIG_BYTES {
            return Err(Error::new(
                ErrorKind::InvalidManifest,
                format!(
                    "config blob {} is {} bytes, over the {MAX_CONFIG_BYTES}-byte limit",
                    config.digest, config.size
                ),
            ));
        }
        self.blob_unit(config.size, async {
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
}

impl Staging {
    /// Make `blob` present in the destination repository, once per run.
    pub(crate) async fn copy_blob(&self, blob: &Reference, preloaded: Option<Bytes>) -> Result<()> {
        let cell = cell(&self.run.blobs, &(blob.digest.clone(), blob.size));
        let done = cell
            .get_or_init(|| async {
                let staging = self.clone();
                let blob = blob.clone();
                // On its own task so that hashing runs in parallel with other blobs.
                let task = tokio::spawn(async move {
                    let transfer = staging.transfer_blob(&blob, preloaded);
                    staging.run.blob_unit(blob.size, transfer).await
                });
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
        let run = &self.run;
        let digest = &blob.digest;
        let finished = |transfer| {
            run.progress.emit(ProgressEvent::BlobFinished {
                digest: digest.clone(),
                transfer,
            });
        };
        // A blob already there (or mountable) is not streamed, so its size is checked here:
        // the digest is right, but a descriptor whose size lies must not be published.
        if asks_first(blob, self.dest_untagged)
            && let Some(size) = run.dest.blob_size(&run.dest_repo, digest).await?
        {
            blob.check_size(size)?;
            run.stats.blobs_present.fetch_add(1, Ordering::Relaxed);
            run.known.note(digest, &run.dest_repo, size);
            finished(BlobTransfer::Present);
            return Ok(());
        }
        if let Some((from, size)) = run.known.elsewhere(digest, &run.dest_repo) {
            blob.check_size(size)?;
            // A failed mount is only a missed shortcut: fall through to copying.
            if let Ok(true) = run.dest.mount_blob(&run.dest_repo, digest, &from).await {
                run.stats.blobs_mounted.fetch_add(1, Ordering::Relaxed);
                run.known.note(digest, &run.dest_repo, size);
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
                None => run.source.get_blob(&run.src_repo, digest).await?,
            };
            let mut verified = Verified::new(stream, blob, run.progress.clone());
            if run.dest.verifies_blobs() {
                verified.hasher = None;
            }
            let started = Arc::clone(&verified.started);
            match run
                .dest
                .push_blob(&run.dest_repo, digest, blob.size, verified.boxed())
                .await
            {
                Ok(()) => break,
                Err(e) => match run.reread_wait(&e, &started, retries) {
                    Some(wait) => {
                        retries += 1;
                        tokio::time::sleep(wait).await;
                        // The destination may have stored it all and only the answer was lost
                        // (it verified the digest): no need to read it again then.
                        if let Ok(true) = run.dest.has_blob(&run.dest_repo, digest).await {
                            break;
                        }
                    }
                    None => return Err(e),
                },
            }
        }
        run.stats.blobs_copied.fetch_add(1, Ordering::Relaxed);
        run.stats
            .bytes_copied
            .fetch_add(blob.size, Ordering::Relaxed);
        run.known.note(digest, &run.dest_repo, blob.size);
        finished(BlobTransfer::Copied);
        Ok(())
    }
}

/// Whether to ask the destination for `blob` before copying it. Not for a small blob of a
/// repository that had no tags (`dest_untagged`; a new one, most likely): the question would
/// cost about as much as the copy, and nearly always be answered no. Were it there after all
/// (left untagged by an earlier run), copying it again only costs its bytes.
fn asks_first(blob: &Reference, dest_untagged: bool) -> bool {
    blob.size > SMALL_BLOB_MAX || !dest_untagged
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
