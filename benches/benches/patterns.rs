//! Tag selection throughput: 100 000 generated tags through a filter with globs, a regex, a
//! semver range and an exclusion — the shape of a large upstream repository's tag list.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use regmirror::TagFilter;

const TAGS: usize = 100_000;
const PATTERNS: &str =
    r"v3.*, 1.2[0-9].*-alpine, regex:release-\d{4}-\d{2}, semver:>=2.5, <3, !*-rc*";

/// Tags like a busy repository's: semver releases with and without `v`, release candidates,
/// flavoured variants, dated releases and commit-hash builds.
fn tags() -> Vec<String> {
    (0..TAGS)
        .map(|i| {
            let (major, minor, patch) = (i % 5, (i / 5) % 40, (i / 200) % 500);
            match i % 6 {
                0 => format!("v{major}.{minor}.{patch}"),
                1 => format!("{major}.{minor}.{patch}"),
                2 => format!("v{major}.{minor}.{patch}-rc{}", i % 7),
                3 => format!("{major}.{minor}.{patch}-alpine"),
                4 => format!("release-{:04}-{:02}", 2000 + i % 30, 1 + i % 12),
                _ => format!("sha-{:012x}", i.wrapping_mul(2_654_435_761)),
            }
        })
        .collect()
}

fn select(c: &mut Criterion) {
    let tags = tags();
    let filter = TagFilter::parse(PATTERNS).expect("the benchmark patterns are valid");
    let mut group = c.benchmark_group("patterns");
    group.throughput(Throughput::Elements(TAGS as u64));
    group.bench_function("select_100k_tags", |b| {
        b.iter(|| filter.select(black_box(&tags)))
    });
    group.finish();
}

fn compile(c: &mut Criterion) {
    c.bench_function("patterns/compile", |b| {
        b.iter(|| TagFilter::parse(black_box(PATTERNS)))
    });
}

criterion_group!(benches, select, compile);
criterion_main!(benches);
