//! The mirror operations of a [`StateStore`](super::StateStore), written once over the few
//! primitives each store implements inside one of its write transactions ([`Txn`]), the way
//! OpenDAL's kv adapters are: a store brings its transaction, its locking and its row format;
//! which mirrors an operation reads, what it checks, which rule of [`crate::status`] it applies
//! and what it writes back are here, so the three stores cannot drift apart.
//!
//! The memory store runs an operation under its lock and the SQLite store on the blocking
//! thread that holds its connection: their primitives never wait, so they drive an operation to
//! its end in one poll ([`ready`]). The PostgreSQL store awaits its queries.

use std::future::Future;
use std::time::Duration;

use futures::FutureExt;
use time::OffsetDateTime;

use super::{Claim, Declaration, MirrorRecord, MirrorState, RunOutcome, SyncStatus};
use crate::config::{MirrorConfig, ValidConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::status;

/// What a store does inside one write transaction. What it reads stays locked against other
/// writers until the transaction ends (PostgreSQL locks the rows; SQLite and the memory store
/// hold the whole store), so an operation's read, check and write happen as one.
pub(crate) trait Txn {
    /// `t` as the store keeps times (the SQL stores: whole microseconds), so what an operation
    /// returns equals what it stored.
    fn stored_time(t: OffsetDateTime) -> OffsetDateTime {
        t
    }

    /// The mirror `id`, if there is one.
    async fn get(&mut self, id: &str) -> Result<Option<MirrorRecord>>;

    /// Store `record` unless a mirror with its id exists (then nothing); whether it did. Cuts
    /// `record`'s times to what is stored.
    async fn insert(&mut self, record: &mut MirrorRecord) -> Result<bool>;

    /// Replace the stored mirror with `record`; cuts `record`'s times to what is stored.
    async fn put(&mut self, record: &mut MirrorRecord) -> Result<()>;

    /// Remove the mirror `id` with its tag record and usage log.
    async fn remove(&mut self, id: &str) -> Result<()>;

    /// Up to `max` mirrors whose [`MirrorState::due_at`] is at or before `now`, earliest first
    /// (by id among equals). A store many workers share may leave out mirrors another
    /// transaction holds, rather than wait for them.
    async fn due(&mut self, now: OffsetDateTime, max: usize) -> Result<Vec<MirrorRecord>>;

    /// The mirrors due at `now` that may be waiting for their first run to be placed (at least
    /// all that [`MirrorState::first_run_unplaced`] says are), in id order.
    async fn unplaced(&mut self, now: OffsetDateTime) -> Result<Vec<MirrorRecord>>;
}

/// Run `future` to its end in one poll, for a store whose primitives never wait.
pub(crate) fn ready<T>(future: impl Future<Output = T>) -> T {
    future
        .now_or_never()
        .expect("a store whose primitives never wait waited")
}

pub(crate) fn not_found(id: &str) -> Error {
    Error::new(ErrorKind::NotFound, format!("no mirror {id:?}"))
}

async fn load(tx: &mut impl Txn, id: &str) -> Result<MirrorRecord> {
    tx.get(id).await?.ok_or_else(|| not_found(id))
}

/// A new mirror in `NEVER_RUN`; `Conflict` if the id exists.
pub(crate) async fn create<T: Txn>(
    tx: &mut T,
    config: &MirrorConfig,
    now: OffsetDateTime,
) -> Result<MirrorRecord> {
    let mut record = fresh(config, T::stored_time(now));
    if !tx.insert(&mut record).await? {
        return Err(Error::new(
            ErrorKind::Conflict,
            format!("a mirror {:?} already exists", config.id),
        ));
    }
    Ok(record)
}

fn fresh(config: &MirrorConfig, now: OffsetDateTime) -> MirrorRecord {
    MirrorRecord {
        config: config.clone(),
        state: MirrorState::new(config, now),
    }
}

/// [`StateStore::declare_mirrors`](super::StateStore::declare_mirrors): create each mirror that
/// does not exist, replace the settings of each that differs (status, schedule and logs stay).
pub(crate) async fn declare<T: Txn>(
    tx: &mut T,
    configs: &[ValidConfig],
    now: OffsetDateTime,
) -> Result<Vec<Declaration>> {
    let now = T::stored_time(now);
    // In id order, so workers declaring the same mirrors together in a store that locks rows
    // wait for each other instead of deadlocking.
    let mut order: Vec<usize> = (0..configs.len()).collect();
    order.sort_by(|a, b| configs[*a].id.cmp(&configs[*b].id));
    let mut declared = vec![Declaration::Unchanged; configs.len()];
    for i in order {
        let config: &MirrorConfig = &configs[i];
        // Insert first: where another worker is creating the mirror right now, the insert waits
        // for its commit and does nothing, and the mirror is read below (a read finds no row to
        // lock before it exists).
        if tx.insert(&mut fresh(config, now)).await? {
            declared[i] = Declaration::Created;
            continue;
        }
        let mut record = load(tx, &config.id).await?;
        if record.config == *config {
            continue;
        }
        let changed = changed_settings(&record.config, config);
        record.state.reconfigure(&record.config, config, now);
        record.config = config.clone();
        tx.put(&mut record).await?;
        declared[i] = Declaration::Updated { changed };
    }
    Ok(declared)
}

/// The names of the settings that differ between `old` and `new`.
fn changed_settings(old: &MirrorConfig, new: &MirrorConfig) -> Vec<String> {
    let fields = |c: &MirrorConfig| match serde_json::to_value(c) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let (old, new) = (fields(old), fields(new));
    new.iter()
        .filter(|(key, value)| old.get(*key) != Some(value))
        .map(|(key, _)| key.clone())
        .collect()
}

/// Replace a mirror's settings; a new start date or interval reschedules it.
pub(crate) async fn update<T: Txn>(
    tx: &mut T,
    config: &MirrorConfig,
    now: OffsetDateTime,
) -> Result<MirrorRecord> {
    let now = T::stored_time(now);
    change(tx, &config.id, |record| {
        record.state.reconfigure(&record.config, config, now);
        record.config = config.clone();
        Ok(())
    })
    .await
    .map(|(record, ())| record)
}

/// Remove a mirror no worker is running.
pub(crate) async fn delete<T: Txn>(tx: &mut T, id: &str, now: OffsetDateTime) -> Result<()> {
    let record = load(tx, id).await?;
    record.state.ensure_deletable(id, T::stored_time(now))?;
    tx.remove(id).await
}

/// Apply `f` to the mirror `id` and store the result, returning it with what `f` returned.
async fn change<R>(
    tx: &mut impl Txn,
    id: &str,
    f: impl FnOnce(&mut MirrorRecord) -> Result<R>,
) -> Result<(MirrorRecord, R)> {
    let mut record = load(tx, id).await?;
    let done = f(&mut record)?;
    tx.put(&mut record).await?;
    Ok((record, done))
}

/// Apply a transition of [`crate::status`] to the mirror `id`'s state.
pub(crate) async fn transition(
    tx: &mut impl Txn,
    id: &str,
    f: impl FnOnce(&MirrorConfig, &mut MirrorState) -> Result<()>,
) -> Result<MirrorRecord> {
    change(tx, id, |record| f(&record.config, &mut record.state))
        .await
        .map(|(record, ())| record)
}

pub(crate) async fn sync_now(tx: &mut impl Txn, id: &str) -> Result<MirrorRecord> {
    transition(tx, id, |_, state| state.sync_now(id)).await
}

pub(crate) async fn cancel(tx: &mut impl Txn, id: &str) -> Result<MirrorRecord> {
    transition(tx, id, |_, state| state.cancel(id)).await
}

/// Turn the schedule on or off; the status and a running sync are untouched.
pub(crate) async fn set_enabled(
    tx: &mut impl Txn,
    id: &str,
    enabled: bool,
) -> Result<MirrorRecord> {
    change(tx, id, |record| {
        record.config.enabled = enabled;
        Ok(())
    })
    .await
    .map(|(record, ())| record)
}

/// Place the first runs of a crowd of new mirrors ([`status::spread_first_runs`]); how many
/// moved.
pub(crate) async fn spread_first_runs<T: Txn>(
    tx: &mut T,
    now: OffsetDateTime,
    window: Duration,
) -> Result<usize> {
    let now = T::stored_time(now);
    let mut crowd = tx.unplaced(now).await?;
    status::spread_first_runs(&mut crowd, now, window);
    for record in &mut crowd {
        tx.put(record).await?;
    }
    Ok(crowd.len())
}

/// Whether [`spread_first_runs`] would place any of `crowd` (what [`Txn::unplaced`] returns,
/// read without locking): stores look first, as most polls find nothing to place.
pub(crate) fn any_to_place(
    mut crowd: Vec<MirrorRecord>,
    now: OffsetDateTime,
    window: Duration,
) -> bool {
    status::spread_first_runs(&mut crowd, now, window);
    !crowd.is_empty()
}

/// Claim up to `max` due mirrors for `worker` ([`MirrorState::claim_if_due`]).
pub(crate) async fn claim_due<T: Txn>(
    tx: &mut T,
    worker: &str,
    now: OffsetDateTime,
    max: usize,
    lease: Duration,
) -> Result<Vec<Claim>> {
    let now = T::stored_time(now);
    let due = tx.due(now, max).await?;
    let mut claims = Vec::with_capacity(due.len());
    for mut record in due {
        // Stores find due mirrors by a value derived from the state (an indexed column);
        // re-check with the rule itself.
        if !record.state.is_claimable(record.config.enabled, now) {
            continue;
        }
        let claim = record
            .state
            .claim_if_due(&record.config, worker, now, lease);
        // A claimable mirror's state changed whether or not a claim came back (a lost run with
        // no retries left moved to its next slot).
        tx.put(&mut record).await?;
        claims.extend(claim.map(|c| stored_claim(c, &record.state)));
    }
    Ok(claims)
}

/// Claim the mirror `id` whatever its schedule ([`MirrorState::claim_forced`]); `Conflict`
/// while another worker holds a live lease on it.
pub(crate) async fn claim<T: Txn>(
    tx: &mut T,
    id: &str,
    worker: &str,
    now: OffsetDateTime,
    lease: Duration,
) -> Result<Claim> {
    let now = T::stored_time(now);
    let (record, claim) = change(tx, id, |record| {
        record.state.ensure_no_live_lease(id, now)?;
        Ok(record
            .state
            .claim_forced(&record.config, worker, now, lease))
    })
    .await?;
    Ok(stored_claim(claim, &record.state))
}

/// `claim` with its expiry as stored (storing cuts the state's lease expiry to the store's
/// resolution).
fn stored_claim(mut claim: Claim, state: &MirrorState) -> Claim {
    claim.expires = state.lease_expires.unwrap_or(claim.expires);
    claim
}

/// Extend `claim`; the mirror's status (`CANCEL` tells the runner to stop).
pub(crate) async fn renew<T: Txn>(
    tx: &mut T,
    claim: &Claim,
    now: OffsetDateTime,
    lease: Duration,
) -> Result<SyncStatus> {
    let now = T::stored_time(now);
    let record = transition(tx, &claim.mirror_id, |_, state| {
        state.renew(claim, now, lease).map(drop)
    })
    .await?;
    Ok(record.state.status)
}

/// End `claim` with the run's outcome ([`MirrorState::release`]).
pub(crate) async fn release<T: Txn>(
    tx: &mut T,
    claim: &Claim,
    outcome: &RunOutcome,
    now: OffsetDateTime,
) -> Result<MirrorRecord> {
    let now = T::stored_time(now);
    transition(tx, &claim.mirror_id, |config, state| {
        state.release(claim, outcome, config, now)
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use time::macros::datetime;

    use super::*;

    /// A store at a coarser resolution than the SQL stores (whole seconds), whose index of due
    /// mirrors is stale (`due` returns every mirror), and which notes the mirrors it is asked
    /// for, in order.
    #[derive(Default)]
    struct Table {
        rows: BTreeMap<String, MirrorRecord>,
        asked: Vec<String>,
    }

    fn seconds(t: OffsetDateTime) -> OffsetDateTime {
        t.replace_nanosecond(0).unwrap()
    }

    fn cut(state: &mut MirrorState) {
        state.start_date = seconds(state.start_date);
        state.next_start = seconds(state.next_start);
        state.last_started = state.last_started.map(seconds);
        state.last_finished = state.last_finished.map(seconds);
        state.lease_expires = state.lease_expires.map(seconds);
    }

    impl Txn for Table {
        fn stored_time(t: OffsetDateTime) -> OffsetDateTime {
            seconds(t)
        }

        async fn get(&mut self, id: &str) -> Result<Option<MirrorRecord>> {
            self.asked.push(id.to_owned());
            Ok(self.rows.get(id).cloned())
        }

        async fn insert(&mut self, record: &mut MirrorRecord) -> Result<bool> {
            self.asked.push(record.config.id.clone());
            if self.rows.contains_key(&record.config.id) {
                return Ok(false);
            }
            self.put(record).await.map(|()| true)
        }

        async fn put(&mut self, record: &mut MirrorRecord) -> Result<()> {
            cut(&mut record.state);
            self.rows.insert(record.config.id.clone(), record.clone());
            Ok(())
        }

        async fn remove(&mut self, id: &str) -> Result<()> {
            self.rows.remove(id);
            Ok(())
        }

        async fn due(&mut self, _now: OffsetDateTime, max: usize) -> Result<Vec<MirrorRecord>> {
            Ok(self.rows.values().take(max).cloned().collect())
        }

        async fn unplaced(&mut self, _now: OffsetDateTime) -> Result<Vec<MirrorRecord>> {
            Ok(self.rows.values().cloned().collect())
        }
    }

    const T0: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);
    /// A time between two of [`Table`]'s.
    const LATE: OffsetDateTime = datetime!(2026-01-01 00:00:00.75 UTC);
    const LEASE: Duration = Duration::from_secs(60);

    fn config(id: &str) -> MirrorConfig {
        let mut c = MirrorConfig::new(id, "quay.io/coreos/etcd".parse().unwrap(), &["v3.*"]);
        c.sync_start_date = Some(T0);
        c
    }

    fn table(ids: &[&str]) -> Table {
        let mut table = Table::default();
        for id in ids {
            ready(create(&mut table, &config(id), T0)).unwrap();
        }
        table.asked.clear();
        table
    }

    #[test]
    fn create_refuses_an_existing_id_and_returns_what_it_stored() {
        let mut t = Table::default();
        let mut c = config("ns/a");
        c.sync_start_date = None;
        let record = ready(create(&mut t, &c, LATE)).unwrap();
        assert_eq!(record, t.rows["ns/a"]);
        assert_eq!(record.state.start_date, T0, "cut to the store's resolution");
        let e = ready(create(&mut t, &c, LATE)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert_eq!(e.message(), "a mirror \"ns/a\" already exists");
    }

    #[test]
    fn declare_goes_in_id_order_and_answers_in_the_given_order() {
        let mut t = table(&["ns/b"]);
        let mut edited = config("ns/b");
        edited.tags = vec!["*".into()];
        edited.sync_interval = Duration::from_secs(3600);
        let configs =
            [config("ns/c"), edited.clone(), config("ns/a")].map(|c| c.validated().unwrap());
        let declared = ready(declare(&mut t, &configs, T0)).unwrap();
        assert_eq!(
            declared,
            [
                Declaration::Created,
                Declaration::Updated {
                    changed: vec!["sync_interval".into(), "tags".into()]
                },
                Declaration::Created,
            ]
        );
        // Each mirror is inserted, or read after its insert found it, in id order: workers
        // declaring together lock rows in one order.
        assert_eq!(t.asked, ["ns/a", "ns/b", "ns/b", "ns/c"]);
        assert_eq!(t.rows["ns/b"].config, edited);
        let again = ready(declare(&mut t, &configs, T0)).unwrap();
        assert_eq!(again, vec![Declaration::Unchanged; 3]);
    }

    #[test]
    fn claim_due_claims_only_what_the_rule_says_is_due() {
        let mut t = table(&["ns/due", "ns/later", "ns/off"]);
        t.rows.get_mut("ns/later").unwrap().state.next_start = T0 + LEASE;
        t.rows.get_mut("ns/off").unwrap().config.enabled = false;
        let claims = ready(claim_due(&mut t, "w1", LATE, 10, LEASE)).unwrap();
        assert_eq!(claims.len(), 1, "{claims:?}");
        let claim = &claims[0];
        assert_eq!((claim.mirror_id.as_str(), claim.token), ("ns/due", 1));
        // The claim's expiry is the lease as stored, so a renewal's check agrees with it.
        assert_eq!(claim.expires, T0 + LEASE);
        assert_eq!(t.rows["ns/due"].state.lease_expires, Some(claim.expires));
        assert_eq!(t.rows["ns/due"].state.status, SyncStatus::Syncing);
        assert_eq!(t.rows["ns/later"].state.status, SyncStatus::NeverRun);
        assert!(
            ready(claim_due(&mut t, "w2", LATE, 10, LEASE))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_one_shot_claim_waits_for_a_live_lease_and_takes_over_an_expired_one() {
        let mut t = table(&["ns/a"]);
        let first = ready(claim(&mut t, "ns/a", "w1", T0, LEASE)).unwrap();
        let e = ready(claim(&mut t, "ns/a", "w2", T0, LEASE)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert!(e.message().contains("\"w1\""), "{e}");
        let later = T0 + LEASE;
        let second = ready(claim(&mut t, "ns/a", "w2", later, LEASE)).unwrap();
        assert!(second.token > first.token);
        assert!(second.taken_over.is_some(), "the lost run is counted");
        assert_eq!(t.rows["ns/a"].state.retries_remaining, 2);
        let e = ready(claim(&mut t, "ns/gone", "w1", T0, LEASE)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn a_cancel_reaches_the_runner_and_its_release() {
        let mut t = table(&["ns/a"]);
        let c = ready(claim(&mut t, "ns/a", "w1", T0, LEASE)).unwrap();
        assert_eq!(
            ready(renew(&mut t, &c, LATE, LEASE)).unwrap(),
            SyncStatus::Syncing
        );
        ready(cancel(&mut t, "ns/a")).unwrap();
        assert_eq!(
            ready(renew(&mut t, &c, LATE, LEASE)).unwrap(),
            SyncStatus::Cancel
        );
        let record = ready(release(&mut t, &c, &RunOutcome::Success, LATE)).unwrap();
        assert_eq!(record.state.status, SyncStatus::Cancel);
        assert_eq!(record, t.rows["ns/a"]);
        assert_eq!(record.state.last_finished, Some(T0));
    }

    #[test]
    fn delete_waits_for_the_run_to_stop() {
        let mut t = table(&["ns/a"]);
        ready(claim(&mut t, "ns/a", "w1", T0, LEASE)).unwrap();
        let e = ready(delete(&mut t, "ns/a", LATE)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert!(e.message().contains("cancel the run"), "{e}");
        ready(delete(&mut t, "ns/a", T0 + LEASE)).unwrap();
        assert!(t.rows.is_empty());
        let e = ready(delete(&mut t, "ns/a", T0)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn edits_keep_the_status_and_reschedule() {
        let mut t = table(&["ns/a"]);
        ready(sync_now(&mut t, "ns/a")).unwrap();
        let mut c = config("ns/a");
        c.sync_start_date = Some(T0 + LEASE);
        let record = ready(update(&mut t, &c, LATE)).unwrap();
        assert_eq!(record.state.status, SyncStatus::SyncNow);
        assert_eq!(record.state.next_start, T0 + LEASE);
        let record = ready(set_enabled(&mut t, "ns/a", false)).unwrap();
        assert!(!record.config.enabled);
        assert_eq!(record, t.rows["ns/a"]);
    }

    #[test]
    fn spreading_writes_back_only_the_mirrors_it_moved() {
        let mut t = Table::default();
        for id in ["ns/a", "ns/b", "ns/c"] {
            let mut c = config(id);
            c.sync_start_date = None;
            ready(create(&mut t, &c, T0)).unwrap();
        }
        ready(create(&mut t, &config("ns/explicit"), T0)).unwrap();
        let window = Duration::from_secs(30);
        assert_eq!(ready(spread_first_runs(&mut t, LATE, window)).unwrap(), 2);
        let next = |id: &str| t.rows[id].state.next_start;
        assert_eq!(next("ns/a"), T0);
        assert_eq!(next("ns/b"), T0 + Duration::from_secs(10));
        assert_eq!(next("ns/c"), T0 + Duration::from_secs(20));
        assert_eq!(next("ns/explicit"), T0);
        assert_eq!(ready(spread_first_runs(&mut t, LATE, window)).unwrap(), 0);
    }
}
