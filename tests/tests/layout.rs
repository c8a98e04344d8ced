//! OCI image layout specifics beyond the shared behaviour suite: the on-disk format (checked with
//! skopeo, an independent implementation), concurrent writers, and paths that must not escape.

use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use futures::StreamExt as _;
use regmirror::registry::{BlobStream, LayoutRegistry};
use regmirror::{DestRegistry, ErrorKind, SourceRegistry};
use regmirror_tests::{Blob, Flavor, Image, Index, Registry};

fn stream_of(bytes: Bytes) -> BlobStream {
    futures::stream::iter([Ok(bytes)]).boxed()
}

async fn push_image(dest: &dyn DestRegistry, repo: &str, reference: &str, image: &Image) {
    for blob in image.blobs() {
        dest.push_blob(
            repo,
            &blob.digest,
            blob.size(),
            stream_of(blob.bytes.clone()),
        )
        .await
        .unwrap();
    }
    dest.push_manifest(repo, reference, &image.manifest)
        .await
        .unwrap();
}

fn skopeo(args: &[&str]) -> Vec<u8> {
    let output = Command::new("skopeo")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("running skopeo ({e}); install it with `apt-get install -y skopeo`")
        });
    assert!(
        output.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Every file under `dir`, relative, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn writes_the_spec_layout_with_ref_name_annotations() {
    let dir = tempfile::tempdir().unwrap();
    let layout = LayoutRegistry::single(dir.path());
    let image = Image::simple(1, 1, 100);
    push_image(&layout, "any", "v1", &image).await;
    let marker: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("oci-layout")).unwrap()).unwrap();
    assert_eq!(marker["imageLayoutVersion"], "1.0.0");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
    assert_eq!(index["schemaVersion"], 2);
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["digest"], image.manifest.digest.as_str());
    assert_eq!(
        entries[0]["annotations"]["org.opencontainers.image.ref.name"],
        "v1"
    );
    let stored = std::fs::read(
        dir.path()
            .join("blobs/sha256")
            .join(image.manifest.digest.hex()),
    )
    .unwrap();
    assert_eq!(stored, image.manifest.bytes);
    // Only blobs, the two spec files, and the lock: no temp file is left behind.
    let files = files_under(dir.path());
    assert_eq!(files.len(), 2 + 3 + 1, "{files:?}");
    assert!(files.contains(&".regmirror/lock".to_owned()), "{files:?}");
}

#[tokio::test]
async fn a_failed_upload_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let layout = LayoutRegistry::single(dir.path());
    let blob = Blob::random(2, 1000);
    let e = layout
        .push_blob(
            "x",
            &blob.digest,
            blob.size(),
            stream_of(Bytes::from_static(b"nope")),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DigestMismatch);
    let files = files_under(dir.path());
    assert!(
        files.iter().all(|f| f == "oci-layout"),
        "only the layout marker may exist: {files:?}"
    );
}

#[tokio::test]
async fn repository_paths_cannot_escape_the_root() {
    let parent = tempfile::tempdir().unwrap();
    let root = parent.path().join("root");
    let layout = LayoutRegistry::new(&root);
    let image = Image::simple(3, 1, 100);
    let blob = &image.layers[0];
    for repo in ["../evil", "/abs", "a/../../b", "a//b", "A/b", ""] {
        let e = layout
            .push_blob(
                repo,
                &blob.digest,
                blob.size(),
                stream_of(blob.bytes.clone()),
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidReference, "{repo:?}: {e}");
        let e = layout
            .push_manifest(repo, "v1", &image.manifest)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidReference, "{repo:?}: {e}");
        let e = DestRegistry::list_tags(&layout, repo).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidReference, "{repo:?}: {e}");
        let e = layout
            .mount_blob("ok/repo", &blob.digest, repo)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidReference, "{repo:?}: {e}");
    }
    for tag in ["../x", "../../index", "x/../../y"] {
        let e = layout
            .push_manifest("ok/repo", tag, &image.manifest)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidReference, "{tag:?}: {e}");
    }
    assert_eq!(
        files_under(parent.path()),
        Vec::<String>::new(),
        "nothing may be written"
    );
}

#[tokio::test]
async fn concurrent_writers_keep_every_tag() {
    let dir = tempfile::tempdir().unwrap();
    let image = Image::simple(4, 1, 100);
    push_image(&LayoutRegistry::single(dir.path()), "r", "base", &image).await;
    // Two independent values share no in-process mutex, so only the file lock keeps their
    // read-modify-write cycles of index.json from losing each other's tags.
    let writers = [
        LayoutRegistry::single(dir.path()),
        LayoutRegistry::single(dir.path()),
    ];
    let mut tasks = Vec::new();
    for (w, layout) in writers.iter().enumerate() {
        for i in 0..25 {
            let layout = layout.clone();
            let manifest = image.manifest.clone();
            tasks.push(tokio::spawn(async move {
                layout
                    .push_manifest("r", &format!("w{w}-{i}"), &manifest)
                    .await
                    .unwrap();
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    let tags = SourceRegistry::list_tags(&LayoutRegistry::single(dir.path()), "r")
        .await
        .unwrap();
    assert_eq!(tags.len(), 51, "{tags:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_reads_what_we_write_and_we_read_what_skopeo_writes() {
    let registry = Registry::start();
    let seeder = registry.seeder();
    let index = Index::two_platforms(Flavor::Oci, 5, 2000);
    seeder.push_index("interop/src", "multi", &index).await;
    let image = Image::new(
        Flavor::Docker,
        6,
        vec![Blob::random(60, 5000), Blob::random(61, 10)],
    );
    seeder.push_image("interop/src", "docker", &image).await;

    // skopeo writes a layout; we read it byte-identically.
    let dir = tempfile::tempdir().unwrap();
    let layout_path = dir.path().join("from-skopeo");
    for tag in ["multi", "docker"] {
        skopeo(&[
            "copy",
            "--all",
            "--preserve-digests",
            "--src-tls-verify=false",
            &format!("docker://{}/interop/src:{tag}", registry.host()),
            &format!("oci:{}:{tag}", layout_path.display()),
        ]);
    }
    let ours = LayoutRegistry::single(&layout_path);
    let mut tags = SourceRegistry::list_tags(&ours, "any").await.unwrap();
    tags.sort();
    assert_eq!(tags, ["docker", "multi"]);
    let got = SourceRegistry::get_manifest(&ours, "any", "multi")
        .await
        .unwrap();
    assert_eq!(got.bytes, index.manifest.bytes);
    assert_eq!(got.digest, index.manifest.digest);
    let got = SourceRegistry::get_manifest(&ours, "any", "docker")
        .await
        .unwrap();
    assert_eq!(got.bytes, image.manifest.bytes);

    // We write a layout; skopeo reads it and pushes it to the registry unchanged.
    let written = dir.path().join("from-us");
    let layout = LayoutRegistry::single(&written);
    for child in &index.children {
        push_image(&layout, "any", child.manifest.digest.as_str(), child).await;
    }
    layout
        .push_manifest("any", "multi", &index.manifest)
        .await
        .unwrap();
    let raw = skopeo(&[
        "inspect",
        "--raw",
        &format!("oci:{}:multi", written.display()),
    ]);
    assert_eq!(raw, index.manifest.bytes);
    skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &format!("oci:{}:multi", written.display()),
        &format!("docker://{}/interop/dst:multi", registry.host()),
    ]);
    let pushed = seeder.manifest("interop/dst", "multi").await.unwrap();
    assert_eq!(pushed, index.manifest.bytes);
    for child in &index.children {
        let pushed = seeder
            .manifest("interop/dst", child.manifest.digest.as_str())
            .await
            .unwrap();
        assert_eq!(pushed, child.manifest.bytes);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_synced_into_a_layout_is_readable_by_skopeo() {
    use std::sync::Arc;

    use regmirror::MirrorConfig;
    use regmirror::engine::{HttpConnector, Mirror, SyncOptions};

    let source = Registry::start();
    // OCI-typed: skopeo 1.9's oci: transport looks tags up among OCI-typed index.json entries
    // only (Docker-typed entries are kept with their true media type, as crane and containerd do).
    let index = Index::two_platforms(Flavor::Oci, 8, 3000);
    source.seeder().push_index("up/app", "multi", &index).await;
    let image = Image::simple(9, 2, 2000);
    source.seeder().push_image("up/app", "single", &image).await;

    let dir = tempfile::tempdir().unwrap();
    let layout = LayoutRegistry::single(dir.path());
    let mirror = Mirror::builder()
        .destination(Arc::new(layout.clone()))
        .connector(Arc::new(HttpConnector::new(source.http_options())))
        .build()
        .unwrap();
    let mut config = MirrorConfig::new(
        "mirror/app",
        format!("{}/up/app", source.host()).parse().unwrap(),
        &["*"],
    );
    config.verify_tls = false;
    let report = mirror
        .sync_config(&config, SyncOptions::default())
        .await
        .unwrap();
    assert!(report.is_success(), "{report:?}");

    // skopeo copies the layout into a fresh registry, digests preserved.
    let target = Registry::start();
    for (tag, manifest) in [("multi", &index.manifest), ("single", &image.manifest)] {
        skopeo(&[
            "copy",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
            &format!("oci:{}:{tag}", dir.path().display()),
            &format!("docker://{}/copied/app:{tag}", target.host()),
        ]);
        let copied = target.seeder().manifest("copied/app", tag).await.unwrap();
        assert_eq!(copied, manifest.bytes, "{tag}");
    }
    for child in &index.children {
        for blob in child.blobs() {
            assert!(target.seeder().has_blob("copied/app", &blob.digest).await);
        }
    }
}

#[tokio::test]
async fn mounted_blobs_get_the_mode_of_new_files_and_link_only_when_it_matches() {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

    let root = tempfile::tempdir().unwrap();
    let layouts = LayoutRegistry::new(root.path());
    let blob = Blob::random(9, 1000);
    // What the process umask makes of a new file's 0666.
    let probe = root.path().join("probe");
    std::fs::write(&probe, b"").unwrap();
    let new_file = std::fs::metadata(&probe).unwrap().permissions().mode() & 0o777;
    let blob_file = |repo: &str| {
        root.path()
            .join(repo)
            .join("blobs/sha256")
            .join(blob.digest.hex())
    };
    for repo in ["a/own", "b/private"] {
        layouts
            .push_blob(
                repo,
                &blob.digest,
                blob.size(),
                stream_of(blob.bytes.clone()),
            )
            .await
            .unwrap();
        let mode = std::fs::metadata(blob_file(repo))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, new_file, "{repo}");
    }
    // As an older writer (or another tool) might have left it.
    std::fs::set_permissions(
        blob_file("b/private"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();

    assert!(
        layouts
            .mount_blob("c/linked", &blob.digest, "a/own")
            .await
            .unwrap()
    );
    assert!(
        layouts
            .mount_blob("d/copied", &blob.digest, "b/private")
            .await
            .unwrap()
    );
    let meta = |repo: &str| std::fs::metadata(blob_file(repo)).unwrap();
    assert_eq!(meta("c/linked").ino(), meta("a/own").ino());
    assert_ne!(meta("d/copied").ino(), meta("b/private").ino());
    assert_eq!(meta("d/copied").permissions().mode() & 0o777, new_file);
    assert_eq!(meta("b/private").permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read(blob_file("d/copied")).unwrap(), blob.bytes);
}
