//! Claiming due mirrors from a SQLite store of 1 000 and 100 000 daily mirrors (SEMANTICS.md §6:
//! "claiming from a store holding 100 000 mirrors stays fast").
//!
//! Steady state, as a worker sees a big fleet: start dates are spread over the day, the clock
//! advances between claims so that about one batch (10 mirrors) becomes due each time, and every
//! claimed mirror is released as succeeded (moving it to tomorrow). Only `claim_due` is timed.

use std::cell::Cell;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use regmirror::state::{RunOutcome, SqliteStateStore};
use regmirror::{MirrorConfig, RepositoryRef, StateStore};
use time::OffsetDateTime;
use time::macros::datetime;

const T0: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);
const DAY: Duration = Duration::from_secs(86_400);
const BATCH: usize = 10;
const LEASE: Duration = Duration::from_secs(60);

/// A store of `n` daily mirrors whose start dates are spread evenly over the first day.
async fn populate(store: &SqliteStateStore, n: usize) {
    let source: RepositoryRef = "quay.io/coreos/etcd".parse().expect("a valid reference");
    for i in 0..n {
        let mut config = MirrorConfig::new(format!("fleet/m{i:06}"), source.clone(), &["v*"]);
        config.sync_start_date = Some(T0 + DAY * i as u32 / n as u32);
        store
            .create_mirror(&config.validated().expect("a valid config"), T0)
            .await
            .expect("creating a mirror");
    }
}

fn claim_due(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let mut group = c.benchmark_group("sqlite_claim_due_batch_10");
    group.sample_size(20);
    for n in [1_000usize, 100_000] {
        let dir = tempfile::tempdir().expect("a temp dir");
        let store = rt.block_on(async {
            let store = SqliteStateStore::open(dir.path().join("state.db"))
                .await
                .expect("opening SQLite");
            populate(&store, n).await;
            store
        });
        // Each step lets about BATCH mirrors become due.
        let step = DAY * BATCH as u32 / n as u32;
        let now = Cell::new(T0);
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut timed = Duration::ZERO;
                    for _ in 0..iters {
                        now.set(now.get() + step);
                        let started = Instant::now();
                        let claims = store
                            .claim_due("bench", now.get(), BATCH, LEASE)
                            .await
                            .expect("claiming");
                        timed += started.elapsed();
                        for claim in claims {
                            store
                                .release(&claim, &RunOutcome::Success, now.get())
                                .await
                                .expect("releasing");
                        }
                    }
                    timed
                })
            });
        });
    }
    group.finish();
}

criterion_group!(benches, claim_due);
criterion_main!(benches);
