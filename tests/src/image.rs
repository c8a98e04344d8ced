//! Deterministic test images: pseudo-random layers from a seed, configs with os/architecture,
//! OCI and Docker media types, multi-platform indexes. Everything is bytes plus digests, so the
//! same seed always gives the same digests.

use bytes::Bytes;
use futures::StreamExt as _;
use regmirror::Digest;
use regmirror::registry::{Manifest, media_types};
use serde_json::json;
use sha2::{Digest as _, Sha256};

/// The OCI image config media type.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// The OCI gzip layer media type.
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The Docker image config media type.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// The Docker gzip layer media type.
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Which family of media types an image uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flavor {
    #[default]
    Oci,
    Docker,
}

impl Flavor {
    fn manifest(self) -> &'static str {
        match self {
            Flavor::Oci => media_types::OCI_MANIFEST,
            Flavor::Docker => media_types::DOCKER_MANIFEST,
        }
    }
    fn index(self) -> &'static str {
        match self {
            Flavor::Oci => media_types::OCI_INDEX,
            Flavor::Docker => media_types::DOCKER_LIST,
        }
    }
    fn config(self) -> &'static str {
        match self {
            Flavor::Oci => OCI_CONFIG,
            Flavor::Docker => DOCKER_CONFIG,
        }
    }
    fn layer(self) -> &'static str {
        match self {
            Flavor::Oci => OCI_LAYER,
            Flavor::Docker => DOCKER_LAYER,
        }
    }
}

/// Bytes with their digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub digest: Digest,
    pub bytes: Bytes,
}

impl Blob {
    /// Wrap bytes, computing the digest.
    pub fn new(bytes: impl Into<Bytes>) -> Blob {
        let bytes = bytes.into();
        Blob {
            digest: Digest::of(&bytes),
            bytes,
        }
    }

    /// `size` pseudo-random bytes determined by `seed` (sha256 in counter mode: fast enough for
    /// megabytes, identical on every machine).
    pub fn random(seed: u64, size: usize) -> Blob {
        let mut bytes = Vec::with_capacity(size + 32);
        let mut counter = 0u64;
        while bytes.len() < size {
            let mut hasher = Sha256::new();
            hasher.update(seed.to_le_bytes());
            hasher.update(counter.to_le_bytes());
            bytes.extend_from_slice(&hasher.finalize());
            counter += 1;
        }
        bytes.truncate(size);
        Blob::new(bytes)
    }

    /// The size in bytes.
    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
}

/// A blob too large to hold in memory, generated on the fly: a 1 MiB pseudo-random block repeated,
/// each repetition stamped with its index so no two chunks are equal.
#[derive(Debug, Clone)]
pub struct LargeBlob {
    pub digest: Digest,
    pub size: u64,
    block: Bytes,
}

/// The chunk size [`LargeBlob::stream`] yields.
pub const LARGE_CHUNK: usize = 1 << 20;

impl LargeBlob {
    /// A blob of `size` bytes derived from `seed`; computing its digest reads it once.
    pub fn new(seed: u64, size: u64) -> LargeBlob {
        let mut blob = LargeBlob {
            digest: Digest::of(b""),
            size,
            block: Blob::random(seed, LARGE_CHUNK).bytes,
        };
        let mut hasher = Sha256::new();
        for i in 0..blob.chunks() {
            hasher.update(blob.chunk(i));
        }
        blob.digest = Digest::parse(&format!("sha256:{}", hex::encode(hasher.finalize())))
            .expect("a sha256 hex digest is a valid digest");
        blob
    }

    fn chunks(&self) -> u64 {
        self.size.div_ceil(LARGE_CHUNK as u64)
    }

    fn chunk(&self, i: u64) -> Bytes {
        let len = (self.size - i * LARGE_CHUNK as u64).min(LARGE_CHUNK as u64) as usize;
        let mut chunk = self.block[..len].to_vec();
        let stamp = i.to_le_bytes();
        let n = stamp.len().min(len);
        chunk[..n].copy_from_slice(&stamp[..n]);
        chunk.into()
    }

    /// The blob's bytes as a stream of 1 MiB chunks, produced only as they are polled.
    pub fn stream(&self) -> regmirror::registry::BlobStream {
        let blob = self.clone();
        Box::pin(futures::stream::iter(0..self.chunks()).map(move |i| Ok(blob.chunk(i))))
    }
}

/// A single-platform image: config, layers and the manifest that ties them.
#[derive(Debug, Clone)]
pub struct Image {
    pub flavor: Flavor,
    pub os: String,
    pub architecture: String,
    pub config: Blob,
    pub layers: Vec<Blob>,
    pub manifest: Manifest,
}

impl Image {
    /// An image of `layers` whose config is made unique by `seed`; `linux/amd64`.
    pub fn new(flavor: Flavor, seed: u64, layers: Vec<Blob>) -> Image {
        Image::for_platform(flavor, seed, "linux", "amd64", layers)
    }

    /// An OCI image with `count` fresh layers of `size` bytes, all derived from `seed`.
    pub fn simple(seed: u64, count: usize, size: usize) -> Image {
        let layers = (0..count)
            .map(|i| Blob::random(seed.wrapping_mul(1000).wrapping_add(i as u64), size))
            .collect();
        Image::new(Flavor::Oci, seed, layers)
    }

    /// An image for one platform.
    pub fn for_platform(
        flavor: Flavor,
        seed: u64,
        os: &str,
        architecture: &str,
        layers: Vec<Blob>,
    ) -> Image {
        let diff_ids: Vec<String> = layers.iter().map(|l| l.digest.to_string()).collect();
        let config = Blob::new(
            serde_json::to_vec(&json!({
                "architecture": architecture,
                "os": os,
                "config": { "Labels": { "regmirror.test.seed": seed.to_string() } },
                "rootfs": { "type": "layers", "diff_ids": diff_ids },
            }))
            .expect("a JSON value serializes"),
        );
        let descriptor = |media_type: &str, blob: &Blob| json!({ "mediaType": media_type, "digest": blob.digest.as_str(), "size": blob.size() });
        let body = json!({
            "schemaVersion": 2,
            "mediaType": flavor.manifest(),
            "config": descriptor(flavor.config(), &config),
            "layers": layers.iter().map(|l| descriptor(flavor.layer(), l)).collect::<Vec<_>>(),
        });
        let manifest = manifest_of(&body, flavor.manifest());
        Image {
            flavor,
            os: os.to_owned(),
            architecture: architecture.to_owned(),
            config,
            layers,
            manifest,
        }
    }

    /// Every blob the image references (config first).
    pub fn blobs(&self) -> impl Iterator<Item = &Blob> {
        std::iter::once(&self.config).chain(&self.layers)
    }
}

/// A multi-platform index (OCI) or manifest list (Docker) and its child images.
#[derive(Debug, Clone)]
pub struct Index {
    pub children: Vec<Image>,
    pub manifest: Manifest,
}

impl Index {
    /// An index over `children`, which must share the index's flavor.
    pub fn new(flavor: Flavor, children: Vec<Image>) -> Index {
        let entries: Vec<_> = children
            .iter()
            .map(|c| {
                json!({
                    "mediaType": c.manifest.media_type,
                    "digest": c.manifest.digest.as_str(),
                    "size": c.manifest.bytes.len(),
                    "platform": { "os": c.os, "architecture": c.architecture },
                })
            })
            .collect();
        let body = json!({
            "schemaVersion": 2,
            "mediaType": flavor.index(),
            "manifests": entries,
        });
        Index {
            manifest: manifest_of(&body, flavor.index()),
            children,
        }
    }

    /// A `linux/amd64` + `linux/arm64` index; each child has one own layer of `size` bytes and
    /// one layer shared between them.
    pub fn two_platforms(flavor: Flavor, seed: u64, size: usize) -> Index {
        let shared = Blob::random(seed.wrapping_mul(1000).wrapping_add(999), size);
        let children = ["amd64", "arm64"]
            .iter()
            .enumerate()
            .map(|(i, arch)| {
                let own = Blob::random(seed.wrapping_mul(1000).wrapping_add(i as u64), size);
                Image::for_platform(
                    flavor,
                    seed.wrapping_mul(10).wrapping_add(i as u64),
                    "linux",
                    arch,
                    vec![shared.clone(), own],
                )
            })
            .collect();
        Index::new(flavor, children)
    }
}

/// `count` images that differ only in their config and all share the same `layers`
/// ("20 tags sharing 2 layers").
pub fn images_sharing_layers(count: usize, layers: &[Blob]) -> Vec<Image> {
    (0..count)
        .map(|i| Image::new(Flavor::Oci, i as u64, layers.to_vec()))
        .collect()
}

/// Pretty-printed, so byte-exact round trips are tested against non-canonical JSON.
fn manifest_of(body: &serde_json::Value, media_type: &str) -> Manifest {
    let bytes = serde_json::to_vec_pretty(body).expect("a JSON value serializes");
    Manifest::from_bytes(bytes, media_type).expect("generated manifests are valid")
}

/// A referrer (SEMANTICS.md §9): an OCI 1.1 artifact with a `subject` (an SBOM, an
/// attestation, a notation signature), or a cosign signature stored under `sha256-<hex>.sig`.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub artifact_type: String,
    pub config: Blob,
    pub layer: Blob,
    pub manifest: Manifest,
}

/// The media type of cosign's signature layers.
pub const COSIGN_SIGNATURE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

impl Artifact {
    /// An OCI 1.1 artifact of `artifact_type` whose subject is `subject` (none: a plain
    /// artifact), with the empty config and one layer made unique by `seed`.
    pub fn oci(seed: u64, artifact_type: &str, subject: Option<&Manifest>) -> Artifact {
        let config = Blob::new(&b"{}"[..]);
        let layer = Blob::new(format!("{{\"artifact\":{seed}}}").into_bytes());
        let mut body = json!({
            "schemaVersion": 2,
            "mediaType": media_types::OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": {
                "mediaType": "application/vnd.oci.empty.v1+json",
                "digest": config.digest.as_str(),
                "size": config.size(),
            },
            "layers": [{
                "mediaType": "application/vnd.example.data.v1+json",
                "digest": layer.digest.as_str(),
                "size": layer.size(),
            }],
            "annotations": { "org.opencontainers.image.created": "2026-12-05T00:00:00Z" },
        });
        if let Some(subject) = subject {
            body["subject"] = json!({
                "mediaType": subject.media_type,
                "digest": subject.digest.as_str(),
                "size": subject.bytes.len(),
            });
        }
        Artifact {
            artifact_type: artifact_type.to_owned(),
            manifest: manifest_of(&body, media_types::OCI_MANIFEST),
            config,
            layer,
        }
    }

    /// A signature as cosign stores it in its tag scheme: an image config with no platform,
    /// one simple-signing layer carrying the signature annotation.
    pub fn cosign_signature(seed: u64) -> Artifact {
        let config = Blob::new(
            serde_json::to_vec(&json!({
                "architecture": "", "os": "", "config": {},
                "rootfs": { "type": "layers", "diff_ids": [] },
            }))
            .expect("a JSON value serializes"),
        );
        let layer = Blob::new(format!("{{\"critical\":{{\"seed\":{seed}}}}}").into_bytes());
        let body = json!({
            "schemaVersion": 2,
            "mediaType": media_types::OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config.digest.as_str(),
                "size": config.size(),
            },
            "layers": [{
                "mediaType": COSIGN_SIGNATURE,
                "digest": layer.digest.as_str(),
                "size": layer.size(),
                "annotations": { "dev.cosignproject.cosign/signature": format!("MEUCIQ{seed}") },
            }],
        });
        Artifact {
            artifact_type: COSIGN_SIGNATURE.to_owned(),
            manifest: manifest_of(&body, media_types::OCI_MANIFEST),
            config,
            layer,
        }
    }

    pub fn blobs(&self) -> impl Iterator<Item = &Blob> {
        [&self.config, &self.layer].into_iter()
    }
}

/// The tag that names `subject` in the referrers tag schema (`sha256-<hex>`); cosign's tags
/// add `.sig`, `.att` or `.sbom`.
pub fn referrers_tag(subject: &Digest) -> String {
    format!("sha256-{}", subject.hex())
}

/// A referrers index (what the referrers API answers, and what the `sha256-<hex>` tag holds)
/// listing `referrers`.
pub fn referrers_index(referrers: &[&Artifact]) -> Manifest {
    let entries: Vec<_> = referrers
        .iter()
        .map(|a| {
            json!({
                "mediaType": a.manifest.media_type,
                "digest": a.manifest.digest.as_str(),
                "size": a.manifest.bytes.len(),
                "artifactType": a.artifact_type,
            })
        })
        .collect();
    let body = json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_INDEX,
        "manifests": entries,
    });
    manifest_of(&body, media_types::OCI_INDEX)
}
