//! One behaviour suite, run against every registry backend: the same generic cases, written
//! against `&dyn DestRegistry` / `&dyn SourceRegistry`, so every backend is held to the same
//! contract. Backend quirks are explicit capability flags, not separate tests.

use std::any::Any;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt as _, TryStreamExt as _};
use regmirror::registry::MemoryRegistry;
use regmirror::registry::http::{HttpOptions, HttpRegistry};
use regmirror::registry::{BlobStream, LayoutRegistry, Manifest};
use regmirror::{DestRegistry, Digest, ErrorKind, SourceRegistry};
use regmirror_tests::image::images_sharing_layers;
use regmirror_tests::{Blob, Flavor, Image, Index, Registry, RegistryBuilder};

/// Makes the stored copy of a blob in a repository differ from its digest.
type Corrupter = Box<dyn Fn(&str, &Digest) + Send + Sync>;

/// A backend under test: one registry value seen through both traits.
struct Backend {
    dest: Arc<dyn DestRegistry>,
    source: Arc<dyn SourceRegistry>,
    /// Whether `mount_blob` between two repositories can succeed.
    mounts: bool,
    /// Whether an index may be pushed while its children are absent.
    sparse_index: bool,
    /// Make the stored copy of a blob in a repository differ from its digest.
    corrupt: Corrupter,
    /// Keeps temp dirs and registry processes alive for the test.
    _keep: Box<dyn Any>,
}

impl Backend {
    fn of<R>(registry: R) -> (Arc<dyn DestRegistry>, Arc<dyn SourceRegistry>)
    where
        R: DestRegistry + SourceRegistry + 'static,
    {
        let registry = Arc::new(registry);
        (registry.clone(), registry)
    }

    fn layout_single() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("layout");
        let (dest, source) = Backend::of(LayoutRegistry::single(&path));
        Backend {
            dest,
            source,
            mounts: false,
            sparse_index: true,
            corrupt: Box::new(move |_repo, digest| {
                flip_file(&path.join("blobs/sha256").join(digest.hex()))
            }),
            _keep: Box::new(dir),
        }
    }

    fn layout_root() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let (dest, source) = Backend::of(LayoutRegistry::new(&root));
        Backend {
            dest,
            source,
            mounts: true,
            sparse_index: true,
            corrupt: Box::new(move |repo, digest| {
                flip_file(&root.join(repo).join("blobs/sha256").join(digest.hex()))
            }),
            _keep: Box::new(dir),
        }
    }

    /// A real distribution registry over plain HTTP, through the HTTP client.
    fn http() -> Backend {
        Backend::http_with(Registry::builder())
    }

    /// The same over TLS with a CA the test generated.
    fn http_tls() -> Backend {
        Backend::http_with(Registry::builder().tls())
    }

    /// The same with htpasswd basic auth.
    fn http_basic() -> Backend {
        Backend::http_with(Registry::builder().basic_auth())
    }

    /// The same with bearer tokens from the kit's issuer (no anonymous access), over TLS.
    fn http_token() -> Backend {
        Backend::http_with(Registry::builder().tls().token_auth(false))
    }

    fn http_with(builder: RegistryBuilder) -> Backend {
        let registry = Arc::new(builder.start());
        let options = HttpOptions {
            // Small pages, so listing 250 tags takes several requests.
            tags_page_size: 100,
            ..registry.http_options()
        };
        let client = HttpRegistry::new(&registry.host(), options).unwrap();
        let (dest, source) = Backend::of(client);
        let handle = Arc::clone(&registry);
        Backend {
            dest,
            source,
            mounts: true,
            sparse_index: false,
            corrupt: Box::new(move |_repo, digest| handle.corrupt_blob(digest)),
            _keep: Box::new(registry),
        }
    }

    fn memory() -> Backend {
        let registry = MemoryRegistry::new();
        let handle = registry.clone();
        let (dest, source) = Backend::of(registry);
        Backend {
            dest,
            source,
            mounts: true,
            sparse_index: false,
            // Blob bytes are stored once per digest, so this corrupts every repository's copy.
            corrupt: Box::new(move |repo, digest| {
                let mut bytes = handle.blob(digest).expect("the blob is stored").to_vec();
                for b in &mut bytes {
                    *b ^= 0x5a;
                }
                handle.put_blob_as(repo, digest, bytes);
            }),
            _keep: Box::new(()),
        }
    }
}

/// Overwrite a file with different bytes of the same length.
fn flip_file(path: &std::path::Path) {
    let mut bytes = std::fs::read(path).unwrap();
    for b in &mut bytes {
        *b ^= 0x5a;
    }
    std::fs::write(path, bytes).unwrap();
}

/// `bytes` as a stream of small chunks, like a network body.
fn stream_of(bytes: Bytes) -> BlobStream {
    let chunks: Vec<regmirror::Result<Bytes>> = (0..bytes.len())
        .step_by(1000)
        .map(|start| Ok(bytes.slice(start..(start + 1000).min(bytes.len()))))
        .collect();
    futures::stream::iter(chunks).boxed()
}

async fn read_blob(source: &dyn SourceRegistry, repo: &str, digest: &Digest) -> Bytes {
    let chunks: Vec<Bytes> = source
        .get_blob(repo, digest)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    chunks.concat().into()
}

async fn push_blob(dest: &dyn DestRegistry, repo: &str, blob: &Blob) {
    dest.push_blob(
        repo,
        &blob.digest,
        blob.size(),
        stream_of(blob.bytes.clone()),
    )
    .await
    .unwrap_or_else(|e| panic!("pushing blob {} to {repo}: {e}", blob.digest));
}

async fn push_image(dest: &dyn DestRegistry, repo: &str, reference: &str, image: &Image) -> Digest {
    for blob in image.blobs() {
        if !dest.has_blob(repo, &blob.digest).await.unwrap() {
            push_blob(dest, repo, blob).await;
        }
    }
    dest.push_manifest(repo, reference, &image.manifest)
        .await
        .unwrap_or_else(|e| panic!("pushing manifest {reference} to {repo}: {e}"))
}

async fn push_index(dest: &dyn DestRegistry, repo: &str, tag: &str, index: &Index) -> Digest {
    for child in &index.children {
        push_image(dest, repo, child.manifest.digest.as_str(), child).await;
    }
    dest.push_manifest(repo, tag, &index.manifest)
        .await
        .unwrap()
}

/// The manifest read back by tag and by digest, through both traits, is byte-identical.
async fn assert_reads_back(backend: &Backend, repo: &str, tag: &str, expected: &Manifest) {
    let (dest, source) = (&*backend.dest, &*backend.source);
    for reference in [tag, expected.digest.as_str()] {
        let got = source.get_manifest(repo, reference).await.unwrap();
        assert_eq!(got.bytes, expected.bytes, "{repo}:{reference} bytes");
        assert_eq!(got.digest, expected.digest);
        assert_eq!(got.media_type, expected.media_type);
        let got = dest.get_manifest(repo, reference).await.unwrap();
        assert_eq!(got.bytes, expected.bytes);
        for head in [
            source.head_manifest(repo, reference).await.unwrap(),
            dest.head_manifest(repo, reference).await.unwrap(),
        ] {
            let head = head.unwrap_or_else(|| panic!("{repo}:{reference} has a head"));
            assert_eq!(head.digest, expected.digest);
            assert_eq!(head.media_type, expected.media_type);
            assert_eq!(head.size, expected.bytes.len() as u64);
        }
    }
}

async fn manifests_round_trip(backend: &Backend) {
    let dest = &*backend.dest;
    for (i, flavor) in [Flavor::Oci, Flavor::Docker].into_iter().enumerate() {
        let repo = format!("round/trip{i}");
        let image = Image::new(
            flavor,
            10 + i as u64,
            vec![
                Blob::random(i as u64, 3000),
                Blob::random(50 + i as u64, 10),
            ],
        );
        let digest = push_image(dest, &repo, "single", &image).await;
        assert_eq!(digest, image.manifest.digest);
        assert_reads_back(backend, &repo, "single", &image.manifest).await;
        for blob in image.blobs() {
            assert_eq!(
                read_blob(&*backend.source, &repo, &blob.digest).await,
                blob.bytes
            );
        }

        let index = Index::two_platforms(flavor, 20 + i as u64, 2000);
        let digest = push_index(dest, &repo, "multi", &index).await;
        assert_eq!(digest, index.manifest.digest);
        assert_reads_back(backend, &repo, "multi", &index.manifest).await;
        for child in &index.children {
            let got = backend
                .source
                .get_manifest(&repo, child.manifest.digest.as_str())
                .await
                .unwrap();
            assert_eq!(got.bytes, child.manifest.bytes);
        }
        let mut tags = backend.source.list_tags(&repo).await.unwrap();
        tags.sort();
        assert_eq!(
            tags,
            ["multi", "single"],
            "children pushed by digest are not tags"
        );
    }
}

async fn untagged_manifest_is_reachable_by_digest_only(backend: &Backend) {
    let image = Image::simple(30, 1, 100);
    push_image(
        &*backend.dest,
        "untagged/app",
        image.manifest.digest.as_str(),
        &image,
    )
    .await;
    let head = backend
        .dest
        .head_manifest("untagged/app", image.manifest.digest.as_str())
        .await
        .unwrap();
    assert_eq!(head.unwrap().digest, image.manifest.digest);
    assert!(
        backend
            .dest
            .list_tags("untagged/app")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        backend
            .dest
            .head_manifest("untagged/app", "latest")
            .await
            .unwrap()
            .is_none()
    );
    let e = backend
        .source
        .get_manifest("untagged/app", "latest")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

async fn absent_things(backend: &Backend) {
    let e = backend.source.list_tags("absent/repo").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(
        backend
            .dest
            .list_tags("absent/repo")
            .await
            .unwrap()
            .is_empty()
    );
    let missing = Digest::of(b"never pushed");
    assert!(
        !backend
            .dest
            .has_blob("absent/repo", &missing)
            .await
            .unwrap()
    );
    assert!(
        backend
            .dest
            .head_manifest("absent/repo", missing.as_str())
            .await
            .unwrap()
            .is_none()
    );
    let e = backend
        .source
        .get_blob("absent/repo", &missing)
        .await
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

async fn blob_mount(backend: &Backend) {
    let dest = &*backend.dest;
    let blob = Blob::random(40, 5000);
    push_blob(dest, "mount/from", &blob).await;
    let mounted = dest
        .mount_blob("mount/to", &blob.digest, "mount/from")
        .await
        .unwrap();
    assert_eq!(mounted, backend.mounts);
    if mounted {
        assert!(dest.has_blob("mount/to", &blob.digest).await.unwrap());
        assert_eq!(
            read_blob(&*backend.source, "mount/to", &blob.digest).await,
            blob.bytes
        );
    }
    let unknown = Digest::of(b"not anywhere");
    assert!(
        !dest
            .mount_blob("mount/to", &unknown, "mount/from")
            .await
            .unwrap()
    );
    assert!(!dest.has_blob("mount/to", &unknown).await.unwrap());
}

async fn pagination_returns_every_tag(backend: &Backend) {
    let image = Image::simple(50, 1, 100);
    let mut expected: Vec<String> = (0..250).map(|i| format!("t{i:03}")).collect();
    push_image(&*backend.dest, "many/tags", "t000", &image).await;
    for tag in &expected[1..] {
        backend
            .dest
            .push_manifest("many/tags", tag, &image.manifest)
            .await
            .unwrap();
    }
    let mut tags = backend.source.list_tags("many/tags").await.unwrap();
    tags.sort();
    expected.sort();
    assert_eq!(tags, expected);
    let mut tags = backend.dest.list_tags("many/tags").await.unwrap();
    tags.sort();
    assert_eq!(tags.len(), 250);
}

async fn deleting_a_tag_keeps_tags_sharing_its_digest(backend: &Backend) {
    let dest = &*backend.dest;
    let shared = [Blob::random(60, 300), Blob::random(61, 300)];
    let images = images_sharing_layers(2, &shared);
    push_image(dest, "del/app", "a", &images[0]).await;
    dest.push_manifest("del/app", "b", &images[0].manifest)
        .await
        .unwrap();
    push_image(dest, "del/app", "c", &images[1]).await;

    dest.delete_tag("del/app", "a").await.unwrap();
    let mut tags = dest.list_tags("del/app").await.unwrap();
    tags.sort();
    assert_eq!(tags, ["b", "c"]);
    assert!(dest.head_manifest("del/app", "a").await.unwrap().is_none());
    assert_eq!(
        dest.head_manifest("del/app", "b")
            .await
            .unwrap()
            .unwrap()
            .digest,
        images[0].manifest.digest
    );
    assert_reads_back(backend, "del/app", "b", &images[0].manifest).await;
    let e = dest.delete_tag("del/app", "a").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

async fn retagging_moves_the_tag(backend: &Backend) {
    let dest = &*backend.dest;
    let (one, two) = (Image::simple(70, 1, 100), Image::simple(71, 1, 100));
    push_image(dest, "move/app", "latest", &one).await;
    push_image(dest, "move/app", "latest", &two).await;
    assert_eq!(dest.list_tags("move/app").await.unwrap(), ["latest"]);
    assert_reads_back(backend, "move/app", "latest", &two.manifest).await;
}

async fn corrupt_blob_is_refused(backend: &Backend) {
    let dest = &*backend.dest;
    let blob = Blob::random(80, 20_000);
    // Pushed bytes that do not match the announced digest.
    let wrong = Blob::random(81, 20_000);
    let e = dest
        .push_blob(
            "corrupt/app",
            &blob.digest,
            blob.size(),
            stream_of(wrong.bytes.clone()),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DigestMismatch, "{e}");
    assert!(!dest.has_blob("corrupt/app", &blob.digest).await.unwrap());
    // The right bytes with a wrong size, and a stream longer than announced.
    let e = dest
        .push_blob(
            "corrupt/app",
            &blob.digest,
            blob.size() + 1,
            stream_of(blob.bytes.clone()),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DigestMismatch, "{e}");
    let mut longer = blob.bytes.to_vec();
    longer.extend_from_slice(b"trailing");
    let e = dest
        .push_blob(
            "corrupt/app",
            &blob.digest,
            blob.size(),
            stream_of(longer.into()),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DigestMismatch, "{e}");
    assert!(!dest.has_blob("corrupt/app", &blob.digest).await.unwrap());

    // A source serves stored bytes unverified (the copier checks them): after corruption
    // they no longer hash to the digest they were asked for.
    push_blob(dest, "corrupt/app", &blob).await;
    (backend.corrupt)("corrupt/app", &blob.digest);
    let served = read_blob(&*backend.source, "corrupt/app", &blob.digest).await;
    assert_eq!(served.len(), blob.bytes.len());
    assert_ne!(Digest::of(&served), blob.digest);
}

async fn manifest_with_missing_blobs_is_refused(backend: &Backend) {
    let image = Image::simple(90, 2, 100);
    push_blob(&*backend.dest, "missing/app", &image.config).await;
    push_blob(&*backend.dest, "missing/app", &image.layers[0]).await;
    let e = backend
        .dest
        .push_manifest("missing/app", "v1", &image.manifest)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidManifest, "{e}");
    assert!(
        backend
            .dest
            .list_tags("missing/app")
            .await
            .unwrap()
            .is_empty()
    );
}

async fn sparse_index(backend: &Backend) {
    let index = Index::two_platforms(Flavor::Oci, 100, 100);
    // Only the first platform is staged.
    push_image(
        &*backend.dest,
        "sparse/app",
        index.children[0].manifest.digest.as_str(),
        &index.children[0],
    )
    .await;
    let pushed = backend
        .dest
        .push_manifest("sparse/app", "v1", &index.manifest)
        .await;
    if backend.sparse_index {
        assert_eq!(pushed.unwrap(), index.manifest.digest);
        assert_reads_back(backend, "sparse/app", "v1", &index.manifest).await;
    } else {
        let e = pushed.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidManifest, "{e}");
    }
}

/// Looking up a malformed reference may be refused outright or simply find nothing; writing one
/// must always be refused as invalid.
fn lookup_refused(kind: ErrorKind) -> bool {
    matches!(kind, ErrorKind::InvalidReference | ErrorKind::NotFound)
}

async fn invalid_references_are_refused(backend: &Backend) {
    let dest = &*backend.dest;
    let image = Image::simple(110, 1, 100);
    push_image(dest, "refs/app", "ok", &image).await;
    for tag in ["../x", "..", "a/b", "-x", ""] {
        let e = dest
            .push_manifest("refs/app", tag, &image.manifest)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidReference, "tag {tag:?}: {e}");
    }
    for digest in [
        "sha256:../../..",
        "sha256:../../../../etc/passwd",
        "md5:abc",
    ] {
        let e = dest
            .push_manifest("refs/app", digest, &image.manifest)
            .await
            .unwrap_err();
        assert!(
            matches!(
                e.kind(),
                ErrorKind::InvalidReference | ErrorKind::DigestMismatch
            ),
            "digest {digest:?}: {e}"
        );
        let e = backend
            .source
            .get_manifest("refs/app", digest)
            .await
            .unwrap_err();
        assert!(lookup_refused(e.kind()), "digest {digest:?}: {e}");
    }
    let e = backend
        .source
        .get_manifest("refs/app", "../../x")
        .await
        .unwrap_err();
    assert!(lookup_refused(e.kind()), "{e}");
    let e = dest.delete_tag("refs/app", "../ok").await.unwrap_err();
    assert!(lookup_refused(e.kind()), "{e}");
    // A manifest whose bytes do not match its digest label.
    let mut forged = image.manifest.clone();
    forged.digest = Digest::of(b"forged");
    let e = dest
        .push_manifest("refs/app", forged.digest.as_str(), &forged)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DigestMismatch, "{e}");
    assert_eq!(dest.list_tags("refs/app").await.unwrap(), ["ok"]);
}

regmirror_tests::backend_suite!(
    [
        layout_single,
        layout_root,
        http,
        http_tls,
        http_basic,
        http_token,
        memory
    ],
    [
        manifests_round_trip,
        untagged_manifest_is_reachable_by_digest_only,
        absent_things,
        blob_mount,
        pagination_returns_every_tag,
        deleting_a_tag_keeps_tags_sharing_its_digest,
        retagging_moves_the_tag,
        corrupt_blob_is_refused,
        manifest_with_missing_blobs_is_refused,
        sparse_index,
        invalid_references_are_refused,
    ]
);
