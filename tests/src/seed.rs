//! Pushing test images with raw distribution API calls (POST + PUT `?digest=` uploads, PUT
//! manifests), independent of the client under test, so a bug there cannot hide in the fixtures.

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use regmirror::Digest;
use regmirror::registry::{Manifest, ManifestKind};
use reqwest::{Method, RequestBuilder, StatusCode, header};

use crate::image::{Artifact, Image, Index};
use crate::token::TokenMinter;

/// How the seeder authenticates. `Debug` leaves the password out.
#[derive(Clone)]
pub enum SeedAuth {
    None,
    Basic(String, String),
    /// Tokens signed directly by the test issuer.
    Token(TokenMinter),
}

impl std::fmt::Debug for SeedAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SeedAuth::None => f.write_str("None"),
            SeedAuth::Basic(user, _) => write!(f, "Basic({user:?}, <redacted>)"),
            SeedAuth::Token(_) => f.write_str("Token"),
        }
    }
}

/// Pushes blobs, manifests and whole images into one registry. Panics on any failure: seeding
/// failures are test-setup bugs.
#[derive(Debug, Clone)]
pub struct Seeder {
    client: reqwest::Client,
    base: String,
    auth: SeedAuth,
}

impl Seeder {
    /// A seeder for the registry at `base` (`http://127.0.0.1:PORT`), trusting `ca_pem` if given.
    pub fn new(base: &str, ca_pem: Option<&Path>, auth: SeedAuth) -> Seeder {
        let mut builder = reqwest::Client::builder().no_proxy();
        if let Some(ca) = ca_pem {
            let pem = std::fs::read(ca).expect("reading the test CA");
            builder = builder.add_root_certificate(
                reqwest::Certificate::from_pem(&pem).expect("the test CA is valid PEM"),
            );
        }
        Seeder {
            client: builder.build().expect("building the seeding client"),
            base: base.trim_end_matches('/').to_owned(),
            auth,
        }
    }

    fn request(&self, method: Method, url: &str, repos: &[&str]) -> RequestBuilder {
        let request = self.client.request(method, url);
        match &self.auth {
            SeedAuth::None => request,
            SeedAuth::Basic(user, password) => request.basic_auth(user, Some(password)),
            SeedAuth::Token(minter) => request.bearer_auth(minter.full_access(repos)),
        }
    }

    /// Whether `repo` holds the blob.
    pub async fn has_blob(&self, repo: &str, digest: &Digest) -> bool {
        let url = format!("{}/v2/{repo}/blobs/{digest}", self.base);
        let response = self
            .request(Method::HEAD, &url, &[repo])
            .send()
            .await
            .expect("HEAD blob");
        response.status() == StatusCode::OK
    }

    /// Upload a blob monolithically (POST, then PUT with `?digest=`).
    pub async fn push_blob(&self, repo: &str, bytes: impl Into<Bytes>) -> Digest {
        let bytes = bytes.into();
        let digest = Digest::of(&bytes);
        let url = format!("{}/v2/{repo}/blobs/uploads/", self.base);
        let response = self
            .request(Method::POST, &url, &[repo])
            .send()
            .await
            .expect("POST blob upload");
        assert_eq!(
            response.status(),
            StatusCode::ACCEPTED,
            "starting an upload to {repo}: {}",
            response.text().await.unwrap_or_default()
        );
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .expect("an upload answer carries a Location")
            .to_owned();
        let mut url = if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            location
        };
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str("digest=");
        url.push_str(digest.as_str());
        let response = self
            .request(Method::PUT, &url, &[repo])
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .expect("PUT blob");
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "completing the upload of {digest} to {repo}: {}",
            response.text().await.unwrap_or_default()
        );
        digest
    }

    /// PUT a manifest's exact bytes under `reference` (tag or digest); returns its digest.
    pub async fn push_manifest(&self, repo: &str, reference: &str, manifest: &Manifest) -> Digest {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let response = self
            .request(Method::PUT, &url, &[repo])
            .header(header::CONTENT_TYPE, &manifest.media_type)
            .body(manifest.bytes.clone())
            .send()
            .await
            .expect("PUT manifest");
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "pushing manifest {reference} to {repo}: {}",
            response.text().await.unwrap_or_default()
        );
        manifest.digest.clone()
    }

    /// Push an image's blobs (skipping those present) and its manifest under `tag`.
    pub async fn push_image(&self, repo: &str, tag: &str, image: &Image) -> Digest {
        self.push_image_blobs(repo, image).await;
        self.push_manifest(repo, tag, &image.manifest).await
    }

    /// Push an index's children by digest, then the index under `tag`.
    pub async fn push_index(&self, repo: &str, tag: &str, index: &Index) -> Digest {
        for child in &index.children {
            self.push_image_blobs(repo, child).await;
            self.push_manifest(repo, child.manifest.digest.as_str(), &child.manifest)
                .await;
        }
        self.push_manifest(repo, tag, &index.manifest).await
    }

    /// Push an artifact's blobs and its manifest under `reference` (a tag, or its digest to
    /// store it untagged as a referrer).
    pub async fn push_artifact(&self, repo: &str, reference: &str, artifact: &Artifact) -> Digest {
        for blob in artifact.blobs() {
            if !self.has_blob(repo, &blob.digest).await {
                self.push_blob(repo, blob.bytes.clone()).await;
            }
        }
        self.push_manifest(repo, reference, &artifact.manifest)
            .await
    }

    async fn push_image_blobs(&self, repo: &str, image: &Image) {
        for blob in image.blobs() {
            if !self.has_blob(repo, &blob.digest).await {
                self.push_blob(repo, blob.bytes.clone()).await;
            }
        }
    }

    /// Every tag of `repo`, read with one large page (to check results independently).
    pub async fn tags(&self, repo: &str) -> Vec<String> {
        let url = format!("{}/v2/{repo}/tags/list?n=10000", self.base);
        let response = self
            .request(Method::GET, &url, &[repo])
            .send()
            .await
            .expect("GET tags");
        if response.status() == StatusCode::NOT_FOUND {
            return Vec::new();
        }
        let body: serde_json::Value = response.json().await.expect("tags list is JSON");
        let mut tags: Vec<String> = body["tags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        tags.sort();
        tags
    }

    /// Every tag of `repo` with the digest of the manifest it resolves to.
    pub async fn tag_digests(&self, repo: &str) -> BTreeMap<String, Digest> {
        let mut digests = BTreeMap::new();
        for tag in self.tags(repo).await {
            let bytes = self
                .manifest(repo, &tag)
                .await
                .expect("a listed tag has a manifest");
            digests.insert(tag, Digest::of(&bytes));
        }
        digests
    }

    /// Panic unless every tag of `repo` resolves to content the registry fully holds: each
    /// manifest (and each child of an index) is there, and each blob it references downloads
    /// whole with the right digest. No tag may point at something half-copied.
    pub async fn assert_complete(&self, repo: &str) {
        for tag in self.tags(repo).await {
            let mut pending = vec![tag.clone()];
            while let Some(reference) = pending.pop() {
                let manifest = self
                    .typed_manifest(repo, &reference)
                    .await
                    .unwrap_or_else(|| {
                        panic!("tag {tag} of {repo}: manifest {reference} is missing")
                    });
                let kind = manifest
                    .kind()
                    .unwrap_or_else(|e| panic!("tag {tag} of {repo}: {e}"));
                match kind {
                    ManifestKind::Image { config, layers } => {
                        for blob in std::iter::once(config).chain(layers) {
                            let bytes = self.blob(repo, &blob.digest).await.unwrap_or_else(|| {
                                panic!("tag {tag} of {repo}: blob {} is missing", blob.digest)
                            });
                            assert_eq!(
                                Digest::of(&bytes),
                                blob.digest,
                                "tag {tag} of {repo}: blob {} is served with other bytes",
                                blob.digest
                            );
                            assert_eq!(bytes.len() as u64, blob.size, "tag {tag}: blob size");
                        }
                    }
                    ManifestKind::Index { manifests } => {
                        pending.extend(manifests.into_iter().map(|c| c.digest.to_string()));
                    }
                }
            }
        }
    }

    /// A blob's bytes, or `None` when absent.
    async fn blob(&self, repo: &str, digest: &Digest) -> Option<Bytes> {
        let url = format!("{}/v2/{repo}/blobs/{digest}", self.base);
        let response = self
            .request(Method::GET, &url, &[repo])
            .send()
            .await
            .expect("GET blob");
        if response.status() == StatusCode::NOT_FOUND {
            return None;
        }
        assert!(
            response.status().is_success(),
            "GET blob {digest}: {}",
            response.status()
        );
        Some(response.bytes().await.expect("reading a blob body"))
    }

    /// The manifest `reference` resolves to, with its media type, or `None` when absent.
    async fn typed_manifest(&self, repo: &str, reference: &str) -> Option<Manifest> {
        let (media_type, bytes) = self.fetch_manifest(repo, reference).await?;
        Some(Manifest::from_bytes(bytes, &media_type).expect("a stored manifest parses"))
    }

    /// The manifest bytes `reference` resolves to, or `None` when absent.
    pub async fn manifest(&self, repo: &str, reference: &str) -> Option<Bytes> {
        let (_, bytes) = self.fetch_manifest(repo, reference).await?;
        Some(bytes)
    }

    /// The content type and bytes of the manifest `reference` resolves to, or `None` when
    /// absent: the one request behind [`Self::manifest`] and `typed_manifest`.
    async fn fetch_manifest(&self, repo: &str, reference: &str) -> Option<(String, Bytes)> {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let response = self
            .request(Method::GET, &url, &[repo])
            .header(header::ACCEPT, regmirror::registry::media_types::ACCEPT)
            .send()
            .await
            .expect("GET manifest");
        if response.status() == StatusCode::NOT_FOUND {
            return None;
        }
        assert!(
            response.status().is_success(),
            "GET manifest {reference}: {}",
            response.status()
        );
        let media_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = response.bytes().await.expect("reading manifest body");
        Some((media_type, bytes))
    }
}
