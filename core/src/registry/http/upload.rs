//! Blob uploads: cross-repository mounts, and uploads streamed from the source with sha256 and
//! size checked on the fly, as one streamed `PUT` or, when a registry wants it, `PATCH` chunks.
//! Content that does not match never completes an upload: the last bytes are held back until
//! the digest checks out, and the session is cancelled.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, LOCATION};
use reqwest::{Method, Response, StatusCode};
use sha2::{Digest as _, Sha256};
use url::Url;

use super::auth::{pull_scope, push_scope};
use super::client::{Call, Client, Failed, display_url, error_for_status};
use crate::error::{Error, ErrorKind, Result};
use crate::reference::Digest;
use crate::registry::BlobStream;

/// Blobs up to this size are read and verified before anything is sent, which lets their
/// upload be retried like any other request (configs and small layers are most blobs). Not
/// [`crate::registry::SMALL_BLOB_MAX`], the line between small and bulk requests: a blob over
/// that and up to this is buffered, yet uploaded under the cap of bulk requests.
const BUFFERED_UPLOAD_MAX: u64 = 1 << 20;
/// Chunk size for `PATCH` uploads when the registry requires chunks but does not say how big.
const DEFAULT_CHUNK: usize = 8 << 20;
/// The header with which a registry asks for chunks of at least this many bytes (OCI spec).
const CHUNK_MIN_HEADER: &str = "oci-chunk-min-length";

/// An upload session the registry opened.
struct Session {
    location: Url,
    /// `OCI-Chunk-Min-Length`: the registry wants `PATCH` chunks of at least this size.
    chunk_min: Option<usize>,
}

impl Client {
    /// Mount `digest` from repository `from` into `repo`. `Ok(false)` when the registry opened
    /// an upload instead (the session is cancelled) or cannot mount.
    pub(crate) async fn mount_blob(&self, repo: &str, digest: &Digest, from: &str) -> Result<bool> {
        let scopes = [push_scope(repo), pull_scope(from)];
        let mut url = self.url(&format!("/v2/{repo}/blobs/uploads/")).await?;
        url.query_pairs_mut()
            .append_pair("mount", digest.as_str())
            .append_pair("from", from);
        let what = format!("mount {digest} from {from} into {repo} on {}", self.host);
        let resp = self
            .send(Call::new(Method::POST, url, &scopes).retry(true))
            .await
            .map_err(|e| e.context(&what))?;
        match resp.status() {
            StatusCode::CREATED => Ok(true),
            StatusCode::ACCEPTED => {
                let session = self.session_from(&resp, &what)?;
                self.cancel_upload(&session.location, &scopes).await;
                Ok(false)
            }
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => Ok(false),
            _ => Err(error_for_status(resp, &what).await),
        }
    }

    /// Upload a blob from `data`, verifying `digest` and `size` as it flows.
    pub(crate) async fn push_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        data: BlobStream,
    ) -> Result<()> {
        let scopes = [push_scope(repo)];
        let what = format!("upload of blob {digest} to {repo} on {}", self.host);
        let verified = Verified::new(data, digest.clone(), size);
        let failure = Arc::clone(&verified.failure);

        if size <= BUFFERED_UPLOAD_MAX && self.options.upload_chunk_size.is_none() {
            let body = read_all(verified).await.map_err(|e| e.context(&what))?;
            return self.put_buffered(repo, &scopes, digest, body, &what).await;
        }

        let session = self.start_upload(repo, &scopes, &what).await?;
        let result = match chunk_size(self.options.upload_chunk_size, session.chunk_min) {
            None => {
                self.put_streamed(&session, &scopes, digest, size, verified, &what)
                    .await
            }
            Some(chunk) => {
                self.put_chunked(&session, &scopes, digest, verified, chunk, &what)
                    .await
            }
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) => {
                self.cancel_upload(&session.location, &scopes).await;
                // What the verifier (or the source stream) saw explains the failure better than
                // the aborted request does.
                let cause = failure.lock().expect("no panics while locked").take();
                Err(cause.map(|c| c.context(&what)).unwrap_or(e))
            }
        }
    }

    /// Upload verified bytes in one `PUT`. A temporary failure restarts from a new session
    /// (repeating a completing `PUT` itself could report a stored blob as failed).
    async fn put_buffered(
        &self,
        repo: &str,
        scopes: &[String],
        digest: &Digest,
        body: Bytes,
        what: &str,
    ) -> Result<()> {
        let mut retries = 0;
        loop {
            let session = self.start_upload(repo, scopes, what).await?;
            let call = Call::new(Method::PUT, with_digest(&session.location, digest), scopes)
                .header(CONTENT_TYPE, octet_stream())
                .body(body.clone())
                .retry(false);
            let resp = self.send(call).await;
            match self.finish(resp, &session.location, scopes, what).await {
                Ok(()) => return Ok(()),
                Err(e) => self.back_off_or_fail(e, &mut retries).await?,
            }
        }
    }

    async fn start_upload(&self, repo: &str, scopes: &[String], what: &str) -> Result<Session> {
        let url = self.url(&format!("/v2/{repo}/blobs/uploads/")).await?;
        // Repeating the POST at worst leaves an unused session behind, which registries expire.
        let resp = self
            .send(Call::new(Method::POST, url, scopes).retry(true))
            .await
            .map_err(|e| e.context(what))?;
        let resp = self.expect(resp, &[StatusCode::ACCEPTED], what).await?;
        self.session_from(&resp, what)
    }

    fn session_from(&self, resp: &Response, what: &str) -> Result<Session> {
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Unsupported,
                    format!("{what}: the registry opened an upload without a Location"),
                )
            })?;
        let location = self.resolve(resp.url(), location)?;
        let chunk_min = resp
            .headers()
            .get(CHUNK_MIN_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        Ok(Session {
            location,
            chunk_min,
        })
    }

    /// Abandon an upload session; failures only cost the registry some garbage collection.
    async fn cancel_upload(&self, location: &Url, scopes: &[String]) {
        let call = Call::new(Method::DELETE, location.clone(), scopes);
        let failed = match self.send(call).await {
            Ok(resp) if resp.status().is_success() || resp.status() == StatusCode::NOT_FOUND => {
                return;
            }
            Ok(resp) => resp.status().to_string(),
            Err(e) => e.to_string(),
        };
        // The location is the registry's: it may hold anything, echoed secrets included.
        let line = format!("cancelling upload {}: {failed}", display_url(location));
        tracing::debug!(target: "regmirror::http", "{}", self.secrets.scrub(&line));
    }

    /// Check the answer to the request that completes an upload; cancel the session if it failed.
    async fn finish(
        &self,
        resp: Result<Response>,
        location: &Url,
        scopes: &[String],
        what: &str,
    ) -> Result<()> {
        let result = match resp {
            Ok(resp) => self.completed(resp, what).await,
            Err(e) => Err(e.context(what)),
        };
        if result.is_err() {
            self.cancel_upload(location, scopes).await;
        }
        result
    }

    /// One `PUT` carrying the whole blob as a stream, with a watchdog for stalls.
    async fn put_streamed(
        &self,
        session: &Session,
        scopes: &[String],
        digest: &Digest,
        size: u64,
        verified: Verified,
        what: &str,
    ) -> Result<()> {
        let url = with_digest(&session.location, digest);
        self.check_target(&url, what)?;
        let progress = Arc::clone(&verified.progress);
        let mut request = self
            .http
            .put(url.clone())
            .header(CONTENT_TYPE, octet_stream())
            .header(CONTENT_LENGTH, size)
            .body(reqwest::Body::wrap_stream(verified));
        if url.origin() == self.base().await?.origin()
            && let Some(value) = self.authorization(scopes).await?
        {
            request = request.header(AUTHORIZATION, value);
        }
        let stall = self.options.stall_timeout;
        // The watchdog counts from now, not from when the session was opened.
        progress.touch();
        let sent = tokio::select! {
            sent = request.send() => sent.map_err(|e| Failed {
                unsent: e.is_connect(),
                error: super::client::map_reqwest_error(e, &self.host),
            }),
            () = progress.stalled(stall) => Err(Failed {
                unsent: false,
                error: Error::new(
                    ErrorKind::Timeout,
                    format!("no progress for {stall:?}"),
                ),
            }),
        };
        match sent {
            Ok(resp) => self.completed(resp, what).await,
            Err(Failed { error, .. }) => Err(error.context(what)),
        }
    }

    /// `PATCH` chunks of `chunk` bytes, then a `PUT` with the digest to complete.
    async fn put_chunked(
        &self,
        session: &Session,
        scopes: &[String],
        digest: &Digest,
        mut verified: Verified,
        chunk: usize,
        what: &str,
    ) -> Result<()> {
        let mut location = session.location.clone();
        let mut offset = 0u64;
        let mut buffer = BytesMut::with_capacity(chunk);
        let mut ended = false;
        while !ended {
            while buffer.len() < chunk {
                match verified.next().await {
                    Some(Ok(bytes)) => buffer.extend_from_slice(&bytes),
                    Some(Err(e)) => return Err(e),
                    None => {
                        ended = true;
                        break;
                    }
                }
            }
            if buffer.is_empty() {
                break;
            }
            let body = buffer.split().freeze();
            let end = offset + body.len() as u64 - 1;
            let range = HeaderValue::from_str(&format!("{offset}-{end}"))
                .expect("digits and a dash are a valid header value");
            let resp = self
                .send(
                    Call::new(Method::PATCH, location.clone(), scopes)
                        .header(CONTENT_TYPE, octet_stream())
                        .header(reqwest::header::CONTENT_RANGE, range)
                        .body(body),
                )
                .await
                .map_err(|e| e.context(what))?;
            let resp = self
                .expect(resp, &[StatusCode::ACCEPTED], what)
                .await
                .map_err(session_lost)?;
            location = self.session_from(&resp, what)?.location;
            offset = end + 1;
        }
        let resp = self
            .send(Call::new(Method::PUT, with_digest(&location, digest), scopes).retry(false))
            .await
            .map_err(|e| e.context(what))?;
        self.completed(resp, what).await
    }

    /// Check the answer to the `PUT` that completes an upload: `201 Created`, or the error it
    /// stands for (a lost session being a temporary one).
    async fn completed(&self, resp: Response, what: &str) -> Result<()> {
        self.expect(resp, &[StatusCode::CREATED], what)
            .await
            .map(drop)
            .map_err(session_lost)
    }
}

/// A registry that no longer knows an upload session (404 `BLOB_UPLOAD_UNKNOWN`: purged, or a
/// replica behind a load balancer that never saw it) takes the blob in a new session: for the
/// callers that start one again, a temporary failure, not a missing blob.
fn session_lost(e: Error) -> Error {
    if e.kind() == ErrorKind::NotFound {
        Error::new(
            ErrorKind::Network,
            format!("{}: the upload session was lost", e.message()),
        )
    } else {
        e
    }
}

/// `PATCH` chunk size for an upload: `None` streams one `PUT`. Chunks are used when configured
/// or when the registry announces a minimum chunk length, and never below that minimum.
fn chunk_size(configured: Option<usize>, registry_min: Option<usize>) -> Option<usize> {
    match (configured, registry_min) {
        (None, None) => None,
        (Some(size), min) => Some(size.max(min.unwrap_or(0))),
        (None, Some(min)) => Some(min.max(DEFAULT_CHUNK)),
    }
}

fn octet_stream() -> HeaderValue {
    HeaderValue::from_static("application/octet-stream")
}

fn with_digest(location: &Url, digest: &Digest) -> Url {
    let mut url = location.clone();
    url.query_pairs_mut().append_pair("digest", digest.as_str());
    url
}

async fn read_all(mut verified: Verified) -> Result<Bytes> {
    let mut body = BytesMut::new();
    while let Some(chunk) = verified.next().await {
        body.extend_from_slice(&chunk?);
    }
    Ok(body.freeze())
}

/// When bytes last moved, for the upload watchdog.
struct Progress {
    start: Instant,
    last_millis: AtomicU64,
}

impl Progress {
    fn touch(&self) {
        let millis = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_millis.store(millis, Ordering::Relaxed);
    }

    /// Resolves once nothing has moved for `stall`.
    async fn stalled(&self, stall: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last_millis.load(Ordering::Relaxed));
            let idle = last.elapsed();
            if idle >= stall {
                return;
            }
            tokio::time::sleep(stall - idle).await;
        }
    }
}

/// A blob stream that hashes and counts what passes through, and turns into an error before
/// yielding the byte that completes a blob with the wrong digest or size: the registry never
/// receives a complete wrong blob.
struct Verified {
    inner: BlobStream,
    expected: Digest,
    size: u64,
    received: u64,
    hasher: Sha256,
    done: bool,
    /// The first error this stream produced, for the caller to report instead of the aborted
    /// request's error.
    failure: Arc<Mutex<Option<Error>>>,
    progress: Arc<Progress>,
}

impl Verified {
    fn new(inner: BlobStream, expected: Digest, size: u64) -> Self {
        Verified {
            inner,
            expected,
            size,
            received: 0,
            hasher: Sha256::new(),
            done: false,
            failure: Arc::new(Mutex::new(None)),
            progress: Arc::new(Progress {
                start: Instant::now(),
                last_millis: AtomicU64::new(0),
            }),
        }
    }

    fn fail(&mut self, error: Error) -> Poll<Option<Result<Bytes>>> {
        self.done = true;
        let copy = Error::from(crate::failure::Failure::from(&error));
        *self.failure.lock().expect("no panics while locked") = Some(error);
        Poll::Ready(Some(Err(copy)))
    }

    /// Check the digest once all `size` bytes went through the hasher.
    fn check_digest(&mut self) -> Result<()> {
        let actual = Digest::parse(&format!(
            "sha256:{}",
            hex::encode(std::mem::take(&mut self.hasher).finalize())
        ))
        .expect("a sha256 in lowercase hex is a valid digest");
        if actual != self.expected {
            return Err(Error::new(
                ErrorKind::DigestMismatch,
                format!("blob {} from the source hashes to {actual}", self.expected),
            ));
        }
        Ok(())
    }
}

impl Stream for Verified {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let polled = self.inner.as_mut().poll_next(cx);
        if polled.is_ready() {
            self.progress.touch();
        }
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Err(e))) => self.fail(e),
            // HTTP/2 may end a body with an empty DATA frame, after the digest was checked:
            // it changes nothing, and checking again would hash nothing.
            Poll::Ready(Some(Ok(chunk))) if chunk.is_empty() => Poll::Ready(Some(Ok(chunk))),
            Poll::Ready(Some(Ok(chunk))) => {
                self.received += chunk.len() as u64;
                if self.received > self.size {
                    let error = Error::new(
                        ErrorKind::DigestMismatch,
                        format!(
                            "blob {} from the source is larger than its declared {} bytes",
                            self.expected, self.size
                        ),
                    );
                    return self.fail(error);
                }
                self.hasher.update(&chunk);
                if self.received == self.size
                    && let Err(e) = self.check_digest()
                {
                    return self.fail(e);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) => {
                self.done = true;
                if self.received < self.size {
                    let error = Error::new(
                        ErrorKind::DigestMismatch,
                        format!(
                            "blob {} from the source ended after {} of {} bytes",
                            self.expected, self.received, self.size
                        ),
                    );
                    return self.fail(error);
                }
                if self.size == 0
                    && let Err(e) = self.check_digest()
                {
                    return self.fail(e);
                }
                Poll::Ready(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(chunks: Vec<&'static [u8]>) -> BlobStream {
        Box::pin(futures::stream::iter(
            chunks.into_iter().map(|c| Ok(Bytes::from_static(c))),
        ))
    }

    async fn collect(v: Verified) -> (Vec<u8>, Option<Error>) {
        let mut out = Vec::new();
        let mut v = v;
        while let Some(item) = v.next().await {
            match item {
                Ok(b) => out.extend_from_slice(&b),
                Err(e) => return (out, Some(e)),
            }
        }
        (out, None)
    }

    #[test]
    fn chunks_when_configured_or_required_and_never_below_the_minimum() {
        assert_eq!(chunk_size(None, None), None);
        assert_eq!(chunk_size(Some(1000), None), Some(1000));
        assert_eq!(chunk_size(Some(1000), Some(5000)), Some(5000));
        assert_eq!(chunk_size(None, Some(5000)), Some(DEFAULT_CHUNK));
        assert_eq!(
            chunk_size(None, Some(DEFAULT_CHUNK * 2)),
            Some(DEFAULT_CHUNK * 2)
        );
    }

    #[tokio::test]
    async fn matching_content_flows_through() {
        let d = Digest::of(b"hello world");
        let (out, err) = collect(Verified::new(stream(vec![b"hello ", b"world"]), d, 11)).await;
        assert_eq!(out, b"hello world");
        assert!(err.is_none());
    }

    #[tokio::test]
    async fn empty_chunks_after_the_last_byte_change_nothing() {
        // What a TLS (HTTP/2) source sends for a blob larger than one flow-control window.
        let d = Digest::of(b"hello world");
        let v = Verified::new(stream(vec![b"", b"hello ", b"", b"world", b""]), d, 11);
        let (out, err) = collect(v).await;
        assert_eq!(out, b"hello world");
        assert!(err.is_none(), "{err:?}");
    }

    #[tokio::test]
    async fn wrong_content_fails_before_the_last_byte_is_yielded() {
        let d = Digest::of(b"hello world");
        let v = Verified::new(stream(vec![b"hello ", b"wxrld"]), d, 11);
        let failure = Arc::clone(&v.failure);
        let (out, err) = collect(v).await;
        assert_eq!(out, b"hello ");
        assert_eq!(err.unwrap().kind(), ErrorKind::DigestMismatch);
        assert!(failure.lock().unwrap().is_some());
    }

    #[tokio::test]
    async fn short_and_long_content_are_mismatches() {
        let d = Digest::of(b"hello world");
        let (_, err) = collect(Verified::new(stream(vec![b"hello"]), d.clone(), 11)).await;
        assert!(err.unwrap().message().contains("ended after 5 of 11"));
        let (_, err) = collect(Verified::new(stream(vec![b"hello world!"]), d.clone(), 11)).await;
        assert!(err.unwrap().message().contains("larger"));
    }

    #[tokio::test]
    async fn empty_blob_is_checked_too() {
        let (_, err) = collect(Verified::new(stream(vec![]), Digest::of(b""), 0)).await;
        assert!(err.is_none());
        let (_, err) = collect(Verified::new(stream(vec![]), Digest::of(b"x"), 0)).await;
        assert_eq!(err.unwrap().kind(), ErrorKind::DigestMismatch);
    }
}
