//! Manifests as bytes plus just enough parsing to walk them: an image points at a config and
//! layers, an index points at child manifests with platforms. The bytes are never re-serialized,
//! so digests are preserved.

use bytes::Bytes;
use oci_spec::image::{ImageIndex, ImageManifest};
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::reference::Digest;

/// Media types regmirror understands.
pub mod media_types {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
    pub const DOCKER_SCHEMA1_SIGNED: &str =
        "application/vnd.docker.distribution.manifest.v1+prettyjws";

    /// The `Accept` header value for manifest requests: every type we can copy.
    pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
        application/vnd.docker.distribution.manifest.list.v2+json, \
        application/vnd.oci.image.manifest.v1+json, \
        application/vnd.docker.distribution.manifest.v2+json";

    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

    /// Whether a config blob of `media_type` is an image config (with a platform), rather than
    /// an artifact's. An empty type is taken for an image config, as old clients left it out.
    pub fn is_image_config(media_type: &str) -> bool {
        media_type.is_empty() || media_type == OCI_CONFIG || media_type == DOCKER_CONFIG
    }

    /// Whether `media_type` is an index / manifest list.
    pub fn is_index(media_type: &str) -> bool {
        media_type == OCI_INDEX || media_type == DOCKER_LIST
    }
}

/// An image manifest is refused above this size (the distribution spec's recommended limit).
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;
/// An index is refused above this size (SEMANTICS.md §4).
pub const MAX_INDEX_BYTES: usize = 10 << 20;
/// An index with more entries than this is refused (SEMANTICS.md §4).
pub const MAX_INDEX_ENTRIES: usize = 1000;
/// Indexes nest at most this many levels (a tag's index is level 1, an index among its
/// entries level 2, ...); deeper nesting fails the tag.
pub const MAX_INDEX_DEPTH: usize = 4;
/// One tag reaches at most this many child manifests, at every nesting level together.
pub const MAX_MANIFESTS_PER_TAG: usize = 2 * MAX_INDEX_ENTRIES;

/// A manifest's exact bytes, its digest and media type.
#[derive(Clone, PartialEq, Eq)]
pub struct Manifest {
    pub media_type: String,
    pub digest: Digest,
    pub bytes: Bytes,
}

impl std::fmt::Debug for Manifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manifest")
            .field("media_type", &self.media_type)
            .field("digest", &self.digest)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// A platform, as an index entry declares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

/// A blob or child manifest a manifest points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    /// Set for index entries that declare one.
    pub platform: Option<Platform>,
}

impl Reference {
    /// `Ok` when the content this descriptor names is `actual` bytes long, as it declares. The
    /// digest alone does not make a descriptor right: strict clients refuse a manifest whose
    /// descriptor sizes are wrong, so one is never copied.
    pub fn check_size(&self, actual: u64) -> Result<()> {
        if actual == self.size {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::DigestMismatch,
            format!(
                "{} is {actual} bytes, but the descriptor pointing at it says {}",
                self.digest, self.size
            ),
        ))
    }
}

/// What a manifest points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestKind {
    /// An image (or artifact): one config blob and its layers.
    Image {
        config: Reference,
        layers: Vec<Reference>,
    },
    /// An index / manifest list: child manifests, usually one per platform.
    Index { manifests: Vec<Reference> },
}

impl Manifest {
    /// Wrap bytes fetched from a registry. `media_type` is the Content-Type the registry sent (or
    /// empty); the manifest's own `mediaType` field wins when present. The bytes are checked to
    /// parse, to respect the size limits, and not to be schema 1.
    pub fn from_bytes(bytes: impl Into<Bytes>, media_type: &str) -> Result<Self> {
        let bytes = bytes.into();
        let media_type = detect_media_type(&bytes, media_type)?;
        let manifest = Manifest {
            digest: Digest::of(&bytes),
            media_type,
            bytes,
        };
        manifest.kind()?;
        Ok(manifest)
    }

    /// Like [`Manifest::from_bytes`], and the bytes must hash to `expected`.
    pub fn from_bytes_verified(
        bytes: impl Into<Bytes>,
        media_type: &str,
        expected: &Digest,
    ) -> Result<Self> {
        let bytes = bytes.into();
        let actual = Digest::of(&bytes);
        if &actual != expected {
            return Err(Error::new(
                ErrorKind::DigestMismatch,
                format!("manifest fetched as {expected} hashes to {actual}"),
            ));
        }
        Self::from_bytes(bytes, media_type)
    }

    /// Whether this is an index / manifest list.
    pub fn is_index(&self) -> bool {
        media_types::is_index(&self.media_type)
    }

    /// Parse what the manifest points at.
    pub fn kind(&self) -> Result<ManifestKind> {
        let invalid = |e: &dyn std::fmt::Display| {
            Error::new(
                ErrorKind::InvalidManifest,
                format!(
                    "manifest {} ({}) is invalid: {e}",
                    self.digest, self.media_type
                ),
            )
        };
        if self.is_index() {
            if self.bytes.len() > MAX_INDEX_BYTES {
                return Err(invalid(&format!(
                    "{} bytes is over the {MAX_INDEX_BYTES}-byte limit for indexes",
                    self.bytes.len()
                )));
            }
            let index: ImageIndex = serde_json::from_slice(&self.bytes).map_err(|e| invalid(&e))?;
            if index.manifests().len() > MAX_INDEX_ENTRIES {
                return Err(invalid(&format!(
                    "{} entries is over the limit of {MAX_INDEX_ENTRIES}",
                    index.manifests().len()
                )));
            }
            let manifests = index
                .manifests()
                .iter()
                .map(|d| {
                    Ok(Reference {
                        media_type: d.media_type().to_string(),
                        digest: Digest::parse(d.digest().as_ref()).map_err(|e| invalid(&e))?,
                        size: d.size(),
                        platform: d.platform().as_ref().map(|p| Platform {
                            os: p.os().to_string(),
                            architecture: p.architecture().to_string(),
                            variant: p.variant().clone(),
                        }),
                    })
                })
                .collect::<Result<_>>()?;
            Ok(ManifestKind::Index { manifests })
        } else {
            if self.bytes.len() > MAX_MANIFEST_BYTES {
                return Err(invalid(&format!(
                    "{} bytes is over the {MAX_MANIFEST_BYTES}-byte limit for manifests",
                    self.bytes.len()
                )));
            }
            let image: ImageManifest =
                serde_json::from_slice(&self.bytes).map_err(|e| invalid(&e))?;
            let reference = |d: &oci_spec::image::Descriptor| {
                Ok(Reference {
                    media_type: d.media_type().to_string(),
                    digest: Digest::parse(d.digest().as_ref()).map_err(|e| invalid(&e))?,
                    size: d.size(),
                    platform: None,
                })
            };
            Ok(ManifestKind::Image {
                config: reference(image.config())?,
                layers: image
                    .layers()
                    .iter()
                    .map(reference)
                    .collect::<Result<_>>()?,
            })
        }
    }
}

/// What a manifest says about itself as a referrer (OCI 1.1): its `subject`, `artifactType`
/// and annotations.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AsReferrer {
    subject: Option<SubjectField>,
    artifact_type: Option<String>,
    config: Option<ConfigField>,
    annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Deserialize)]
struct SubjectField {
    digest: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigField {
    media_type: Option<String>,
}

impl Manifest {
    fn as_referrer(&self) -> AsReferrer {
        serde_json::from_slice(&self.bytes).unwrap_or_default()
    }

    /// The digest this manifest's `subject` names, if it has one (it is then a referrer).
    pub fn subject(&self) -> Option<Digest> {
        let subject = self.as_referrer().subject?;
        Digest::parse(&subject.digest).ok()
    }

    /// Its artifact type as the referrers API reports it: `artifactType`, else its config's
    /// media type.
    pub fn artifact_type(&self) -> Option<String> {
        self.as_referrer().artifact_type()
    }
}

impl AsReferrer {
    fn artifact_type(&self) -> Option<String> {
        let config_type = || self.config.as_ref()?.media_type.clone();
        self.artifact_type.clone().or_else(config_type)
    }
}

/// The referrers index (what `GET /v2/<name>/referrers/<digest>` answers, and what the
/// referrers tag schema's `sha256-<hex>` tag holds) listing `referrers`: each one's media type,
/// digest, size, artifact type and annotations.
pub fn referrers_index<'a>(referrers: impl IntoIterator<Item = &'a Manifest>) -> Manifest {
    let entries: Vec<serde_json::Value> = referrers
        .into_iter()
        .map(|m| {
            let mut entry = serde_json::json!({
                "mediaType": m.media_type,
                "digest": m.digest.as_str(),
                "size": m.bytes.len(),
            });
            // One parse of the manifest for both fields.
            let referrer = m.as_referrer();
            if let Some(t) = referrer.artifact_type() {
                entry["artifactType"] = t.into();
            }
            if let Some(a) = referrer.annotations {
                entry["annotations"] = a.into();
            }
            entry
        })
        .collect();
    let bytes = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_INDEX,
        "manifests": entries,
    }))
    .expect("a json! value always serializes");
    Manifest::from_bytes(bytes, media_types::OCI_INDEX)
        .expect("an index of valid descriptors is valid")
}

fn detect_media_type(bytes: &[u8], content_type: &str) -> Result<String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        schema_version: Option<u32>,
        media_type: Option<String>,
        manifests: Option<serde::de::IgnoredAny>,
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(|e| {
        Error::new(
            ErrorKind::InvalidManifest,
            format!("manifest is not valid JSON: {e}"),
        )
    })?;
    let content_type = content_type.split(';').next().unwrap_or("").trim();
    if probe.schema_version == Some(1)
        || content_type == media_types::DOCKER_SCHEMA1
        || content_type == media_types::DOCKER_SCHEMA1_SIGNED
    {
        return Err(Error::new(
            ErrorKind::Unsupported,
            "Docker schema 1 manifests are not supported (deprecated since 2017); \
             re-push the image with a current client to convert it",
        ));
    }
    let media_type = match probe.media_type {
        Some(m) if !m.is_empty() => m,
        _ if !content_type.is_empty() && content_type != "application/json" => {
            content_type.to_owned()
        }
        _ if probe.manifests.is_some() => media_types::OCI_INDEX.to_owned(),
        _ => media_types::OCI_MANIFEST.to_owned(),
    };
    Ok(media_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const LAYER: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn image_json() -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{CONFIG}","size":2}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{LAYER}","size":3}}]}}"#
        )
    }

    #[test]
    fn parses_an_image_and_keeps_bytes() {
        let json = image_json();
        let m = Manifest::from_bytes(json.clone().into_bytes(), "").unwrap();
        assert_eq!(m.bytes, json.as_bytes());
        assert_eq!(m.digest, Digest::of(json.as_bytes()));
        match m.kind().unwrap() {
            ManifestKind::Image { config, layers } => {
                assert_eq!(config.digest.as_str(), CONFIG);
                assert_eq!(layers.len(), 1);
                assert_eq!(layers[0].size, 3);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_an_index_with_platforms() {
        let d = Digest::of(image_json().as_bytes());
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json",
            "manifests":[{{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"{d}","size":5,
            "platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}}]}}"#
        );
        let m = Manifest::from_bytes(json.into_bytes(), "").unwrap();
        assert!(m.is_index());
        let ManifestKind::Index { manifests } = m.kind().unwrap() else {
            panic!()
        };
        let p = manifests[0].platform.as_ref().unwrap();
        assert_eq!((p.os.as_str(), p.architecture.as_str()), ("linux", "arm64"));
        assert_eq!(p.variant.as_deref(), Some("v8"));
    }

    #[test]
    fn refuses_schema1_and_mismatched_digest() {
        let e = Manifest::from_bytes(&br#"{"schemaVersion":1,"name":"x"}"#[..], "").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        let wrong = Digest::of(b"other");
        let e = Manifest::from_bytes_verified(image_json().into_bytes(), "", &wrong).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::DigestMismatch);
    }

    #[test]
    fn refuses_oversized_manifest() {
        let pad = " ".repeat(MAX_MANIFEST_BYTES);
        let json = image_json().replacen('{', &format!("{{{pad}"), 1);
        let e = Manifest::from_bytes(json.into_bytes(), "").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidManifest);
        assert!(e.message().contains("limit"), "{e}");
    }
}
