//! Manifests over HTTP: HEAD for digests, GET with the exact bytes (size limits enforced while
//! reading, digests verified), PUT with the exact bytes. Reads follow redirects (registries
//! behind a front that sends them to a canonical place), never taking credentials elsewhere.

use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};

use super::client::{Call, Client, display_url};
use crate::error::{Error, ErrorKind, Result};
use crate::reference::{Digest, validate_tag};
use crate::registry::manifest::{MAX_INDEX_BYTES, MAX_MANIFEST_BYTES, media_types};
use crate::registry::{Manifest, ManifestHead};

const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";

/// A manifest reference checked to be a valid tag or digest (it becomes part of a URL path).
/// Returns the digest when it is one.
pub(crate) fn check_reference(reference: &str) -> Result<Option<Digest>> {
    if reference.contains(':') {
        Digest::parse(reference).map(Some)
    } else {
        validate_tag(reference).map(|()| None)
    }
}

fn accept() -> HeaderValue {
    HeaderValue::from_static(media_types::ACCEPT)
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_owned())
        .unwrap_or_default()
}

/// The `Docker-Content-Digest` the registry answered with, if any and well-formed.
fn content_digest(headers: &HeaderMap) -> Option<Digest> {
    headers
        .get(DOCKER_CONTENT_DIGEST)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Digest::parse(v.trim()).ok())
}

fn is_schema1(media_type: &str) -> bool {
    media_type == media_types::DOCKER_SCHEMA1 || media_type == media_types::DOCKER_SCHEMA1_SIGNED
}

fn schema1_error(repo: &str, reference: &str) -> Error {
    Error::new(
        ErrorKind::Unsupported,
        format!(
            "manifest {repo}:{reference} is a Docker schema 1 manifest, which is not supported \
             (deprecated since 2017); re-push the image with a current client to convert it"
        ),
    )
}

/// Largest body accepted for a manifest served with `content_type` (the tighter per-type limit
/// is checked again when the bytes are parsed).
fn body_limit(content_type: &str) -> usize {
    match content_type {
        media_types::OCI_MANIFEST | media_types::DOCKER_MANIFEST => MAX_MANIFEST_BYTES,
        _ => MAX_INDEX_BYTES,
    }
}

impl Client {
    /// The digest, media type and size `reference` points at, or `None` if absent.
    pub(crate) async fn head_manifest(
        &self,
        repo: &str,
        reference: &str,
        scopes: &[String],
    ) -> Result<Option<ManifestHead>> {
        let by_digest = check_reference(reference)?;
        let url = self
            .url(&format!("/v2/{repo}/manifests/{reference}"))
            .await?;
        let what = format!("HEAD {}", display_url(&url));
        let resp = self
            .send(
                Call::new(Method::HEAD, url, scopes)
                    .header(ACCEPT, accept())
                    .follow_redirects()
                    .measures_round_trip(),
            )
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = self.expect(resp, &[StatusCode::OK], &what).await?;
        let media_type = content_type(resp.headers());
        if is_schema1(&media_type) {
            return Err(schema1_error(repo, reference));
        }
        let header_digest = content_digest(resp.headers());
        let size = resp
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        match (header_digest.or(by_digest), size) {
            (Some(digest), Some(size)) if !media_type.is_empty() => Ok(Some(ManifestHead {
                digest,
                media_type,
                size,
            })),
            // Registries that omit the digest (or type, or size) on HEAD: the bytes tell.
            _ => {
                drop(resp);
                let manifest = self.get_manifest(repo, reference, scopes).await?;
                Ok(Some(ManifestHead {
                    digest: manifest.digest,
                    media_type: manifest.media_type,
                    size: manifest.bytes.len() as u64,
                }))
            }
        }
    }

    /// The manifest's exact bytes, refused while reading if they pass the size limit; verified
    /// against the digest when fetched by digest.
    pub(crate) async fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
        scopes: &[String],
    ) -> Result<Manifest> {
        let by_digest = check_reference(reference)?;
        let url = self
            .url(&format!("/v2/{repo}/manifests/{reference}"))
            .await?;
        let what = format!("GET {}", display_url(&url));
        let mut retries = 0;
        let (bytes, media_type) = loop {
            let resp = self
                .send(
                    Call::new(Method::GET, url.clone(), scopes)
                        .header(ACCEPT, accept())
                        .follow_redirects(),
                )
                .await?;
            let resp = self.expect(resp, &[StatusCode::OK], &what).await?;
            let media_type = content_type(resp.headers());
            if is_schema1(&media_type) {
                return Err(schema1_error(repo, reference));
            }
            // `send` repeats a request until its headers arrive; a body cut off after that is
            // repeated here.
            match self
                .read_limited(resp, body_limit(&media_type), &what)
                .await
            {
                Ok(bytes) => break (bytes, media_type),
                Err(e) => self.back_off_or_fail(e, &mut retries).await?,
            }
        };
        let manifest = match &by_digest {
            Some(digest) => Manifest::from_bytes_verified(bytes, &media_type, digest),
            None => Manifest::from_bytes(bytes, &media_type),
        };
        manifest.map_err(|e| e.context(format!("manifest {repo}:{reference}")))
    }

    /// Store `manifest`'s exact bytes under `reference` (a tag, or the manifest's own digest).
    pub(crate) async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        manifest: &Manifest,
        scopes: &[String],
    ) -> Result<Digest> {
        let actual = Digest::of(&manifest.bytes);
        if actual != manifest.digest {
            return Err(Error::new(
                ErrorKind::DigestMismatch,
                format!(
                    "manifest labelled {} hashes to {actual}; refusing to push it",
                    manifest.digest
                ),
            ));
        }
        if let Some(digest) = check_reference(reference)?
            && digest != manifest.digest
        {
            return Err(Error::new(
                ErrorKind::InvalidReference,
                format!(
                    "cannot store manifest {} under a different digest {digest}",
                    manifest.digest
                ),
            ));
        }
        let media_type = HeaderValue::from_str(&manifest.media_type).map_err(|_| {
            Error::new(
                ErrorKind::InvalidManifest,
                format!(
                    "manifest {} has an unusable media type {:?}",
                    manifest.digest, manifest.media_type
                ),
            )
        })?;
        let url = self
            .url(&format!("/v2/{repo}/manifests/{reference}"))
            .await?;
        let what = format!("PUT {}", display_url(&url));
        let resp = self
            .send(
                Call::new(Method::PUT, url, scopes)
                    .header(CONTENT_TYPE, media_type)
                    .body(manifest.bytes.clone()),
            )
            .await?;
        let resp = self
            .expect(resp, &[StatusCode::CREATED, StatusCode::OK], &what)
            .await?;
        if let Some(stored) = content_digest(resp.headers())
            && stored != manifest.digest
        {
            return Err(Error::new(
                ErrorKind::DigestMismatch,
                format!(
                    "{what}: the registry stored manifest {} as {stored}",
                    manifest.digest
                ),
            ));
        }
        Ok(manifest.digest.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_tags_or_digests() {
        assert_eq!(check_reference("v1.2").unwrap(), None);
        let d = Digest::of(b"x");
        assert_eq!(check_reference(d.as_str()).unwrap(), Some(d));
        for bad in ["../x", "a/b", "sha256:zz", "x?y", ""] {
            assert_eq!(
                check_reference(bad).unwrap_err().kind(),
                ErrorKind::InvalidReference,
                "{bad}"
            );
        }
    }

    #[test]
    fn limits_follow_the_content_type() {
        assert_eq!(body_limit(media_types::OCI_MANIFEST), MAX_MANIFEST_BYTES);
        assert_eq!(body_limit(media_types::DOCKER_LIST), MAX_INDEX_BYTES);
        assert_eq!(body_limit(""), MAX_INDEX_BYTES);
    }
}
