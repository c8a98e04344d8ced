//! One behaviour suite for every `StateStore` (memory, SQLite, PostgreSQL): the status machine
//! and schedule of SEMANTICS.md §6, leases and fencing, secrets, the durable tag record and the
//! usage log. Each test runs against each store through the `behaviour!` macro.

use std::any::Any;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use regmirror::state::{
    Census, Claim, Declaration, LogEntry, LogKind, LogRetention, RunOutcome, TagRecord,
};
use regmirror::state::{PostgresStateStore, SqliteStateStore};
use regmirror::{
    Credentials, Digest, ErrorKind, Failure, MemoryStateStore, MirrorConfig, Phase, Side,
    StateStore, SyncStatus, ValidConfig,
};
use regmirror_tests::Postgres;
use time::OffsetDateTime;
use time::macros::datetime;

/// A store under test and whatever must live as long as it (temp dir, database cluster).
struct Harness {
    store: Arc<dyn StateStore>,
    _keep: Box<dyn Any + Send>,
}

async fn memory() -> Harness {
    Harness {
        store: Arc::new(MemoryStateStore::new()),
        _keep: Box::new(()),
    }
}

async fn sqlite() -> Harness {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStateStore::open(dir.path().join("state.db"))
        .await
        .expect("opening SQLite");
    Harness {
        store: Arc::new(store),
        _keep: Box::new(dir),
    }
}

async fn postgres() -> Harness {
    let pg = Postgres::shared();
    let store = PostgresStateStore::connect(&pg.create_database())
        .await
        .expect("connecting to PostgreSQL");
    Harness {
        store: Arc::new(store),
        _keep: Box::new(pg),
    }
}

const T0: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);
const DAY: Duration = Duration::from_secs(86_400);
const LEASE: Duration = Duration::from_secs(60);
const SECRET: &str = "p@$s\"';\\ü-secret";

fn config(id: &str) -> MirrorConfig {
    let mut c = MirrorConfig::new(id, "quay.io/coreos/etcd".parse().unwrap(), &["v3.*"]);
    c.sync_start_date = Some(T0);
    c
}

/// `c` as the stores take it (checked; the checks themselves are `MirrorConfig::validated`'s).
fn valid(c: &MirrorConfig) -> ValidConfig {
    c.clone().validated().expect("a valid test configuration")
}

fn all_valid(configs: &[MirrorConfig]) -> Vec<ValidConfig> {
    configs.iter().map(valid).collect()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn failed() -> RunOutcome {
    RunOutcome::Failed {
        error: "source unreachable".into(),
    }
}

async fn claim_one(store: &dyn StateStore, worker: &str, now: OffsetDateTime) -> Claim {
    let mut claims = store.claim_due(worker, now, 10, LEASE).await.unwrap();
    assert_eq!(claims.len(), 1, "expected exactly one due mirror at {now}");
    claims.pop().unwrap()
}

async fn nothing_due(store: &dyn StateStore, now: OffsetDateTime) {
    let claims = store.claim_due("probe", now, 10, LEASE).await.unwrap();
    assert!(
        claims.is_empty(),
        "nothing should be due at {now}: {claims:?}"
    );
}

async fn create_get_list_delete(store: &dyn StateStore) {
    let mut c = config("ns/app");
    c.source_credentials = Some(Credentials::new("bot", SECRET));
    let created = store.create_mirror(&valid(&c), T0).await.unwrap();
    assert_eq!(created.config, c);
    assert_eq!(created.state.status, SyncStatus::NeverRun);
    assert_eq!(created.state.retries_remaining, 3);
    assert_eq!(created.state.next_start, T0);
    assert_eq!(store.get_mirror("ns/app").await.unwrap(), created);

    let e = store.create_mirror(&valid(&c), T0).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");

    store
        .create_mirror(&valid(&config("aa/first")), T0)
        .await
        .unwrap();
    let listed = store.list_mirrors().await.unwrap();
    let ids: Vec<_> = listed.iter().map(|r| r.config.id.as_str()).collect();
    assert_eq!(ids, ["aa/first", "ns/app"]);
    let creds = listed[1].config.source_credentials.as_ref().unwrap();
    assert_eq!(creds.username, "bot");
    assert_eq!(creds.password, "", "listings never carry the secret");
    assert!(!format!("{listed:?}").contains(SECRET));

    store.delete_mirror("ns/app").await.unwrap();
    let e = store.get_mirror("ns/app").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.message().contains("ns/app"), "{e}");
    assert_eq!(
        store.delete_mirror("ns/app").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

async fn quay_release_sequence(store: &dyn StateStore) {
    store
        .create_mirror(&valid(&config("ns/app")), T0)
        .await
        .unwrap();
    nothing_due(store, T0 - secs(1)).await;
    let mut now = T0 + secs(5);
    for left in [2, 1] {
        let claim = claim_one(store, "w1", now).await;
        let r = store.release(&claim, &failed(), now).await.unwrap();
        assert_eq!(r.state.status, SyncStatus::Fail);
        assert_eq!(r.state.retries_remaining, left);
        assert_eq!(
            r.state.start_date, T0,
            "the start date stays while retries are left"
        );
        assert_eq!(r.state.last_error.as_deref(), Some("source unreachable"));
        nothing_due(store, now + secs(30)).await;
        now = r.state.next_start;
    }
    let claim = claim_one(store, "w1", now).await;
    let r = store.release(&claim, &failed(), now).await.unwrap();
    assert_eq!(r.state.status, SyncStatus::Fail);
    assert_eq!(
        r.state.retries_remaining, 3,
        "the third failure resets retries"
    );
    assert_eq!(
        r.state.start_date,
        T0 + DAY,
        "and moves to the next grid slot"
    );
    assert_eq!(r.state.next_start, T0 + DAY);
    nothing_due(store, T0 + DAY - secs(1)).await;

    let now = T0 + DAY + secs(7);
    let claim = claim_one(store, "w1", now).await;
    let r = store
        .release(&claim, &RunOutcome::Success, now)
        .await
        .unwrap();
    assert_eq!(r.state.status, SyncStatus::Success);
    assert_eq!(r.state.retries_remaining, 3);
    assert_eq!(r.state.next_start, T0 + DAY * 2);
    assert_eq!(r.state.last_error, None);
    assert_eq!(r.state.lease_owner, None);
}

async fn cancel_stops_runs_until_sync_now(store: &dyn StateStore) {
    store
        .create_mirror(&valid(&config("ns/app")), T0)
        .await
        .unwrap();
    let e = store.cancel("ns/app").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "cancel from NEVER_RUN: {e}");
    let claim = claim_one(store, "w1", T0).await;
    let r = store.cancel("ns/app").await.unwrap();
    assert_eq!(r.state.status, SyncStatus::Cancel);
    assert_eq!(r.state.retries_remaining, 0);
    assert_eq!(
        store.renew(&claim, T0 + secs(10), LEASE).await.unwrap(),
        SyncStatus::Cancel,
        "the running worker learns of the cancel when it renews"
    );
    let r = store
        .release(&claim, &RunOutcome::Cancelled, T0 + secs(11))
        .await
        .unwrap();
    assert_eq!(
        (r.state.status, r.state.retries_remaining),
        (SyncStatus::Cancel, 0)
    );
    nothing_due(store, T0 + DAY * 30).await;

    let r = store.sync_now("ns/app").await.unwrap();
    assert_eq!(r.state.status, SyncStatus::SyncNow);
    assert!(r.state.retries_remaining >= 1);
    claim_one(store, "w1", T0 + secs(12)).await;
}

async fn sync_now_is_refused_while_syncing_and_runs_disabled_mirrors(store: &dyn StateStore) {
    store
        .create_mirror(&valid(&config("ns/app")), T0)
        .await
        .unwrap();
    let claim = claim_one(store, "w1", T0).await;
    let e = store.sync_now("ns/app").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert!(e.message().contains("SYNCING"), "{e}");
    store
        .release(&claim, &RunOutcome::Success, T0)
        .await
        .unwrap();

    store.set_enabled("ns/app", false).await.unwrap();
    nothing_due(store, T0 + DAY * 3).await;
    store.sync_now("ns/app").await.unwrap();
    let claim = claim_one(store, "w1", T0 + secs(1)).await;
    let r = store
        .release(&claim, &RunOutcome::Success, T0 + secs(2))
        .await
        .unwrap();
    assert_eq!(r.state.status, SyncStatus::Success);
    assert!(!r.config.enabled);
    nothing_due(store, T0 + DAY * 3).await;
}

async fn cancel_of_a_pending_sync_now(store: &dyn StateStore) {
    let mut c = config("ns/app");
    c.sync_start_date = Some(T0 + DAY);
    store.create_mirror(&valid(&c), T0).await.unwrap();
    store.sync_now("ns/app").await.unwrap();
    let r = store.cancel("ns/app").await.unwrap();
    assert_eq!(
        (r.state.status, r.state.retries_remaining),
        (SyncStatus::Cancel, 0)
    );
    nothing_due(store, T0 + DAY * 2).await;
}

async fn an_expired_lease_is_claimable_and_fences_the_old_worker(store: &dyn StateStore) {
    store
        .create_mirror(&valid(&config("ns/app")), T0)
        .await
        .unwrap();
    let old = claim_one(store, "w1", T0).await;
    assert_eq!(old.expires, T0 + LEASE);
    assert_eq!(old.config, config("ns/app"));
    nothing_due(store, T0 + LEASE - secs(1)).await;
    assert_eq!(
        store.renew(&old, T0 + secs(30), LEASE).await.unwrap(),
        SyncStatus::Syncing
    );
    nothing_due(store, T0 + secs(89)).await;

    let later = T0 + secs(91);
    let new = claim_one(store, "w2", later).await;
    assert!(new.token > old.token, "{} > {}", new.token, old.token);
    let e = store.renew(&old, later, LEASE).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    let e = store
        .release(&old, &RunOutcome::Success, later)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    let r = store.get_mirror("ns/app").await.unwrap();
    assert_eq!(r.state.lease_owner.as_deref(), Some("w2"));
    assert_eq!(r.state.retries_remaining, 2, "the lost run used a retry");
    let r = store
        .release(&new, &RunOutcome::Success, later)
        .await
        .unwrap();
    assert_eq!(r.state.status, SyncStatus::Success);
}

/// A mirror whose runs keep dying with their worker (a poison mirror that crashes it, or a
/// worker killed each time) uses a retry per lost run, like a failure, and after three goes to
/// its next grid slot instead of being taken over forever. The lost run's tag record stays for
/// the run that takes it over.
async fn a_lost_run_uses_a_retry_and_three_move_it_to_the_next_slot(store: &dyn StateStore) {
    store
        .create_mirror(&valid(&config("ns/app")), T0)
        .await
        .unwrap();
    let first = claim_one(store, "w1", T0).await;
    assert_eq!(first.taken_over, None);
    let record: TagRecord = [("v3.0".to_owned(), Digest::of(b"before"))].into();
    store.save_tag_record("ns/app", &record).await.unwrap();

    let mut now = T0;
    for (worker, left, lost) in [("w2", 2, "w1"), ("w3", 1, "w2")] {
        now += LEASE + secs(1);
        let claim = claim_one(store, worker, now).await;
        assert!(claim.token > first.token);
        let taken_over = claim
            .taken_over
            .expect("the claim says it takes a lost run over");
        assert!(taken_over.contains(&format!("{lost:?}")), "{taken_over}");
        let r = store.get_mirror("ns/app").await.unwrap();
        assert_eq!(
            (r.state.status, r.state.retries_remaining),
            (SyncStatus::Syncing, left),
            "a lost run costs a retry"
        );
        assert_eq!(r.state.start_date, T0, "retries keep the start date");
        let error = r.state.last_error.unwrap();
        assert!(
            error.contains(&format!("{lost:?}")) && error.contains("lease expired"),
            "{error}"
        );
        assert_eq!(
            store.tag_record("ns/app").await.unwrap(),
            Some(record.clone())
        );
    }

    // The third lost run spends the last retry: no takeover now, the next slot instead.
    now += LEASE + secs(1);
    nothing_due(store, now).await;
    let r = store.get_mirror("ns/app").await.unwrap();
    assert_eq!(
        (r.state.status, r.state.retries_remaining),
        (SyncStatus::Fail, 3)
    );
    assert_eq!(r.state.start_date, T0 + DAY);
    assert_eq!(r.state.next_start, T0 + DAY);
    assert_eq!(r.state.lease_owner, None);
    assert!(r.state.last_error.unwrap().contains("\"w3\""));
    assert_eq!(store.tag_record("ns/app").await.unwrap(), Some(record));
    nothing_due(store, T0 + DAY - secs(1)).await;

    // The run at the next slot takes the record over; its success resets the retries.
    let claim = claim_one(store, "w4", T0 + DAY).await;
    let r = store
        .release(&claim, &RunOutcome::Success, T0 + DAY + secs(5))
        .await
        .unwrap();
    assert_eq!(
        (
            r.state.status,
            r.state.retries_remaining,
            r.state.last_error
        ),
        (SyncStatus::Success, 3, None)
    );
}

/// A lost run taken over by a forced one-shot claim is counted too; the claim still goes ahead.
async fn a_one_shot_claim_of_a_lost_run_counts_it(store: &dyn StateStore) {
    store
        .create_mirror(&valid(&config("ns/app")), T0)
        .await
        .unwrap();
    claim_one(store, "w1", T0).await;
    let later = T0 + LEASE + secs(1);
    let claim = store.claim("ns/app", "cli", later, LEASE).await.unwrap();
    assert_eq!(claim.worker, "cli");
    assert!(claim.taken_over.unwrap().contains("\"w1\""));
    let r = store.get_mirror("ns/app").await.unwrap();
    assert_eq!(
        (r.state.status, r.state.retries_remaining),
        (SyncStatus::Syncing, 2)
    );
    assert!(r.state.last_error.unwrap().contains("\"w1\""));
}

/// A running mirror is not deleted under its worker (the run would go on writing to a
/// repository no longer mirrored); once the run stops, or its worker died, it is.
async fn deleting_a_running_mirror_waits_until_it_stops(store: &dyn StateStore) {
    // Deleting checks leases against the clock, so these claims are made at the real time.
    let now = OffsetDateTime::now_utc();
    store
        .create_mirror(&valid(&config("ns/app")), T0)
        .await
        .unwrap();
    let claim = claim_one(store, "w1", now).await;
    let e = store.delete_mirror("ns/app").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(
        e.message().contains("\"w1\"") && e.message().contains("cancel the run"),
        "{e}"
    );
    store.cancel("ns/app").await.unwrap();
    let e = store.delete_mirror("ns/app").await.unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::Conflict,
        "the cancelled run still stops: {e}"
    );
    store
        .release(&claim, &RunOutcome::Cancelled, now)
        .await
        .unwrap();
    store.delete_mirror("ns/app").await.unwrap();

    // A dead worker's expired lease does not hold a delete up.
    store
        .create_mirror(&valid(&config("ns/dead")), T0)
        .await
        .unwrap();
    claim_one(store, "w2", now - LEASE * 2).await;
    store.delete_mirror("ns/dead").await.unwrap();
    assert_eq!(
        store.get_mirror("ns/dead").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

async fn a_one_shot_claim_waits_for_a_live_lease(store: &dyn StateStore) {
    store
        .create_mirror(&valid(&config("ns/app")), T0 + DAY)
        .await
        .unwrap();
    let first = store.claim("ns/app", "cli", T0, LEASE).await.unwrap();
    let e = store.claim("ns/app", "other", T0, LEASE).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert!(e.message().contains("cli"), "{e}");
    store
        .release(&first, &RunOutcome::Success, T0)
        .await
        .unwrap();
    store.claim("ns/app", "other", T0, LEASE).await.unwrap();
    assert_eq!(
        store
            .claim("ns/none", "x", T0, LEASE)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
}

async fn editing_a_running_mirror_never_wedges_it(store: &dyn StateStore) {
    store
        .create_mirror(&valid(&config("ns/app")), T0)
        .await
        .unwrap();
    let claim = claim_one(store, "w1", T0).await;
    let mut edited = config("ns/app");
    edited.tags = vec!["*".into()];
    edited.sync_interval = secs(3600);
    let r = store.update_mirror(&valid(&edited)).await.unwrap();
    assert_eq!(r.state.status, SyncStatus::Syncing, "the run goes on");
    assert_eq!(r.config, edited);
    assert_eq!(
        claim.config.tags,
        ["v3.*"],
        "the claim keeps the config it started with"
    );
    assert_eq!(
        store.renew(&claim, T0 + secs(20), LEASE).await.unwrap(),
        SyncStatus::Syncing
    );
    let r = store
        .release(&claim, &RunOutcome::Success, T0 + secs(30))
        .await
        .unwrap();
    assert_eq!(r.state.status, SyncStatus::Success);
    assert_eq!(
        r.state.next_start,
        T0 + secs(3600),
        "the new interval applies"
    );
    let next = claim_one(store, "w1", T0 + secs(3600)).await;
    assert_eq!(next.config.tags, ["*"]);

    let mut missing = config("ns/none");
    missing.tags = vec!["x".into()];
    assert_eq!(
        store
            .update_mirror(&valid(&missing))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
}

async fn a_sync_now_after_a_cancel_runs_once_the_cancelled_run_stops(store: &dyn StateStore) {
    store
        .create_mirror(&valid(&config("ns/app")), T0)
        .await
        .unwrap();
    let claim = claim_one(store, "w1", T0).await;
    store.cancel("ns/app").await.unwrap();
    store.sync_now("ns/app").await.unwrap();
    nothing_due(store, T0 + secs(10)).await;
    let r = store
        .release(&claim, &RunOutcome::Cancelled, T0 + secs(10))
        .await
        .unwrap();
    assert_eq!(r.state.status, SyncStatus::SyncNow);
    claim_one(store, "w2", T0 + secs(11)).await;
}

async fn an_interrupted_run_is_due_again_at_once(store: &dyn StateStore) {
    store
        .create_mirror(&valid(&config("ns/app")), T0)
        .await
        .unwrap();
    let claim = claim_one(store, "w1", T0).await;
    let r = store
        .release(&claim, &RunOutcome::Interrupted, T0 + secs(5))
        .await
        .unwrap();
    assert_eq!(
        (r.state.status, r.state.retries_remaining),
        (SyncStatus::SyncNow, 3)
    );
    claim_one(store, "w2", T0 + secs(6)).await;
}

async fn claims_take_the_most_overdue_first_up_to_the_batch_size(store: &dyn StateStore) {
    for i in 0..5u64 {
        let mut c = config(&format!("ns/m{i}"));
        c.sync_start_date = Some(T0 + secs(100 - i * 10));
        store.create_mirror(&valid(&c), T0).await.unwrap();
    }
    let mut off = config("ns/off");
    off.enabled = false;
    store.create_mirror(&valid(&off), T0).await.unwrap();
    let claims = store
        .claim_due("w1", T0 + secs(100), 3, LEASE)
        .await
        .unwrap();
    let ids: Vec<_> = claims.iter().map(|c| c.mirror_id.as_str()).collect();
    assert_eq!(ids, ["ns/m4", "ns/m3", "ns/m2"]);
    let claims = store
        .claim_due("w2", T0 + secs(100), 10, LEASE)
        .await
        .unwrap();
    let ids: Vec<_> = claims.iter().map(|c| c.mirror_id.as_str()).collect();
    assert_eq!(
        ids,
        ["ns/m1", "ns/m0"],
        "disabled mirrors are not scheduled"
    );
}

async fn concurrent_claimers_never_share_a_mirror(store: Arc<dyn StateStore>) {
    for i in 0..60 {
        store
            .create_mirror(&valid(&config(&format!("ns/m{i:02}"))), T0)
            .await
            .unwrap();
    }
    let mut workers = Vec::new();
    for w in 0..6 {
        let store = store.clone();
        workers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let claims = store
                    .claim_due(&format!("w{w}"), T0 + secs(1), 4, LEASE)
                    .await
                    .unwrap();
                if claims.is_empty() {
                    return mine;
                }
                mine.extend(claims.into_iter().map(|c| c.mirror_id));
            }
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    assert_eq!(all.len(), 60, "every mirror claimed once");
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 60, "none twice");
}

/// Workers placing one crowd at the same moment place it once: one of them moves all but one,
/// the others find nothing left to place.
async fn concurrent_placers_place_a_crowd_once(store: Arc<dyn StateStore>) {
    for i in 0..100 {
        let mut c = config(&format!("ns/m{i:02}"));
        c.sync_start_date = None;
        c.sync_interval = secs(3600);
        store.create_mirror(&valid(&c), T0).await.unwrap();
    }
    let placers: Vec<_> = (0..6)
        .map(|w| {
            let store = store.clone();
            let now = T0 + secs(1) + Duration::from_millis(w);
            tokio::spawn(async move { store.spread_first_runs(now, secs(100)).await })
        })
        .collect();
    let mut moved = Vec::new();
    for p in placers {
        moved.push(p.await.unwrap().unwrap());
    }
    moved.sort();
    assert_eq!(moved, [0, 0, 0, 0, 0, 99]);
    let slots: HashSet<_> = store
        .list_mirrors()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.state.next_start)
        .collect();
    assert_eq!(slots.len(), 100, "a slot each");
}

async fn the_tag_record_is_durable_until_cleared(store: &dyn StateStore) {
    store
        .create_mirror(&valid(&config("ns/app")), T0)
        .await
        .unwrap();
    assert_eq!(store.tag_record("ns/app").await.unwrap(), None);
    let record: TagRecord = [
        ("v1".to_owned(), Digest::of(b"one")),
        ("v2".to_owned(), Digest::of(b"two")),
    ]
    .into();
    store.save_tag_record("ns/app", &record).await.unwrap();
    assert_eq!(store.tag_record("ns/app").await.unwrap(), Some(record));
    let replaced: TagRecord = [("v3".to_owned(), Digest::of(b"three"))].into();
    store.save_tag_record("ns/app", &replaced).await.unwrap();
    assert_eq!(
        store.tag_record("ns/app").await.unwrap(),
        Some(replaced.clone())
    );
    store.clear_tag_record("ns/app").await.unwrap();
    assert_eq!(store.tag_record("ns/app").await.unwrap(), None);

    store.save_tag_record("ns/app", &replaced).await.unwrap();
    store.delete_mirror("ns/app").await.unwrap();
    assert_eq!(store.tag_record("ns/app").await.unwrap(), None);
    assert_eq!(
        store
            .save_tag_record("ns/none", &replaced)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
}

fn entry(id: &str, n: u64) -> LogEntry {
    LogEntry {
        seq: 0,
        mirror_id: id.to_owned(),
        time: T0 + secs(n),
        kind: if n.is_multiple_of(2) {
            LogKind::TagSynced
        } else {
            LogKind::TagFailed
        },
        tag: Some(format!("v{n}")),
        digest: n.is_multiple_of(3).then(|| Digest::of(&n.to_be_bytes())),
        message: format!("entry {n}"),
        // A failed tag's entry carries its failure as data.
        failure: (!n.is_multiple_of(2)).then(|| Failure {
            kind: ErrorKind::Unauthorized,
            side: Some(Side::Destination),
            phase: Some(Phase::Publish),
            host: Some("registry.example:5000".to_owned()),
            detail: None,
            message: format!("entry {n}"),
        }),
    }
}

async fn the_usage_log_is_newest_first_and_paginated(store: &dyn StateStore) {
    store
        .create_mirror(&valid(&config("ns/a")), T0)
        .await
        .unwrap();
    store
        .create_mirror(&valid(&config("ns/b")), T0)
        .await
        .unwrap();
    for n in 0..25 {
        store
            .append_log(&[entry("ns/a", n), entry("ns/b", 100 + n)])
            .await
            .unwrap();
    }
    let page1 = store.logs("ns/a", 10, None).await.unwrap();
    let messages: Vec<_> = page1.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(messages[..3], ["entry 24", "entry 23", "entry 22"]);
    assert_eq!(page1.len(), 10);
    assert!(page1.windows(2).all(|w| w[0].seq > w[1].seq));
    let mut expected = entry("ns/a", 24);
    expected.seq = page1[0].seq;
    assert_eq!(page1[0], expected, "entries come back as stored");
    let mut failed = entry("ns/a", 23);
    failed.seq = page1[1].seq;
    assert!(failed.failure.is_some());
    assert_eq!(page1[1], failed, "with their failure");

    let mut all = page1.clone();
    let mut before = page1.last().map(|e| e.seq);
    loop {
        let page = store.logs("ns/a", 10, before).await.unwrap();
        if page.is_empty() {
            break;
        }
        before = page.last().map(|e| e.seq);
        all.extend(page);
    }
    assert_eq!(all.len(), 25);
    assert_eq!(all.last().unwrap().message, "entry 0");
    assert!(all.iter().all(|e| e.mirror_id == "ns/a"));

    let e = store.append_log(&[entry("ns/none", 1)]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    store.delete_mirror("ns/a").await.unwrap();
    assert!(store.logs("ns/a", 10, None).await.unwrap().is_empty());
    assert_eq!(store.logs("ns/b", 100, None).await.unwrap().len(), 25);
}

async fn the_last_finish_of_each_mirror_is_one_query(store: &dyn StateStore) {
    for id in ["ns/a", "ns/b", "ns/c"] {
        store.create_mirror(&valid(&config(id)), T0).await.unwrap();
    }
    let finish = |id: &str, kind, n: u64| LogEntry {
        kind,
        failure: None,
        ..entry(id, n)
    };
    store
        .append_log(&[
            finish("ns/a", LogKind::SyncFailed, 1),
            finish("ns/a", LogKind::SyncStarted, 2),
        ])
        .await
        .unwrap();
    // ns/b's newest finish is behind more entries than a page of its log holds (a big run's
    // tags), and behind another mirror's finishes.
    store
        .append_log(&[finish("ns/b", LogKind::SyncSucceeded, 10)])
        .await
        .unwrap();
    let tags: Vec<LogEntry> = (0..600).map(|n| entry("ns/b", 100 + n)).collect();
    store.append_log(&tags).await.unwrap();
    store
        .append_log(&[
            finish("ns/b", LogKind::SyncCancelled, 20),
            finish("ns/a", LogKind::SyncSucceeded, 3),
        ])
        .await
        .unwrap();
    store.append_log(&tags).await.unwrap();
    // ns/c never finished a run.
    store
        .append_log(&[finish("ns/c", LogKind::SyncStarted, 4)])
        .await
        .unwrap();

    let last = store.last_finishes(None).await.unwrap();
    let got: Vec<(&str, LogKind, &str)> = last
        .iter()
        .map(|e| (e.mirror_id.as_str(), e.kind, e.message.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("ns/a", LogKind::SyncSucceeded, "entry 3"),
            ("ns/b", LogKind::SyncCancelled, "entry 20"),
        ]
    );
    let b = store.last_finishes(Some("ns/b")).await.unwrap();
    assert_eq!(b, last[1..], "one mirror's, as stored");
    assert!(store.last_finishes(Some("ns/c")).await.unwrap().is_empty());
    assert!(
        store
            .last_finishes(Some("ns/none"))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn the_usage_log_keeps_what_the_retention_says(store: &dyn StateStore) {
    store
        .create_mirror(&valid(&config("ns/a")), T0)
        .await
        .unwrap();
    store
        .create_mirror(&valid(&config("ns/b")), T0)
        .await
        .unwrap();
    for n in 0..30 {
        store
            .append_log(&[entry("ns/a", n), entry("ns/b", n * 2)])
            .await
            .unwrap();
    }
    let only_ten = LogRetention {
        max_entries: Some(10),
        max_age: None,
    };
    assert_eq!(store.prune_logs(&only_ten, T0).await.unwrap(), 40);
    let a = store.logs("ns/a", 100, None).await.unwrap();
    assert_eq!(a.len(), 10);
    assert_eq!(a[0].message, "entry 29", "the newest stay");
    assert_eq!(a[9].message, "entry 20");
    assert_eq!(store.logs("ns/b", 100, None).await.unwrap().len(), 10);
    assert_eq!(
        store.prune_logs(&only_ten, T0).await.unwrap(),
        0,
        "idempotent"
    );

    // ns/a's entries are T0+20s..T0+29s, ns/b's T0+40s..T0+58s: 25 s of age from T0+50s
    // keeps those from T0+25s on.
    let young = LogRetention {
        max_entries: None,
        max_age: Some(secs(25)),
    };
    store.prune_logs(&young, T0 + secs(50)).await.unwrap();
    let a = store.logs("ns/a", 100, None).await.unwrap();
    assert_eq!(a.len(), 5, "{a:?}");
    assert!(a.iter().all(|e| e.time >= T0 + secs(25)));
    assert_eq!(store.logs("ns/b", 100, None).await.unwrap().len(), 10);
}

async fn declaring_is_an_idempotent_upsert(store: Arc<dyn StateStore>) {
    let configs: Vec<MirrorConfig> = (0..10).map(|i| config(&format!("ns/m{i}"))).collect();
    // Eight workers declare the same file at once: all succeed, each mirror is created once.
    // Half list the mirrors the other way round: a store that locks rows must still not
    // deadlock.
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (store, mut configs) = (store.clone(), configs.clone());
            if i % 2 == 1 {
                configs.reverse();
            }
            tokio::spawn(async move { store.declare_mirrors(&all_valid(&configs), T0).await })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        let declared = task.await.unwrap().expect("every declaration succeeds");
        created += declared
            .iter()
            .filter(|d| **d == Declaration::Created)
            .count();
    }
    assert_eq!(created, 10);
    assert_eq!(store.list_mirrors().await.unwrap().len(), 10);

    let claims = store.claim_due("w1", T0, 1, LEASE).await.unwrap();
    assert_eq!(claims.len(), 1);
    let mut edited = configs.clone();
    edited[3].tags = vec!["v4.*".into()];
    edited.push(config("ns/new"));
    let declared = store
        .declare_mirrors(&all_valid(&edited), T0)
        .await
        .unwrap();
    assert_eq!(declared[0], Declaration::Unchanged);
    assert_eq!(
        declared[3],
        Declaration::Updated {
            changed: vec!["tags".into()]
        }
    );
    assert_eq!(declared[10], Declaration::Created);
    let running = store
        .list_mirrors()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.state.status == SyncStatus::Syncing)
        .count();
    assert_eq!(running, 1, "a declaration leaves status and leases alone");
}

/// SEMANTICS.md §6: a mirror created without a start date is due at once; a crowd of them due
/// together has its first runs spread over the window, once, and each one's grid follows
/// from its slot. Mirrors with a start date of their own are never moved.
async fn new_mirrors_are_due_at_once_and_a_crowd_is_spread(store: &dyn StateStore) {
    let hourly = |id: &str, start: Option<OffsetDateTime>| {
        let mut c = config(id);
        c.sync_interval = secs(3600);
        c.sync_start_date = start;
        c
    };
    // Alone: due at once, nothing to spread.
    store
        .create_mirror(&valid(&hourly("ns/alone", None)), T0)
        .await
        .unwrap();
    assert_eq!(store.spread_first_runs(T0, secs(100)).await.unwrap(), 0);
    let alone = claim_one(store, "w1", T0).await;
    assert_eq!(alone.mirror_id, "ns/alone");
    let r = store
        .release(&alone, &RunOutcome::Success, T0 + secs(5))
        .await
        .unwrap();
    assert_eq!(
        r.state.next_start,
        T0 + secs(3600),
        "on a grid from its creation"
    );

    // A crowd: 50 created at once, plus two with a start date of their own, due or not.
    let created = T0 + secs(10);
    for i in 0..50 {
        let c = hourly(&format!("ns/crowd{i:02}"), None);
        store.create_mirror(&valid(&c), created).await.unwrap();
    }
    let due_explicit = hourly("ns/explicit-due", Some(created));
    store
        .create_mirror(&valid(&due_explicit), created)
        .await
        .unwrap();
    let later = hourly("ns/explicit-later", Some(created + secs(30)));
    store.create_mirror(&valid(&later), created).await.unwrap();

    let now = created + secs(1);
    assert_eq!(store.spread_first_runs(now, secs(100)).await.unwrap(), 49);
    assert_eq!(
        store.spread_first_runs(now, secs(100)).await.unwrap(),
        0,
        "a crowd is placed once"
    );
    let slots: Vec<OffsetDateTime> = store
        .list_mirrors()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.config.id.starts_with("ns/crowd"))
        .map(|r| r.state.next_start)
        .collect();
    assert_eq!(slots[0], created, "the first keeps its start date");
    assert!(slots[1..].iter().all(|s| *s > now && *s <= now + secs(100)));
    assert_eq!(slots.iter().collect::<HashSet<_>>().len(), 50);

    // Now: the first of the crowd and the explicit mirror that is due; not the others.
    let claims = store.claim_due("w1", now, 100, LEASE).await.unwrap();
    let mut ids: Vec<_> = claims.iter().map(|c| c.mirror_id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["ns/crowd00", "ns/explicit-due"]);
    // Half the window later, about half the crowd is due.
    let half = store
        .claim_due("w1", now + secs(50), 100, LEASE)
        .await
        .unwrap();
    let crowd = half
        .iter()
        .filter(|c| c.mirror_id.starts_with("ns/crowd"))
        .count();
    assert!(
        (22..=27).contains(&crowd),
        "{crowd} of the crowd due at half time"
    );
    // Late, but each on a grid from its slot (the explicit one from its start date).
    for claim in half.iter().chain(&claims) {
        let r = store
            .release(claim, &RunOutcome::Success, now + secs(60))
            .await
            .unwrap();
        let expected = match claim.mirror_id.as_str() {
            "ns/crowd00" => created + secs(3600),
            "ns/explicit-due" => created + secs(3600),
            "ns/explicit-later" => created + secs(30 + 3600),
            _ => {
                slots[claim.mirror_id["ns/crowd".len()..]
                    .parse::<usize>()
                    .unwrap()]
                    + secs(3600)
            }
        };
        assert_eq!(r.state.next_start, expected, "{}", claim.mirror_id);
    }
}

async fn the_census_counts_live_workers_and_the_work(store: &dyn StateStore) {
    for i in 0..5 {
        store
            .create_mirror(&valid(&config(&format!("ns/m{i}"))), T0)
            .await
            .unwrap();
    }
    let c = store.census("w1", T0, T0 + secs(30)).await.unwrap();
    assert_eq!(
        c,
        Census {
            live_workers: 1,
            due: 5,
            running: 0
        }
    );
    assert_eq!(c.share(), 5, "a lone worker's share is everything");
    assert_eq!(store.claim_due("w1", T0, 2, LEASE).await.unwrap().len(), 2);
    let c = store
        .census("w2", T0 + secs(1), T0 + secs(31))
        .await
        .unwrap();
    assert_eq!(
        c,
        Census {
            live_workers: 2,
            due: 3,
            running: 2
        }
    );
    assert_eq!(c.share(), 3, "five mirrors over two workers, rounded up");
    // w1 was not heard from past its time: no longer counted.
    let c = store
        .census("w2", T0 + secs(40), T0 + secs(70))
        .await
        .unwrap();
    assert_eq!((c.live_workers, c.due, c.running), (1, 3, 2));
}

macro_rules! behaviour {
    ($backend:ident) => {
        mod $backend {
            behaviour!(@tests $backend:
                create_get_list_delete,
                quay_release_sequence,
                cancel_stops_runs_until_sync_now,
                sync_now_is_refused_while_syncing_and_runs_disabled_mirrors,
                cancel_of_a_pending_sync_now,
                an_expired_lease_is_claimable_and_fences_the_old_worker,
                a_one_shot_claim_waits_for_a_live_lease,
                a_lost_run_uses_a_retry_and_three_move_it_to_the_next_slot,
                a_one_shot_claim_of_a_lost_run_counts_it,
                deleting_a_running_mirror_waits_until_it_stops,
                editing_a_running_mirror_never_wedges_it,
                a_sync_now_after_a_cancel_runs_once_the_cancelled_run_stops,
                an_interrupted_run_is_due_again_at_once,
                claims_take_the_most_overdue_first_up_to_the_batch_size,
                the_tag_record_is_durable_until_cleared,
                the_usage_log_is_newest_first_and_paginated,
                the_usage_log_keeps_what_the_retention_says,
                the_last_finish_of_each_mirror_is_one_query,
                the_census_counts_live_workers_and_the_work,
                new_mirrors_are_due_at_once_and_a_crowd_is_spread,
            );

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_claimers_never_share_a_mirror() {
                let h = super::$backend().await;
                super::concurrent_claimers_never_share_a_mirror(h.store.clone()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_placers_place_a_crowd_once() {
                let h = super::$backend().await;
                super::concurrent_placers_place_a_crowd_once(h.store.clone()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn declaring_is_an_idempotent_upsert() {
                let h = super::$backend().await;
                super::declaring_is_an_idempotent_upsert(h.store.clone()).await;
            }
        }
    };
    (@tests $backend:ident: $($test:ident,)*) => {
        $(
            #[tokio::test]
            async fn $test() {
                let h = super::$backend().await;
                super::$test(&*h.store).await;
            }
        )*
    };
}

behaviour!(memory);
behaviour!(sqlite);
behaviour!(postgres);

#[tokio::test]
async fn sqlite_keeps_state_across_reopening_and_refuses_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let store = SqliteStateStore::open(&path).await.unwrap();
        let mut c = config("ns/app");
        c.source_credentials = Some(Credentials::new("bot", SECRET));
        store.create_mirror(&valid(&c), T0).await.unwrap();
        claim_one(&store, "w1", T0).await;
    }
    let store = SqliteStateStore::open(&path).await.unwrap();
    let r = store.get_mirror("ns/app").await.unwrap();
    assert_eq!(r.state.status, SyncStatus::Syncing);
    assert_eq!(r.config.source_credentials.unwrap().password, SECRET);
    drop(store);

    // Pretend a newer regmirror migrated the file.
    set_user_version(&path, 99);
    let e = SqliteStateStore::open(&path).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::State);
    assert!(e.message().contains("schema version 99"), "{e}");
}

#[tokio::test]
async fn sqlite_names_a_missing_directory_and_a_directory_given_as_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let e = SqliteStateStore::open(dir.path().join("missing/state.db"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{e}");
    assert!(
        e.message()
            .contains("missing does not exist; create it first"),
        "{e}"
    );
    let e = SqliteStateStore::open(dir.path()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{e}");
    assert!(e.message().contains("is a directory"), "{e}");
}

fn set_user_version(path: &std::path::Path, version: u32) {
    // Bump the header field directly: SQLite keeps user_version at byte offset 60, big-endian.
    use std::io::{Seek, SeekFrom, Write};
    let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.seek(SeekFrom::Start(60)).unwrap();
    file.write_all(&version.to_be_bytes()).unwrap();
}

#[tokio::test]
async fn postgres_that_accepts_and_never_answers_times_out() {
    // A listening socket nobody serves: the TCP connect succeeds, the login never ends.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let url = format!("postgres://mirror:pw@127.0.0.1:{port}/db?connect_timeout=1");
    let connecting = PostgresStateStore::connect(&url);
    let e = tokio::time::timeout(Duration::from_secs(30), connecting)
        .await
        .expect("connect gives up on its own")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(e.message().contains("did not answer in time"), "{e}");
    assert!(!e.message().contains("pw"), "{e}");
}

#[tokio::test]
async fn postgres_workers_connecting_together_migrate_once() {
    let pg = Postgres::shared();
    let url = pg.create_database();
    let connects: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PostgresStateStore::connect(&url).await })
        })
        .collect();
    let mut stores = Vec::new();
    for c in connects {
        stores.push(
            c.await
                .unwrap()
                .expect("every concurrent connect migrates or sees migrated"),
        );
    }
    stores[0]
        .create_mirror(&valid(&config("ns/app")), T0)
        .await
        .unwrap();
    let r = stores[3].get_mirror("ns/app").await.unwrap();
    assert_eq!(r.state.status, SyncStatus::NeverRun);
    assert!(!format!("{:?}", stores[0]).contains("password"));
}
