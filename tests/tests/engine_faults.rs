//! The engine against what goes wrong with real registries: connections cut mid-blob, error
//! statuses, a source that dies mid-run, a destination that refuses pushes, odd content, and a
//! claim lost while publishing. The source is read through the kit's fault-injecting proxy; the
//! destination is a second registry.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use regmirror::engine::{
    HttpConnector, Mirror, MirrorBuilder, Outcome, PreviewAction, SyncOptions, SyncReport,
};
use regmirror::registry::http::{HttpOptions, HttpRegistry};
use regmirror::registry::{Manifest, media_types};
use regmirror::state::RunOutcome;
use regmirror::{
    DestRegistry, Digest, ErrorKind, MemoryStateStore, MirrorConfig, Phase, RollbackMode, Side,
    StateStore, SyncStatus,
};
use regmirror_tests::proxy::Fault;
use regmirror_tests::{
    Blob, Flavor, Image, Index, PASSWORD, Proxy, READER_PASSWORD, READER_USERNAME, Registry,
    Seeder, USERNAME,
};
use time::OffsetDateTime;

const SRC: &str = "upstream/app";
const DEST: &str = "mirror/app";

fn http_options() -> HttpOptions {
    HttpOptions {
        tls_verify: false,
        docker_config: false,
        ..HttpOptions::default()
    }
}

/// A source registry behind a counting proxy, a destination registry, a memory state store.
struct Env {
    /// `None` once the test killed it.
    source: Option<Registry>,
    proxy: Proxy,
    dest_registry: Registry,
    dest: HttpRegistry,
    store: Arc<MemoryStateStore>,
}

impl Env {
    fn start() -> Env {
        let dest_registry = Registry::start();
        let options = dest_registry.http_options();
        Env::with_dest(dest_registry, options)
    }

    /// A destination `dest_registry` written to with `options` (e.g. another user's).
    fn with_dest(dest_registry: Registry, options: HttpOptions) -> Env {
        let source = Registry::start();
        let proxy = Proxy::start(&source);
        let dest =
            HttpRegistry::new(&dest_registry.host(), options).expect("the kit's options are valid");
        Env {
            source: Some(source),
            proxy,
            dest_registry,
            dest,
            store: Arc::new(MemoryStateStore::new()),
        }
    }

    fn builder(&self) -> MirrorBuilder {
        Mirror::builder()
            .state(self.store.clone())
            .destination(Arc::new(self.dest.clone()))
            .connector(Arc::new(HttpConnector::new(http_options())))
    }

    fn mirror(&self) -> Mirror {
        self.builder().build().unwrap()
    }

    /// A mirror of `repo` on the source (through the proxy) into [`DEST`].
    fn config_of(&self, repo: &str, patterns: &[&str]) -> MirrorConfig {
        let mut c = MirrorConfig::new(
            DEST,
            format!("{}/{repo}", self.proxy.host()).parse().unwrap(),
            patterns,
        );
        c.verify_tls = false;
        c
    }

    fn config(&self, patterns: &[&str]) -> MirrorConfig {
        self.config_of(SRC, patterns)
    }

    fn source(&self) -> &Registry {
        self.source
            .as_ref()
            .expect("the source registry is still running")
    }

    fn src(&self) -> Seeder {
        self.source().seeder()
    }

    fn dst(&self) -> Seeder {
        self.dest_registry.seeder()
    }

    /// The destination's tags and the digests they point at.
    async fn dest_tags(&self) -> BTreeMap<String, Digest> {
        let mut map = BTreeMap::new();
        for tag in self.dst().tags(DEST).await {
            let head = self.dest.head_manifest(DEST, &tag).await.unwrap().unwrap();
            map.insert(tag, head.digest);
        }
        map
    }

    async fn sync_once(&self, mirror: &Mirror, config: &MirrorConfig) -> SyncReport {
        mirror
            .sync_config(config, SyncOptions::default())
            .await
            .unwrap()
    }

    fn blob_gets(&self, digest: &Digest) -> usize {
        self.proxy
            .count("GET", &format!("/v2/{SRC}/blobs/{digest}"))
    }
}

fn image(seed: u64, layer: &[u8]) -> Image {
    Image::new(Flavor::Oci, seed, vec![Blob::new(layer.to_vec())])
}

#[tokio::test]
async fn a_blob_whose_connection_is_cut_mid_body_is_read_again_and_the_tag_succeeds() {
    let env = Env::start();
    // Large enough to stream in an upload session, and one small enough for a single PUT.
    let big = Blob::random(1, 3 << 20);
    let small = Blob::random(2, 40_000);
    let img = Image::new(Flavor::Oci, 3, vec![big.clone(), small.clone()]);
    env.src().push_image(SRC, "v1", &img).await;
    for blob in [&big, &small] {
        env.proxy.inject(
            "GET",
            &format!("/blobs/{}", blob.digest),
            Fault::CutBody { after: 20_000 },
            1,
        );
    }
    let report = env.sync_once(&env.mirror(), &env.config(&["v1"])).await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(report.tags_synced, ["v1"]);
    assert_eq!(env.blob_gets(&big.digest), 2);
    assert_eq!(env.blob_gets(&small.digest), 2);
    assert_eq!(env.dest_tags().await["v1"], img.manifest.digest);
    assert!(env.dst().has_blob(DEST, &big.digest).await);
}

#[tokio::test]
async fn a_blob_cut_every_time_fails_its_tag_after_three_reads_and_publishes_nothing() {
    let env = Env::start();
    let img = Image::simple(4, 1, 100_000);
    let layer = img.layers[0].digest.clone();
    env.src().push_image(SRC, "v1", &img).await;
    env.proxy.inject(
        "GET",
        &format!("/blobs/{layer}"),
        Fault::CutBody { after: 1000 },
        usize::MAX,
    );
    let report = env.sync_once(&env.mirror(), &env.config(&["v1"])).await;
    assert_eq!(report.outcome, Outcome::Failed, "{report:?}");
    assert_eq!(report.failed_tags(), ["v1"]);
    let reason = &report.tags_failed[0].reason;
    assert!(reason.contains("Network"), "{reason}");
    assert!(reason.contains(layer.as_str()), "{reason}");
    // The source's stream failed inside the destination's upload: still the source's failure.
    let failure = &report.tags_failed[0].failure;
    assert_eq!(failure.kind, ErrorKind::Network, "{failure:?}");
    assert_eq!(failure.side, Some(Side::Source), "{failure:?}");
    assert_eq!(failure.phase, Some(Phase::Stage), "{failure:?}");
    assert_eq!(failure.host.as_deref(), Some(env.proxy.host().as_str()));
    assert_eq!(
        report.failure.as_ref().map(|f| f.side),
        Some(Some(Side::Source))
    );
    assert_eq!(env.blob_gets(&layer), 3);
    assert!(env.dest_tags().await.is_empty());
    assert!(!env.dst().has_blob(DEST, &layer).await);
}

#[tokio::test]
async fn a_corrupt_blob_is_not_read_again() {
    let env = Env::start();
    let img = image(5, b"a layer that rots on the source's disk");
    let layer = img.layers[0].digest.clone();
    env.src().push_image(SRC, "v1", &img).await;
    env.source().corrupt_blob(&layer);
    let report = env.sync_once(&env.mirror(), &env.config(&["v1"])).await;
    assert_eq!(report.failed_tags(), ["v1"], "{report:?}");
    assert!(report.tags_failed[0].reason.contains("DigestMismatch"));
    // The destination noticed, but the bytes were the source's.
    let failure = &report.tags_failed[0].failure;
    assert_eq!(failure.kind, ErrorKind::DigestMismatch, "{failure:?}");
    assert_eq!(failure.side, Some(Side::Source), "{failure:?}");
    assert_eq!(env.blob_gets(&layer), 1);
}

#[tokio::test]
async fn a_manifest_whose_connection_is_cut_mid_body_is_read_again() {
    let env = Env::start();
    let img = image(6, b"layer");
    env.src().push_image(SRC, "v1", &img).await;
    let path = format!("/v2/{SRC}/manifests/");
    env.proxy
        .inject("GET", &path, Fault::CutBody { after: 100 }, 1);
    let report = env.sync_once(&env.mirror(), &env.config(&["v1"])).await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(env.proxy.count("GET", &path), 2);
    assert_eq!(env.dest_tags().await["v1"], img.manifest.digest);
}

#[tokio::test]
async fn a_config_read_for_the_architecture_filter_is_read_again_after_a_cut() {
    let env = Env::start();
    let img = image(7, b"layer");
    env.src().push_image(SRC, "v1", &img).await;
    let config_blob = format!("/blobs/{}", img.config.digest);
    env.proxy
        .inject("GET", &config_blob, Fault::CutBody { after: 10 }, 1);
    let mut config = env.config(&["v1"]);
    config.architectures = vec!["amd64".into()];
    let report = env.sync_once(&env.mirror(), &config).await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(report.tags_synced, ["v1"]);
    assert_eq!(env.proxy.count("GET", &config_blob), 2);
}

#[tokio::test]
async fn intermittent_500s_and_429s_from_the_source_are_ridden_out() {
    let env = Env::start();
    let img = Image::simple(8, 2, 30_000);
    let index = Index::two_platforms(Flavor::Docker, 9, 20_000);
    env.src().push_image(SRC, "img", &img).await;
    env.src().push_index(SRC, "multi", &index).await;
    let proxy = &env.proxy;
    proxy.inject("GET", "/tags/list", Fault::Status(500), 1);
    proxy.inject("HEAD", "/manifests/", Fault::Status(503), 2);
    proxy.inject("GET", "/manifests/", Fault::Status(429), 2);
    proxy.inject("GET", "/blobs/", Fault::Status(500), 3);
    proxy.inject("GET", "/blobs/", Fault::Status(502), 2);
    let report = env.sync_once(&env.mirror(), &env.config(&["*"])).await;
    assert!(report.is_success(), "{report:?}");
    let tags = env.dest_tags().await;
    assert_eq!(tags["img"], img.manifest.digest);
    assert_eq!(tags["multi"], index.manifest.digest);
}

#[tokio::test]
async fn a_blob_the_source_keeps_refusing_fails_its_tag_after_the_clients_retries_only() {
    let env = Env::start();
    let good = image(10, b"good");
    let bad = image(11, b"refused");
    let layer = bad.layers[0].digest.clone();
    env.src().push_image(SRC, "good", &good).await;
    env.src().push_image(SRC, "bad", &bad).await;
    env.proxy.inject(
        "GET",
        &format!("/blobs/{layer}"),
        Fault::Status(500),
        usize::MAX,
    );
    let report = env.sync_once(&env.mirror(), &env.config(&["*"])).await;
    assert_eq!(report.failed_tags(), ["bad"], "{report:?}");
    let reason = &report.tags_failed[0].reason;
    assert!(
        reason.contains("Network") && reason.contains("500"),
        "{reason}"
    );
    assert!(reason.contains(layer.as_str()), "{reason}");
    // The HTTP client's 4 retries, and no second layer of retries on top of them.
    assert_eq!(env.blob_gets(&layer), 5);
    let tags = env.dest_tags().await;
    assert_eq!(tags.keys().collect::<Vec<_>>(), ["good"]);
    assert!(
        env.dst()
            .manifest(DEST, bad.manifest.digest.as_str())
            .await
            .is_none()
    );
}

/// The source registry dies while the layer of tag `b` streams (tag `a` is staged by then).
/// Returns the destination before the run and the report.
async fn source_dies_mid_run(
    env: &mut Env,
    rollback: RollbackMode,
) -> (BTreeMap<String, Digest>, SyncReport, Image) {
    let a = image(12, b"a is small and done first");
    // Large enough that the registry still holds some of it when killed (socket buffers).
    let b = Image::simple(13, 1, 16 << 20);
    env.src().push_image(SRC, "a", &a).await;
    env.src().push_image(SRC, "b", &b).await;
    env.dst().push_image(DEST, "a", &image(14, b"old a")).await;
    env.dst()
        .push_image(DEST, "old-only", &image(15, b"old only"))
        .await;
    let before = env.dest_tags().await;
    let layer = b.layers[0].digest.clone();
    env.proxy.inject(
        "GET",
        &format!("/blobs/{layer}"),
        Fault::StallBody {
            after: 1000,
            pause: Duration::from_secs(2),
        },
        1,
    );
    let mirror = env.mirror();
    let mut config = env.config(&["a", "b"]);
    config.rollback = rollback;
    let run = tokio::spawn(async move {
        mirror
            .sync_config(&config, SyncOptions::default())
            .await
            .unwrap()
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while env.blob_gets(&layer) == 0 || !env.dst().has_blob(DEST, &a.layers[0].digest).await {
        assert!(Instant::now() < deadline, "the run never got to b's layer");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(env.source.take());
    let report = run.await.unwrap();
    assert_eq!(report.outcome, Outcome::Failed, "{report:?}");
    assert_eq!(report.failed_tags(), ["b"], "{report:?}");
    let reason = &report.tags_failed[0].reason;
    assert!(reason.contains("Network"), "{reason}");
    assert!(reason.contains(layer.as_str()), "{reason}");
    assert!(!env.dst().has_blob(DEST, &layer).await);
    (before, report, a)
}

#[tokio::test]
async fn a_source_that_dies_mid_run_fails_the_tags_in_flight_and_the_finished_tags_stand() {
    let mut env = Env::start();
    let (before, report, a) = source_dies_mid_run(&mut env, RollbackMode::FailedTagsOnly).await;
    assert!(report.partial, "{report:?}");
    assert_eq!(report.tags_synced, ["a"]);
    assert_eq!(report.tags_deleted, ["old-only"]);
    let after = env.dest_tags().await;
    assert_eq!(after.keys().collect::<Vec<_>>(), ["a"]);
    assert_eq!(after["a"], a.manifest.digest);
    assert_ne!(before["a"], a.manifest.digest);

    // With the source gone, the next run cannot list it: it fails naming the source and
    // prunes nothing.
    let again = env.sync_once(&env.mirror(), &env.config(&["a", "b"])).await;
    assert_eq!(again.outcome, Outcome::Failed, "{again:?}");
    let error = again.error.as_deref().unwrap();
    assert!(error.contains(&env.proxy.host()), "{error}");
    assert!(again.tags_deleted.is_empty());
    assert_eq!(env.dest_tags().await, after);
}

#[tokio::test]
async fn a_source_that_dies_mid_run_leaves_an_all_or_nothing_destination_as_it_was() {
    let mut env = Env::start();
    let (before, report, _) = source_dies_mid_run(&mut env, RollbackMode::AllOrNothing).await;
    assert!(!report.partial);
    assert!(report.tags_synced.is_empty() && report.tags_deleted.is_empty());
    assert_eq!(env.dest_tags().await, before);
}

/// Every tag fails (or the whole run does) with an auth error that names the destination, and
/// neither the report nor its `Debug` shows `password`.
fn assert_refused_by_destination(report: &SyncReport, dest_host: &str, password: &str) {
    assert_eq!(report.outcome, Outcome::Failed, "{report:?}");
    let run = report
        .failure
        .as_ref()
        .expect("a failed run says why, as data");
    assert_eq!(run.side, Some(Side::Destination), "{run:?}");
    assert_eq!(run.host.as_deref(), Some(dest_host), "{run:?}");
    let failures = report.tags_failed.iter().map(|f| &f.failure);
    for f in failures.chain([run]) {
        assert!(
            matches!(f.kind, ErrorKind::Unauthorized | ErrorKind::Forbidden),
            "{f:?}"
        );
        assert_eq!(f.side, Some(Side::Destination), "{f:?}");
    }
    let reasons: Vec<&str> = if report.tags_failed.is_empty() {
        // The destination's tags are listed first: the run fails there.
        assert_eq!(run.phase, Some(Phase::List), "{run:?}");
        vec![report.error.as_deref().expect("a failed run says why")]
    } else {
        assert_eq!(report.failed_tags(), ["v1", "v2"], "{report:?}");
        report
            .tags_failed
            .iter()
            .map(|f| f.reason.as_str())
            .collect()
    };
    for reason in reasons {
        assert!(
            reason.contains("Unauthorized") || reason.contains("Forbidden"),
            "{reason}"
        );
        assert!(reason.contains(dest_host), "{reason}");
    }
    let all = format!("{report:?} {}", serde_json::to_string(report).unwrap());
    assert!(!all.contains(password), "{all}");
}

async fn seed_two_tags(env: &Env) {
    env.src().push_image(SRC, "v1", &image(16, b"v1")).await;
    env.src().push_image(SRC, "v2", &image(17, b"v2")).await;
}

#[tokio::test]
async fn a_destination_that_refuses_pushes_fails_every_tag_naming_it_without_secrets() {
    let dest = Registry::builder().token_auth(false).start();
    let reader = dest.http_options_as(READER_USERNAME, READER_PASSWORD);
    let env = Env::with_dest(dest, reader);
    seed_two_tags(&env).await;
    let report = env.sync_once(&env.mirror(), &env.config(&["v*"])).await;
    assert_refused_by_destination(&report, &env.dest_registry.host(), READER_PASSWORD);
    assert!(report.tags_failed.len() == 2, "{report:?}");
    assert!(env.dst().tags(DEST).await.is_empty());
}

#[tokio::test]
async fn a_destination_refusing_the_password_fails_the_run_naming_it_without_secrets() {
    const WRONG: &str = "wrong-Pw-77-not-in-logs";
    let dest = Registry::builder().basic_auth().start();
    let wrong = dest.http_options_as(USERNAME, WRONG);
    let env = Env::with_dest(dest, wrong);
    seed_two_tags(&env).await;
    let report = env.sync_once(&env.mirror(), &env.config(&["v*"])).await;
    assert_refused_by_destination(&report, &env.dest_registry.host(), WRONG);
    assert!(!format!("{report:?}").contains(PASSWORD));
    assert!(env.dst().tags(DEST).await.is_empty());
}

#[tokio::test]
async fn a_source_repository_that_does_not_exist_is_not_found_naming_it() {
    let env = Env::start();
    let report = env
        .sync_once(&env.mirror(), &env.config_of("nope/missing", &["*"]))
        .await;
    assert_eq!(report.outcome, Outcome::Failed, "{report:?}");
    let error = report.error.as_deref().unwrap();
    assert!(error.starts_with("NotFound"), "{error}");
    let failure = report.failure.as_ref().unwrap();
    assert_eq!(
        (failure.kind, failure.side, failure.phase),
        (ErrorKind::NotFound, Some(Side::Source), Some(Phase::List))
    );
    assert!(
        error.contains(&format!("{}/nope/missing", env.proxy.host())),
        "{error}"
    );
}

#[tokio::test]
async fn a_source_repository_without_tags_is_not_found_naming_it_and_prunes_nothing() {
    let env = Env::start();
    // The repository holds an untagged manifest but no tag: distribution answers NAME_UNKNOWN.
    let img = image(18, b"untagged");
    env.src()
        .push_image(SRC, img.manifest.digest.as_str(), &img)
        .await;
    env.dst()
        .push_image(DEST, "kept", &image(19, b"kept"))
        .await;
    let report = env.sync_once(&env.mirror(), &env.config(&["*"])).await;
    assert_eq!(report.outcome, Outcome::Failed, "{report:?}");
    let error = report.error.as_deref().unwrap();
    assert!(error.starts_with("NotFound"), "{error}");
    assert!(
        error.contains(&format!("{}/{SRC}", env.proxy.host())),
        "{error}"
    );
    assert!(report.tags_deleted.is_empty());
    assert_eq!(env.dst().tags(DEST).await, ["kept"]);
}

/// A Helm-chart-like OCI artifact: a non-image config media type and layer type, and an
/// `artifactType`.
async fn push_artifact(seeder: &Seeder, tag: &str, config: &[u8]) -> Manifest {
    let config = config.to_vec();
    let layer = b"not really a tarball".to_vec();
    let (config_len, layer_len) = (config.len(), layer.len());
    let config_digest = seeder.push_blob(SRC, config).await;
    let layer_digest = seeder.push_blob(SRC, layer).await;
    let bytes = serde_json::to_vec_pretty(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_MANIFEST,
        "artifactType": "application/vnd.cncf.helm.config.v1+json",
        "config": {
            "mediaType": "application/vnd.cncf.helm.config.v1+json",
            "digest": config_digest.as_str(),
            "size": config_len,
        },
        "layers": [{
            "mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
            "digest": layer_digest.as_str(),
            "size": layer_len,
        }],
        "annotations": {"org.opencontainers.image.title": "chart"},
    }))
    .unwrap();
    let manifest = Manifest::from_bytes(bytes, media_types::OCI_MANIFEST).unwrap();
    seeder.push_manifest(SRC, tag, &manifest).await;
    manifest
}

#[tokio::test]
async fn an_oci_artifact_with_a_non_image_config_is_mirrored_byte_for_byte() {
    let env = Env::start();
    let config = br#"{"name":"chart","version":"1.2.3","apiVersion":"v2"}"#;
    let artifact = push_artifact(&env.src(), "chart-1.2.3", config).await;
    let report = env.sync_once(&env.mirror(), &env.config(&["*"])).await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(report.tags_synced, ["chart-1.2.3"]);
    let bytes = env.dst().manifest(DEST, "chart-1.2.3").await.unwrap();
    assert_eq!(bytes, artifact.bytes);
}

#[tokio::test]
async fn an_architecture_filter_copies_artifacts_without_reading_their_config_as_an_image_config() {
    let env = Env::start();
    // Not JSON at all: an artifact's config need not be an image config.
    push_artifact(&env.src(), "blob-config", b"\x00\x01 binary config").await;
    push_artifact(&env.src(), "json-config", b"{}").await;
    env.src()
        .push_image(SRC, "image", &image(23, b"amd64 image"))
        .await;
    let mut config = env.config(&["*"]);
    config.architectures = vec!["amd64".into()];
    let mirror = env.mirror();
    let preview = mirror
        .preview_config(&config, SyncOptions::default())
        .await
        .unwrap();
    let actions: Vec<(&str, PreviewAction)> = preview
        .tags
        .iter()
        .map(|t| (t.tag.as_str(), t.action))
        .collect();
    assert_eq!(
        actions,
        [
            ("blob-config", PreviewAction::Copy),
            ("image", PreviewAction::Copy),
            ("json-config", PreviewAction::Copy)
        ],
        "{preview:?}"
    );
    env.proxy.reset_counts();
    let report = env.sync_once(&mirror, &config).await;
    assert!(report.is_success(), "{report:?}");
    // The filter applies to platform images only: artifacts have no platform (SEMANTICS.md §9).
    assert_eq!(report.tags_synced, ["blob-config", "image", "json-config"]);
    assert!(report.tags_skipped.is_empty());
    assert_eq!(
        env.proxy.count("GET", "/blobs/"),
        5,
        "each blob once: the image's config and layer, the artifacts' two configs and shared layer"
    );
}

#[tokio::test]
async fn docker_schema2_images_and_manifest_lists_keep_their_digests() {
    let env = Env::start();
    let img = Image::simple(20, 2, 5000);
    let docker = Image::new(Flavor::Docker, 21, img.layers.clone());
    let list = Index::two_platforms(Flavor::Docker, 22, 5000);
    env.src().push_image(SRC, "image", &docker).await;
    env.src().push_index(SRC, "list", &list).await;
    assert_eq!(docker.manifest.media_type, media_types::DOCKER_MANIFEST);
    assert_eq!(list.manifest.media_type, media_types::DOCKER_LIST);
    let report = env.sync_once(&env.mirror(), &env.config(&["*"])).await;
    assert!(report.is_success(), "{report:?}");
    for (tag, manifest) in [("image", &docker.manifest), ("list", &list.manifest)] {
        let head = env.dest.head_manifest(DEST, tag).await.unwrap().unwrap();
        assert_eq!(head.digest, manifest.digest, "{tag}");
        assert_eq!(head.media_type, manifest.media_type, "{tag}");
        assert_eq!(env.dst().manifest(DEST, tag).await.unwrap(), manifest.bytes);
    }
}

#[tokio::test]
async fn tags_with_every_allowed_character_and_the_longest_length_are_mirrored() {
    let env = Env::start();
    let longest = format!("A_z-9.x{}", "y".repeat(121));
    assert_eq!(longest.len(), 128);
    let tags = ["A_z-9.x", "_", "9", "a..b--c__d", longest.as_str()];
    for (i, tag) in tags.iter().enumerate() {
        env.src()
            .push_image(SRC, tag, &image(30 + i as u64, tag.as_bytes()))
            .await;
    }
    let mirror = env.mirror();
    let report = env.sync_once(&mirror, &env.config(&["*"])).await;
    assert!(report.is_success(), "{report:?}");
    let mut expected: Vec<&str> = tags.to_vec();
    expected.sort_unstable();
    assert_eq!(env.dest_tags().await.keys().collect::<Vec<_>>(), expected);
    // Each pattern character class and the longest tag by name.
    let exact = env
        .sync_once(&mirror, &env.config(&[longest.as_str(), "[A]_z-9.?", "_"]))
        .await;
    assert!(exact.is_success(), "{exact:?}");
    let mut kept = vec!["A_z-9.x", "_", longest.as_str()];
    kept.sort_unstable();
    assert_eq!(exact.tags_current, kept);
    assert_eq!(exact.tags_deleted, ["9", "a..b--c__d"]);
}

#[tokio::test]
async fn a_claim_lost_while_publishing_stops_the_run_and_leaves_the_destination_to_the_new_holder()
{
    let source = Registry::start();
    let dest_registry = Registry::start();
    let dest_proxy = Proxy::start(&dest_registry);
    let store = Arc::new(MemoryStateStore::new());
    let (src, dst) = (source.seeder(), dest_registry.seeder());
    let mut old = BTreeMap::new();
    let mut new = BTreeMap::new();
    for (i, tag) in ["v1", "v2", "v3"].into_iter().enumerate() {
        let i = i as u64;
        new.insert(
            tag.to_owned(),
            src.push_image(SRC, tag, &image(40 + i, tag.as_bytes()))
                .await,
        );
        old.insert(
            tag.to_owned(),
            dst.push_image(DEST, tag, &image(50 + i, b"old")).await,
        );
    }
    let mut config = source_config(&source, &["v*"]);
    config.rollback = RollbackMode::AllOrNothing;
    let builder = |dest: HttpRegistry, worker: &str| {
        Mirror::builder()
            .state(store.clone())
            .destination(Arc::new(dest))
            .connector(Arc::new(HttpConnector::new(http_options())))
            .lease(Duration::from_millis(600))
            .worker_id(worker)
            .build()
            .unwrap()
    };
    let a = builder(dest_proxy.client(), "worker-a");
    a.create_mirror(config.validated().unwrap()).await.unwrap();
    // Worker A moves its tags at once: v1 and v3 are published, v2 hangs.
    dest_proxy.inject("PUT", "/manifests/v2", Fault::Hang, 1);
    let lease = Duration::from_millis(600);
    // Through the store: the test holds A's and B's claims itself, to hand the mirror over
    // at an exact point of A's run.
    let claim_a = store
        .claim(DEST, "worker-a", OffsetDateTime::now_utc(), lease)
        .await
        .unwrap();
    let run_a = tokio::spawn({
        let (a, claim_a) = (a.clone(), claim_a.clone());
        async move { a.run_claimed(claim_a).await.unwrap() }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let tags = dest_tags(&dest_registry).await;
        if dest_proxy.count("PUT", "/manifests/v2") > 0
            && tags["v1"] == new["v1"]
            && tags["v3"] == new["v3"]
        {
            break;
        }
        assert!(Instant::now() < deadline, "worker A never got to v2");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(store.tag_record(DEST).await.unwrap().as_ref(), Some(&old));
    // Worker B takes the mirror over, as after A's lease ran out while A was frozen: A's claim
    // ends and B claims anew.
    store
        .release(
            &claim_a,
            &RunOutcome::Interrupted,
            OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
    let claim_b = store
        .claim(
            DEST,
            "worker-b",
            OffsetDateTime::now_utc(),
            Duration::from_secs(60),
        )
        .await
        .unwrap();

    let report_a = tokio::time::timeout(Duration::from_secs(10), run_a)
        .await
        .expect("A stops once its renewal finds the claim lost")
        .unwrap();
    assert_eq!(report_a.outcome, Outcome::Failed, "{report_a:?}");
    let error = report_a.error.as_deref().unwrap();
    assert!(error.contains("claim on the mirror was lost"), "{error}");
    assert!(!report_a.rolled_back);
    // A neither rolled back nor went on: v1 and v3 as A published them, v2 untouched, the
    // pre-run record kept for B, and B's claim intact.
    let midway = dest_tags(&dest_registry).await;
    assert_eq!(midway["v1"], new["v1"]);
    assert_eq!(midway["v2"], old["v2"]);
    assert_eq!(midway["v3"], new["v3"]);
    assert_eq!(store.tag_record(DEST).await.unwrap().as_ref(), Some(&old));
    let record = store.get_mirror(DEST).await.unwrap();
    assert_eq!(record.state.status, SyncStatus::Syncing);
    assert_eq!(record.state.lease_owner.as_deref(), Some("worker-b"));

    // B restores from the record (all_or_nothing) and completes the sync.
    let b = builder(
        HttpRegistry::new(&dest_registry.host(), http_options()).unwrap(),
        "worker-b",
    );
    let report_b = b.run_claimed(claim_b).await.unwrap();
    assert!(report_b.is_success(), "{report_b:?}");
    assert_eq!(dest_tags(&dest_registry).await, new);
    assert_eq!(store.tag_record(DEST).await.unwrap(), None);
    let done = store.get_mirror(DEST).await.unwrap();
    assert_eq!(done.state.status, SyncStatus::Success);
    assert_eq!(done.state.lease_owner, None);
}

/// `registry`'s tags in [`DEST`] and the digests of their manifests.
async fn dest_tags(registry: &Registry) -> BTreeMap<String, Digest> {
    registry.seeder().tag_digests(DEST).await
}

#[tokio::test]
async fn a_blob_shared_with_a_failing_tag_is_still_fetched_once() {
    let env = Env::start();
    let shared = Blob::random(60, 1 << 20);
    let failing = Image::new(Flavor::Oci, 61, vec![shared.clone()]);
    let fine = Image::new(Flavor::Oci, 62, vec![shared.clone()]);
    env.src().push_image(SRC, "a-failing", &failing).await;
    env.src().push_image(SRC, "b-fine", &fine).await;
    // Tag a's config is gone while the shared layer (whose copy tag a started) still streams.
    env.source().remove_blob(&failing.config.digest);
    env.proxy.inject(
        "GET",
        &format!("/blobs/{}", shared.digest),
        Fault::StallBody {
            after: 1000,
            pause: Duration::from_millis(500),
        },
        1,
    );
    let report = env.sync_once(&env.mirror(), &env.config(&["*"])).await;
    assert_eq!(report.failed_tags(), ["a-failing"], "{report:?}");
    assert_eq!(report.tags_synced, ["b-fine"]);
    assert_eq!(env.blob_gets(&shared.digest), 1);
    assert_eq!(env.dest_tags().await["b-fine"], fine.manifest.digest);
}

#[tokio::test]
async fn one_http_client_as_both_source_and_destination_does_not_deadlock() {
    let registry = Registry::start();
    let img = Image::simple(70, 12, 20_000);
    registry.seeder().push_image(SRC, "v1", &img).await;
    // The same client (and so the same per-host request cap) on both sides, as when mirroring
    // between two repositories of one registry.
    let options = HttpOptions {
        max_concurrent_requests: 2,
        ..http_options()
    };
    let client = Arc::new(HttpRegistry::new(&registry.host(), options).unwrap());
    let mirror = Mirror::builder()
        .destination(client.clone())
        .connector(Arc::new(regmirror::engine::StaticConnector(client)))
        .build()
        .unwrap();
    let mut config = MirrorConfig::new(
        DEST,
        format!("{}/{SRC}", registry.host()).parse().unwrap(),
        &["v1"],
    );
    config.timeout = Duration::from_secs(20);
    let report = mirror
        .sync_config(&config, SyncOptions::default())
        .await
        .unwrap();
    assert!(report.is_success(), "{report:?}");
    assert_eq!(report.blobs_copied + report.blobs_mounted, 13);
}

/// A mirror of `source`'s [`SRC`] into [`DEST`] selecting `patterns`.
fn source_config(source: &Registry, patterns: &[&str]) -> MirrorConfig {
    let mut config = MirrorConfig::new(
        DEST,
        format!("{}/{SRC}", source.host()).parse().unwrap(),
        patterns,
    );
    config.verify_tls = false;
    config
}

/// Sync tag v1 of `source`'s [`SRC`] once to [`DEST`] through `dest_proxy`, without a state store.
async fn sync_v1_without_state(source: &Registry, dest_proxy: &Proxy) -> SyncReport {
    let mirror = Mirror::builder()
        .destination(Arc::new(dest_proxy.client()))
        .connector(Arc::new(HttpConnector::new(http_options())))
        .build()
        .unwrap();
    mirror
        .sync_config(&source_config(source, &["v1"]), SyncOptions::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_destination_failing_a_streamed_upload_once_is_uploaded_again() {
    let source = Registry::start();
    let dest_registry = Registry::start();
    let dest_proxy = Proxy::start(&dest_registry);
    let img = Image::simple(80, 1, 3 << 20);
    let layer = img.layers[0].digest.clone();
    source.seeder().push_image(SRC, "v1", &img).await;
    // The upload's request fails once, refused before its body went through (a storage
    // hiccup behind the registry, a proxy dropping the connection).
    let final_put = format!("digest={}", layer.as_str().replace(':', "%3A"));
    dest_proxy.inject("PUT", &final_put, Fault::Status(500), 1);
    let report = sync_v1_without_state(&source, &dest_proxy).await;
    assert!(report.is_success(), "{report:?}");
    assert!(dest_registry.seeder().has_blob(DEST, &layer).await);
    assert_eq!(dest_proxy.count("PUT", &final_put), 2);
}

#[tokio::test]
async fn a_destination_refusing_a_fully_sent_upload_once_is_uploaded_again() {
    let source = Registry::start();
    let dest_registry = Registry::start();
    let dest_proxy = Proxy::start(&dest_registry);
    let img = Image::simple(82, 1, 3 << 20);
    let layer = img.layers[0].digest.clone();
    source.seeder().push_image(SRC, "v1", &img).await;
    // Every byte of the streamed upload goes through, then the registry answers 500: the HTTP
    // client cannot replay a consumed stream, so the engine reads the blob again.
    let final_put = format!("digest={}", layer.as_str().replace(':', "%3A"));
    dest_proxy.inject("PUT", &final_put, Fault::StatusAfterBody(500), 1);
    let report = sync_v1_without_state(&source, &dest_proxy).await;
    assert!(report.is_success(), "{report:?}");
    assert!(dest_registry.seeder().has_blob(DEST, &layer).await);
    assert_eq!(dest_proxy.count("PUT", &final_put), 2);
}

#[tokio::test]
async fn a_destination_refusing_every_upload_costs_a_bounded_number_of_attempts() {
    let source = Registry::start();
    let dest_registry = Registry::start();
    let dest_proxy = Proxy::start(&dest_registry);
    let img = Image::simple(81, 1, 3 << 20);
    source.seeder().push_image(SRC, "v1", &img).await;
    dest_proxy.inject("POST", "/blobs/uploads/", Fault::Status(500), usize::MAX);
    let report = sync_v1_without_state(&source, &dest_proxy).await;
    assert_eq!(report.failed_tags(), ["v1"], "{report:?}");
    // The layer streams only once its session is open, so a refused session is the client's
    // to retry: its first try and 4 retries. The small config blob is read whole before its
    // session opens; the client retries it the same way, and the engine, which cannot tell a
    // buffered upload from a fully streamed one, reads it again twice: 3 × 5.
    assert_eq!(dest_proxy.count("POST", "/blobs/uploads/"), 5 + 15);
}

#[tokio::test]
async fn a_source_listing_invalid_tag_names_fails_those_tags_and_writes_nothing_for_them() {
    let env = Env::start();
    let img = image(90, b"v1");
    env.src().push_image(SRC, "v1", &img).await;
    let long = "x".repeat(129);
    let listing = serde_json::json!({
        "name": SRC,
        "tags": ["v1", "../../evil", "a b", "-dash", long, "v1"],
    });
    env.proxy.inject(
        "GET",
        "/tags/list",
        Fault::Respond {
            status: 200,
            content_type: "application/json".into(),
            body: serde_json::to_vec(&listing).unwrap().into(),
        },
        1,
    );
    let report = env.sync_once(&env.mirror(), &env.config(&["*"])).await;
    assert_eq!(report.outcome, Outcome::Failed, "{report:?}");
    assert_eq!(report.tags_synced, ["v1"], "{report:?}");
    let mut failed = report.failed_tags();
    failed.sort();
    let mut expected = vec!["../../evil".to_owned(), "a b".into(), "-dash".into(), long];
    expected.sort();
    assert_eq!(failed, expected);
    for failure in &report.tags_failed {
        assert!(failure.reason.contains("InvalidReference"), "{failure:?}");
    }
    assert_eq!(env.dst().tags(DEST).await, ["v1"]);
}
