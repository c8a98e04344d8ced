//! What a source may hold but must never be copied: Docker schema 1 manifests, manifests over the
//! size limits, and manifests whose bytes do not match the digest they are fetched by. Each
//! backend plants the raw bytes its own way (files in a layout; canned answers from the proxy in
//! front of a real registry), then the same cases read them through `SourceRegistry`.

use regmirror::registry::LayoutRegistry;
use regmirror::registry::http::{HttpOptions, HttpRegistry};
use regmirror::registry::manifest::{MAX_INDEX_BYTES, MAX_MANIFEST_BYTES, media_types};
use regmirror::{Digest, ErrorKind, SourceRegistry};
use regmirror_tests::{Fault, Proxy, Registry};
use serde_json::json;

/// Stores raw manifest bytes under a tag (and under their digest), bypassing every check.
trait Planter {
    fn plant(&self, repo: &str, tag: &str, media_type: &str, bytes: &[u8]);
    /// Store `bytes` so that fetching them by `claimed` digest returns them.
    fn plant_by_digest(&self, repo: &str, claimed: &Digest, media_type: &str, bytes: &[u8]);
}

/// A layout directory written by hand.
struct LayoutFiles {
    /// Where repository `repo` lives (the same directory for every repo in a single layout).
    dir: Box<dyn Fn(&str) -> std::path::PathBuf>,
}

impl Planter for LayoutFiles {
    fn plant(&self, repo: &str, tag: &str, media_type: &str, bytes: &[u8]) {
        let digest = Digest::of(bytes);
        self.plant_by_digest(repo, &digest, media_type, bytes);
        let dir = (self.dir)(repo);
        let index = json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": media_type,
                "digest": digest.as_str(),
                "size": bytes.len(),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }],
        });
        std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    }

    fn plant_by_digest(&self, repo: &str, claimed: &Digest, _media_type: &str, bytes: &[u8]) {
        let blobs = (self.dir)(repo).join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        std::fs::write(blobs.join(claimed.hex()), bytes).unwrap();
    }
}

/// Canned answers from a proxy in front of a real registry, for what the registry would refuse
/// to store.
struct ProxyAnswers(Proxy);

impl Planter for ProxyAnswers {
    fn plant(&self, repo: &str, tag: &str, media_type: &str, bytes: &[u8]) {
        self.plant_at(&format!("/v2/{repo}/manifests/{tag}"), media_type, bytes);
    }

    fn plant_by_digest(&self, repo: &str, claimed: &Digest, media_type: &str, bytes: &[u8]) {
        self.plant_at(
            &format!("/v2/{repo}/manifests/{claimed}"),
            media_type,
            bytes,
        );
    }
}

impl ProxyAnswers {
    fn plant_at(&self, path: &str, media_type: &str, bytes: &[u8]) {
        let answer = Fault::Respond {
            status: 200,
            content_type: media_type.to_owned(),
            body: bytes.to_vec().into(),
        };
        self.0.inject("*", path, answer, usize::MAX);
    }
}

struct Backend {
    source: Box<dyn SourceRegistry>,
    planter: Box<dyn Planter>,
    _keep: Box<dyn std::any::Any>,
}

impl Backend {
    /// The HTTP client, through a proxy in front of a real distribution registry.
    fn http() -> Backend {
        let registry = Registry::start();
        let proxy = Proxy::start(&registry);
        let options = HttpOptions {
            tls_verify: false,
            docker_config: false,
            ..HttpOptions::default()
        };
        Backend {
            source: Box::new(HttpRegistry::new(&proxy.host(), options).unwrap()),
            planter: Box::new(ProxyAnswers(proxy)),
            _keep: Box::new(registry),
        }
    }

    fn layout_single() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        Backend {
            source: Box::new(LayoutRegistry::single(&path)),
            planter: Box::new(LayoutFiles {
                dir: Box::new(move |_| path.clone()),
            }),
            _keep: Box::new(dir),
        }
    }

    fn layout_root() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        Backend {
            source: Box::new(LayoutRegistry::new(&root)),
            planter: Box::new(LayoutFiles {
                dir: Box::new(move |repo| {
                    let dir = root.join(repo);
                    std::fs::create_dir_all(&dir).unwrap();
                    dir
                }),
            }),
            _keep: Box::new(dir),
        }
    }
}

fn schema1() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 1,
        "name": "stored/app",
        "tag": "old",
        "architecture": "amd64",
        "fsLayers": [{"blobSum": Digest::of(b"layer").as_str()}],
        "history": [{"v1Compatibility": "{}"}],
        "signatures": [],
    }))
    .unwrap()
}

/// A syntactically valid image manifest padded past `size` bytes with an annotation.
fn padded_image(media_type: &str, size: usize) -> Vec<u8> {
    let descriptor = |d: &Digest| json!({"mediaType": "application/octet-stream", "digest": d.as_str(), "size": 1});
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": descriptor(&Digest::of(b"c")),
        "layers": [descriptor(&Digest::of(b"l"))],
        "annotations": {"padding": "x".repeat(size)},
    }))
    .unwrap()
}

fn padded_index(size: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_INDEX,
        "manifests": [],
        "annotations": {"padding": "x".repeat(size)},
    }))
    .unwrap()
}

async fn schema1_is_unsupported(backend: &Backend) {
    backend.planter.plant(
        "stored/app",
        "old",
        media_types::DOCKER_SCHEMA1_SIGNED,
        &schema1(),
    );
    let e = backend
        .source
        .get_manifest("stored/app", "old")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.message().contains("schema 1"), "{e}");
}

async fn oversized_manifests_are_refused(backend: &Backend) {
    let image = padded_image(media_types::OCI_MANIFEST, MAX_MANIFEST_BYTES);
    backend
        .planter
        .plant("stored/big", "image", media_types::OCI_MANIFEST, &image);
    let e = backend
        .source
        .get_manifest("stored/big", "image")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidManifest, "{e}");

    let index = padded_index(MAX_INDEX_BYTES);
    backend
        .planter
        .plant("stored/bigger", "index", media_types::OCI_INDEX, &index);
    let e = backend
        .source
        .get_manifest("stored/bigger", "index")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidManifest, "{e}");

    // Just under the image limit is fine for an index (its limit is larger).
    let index = padded_index(MAX_MANIFEST_BYTES);
    backend
        .planter
        .plant("stored/wide", "index", media_types::OCI_INDEX, &index);
    let got = backend
        .source
        .get_manifest("stored/wide", "index")
        .await
        .unwrap();
    assert_eq!(got.bytes, index);
}

async fn manifest_not_matching_its_digest_is_refused(backend: &Backend) {
    let real = padded_image(media_types::OCI_MANIFEST, 10);
    let claimed = Digest::of(b"some other manifest");
    backend
        .planter
        .plant_by_digest("stored/forged", &claimed, media_types::OCI_MANIFEST, &real);
    let e = backend
        .source
        .get_manifest("stored/forged", claimed.as_str())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DigestMismatch, "{e}");
}

regmirror_tests::backend_suite!(
    [http, layout_single, layout_root],
    [
        schema1_is_unsupported,
        oversized_manifests_are_refused,
        manifest_not_matching_its_digest_is_refused,
    ]
);
