//! Planning a 10 000-tag mirror against in-memory registries: [`Mirror::preview_config`], the
//! engine's read-only plan of a sync (`regmirror sync --dry-run`).
//!
//! What one iteration includes: building the run (compiling the tag patterns), listing the
//! source's tags and selecting them, listing the destination's tags and HEADing each, HEADing
//! every source tag the destination has (or GETting the manifest of one it lacks), and for
//! every tag to copy parsing its manifest and asking the destination for each blob it does not
//! already know about. The registries answer from memory, so this is the engine's own cost
//! (futures, the run's concurrency pool, manifest parsing, bookkeeping), not the network's.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use regmirror::engine::{PreviewAction, StaticConnector};
use regmirror::registry::MemoryRegistry;
use regmirror::{Mirror, MirrorConfig, SyncOptions};

const TAGS: usize = 10_000;
/// Tags per group sharing a middle layer (like the images of one release line).
const GROUP: usize = 100;
const SOURCE_REPO: &str = "library/app";
const DEST_REPO: &str = "mirror/app";

/// Seeds `registry`'s `repo` with tag `i` for every `i` in `tags`: three small layers, one
/// shared by every image, one by its group of [`GROUP`] tags, one of its own. The same tag
/// always gets the same bytes, so seeding it in the destination makes it current there.
fn seed(registry: &MemoryRegistry, repo: &str, tags: impl Iterator<Item = usize>) {
    let base = b"base layer shared by every image".to_vec();
    for i in tags {
        let group = format!("group layer {}", i / GROUP).into_bytes();
        let own = format!("layer of tag {i}").into_bytes();
        registry.seed_image(repo, Some(&tag(i)), "amd64", &[&base, &group, &own]);
    }
}

fn tag(i: usize) -> String {
    format!("1.{}.{}", i / GROUP, i % GROUP)
}

fn plan(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let source = MemoryRegistry::new();
    seed(&source, SOURCE_REPO, 0..TAGS);
    let config = MirrorConfig::new(
        DEST_REPO,
        format!("registry.example/{SOURCE_REPO}")
            .parse()
            .expect("a valid reference"),
        &["*"],
    );

    let mut group = c.benchmark_group("plan_10k_tags");
    group.sample_size(10);
    group.throughput(Throughput::Elements(TAGS as u64));
    // How many of the 10 000 tags the destination already holds at the source's digest.
    for current in [0, TAGS / 2, TAGS] {
        let dest = MemoryRegistry::new();
        // Spread over the tags (every other one for half), so every group layer is there
        // unless the destination is empty.
        if let Some(step) = TAGS.checked_div(current) {
            seed(&dest, DEST_REPO, (0..TAGS).step_by(step));
        }
        let mirror = Mirror::builder()
            .connector(Arc::new(StaticConnector(Arc::new(source.clone()))))
            .destination(Arc::new(dest))
            .build()
            .expect("a mirror over two in-memory registries");

        // The plan must be the one described, or the timing means nothing.
        let preview = rt
            .block_on(mirror.preview_config(&config, SyncOptions::default()))
            .expect("planning");
        let count = |action| preview.tags.iter().filter(|t| t.action == action).count();
        assert_eq!(preview.tags.len(), TAGS);
        assert_eq!(count(PreviewAction::Current), current);
        assert_eq!(count(PreviewAction::Copy), TAGS - current);
        // Each new tag brings its config and own layer; an empty destination lacks the shared
        // layers too.
        let shared = if current == 0 { 1 + TAGS / GROUP } else { 0 };
        assert_eq!(
            preview.blobs_to_copy as usize,
            2 * (TAGS - current) + shared
        );

        let label = format!("{current}_current");
        group.bench_with_input(BenchmarkId::from_parameter(label), &config, |b, config| {
            b.iter(|| {
                rt.block_on(mirror.preview_config(black_box(config), SyncOptions::default()))
                    .expect("planning")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, plan);
criterion_main!(benches);
