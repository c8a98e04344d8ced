//! The OCI 1.1 referrers API (`GET /v2/<name>/referrers/<digest>`): the index of the manifests
//! whose `subject` is a digest. A registry without it answers 404 (or something that is not an
//! index), which callers take as "no API" and fall back to the referrers tag schema.

use reqwest::header::{ACCEPT, HeaderValue};
use reqwest::{Method, StatusCode};

use super::client::{Call, Client, display_url};
use crate::error::Result;
use crate::reference::Digest;
use crate::registry::Manifest;
use crate::registry::manifest::{MAX_INDEX_BYTES, media_types};

impl Client {
    /// The referrers index of `digest`, narrowed to `artifact_type` when given (a registry may
    /// ignore the filter), or `None` when the registry has no referrers API.
    pub(crate) async fn referrers(
        &self,
        repo: &str,
        digest: &Digest,
        artifact_type: Option<&str>,
        scopes: &[String],
    ) -> Result<Option<Manifest>> {
        let mut url = self.url(&format!("/v2/{repo}/referrers/{digest}")).await?;
        if let Some(artifact_type) = artifact_type {
            url.query_pairs_mut()
                .append_pair("artifactType", artifact_type);
        }
        let what = format!("GET {}", display_url(&url));
        let resp = self
            .send(
                Call::new(Method::GET, url, scopes)
                    .header(ACCEPT, HeaderValue::from_static(media_types::OCI_INDEX))
                    .follow_redirects(),
            )
            .await?;
        // Registries without the API answer 404, and some 400 or 405 for the unknown route.
        if matches!(
            resp.status(),
            StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST | StatusCode::METHOD_NOT_ALLOWED
        ) {
            return Ok(None);
        }
        let resp = self.expect(resp, &[StatusCode::OK], &what).await?;
        let bytes = self.read_limited(resp, MAX_INDEX_BYTES, &what).await?;
        // Anything but an index is no referrers API either (a front page, a wildcard route).
        Ok(Manifest::from_bytes(bytes, media_types::OCI_INDEX)
            .ok()
            .filter(Manifest::is_index))
    }
}
