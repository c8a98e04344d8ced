//! Signatures, SBOMs and attestations travel with their images (SEMANTICS.md §9): between real
//! CNCF distribution 2.8 registries, which lack the referrers API (cosign's `sha256-<hex>.sig`
//! tags and the OCI referrers tag schema's `sha256-<hex>` indexes), and from the kit's
//! in-process registry serving the referrers API, to each kind of destination.

use std::collections::BTreeMap;
use std::sync::Arc;

use regmirror::engine::{HttpConnector, Mirror, SyncOptions, SyncReport};
use regmirror::registry::Manifest;
use regmirror::registry::http::{HttpOptions, HttpRegistry};
use regmirror::registry::{LayoutRegistry, MemoryRegistry};
use regmirror::{
    DestRegistry, Digest, MirrorConfig, PlatformIndexMode, ReferrersPolicy, RollbackMode,
};
use regmirror_tests::{
    Artifact, Flavor, HostileRegistry, Image, Index, Mode, Proxy, Registry, Seeder,
    referrers_index, referrers_tag,
};

const SRC: &str = "upstream/app";
const DEST: &str = "mirror/app";
const SBOM: &str = "application/spdx+json";
const SIGNATURE: &str = "application/vnd.cncf.notary.signature";

/// A source behind a counting proxy and a destination, both distribution 2.8.
struct Env {
    source: Registry,
    proxy: Proxy,
    dest_registry: Registry,
    dest: HttpRegistry,
}

impl Env {
    fn start() -> Env {
        let source = Registry::start();
        let proxy = Proxy::start(&source);
        let dest_registry = Registry::start();
        let dest = HttpRegistry::new(&dest_registry.host(), dest_registry.http_options())
            .expect("the kit's options are valid");
        Env {
            source,
            proxy,
            dest_registry,
            dest,
        }
    }

    fn mirror(&self) -> Mirror {
        Mirror::builder()
            .destination(Arc::new(self.dest.clone()))
            .connector(Arc::new(HttpConnector::new(HttpOptions {
                tls_verify: false,
                docker_config: false,
                ..HttpOptions::default()
            })))
            .build()
            .unwrap()
    }

    fn config(&self, patterns: &[&str]) -> MirrorConfig {
        let mut c = MirrorConfig::new(
            DEST,
            format!("{}/{SRC}", self.proxy.host()).parse().unwrap(),
            patterns,
        );
        c.verify_tls = false;
        c
    }

    async fn sync(&self, mirror: &Mirror, config: &MirrorConfig) -> SyncReport {
        mirror
            .sync_config(config, SyncOptions::default())
            .await
            .unwrap()
    }

    fn src(&self) -> Seeder {
        self.source.seeder()
    }

    fn dst(&self) -> Seeder {
        self.dest_registry.seeder()
    }

    async fn dest_tags(&self) -> BTreeMap<String, Digest> {
        self.dst().tag_digests(DEST).await
    }

    /// The destination holds `manifest` byte-identical under its digest.
    async fn assert_copied(&self, manifest: &Manifest) {
        let bytes = self.dst().manifest(DEST, manifest.digest.as_str()).await;
        assert_eq!(
            bytes.as_ref(),
            Some(&manifest.bytes),
            "{} byte-identical at the destination",
            manifest.digest
        );
    }

    /// The digests the destination's referrers index for `subject` lists.
    async fn listed(&self, subject: &Digest) -> Vec<Digest> {
        let Some(bytes) = self.dst().manifest(DEST, &referrers_tag(subject)).await else {
            return Vec::new();
        };
        let index: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| Digest::parse(d["digest"].as_str().unwrap()).unwrap())
            .collect()
    }
}

fn cosign_tag(subject: &Digest, suffix: &str) -> String {
    format!("{}.{suffix}", referrers_tag(subject))
}

#[tokio::test]
async fn cosign_tags_follow_their_subject_are_kept_with_it_and_pruned_with_it() {
    let env = Env::start();
    let src = env.src();
    let v1 = src.push_image(SRC, "v1", &Image::simple(1, 1, 300)).await;
    let v2 = src.push_image(SRC, "v2", &Image::simple(2, 1, 300)).await;
    let other = src
        .push_image(SRC, "other", &Image::simple(3, 1, 300))
        .await;
    let signature = Artifact::cosign_signature(1);
    let attestation = Artifact::cosign_signature(2);
    let foreign = Artifact::cosign_signature(3);
    src.push_artifact(SRC, &cosign_tag(&v1, "sig"), &signature)
        .await;
    src.push_artifact(SRC, &cosign_tag(&v1, "att"), &attestation)
        .await;
    // The signature of a tag the patterns do not select stays behind.
    src.push_artifact(SRC, &cosign_tag(&other, "sig"), &foreign)
        .await;
    let mirror = env.mirror();
    let mut config = env.config(&["v*"]);
    // Only platform images are filtered: signatures have no platform and still travel.
    config.architectures = vec!["amd64".into()];

    let report = env.sync(&mirror, &config).await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(report.referrers_copied, 2, "{report:?}");
    let tags = env.dest_tags().await;
    let expected = BTreeMap::from([
        ("v1".to_owned(), v1.clone()),
        ("v2".to_owned(), v2.clone()),
        (cosign_tag(&v1, "sig"), signature.manifest.digest.clone()),
        (cosign_tag(&v1, "att"), attestation.manifest.digest.clone()),
    ]);
    assert_eq!(tags, expected);
    env.assert_copied(&signature.manifest).await;
    env.assert_copied(&attestation.manifest).await;

    // A no-op reads no manifest: one HEAD per mirrored tag, signatures included.
    env.proxy.reset_counts();
    let report = env.sync(&env.mirror(), &config).await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(env.proxy.count("GET", "/manifests/"), 0);
    assert_eq!(env.proxy.count("HEAD", "/manifests/"), 4);

    // Gone upstream, the attestation stays while its subject is mirrored.
    env.source
        .client()
        .delete_tag(SRC, &cosign_tag(&v1, "att"))
        .await
        .unwrap();
    let preview = mirror
        .preview_config(&config, SyncOptions::default())
        .await
        .unwrap();
    assert!(
        preview.tags_to_delete.is_empty(),
        "a dry run agrees: {preview:?}"
    );
    assert!(
        preview.tags.iter().any(|t| t.tag == cosign_tag(&v1, "sig")),
        "a dry run lists the referrer tags: {preview:?}"
    );
    let report = env.sync(&mirror, &config).await;
    assert!(report.is_success(), "{report:?}");
    assert!(report.tags_deleted.is_empty(), "{report:?}");
    assert_eq!(env.dest_tags().await, expected);

    // Narrowed to v2, v1 goes and its signatures with it.
    let preview = mirror
        .preview_config(&env.config(&["v2"]), SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(preview.tags_to_delete.len(), 3, "{preview:?}");
    let report = env.sync(&mirror, &env.config(&["v2"])).await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(
        env.dest_tags().await,
        BTreeMap::from([("v2".to_owned(), v2)])
    );
    assert_eq!(report.tags_deleted.len(), 3, "{report:?}");

    // With referrers turned off, none is copied.
    let mut none = env.config(&["v*"]);
    none.referrers = ReferrersPolicy::None;
    let report = env.sync(&mirror, &none).await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(report.referrers_copied, 0);
    assert_eq!(env.dest_tags().await.len(), 2);
}

#[tokio::test]
async fn oci_referrers_nested_and_per_platform_are_copied_and_merged_into_the_destination_index() {
    let env = Env::start();
    let src = env.src();
    let index = Index::two_platforms(Flavor::Oci, 4, 200);
    let subject = src.push_index(SRC, "multi", &index).await;
    let child = &index.children[1].manifest;
    // An SBOM of the index, a signature of that SBOM, a signature of one platform's image.
    let sbom = Artifact::oci(10, SBOM, Some(&index.manifest));
    let sbom_signature = Artifact::oci(11, SIGNATURE, Some(&sbom.manifest));
    let child_signature = Artifact::oci(12, SIGNATURE, Some(child));
    for (artifact, subject) in [
        (&sbom, &subject),
        (&sbom_signature, &sbom.manifest.digest),
        (&child_signature, &child.digest),
    ] {
        src.push_artifact(SRC, artifact.manifest.digest.as_str(), artifact)
            .await;
        // What a client does for a registry without the referrers API.
        src.push_manifest(SRC, &referrers_tag(subject), &referrers_index(&[artifact]))
            .await;
    }
    // The destination's index already lists a referrer someone else pushed there.
    let theirs = Artifact::oci(13, SIGNATURE, Some(&index.manifest));
    let dst = env.dst();
    dst.push_artifact(DEST, theirs.manifest.digest.as_str(), &theirs)
        .await;
    dst.push_manifest(DEST, &referrers_tag(&subject), &referrers_index(&[&theirs]))
        .await;

    let mirror = env.mirror();
    let config = env.config(&["multi"]);
    let report = env.sync(&mirror, &config).await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(report.referrers_copied, 3, "{report:?}");
    assert!(report.tags_rewritten.is_empty(), "{report:?}");
    for artifact in [&sbom, &sbom_signature, &child_signature, &theirs] {
        env.assert_copied(&artifact.manifest).await;
    }
    assert_eq!(
        env.listed(&subject).await,
        [theirs.manifest.digest.clone(), sbom.manifest.digest.clone()],
        "merged, theirs kept"
    );
    assert_eq!(
        env.listed(&sbom.manifest.digest).await,
        std::slice::from_ref(&sbom_signature.manifest.digest)
    );
    assert_eq!(
        env.listed(&child.digest).await,
        std::slice::from_ref(&child_signature.manifest.digest)
    );
    // Every subject resolves at the destination.
    for subject in [&subject, &sbom.manifest.digest, &child.digest] {
        assert!(
            env.dest
                .head_manifest(DEST, subject.as_str())
                .await
                .unwrap()
                .is_some(),
            "{subject}"
        );
    }
    // The source's indexes whose copy needed no merge are byte-identical.
    assert_eq!(
        env.dst()
            .manifest(DEST, &referrers_tag(&sbom.manifest.digest))
            .await
            .unwrap(),
        referrers_index(&[&sbom_signature]).bytes
    );

    // A no-op costs the source one listing and one HEAD per tag it mirrors, referrer tags
    // included: no manifest GET, nothing else.
    env.proxy.reset_counts();
    let report = env.sync(&mirror, &config).await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(report.referrers_copied, 0, "{report:?}");
    let requests = env.proxy.requests();
    let manifest_gets = env.proxy.count("GET", "/manifests/");
    let heads = env.proxy.count("HEAD", "/manifests/");
    assert_eq!(heads, 4, "multi and three referrers indexes: {requests:?}");
    // The merged index lists all the source's: current, as the indexes' insides are known.
    assert_eq!(manifest_gets, 0, "{requests:?}");
    assert!(report.tags_synced.is_empty(), "{report:?}");
    assert_eq!(
        env.proxy.count("GET", "/referrers/"),
        0,
        "the first run's probe found no referrers API"
    );
    // A new process knows no index's insides yet: it reads the index and the referrers
    // indexes it compares, once.
    env.proxy.reset_counts();
    let report = env.sync(&env.mirror(), &config).await;
    assert!(report.is_success(), "{report:?}");
    assert!(report.tags_synced.is_empty(), "{report:?}");
    assert_eq!(env.proxy.count("HEAD", "/manifests/"), 4);
    assert_eq!(
        env.proxy.count("GET", "/manifests/"),
        2,
        "{:?}",
        env.proxy.requests()
    );
    assert_eq!(
        env.proxy.count("GET", "/referrers/"),
        1,
        "a process probes a source once"
    );
}

#[tokio::test]
async fn an_architecture_filter_copies_artifacts_and_skips_the_rewritten_index_referrers() {
    let env = Env::start();
    let src = env.src();
    // The case: an artifact tag changed at the source, synced with --arch and rewrite.
    let chart = Artifact::oci(20, "application/vnd.cncf.helm.config.v1+json", None);
    src.push_artifact(SRC, "chart", &chart).await;
    let index = Index::two_platforms(Flavor::Oci, 5, 200);
    let subject = src.push_index(SRC, "multi", &index).await;
    let (amd64, arm64) = (&index.children[0].manifest, &index.children[1].manifest);
    let index_signature = Artifact::cosign_signature(21);
    let amd64_signature = Artifact::cosign_signature(22);
    let arm64_signature = Artifact::cosign_signature(23);
    for (artifact, subject) in [
        (&index_signature, &subject),
        (&amd64_signature, &amd64.digest),
        (&arm64_signature, &arm64.digest),
    ] {
        src.push_artifact(SRC, &cosign_tag(subject, "sig"), artifact)
            .await;
    }
    let mirror = env.mirror();
    let mut config = env.config(&["chart", "multi"]);
    config.architectures = vec!["amd64".into()];
    config.platform_index = PlatformIndexMode::Rewrite;

    let report = env.sync(&mirror, &config).await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(report.tags_rewritten.len(), 1, "{report:?}");
    let note = report.note.as_deref().unwrap_or_default();
    assert!(note.contains("rewritten"), "{report:?}");
    assert_eq!(report.referrers_copied, 1, "{report:?}");
    let tags = env.dest_tags().await;
    assert_eq!(
        tags.keys().cloned().collect::<Vec<_>>(),
        [
            "chart".to_owned(),
            "multi".to_owned(),
            cosign_tag(&amd64.digest, "sig")
        ]
    );
    env.assert_copied(&amd64_signature.manifest).await;

    let updated = Artifact::oci(24, "application/vnd.cncf.helm.config.v1+json", None);
    src.push_artifact(SRC, "chart", &updated).await;
    let report = env.sync(&mirror, &config).await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(report.tags_synced, ["chart"], "{report:?}");
    assert!(report.tags_deleted.is_empty(), "{report:?}");
    assert!(report.tags_skipped.is_empty(), "{report:?}");
    env.assert_copied(&updated.manifest).await;
    assert!(
        env.dest_tags()
            .await
            .contains_key(&cosign_tag(&amd64.digest, "sig")),
        "the child's signature stays with its subject"
    );
}

#[tokio::test]
async fn all_or_nothing_publishes_a_subject_and_its_signature_together_or_neither() {
    let env = Env::start();
    let src = env.src();
    let image = Image::simple(30, 1, 300);
    let v1 = src.push_image(SRC, "v1", &image).await;
    src.push_artifact(
        SRC,
        &cosign_tag(&v1, "sig"),
        &Artifact::cosign_signature(30),
    )
    .await;
    let broken = Image::simple(31, 1, 300);
    src.push_image(SRC, "v2", &broken).await;
    env.source.corrupt_blob(&broken.layers[0].digest);
    let mut config = env.config(&["v*"]);
    config.rollback = RollbackMode::AllOrNothing;
    let report = env.sync(&env.mirror(), &config).await;
    assert!(!report.is_success(), "{report:?}");
    assert!(env.dest_tags().await.is_empty(), "{report:?}");
}

/// A source with the referrers API that keeps no `sha256-<hex>` tags (the kit's in-process
/// registry), holding `v1` with an SBOM, a signature on that SBOM, and an index whose arm64
/// image is signed.
struct ApiSource {
    registry: HostileRegistry,
    image: Image,
    index: Index,
    sbom: Artifact,
    sbom_signature: Artifact,
    child_signature: Artifact,
}

impl ApiSource {
    fn start() -> ApiSource {
        let registry = HostileRegistry::builder(Mode::Honest)
            .referrers_api()
            .start();
        let image = Image::simple(40, 1, 300);
        let index = Index::two_platforms(Flavor::Oci, 41, 200);
        registry.put_image(SRC, "v1", &image);
        registry.put_index(SRC, "multi", &index);
        let sbom = Artifact::oci(42, SBOM, Some(&image.manifest));
        let sbom_signature = Artifact::oci(43, SIGNATURE, Some(&sbom.manifest));
        let child_signature = Artifact::oci(44, SIGNATURE, Some(&index.children[1].manifest));
        for artifact in [&sbom, &sbom_signature, &child_signature] {
            for blob in artifact.blobs() {
                registry.put_blob(blob);
            }
            registry.put_untagged(&artifact.manifest);
        }
        ApiSource {
            registry,
            image,
            index,
            sbom,
            sbom_signature,
            child_signature,
        }
    }

    fn config(&self) -> MirrorConfig {
        let mut c = MirrorConfig::new(
            DEST,
            format!("{}/{SRC}", self.registry.host()).parse().unwrap(),
            &["*"],
        );
        c.verify_tls = false;
        c
    }

    fn mirror(&self, dest: Arc<dyn DestRegistry>) -> Mirror {
        Mirror::builder()
            .destination(dest)
            .connector(Arc::new(HttpConnector::new(self.registry.http_options())))
            .build()
            .unwrap()
    }

    fn referrers_requests(&self) -> usize {
        self.registry.count("GET", "/referrers/")
    }
}

#[tokio::test]
async fn referrers_found_through_the_api_become_the_fallback_index_of_a_destination_without_it() {
    let source = ApiSource::start();
    let env = Env::start();
    let dest_proxy = Proxy::start(&env.dest_registry);
    let mirror = source.mirror(Arc::new(dest_proxy.client()));
    let report = env.sync(&mirror, &source.config()).await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(report.referrers_copied, 3, "{report:?}");
    for artifact in [
        &source.sbom,
        &source.sbom_signature,
        &source.child_signature,
    ] {
        env.assert_copied(&artifact.manifest).await;
    }
    let child = &source.index.children[1].manifest.digest;
    assert_eq!(
        env.listed(&source.image.manifest.digest).await,
        std::slice::from_ref(&source.sbom.manifest.digest)
    );
    assert_eq!(
        env.listed(&source.sbom.manifest.digest).await,
        std::slice::from_ref(&source.sbom_signature.manifest.digest)
    );
    assert_eq!(
        env.listed(child).await,
        std::slice::from_ref(&source.child_signature.manifest.digest)
    );

    // A no-op asks the API once per mirrored digest (the probe included) and copies nothing.
    let before = source.referrers_requests();
    dest_proxy.reset_counts();
    let report = env.sync(&mirror, &source.config()).await;
    assert!(report.is_success(), "{report:?}");
    assert!(report.tags_synced.is_empty(), "{report:?}");
    assert_eq!(report.referrers_copied, 0);
    // v1, multi, its two children, the SBOM, its signature, the child's signature: 7 digests,
    // plus the probe.
    assert_eq!(source.referrers_requests() - before, 8);
    // The destination: its tag list and one HEAD per tag (v1, multi, three referrers
    // indexes), nothing else: no referrers API probe, the indexes' insides known.
    let requests = dest_proxy.requests();
    assert_eq!(dest_proxy.count("GET", "/tags/list"), 1, "{requests:?}");
    assert_eq!(dest_proxy.count("HEAD", "/manifests/"), 5, "{requests:?}");
    assert_eq!(requests.len(), 6, "{requests:?}");

    // Only the listed artifact type.
    let mut sboms = source.config();
    sboms.referrers = SBOM.parse().unwrap();
    let fresh = Env::start();
    let report = fresh
        .sync(&source.mirror(Arc::new(fresh.dest.clone())), &sboms)
        .await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(report.referrers_copied, 1, "{report:?}");
    assert_eq!(
        fresh.listed(&source.image.manifest.digest).await,
        std::slice::from_ref(&source.sbom.manifest.digest)
    );
    assert!(fresh.listed(child).await.is_empty());
}

#[tokio::test]
async fn a_destination_with_the_referrers_api_indexes_them_itself_without_tags() {
    let source = ApiSource::start();
    let dest = MemoryRegistry::new();
    let mirror = source.mirror(Arc::new(dest.clone()));
    let report = mirror
        .sync_config(&source.config(), SyncOptions::default())
        .await
        .unwrap();
    assert!(report.is_success(), "{report:?}");
    assert_eq!(report.referrers_copied, 3, "{report:?}");
    assert_eq!(
        DestRegistry::list_tags(&dest, DEST).await.unwrap(),
        ["multi", "v1"],
        "no referrers tags"
    );
    let answer = DestRegistry::referrers(&dest, DEST, &source.image.manifest.digest, None)
        .await
        .unwrap()
        .unwrap();
    let Ok(regmirror::registry::ManifestKind::Index { manifests }) = answer.kind() else {
        panic!("{answer:?}")
    };
    assert_eq!(manifests.len(), 1);
    let copied = DestRegistry::get_manifest(&dest, DEST, manifests[0].digest.as_str())
        .await
        .unwrap();
    assert_eq!(copied.bytes, source.sbom.manifest.bytes);

    // Known present, a no-op asks the destination nothing about them.
    let report = mirror
        .sync_config(&source.config(), SyncOptions::default())
        .await
        .unwrap();
    assert!(report.is_success(), "{report:?}");
    assert_eq!(report.referrers_copied, 0);
    assert!(report.tags_synced.is_empty(), "{report:?}");
}

#[tokio::test]
async fn an_oci_layout_keeps_referrers_under_the_tag_schema_with_the_subject_annotation() {
    let env = Env::start();
    let src = env.src();
    let image = Image::simple(50, 1, 300);
    let v1 = src.push_image(SRC, "v1", &image).await;
    let signature = Artifact::cosign_signature(50);
    src.push_artifact(SRC, &cosign_tag(&v1, "sig"), &signature)
        .await;
    let sbom = Artifact::oci(51, SBOM, Some(&image.manifest));
    src.push_artifact(SRC, sbom.manifest.digest.as_str(), &sbom)
        .await;
    src.push_manifest(SRC, &referrers_tag(&v1), &referrers_index(&[&sbom]))
        .await;
    let dir = tempfile::tempdir().unwrap();
    let layout = LayoutRegistry::single(dir.path());
    let mirror = Mirror::builder()
        .destination(Arc::new(layout.clone()))
        .connector(Arc::new(HttpConnector::new(HttpOptions {
            tls_verify: false,
            docker_config: false,
            ..HttpOptions::default()
        })))
        .build()
        .unwrap();
    let report = env.sync(&mirror, &env.config(&["v1"])).await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(report.referrers_copied, 2, "{report:?}");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
    let entries = index["manifests"].as_array().unwrap();
    let named = |tag: &str| {
        entries
            .iter()
            .find(|e| e["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .unwrap_or_else(|| panic!("{tag} in {index}"))
    };
    assert_eq!(
        named(&cosign_tag(&v1, "sig"))["digest"],
        signature.manifest.digest.as_str()
    );
    assert_eq!(
        named(&referrers_tag(&v1))["annotations"]["org.opencontainers.image.referrer.subject"],
        v1.as_str()
    );
    for manifest in [&signature.manifest, &sbom.manifest] {
        let blob = dir.path().join("blobs/sha256").join(manifest.digest.hex());
        assert_eq!(
            std::fs::read(blob).unwrap(),
            manifest.bytes,
            "byte-identical"
        );
    }
}
