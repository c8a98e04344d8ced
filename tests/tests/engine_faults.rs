//! The engine against what goes wrong with real registries: connections cut mid-blob, error
//! statuses, a source that dies mid-run, a destination that refuses pushes, odd content, and a
//! claim lost while publishing. The source is read through the kit's fault-injecting proxy; the
//! destination is a second registry.

use std::collections::BTreeMap;
use std::sync::Arc;

use regmirror::engine::{HttpConnector, Mirror, MirrorBuilder, Outcome, SyncOptions, SyncReport};
use regmirror::registry::http::{HttpOptions, HttpRegistry};
use regmirror::{DestRegistry, Digest, MemoryStateStore, MirrorConfig};
use regmirror_tests::proxy::Fault;
use regmirror_tests::{Blob, Flavor, Image, Proxy, Registry, Seeder};

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
        Env::with_dest(Registry::start())
    }

    fn with_dest(dest_registry: Registry) -> Env {
        let source = Registry::start();
        let proxy = Proxy::start(&source);
        let dest = HttpRegistry::new(&dest_registry.host(), dest_registry.http_options())
            .expect("the kit's options are valid");
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
    env.source.corrupt_blob(&layer);
    let report = env.sync_once(&env.mirror(), &env.config(&["v1"])).await;
    assert_eq!(report.failed_tags(), ["v1"], "{report:?}");
    assert!(report.tags_failed[0].reason.contains("DigestMismatch"));
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
