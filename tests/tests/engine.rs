//! The engine against real distribution registries (issue 4's "Must show"): the source is read
//! through the kit's counting, fault-injecting proxy; the destination is a second registry.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use regmirror::engine::{HttpConnector, Mirror, MirrorBuilder, Outcome, SyncOptions, SyncReport};
use regmirror::notify::{SIGNATURE_HEADER, WebhookNotifier};
use regmirror::registry::LayoutRegistry;
use regmirror::registry::http::{HttpOptions, HttpRegistry};
use regmirror::{
    DestRegistry, Digest, MemoryStateStore, MirrorConfig, PlatformIndexMode, RollbackMode,
    StateStore,
};
use regmirror_tests::image::images_sharing_layers;
use regmirror_tests::proxy::{Fault, max_in_flight};
use regmirror_tests::{Blob, Flavor, Image, Index, Proxy, Registry, Seeder, WebhookReceiver};

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
    source: Registry,
    proxy: Proxy,
    dest_registry: Registry,
    dest: HttpRegistry,
    store: Arc<MemoryStateStore>,
}

impl Env {
    fn start() -> Env {
        let source = Registry::start();
        let proxy = Proxy::start(&source);
        let dest_registry = Registry::start();
        let dest = HttpRegistry::new(&dest_registry.host(), http_options()).unwrap();
        Env {
            source,
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

    /// A mirror of the source repository (through the proxy) into [`DEST`].
    fn config(&self, patterns: &[&str]) -> MirrorConfig {
        let mut c = MirrorConfig::new(
            DEST,
            format!("{}/{SRC}", self.proxy.host()).parse().unwrap(),
            patterns,
        );
        c.verify_tls = false;
        c
    }

    fn src(&self) -> Seeder {
        self.source.seeder()
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

/// A mirror with no state store whose destination is reached through `dest_proxy` (a counting
/// proxy in front of the destination registry).
fn mirror_into(dest_proxy: &Proxy) -> Mirror {
    Mirror::builder()
        .destination(Arc::new(dest_proxy.client()))
        .connector(Arc::new(HttpConnector::new(http_options())))
        .build()
        .unwrap()
}

/// Quay's case: destination {updated, deleted}; source {latest, zzerror, created, updated}
/// where zzerror's layer cannot be read. Returns (updated before, updated in the source).
async fn quay_case(env: &Env) -> (Digest, Digest) {
    let old = env
        .dst()
        .push_image(DEST, "updated", &image(1, b"old updated"))
        .await;
    env.dst()
        .push_image(DEST, "deleted", &image(2, b"deleted"))
        .await;
    let src = env.src();
    src.push_image(SRC, "latest", &image(3, b"latest")).await;
    src.push_image(SRC, "created", &image(4, b"created")).await;
    let new = src
        .push_image(SRC, "updated", &image(5, b"new updated"))
        .await;
    let bad = image(6, b"zzerror layer nobody can read");
    src.push_image(SRC, "zzerror", &bad).await;
    env.source.remove_blob(&bad.layers[0].digest);
    (old, new)
}

#[tokio::test]
async fn quay_rollback_case_all_or_nothing_restores_the_destination_exactly() {
    let env = Env::start();
    let (old, _) = quay_case(&env).await;
    let before = env.dest_tags().await;
    let mirror = env.mirror();
    let mut config = env.config(&["updated", "created", "zzerror"]);
    config.rollback = RollbackMode::AllOrNothing;
    mirror
        .create_mirror(config.validated().unwrap())
        .await
        .unwrap();

    let report = mirror.sync(DEST).await.unwrap();
    assert_eq!(report.outcome, Outcome::Failed, "{report:?}");
    assert_eq!(report.failed_tags(), ["zzerror"]);
    assert!(!report.partial);
    let after = env.dest_tags().await;
    assert_eq!(after, before);
    assert_eq!(after["updated"], old);
    assert!(after.contains_key("deleted"));
    assert!(!after.contains_key("created"));
    assert!(env.store.tag_record(DEST).await.unwrap().is_none());
}

#[tokio::test]
async fn quay_rollback_case_failed_tags_only_keeps_the_good_tags() {
    let env = Env::start();
    let (_, new) = quay_case(&env).await;
    let mirror = env.mirror();
    mirror
        .create_mirror(
            env.config(&["updated", "created", "zzerror"])
                .validated()
                .unwrap(),
        )
        .await
        .unwrap();

    let report = mirror.sync(DEST).await.unwrap();
    assert_eq!(report.outcome, Outcome::Failed, "{report:?}");
    assert!(report.partial);
    assert!(report.error.as_deref().unwrap().contains("partial"));
    assert_eq!(report.failed_tags(), ["zzerror"]);
    assert_eq!(report.tags_deleted, ["deleted"]);
    let after = env.dest_tags().await;
    assert_eq!(after["updated"], new);
    assert!(after.contains_key("created"));
    assert!(!after.contains_key("deleted"));
    assert!(!after.contains_key("zzerror"));
    assert!(!after.contains_key("latest"));
}

#[tokio::test]
async fn listing_failure_and_empty_match_prune_nothing() {
    let env = Env::start();
    for (i, tag) in ["v1", "v2", "v3"].iter().enumerate() {
        env.src()
            .push_image(SRC, tag, &image(i as u64, tag.as_bytes()))
            .await;
    }
    let mirror = env.mirror();
    assert!(
        env.sync_once(&mirror, &env.config(&["v*"]))
            .await
            .is_success()
    );
    assert_eq!(env.dest_tags().await.len(), 3);

    let none = env.sync_once(&mirror, &env.config(&["release-*"])).await;
    assert!(none.is_success(), "{none:?}");
    assert_eq!(none.error, None, "{none:?}");
    assert!(none.note.as_deref().unwrap().contains("no tags matched"));
    assert_eq!(env.dest_tags().await.len(), 3);

    env.proxy
        .inject("GET", "/tags/list", Fault::Status(500), usize::MAX);
    let failed = env.sync_once(&mirror, &env.config(&["v1"])).await;
    assert_eq!(failed.outcome, Outcome::Failed, "{failed:?}");
    assert!(failed.tags_deleted.is_empty());
    assert_eq!(env.dest_tags().await.len(), 3);
}

#[tokio::test]
async fn narrowing_the_patterns_prunes() {
    let env = Env::start();
    for (i, tag) in ["v1", "v2", "v3"].iter().enumerate() {
        env.src()
            .push_image(SRC, tag, &image(i as u64, tag.as_bytes()))
            .await;
    }
    let mirror = env.mirror();
    assert!(
        env.sync_once(&mirror, &env.config(&["v*"]))
            .await
            .is_success()
    );
    let narrowed = env.sync_once(&mirror, &env.config(&["v1"])).await;
    assert!(narrowed.is_success(), "{narrowed:?}");
    assert_eq!(narrowed.tags_deleted, ["v2", "v3"]);
    assert_eq!(env.dest_tags().await.keys().collect::<Vec<_>>(), ["v1"]);
}

#[tokio::test]
async fn a_multiarch_index_is_mirrored_whole_with_the_source_digests() {
    let env = Env::start();
    let index = Index::two_platforms(Flavor::Oci, 11, 2000);
    let docker = Index::two_platforms(Flavor::Docker, 12, 2000);
    env.src().push_index(SRC, "oci", &index).await;
    env.src().push_index(SRC, "docker", &docker).await;
    let mirror = env.mirror();
    let report = env.sync_once(&mirror, &env.config(&["*"])).await;
    assert!(report.is_success(), "{report:?}");
    let tags = env.dest_tags().await;
    assert_eq!(tags["oci"], index.manifest.digest);
    assert_eq!(tags["docker"], docker.manifest.digest);
    for child in index.children.iter().chain(&docker.children) {
        let bytes = env
            .dst()
            .manifest(DEST, child.manifest.digest.as_str())
            .await
            .expect("every child is copied");
        assert_eq!(bytes, child.manifest.bytes);
    }
    // The layer both platforms share was fetched once.
    let shared = &index.children[0].layers[0].digest;
    assert_eq!(env.blob_gets(shared), 1);
}

#[tokio::test]
async fn a_filtered_index_is_refused_sparse_by_distribution_then_rewritten() {
    let env = Env::start();
    let index = Index::two_platforms(Flavor::Oci, 21, 2000);
    env.src().push_index(SRC, "multi", &index).await;
    let (amd, arm) = (&index.children[0], &index.children[1]);
    let mirror = env.mirror();
    let mut config = env.config(&["multi"]);
    config.architectures = vec!["arm64".into()];

    // distribution 2.8 answers MANIFEST_BLOB_UNKNOWN for a sparse index: the tag fails, saying so.
    let refused = env.sync_once(&mirror, &config).await;
    assert_eq!(refused.failed_tags(), ["multi"], "{refused:?}");
    let reason = &refused.tags_failed[0].reason;
    assert!(reason.contains("sparse index"), "{reason}");
    assert!(env.dest_tags().await.is_empty());
    // Only the selected platform's content was copied, with its source digest.
    assert!(
        env.dst()
            .manifest(DEST, arm.manifest.digest.as_str())
            .await
            .is_some()
    );
    assert!(
        env.dst()
            .manifest(DEST, amd.manifest.digest.as_str())
            .await
            .is_none()
    );
    assert_eq!(env.blob_gets(&amd.layers[1].digest), 0);

    config.platform_index = PlatformIndexMode::Rewrite;
    let rewritten = env.sync_once(&mirror, &config).await;
    assert!(rewritten.is_success(), "{rewritten:?}");
    assert_eq!(rewritten.tags_rewritten.len(), 1);
    assert_eq!(
        rewritten.tags_rewritten[0].source_digest,
        index.manifest.digest
    );
    let tag_digest = env.dest_tags().await["multi"].clone();
    assert_eq!(rewritten.tags_rewritten[0].digest, tag_digest);
    let bytes = env.dst().manifest(DEST, "multi").await.unwrap();
    let pushed: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let entries = pushed["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["digest"], arm.manifest.digest.as_str());

    // Nothing changed upstream: the rewritten tag is current, no blob is read.
    env.proxy.reset_counts();
    let again = env.sync_once(&mirror, &config).await;
    assert_eq!(again.tags_current, ["multi"], "{again:?}");
    assert_eq!(env.proxy.count("GET", "/blobs/"), 0);
}

#[tokio::test]
async fn a_filtered_index_keeps_the_source_digest_where_sparse_indexes_are_accepted() {
    let env = Env::start();
    let index = Index::two_platforms(Flavor::Oci, 31, 2000);
    env.src().push_index(SRC, "multi", &index).await;
    let dir = tempfile::tempdir().unwrap();
    let layout = LayoutRegistry::new(dir.path());
    let mirror = Mirror::builder()
        .destination(Arc::new(layout.clone()))
        .connector(Arc::new(HttpConnector::new(http_options())))
        .build()
        .unwrap();
    let mut config = env.config(&["multi"]);
    config.architectures = vec!["amd64".into()];
    let report = env.sync_once(&mirror, &config).await;
    assert!(report.is_success(), "{report:?}");
    assert!(report.tags_rewritten.is_empty());
    let head = layout.head_manifest(DEST, "multi").await.unwrap().unwrap();
    assert_eq!(head.digest, index.manifest.digest);
    let amd = &index.children[0].manifest.digest;
    let arm = &index.children[1].manifest.digest;
    assert!(
        layout
            .head_manifest(DEST, amd.as_str())
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        layout
            .head_manifest(DEST, arm.as_str())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_second_run_with_nothing_changed_reads_no_blob() {
    let env = Env::start();
    env.src()
        .push_image(SRC, "a", &Image::simple(41, 3, 50_000))
        .await;
    env.src()
        .push_index(SRC, "b", &Index::two_platforms(Flavor::Docker, 42, 10_000))
        .await;
    let mirror = env.mirror();
    mirror
        .create_mirror(env.config(&["*"]).validated().unwrap())
        .await
        .unwrap();
    let first = mirror.sync(DEST).await.unwrap();
    assert!(first.is_success(), "{first:?}");
    assert!(first.blobs_copied > 0);

    env.proxy.reset_counts();
    let second = mirror.sync(DEST).await.unwrap();
    assert!(second.is_success(), "{second:?}");
    assert_eq!(second.tags_current, ["a", "b"]);
    assert_eq!(second.blobs_copied, 0);
    assert_eq!(second.bytes_copied, 0);
    assert_eq!(env.proxy.count("*", "/blobs/"), 0);
    assert_eq!(env.proxy.count("GET", "/manifests/"), 0);
}

#[tokio::test]
async fn a_no_op_run_asks_each_side_about_each_tag_once() {
    let env = Env::start();
    let dest_proxy = Proxy::start(&env.dest_registry);
    let mut tags = Vec::new();
    for i in 0..10u64 {
        let tag = format!("t{i}");
        env.src()
            .push_image(SRC, &tag, &Image::simple(60 + i, 1, 1000))
            .await;
        tags.push(tag);
    }
    env.src()
        .push_index(SRC, "multi", &Index::two_platforms(Flavor::Oci, 70, 1000))
        .await;
    tags.push("multi".to_owned());
    tags.sort();
    let mirror = mirror_into(&dest_proxy);
    let config = env.config(&["*"]);
    let first = env.sync_once(&mirror, &config).await;
    assert!(first.is_success(), "{first:?}");

    env.proxy.reset_counts();
    dest_proxy.reset_counts();
    let second = env.sync_once(&mirror, &config).await;
    assert!(second.is_success(), "{second:?}");
    assert_eq!(second.tags_current, tags);
    // Each side: one tag list and one manifest HEAD per tag, nothing else (the clients learned
    // their scheme in the first run, so there is no ping either).
    for (side, proxy, repo) in [
        ("source", &env.proxy, SRC),
        ("destination", &dest_proxy, DEST),
    ] {
        let mut expected: Vec<(String, String)> = tags
            .iter()
            .map(|tag| ("HEAD".to_owned(), format!("/v2/{repo}/manifests/{tag}")))
            .collect();
        expected.push(("GET".to_owned(), format!("/v2/{repo}/tags/list?n=1000")));
        expected.sort();
        let mut seen: Vec<(String, String)> = proxy
            .requests()
            .into_iter()
            .map(|s| (s.method, s.path))
            .collect();
        seen.sort();
        assert_eq!(seen, expected, "{side} requests of a no-op run");
    }
}

/// One small image under `count` tags (`t000`, `t001`, …) of `repo`: a run over them is all
/// manifest questions.
async fn tag_many(seeder: &Seeder, repo: &str, count: usize) {
    let image = Image::simple(500, 1, 1000);
    seeder.push_image(repo, "t000", &image).await;
    for i in 1..count {
        seeder
            .push_manifest(repo, &format!("t{i:03}"), &image.manifest)
            .await;
    }
}

#[tokio::test]
async fn a_far_source_is_asked_about_more_tags_at_once() {
    let env = Env::start();
    tag_many(&env.src(), SRC, 300).await;
    let config = env.config(&["*"]);
    let first = env.sync_once(&env.mirror(), &config).await;
    assert!(first.is_success(), "{first:?}");

    // Every manifest HEAD now takes 50 ms, as across a continent. (A new mirror: its client
    // has not seen the source answer at once.)
    env.proxy.inject(
        "HEAD",
        "/manifests/",
        Fault::Delay(Duration::from_millis(50)),
        1000,
    );
    env.proxy.reset_counts();
    let second = env.sync_once(&env.mirror(), &config).await;
    assert!(second.is_success(), "{second:?}");
    assert_eq!(second.tags_current.len(), 300);
    assert_eq!(env.proxy.count("HEAD", "/manifests/"), 300);
    // 32 at a time would ask 640 a second; 50 ms round trips get up to 8 times as many.
    let most = env.proxy.max_in_flight("HEAD", "/manifests/");
    assert!(
        (33..=256).contains(&most),
        "{most} manifest HEADs in flight"
    );
}

#[tokio::test]
async fn registries_nearby_are_asked_32_at_a_time_and_both_at_once() {
    let env = Env::start();
    let dest_proxy = Proxy::start(&env.dest_registry);
    tag_many(&env.src(), SRC, 300).await;
    let mirror = mirror_into(&dest_proxy);
    let config = env.config(&["*"]);
    let first = env.sync_once(&mirror, &config).await;
    assert!(first.is_success(), "{first:?}");
    // The clients learn the round trip from a window of answers: on a machine busy enough to
    // answer 32 questions at once no faster than a far registry, the first no-op may widen the
    // window until its answers show the time was queueing (the destination had no questions in
    // the cold run to learn from).
    let warm = env.sync_once(&mirror, &config).await;
    assert!(warm.is_success(), "{warm:?}");

    env.proxy.reset_counts();
    dest_proxy.reset_counts();
    let second = env.sync_once(&mirror, &config).await;
    assert!(second.is_success(), "{second:?}");
    assert_eq!(second.tags_current.len(), 300);
    let source = env.proxy.max_in_flight("HEAD", "/manifests/");
    let dest = dest_proxy.max_in_flight("HEAD", "/manifests/");
    let (sides, dest_sides) = (env.proxy.requests(), dest_proxy.requests());
    let both = max_in_flight(
        sides
            .iter()
            .chain(&dest_sides)
            .filter(|s| s.method == "HEAD" && s.path.contains("/manifests/")),
    );
    // Round trips this short keep each side's client to its 32; the two sides are asked at
    // once, neither waiting behind the other's questions.
    assert!(
        source <= 32 && dest <= 32 && both > 32,
        "manifest HEADs in flight: {source} to the source, {dest} to the destination, {both} in all"
    );
}

#[tokio::test]
async fn tags_are_published_eight_at_a_time_and_reported_in_order() {
    let env = Env::start();
    let dest_proxy = Proxy::start(&env.dest_registry);
    tag_many(&env.src(), SRC, 24).await;
    // Every manifest PUT takes a while: how many overlap shows how many tags move at once.
    dest_proxy.inject(
        "PUT",
        "/manifests/",
        Fault::Delay(Duration::from_millis(200)),
        1000,
    );
    let report = env
        .sync_once(&mirror_into(&dest_proxy), &env.config(&["*"]))
        .await;
    assert!(report.is_success(), "{report:?}");
    let tags: Vec<String> = (0..24).map(|i| format!("t{i:03}")).collect();
    assert_eq!(report.tags_synced, tags);
    assert_eq!(dest_proxy.max_in_flight("PUT", "/manifests/"), 8);
    assert_eq!(env.dest_tags().await.len(), 24);
}

#[tokio::test]
async fn a_blob_shared_by_twenty_tags_is_fetched_once() {
    let env = Env::start();
    let shared = Blob::random(51, 512 * 1024);
    let images = images_sharing_layers(20, std::slice::from_ref(&shared));
    for (i, img) in images.iter().enumerate() {
        env.src().push_image(SRC, &format!("t{i:02}"), img).await;
    }
    let mirror = env.builder().concurrency(8).build().unwrap();
    let report = env.sync_once(&mirror, &env.config(&["t*"])).await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(report.tags_synced.len(), 20);
    assert_eq!(env.blob_gets(&shared.digest), 1);
    // 20 configs and the shared layer.
    assert_eq!(report.blobs_copied, 21);
}

#[tokio::test]
async fn small_blobs_do_not_queue_behind_the_cap_meant_for_big_ones() {
    let env = Env::start();
    for i in 0..4u64 {
        env.src()
            .push_image(SRC, &format!("t{i}"), &Image::simple(80 + i, 3, 2000))
            .await;
    }
    // Every blob read takes a while: how many start together shows the concurrency reached.
    let delay = Duration::from_millis(600);
    env.proxy.inject("GET", "/blobs/", Fault::Delay(delay), 100);
    let mirror = env.builder().concurrency(2).build().unwrap();
    let report = env.sync_once(&mirror, &env.config(&["t*"])).await;
    assert!(report.is_success(), "{report:?}");
    // 4 configs and 12 layers of 2 KB.
    assert_eq!(report.blobs_copied, 16);
    let starts: Vec<_> = env
        .proxy
        .requests()
        .into_iter()
        .filter(|s| s.method == "GET" && s.path.contains("/blobs/"))
        .map(|s| s.at)
        .collect();
    assert_eq!(starts.len(), 16);
    let first = *starts.iter().min().unwrap();
    let together = starts
        .iter()
        .filter(|at| at.duration_since(first).unwrap_or_default() < delay / 2)
        .count();
    // Under a cap of 2 units no third read could start before a first one ended; small blobs
    // have the run's pool of small copies (16 at a concurrency of 2).
    assert!(together >= 6, "{together} blob reads started together");
}

#[tokio::test]
async fn a_new_destination_repository_is_not_asked_about_its_small_blobs() {
    let env = Env::start();
    let dest_proxy = Proxy::start(&env.dest_registry);
    let shared = Blob::random(91, 3000);
    let images = images_sharing_layers(3, std::slice::from_ref(&shared));
    for (i, img) in images.iter().enumerate().take(2) {
        env.src().push_image(SRC, &format!("t{i}"), img).await;
    }
    let mirror = mirror_into(&dest_proxy);
    let config = env.config(&["t*"]);
    let first = env.sync_once(&mirror, &config).await;
    assert!(first.is_success(), "{first:?}");
    // Two configs and the shared layer, copied without a HEAD: the repository was new.
    assert_eq!(first.blobs_copied, 3);
    assert_eq!(dest_proxy.count("HEAD", "/blobs/"), 0);

    // Once it has tags, blobs are asked about first: the shared layer is not read again.
    env.src().push_image(SRC, "t2", &images[2]).await;
    env.proxy.reset_counts();
    dest_proxy.reset_counts();
    let second = env.sync_once(&mirror, &config).await;
    assert!(second.is_success(), "{second:?}");
    assert_eq!(second.tags_synced, ["t2"]);
    assert_eq!((second.blobs_copied, second.blobs_present), (1, 1));
    assert_eq!(dest_proxy.count("HEAD", "/blobs/"), 2);
    assert_eq!(env.blob_gets(&shared.digest), 0);
}

#[tokio::test]
async fn tags_are_staged_a_bounded_number_at_a_time() {
    let env = Env::start();
    for i in 0..40u64 {
        env.src()
            .push_image(SRC, &format!("t{i:02}"), &Image::simple(300 + i, 1, 1000))
            .await;
    }
    // Blob reads take a while, so tags taken up together start within the first moments.
    let delay = Duration::from_millis(200);
    env.proxy
        .inject("GET", "/blobs/", Fault::Delay(delay), 1000);
    let started = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&started);
    let options = SyncOptions {
        progress: regmirror::engine::Progress::new(move |e| {
            if let regmirror::engine::ProgressEvent::TagStarted { .. } = e {
                seen.lock().unwrap().push(Instant::now());
            }
        }),
        ..SyncOptions::default()
    };
    // A concurrency of 1: 32 tags staged at once (8 per small request a registry gets at once).
    let mirror = env.builder().concurrency(1).build().unwrap();
    let report = mirror
        .sync_config(&env.config(&["t*"]), options)
        .await
        .unwrap();
    assert!(report.is_success(), "{report:?}");
    assert_eq!(report.tags_synced.len(), 40);
    let started = started.lock().unwrap().clone();
    assert_eq!(started.len(), 40);
    let first = started[0];
    let together = started
        .iter()
        .filter(|at| at.duration_since(first) < delay / 2)
        .count();
    // Taken up all at once, 40 tags would each hold a task's state until their blobs' turn
    // came: a 10 000-tag run held 10 000 (162 MiB peak RSS).
    assert!(
        (1..=32).contains(&together),
        "{together} tags started together"
    );
}

#[tokio::test]
async fn the_source_is_asked_while_the_destination_is_taken_stock_of() {
    let env = Env::start();
    let dest_proxy = Proxy::start(&env.dest_registry);
    for i in 0..3u64 {
        env.src()
            .push_image(SRC, &format!("t{i}"), &Image::simple(340 + i, 1, 1000))
            .await;
    }
    let mirror = mirror_into(&dest_proxy);
    let config = env.config(&["t*"]);
    assert!(env.sync_once(&mirror, &config).await.is_success());
    // A no-op: each side is asked about each tag; the destination answers slowly.
    let delay = Duration::from_millis(800);
    dest_proxy.inject("HEAD", "/manifests/", Fault::Delay(delay), 100);
    env.proxy.reset_counts();
    dest_proxy.reset_counts();
    let report = env.sync_once(&mirror, &config).await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(report.tags_current, ["t0", "t1", "t2"]);
    let heads = |proxy: &Proxy| -> Vec<_> {
        proxy
            .requests()
            .into_iter()
            .filter(|s| s.method == "HEAD" && s.path.contains("/manifests/"))
            .map(|s| s.at)
            .collect()
    };
    let (dest, source) = (heads(&dest_proxy), heads(&env.proxy));
    assert_eq!((dest.len(), source.len()), (3, 3));
    let dest_first = *dest.iter().min().unwrap();
    let source_last = *source.iter().max().unwrap();
    // Waiting for the destination's digests first, no source HEAD could start before the
    // destination's slow answers came.
    assert!(
        source_last.duration_since(dest_first).unwrap_or_default() < delay / 2,
        "the source was asked {:?} after the destination",
        source_last.duration_since(dest_first)
    );
}

/// A source with `t0`..`t2` mirrored once (through the proxy) into the destination.
async fn mirrored_three(env: &Env, seed: u64) -> Mirror {
    mirrored(env, seed, 3).await
}

/// A source with `t0`..`t{n-1}` mirrored once (through the proxy) into the destination.
async fn mirrored(env: &Env, seed: u64, n: u64) -> Mirror {
    for i in 0..n {
        env.src()
            .push_image(SRC, &format!("t{i}"), &Image::simple(seed + i, 1, 1000))
            .await;
    }
    let mirror = env.mirror();
    assert!(
        env.sync_once(&mirror, &env.config(&["t*"]))
            .await
            .is_success()
    );
    mirror
}

/// A successful run of `mirror` (a no-op) whose source tag list comes `delay` late, counted
/// afresh; and when the source was asked for that list.
async fn no_op_with_a_slow_source_list(
    env: &Env,
    mirror: &Mirror,
    delay: Duration,
) -> (SyncReport, SystemTime) {
    env.proxy
        .inject("GET", "/tags/list", Fault::Delay(delay), 1);
    env.proxy.reset_counts();
    let report = env.sync_once(mirror, &env.config(&["t*"])).await;
    assert!(report.is_success(), "{report:?}");
    let listed = env
        .proxy
        .requests()
        .into_iter()
        .find(|s| s.path.contains("/tags/list"))
        .unwrap()
        .at;
    (report, listed)
}

/// When each of the source's manifest `HEAD`s arrived, by path.
fn source_heads(env: &Env) -> Vec<(String, SystemTime)> {
    env.proxy
        .requests()
        .into_iter()
        .filter(|s| s.method == "HEAD" && s.path.contains("/manifests/"))
        .map(|s| (s.path, s.at))
        .collect()
}

#[tokio::test]
async fn the_source_is_asked_about_the_destinations_tags_before_its_list_comes() {
    let env = Env::start();
    let mirror = mirrored_three(&env, 350).await;
    let delay = Duration::from_millis(800);
    let (report, listed) = no_op_with_a_slow_source_list(&env, &mirror, delay).await;
    assert_eq!(report.tags_current, ["t0", "t1", "t2"]);
    let heads = source_heads(&env);
    // Each tag asked once: the early answer is the one used.
    assert_eq!(heads.len(), 3, "{heads:?}");
    for (path, at) in heads {
        // Waiting for the source's list first, no HEAD could start before its slow answer.
        let after = at.duration_since(listed).unwrap_or_default();
        assert!(after < delay / 2, "{path} asked {after:?} after the list");
    }
}

#[tokio::test]
async fn the_source_is_asked_early_about_as_many_tags_as_it_can_be_asked_at_once() {
    let env = Env::start();
    mirrored(&env, 390, 68).await;
    // A concurrency of 2 (one unit lists each side): at most 64 small reads in flight to a
    // registry, so 64 of the 68 tags are asked about early, the other 4 after the source's
    // (slow) list.
    let mirror = env.builder().concurrency(2).build().unwrap();
    let delay = Duration::from_millis(800);
    let (report, listed) = no_op_with_a_slow_source_list(&env, &mirror, delay).await;
    assert_eq!(report.tags_current.len(), 68, "{report:?}");
    let heads = source_heads(&env);
    assert_eq!(heads.len(), 68, "each tag asked once: {heads:?}");
    let after = |at: SystemTime| at.duration_since(listed).unwrap_or_default();
    let early = heads
        .iter()
        .filter(|(_, at)| after(*at) < delay / 2)
        .count();
    let late = heads.iter().filter(|(_, at)| after(*at) >= delay).count();
    assert_eq!((early, late), (64, 4), "{heads:?}");
}

#[tokio::test]
async fn a_destination_tag_the_source_no_longer_lists_is_pruned_though_asked_early() {
    let env = Env::start();
    let mirror = mirrored_three(&env, 360).await;
    // The destination has a tag the source never had (as if deleted upstream), and the
    // narrowed patterns exclude t1.
    env.dst()
        .push_image(DEST, "t9", &Image::simple(369, 1, 1000))
        .await;
    env.proxy.inject(
        "GET",
        "/tags/list",
        Fault::Delay(Duration::from_millis(300)),
        1,
    );
    env.proxy.reset_counts();
    let report = env.sync_once(&mirror, &env.config(&["t*", "!t1"])).await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(report.tags_current, ["t0", "t2"]);
    assert!(report.tags_failed.is_empty(), "{report:?}");
    assert_eq!(report.tags_deleted, ["t1", "t9"]);
    assert_eq!(
        env.dest_tags().await.keys().collect::<Vec<_>>(),
        ["t0", "t2"]
    );
    // t9 was asked about early (the filter selects it) and its answer dropped; the excluded
    // t1 was never asked about.
    let mut asked: Vec<String> = source_heads(&env).into_iter().map(|(p, _)| p).collect();
    asked.sort();
    let path = |tag: &str| format!("/v2/{SRC}/manifests/{tag}");
    assert_eq!(asked, [path("t0"), path("t2"), path("t9")]);
}

#[tokio::test]
async fn a_tag_missing_when_asked_early_but_then_listed_is_asked_again() {
    let env = Env::start();
    let mirror = mirrored_three(&env, 370).await;
    // The early HEAD of t0 finds nothing (as if t0 were pushed just after it), the list
    // (coming later) names it: a HEAD after the listing decides, as it would have alone.
    env.proxy
        .inject("HEAD", "/manifests/t0", Fault::Status(404), 1);
    env.proxy.inject(
        "GET",
        "/tags/list",
        Fault::Delay(Duration::from_millis(300)),
        1,
    );
    env.proxy.reset_counts();
    let report = env.sync_once(&mirror, &env.config(&["t*"])).await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(report.tags_current, ["t0", "t1", "t2"]);
    assert_eq!(env.proxy.count("HEAD", "/manifests/t0"), 2);
    assert_eq!(env.proxy.count("HEAD", "/manifests/t1"), 1);
}

#[tokio::test]
async fn a_failed_source_listing_fails_the_run_though_its_tags_were_asked_early() {
    let env = Env::start();
    let mirror = mirrored_three(&env, 380).await;
    let before = env.dest_tags().await;
    env.dst()
        .push_image(DEST, "t9", &Image::simple(389, 1, 1000))
        .await;
    env.proxy
        .inject("GET", "/tags/list", Fault::Status(500), usize::MAX);
    env.proxy.reset_counts();
    let report = env.sync_once(&mirror, &env.config(&["t*"])).await;
    assert_eq!(report.outcome, Outcome::Failed, "{report:?}");
    let failure = report.failure.as_ref().unwrap();
    assert_eq!(failure.phase, Some(regmirror::Phase::List), "{report:?}");
    assert!(
        failure.message.contains("listing the tags of"),
        "{report:?}"
    );
    // The source was asked about the destination's tags while its list was retried, and no
    // answer was used: nothing planned, copied or pruned.
    assert_eq!(source_heads(&env).len(), 4);
    assert!(report.tags_current.is_empty() && report.tags_failed.is_empty());
    assert!(report.tags_synced.is_empty() && report.tags_deleted.is_empty());
    assert_eq!(env.dest_tags().await.len(), before.len() + 1);
}

#[tokio::test]
async fn a_corrupt_source_blob_fails_its_tag_and_no_tag_points_at_it() {
    let env = Env::start();
    let good = image(61, b"good layer");
    let bad = image(62, b"this layer will be corrupted on disk");
    env.src().push_image(SRC, "good", &good).await;
    env.src().push_image(SRC, "bad", &bad).await;
    env.source.corrupt_blob(&bad.layers[0].digest);
    let mirror = env.mirror();
    let report = env.sync_once(&mirror, &env.config(&["*"])).await;
    assert_eq!(report.outcome, Outcome::Failed, "{report:?}");
    assert_eq!(report.failed_tags(), ["bad"]);
    assert!(
        report.tags_failed[0].reason.contains("DigestMismatch"),
        "{report:?}"
    );
    let tags = env.dest_tags().await;
    assert_eq!(tags.keys().collect::<Vec<_>>(), ["good"]);
    assert!(!env.dst().has_blob(DEST, &bad.layers[0].digest).await);
    assert!(
        env.dst()
            .manifest(DEST, bad.manifest.digest.as_str())
            .await
            .is_none()
    );
}

#[tokio::test]
async fn blobs_of_another_destination_repository_are_mounted() {
    let env = Env::start();
    env.src()
        .push_image(SRC, "v1", &Image::simple(71, 2, 20_000))
        .await;
    let mirror = env.mirror();
    assert!(
        env.sync_once(&mirror, &env.config(&["v1"]))
            .await
            .is_success()
    );
    let mut other = env.config(&["v1"]);
    other.id = "mirror/other".into();
    env.proxy.reset_counts();
    let report = env.sync_once(&mirror, &other).await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(report.blobs_mounted, 3, "{report:?}");
    assert_eq!(env.proxy.count("GET", "/blobs/"), 0);
}

#[tokio::test]
async fn a_webhook_receives_signed_events_with_the_payload() {
    let env = Env::start();
    let receiver = WebhookReceiver::start();
    let webhook = WebhookNotifier::builder(receiver.url())
        .secret("hook-secret")
        .build()
        .unwrap();
    let mirror = env.builder().notifier(Arc::new(webhook)).build().unwrap();
    env.src().push_image(SRC, "v1", &image(81, b"one")).await;
    let bad = image(82, b"unreadable");
    env.src().push_image(SRC, "v2", &bad).await;
    env.source.remove_blob(&bad.layers[0].digest);
    let mut config = env.config(&["v*"]);
    config.source_credentials = Some(regmirror::Credentials::new(
        "someone",
        "src-pass-never-sent",
    ));
    mirror
        .create_mirror(config.validated().unwrap())
        .await
        .unwrap();

    let report = mirror.sync(DEST).await.unwrap();
    assert_eq!(report.failed_tags(), ["v2"]);
    let got = receiver.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 2, "{got:?}");
    for r in &got {
        assert_eq!(r.method, "POST");
        assert_eq!(r.headers["content-type"], "application/json");
        assert_eq!(
            r.headers[&SIGNATURE_HEADER.to_ascii_lowercase()],
            WebhookNotifier::signature("hook-secret", &r.body)
        );
        assert!(!String::from_utf8_lossy(&r.body).contains("src-pass-never-sent"));
    }
    assert_eq!(got[0].json()["event"], "sync_started");
    let done = got[1].json();
    assert_eq!(done["event"], "sync_failed");
    assert_eq!(done["mirror_id"], DEST);
    assert_eq!(done["source"], format!("{}/{SRC}", env.proxy.host()));
    assert_eq!(done["patterns"], serde_json::json!(["v*"]));
    assert_eq!(done["tags_synced"], serde_json::json!(["v1"]));
    assert_eq!(done["tags_failed"], serde_json::json!(["v2"]));
    assert_eq!(done["tags_deleted"], serde_json::json!([]));
    assert_eq!(done["bytes_copied"], report.bytes_copied);
    assert!(done["bytes_copied"].as_u64().unwrap() > 0);
    assert!(done["duration_ms"].is_u64());
    assert!(done["error"].as_str().unwrap().contains("v2"));
    // Each failed tag's failure as data, under the names the report's JSON uses.
    let host = env.proxy.host();
    let failed = &done["tag_failures"][0];
    assert_eq!(failed["tag"], "v2", "{done}");
    assert_eq!(failed["kind"], "NotFound", "{done}");
    assert_eq!(failed["side"], "source", "{done}");
    assert_eq!(failed["phase"], "stage", "{done}");
    assert_eq!(failed["host"], host, "{done}");
    assert!(failed["reason"].as_str().unwrap().starts_with("NotFound: "));
    assert_eq!(done["failure"]["kind"], "NotFound", "{done}");
    assert_eq!(
        done["failure"]["message"], done["error"],
        "the run's failure says what its error says: {done}"
    );
    assert_eq!(got[0].json()["failure"], serde_json::Value::Null);
}

#[tokio::test]
async fn a_hanging_webhook_delays_the_end_by_at_most_its_timeout() {
    let env = Env::start();
    env.src().push_image(SRC, "v1", &image(91, b"one")).await;
    let receiver = WebhookReceiver::hanging();
    let webhook = WebhookNotifier::builder(receiver.url())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let timeout = Duration::from_secs(1);
    let mirror = env
        .builder()
        .notifier(Arc::new(webhook))
        .notifier_timeout(timeout)
        .build()
        .unwrap();
    let started = Instant::now();
    let report = env.sync_once(&mirror, &env.config(&["v1"])).await;
    let elapsed = started.elapsed();
    assert!(report.is_success(), "{report:?}");
    assert!(!receiver.received().is_empty(), "the webhook was called");
    let work = Duration::from_millis(report.duration_ms);
    assert!(
        elapsed <= work + timeout + Duration::from_secs(1),
        "the run took {elapsed:?} for {work:?} of work with a {timeout:?} notifier timeout"
    );
}

#[tokio::test]
async fn cancelling_lets_the_blob_in_flight_finish_and_publishes_nothing() {
    let env = Env::start();
    let slow = Image::simple(111, 1, 300_000);
    env.src().push_image(SRC, "a", &slow).await;
    env.src()
        .push_image(SRC, "b", &Image::simple(112, 1, 1000))
        .await;
    let stalled = format!("/blobs/{}", slow.layers[0].digest);
    let pause = Duration::from_secs(2);
    env.proxy
        .inject("GET", &stalled, Fault::StallBody { after: 1000, pause }, 1);
    let mirror = env.mirror();
    let options = SyncOptions::default();
    let cancel = options.cancel.clone();
    let config = env.config(&["*"]);
    let run = tokio::spawn(async move { mirror.sync_config(&config, options).await });
    let waiting = Instant::now();
    while env.proxy.count("GET", &stalled) == 0 {
        assert!(
            waiting.elapsed() < Duration::from_secs(30),
            "the blob was never requested"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cancel.cancel();
    let report = run.await.unwrap().unwrap();
    assert_eq!(report.outcome, Outcome::Cancelled, "{report:?}");
    assert!(report.tags_synced.is_empty());
    assert!(env.dest_tags().await.is_empty());
    // The unit in flight (the stalled blob) was completed, not torn down.
    assert!(env.dst().has_blob(DEST, &slow.layers[0].digest).await);
}

#[tokio::test]
async fn the_mirror_timeout_bounds_a_stalled_run() {
    let env = Env::start();
    let slow = Image::simple(121, 1, 300_000);
    env.src().push_image(SRC, "a", &slow).await;
    env.proxy.inject(
        "GET",
        &format!("/blobs/{}", slow.layers[0].digest),
        Fault::StallBody {
            after: 1000,
            pause: Duration::from_secs(30),
        },
        1,
    );
    let mirror = env.mirror();
    let mut config = env.config(&["*"]);
    config.timeout = Duration::from_secs(2);
    let started = Instant::now();
    let report = env.sync_once(&mirror, &config).await;
    assert_eq!(report.outcome, Outcome::Failed, "{report:?}");
    assert!(
        report.error.as_deref().unwrap().contains("timeout"),
        "{report:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(env.dest_tags().await.is_empty());
}

fn sample_event() -> regmirror::MirrorEvent {
    regmirror::MirrorEvent {
        event: regmirror::EventKind::SyncSucceeded,
        mirror_id: DEST.into(),
        source: "registry.example/upstream/app".into(),
        patterns: vec!["v*".into()],
        tags_synced: vec!["v1".into()],
        tags_failed: vec![],
        tags_deleted: vec![],
        bytes_copied: 10,
        referrers_copied: 1,
        duration_ms: 5,
        error: None,
        failure: None,
        tag_failures: Vec::new(),
        note: None,
    }
}

#[tokio::test]
async fn the_webhook_retries_until_the_receiver_answers() {
    use regmirror::Notifier;
    let receiver = WebhookReceiver::failing(2);
    let webhook = WebhookNotifier::builder(receiver.url())
        .retries(2)
        .backoff(Duration::from_millis(10))
        .build()
        .unwrap();
    webhook.notify(&sample_event()).await.unwrap();
    let got = receiver.received();
    assert_eq!(got.len(), 3);
    assert_eq!(got[2].json()["tags_synced"], serde_json::json!(["v1"]));

    let down = WebhookReceiver::failing(10);
    let url = down.url().replace("http://", "http://user:hook-password@") + "?token=qs-secret";
    let webhook = WebhookNotifier::builder(url)
        .retries(1)
        .backoff(Duration::from_millis(10))
        .build()
        .unwrap();
    let e = webhook.notify(&sample_event()).await.unwrap_err();
    assert_eq!(down.received().len(), 2);
    let shown = format!("{e} {e:?}");
    assert!(shown.contains("503"), "{shown}");
    assert!(
        !shown.contains("hook-password") && !shown.contains("qs-secret"),
        "{shown}"
    );
}
