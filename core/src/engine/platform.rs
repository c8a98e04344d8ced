//! The architecture filter (SEMANTICS.md §3 step 4, §9): which platforms of an index a mirror
//! copies, whether a single-platform image is one of them, and the index this engine rewrites
//! when a destination refuses a sparse one (`platform_index = rewrite`), annotated with where it
//! came from so a later run knows it for the source's. Pure: what must be read from a registry
//! is read by the caller.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::error::{Error, ErrorKind, Result};
use crate::reference::Digest;
use crate::registry::Manifest;
use crate::registry::manifest::{Reference, media_types};

/// Annotation on a rewritten index: the digest of the source index it was made from.
const SOURCE_DIGEST_ANNOTATION: &str = "io.regmirror.source.digest";
/// Annotation on a rewritten index: the architectures it was filtered to.
const ARCHITECTURES_ANNOTATION: &str = "io.regmirror.architectures";

/// What the architecture filter makes of a single-platform manifest.
pub(crate) enum PlatformFit {
    /// Copy it; the config's verified bytes when they had to be read.
    Selected(Option<Bytes>),
    /// Skip it, for this reason.
    Excluded(String),
}

/// Whether the architecture filter selects index entry `child`. An empty filter selects all;
/// an entry without a platform (an artifact, a referrer) is not a platform image, so the filter
/// does not apply to it (SEMANTICS.md §9).
pub(crate) fn platform_selected(architectures: &[String], child: &Reference) -> bool {
    architectures.is_empty()
        || child
            .platform
            .as_ref()
            .is_none_or(|p| architectures.contains(&p.architecture))
}

/// The sorted comma-joined architectures, as recorded on rewritten indexes.
pub(crate) fn architectures_label(architectures: &[String]) -> String {
    let mut a = architectures.to_vec();
    a.sort();
    a.join(",")
}

/// The entries of index `digest` the architecture filter selects; an error when none is.
pub(crate) fn chosen(
    digest: &Digest,
    manifests: &[Reference],
    architectures: &[String],
) -> Result<Vec<Reference>> {
    let chosen: Vec<Reference> = manifests
        .iter()
        .filter(|c| platform_selected(architectures, c))
        .cloned()
        .collect();
    if chosen.is_empty() {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "index {digest} has no platform matching the architecture filter {architectures:?} (it has {})",
                platforms(manifests)
            ),
        ));
    }
    Ok(chosen)
}

/// Whether a single-platform image's config must be read to apply the filter: only with a
/// filter, and only an image config (an artifact's config, of any other media type and not
/// necessarily JSON, names no platform: the filter applies to platform images only, SEMANTICS.md
/// §9).
pub(crate) fn reads_config(architectures: &[String], config: &Reference) -> bool {
    !architectures.is_empty() && media_types::is_image_config(&config.media_type)
}

/// What the filter makes of an image whose config `config` (digest `digest`) was read: an image
/// whose config names no architecture is copied.
pub(crate) fn config_fit(
    config: Bytes,
    digest: &Digest,
    architectures: &[String],
) -> Result<PlatformFit> {
    let arch = image_architecture(&config, digest)?;
    if arch.is_empty() || architectures.contains(&arch) {
        Ok(PlatformFit::Selected(Some(config)))
    } else {
        Ok(PlatformFit::Excluded(format!(
            "single-platform image for {arch:?}, not in the architecture filter {architectures:?}"
        )))
    }
}

/// Whether `manifest` (the destination's) is an index this engine rewrote from the source's
/// `source` digest for the same `architectures` (see [`rewrite_index`]).
pub(crate) fn is_rewrite_of(
    manifest: &Manifest,
    source: &Digest,
    architectures: &[String],
) -> bool {
    #[derive(serde::Deserialize)]
    struct Annotated {
        #[serde(default)]
        annotations: BTreeMap<String, String>,
    }
    serde_json::from_slice::<Annotated>(&manifest.bytes).is_ok_and(|m| {
        m.annotations.get(SOURCE_DIGEST_ANNOTATION) == Some(&source.to_string())
            && m.annotations.get(ARCHITECTURES_ANNOTATION)
                == Some(&architectures_label(architectures))
    })
}

/// `os/arch` of each index entry, for messages.
fn platforms(manifests: &[Reference]) -> String {
    let list: Vec<String> = manifests
        .iter()
        .map(|m| match &m.platform {
            Some(p) => format!("{}/{}", p.os, p.architecture),
            None => "unknown".to_owned(),
        })
        .collect();
    if list.is_empty() {
        "no entries".to_owned()
    } else {
        list.join(", ")
    }
}

/// The `architecture` field of an image config.
fn image_architecture(config: &[u8], digest: &Digest) -> Result<String> {
    #[derive(serde::Deserialize)]
    struct Config {
        #[serde(default)]
        architecture: String,
    }
    serde_json::from_slice::<Config>(config)
        .map(|c| c.architecture)
        .map_err(|e| {
            Error::new(
                ErrorKind::InvalidManifest,
                format!("config blob {digest} is not a valid image config: {e}"),
            )
        })
}

/// A new index holding only `chosen` of `index`'s entries, annotated with where it came from.
pub(crate) fn rewrite_index(
    index: &Manifest,
    chosen: &[Reference],
    architectures: &[String],
) -> Result<Manifest> {
    let invalid = |e: serde_json::Error| {
        Error::new(
            ErrorKind::InvalidManifest,
            format!("index {} cannot be rewritten: {e}", index.digest),
        )
    };
    let mut value: serde_json::Value = serde_json::from_slice(&index.bytes).map_err(invalid)?;
    let object = value.as_object_mut().ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidManifest,
            format!("index {} is not a JSON object", index.digest),
        )
    })?;
    if let Some(serde_json::Value::Array(entries)) = object.get_mut("manifests") {
        entries.retain(|entry| {
            entry
                .get("digest")
                .and_then(|d| d.as_str())
                .is_some_and(|d| chosen.iter().any(|c| c.digest.as_str() == d))
        });
    }
    let annotations = object
        .entry("annotations")
        .or_insert_with(|| serde_json::Value::Object(Default::default()));
    if let Some(annotations) = annotations.as_object_mut() {
        annotations.insert(
            SOURCE_DIGEST_ANNOTATION.to_owned(),
            index.digest.to_string().into(),
        );
        annotations.insert(
            ARCHITECTURES_ANNOTATION.to_owned(),
            architectures_label(architectures).into(),
        );
    }
    let bytes = serde_json::to_vec(&value).map_err(invalid)?;
    let media_type = if index.media_type.is_empty() {
        media_types::OCI_INDEX
    } else {
        &index.media_type
    };
    Manifest::from_bytes(bytes, media_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewritten_index_is_known_for_its_source_and_architectures() {
        let entry = |digest: &str, arch: &str| {
            serde_json::json!({
                "mediaType": media_types::OCI_MANIFEST, "digest": digest, "size": 1,
                "platform": {"os": "linux", "architecture": arch},
            })
        };
        let (amd, arm) = (Digest::of(b"amd64"), Digest::of(b"arm64"));
        let bytes = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_types::OCI_INDEX,
            "manifests": [entry(amd.as_str(), "amd64"), entry(arm.as_str(), "arm64")],
        }))
        .unwrap();
        let index = Manifest::from_bytes(bytes, media_types::OCI_INDEX).unwrap();
        let Ok(crate::registry::manifest::ManifestKind::Index { manifests }) = index.kind() else {
            panic!("an index");
        };
        let amd64 = vec!["amd64".to_owned()];
        let chosen = chosen(&index.digest, &manifests, &amd64).unwrap();
        let rewritten = rewrite_index(&index, &chosen, &amd64).unwrap();
        assert_ne!(rewritten.digest, index.digest);
        assert!(is_rewrite_of(&rewritten, &index.digest, &amd64));
        assert!(!is_rewrite_of(
            &rewritten,
            &index.digest,
            &["arm64".to_owned()]
        ));
        assert!(!is_rewrite_of(&index, &index.digest, &amd64));
        let e = super::chosen(&index.digest, &manifests, &["s390x".to_owned()]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.message().contains("linux/amd64, linux/arm64"), "{e}");
    }
}
