//! Reading blobs: existence checks and streamed downloads that follow redirects to object
//! storage without taking the registry's credentials along.

use bytes::BytesMut;
use futures::StreamExt;
use reqwest::header::CONTENT_LENGTH;
use reqwest::{Method, Response, StatusCode};
use tokio::sync::OwnedSemaphorePermit;

use super::client::{Call, Client, display_url, error_for_status};
use crate::error::{Error, ErrorKind, Result};
use crate::reference::Digest;
use crate::registry::{BlobStream, SMALL_BLOB_MAX};

impl Client {
    /// The size of blob `digest` in `repo` (its `Content-Length`), `None` if absent. A blob
    /// answered without a length counts as absent: copying it again verifies its size.
    pub(crate) async fn blob_size(
        &self,
        repo: &str,
        digest: &Digest,
        scopes: &[String],
    ) -> Result<Option<u64>> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}")).await?;
        let what = format!("HEAD {}", display_url(&url));
        let resp = self
            .send(
                Call::new(Method::HEAD, url, scopes)
                    .follow_redirects()
                    .measures_round_trip(),
            )
            .await?;
        match resp.status() {
            StatusCode::OK => Ok(content_length(&resp)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(error_for_status(resp, &what).await),
        }
    }

    /// Whether `repo` holds blob `digest`.
    pub(crate) async fn has_blob(
        &self,
        repo: &str,
        digest: &Digest,
        scopes: &[String],
    ) -> Result<bool> {
        Ok(self.blob_size(repo, digest, scopes).await?.is_some())
    }

    /// Blob `digest` of `repo`, asked for under `small_permit` (a slot under the cap of small
    /// requests). A small blob is read whole before this returns; a larger one trades the
    /// slot for one under the bulk cap and streams, keeping that until the stream is dropped.
    pub(crate) async fn get_blob(
        &self,
        repo: &str,
        digest: &Digest,
        scopes: &[String],
        small_permit: OwnedSemaphorePermit,
    ) -> Result<BlobStream> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}")).await?;
        let what = format!("GET {}", display_url(&url));
        let resp = self
            .send(Call::new(Method::GET, url, scopes).follow_redirects())
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("blob {digest} not found in {repo} on {}", self.host),
            ));
        }
        let resp = self.expect(resp, &[StatusCode::OK], &what).await?;
        let what = format!("blob {digest} of {repo}");
        if content_length(&resp).is_some_and(|n| n <= SMALL_BLOB_MAX) {
            return Ok(read_whole(self.body_stream(resp, small_permit, what)).await);
        }
        // Never wait for one slot while holding another: operations could deadlock.
        drop(small_permit);
        let permit = self.permit().await;
        Ok(self.body_stream(resp, permit, what))
    }
}

fn content_length(resp: &Response) -> Option<u64> {
    resp.headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// `stream` read to its end (its permit released), as a stream again. A read that failed is
/// a stream of that error: its bytes were asked for, so a temporary failure may be read again
/// (see the engine's blob copies) like a streamed one.
async fn read_whole(mut stream: BlobStream) -> BlobStream {
    let mut body = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => body.extend_from_slice(&bytes),
            Err(e) => return futures::stream::once(async { Err(e) }).boxed(),
        }
    }
    let body = body.freeze();
    futures::stream::once(async { Ok(body) }).boxed()
}
