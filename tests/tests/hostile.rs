//! Syncs from a hostile source registry (the kit's [`HostileRegistry`], one misbehaviour per
//! mode or per piece of lying content) into a real registry and into OCI layouts: what a
//! registry sends is untrusted (SEMANTICS.md §10). Each case is a regression test; some held
//! before they were written down here, and stay held.

use std::path::Path;
use std::time::{Duration, Instant};

use regmirror::engine::{Outcome, PreviewAction, SyncOptions, SyncReport};
use regmirror::oneshot::{Access, Location, OneShotSync};
use regmirror::registry::manifest::{MAX_INDEX_DEPTH, MAX_MANIFESTS_PER_TAG};
use regmirror::registry::{Manifest, media_types};
use regmirror::{Credentials, Digest, ErrorKind, SourceRegistry};
use regmirror_tests::hostile::{HostileRegistry, Mode};
use regmirror_tests::{Image, PASSWORD, Registry, USERNAME};
use serde_json::json;

const SRC: &str = "src/app";
const DEST: &str = "mirror/app";

/// A sync of `hostile`'s [`SRC`] selecting `tags` to `to`.
fn sync_to(hostile: &HostileRegistry, to: Location, tags: &[&str]) -> OneShotSync {
    let source = format!("{}/{SRC}", hostile.host()).parse().unwrap();
    let mut sync = OneShotSync::new(source, to, tags.iter().copied());
    sync.source_access = Access {
        credentials: hostile.http_options().credentials,
        tls_verify: false,
        ..Access::default()
    };
    sync.dest_access = Access {
        tls_verify: false,
        ..Access::default()
    };
    sync.timeout = Duration::from_secs(60);
    sync
}

fn registry_dest(registry: &Registry) -> Location {
    format!("{}/{DEST}", registry.host()).parse().unwrap()
}

async fn run(sync: &OneShotSync) -> SyncReport {
    sync.run(SyncOptions::default()).await.unwrap()
}

fn reason<'a>(report: &'a SyncReport, tag: &str) -> &'a str {
    &report
        .tags_failed
        .iter()
        .find(|f| f.tag == tag)
        .unwrap_or_else(|| panic!("tag {tag} did not fail: {report:#?}"))
        .reason
}

/// An OCI index over `entries` (media type, digest, size as the descriptor claims it).
fn index(entries: &[(&str, &Digest, u64)], salt: &str) -> Manifest {
    let manifests: Vec<_> = entries
        .iter()
        .map(|(media_type, digest, size)| {
            json!({
                "mediaType": media_type,
                "digest": digest.as_str(),
                "size": size,
                "platform": { "os": "linux", "architecture": "amd64" },
            })
        })
        .collect();
    let body = json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_INDEX,
        "manifests": manifests,
        "annotations": { "salt": salt },
    });
    Manifest::from_bytes(serde_json::to_vec(&body).unwrap(), media_types::OCI_INDEX).unwrap()
}

/// `image`'s manifest with the first layer's descriptor size replaced by `size`.
fn with_layer_size(image: &Image, size: u64) -> Manifest {
    let mut value: serde_json::Value = serde_json::from_slice(&image.manifest.bytes).unwrap();
    value["layers"][0]["size"] = json!(size);
    Manifest::from_bytes(
        serde_json::to_vec(&value).unwrap(),
        media_types::OCI_MANIFEST,
    )
    .unwrap()
}

fn size_of(manifest: &Manifest) -> u64 {
    manifest.bytes.len() as u64
}

#[tokio::test]
async fn an_index_whose_child_descriptor_size_lies_is_never_published() {
    let hostile = HostileRegistry::start(Mode::Honest);
    let child = Image::simple(1, 1, 500);
    hostile.put_image(SRC, "honest", &child);
    let true_size = size_of(&child.manifest);
    // Digest right, size wrong: both too small and too large.
    for (tag, size) in [("short", true_size - 1), ("long", true_size + 7)] {
        let lying = index(
            &[(media_types::OCI_MANIFEST, &child.manifest.digest, size)],
            tag,
        );
        hostile.put_manifest(SRC, tag, &lying);
    }
    let registry = Registry::start();
    let layout = tempfile::tempdir().unwrap();
    let to_layout = Location::Layout(layout.path().join("out"));
    for to in [registry_dest(&registry), to_layout] {
        let report = run(&sync_to(&hostile, to.clone(), &["*"])).await;
        assert_eq!(report.tags_synced, ["honest"], "{to}: {report:#?}");
        for tag in ["short", "long"] {
            let why = reason(&report, tag);
            assert!(why.starts_with("DigestMismatch:"), "{to} {tag}: {why}");
            assert!(why.contains("the descriptor pointing at it says"), "{why}");
        }
        // Again, now that the child is at the destination (staged by the honest tag): its
        // size is checked against what the destination holds.
        let again = run(&sync_to(&hostile, to.clone(), &["*"])).await;
        assert_eq!(again.tags_current, ["honest"], "{to}: {again:#?}");
        assert_eq!(again.tags_failed.len(), 2, "{to}: {again:#?}");
        let destination = sync_to(&hostile, to.clone(), &["*"])
            .dest_registry()
            .unwrap();
        let tags = destination.list_tags(DEST).await.unwrap();
        assert_eq!(tags, ["honest"], "{to}");
    }
}

#[tokio::test]
async fn a_child_manifest_served_under_a_wrong_digest_fails_its_tag_in_the_preview_as_in_the_sync()
{
    let hostile = HostileRegistry::start(Mode::Honest);
    let (named, served) = (Image::simple(3, 1, 300), Image::simple(4, 1, 300));
    hostile.put_image(SRC, "honest", &served);
    for blob in named.blobs() {
        hostile.put_blob(blob);
    }
    // The index names `named`'s manifest (digest and size right); the registry answers that
    // digest with `served`'s bytes.
    let lying = index(
        &[(
            media_types::OCI_MANIFEST,
            &named.manifest.digest,
            size_of(&named.manifest),
        )],
        "lying",
    );
    hostile.put_manifest(SRC, "lying", &lying);
    hostile.put_as(&named.manifest.digest, &served.manifest);
    let registry = Registry::start();
    let sync = sync_to(&hostile, registry_dest(&registry), &["*"]);
    let preview = sync.preview(SyncOptions::default()).await.unwrap();
    let entry = |tag: &str| preview.tags.iter().find(|t| t.tag == tag).unwrap();
    assert_eq!(entry("honest").action, PreviewAction::Copy, "{preview:#?}");
    let lying_entry = entry("lying");
    assert_eq!(lying_entry.action, PreviewAction::Fail, "{preview:#?}");
    let why = lying_entry.reason.as_deref().unwrap();
    assert!(why.starts_with("DigestMismatch:"), "{why}");
    assert!(why.contains(named.manifest.digest.as_str()), "{why}");
    // Nothing of the lying tag is counted as to be copied: only the honest image's blobs.
    assert_eq!(lying_entry.bytes, 0, "{preview:#?}");
    let honest_bytes: u64 = served.blobs().map(|b| b.size()).sum();
    assert_eq!(preview.bytes_to_copy, honest_bytes, "{preview:#?}");

    let report = run(&sync).await;
    assert_eq!(report.tags_synced, ["honest"], "{report:#?}");
    let why = reason(&report, "lying");
    assert!(why.starts_with("DigestMismatch:"), "{why}");
    assert!(why.contains(named.manifest.digest.as_str()), "{why}");
}

#[tokio::test]
async fn a_blob_whose_descriptor_size_lies_fails_its_tag_whether_copied_or_already_there() {
    let hostile = HostileRegistry::start(Mode::Honest);
    let image = Image::simple(2, 1, 1000);
    hostile.put_image(SRC, "honest", &image);
    let layer = image.layers[0].size();
    hostile.put_manifest(SRC, "short", &with_layer_size(&image, layer - 1));
    hostile.put_manifest(SRC, "long", &with_layer_size(&image, layer + 1));
    let registry = Registry::start();
    let layout = tempfile::tempdir().unwrap();
    for to in [
        registry_dest(&registry),
        Location::Layout(layout.path().join("out")),
    ] {
        // First the lying tags alone (the blob is streamed and its size checked on the way),
        // then with the honest tag (the blob is already there and its stored size is checked).
        for tags in [&["short", "long"][..], &["*"][..]] {
            let report = run(&sync_to(&hostile, to.clone(), tags)).await;
            for tag in ["short", "long"] {
                let why = reason(&report, tag);
                assert!(why.starts_with("DigestMismatch:"), "{to} {tag}: {why}");
            }
        }
        let destination = sync_to(&hostile, to.clone(), &["*"])
            .dest_registry()
            .unwrap();
        assert_eq!(destination.list_tags(DEST).await.unwrap(), ["honest"]);
    }
}

#[tokio::test]
async fn nested_indexes_stop_at_the_depth_limit_and_fan_out_at_the_manifest_limit() {
    let hostile = HostileRegistry::start(Mode::Honest);
    let image = Image::simple(3, 1, 100);
    hostile.put_image(SRC, "image", &image);
    // An index nesting one level more than allowed, and one exactly at the limit.
    let mut chain = vec![image.manifest.clone()];
    for level in 0..=MAX_INDEX_DEPTH {
        let inner = chain.last().unwrap();
        let outer = index(
            &[(&inner.media_type, &inner.digest, size_of(inner))],
            &format!("level {level}"),
        );
        hostile.put_untagged(&outer);
        chain.push(outer);
    }
    hostile.put_tag(SRC, "deep", &chain[MAX_INDEX_DEPTH + 1].digest);
    hostile.put_tag(SRC, "deepest-allowed", &chain[MAX_INDEX_DEPTH].digest);
    // 1000 entries of one index of 1000 entries of one index: 2001 child manifests.
    let leaf = index(
        &[(
            media_types::OCI_MANIFEST,
            &image.manifest.digest,
            size_of(&image.manifest),
        )],
        "leaf",
    );
    hostile.put_untagged(&leaf);
    let wide = |child: &Manifest, salt: &str| {
        let entries = vec![(media_types::OCI_INDEX, &child.digest, size_of(child)); 1000];
        index(&entries, salt)
    };
    let middle = wide(&leaf, "middle");
    hostile.put_untagged(&middle);
    hostile.put_manifest(SRC, "wide", &wide(&middle, "top"));
    const { assert!(2001 > MAX_MANIFESTS_PER_TAG) };

    let registry = Registry::start();
    let report = run(&sync_to(&hostile, registry_dest(&registry), &["*"])).await;
    assert_eq!(
        report.tags_synced,
        ["deepest-allowed", "image"],
        "{report:#?}"
    );
    let deep = reason(&report, "deep");
    assert!(deep.starts_with("InvalidManifest:"), "{deep}");
    assert!(deep.contains("over the limit of 4"), "{deep}");
    let wide = reason(&report, "wide");
    assert!(
        wide.contains("over the limit of 2000 child manifests"),
        "{wide}"
    );
}

#[tokio::test]
async fn an_endless_tag_list_stops_at_max_tags_and_at_the_listing_byte_limit() {
    let hostile = HostileRegistry::start(Mode::EndlessTags {
        page_size: 1000,
        tag_len: 10,
    });
    let mut options = hostile.http_options();
    options.max_tags = 5000;
    let client = regmirror::registry::HttpRegistry::new(&hostile.host(), options).unwrap();
    let e = SourceRegistry::list_tags(&client, SRC).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.message().contains("more than 5000 tags"), "{e}");
    assert_eq!(hostile.count("GET", "/tags/list"), 6);

    // Pages of a few huge (invalid) tags: the listing's bytes run out long before its tags.
    let huge = HostileRegistry::start(Mode::EndlessTags {
        page_size: 16,
        tag_len: 1 << 20,
    });
    let started = Instant::now();
    let e = SourceRegistry::list_tags(&huge.client(), SRC)
        .await
        .unwrap_err();
    assert!(e.message().contains("byte limit"), "{e}");
    // Each page is a little over 16 MiB: the limit is crossed on the 8th.
    assert_eq!(
        huge.count("GET", "/tags/list"),
        regmirror::registry::http::MAX_TAG_LISTING_BYTES / (16 << 20)
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn endless_manifests_stop_at_the_size_limit() {
    let hostile = HostileRegistry::start(Mode::EndlessManifest);
    hostile.put_image(SRC, "v1", &Image::simple(4, 1, 100));
    let registry = Registry::start();
    let started = Instant::now();
    let report = run(&sync_to(&hostile, registry_dest(&registry), &["*"])).await;
    let why = reason(&report, "v1");
    assert!(why.contains("limit"), "{why}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn redirects_to_another_host_never_carry_the_credentials() {
    let elsewhere = HostileRegistry::start(Mode::Honest);
    let image = Image::simple(5, 1, 100);
    elsewhere.put_image(SRC, "v1", &image);
    let hostile = HostileRegistry::builder(Mode::RedirectManifests(format!(
        "{}/v2/{SRC}/manifests/v1",
        elsewhere.base_url()
    )))
    .basic_auth()
    .start();
    hostile.put_image(SRC, "v1", &image);
    let registry = Registry::start();
    let report = run(&sync_to(&hostile, registry_dest(&registry), &["*"])).await;
    assert_eq!(report.tags_synced, ["v1"], "{report:#?}");
    assert!(elsewhere.count("GET", "/manifests/") > 0);
    for seen in elsewhere.requests() {
        assert_eq!(seen.authorization, None, "{seen:?}");
    }
    // The registry that asked for them did get them.
    assert!(hostile.requests().iter().any(|s| s.authorization.is_some()));
}

/// Every path under `dir`, relative.
fn paths_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            out.push(path.strip_prefix(dir).unwrap().display().to_string());
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn traversal_in_tags_and_digests_is_refused_per_tag_and_nothing_lands_outside_a_layout() {
    let hostile = HostileRegistry::start(Mode::Honest);
    let image = Image::simple(6, 1, 100);
    hostile.put_image(SRC, "good", &image);
    for tag in ["../../escape", "..", "/etc/passwd", "a/../../b"] {
        hostile.put_tag(SRC, tag, &image.manifest.digest);
    }
    // A manifest whose layer "digest" climbs out of blobs/.
    let mut value: serde_json::Value = serde_json::from_slice(&image.manifest.bytes).unwrap();
    value["layers"][0]["digest"] = json!("sha256:../../../../escaped");
    let bytes = serde_json::to_vec(&value).unwrap();
    let digest = Digest::of(&bytes);
    hostile.put_untagged(&Manifest {
        media_type: media_types::OCI_MANIFEST.to_owned(),
        digest: digest.clone(),
        bytes: bytes.into(),
    });
    hostile.put_tag(SRC, "climbing", &digest);

    let root = tempfile::tempdir().unwrap();
    let layout = root.path().join("deep/inside/out");
    let report = run(&sync_to(&hostile, Location::Layout(layout.clone()), &["*"])).await;
    assert_eq!(report.tags_synced, ["good"], "{report:#?}");
    assert_eq!(report.tags_failed.len(), 5, "{report:#?}");
    assert_eq!(report.outcome, Outcome::Failed);
    for path in paths_under(root.path()) {
        assert!(
            "deep/inside/out".starts_with(&path) || path.starts_with("deep/inside/out/"),
            "{path} is outside the layout"
        );
        assert!(!path.contains("escape"), "{path}");
    }
}

#[tokio::test]
async fn credentials_reach_only_the_registry_and_its_own_token_service() {
    let hostile = HostileRegistry::builder(Mode::Honest).token_auth().start();
    hostile.put_image(SRC, "v1", &Image::simple(7, 1, 100));
    let registry = Registry::start();
    let mut sync = sync_to(&hostile, registry_dest(&registry), &["*"]);
    sync.source_access.credentials = Some(Credentials::new(USERNAME, PASSWORD));
    let report = run(&sync).await;
    assert_eq!(report.tags_synced, ["v1"], "{report:#?}");
    let basic = hostile
        .requests()
        .into_iter()
        .filter(|s| {
            s.authorization
                .as_deref()
                .is_some_and(|a| a.starts_with("Basic "))
        })
        .collect::<Vec<_>>();
    assert!(!basic.is_empty());
    assert!(
        basic.iter().all(|s| s.path.starts_with("/token")),
        "{basic:?}"
    );
}

#[tokio::test]
async fn a_tag_named_after_the_password_is_left_out_of_the_listing() {
    let hostile = HostileRegistry::builder(Mode::Honest).basic_auth().start();
    let image = Image::simple(8, 1, 100);
    hostile.put_image(SRC, "v1", &image);
    hostile.put_tag(SRC, PASSWORD, &image.manifest.digest);
    hostile.put_tag(SRC, &format!("x{PASSWORD}y"), &image.manifest.digest);
    let registry = Registry::start();
    let report = run(&sync_to(&hostile, registry_dest(&registry), &["*"])).await;
    assert_eq!(report.tags_synced, ["v1"], "{report:#?}");
    assert!(!format!("{report:?}").contains(PASSWORD));
}
