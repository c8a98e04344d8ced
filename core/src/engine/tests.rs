//! Behaviour of one run against in-memory registries: planning, staging, publishing, pruning,
//! rollback, cancellation, events and the usage log.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::*;
use crate::config::{PlatformIndexMode, RollbackMode};
use crate::error::Phase;
use crate::reference::Digest;
use crate::registry::MemoryRegistry;
use crate::registry::faulty::{Fault, FaultyRegistry};
use crate::registry::manifest::ManifestKind;
use crate::registry::{Manifest, SourceRegistry};
use crate::state::MemoryStateStore;
use crate::state::TagRecord;

const SRC: &str = "lib/app";
const DEST: &str = "mirror/app";

struct Setup {
    source: FaultyRegistry,
    dest: FaultyRegistry,
    store: Arc<MemoryStateStore>,
    mirror: Mirror,
}

fn setup() -> Setup {
    setup_with(|b| b)
}

fn setup_with(f: impl FnOnce(MirrorBuilder) -> MirrorBuilder) -> Setup {
    let source = FaultyRegistry::new();
    let dest = FaultyRegistry::new();
    let store = Arc::new(MemoryStateStore::new());
    let builder = Mirror::builder()
        .state(store.clone())
        .connector(Arc::new(StaticConnector(Arc::new(source.clone()))))
        .destination(Arc::new(dest.clone()))
        .concurrency(4);
    let mirror = f(builder).build().unwrap();
    Setup {
        source,
        dest,
        store,
        mirror,
    }
}

fn config(patterns: &[&str]) -> MirrorConfig {
    MirrorConfig::new(
        DEST,
        format!("src.example/{SRC}").parse().unwrap(),
        patterns,
    )
}

fn blobs_of(m: &Manifest) -> Vec<crate::reference::Digest> {
    match m.kind().unwrap() {
        ManifestKind::Image { config, layers } => std::iter::once(config.digest)
            .chain(layers.into_iter().map(|l| l.digest))
            .collect(),
        ManifestKind::Index { .. } => panic!("an image"),
    }
}

impl Setup {
    async fn run(&self, config: &MirrorConfig) -> SyncReport {
        self.mirror
            .sync_config(config, SyncOptions::default())
            .await
            .unwrap()
    }

    /// Quay's rollback case: destination {updated, deleted}; source {latest, zzerror, created,
    /// updated} with zzerror unreadable. Returns (old updated, new updated) digests.
    fn quay_case(&self) -> (crate::reference::Digest, crate::reference::Digest) {
        let old = self
            .dest
            .seed_image(DEST, Some("updated"), "amd64", &[b"old updated"]);
        self.dest
            .seed_image(DEST, Some("deleted"), "amd64", &[b"deleted"]);
        self.source
            .seed_image(SRC, Some("latest"), "amd64", &[b"latest"]);
        self.source
            .seed_image(SRC, Some("created"), "amd64", &[b"created"]);
        let new = self
            .source
            .seed_image(SRC, Some("updated"), "amd64", &[b"new updated"]);
        let bad = self
            .source
            .seed_image(SRC, Some("zzerror"), "amd64", &[b"unreadable"]);
        self.source
            .inject(Fault::UnreadableBlob(blobs_of(&bad)[1].clone()));
        (old.digest, new.digest)
    }
}

#[tokio::test]
async fn first_run_copies_and_second_run_reads_no_blob() {
    let s = setup();
    let a = s
        .source
        .seed_image(SRC, Some("v1"), "amd64", &[b"base", b"one"]);
    let b = s
        .source
        .seed_image(SRC, Some("v2"), "amd64", &[b"base", b"two"]);
    s.source.seed_image(SRC, Some("other"), "amd64", &[b"x"]);
    let c = config(&["v*"]);

    let first = s.run(&c).await;
    assert!(first.is_success(), "{first:?}");
    assert_eq!(first.tags_synced, ["v1", "v2"]);
    // Two configs, one shared base, two own layers.
    assert_eq!(first.blobs_copied, 5);
    let tags = s.dest.tag_map(DEST);
    assert_eq!(tags.len(), 2);
    assert_eq!(tags["v1"], a.digest);
    assert_eq!(tags["v2"], b.digest);

    s.source.reset_counters();
    let second = s.run(&c).await;
    assert!(second.is_success(), "{second:?}");
    assert!(second.tags_synced.is_empty());
    assert_eq!(second.tags_current, ["v1", "v2"]);
    assert_eq!(
        second.blobs_copied + second.blobs_present + second.blobs_mounted,
        0
    );
    assert_eq!(s.source.total_blob_reads(), 0);
    assert_eq!(s.source.counters().manifest_reads, 0);
}

#[tokio::test]
async fn a_blob_shared_by_twenty_tags_is_read_once() {
    let s = setup();
    let shared = vec![42u8; 100_000];
    let mut first = None;
    for i in 0..20 {
        let own = format!("own layer {i}");
        let m = s.source.seed_image(
            SRC,
            Some(&format!("t{i:02}")),
            "amd64",
            &[&shared, own.as_bytes()],
        );
        first.get_or_insert(m);
    }
    let report = s.run(&config(&["t*"])).await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(report.tags_synced.len(), 20);
    let shared_digest = &blobs_of(first.as_ref().unwrap())[1];
    assert_eq!(s.source.blob_reads(shared_digest), 1);
    assert_eq!(s.dest.counters().blob_pushes[shared_digest], 1);
}

#[tokio::test]
async fn quay_rollback_all_or_nothing_leaves_destination_as_before() {
    let s = setup();
    let (old, _) = s.quay_case();
    let before = s.dest.tag_map(DEST);
    let mut c = config(&["updated", "created", "zzerror"]);
    c.rollback = RollbackMode::AllOrNothing;
    let report = s.run(&c).await;
    assert_eq!(report.outcome, Outcome::Failed);
    assert_eq!(report.failed_tags(), ["zzerror"]);
    assert!(report.tags_synced.is_empty() && report.tags_deleted.is_empty());
    assert!(!report.partial);
    let after = s.dest.tag_map(DEST);
    assert_eq!(after, before);
    assert_eq!(after["updated"], old);
    assert!(!after.contains_key("created"));
}

#[tokio::test]
async fn quay_rollback_failed_tags_only_is_partial() {
    let s = setup();
    let (_, new) = s.quay_case();
    let report = s.run(&config(&["updated", "created", "zzerror"])).await;
    assert_eq!(report.outcome, Outcome::Failed);
    assert!(report.partial, "{report:?}");
    assert_eq!(report.failed_tags(), ["zzerror"]);
    assert_eq!(report.tags_synced, ["created", "updated"]);
    assert_eq!(report.tags_deleted, ["deleted"]);
    assert!(report.error.as_deref().unwrap().contains("partial"));
    let after = s.dest.tag_map(DEST);
    assert_eq!(after["updated"], new.clone());
    assert!(after.contains_key("created"));
    assert!(!after.contains_key("deleted"));
    assert!(!after.contains_key("zzerror"));
    assert!(!after.contains_key("latest"));
}

#[tokio::test]
async fn publish_failure_with_all_or_nothing_undoes_moves_creations_and_prunes() {
    let s = setup();
    let (old, _) = s.quay_case();
    s.source
        .heal(&Fault::UnreadableBlob(crate::reference::Digest::of(
            b"unreadable",
        )));
    // zzerror stages fine but cannot be tagged: the failure happens mid-publish, after
    // "created" and "updated" moved (sorted order), so they must be undone.
    s.dest.inject(Fault::PushManifest {
        repo: DEST.into(),
        reference: "zzerror".into(),
    });
    let before = s.dest.tag_map(DEST);
    let mut c = config(&["updated", "created", "zzerror"]);
    c.rollback = RollbackMode::AllOrNothing;
    let report = s.run(&c).await;
    assert_eq!(report.outcome, Outcome::Failed, "{report:?}");
    assert!(report.rolled_back);
    assert_eq!(report.failed_tags(), ["zzerror"]);
    assert_eq!(s.dest.tag_map(DEST), before);
    assert_eq!(s.dest.tag_map(DEST)["updated"], old);
}

#[tokio::test]
async fn prune_failure_with_all_or_nothing_restores_everything() {
    let s = setup();
    s.quay_case();
    // "deleted" is pruned, then "zdeleted" cannot be: the first prune is undone.
    s.dest
        .seed_image(DEST, Some("zdeleted"), "amd64", &[b"zdeleted"]);
    s.dest.inject(Fault::DeleteTag {
        repo: DEST.into(),
        tag: "zdeleted".into(),
    });
    let before = s.dest.tag_map(DEST);
    let mut c = config(&["updated", "created"]);
    c.rollback = RollbackMode::AllOrNothing;
    let report = s.run(&c).await;
    assert_eq!(report.outcome, Outcome::Failed, "{report:?}");
    assert_eq!(report.failed_tags(), ["zdeleted"]);
    assert!(report.rolled_back);
    assert_eq!(s.dest.tag_map(DEST), before);
}

#[tokio::test]
async fn all_or_nothing_prunes_first_so_a_destination_refusing_deletes_sees_no_tag_move() {
    // Publishing first would create "created", which the rollback then cannot delete either.
    let s = setup();
    s.quay_case();
    s.source
        .heal(&Fault::UnreadableBlob(crate::reference::Digest::of(
            b"unreadable",
        )));
    s.dest.inject(Fault::DeleteTag {
        repo: DEST.into(),
        tag: "deleted".into(),
    });
    s.dest.inject(Fault::DeleteTag {
        repo: DEST.into(),
        tag: "created".into(),
    });
    let before = s.dest.tag_map(DEST);
    let mut c = config(&["updated", "created"]);
    c.rollback = RollbackMode::AllOrNothing;
    let report = s.run(&c).await;
    assert_eq!(report.outcome, Outcome::Failed, "{report:?}");
    assert_eq!(report.failed_tags(), ["deleted"]);
    assert!(!report.rolled_back && report.tags_synced.is_empty());
    assert_eq!(s.dest.tag_map(DEST), before);
    assert_eq!(
        report.error.as_deref(),
        Some(
            "1 unselected tag could not be deleted: deleted; nothing was published (all_or_nothing)"
        )
    );
}

#[tokio::test]
async fn narrowing_patterns_prunes_but_listing_failure_and_empty_match_do_not() {
    let s = setup();
    s.source.seed_image(SRC, Some("v1"), "amd64", &[b"1"]);
    s.source.seed_image(SRC, Some("v2"), "amd64", &[b"2"]);
    assert!(s.run(&config(&["v*"])).await.is_success());
    assert_eq!(s.dest.tag_map(DEST).len(), 2);

    let none = s.run(&config(&["nomatch*"])).await;
    assert!(none.is_success());
    // A remark, not an error: callers test `error` to alert.
    assert_eq!(none.error, None);
    assert_eq!(
        none.note.as_deref(),
        Some(r#"no tags matched (the source has 2 tags; patterns ["nomatch*"])"#)
    );
    assert_eq!(s.dest.tag_map(DEST).len(), 2);

    s.source.inject(Fault::ListTags { repo: SRC.into() });
    let failed = s.run(&config(&["v1"])).await;
    assert_eq!(failed.outcome, Outcome::Failed);
    assert!(
        failed.error.as_deref().unwrap().contains("listing"),
        "{failed:?}"
    );
    assert_eq!(s.dest.tag_map(DEST).len(), 2);
    s.source.heal(&Fault::ListTags { repo: SRC.into() });

    let narrowed = s.run(&config(&["v1"])).await;
    assert!(narrowed.is_success());
    assert_eq!(narrowed.tags_deleted, ["v2"]);
    assert_eq!(s.dest.tag_map(DEST).keys().collect::<Vec<_>>(), ["v1"]);
}

#[tokio::test]
async fn keep_unselected_copies_without_pruning() {
    let s = setup();
    s.source.seed_image(SRC, Some("v1"), "amd64", &[b"1"]);
    s.dest.seed_image(DEST, Some("local"), "amd64", &[b"local"]);
    let options = SyncOptions {
        keep_unselected: true,
        ..SyncOptions::default()
    };
    let report = s
        .mirror
        .sync_config(&config(&["v*"]), options)
        .await
        .unwrap();
    assert!(report.is_success(), "{report:?}");
    assert!(report.tags_deleted.is_empty());
    assert_eq!(
        s.dest.tag_map(DEST).keys().collect::<Vec<_>>(),
        ["local", "v1"]
    );

    let pruning = s.run(&config(&["v*"])).await;
    assert_eq!(pruning.tags_deleted, ["local"]);
}

/// The bytes of an image's config and layers.
fn image_bytes(m: &Manifest) -> u64 {
    match m.kind().unwrap() {
        ManifestKind::Image { config, layers } => {
            config.size + layers.iter().map(|l| l.size).sum::<u64>()
        }
        ManifestKind::Index { .. } => panic!("an image"),
    }
}

#[tokio::test]
async fn a_preview_matches_the_sync_and_changes_nothing() {
    let s = setup();
    let shared = vec![7u8; 1000];
    s.source
        .seed_image(SRC, Some("v1"), "amd64", &[&shared, &[1u8; 300]]);
    let v2 = s
        .source
        .seed_image(SRC, Some("v2"), "amd64", &[&shared, &[2u8; 200]]);
    let (_, amd, arm) = seed_multiarch(&s);
    s.source
        .seed_index(SRC, Some("amdonly"), &[("amd64", &amd)]);
    assert!(s.run(&config(&["v1"])).await.is_success());
    s.dest.seed_image(DEST, Some("stale"), "amd64", &[b"stale"]);
    let before = s.dest.tag_map(DEST);
    s.dest.reset_counters();

    let mut c = config(&["v*", "multi", "amdonly"]);
    c.architectures = vec!["arm64".into()];
    let preview = s
        .mirror
        .preview_config(&c, SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(s.dest.tag_map(DEST), before);
    assert!(s.dest.counters().blob_pushes.is_empty());
    let actions: Vec<(&str, PreviewAction)> = preview
        .tags
        .iter()
        .map(|t| (t.tag.as_str(), t.action))
        .collect();
    assert_eq!(
        actions,
        [
            ("amdonly", PreviewAction::Fail),
            ("multi", PreviewAction::Copy),
            // Already current: planning compares digests before any filter applies.
            ("v1", PreviewAction::Current),
            ("v2", PreviewAction::Skip),
        ]
    );
    // Only the arm64 child's config and layer are to be copied.
    assert_eq!(preview.bytes_to_copy, image_bytes(&arm));
    assert_eq!(preview.blobs_to_copy, 2);
    // A failed tag keeps its value; the unselected one goes.
    assert_eq!(preview.tags_to_delete, ["stale"]);

    let c = config(&["v1", "v2"]);
    let preview = s
        .mirror
        .preview_config(&c, SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(preview.tags[0].action, PreviewAction::Current);
    assert_eq!(preview.tags[1].action, PreviewAction::Copy);
    // The shared layer is already in the destination (from v1).
    assert_eq!(preview.tags[1].bytes, image_bytes(&v2) - 1000);
    let keep = SyncOptions {
        keep_unselected: true,
        ..SyncOptions::default()
    };
    let kept = s.mirror.preview_config(&c, keep).await.unwrap();
    assert!(kept.tags_to_delete.is_empty());
    let report = s.run(&c).await;
    assert_eq!(report.bytes_copied, preview.bytes_to_copy);
    assert_eq!(report.tags_deleted, preview.tags_to_delete);
}

#[tokio::test]
async fn a_corrupt_blob_fails_its_tag_only_and_is_never_published() {
    let s = setup();
    let good = s.source.seed_image(SRC, Some("good"), "amd64", &[b"fine"]);
    let bad = s
        .source
        .seed_image(SRC, Some("bad"), "amd64", &[b"will be corrupted"]);
    let layer = blobs_of(&bad)[1].clone();
    s.source.inject(Fault::CorruptBlob(layer.clone()));
    let report = s.run(&config(&["*"])).await;
    assert_eq!(report.outcome, Outcome::Failed);
    assert_eq!(report.tags_synced, ["good"]);
    assert_eq!(report.failed_tags(), ["bad"]);
    assert!(
        report.tags_failed[0].reason.contains("DigestMismatch"),
        "{report:?}"
    );
    let tags = s.dest.tag_map(DEST);
    assert_eq!(tags.len(), 1);
    assert_eq!(tags["good"], good.digest);
    assert!(!s.dest.has_blob(DEST, &layer).await.unwrap());
    assert!(!s.dest.has_manifest(DEST, &bad.digest));
}

fn seed_multiarch(s: &Setup) -> (Manifest, Manifest, Manifest) {
    let amd = s.source.seed_image(SRC, None, "amd64", &[b"amd layer"]);
    let arm = s.source.seed_image(SRC, None, "arm64", &[b"arm layer"]);
    let index = s
        .source
        .seed_index(SRC, Some("multi"), &[("amd64", &amd), ("arm64", &arm)]);
    (index, amd, arm)
}

#[tokio::test]
async fn a_multiarch_index_is_copied_whole_by_default() {
    let s = setup();
    let (index, amd, arm) = seed_multiarch(&s);
    let report = s.run(&config(&["multi"])).await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(s.dest.tag_map(DEST)["multi"], index.digest);
    assert!(s.dest.has_manifest(DEST, &amd.digest));
    assert!(s.dest.has_manifest(DEST, &arm.digest));
}

#[tokio::test]
async fn a_filtered_index_is_sparse_or_fails_or_is_rewritten() {
    // Accepted sparse: the tag points at the original index bytes, one platform copied.
    let s = setup();
    s.dest.set_accept_sparse_index(true);
    let (index, amd, arm) = seed_multiarch(&s);
    let mut c = config(&["multi"]);
    c.architectures = vec!["arm64".into()];
    let report = s.run(&c).await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(s.dest.tag_map(DEST)["multi"], index.digest);
    assert!(s.dest.has_manifest(DEST, &arm.digest));
    assert!(!s.dest.has_manifest(DEST, &amd.digest));
    assert_eq!(s.source.blob_reads(&blobs_of(&amd)[1]), 0);

    // Refused sparse (like distribution 2.8), default mode: the tag fails and says why.
    let s = setup();
    seed_multiarch(&s);
    let report = s.run(&c).await;
    assert_eq!(report.failed_tags(), ["multi"]);
    let reason = &report.tags_failed[0].reason;
    assert!(
        reason.contains("sparse index") && reason.contains("platform_index = rewrite"),
        "{reason}"
    );
    assert!(s.dest.tag_map(DEST).is_empty());

    // Refused sparse, rewrite allowed: a new index of the selected platforms, reported.
    c.platform_index = PlatformIndexMode::Rewrite;
    let report = s.run(&c).await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(report.tags_rewritten.len(), 1);
    let rewritten = &report.tags_rewritten[0];
    assert_eq!(rewritten.source_digest, index.digest);
    let dest_digest = s.dest.tag_map(DEST)["multi"].clone();
    assert_eq!(rewritten.digest, dest_digest);
    let pushed = s.dest.manifest(DEST, "multi").unwrap();
    let ManifestKind::Index { manifests } = pushed.kind().unwrap() else {
        panic!("an index")
    };
    assert_eq!(manifests.len(), 1);
    assert_eq!(manifests[0].digest, arm.digest);
    // The rewritten tag counts as current next time.
    let again = s.run(&c).await;
    assert_eq!(again.tags_current, ["multi"], "{again:?}");
    assert_eq!(again.blobs_copied, 0);
}

#[tokio::test]
async fn platform_filter_skips_single_arch_and_fails_index_without_match() {
    let s = setup();
    s.source
        .seed_image(SRC, Some("armonly"), "arm64", &[b"arm"]);
    s.source
        .seed_image(SRC, Some("amdonly"), "amd64", &[b"amd"]);
    let mut c = config(&["*only"]);
    c.architectures = vec!["amd64".into()];
    let report = s.run(&c).await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(report.tags_skipped, ["armonly"]);
    assert_eq!(report.tags_synced, ["amdonly"]);

    let s = setup();
    seed_multiarch(&s);
    let mut c = config(&["multi"]);
    c.architectures = vec!["s390x".into()];
    let report = s.run(&c).await;
    assert_eq!(report.failed_tags(), ["multi"]);
    assert!(
        report.tags_failed[0]
            .reason
            .contains("no platform matching")
    );
}

#[tokio::test]
async fn blobs_known_in_another_destination_repository_are_mounted() {
    let s = setup();
    s.source.seed_image(SRC, Some("v1"), "amd64", &[b"common"]);
    assert!(s.run(&config(&["v1"])).await.is_success());
    let mut other = config(&["v1"]);
    other.id = "mirror/other".into();
    s.source.reset_counters();
    let report = s.run(&other).await;
    assert!(report.is_success());
    assert_eq!(report.blobs_mounted, 2);
    assert_eq!(report.blobs_copied, 0);
    assert_eq!(s.source.total_blob_reads(), 0);
}

#[tokio::test]
async fn cancelling_stops_after_the_tag_in_flight_without_rollback() {
    let s = setup();
    s.dest.seed_image(DEST, Some("gone"), "amd64", &[b"gone"]);
    for t in ["a", "b", "c"] {
        s.source.seed_image(SRC, Some(t), "amd64", &[t.as_bytes()]);
    }
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    let options = SyncOptions {
        cancel,
        progress: Progress::new(move |e| {
            if let ProgressEvent::TagFinished {
                status: TagStatus::Synced,
                ..
            } = e
            {
                trigger.cancel();
            }
        }),
        ..SyncOptions::default()
    };
    let mut c = config(&["*"]);
    c.rollback = RollbackMode::AllOrNothing;
    let report = s.mirror.sync_config(&c, options).await.unwrap();
    assert_eq!(report.outcome, Outcome::Cancelled, "{report:?}");
    assert_eq!(report.tags_synced, ["a"]);
    // all_or_nothing prunes before publishing; neither is undone by a cancel.
    assert_eq!(report.tags_deleted, ["gone"]);
    assert!(!report.rolled_back);
    let tags = s.dest.tag_map(DEST);
    assert!(tags.contains_key("a") && !tags.contains_key("gone"));
    assert!(!tags.contains_key("b"));
}

#[tokio::test(start_paused = true)]
async fn the_timeout_bounds_a_stalled_run() {
    let s = setup();
    let m = s.source.seed_image(SRC, Some("v1"), "amd64", &[b"stalls"]);
    s.source.inject(Fault::StallBlob(blobs_of(&m)[1].clone()));
    let mut c = config(&["v1"]);
    c.timeout = Duration::from_secs(5);
    let report = s.run(&c).await;
    assert_eq!(report.outcome, Outcome::Failed);
    assert!(
        report.error.as_deref().unwrap().contains("timeout"),
        "{report:?}"
    );
    // The run's own bound, told apart from a registry that timed out as data.
    let failure = report.failure.as_ref().unwrap();
    assert_eq!(failure.kind, ErrorKind::Timeout, "{failure:?}");
    assert_eq!(
        failure.detail,
        Some(crate::Detail::RunTimeout),
        "{failure:?}"
    );
    assert_eq!(failure.side, None, "{failure:?}");
    assert!(s.dest.tag_map(DEST).is_empty());
}

#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<MirrorEvent>>);

#[async_trait]
impl Notifier for Recorder {
    async fn notify(&self, event: &MirrorEvent) -> Result<()> {
        self.0.lock().unwrap().push(event.clone());
        Ok(())
    }
}

#[derive(Debug)]
struct Broken;

#[async_trait]
impl Notifier for Broken {
    async fn notify(&self, _: &MirrorEvent) -> Result<()> {
        Err(Error::new(ErrorKind::Network, "down"))
    }
}

#[tokio::test]
async fn events_carry_the_payload_and_a_failing_notifier_changes_nothing() {
    let recorder = Arc::new(Recorder::default());
    let s = setup_with(|b| b.notifier(Arc::new(Broken)).notifier(recorder.clone()));
    s.source.seed_image(SRC, Some("v1"), "amd64", &[b"1"]);
    let mut c = config(&["v1"]);
    c.source_credentials = Some(crate::config::Credentials::new("robot", "s3cr3t-pass"));
    let report = s.run(&c).await;
    assert!(report.is_success());
    let events = recorder.0.lock().unwrap().clone();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].event, EventKind::SyncStarted);
    let done = &events[1];
    assert_eq!(done.event, EventKind::SyncSucceeded);
    assert_eq!(done.mirror_id, DEST);
    assert_eq!(done.source, format!("src.example/{SRC}"));
    assert_eq!(done.patterns, ["v1"]);
    assert_eq!(done.tags_synced, ["v1"]);
    assert_eq!(done.bytes_copied, report.bytes_copied);
    assert!(done.bytes_copied > 0);
    assert!(!serde_json::to_string(&events).unwrap().contains("s3cr3t"));
}

#[tokio::test]
async fn a_run_matching_no_tag_succeeds_with_a_note_and_no_error_in_its_event_and_log() {
    let recorder = Arc::new(Recorder::default());
    let s = setup_with(|b| b.notifier(recorder.clone()));
    s.source.seed_image(SRC, Some("v1"), "amd64", &[b"1"]);
    s.mirror
        .create_mirror(config(&["nomatch"]).validated().unwrap())
        .await
        .unwrap();
    let report = s.mirror.sync(DEST).await.unwrap();
    assert!(report.is_success() && report.error.is_none(), "{report:?}");
    let note = r#"no tags matched (the source has 1 tag; patterns ["nomatch"])"#;
    assert_eq!(report.note.as_deref(), Some(note));

    let events = recorder.0.lock().unwrap().clone();
    let done = &events[1];
    assert_eq!(done.event, EventKind::SyncSucceeded);
    assert_eq!(
        (done.error.as_deref(), done.note.as_deref()),
        (None, Some(note))
    );
    let payload = serde_json::to_value(done).unwrap();
    assert_eq!(payload["error"], serde_json::Value::Null);
    assert_eq!(payload["note"], note);
    let last = s.mirror.logs(DEST, 1, None).await.unwrap().remove(0);
    assert_eq!(last.kind, LogKind::SyncSucceeded);
    assert!(last.message.ends_with(note), "{last:?}");
}

#[tokio::test]
async fn stored_sync_claims_logs_and_releases() {
    let recorder = Arc::new(Recorder::default());
    let s = setup_with(|b| b.notifier(recorder.clone()));
    s.source.seed_image(SRC, Some("v1"), "amd64", &[b"1"]);
    s.source.seed_image(SRC, Some("bad"), "amd64", &[b"2"]);
    s.source
        .inject(Fault::UnreadableBlob(crate::reference::Digest::of(b"2")));
    let invalid = config(&["v3.[12"]).validated().unwrap_err();
    assert_eq!(invalid.kind(), ErrorKind::InvalidPattern);
    s.mirror
        .create_mirror(config(&["*"]).validated().unwrap())
        .await
        .unwrap();

    let report = s.mirror.sync(DEST).await.unwrap();
    assert_eq!(report.failed_tags(), ["bad"]);
    let record = s.mirror.get(DEST).await.unwrap();
    assert_eq!(record.state.status, SyncStatus::Fail);
    assert!(record.state.lease_owner.is_none());
    assert!(s.store.tag_record(DEST).await.unwrap().is_none());
    let logs = s.mirror.logs(DEST, 10, None).await.unwrap();
    let kinds: Vec<LogKind> = logs.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            LogKind::SyncFailed,
            LogKind::TagFailed,
            LogKind::TagSynced,
            LogKind::SyncStarted
        ]
    );
    // The failed tag's entry and the run's carry the failure as data; the others none.
    let read = |f: &Failure| (f.kind, f.side, f.phase);
    let tag = (ErrorKind::Network, Some(Side::Source), Some(Phase::Stage));
    assert_eq!(logs[1].failure.as_ref().map(read), Some(tag), "{logs:?}");
    assert_eq!(logs[0].failure.as_ref().map(read), Some(tag), "{logs:?}");
    assert!(logs[2].failure.is_none() && logs[3].failure.is_none());
    assert_eq!(report.tags_failed[0].failure.kind, ErrorKind::Network);
    let events = recorder.0.lock().unwrap().clone();
    assert_eq!(events[1].event, EventKind::SyncFailed);
    assert_eq!(events[1].tags_failed, ["bad"]);
    assert!(events[1].error.as_deref().unwrap().contains("bad"));
    // The webhook payload's failures, as the report has them.
    assert_eq!(events[1].tag_failures, report.tags_failed);
    assert_eq!(events[1].failure, report.failure);
    assert!(events[0].failure.is_none() && events[0].tag_failures.is_empty());
}

#[tokio::test]
async fn a_dead_workers_run_is_restored_with_all_or_nothing() {
    let s = setup();
    let old = s.dest.seed_image(DEST, Some("v1"), "amd64", &[b"old"]);
    let mut c = config(&["v*"]);
    c.rollback = RollbackMode::AllOrNothing;
    s.mirror
        .create_mirror(c.validated().unwrap())
        .await
        .unwrap();
    // A dead worker recorded {v1: old}, then moved v1 and created v2.
    let record: TagRecord = [("v1".to_owned(), old.digest.clone())].into();
    s.store.save_tag_record(DEST, &record).await.unwrap();
    let moved = s
        .dest
        .seed_image(DEST, Some("v1"), "amd64", &[b"half-done"]);
    s.dest.put_manifest(DEST, Some("v2"), &moved);
    // This run cannot list the source, so the destination shows only the restore.
    s.source.seed_image(SRC, Some("v1"), "amd64", &[b"new"]);
    s.source.inject(Fault::ListTags { repo: SRC.into() });

    let report = s.mirror.sync(DEST).await.unwrap();
    assert_eq!(report.outcome, Outcome::Failed);
    assert_eq!(s.dest.tag_map(DEST), record);
    assert!(s.store.tag_record(DEST).await.unwrap().is_none());
    let logs = s.mirror.logs(DEST, 10, None).await.unwrap();
    assert!(
        logs.iter()
            .any(|e| e.kind == LogKind::TagRestored && e.tag.as_deref() == Some("v1"))
    );
}

#[tokio::test]
async fn a_cancel_status_seen_on_renewal_stops_the_run() {
    // Renewed every 200 ms; a lease much shorter would stop the run at its fence whenever the
    // machine is busy for a quarter of it.
    let s = setup_with(|b| b.lease(Duration::from_millis(600)));
    let m = s.source.seed_image(SRC, Some("v1"), "amd64", &[b"stalls"]);
    s.source.inject(Fault::StallBlob(blobs_of(&m)[1].clone()));
    s.mirror
        .create_mirror(config(&["v1"]).validated().unwrap())
        .await
        .unwrap();
    let mirror = s.mirror.clone();
    let run = tokio::spawn(async move { mirror.sync(DEST).await });
    // Wait until the run holds the claim, then cancel it through the store.
    loop {
        if s.mirror.get(DEST).await.unwrap().state.status == SyncStatus::Syncing {
            break;
        }
        tokio::task::yield_now().await;
    }
    s.mirror.cancel(DEST).await.unwrap();
    // Give the renewal (every 200 ms) time to see CANCEL, then let the unit in flight finish.
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.source.heal(&Fault::StallBlob(blobs_of(&m)[1].clone()));
    let report = run.await.unwrap().unwrap();
    assert_eq!(report.outcome, Outcome::Cancelled, "{report:?}");
    assert_eq!(
        s.mirror.get(DEST).await.unwrap().state.status,
        SyncStatus::Cancel
    );
}

#[tokio::test]
async fn an_interrupted_run_keeps_its_record_and_the_next_run_completes_from_it() {
    let s = setup();
    let old = s.dest.seed_image(DEST, Some("a"), "amd64", &[b"old a"]);
    for t in ["a", "b", "c"] {
        s.source.seed_image(SRC, Some(t), "amd64", &[t.as_bytes()]);
    }
    let mut c = config(&["*"]);
    c.rollback = RollbackMode::AllOrNothing;
    s.mirror
        .create_mirror(c.validated().unwrap())
        .await
        .unwrap();
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    let options = SyncOptions {
        cancel,
        progress: Progress::new(move |e| {
            if let ProgressEvent::TagFinished {
                status: TagStatus::Synced,
                ..
            } = e
            {
                trigger.cancel();
            }
        }),
        ..SyncOptions::default()
    };
    let report = s.mirror.sync_with(DEST, options).await.unwrap();
    assert_eq!(report.outcome, Outcome::Cancelled);
    assert_eq!(report.tags_synced, ["a"]);
    let record = s
        .store
        .tag_record(DEST)
        .await
        .unwrap()
        .expect("record kept");
    assert_eq!(record, [("a".to_owned(), old.digest.clone())].into());
    // Interrupted, not cancelled: due again at once.
    assert_eq!(
        s.mirror.get(DEST).await.unwrap().state.status,
        SyncStatus::SyncNow
    );

    let report = s.mirror.sync(DEST).await.unwrap();
    assert!(report.is_success(), "{report:?}");
    assert_eq!(report.tags_synced, ["a", "b", "c"]);
    assert_eq!(s.dest.tag_map(DEST).len(), 3);
    assert!(s.store.tag_record(DEST).await.unwrap().is_none());
    let logs = s.mirror.logs(DEST, 20, None).await.unwrap();
    assert!(logs.iter().any(|e| e.kind == LogKind::TagRestored));
}

#[tokio::test]
async fn a_lost_claim_aborts_the_run_and_leaves_the_destination_to_the_new_holder() {
    let s = setup_with(|b| b.lease(Duration::from_millis(600)));
    let m = s.source.seed_image(SRC, Some("v1"), "amd64", &[b"stalls"]);
    let layer = blobs_of(&m)[1].clone();
    s.source.inject(Fault::StallBlob(layer.clone()));
    s.mirror
        .create_mirror(config(&["v1"]).validated().unwrap())
        .await
        .unwrap();
    let mirror = s.mirror.clone();
    let run = tokio::spawn(async move { mirror.sync(DEST).await });
    while s.source.blob_reads(&layer) == 0 {
        tokio::task::yield_now().await;
    }
    // Another worker claims the mirror once the lease looks expired to it.
    let later = OffsetDateTime::now_utc() + Duration::from_secs(3600);
    s.store
        .claim(DEST, "other-worker", later, Duration::from_secs(60))
        .await
        .unwrap();
    let report = run.await.unwrap().unwrap();
    assert_eq!(report.outcome, Outcome::Failed, "{report:?}");
    assert!(
        report.error.as_deref().unwrap().contains("lost"),
        "{report:?}"
    );
    assert!(s.dest.tag_map(DEST).is_empty());
    let record = s.mirror.get(DEST).await.unwrap();
    assert_eq!(record.state.lease_owner.as_deref(), Some("other-worker"));
}

#[derive(Debug)]
struct Unreachable;

impl SourceConnector for Unreachable {
    fn connect(&self, _: &MirrorConfig) -> Result<Arc<dyn crate::registry::SourceRegistry>> {
        Err(Error::new(
            ErrorKind::InvalidConfig,
            "proxy URL is malformed",
        ))
    }
}

#[tokio::test]
async fn a_source_that_cannot_be_connected_fails_the_run_with_a_full_log() {
    let s = setup_with(|b| b.connector(Arc::new(Unreachable)));
    s.mirror
        .create_mirror(config(&["*"]).validated().unwrap())
        .await
        .unwrap();
    let report = s.mirror.sync(DEST).await.unwrap();
    assert_eq!(report.outcome, Outcome::Failed);
    assert!(
        report
            .error
            .as_deref()
            .unwrap()
            .contains("connecting to the source")
    );
    let kinds: Vec<LogKind> = s
        .mirror
        .logs(DEST, 10, None)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, [LogKind::SyncFailed, LogKind::SyncStarted]);
    assert_eq!(
        s.mirror.get(DEST).await.unwrap().state.status,
        SyncStatus::Fail
    );
}

#[tokio::test]
async fn dropping_the_sync_future_stops_its_background_copies() {
    let s = setup();
    let m = s
        .source
        .seed_image(SRC, Some("v1"), "amd64", &[b"stalls", b"second"]);
    let blobs = blobs_of(&m);
    s.source.inject(Fault::StallBlob(blobs[1].clone()));
    let c = config(&["v1"]);
    let sync = s.mirror.sync_config(&c, SyncOptions::default());
    // Run it until the stalled blob is being read, then drop it.
    tokio::select! {
        _ = sync => panic!("the sync cannot finish while its blob stalls"),
        _ = async {
            while s.source.blob_reads(&blobs[1]) == 0 {
                tokio::task::yield_now().await;
            }
        } => {}
    }
    s.source.heal(&Fault::StallBlob(blobs[1].clone()));
    // Give any task that kept running ample time to push the blob.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!s.dest.has_blob(DEST, &blobs[1]).await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn blobs_of_many_tags_stream_at_once_within_the_pool() {
    let s = setup_with(|b| b.concurrency(3));
    s.source.set_chunk_delay(Some(Duration::from_millis(5)));
    let big = |i: u8| vec![i; 40_000];
    for i in 0..15u8 {
        s.source
            .seed_image(SRC, Some(&format!("t{i}")), "amd64", &[&big(i)]);
    }
    let report = s.run(&config(&["t*"])).await;
    assert!(report.is_success(), "{report:?}");
    // One pool of small copies for the whole run: several tags' blobs (30 configs and layers)
    // at once, never more than the pool (eight per unit; this registry has no cap of its own).
    assert_eq!(
        s.source.counters().max_concurrent_blob_reads,
        2 * crate::registry::http::metadata_concurrency(3)
    );
}

#[tokio::test(start_paused = true)]
async fn big_blobs_stream_at_once_within_the_units() {
    let s = setup_with(|b| b.concurrency(3));
    s.source.set_chunk_delay(Some(Duration::from_millis(5)));
    let layers: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 300_000]).collect();
    let layers: Vec<&[u8]> = layers.iter().map(Vec::as_slice).collect();
    s.source.seed_image(SRC, Some("t"), "amd64", &layers);
    let report = s.run(&config(&["t"])).await;
    assert!(report.is_success(), "{report:?}");
    // Three big layers at once (the units), and the small config beside them.
    assert_eq!(s.source.counters().max_concurrent_blob_reads, 3 + 1);
}

/// A destination that stores whatever it is sent (it trusts the engine to verify).
#[derive(Debug)]
struct Careless(MemoryRegistry);

#[async_trait]
impl crate::registry::DestRegistry for Careless {
    async fn list_tags(&self, repo: &str) -> Result<Vec<String>> {
        crate::registry::DestRegistry::list_tags(&self.0, repo).await
    }
    async fn head_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<crate::registry::ManifestHead>> {
        crate::registry::DestRegistry::head_manifest(&self.0, repo, reference).await
    }
    async fn get_manifest(&self, repo: &str, reference: &str) -> Result<Manifest> {
        crate::registry::DestRegistry::get_manifest(&self.0, repo, reference).await
    }
    async fn blob_size(
        &self,
        repo: &str,
        digest: &crate::reference::Digest,
    ) -> Result<Option<u64>> {
        self.0.blob_size(repo, digest).await
    }
    async fn mount_blob(
        &self,
        repo: &str,
        digest: &crate::reference::Digest,
        from: &str,
    ) -> Result<bool> {
        self.0.mount_blob(repo, digest, from).await
    }
    async fn push_blob(
        &self,
        repo: &str,
        digest: &crate::reference::Digest,
        _size: u64,
        data: crate::registry::BlobStream,
    ) -> Result<()> {
        use futures::TryStreamExt;
        let chunks: Vec<bytes::Bytes> = data.try_collect().await?;
        // Stored under the claimed digest, unchecked.
        self.0.put_blob_as(repo, digest, chunks.concat());
        Ok(())
    }
    async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        manifest: &Manifest,
    ) -> Result<crate::reference::Digest> {
        self.0.push_manifest(repo, reference, manifest).await
    }
    async fn delete_tag(&self, repo: &str, tag: &str) -> Result<()> {
        self.0.delete_tag(repo, tag).await
    }
}

#[tokio::test]
async fn the_engine_verifies_blobs_for_destinations_that_do_not() {
    let s = setup();
    let dest = MemoryRegistry::new();
    let mirror = Mirror::builder()
        .connector(Arc::new(StaticConnector(Arc::new(s.source.clone()))))
        .destination(Arc::new(Careless(dest.clone())))
        .build()
        .unwrap();
    let bad = s
        .source
        .seed_image(SRC, Some("bad"), "amd64", &[b"to be corrupted"]);
    let layer = blobs_of(&bad)[1].clone();
    s.source.inject(Fault::CorruptBlob(layer.clone()));
    let report = mirror
        .sync_config(&config(&["*"]), SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(report.failed_tags(), ["bad"]);
    assert!(
        report.tags_failed[0].reason.contains("corrupt"),
        "{report:?}"
    );
    assert!(!dest.has_blob(DEST, &layer).await.unwrap());
    assert!(dest.tag_map(DEST).is_empty());
}

#[tokio::test]
async fn a_tag_that_cannot_be_pruned_is_not_counted_as_a_selected_tag() {
    let s = setup();
    s.source.seed_image(SRC, Some("v1"), "amd64", &[b"v1"]);
    s.dest.seed_image(DEST, Some("old"), "amd64", &[b"old"]);
    s.dest.inject(Fault::DeleteTag {
        repo: DEST.into(),
        tag: "old".into(),
    });
    let report = s.run(&config(&["v1"])).await;
    assert_eq!(report.outcome, Outcome::Failed, "{report:?}");
    assert_eq!(report.tags_synced, ["v1"]);
    let error = report.error.unwrap();
    assert_eq!(
        error,
        "1 unselected tag could not be deleted: old; partial sync: the other tags and pruning stand"
    );
}

#[test]
fn small_reads_get_four_slots_per_unit_up_to_32_or_the_concurrency() {
    let slots: Vec<usize> = [1, 2, 8, 16, 64]
        .into_iter()
        .map(super::metadata_concurrency)
        .collect();
    assert_eq!(slots, [4, 8, 32, 32, 64]);
}

#[tokio::test]
async fn a_mirror_without_a_destination_manages_but_never_claims() {
    let s = setup();
    s.source.seed_image(SRC, Some("v1"), "amd64", &[b"layer"]);
    let manage = Mirror::builder()
        .state(s.store.clone())
        .settings(EngineSettings {
            default_rollback: RollbackMode::AllOrNothing,
            default_retry_backoff: Duration::from_secs(7),
            ..EngineSettings::default()
        })
        .build()
        .unwrap();
    let settings = crate::config::MirrorSettings::new(DEST, format!("src.example/{SRC}"), &["v*"]);
    // What the settings leave out comes from the engine's defaults.
    let created = manage.add(settings).await.unwrap();
    assert_eq!(created.config.rollback, RollbackMode::AllOrNothing);
    assert_eq!(created.config.retry_backoff, Duration::from_secs(7));
    for e in [
        manage.sync(DEST).await.unwrap_err(),
        manage.preview(DEST).await.map(drop).unwrap_err(),
        manage
            .sync_config(&config(&["v*"]), SyncOptions::default())
            .await
            .unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
        assert!(
            e.message().starts_with("this Mirror has no destination"),
            "{e}"
        );
    }
    let view = manage.view(DEST).await.unwrap();
    assert_eq!(view.state.status, SyncStatus::NeverRun, "never claimed");
    assert_eq!(view.state.lease_token, 0);

    // The same store through an engine with a destination: preview by id, then sync.
    let preview = s.mirror.preview(DEST).await.unwrap();
    assert_eq!(preview.tags.len(), 1);
    assert_eq!(preview.tags[0].action, PreviewAction::Copy);
    assert!(s.dest.tag_map(DEST).is_empty(), "a preview writes nothing");
    assert!(s.mirror.sync(DEST).await.unwrap().is_success());
    // A later run's many tag entries (more than a page of the log) do not hide the report.
    let entries: Vec<crate::state::LogEntry> = (0..600)
        .map(|n| crate::state::LogEntry {
            seq: 0,
            mirror_id: DEST.into(),
            time: time::OffsetDateTime::now_utc(),
            kind: crate::state::LogKind::TagSynced,
            tag: Some(format!("t{n}")),
            digest: None,
            message: "synced".into(),
            failure: None,
        })
        .collect();
    s.store.append_log(&entries).await.unwrap();
    let views = manage.views().await.unwrap();
    assert_eq!(views.len(), 1);
    let report = views[0].last_report.as_deref().unwrap_or_default();
    assert!(report.starts_with("succeeded: 1 synced"), "{report}");
    let view = manage.view(DEST).await.unwrap();
    assert_eq!(view.last_report, views[0].last_report);
}

#[tokio::test]
async fn a_named_destination_is_opened_at_build_and_names_the_robot() {
    let dir = tempfile::tempdir().unwrap();
    let mirror = Mirror::builder()
        .destination_spec(crate::Destination::layouts(dir.path()))
        .build()
        .unwrap();
    assert_eq!(mirror.settings().robot, None);
    let mut registry = crate::Destination::registry("registry.example:5000");
    registry.credentials = Some(crate::Credentials::new("robot", "secret"));
    let mirror = Mirror::builder()
        .destination_spec(registry.clone())
        .build()
        .unwrap();
    assert_eq!(mirror.settings().robot.as_deref(), Some("robot"));
    // Settings naming a robot keep it.
    let mirror = Mirror::builder()
        .destination_spec(registry.clone())
        .settings(EngineSettings {
            robot: Some("other".into()),
            ..EngineSettings::default()
        })
        .build()
        .unwrap();
    assert_eq!(mirror.settings().robot.as_deref(), Some("other"));
    let e = Mirror::builder()
        .destination_spec(registry)
        .destination(Arc::new(MemoryRegistry::new()))
        .build()
        .unwrap_err();
    assert!(
        e.message()
            .contains("either destination or destination_spec"),
        "{e}"
    );
    let e = Mirror::builder()
        .destination_spec(crate::Destination::registry("r.io/ns"))
        .build()
        .unwrap_err();
    assert!(e.message().starts_with("destination: registry: "), "{e}");
}

#[tokio::test]
async fn declaring_reports_each_mirror_and_an_invalid_one_is_never_valid() {
    let s = setup();
    let mut a = config(&["v*"]);
    a.source_credentials = Some(crate::Credentials::new("u", "p"));
    let declared = s.mirror.declare(&[a.clone().validated().unwrap()]).await;
    assert_eq!(declared.unwrap(), [Declaration::Created]);
    a.source_credentials = Some(crate::Credentials::new("u", "q"));
    let declared = s.mirror.declare(&[a.clone().validated().unwrap()]).await;
    assert_eq!(
        declared.unwrap(),
        [Declaration::Updated {
            changed: vec!["source_credentials".into()]
        }]
    );
    a.tags = vec!["v3.[12".into()];
    let e = a.validated().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidPattern);
}

/// A source that breaks [`SourceRegistry`]'s promise for one digest: it answers it with another
/// manifest, unverified.
#[derive(Debug)]
struct Unverified {
    inner: MemoryRegistry,
    digest: Digest,
    served: Manifest,
}

#[async_trait]
impl SourceRegistry for Unverified {
    async fn list_tags(&self, repo: &str) -> Result<Vec<String>> {
        SourceRegistry::list_tags(&self.inner, repo).await
    }

    async fn head_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<crate::registry::ManifestHead>> {
        SourceRegistry::head_manifest(&self.inner, repo, reference).await
    }

    async fn get_manifest(&self, repo: &str, reference: &str) -> Result<Manifest> {
        if reference == self.digest.as_str() {
            return Ok(self.served.clone());
        }
        SourceRegistry::get_manifest(&self.inner, repo, reference).await
    }

    async fn get_blob(&self, repo: &str, digest: &Digest) -> Result<crate::registry::BlobStream> {
        SourceRegistry::get_blob(&self.inner, repo, digest).await
    }
}

#[tokio::test]
async fn a_preview_verifies_child_manifests_as_staging_does() {
    let source = MemoryRegistry::new();
    let named = source.seed_image(SRC, None, "amd64", &[b"named layer"]);
    let served = source.seed_image(SRC, Some("v1"), "amd64", &[b"served layer"]);
    source.seed_index(SRC, Some("multi"), &[("amd64", &named)]);
    let unverified = Unverified {
        inner: source,
        digest: named.digest.clone(),
        served,
    };
    let dest = MemoryRegistry::new();
    let mirror = Mirror::builder()
        .connector(Arc::new(StaticConnector(Arc::new(unverified))))
        .destination(Arc::new(dest.clone()))
        .build()
        .unwrap();
    let c = config(&["*"]);
    let preview = mirror
        .preview_config(&c, SyncOptions::default())
        .await
        .unwrap();
    let multi = &preview.tags[0];
    assert_eq!(multi.tag, "multi");
    assert_eq!(multi.action, PreviewAction::Fail, "{preview:#?}");
    let why = multi.reason.as_deref().unwrap();
    assert!(why.contains(named.digest.as_str()), "{why}");
    assert!(why.starts_with("DigestMismatch:"), "{why}");

    let report = mirror
        .sync_config(&c, SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(report.tags_synced, ["v1"]);
    assert_eq!(report.tags_failed.len(), 1, "{report:#?}");
    assert_eq!(report.tags_failed[0].tag, "multi");
    assert!(report.tags_failed[0].reason.starts_with("DigestMismatch:"));
}

#[tokio::test]
async fn staging_keeps_each_manifest_once_and_the_plan_none() {
    let s = setup();
    let one = s.source.seed_image(SRC, Some("a"), "amd64", &[b"one"]);
    s.source.put_manifest(SRC, Some("b"), &one);
    s.source.seed_image(SRC, Some("c"), "amd64", &[b"two"]);
    let run = Arc::new(
        s.mirror
            .start_run(&config(&["*"]), SyncOptions::default(), None)
            .unwrap(),
    );
    let (tags, dest) = run.list_both_sides().await.unwrap();
    let selected = run.filter.select(&tags);
    let mut plan = run.plan_all(&tags, selected, dest.unwrap()).await.unwrap();
    // The destination lacks every tag, so planning fetched each manifest.
    assert!(
        plan.tags
            .iter()
            .all(|(_, a)| matches!(a, plan::Action::Copy(_, Some(_))))
    );
    let staged = run.stage_all(&mut plan).await;
    // The fetched manifests moved into staging: the plan keeps none of them.
    assert!(
        plan.tags
            .iter()
            .all(|(_, a)| matches!(a, plan::Action::Copy(_, None)))
    );
    let ready: Vec<Arc<Manifest>> = staged
        .into_iter()
        .map(|s| match s {
            Some(Ok(context::Staged::Ready(m))) => m,
            other => panic!("staged {other:?}"),
        })
        .collect();
    // Tags a and b point at one manifest: one copy, shared with the run's cell for it.
    assert!(Arc::ptr_eq(&ready[0], &ready[1]));
    assert!(!Arc::ptr_eq(&ready[0], &ready[2]));
    assert_eq!(ready[0].digest, one.digest);
    let cell = context::cell(&run.tops, &one.digest);
    match cell.get() {
        Some(Ok(context::Staged::Ready(m))) => assert!(Arc::ptr_eq(m, &ready[0])),
        other => panic!("cell {other:?}"),
    }
}
