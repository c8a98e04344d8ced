//! A sync run with faults injected on both sides of it: the source registry and the destination
//! registry each sit behind the kit's fault-injecting proxy. Whatever goes wrong, the
//! destination must end as SEMANTICS.md §3–§5 say: failed tags keep their previous value (or,
//! with `all_or_nothing`, everything is as before the run), and no tag ever points at content
//! the destination does not fully hold ([`Seeder::assert_complete`] downloads every blob of
//! every tag).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use regmirror::engine::{HttpConnector, Mirror, Outcome, SyncOptions, SyncReport};
use regmirror::registry::http::{HttpOptions, HttpRegistry, RetryPolicy};
use regmirror::{
    Digest, MemoryStateStore, MirrorConfig, PlatformIndexMode, RollbackMode, StateStore,
};
use regmirror_tests::proxy::Fault;
use regmirror_tests::{Blob, Flavor, Image, Index, Proxy, Registry, Seeder};

const SRC: &str = "upstream/app";
const DEST: &str = "mirror/app";

/// Fast retries (same number as the default), so persistent failures end quickly.
fn options(stall: Duration) -> HttpOptions {
    HttpOptions {
        tls_verify: false,
        docker_config: false,
        stall_timeout: stall,
        retry: RetryPolicy {
            max_retries: 4,
            initial_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(100),
        },
        ..HttpOptions::default()
    }
}

/// Both registries, each behind its own proxy, and a memory state store.
struct Env {
    source: Registry,
    src_proxy: Proxy,
    dest_registry: Registry,
    dest_proxy: Proxy,
    store: Arc<MemoryStateStore>,
}

impl Env {
    fn start() -> Env {
        let source = Registry::start();
        let dest_registry = Registry::start();
        Env {
            src_proxy: Proxy::start(&source),
            dest_proxy: Proxy::start(&dest_registry),
            source,
            dest_registry,
            store: Arc::new(MemoryStateStore::new()),
        }
    }

    fn src(&self) -> Seeder {
        self.source.seeder()
    }

    fn dst(&self) -> Seeder {
        self.dest_registry.seeder()
    }

    /// A mirror whose clients give up on silence after `stall`, writing to the destination
    /// through its proxy (in PATCH chunks of `chunk` bytes when given).
    fn mirror_with(&self, stall: Duration, chunk: Option<usize>) -> Mirror {
        let dest_options = HttpOptions {
            upload_chunk_size: chunk,
            ..options(stall)
        };
        let dest = HttpRegistry::new(&self.dest_proxy.host(), dest_options).unwrap();
        Mirror::builder()
            .state(self.store.clone())
            .destination(Arc::new(dest))
            .connector(Arc::new(HttpConnector::new(options(stall))))
            .build()
            .unwrap()
    }

    fn mirror(&self) -> Mirror {
        self.mirror_with(Duration::from_secs(30), None)
    }

    fn config(&self, patterns: &[&str], rollback: RollbackMode) -> MirrorConfig {
        let mut c = MirrorConfig::new(
            DEST,
            format!("{}/{SRC}", self.src_proxy.host()).parse().unwrap(),
            patterns,
        );
        c.verify_tls = false;
        c.rollback = rollback;
        c
    }

    async fn sync(&self, mirror: &Mirror, config: &MirrorConfig) -> SyncReport {
        let report = mirror
            .sync_config(config, SyncOptions::default())
            .await
            .unwrap();
        // Whatever happened, every tag the destination has is whole.
        self.dst().assert_complete(DEST).await;
        report
    }

    /// The destination's tags and their digests, read directly (not through the proxy).
    async fn dest_tags(&self) -> BTreeMap<String, Digest> {
        self.dst().tag_digests(DEST).await
    }

    /// Push `tags` to the source (fresh images) and return their digests.
    async fn seed_source(&self, tags: &[&str], seed: u64) -> BTreeMap<String, Digest> {
        let mut digests = BTreeMap::new();
        for (i, tag) in tags.iter().enumerate() {
            let img = image(seed + i as u64, tag.as_bytes());
            digests.insert(tag.to_string(), self.src().push_image(SRC, tag, &img).await);
        }
        digests
    }

    /// Push `tags` to the destination (other images than the source's) and return the record.
    async fn seed_dest(&self, tags: &[&str], seed: u64) -> BTreeMap<String, Digest> {
        for (i, tag) in tags.iter().enumerate() {
            let img = image(seed + i as u64, b"old");
            self.dst().push_image(DEST, tag, &img).await;
        }
        self.dest_tags().await
    }
}

fn image(seed: u64, layer: &[u8]) -> Image {
    Image::new(Flavor::Oci, seed, vec![Blob::new(layer.to_vec())])
}

fn reason<'a>(report: &'a SyncReport, tag: &str) -> &'a str {
    &report
        .tags_failed
        .iter()
        .find(|f| f.tag == tag)
        .unwrap_or_else(|| panic!("{tag} did not fail: {report:?}"))
        .reason
}

// ---------------------------------------------------------------------------------------------
// Source side

#[tokio::test]
async fn blobs_cut_at_any_byte_offset_are_read_again_and_published_whole() {
    let env = Env::start();
    // A layer streamed in an upload session, cut at its first byte, in the middle, at its
    // last byte; and small blobs (read whole before their upload) cut the same ways.
    let big = Blob::random(1, 3 << 20);
    let small = Blob::random(2, 50_000);
    let mut tags = Vec::new();
    for (i, after) in [0usize, 1, 65_536, (3 << 20) - 1].into_iter().enumerate() {
        let layer = Blob::random(10 + i as u64, 3 << 20);
        let tag = format!("big-{i}");
        env.src()
            .push_image(
                SRC,
                &tag,
                &Image::new(Flavor::Oci, 10 + i as u64, vec![layer.clone()]),
            )
            .await;
        env.src_proxy.inject(
            "GET",
            &format!("/blobs/{}", layer.digest),
            Fault::CutBody { after },
            1,
        );
        tags.push(tag);
    }
    let img = Image::new(Flavor::Oci, 3, vec![big.clone(), small.clone()]);
    env.src().push_image(SRC, "both", &img).await;
    env.src_proxy.inject(
        "GET",
        &format!("/blobs/{}", small.digest),
        Fault::CutBody { after: 49_999 },
        1,
    );
    env.src_proxy.inject(
        "GET",
        &format!("/blobs/{}", img.config.digest),
        Fault::CutBody { after: 0 },
        1,
    );
    let report = env
        .sync(
            &env.mirror(),
            &env.config(&["*"], RollbackMode::AllOrNothing),
        )
        .await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(report.tags_synced.len(), 5, "{report:?}");
    assert_eq!(env.dest_tags().await["both"], img.manifest.digest);
}

#[tokio::test]
async fn wrong_short_or_long_blob_bodies_fail_their_tag_and_are_never_published() {
    let env = Env::start();
    let big = Blob::random(20, 2 << 20);
    let good = env.seed_source(&["good"], 21).await;
    let mut wrong_bodies = BTreeMap::new();
    for (tag, seed) in [
        ("wrong", 22u64),
        ("short", 23),
        ("long", 24),
        ("wrong-big", 25),
    ] {
        let layer = if tag == "wrong-big" {
            big.clone()
        } else {
            Blob::new(format!("the true layer of {tag}").into_bytes())
        };
        let img = Image::new(Flavor::Oci, seed, vec![layer.clone()]);
        env.src().push_image(SRC, tag, &img).await;
        let mut body = layer.bytes.to_vec();
        match tag {
            "short" => {
                body.pop();
            }
            "long" => body.extend_from_slice(b" and more"),
            _ => {
                let last = body.len() - 1;
                body[last] ^= 0x55;
            }
        }
        // Served with a Docker-Content-Digest of what is sent, as a registry would.
        env.src_proxy.inject(
            "GET",
            &format!("/blobs/{}", layer.digest),
            Fault::Respond {
                status: 200,
                content_type: "application/octet-stream".into(),
                body: Bytes::from(body),
            },
            usize::MAX,
        );
        wrong_bodies.insert(tag, layer.digest);
    }
    let config = env.config(&["*"], RollbackMode::FailedTagsOnly);
    let report = env.sync(&env.mirror(), &config).await;
    assert_eq!(report.outcome, Outcome::Failed, "{report:?}");
    assert_eq!(report.tags_synced, ["good"]);
    let mut failed = report.failed_tags();
    failed.sort();
    assert_eq!(
        failed,
        ["long", "short", "wrong", "wrong-big"],
        "{report:?}"
    );
    for (tag, digest) in &wrong_bodies {
        let why = reason(&report, tag);
        assert!(why.contains("DigestMismatch"), "{tag}: {why}");
        // Corrupt content is not temporary: read once, not again.
        assert_eq!(
            env.src_proxy.count("GET", &format!("/blobs/{digest}")),
            1,
            "{tag}"
        );
        assert!(!env.dst().has_blob(DEST, digest).await, "{tag}");
    }
    assert_eq!(env.dest_tags().await, good);
}

#[tokio::test]
async fn retry_after_answers_from_the_source_are_waited_out() {
    let env = Env::start();
    let digests = env.seed_source(&["v1", "v2"], 30).await;
    env.seed_dest(&["v2"], 35).await;
    let after = |s: &str| Fault::RetryAfter {
        status: 429,
        after: s.into(),
    };
    env.src_proxy.inject("GET", "/tags/list", after("1"), 1);
    env.src_proxy.inject("HEAD", "/manifests/v2", after("0"), 2);
    env.src_proxy.inject("GET", "/manifests/v1", after("0"), 1);
    env.src_proxy.inject("GET", "/blobs/", after("0"), 2);
    env.src_proxy.inject(
        "GET",
        "/blobs/",
        Fault::RetryAfter {
            status: 503,
            after: "0".into(),
        },
        1,
    );
    let started = Instant::now();
    let report = env
        .sync(
            &env.mirror(),
            &env.config(&["*"], RollbackMode::AllOrNothing),
        )
        .await;
    assert!(report.is_success(), "{report:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was honoured"
    );
    assert_eq!(env.dest_tags().await, digests);
    assert_eq!(env.src_proxy.count("GET", "/tags/list"), 2);
}

#[tokio::test]
async fn a_source_asking_for_a_long_pause_fails_the_tag_at_once_as_rate_limited() {
    let env = Env::start();
    let digests = env.seed_source(&["fine"], 40).await;
    let limited = image(41, b"limited");
    env.src().push_image(SRC, "limited", &limited).await;
    env.src_proxy.inject(
        "GET",
        &format!("/blobs/{}", limited.layers[0].digest),
        Fault::RetryAfter {
            status: 429,
            after: "3600".into(),
        },
        usize::MAX,
    );
    let started = Instant::now();
    let report = env
        .sync(
            &env.mirror(),
            &env.config(&["*"], RollbackMode::FailedTagsOnly),
        )
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the hour was not waited out"
    );
    assert_eq!(report.failed_tags(), ["limited"], "{report:?}");
    assert!(
        reason(&report, "limited").contains("RateLimited"),
        "{report:?}"
    );
    assert!(report.partial);
    let tags = env.dest_tags().await;
    assert_eq!(tags.keys().collect::<Vec<_>>(), ["fine"]);
    assert_eq!(tags["fine"], digests["fine"]);
}

#[tokio::test]
async fn a_tag_list_that_keeps_failing_fails_the_run_and_changes_nothing() {
    let env = Env::start();
    env.seed_source(&["v1"], 45).await;
    let before = env.seed_dest(&["v1", "unselected"], 46).await;
    for rollback in [RollbackMode::AllOrNothing, RollbackMode::FailedTagsOnly] {
        env.src_proxy.inject(
            "GET",
            "/tags/list",
            Fault::RetryAfter {
                status: 503,
                after: "0".into(),
            },
            5,
        );
        let report = env
            .sync(&env.mirror(), &env.config(&["v1"], rollback))
            .await;
        assert_eq!(report.outcome, Outcome::Failed, "{report:?}");
        let error = report.error.as_deref().unwrap();
        assert!(error.contains("listing the tags"), "{error}");
        assert!(report.tags_deleted.is_empty() && report.tags_synced.is_empty());
        assert!(!report.rolled_back);
        assert_eq!(env.dest_tags().await, before);
        assert_eq!(env.store.tag_record(DEST).await.unwrap(), None);
        assert_eq!(env.dest_proxy.count("PUT", "/manifests/"), 0);
        assert_eq!(env.dest_proxy.count("DELETE", "/"), 0);
    }
}

#[tokio::test]
async fn a_stalled_blob_times_out_its_tag_and_the_run_goes_on() {
    let env = Env::start();
    let stalled = Image::simple(50, 1, 200_000);
    env.src().push_image(SRC, "stalled", &stalled).await;
    let fine = env.seed_source(&["fine"], 51).await;
    let layer = &stalled.layers[0].digest;
    env.src_proxy.inject(
        "GET",
        &format!("/blobs/{layer}"),
        Fault::StallBody {
            after: 1000,
            pause: Duration::from_secs(60),
        },
        usize::MAX,
    );
    let started = Instant::now();
    let mirror = env.mirror_with(Duration::from_secs(1), None);
    let report = env
        .sync(&mirror, &env.config(&["*"], RollbackMode::FailedTagsOnly))
        .await;
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(report.failed_tags(), ["stalled"], "{report:?}");
    let why = reason(&report, "stalled");
    assert!(
        why.contains("Timeout") && why.contains(layer.as_str()),
        "{why}"
    );
    assert_eq!(report.tags_synced, ["fine"]);
    assert_eq!(env.dest_tags().await, fine);
    assert!(!env.dst().has_blob(DEST, layer).await);
}

#[tokio::test]
async fn an_index_whose_child_is_missing_at_the_source_publishes_nothing_of_it() {
    let env = Env::start();
    let index = Index::two_platforms(Flavor::Oci, 60, 10_000);
    env.src().push_index(SRC, "multi", &index).await;
    let fine = env.seed_source(&["fine"], 61).await;
    let child = index.children[1].manifest.digest.clone();
    env.src_proxy.inject(
        "GET",
        &format!("/manifests/{child}"),
        Fault::Status(404),
        usize::MAX,
    );
    for rollback in [RollbackMode::FailedTagsOnly, RollbackMode::AllOrNothing] {
        let report = env.sync(&env.mirror(), &env.config(&["*"], rollback)).await;
        assert_eq!(report.failed_tags(), ["multi"], "{report:?}");
        let why = reason(&report, "multi");
        assert!(
            why.contains("NotFound") && why.contains(child.as_str()),
            "{why}"
        );
        assert!(
            env.dst()
                .manifest(DEST, index.manifest.digest.as_str())
                .await
                .is_none(),
            "the index is not stored without its child"
        );
        assert!(env.dst().manifest(DEST, child.as_str()).await.is_none());
        let tags = env.dest_tags().await;
        assert!(!tags.contains_key("multi"));
        if rollback == RollbackMode::FailedTagsOnly {
            assert_eq!(tags, fine);
        }
    }
}

#[tokio::test]
async fn blob_downloads_follow_redirects_to_storage_and_a_redirect_loop_fails_its_tag() {
    let env = Env::start();
    // "Object storage": another host serving the source registry's blobs.
    let storage = Proxy::to(&env.source.base_url(), None);
    let stored = Image::simple(70, 1, 2 << 20);
    let looping = Image::simple(71, 1, 1000);
    env.src().push_image(SRC, "stored", &stored).await;
    env.src().push_image(SRC, "looping", &looping).await;
    for blob in stored.blobs() {
        let path = format!("/v2/{SRC}/blobs/{}", blob.digest);
        env.src_proxy.inject(
            "GET",
            &path,
            Fault::Redirect(format!("{}{path}", storage.base_url())),
            usize::MAX,
        );
    }
    // Storage cuts the big layer once: the copy starts again through the redirect.
    storage.inject(
        "GET",
        &format!("/blobs/{}", stored.layers[0].digest),
        Fault::CutBody { after: 100_000 },
        1,
    );
    let loop_path = format!("/v2/{SRC}/blobs/{}", looping.layers[0].digest);
    env.src_proxy.inject(
        "GET",
        &loop_path,
        Fault::Redirect(format!("{}{loop_path}", env.src_proxy.base_url())),
        usize::MAX,
    );
    let report = env
        .sync(
            &env.mirror(),
            &env.config(&["*"], RollbackMode::FailedTagsOnly),
        )
        .await;
    assert_eq!(report.failed_tags(), ["looping"], "{report:?}");
    assert!(
        reason(&report, "looping").contains("redirects"),
        "{report:?}"
    );
    assert_eq!(report.tags_synced, ["stored"]);
    assert_eq!(env.dest_tags().await["stored"], stored.manifest.digest);
    assert_eq!(
        storage.count("GET", &stored.layers[0].digest.to_string()),
        2
    );
    // The loop is followed a bounded number of times, and not started again.
    assert!(env.src_proxy.count("GET", &loop_path) <= 12);
}

#[tokio::test]
async fn a_source_docker_content_digest_that_lies_is_not_believed() {
    let env = Env::start();
    let digests = env.seed_source(&["new", "moved"], 80).await;
    let lie = Digest::of(b"not the manifest");
    let header = Fault::Header {
        name: "docker-content-digest".into(),
        value: lie.to_string(),
    };
    // A new tag is fetched by tag: its digest is what its bytes hash to.
    env.src_proxy
        .inject("GET", "/manifests/new", header.clone(), usize::MAX);
    // Blobs are verified by their bytes, whatever the header says.
    env.src_proxy
        .inject("GET", "/blobs/", header.clone(), usize::MAX);
    let report = env
        .sync(
            &env.mirror(),
            &env.config(&["new"], RollbackMode::FailedTagsOnly),
        )
        .await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(env.dest_tags().await["new"], digests["new"]);

    // A HEAD that names a digest the source cannot serve fails the tag, which stays as it was.
    env.seed_dest(&["moved"], 85).await;
    let before = env.dest_tags().await;
    env.src_proxy
        .inject("HEAD", "/manifests/moved", header, usize::MAX);
    let report = env
        .sync(
            &env.mirror(),
            &env.config(&["new", "moved"], RollbackMode::FailedTagsOnly),
        )
        .await;
    assert_eq!(report.failed_tags(), ["moved"], "{report:?}");
    assert!(
        reason(&report, "moved").contains(lie.as_str()),
        "{report:?}"
    );
    assert_eq!(env.dest_tags().await, before);
}

// ---------------------------------------------------------------------------------------------
// Destination side

#[tokio::test]
async fn transient_destination_failures_on_every_request_kind_are_ridden_out() {
    let env = Env::start();
    let big = Image::simple(90, 1, 3 << 20);
    env.src().push_image(SRC, "big", &big).await;
    let mut digests = env.seed_source(&["small"], 91).await;
    digests.insert("big".into(), big.manifest.digest.clone());
    env.seed_dest(&["gone"], 92).await;
    let p = &env.dest_proxy;
    p.inject("GET", "/tags/list", Fault::Status(502), 1);
    p.inject("HEAD", "/manifests/", Fault::Status(503), 1);
    p.inject("HEAD", "/blobs/", Fault::Status(500), 2);
    p.inject("POST", "/blobs/uploads/", Fault::Status(503), 2);
    p.inject(
        "POST",
        "/blobs/uploads/",
        Fault::RetryAfter {
            status: 429,
            after: "0".into(),
        },
        1,
    );
    p.inject("PUT", "/blobs/uploads/", Fault::Status(502), 2);
    p.inject("PUT", "/manifests/", Fault::Status(500), 2);
    p.inject(
        "PUT",
        "/manifests/",
        Fault::RetryAfter {
            status: 429,
            after: "1".into(),
        },
        1,
    );
    p.inject("DELETE", "/manifests/", Fault::Status(503), 1);
    for rollback in [RollbackMode::AllOrNothing, RollbackMode::FailedTagsOnly] {
        let report = env
            .sync(&env.mirror(), &env.config(&["big", "small"], rollback))
            .await;
        assert!(report.is_success(), "{rollback:?}: {report:?}");
        assert_eq!(env.dest_tags().await, digests);
    }
}

#[tokio::test]
async fn uploads_cut_mid_request_are_sent_again_streamed_or_chunked() {
    let env = Env::start();
    let streamed = Image::simple(100, 1, 3 << 20);
    let chunked = Image::simple(101, 1, 3 << 20);
    env.src().push_image(SRC, "streamed", &streamed).await;
    env.src().push_image(SRC, "chunked", &chunked).await;
    let mirror = env.mirror();
    for after in [0, 1 << 20] {
        env.dest_proxy
            .inject("PUT", "/blobs/uploads/", Fault::CutRequest { after }, 1);
    }
    let report = env
        .sync(
            &mirror,
            &env.config(&["streamed"], RollbackMode::AllOrNothing),
        )
        .await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(
        env.dest_proxy.count("PUT", "/blobs/uploads/"),
        4,
        "config and layer, 2 cuts"
    );

    let chunks = env.mirror_with(Duration::from_secs(30), Some(1 << 20));
    env.dest_proxy.inject(
        "PATCH",
        "/blobs/uploads/",
        Fault::CutRequest { after: 1000 },
        1,
    );
    env.dest_proxy
        .inject("PATCH", "/blobs/uploads/", Fault::Status(500), 1);
    // Not processed: the same chunk is sent again.
    env.dest_proxy
        .inject("PATCH", "/blobs/uploads/", Fault::Status(503), 1);
    env.dest_proxy.inject(
        "PATCH",
        "/blobs/uploads/",
        Fault::RetryAfter {
            status: 429,
            after: "0".into(),
        },
        1,
    );
    let report = env
        .sync(
            &chunks,
            &env.config(&["streamed", "chunked"], RollbackMode::AllOrNothing),
        )
        .await;
    assert!(report.is_success(), "{report:?}");
    let tags = env.dest_tags().await;
    assert_eq!(tags["chunked"], chunked.manifest.digest);
    assert_eq!(tags["streamed"], streamed.manifest.digest);
}

#[tokio::test]
async fn an_upload_cut_every_time_fails_only_its_tag() {
    let env = Env::start();
    let cut = Image::simple(110, 1, 3 << 20);
    env.src().push_image(SRC, "cut", &cut).await;
    let fine = env.seed_source(&["fine"], 111).await;
    let layer = cut.layers[0].digest.as_str().replace(':', "%3A");
    env.dest_proxy.inject(
        "PUT",
        &format!("digest={layer}"),
        Fault::CutRequest { after: 1 << 20 },
        usize::MAX,
    );
    let report = env
        .sync(
            &env.mirror(),
            &env.config(&["*"], RollbackMode::FailedTagsOnly),
        )
        .await;
    assert_eq!(report.failed_tags(), ["cut"], "{report:?}");
    let why = reason(&report, "cut");
    assert!(
        why.contains("Network") && why.contains(cut.layers[0].digest.as_str()),
        "{why}"
    );
    assert_eq!(env.dest_tags().await, fine);
    // A first attempt and the engine's two new reads.
    assert_eq!(env.dest_proxy.count("PUT", &format!("digest={layer}")), 3);
}

/// Destination {a: old, gone: old}; source {a, b, c} (all new); tag b's manifest PUT fails
/// with `fault` `times` times. Returns the destination before, the source, and the report.
async fn publish_fails_for_b(
    env: &Env,
    rollback: RollbackMode,
    fault: Fault,
    times: usize,
) -> (
    BTreeMap<String, Digest>,
    BTreeMap<String, Digest>,
    SyncReport,
) {
    let new = env.seed_source(&["a", "b", "c"], 120).await;
    let before = env.seed_dest(&["a", "gone"], 125).await;
    env.dest_proxy.inject("PUT", "/manifests/b", fault, times);
    let report = env
        .sync(&env.mirror(), &env.config(&["a", "b", "c"], rollback))
        .await;
    assert_eq!(report.outcome, Outcome::Failed, "{report:?}");
    assert_eq!(report.failed_tags(), ["b"], "{report:?}");
    assert!(reason(&report, "b").contains("publishing"), "{report:?}");
    (before, new, report)
}

#[tokio::test]
async fn a_tag_that_cannot_be_published_rolls_everything_back_with_all_or_nothing() {
    let env = Env::start();
    let (before, _, report) =
        publish_fails_for_b(&env, RollbackMode::AllOrNothing, Fault::Status(500), 5).await;
    assert!(report.rolled_back, "{report:?}");
    assert!(report.tags_synced.is_empty() && report.tags_deleted.is_empty());
    assert!(
        report.error.as_deref().unwrap().contains("rolled back"),
        "{report:?}"
    );
    assert_eq!(env.dest_tags().await, before);
    assert_eq!(env.store.tag_record(DEST).await.unwrap(), None);
}

#[tokio::test]
async fn a_tag_that_cannot_be_published_fails_alone_with_failed_tags_only() {
    let env = Env::start();
    let (before, new, report) =
        publish_fails_for_b(&env, RollbackMode::FailedTagsOnly, Fault::Status(500), 5).await;
    assert!(report.partial && !report.rolled_back, "{report:?}");
    assert_eq!(report.tags_synced, ["a", "c"]);
    assert_eq!(report.tags_deleted, ["gone"]);
    let after = env.dest_tags().await;
    assert_eq!(after.keys().collect::<Vec<_>>(), ["a", "c"]);
    assert_eq!(after["a"], new["a"]);
    assert_ne!(after["a"], before["a"]);
}

#[tokio::test]
async fn a_publish_whose_answer_is_lost_is_rolled_back_too_with_all_or_nothing() {
    let env = Env::start();
    // The registry moves the tag each time, but the client never hears it did.
    let (before, _, report) = publish_fails_for_b(
        &env,
        RollbackMode::AllOrNothing,
        Fault::ForwardThenStatus(500),
        5,
    )
    .await;
    assert!(report.rolled_back, "{report:?}");
    assert_eq!(env.dest_tags().await, before);
}

#[tokio::test]
async fn a_publish_whose_answer_is_lost_leaves_the_failed_tag_as_it_was_with_failed_tags_only() {
    let env = Env::start();
    let (_, new, report) = publish_fails_for_b(
        &env,
        RollbackMode::FailedTagsOnly,
        Fault::ForwardThenStatus(500),
        5,
    )
    .await;
    assert_eq!(report.tags_synced, ["a", "c"], "{report:?}");
    let after = env.dest_tags().await;
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        ["a", "c"],
        "b keeps its previous value (none)"
    );
    assert_eq!(after["c"], new["c"]);
}

#[tokio::test]
async fn a_destination_that_misreports_the_stored_digest_fails_the_tag_and_rolls_back() {
    let env = Env::start();
    let lie = Fault::Header {
        name: "docker-content-digest".into(),
        value: Digest::of(b"something else").to_string(),
    };
    let (before, _, report) = publish_fails_for_b(&env, RollbackMode::AllOrNothing, lie, 1).await;
    assert!(
        reason(&report, "b").contains("DigestMismatch"),
        "{report:?}"
    );
    assert!(report.rolled_back, "{report:?}");
    assert_eq!(env.dest_tags().await, before);
}

#[tokio::test]
async fn a_prune_that_fails_with_all_or_nothing_stops_the_run_before_anything_is_published() {
    // all_or_nothing prunes first: "a" (changed at the source) is never moved, so there is
    // nothing to roll back, which matters when the destination refuses the deletes a rollback
    // of created tags would need.
    let env = Env::start();
    env.seed_source(&["a"], 130).await;
    let before = env.seed_dest(&["a", "gone"], 135).await;
    // distribution cannot delete by tag: every deletion ends with a DELETE by digest.
    env.dest_proxy.inject(
        "DELETE",
        "/manifests/sha256:",
        Fault::Status(500),
        usize::MAX,
    );
    let report = env
        .sync(
            &env.mirror(),
            &env.config(&["a"], RollbackMode::AllOrNothing),
        )
        .await;
    assert_eq!(report.failed_tags(), ["gone"], "{report:?}");
    assert!(!report.rolled_back, "{report:?}");
    assert!(report.tags_synced.is_empty() && report.tags_deleted.is_empty());
    let error = report.error.as_deref().unwrap();
    assert!(
        error.ends_with("nothing was published (all_or_nothing)"),
        "{error}"
    );
    assert_eq!(env.dest_tags().await, before);
}

#[tokio::test]
async fn a_rollback_the_destination_refuses_is_reported_as_inconsistent_and_finished_next_run() {
    let env = Env::start();
    let new = env.seed_source(&["a", "b"], 140).await;
    let before = env.seed_dest(&["old"], 145).await;
    let mirror = env.mirror();
    let config = env.config(&["a", "b", "old"], RollbackMode::AllOrNothing);
    env.src()
        .push_image(SRC, "old", &image(146, b"new old"))
        .await;
    // b cannot be published; then the destination refuses to delete a (created by this run).
    env.dest_proxy
        .inject("PUT", "/manifests/b", Fault::Status(500), 5);
    env.dest_proxy
        .inject("DELETE", "/manifests/", Fault::Status(403), 5);
    mirror
        .create_mirror(config.clone().validated().unwrap())
        .await
        .unwrap();
    let report = mirror.sync(DEST).await.unwrap();
    env.dest_proxy.clear_faults();
    assert_eq!(report.outcome, Outcome::Failed, "{report:?}");
    assert!(!report.rolled_back, "{report:?}");
    let error = report.error.as_deref().unwrap();
    assert!(error.contains("inconsistent"), "{error}");
    // The rollback's error keeps its cause's kind.
    assert!(error.contains("Forbidden: rollback incomplete"), "{error}");
    assert!(!error.contains("nothing was published"), "{error}");
    assert!(error.contains("a: "), "names the tag left changed: {error}");
    assert!(report.tags_synced.contains(&"a".to_owned()), "{report:?}");
    env.dst().assert_complete(DEST).await;
    assert_eq!(
        env.store.tag_record(DEST).await.unwrap().as_ref(),
        Some(&before)
    );

    // The next run restores from the record, then syncs.
    let report = mirror.sync(DEST).await.unwrap();
    assert!(report.is_success(), "{report:?}");
    let after = env.dest_tags().await;
    assert_eq!(after["a"], new["a"]);
    assert_eq!(after["b"], new["b"]);
    env.dst().assert_complete(DEST).await;
}

#[tokio::test]
async fn tag_lists_cut_mid_body_are_read_again_on_both_sides() {
    let env = Env::start();
    let digests = env.seed_source(&["v1", "v2"], 150).await;
    env.seed_dest(&["v1"], 155).await;
    env.src_proxy
        .inject("GET", "/tags/list", Fault::CutBody { after: 10 }, 1);
    env.dest_proxy
        .inject("GET", "/tags/list", Fault::CutBody { after: 5 }, 1);
    let report = env
        .sync(
            &env.mirror(),
            &env.config(&["*"], RollbackMode::AllOrNothing),
        )
        .await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(env.dest_tags().await, digests);
    assert_eq!(env.src_proxy.count("GET", "/tags/list"), 2);
}

#[tokio::test]
async fn a_prune_whose_delete_answers_are_lost_still_prunes() {
    let env = Env::start();
    let digests = env.seed_source(&["a"], 160).await;
    for rollback in [RollbackMode::AllOrNothing, RollbackMode::FailedTagsOnly] {
        env.seed_dest(&["gone"], 165).await;
        // distribution deletes by digest (a probe, then the placeholder the tag was moved to):
        // each deletion happens, but its answer is lost and the request repeated.
        env.dest_proxy.inject(
            "DELETE",
            "/manifests/sha256:",
            Fault::ForwardThenStatus(500),
            2,
        );
        let report = env.sync(&env.mirror(), &env.config(&["a"], rollback)).await;
        assert!(report.is_success(), "{rollback:?}: {report:?}");
        assert_eq!(report.tags_deleted, ["gone"]);
        assert_eq!(env.dest_tags().await, digests);
    }
}

#[tokio::test]
async fn a_run_timing_out_while_publishing_is_rolled_back_with_all_or_nothing() {
    let env = Env::start();
    env.seed_source(&["a", "b", "c"], 170).await;
    let before = env.seed_dest(&["a", "gone"], 175).await;
    env.dest_proxy
        .inject("PUT", "/manifests/b", Fault::Hang, usize::MAX);
    let mut config = env.config(&["a", "b", "c"], RollbackMode::AllOrNothing);
    config.timeout = Duration::from_secs(4);
    let report = env.sync(&env.mirror(), &config).await;
    assert_eq!(report.outcome, Outcome::Failed, "{report:?}");
    assert_eq!(env.dest_proxy.count("PUT", "/manifests/b"), 1, "{report:?}");
    assert!(
        report.error.as_deref().unwrap().contains("timeout"),
        "{report:?}"
    );
    assert!(report.rolled_back, "{report:?}");
    assert!(report.tags_synced.is_empty() && report.tags_deleted.is_empty());
    assert_eq!(env.dest_tags().await, before);
}

#[tokio::test]
async fn a_child_manifest_served_with_other_bytes_fails_its_index() {
    let env = Env::start();
    let index = Index::two_platforms(Flavor::Docker, 180, 5000);
    env.src().push_index(SRC, "multi", &index).await;
    let child = &index.children[0].manifest;
    let mut other = child.bytes.to_vec();
    other.extend_from_slice(b"\n");
    env.src_proxy.inject(
        "GET",
        &format!("/manifests/{}", child.digest),
        Fault::Respond {
            status: 200,
            content_type: child.media_type.clone(),
            body: Bytes::from(other),
        },
        usize::MAX,
    );
    let report = env
        .sync(
            &env.mirror(),
            &env.config(&["*"], RollbackMode::FailedTagsOnly),
        )
        .await;
    assert_eq!(report.failed_tags(), ["multi"], "{report:?}");
    assert!(
        reason(&report, "multi").contains("DigestMismatch"),
        "{report:?}"
    );
    assert!(env.dest_tags().await.is_empty());
    assert!(
        env.dst()
            .manifest(DEST, child.digest.as_str())
            .await
            .is_none()
    );
}

#[tokio::test]
async fn a_publish_whose_answer_is_lost_puts_an_existing_tag_back_with_failed_tags_only() {
    let env = Env::start();
    let new = env.seed_source(&["a", "b"], 190).await;
    let before = env.seed_dest(&["b"], 195).await;
    env.dest_proxy
        .inject("PUT", "/manifests/b", Fault::ForwardThenStatus(502), 5);
    let report = env
        .sync(
            &env.mirror(),
            &env.config(&["*"], RollbackMode::FailedTagsOnly),
        )
        .await;
    assert_eq!(report.failed_tags(), ["b"], "{report:?}");
    assert_eq!(report.tags_synced, ["a"]);
    let after = env.dest_tags().await;
    assert_eq!(after["a"], new["a"]);
    assert_eq!(after["b"], before["b"], "b keeps its previous value");
}

#[tokio::test]
async fn a_sparse_index_push_failing_for_a_temporary_reason_is_not_taken_for_a_refusal() {
    let env = Env::start();
    let index = Index::two_platforms(Flavor::Oci, 200, 2000);
    env.src().push_index(SRC, "multi", &index).await;
    // The destination is unavailable for every attempt at the sparse index.
    env.dest_proxy.inject(
        "PUT",
        &format!("/manifests/{}", index.manifest.digest),
        Fault::Status(503),
        usize::MAX,
    );
    for mode in [PlatformIndexMode::Sparse, PlatformIndexMode::Rewrite] {
        let mut config = env.config(&["multi"], RollbackMode::FailedTagsOnly);
        config.architectures = vec!["arm64".into()];
        config.platform_index = mode;
        let report = env.sync(&env.mirror(), &config).await;
        assert_eq!(report.failed_tags(), ["multi"], "{mode:?}: {report:?}");
        let why = reason(&report, "multi");
        assert!(why.contains("503"), "{mode:?}: {why}");
        assert!(!why.contains("refused the sparse index"), "{mode:?}: {why}");
        assert!(report.tags_rewritten.is_empty(), "{mode:?}: {report:?}");
        assert!(env.dest_tags().await.is_empty());
    }
}

#[tokio::test]
async fn restoring_after_a_dead_worker_against_a_failing_destination_fails_and_keeps_the_record() {
    let env = Env::start();
    env.seed_source(&["a", "b"], 210).await;
    let record = env.seed_dest(&["a"], 215).await;
    let mirror = env.mirror();
    mirror
        .create_mirror(
            env.config(&["a", "b"], RollbackMode::AllOrNothing)
                .validated()
                .unwrap(),
        )
        .await
        .unwrap();
    // A dead worker's all_or_nothing run: the record saved, then a moved and b created.
    // Through the store: a dead worker's pre-run record, which no front door writes.
    env.store.save_tag_record(DEST, &record).await.unwrap();
    env.dst().push_image(DEST, "a", &image(210, b"a")).await;
    env.dst().push_image(DEST, "b", &image(211, b"b")).await;
    // Putting a back works; removing b does not.
    env.dest_proxy
        .inject("DELETE", "/manifests/", Fault::Status(503), usize::MAX);
    let report = mirror.sync(DEST).await.unwrap();
    assert_eq!(report.outcome, Outcome::Failed, "{report:?}");
    let error = report.error.as_deref().unwrap();
    assert!(error.contains("restoring the destination"), "{error}");
    assert!(report.tags_synced.is_empty() && report.tags_deleted.is_empty());
    assert_eq!(
        env.store.tag_record(DEST).await.unwrap().as_ref(),
        Some(&record)
    );
    env.dst().assert_complete(DEST).await;
    assert_eq!(env.dest_tags().await["a"], record["a"]);
    // The run stopped before its own work: the source was not even listed.
    assert_eq!(env.src_proxy.count("GET", "/tags/list"), 0);
}

#[tokio::test]
async fn manifest_requests_follow_redirects() {
    let env = Env::start();
    let digests = env.seed_source(&["new", "moved"], 220).await;
    env.seed_dest(&["moved"], 225).await;
    // A registry behind a front that redirects (to a canonical path, another port or host).
    for (method, tag) in [("GET", "new"), ("HEAD", "moved")] {
        let path = format!("/v2/{SRC}/manifests/{tag}");
        env.src_proxy.inject(
            method,
            &path,
            Fault::Redirect(format!("{}{path}?redirected=1", env.src_proxy.base_url())),
            1,
        );
    }
    let report = env
        .sync(
            &env.mirror(),
            &env.config(&["*"], RollbackMode::FailedTagsOnly),
        )
        .await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(env.dest_tags().await, digests);
    assert_eq!(env.src_proxy.count("*", "?redirected=1"), 2);
}

#[tokio::test]
async fn a_failed_tag_that_cannot_be_put_back_says_where_it_may_point() {
    let env = Env::start();
    let new = env.seed_source(&["b"], 230).await;
    env.seed_dest(&["b"], 235).await;
    // Every write of tag b is done but answered with an error, the putting back included.
    env.dest_proxy.inject(
        "PUT",
        "/manifests/b",
        Fault::ForwardThenStatus(500),
        usize::MAX,
    );
    let report = env
        .sync(
            &env.mirror(),
            &env.config(&["b"], RollbackMode::FailedTagsOnly),
        )
        .await;
    assert_eq!(report.failed_tags(), ["b"], "{report:?}");
    let why = reason(&report, "b");
    assert!(
        why.contains(&format!("may now point it at {}", new["b"])),
        "{why}"
    );
    assert!(why.contains("putting it back failed"), "{why}");
}

#[tokio::test]
async fn an_upload_stored_but_answered_with_an_error_is_not_read_again() {
    let env = Env::start();
    let img = Image::simple(240, 1, 3 << 20);
    env.src().push_image(SRC, "v1", &img).await;
    let layer = &img.layers[0].digest;
    let final_put = format!("digest={}", layer.as_str().replace(':', "%3A"));
    // The registry stores the whole blob, and the answer saying so is lost.
    env.dest_proxy
        .inject("PUT", &final_put, Fault::ForwardThenStatus(502), 1);
    let report = env
        .sync(
            &env.mirror(),
            &env.config(&["v1"], RollbackMode::FailedTagsOnly),
        )
        .await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(env.dest_tags().await["v1"], img.manifest.digest);
    assert_eq!(
        env.src_proxy.count("GET", &format!("/blobs/{layer}")),
        1,
        "the destination holds it: no second download"
    );
    assert_eq!(env.dest_proxy.count("PUT", &final_put), 1);
}

#[tokio::test]
async fn an_upload_session_the_destination_lost_is_started_again() {
    let env = Env::start();
    let img = Image::simple(250, 1, 3 << 20);
    env.src().push_image(SRC, "v1", &img).await;
    // A registry replica that does not know the session (BLOB_UPLOAD_UNKNOWN), or one that
    // purged it: for the small config (one PUT), the streamed layer, and a PATCH chunk.
    let unknown = Fault::Respond {
        status: 404,
        content_type: "application/json".into(),
        body: Bytes::from_static(
            br#"{"errors":[{"code":"BLOB_UPLOAD_UNKNOWN","message":"blob upload unknown to registry"}]}"#,
        ),
    };
    env.dest_proxy
        .inject("PUT", "/blobs/uploads/", unknown.clone(), 2);
    let report = env
        .sync(
            &env.mirror(),
            &env.config(&["v1"], RollbackMode::FailedTagsOnly),
        )
        .await;
    assert!(report.is_success(), "{report:?}");

    let chunked = Image::simple(251, 1, 3 << 20);
    env.src().push_image(SRC, "v2", &chunked).await;
    env.dest_proxy
        .inject("PATCH", "/blobs/uploads/", unknown, 1);
    let chunks = env.mirror_with(Duration::from_secs(30), Some(1 << 20));
    let report = env
        .sync(
            &chunks,
            &env.config(&["v1", "v2"], RollbackMode::FailedTagsOnly),
        )
        .await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(env.dest_tags().await["v2"], chunked.manifest.digest);
}

#[tokio::test]
async fn a_run_timing_out_while_publishing_ends_on_time_with_failed_tags_only() {
    let env = Env::start();
    let new = env.seed_source(&["a", "b"], 260).await;
    // Once b is planned, the destination stops answering anything about it.
    env.dest_proxy
        .inject("*", "/manifests/b", Fault::Hang, usize::MAX);
    let mut config = env.config(&["a", "b"], RollbackMode::FailedTagsOnly);
    config.timeout = Duration::from_secs(3);
    let started = Instant::now();
    let report = env.sync(&env.mirror(), &config).await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the timeout bounds the run: {:?}",
        started.elapsed()
    );
    assert_eq!(report.outcome, Outcome::Failed, "{report:?}");
    assert!(
        report.error.as_deref().unwrap().contains("timeout"),
        "{report:?}"
    );
    assert_eq!(env.dest_tags().await["a"], new["a"]);
}

// ---------------------------------------------------------------------------------------------
// Faults nobody listed: random ones on both sides, checked against the rules.

/// Inject `count` random faults, each on the next 1–6 matching requests of a random kind on
/// either side (6 outlasts the client's retries).
fn random_faults(env: &Env, rng: &mut StdRng, count: usize) -> Vec<String> {
    const SOURCE: &[(&str, &str)] = &[
        ("GET", "/tags/list"),
        ("HEAD", "/manifests/"),
        ("GET", "/manifests/"),
        ("GET", "/blobs/"),
    ];
    const DEST: &[(&str, &str)] = &[
        ("GET", "/tags/list"),
        ("HEAD", "/manifests/"),
        ("GET", "/manifests/"),
        ("PUT", "/manifests/"),
        ("DELETE", "/manifests/"),
        ("HEAD", "/blobs/"),
        ("POST", "/blobs/uploads/"),
        ("PUT", "/blobs/uploads/"),
    ];
    let mut injected = Vec::new();
    for _ in 0..count {
        let on_source = rng.random_bool(0.5);
        let (proxy, kinds) = if on_source {
            (&env.src_proxy, SOURCE)
        } else {
            (&env.dest_proxy, DEST)
        };
        let (method, path) = kinds[rng.random_range(0..kinds.len())];
        let fault = match rng.random_range(0..6) {
            0 => Fault::Status(500),
            1 => Fault::Status(503),
            2 => Fault::ForwardThenStatus(502),
            3 => Fault::CutBody {
                after: rng.random_range(0..3000),
            },
            4 => Fault::CutRequest {
                after: rng.random_range(0..200_000),
            },
            _ => Fault::RetryAfter {
                status: 429,
                after: "0".into(),
            },
        };
        let times = rng.random_range(1..=6);
        let side = if on_source { "source" } else { "destination" };
        injected.push(format!("{side} {method} {path} {fault:?} x{times}"));
        proxy.inject(method, path, fault, times);
    }
    injected
}

/// One run under random faults, then the rules of SEMANTICS.md §3–§5 checked on what it left,
/// then a run without faults that must complete the mirror.
async fn random_round(seed: u64, rollback: RollbackMode) {
    let env = Env::start();
    let mut rng = StdRng::seed_from_u64(seed);
    let big = Image::simple(300 + seed, 1, 2 << 20);
    let index = Index::two_platforms(Flavor::Oci, 310 + seed, 3000);
    let mut source = BTreeMap::new();
    source.insert("t0".to_owned(), env.src().push_image(SRC, "t0", &big).await);
    source.insert(
        "t1".to_owned(),
        env.src().push_index(SRC, "t1", &index).await,
    );
    source.extend(env.seed_source(&["t2", "t3"], 320 + seed * 10).await);
    let before = env.seed_dest(&["t0", "t2", "gone"], 330 + seed * 10).await;
    let injected = random_faults(&env, &mut rng, 4);
    let config = env.config(&["t*"], rollback);
    let report = env.sync(&env.mirror(), &config).await;
    let after = env.dest_tags().await;
    let context = format!("seed {seed} {rollback:?}: faults {injected:#?}\nreport {report:#?}");
    let error = report.error.clone().unwrap_or_default();
    if report.is_success() {
        assert_eq!(after, source, "{context}");
    } else if error.contains("listing") {
        assert_eq!(
            after, before,
            "a run that could not list changes nothing: {context}"
        );
    } else if rollback == RollbackMode::AllOrNothing {
        if !error.contains("rolling back failed") {
            assert_eq!(after, before, "all_or_nothing: {context}");
            assert!(report.tags_synced.is_empty() && report.tags_deleted.is_empty());
        }
    } else {
        for tag in report.tags_synced.iter().chain(&report.tags_current) {
            assert_eq!(after.get(tag), source.get(tag), "{tag} synced: {context}");
        }
        for tag in &report.tags_deleted {
            assert!(!after.contains_key(tag), "{tag} pruned: {context}");
        }
        for failure in &report.tags_failed {
            if source.contains_key(&failure.tag) && !failure.reason.contains("may now point") {
                assert_eq!(
                    after.get(&failure.tag),
                    before.get(&failure.tag),
                    "{} failed keeps its value: {context}",
                    failure.tag
                );
            }
        }
    }
    // Without faults, the next run completes the mirror whatever the first one left.
    env.src_proxy.clear_faults();
    env.dest_proxy.clear_faults();
    let report = env.sync(&env.mirror(), &config).await;
    assert!(
        report.is_success(),
        "second run: {report:#?}\nfirst: {context}"
    );
    assert_eq!(env.dest_tags().await, source, "{context}");
    assert_eq!(env.store.tag_record(DEST).await.unwrap(), None, "{context}");
}

#[tokio::test]
async fn random_faults_never_break_all_or_nothing() {
    for seed in 0..4 {
        random_round(seed, RollbackMode::AllOrNothing).await;
    }
}

#[tokio::test]
async fn random_faults_never_break_failed_tags_only() {
    for seed in 100..104 {
        random_round(seed, RollbackMode::FailedTagsOnly).await;
    }
}

#[tokio::test]
async fn an_unselected_tag_whose_manifest_cannot_be_saved_is_not_counted_as_selected() {
    let env = Env::start();
    env.seed_source(&["a"], 270).await;
    let before = env.seed_dest(&["a", "gone"], 275).await;
    // all_or_nothing keeps gone's manifest before pruning it; neither side can serve it.
    env.dest_proxy.inject(
        "GET",
        &format!("/manifests/{}", before["gone"]),
        Fault::Status(500),
        usize::MAX,
    );
    let report = env
        .sync(
            &env.mirror(),
            &env.config(&["a"], RollbackMode::AllOrNothing),
        )
        .await;
    assert_eq!(report.failed_tags(), ["gone"], "{report:?}");
    let error = report.error.as_deref().unwrap();
    assert!(
        error.contains("1 unselected tag could not be deleted: gone"),
        "{error}"
    );
    assert!(!error.contains("selected tags failed"), "{error}");
    assert_eq!(env.dest_tags().await, before);
}
