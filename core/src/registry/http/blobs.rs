//! Reading blobs: existence checks and streamed downloads that follow redirects to object
//! storage without taking the registry's credentials along.

use reqwest::header::CONTENT_LENGTH;
use reqwest::{Method, StatusCode};
use tokio::sync::OwnedSemaphorePermit;

use super::client::{Call, Client, display_url, error_for_status};
use crate::error::{Error, ErrorKind, Result};
use crate::reference::Digest;
use crate::registry::BlobStream;

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
            .send(Call::new(Method::HEAD, url, scopes).follow_redirects())
            .await?;
        match resp.status() {
            StatusCode::OK => Ok(resp
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())),
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

    /// Stream blob `digest` of `repo`; the stream keeps `permit` until dropped.
    pub(crate) async fn get_blob(
        &self,
        repo: &str,
        digest: &Digest,
        scopes: &[String],
        permit: OwnedSemaphorePermit,
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
        Ok(self.body_stream(resp, permit, format!("blob {digest} of {repo}")))
    }
}
