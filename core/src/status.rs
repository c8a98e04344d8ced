//! The rules of a mirror's [`SyncStatus`] and schedule (SEMANTICS.md §6): the state machine and the scheduling
//! arithmetic, pure and without I/O, so every [`StateStore`](crate::StateStore) applies exactly
//! the same rules — an operation loads a [`MirrorState`], calls one transition here, and writes it
//! back in one transaction of the store (the state layer's `ops` module, written once for every
//! store).

use std::time::Duration;

use time::OffsetDateTime;

use crate::config::MirrorConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::state::{Claim, MirrorRecord, MirrorState, RunOutcome, SyncStatus};

/// Retries a mirror gets before it waits for its next slot (Quay's `MAX_SYNC_RETRIES`).
pub const MAX_RETRIES: u32 = 3;

/// The first slot of the grid `start + k·interval` (k ≥ 0) strictly after `now`; `start` itself
/// when it is still in the future. Quay's `release_mirror` arithmetic.
pub fn next_slot(start: OffsetDateTime, interval: Duration, now: OffsetDateTime) -> OffsetDateTime {
    if start > now {
        return start;
    }
    let interval_ns = interval.as_nanos().max(1) as i128;
    let elapsed_ns = (now - start).whole_nanoseconds();
    let slots = elapsed_ns.div_euclid(interval_ns) + 1;
    at_unix_nanos(start.unix_timestamp_nanos() + slots * interval_ns)
}

/// Spread the first runs of a crowd of new mirrors (SEMANTICS.md §6): `crowd` holds mirrors due
/// at `now` whose first run has no time of its own yet ([`MirrorState::first_run_unplaced`]);
/// any others in it are left alone. The one waiting longest keeps its start date and runs at
/// once; the k-th of the n others after it becomes due at `now + window·k/n` (with `window` cut
/// to the mirror's interval), where its grid is then anchored. A lone mirror is not moved.
/// Keeps in `crowd` only the mirrors it moved, for the store to write back.
pub fn spread_first_runs(crowd: &mut Vec<MirrorRecord>, now: OffsetDateTime, window: Duration) {
    crowd.retain(|r| {
        r.state.is_claimable(r.config.enabled, now) && r.state.first_run_unplaced(&r.config)
    });
    crowd.sort_by(|a, b| {
        (a.state.next_start, &a.config.id).cmp(&(b.state.next_start, &b.config.id))
    });
    if crowd.is_empty() {
        return;
    }
    crowd.remove(0);
    let n = crowd.len() as u128 + 1;
    for (k, r) in (1u128..).zip(crowd.iter_mut()) {
        let span = window.min(r.config.sync_interval).as_nanos();
        let offset_ns = span * k / n;
        r.state.next_start = at_unix_nanos(now.unix_timestamp_nanos() + offset_ns as i128);
    }
}

/// How long to wait before retrying after the `failures`-th consecutive failure (1-based):
/// `backoff` ([`MirrorConfig::retry_backoff`]) doubled each time; zero stays zero (Quay: the
/// next poll).
pub fn retry_delay(backoff: Duration, failures: u32) -> Duration {
    backoff.saturating_mul(1u32 << failures.saturating_sub(1).min(16))
}

/// A time `ns` nanoseconds after the Unix epoch, clamped to the range `time` can represent.
fn at_unix_nanos(ns: i128) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(ns).unwrap_or(if ns < 0 {
        time::PrimitiveDateTime::MIN.assume_utc()
    } else {
        time::PrimitiveDateTime::MAX.assume_utc()
    })
}

fn conflict(id: &str, what: &str, status: SyncStatus) -> Error {
    Error::new(
        ErrorKind::Conflict,
        format!("mirror {id:?}: cannot {what} while {status}"),
    )
}

impl MirrorState {
    /// A newly created mirror: `NEVER_RUN`, three retries, starting at the given start date or,
    /// without one, now (Quay): due at once, its first run placed by the next poll
    /// ([`spread_first_runs`]).
    pub fn new(config: &MirrorConfig, now: OffsetDateTime) -> MirrorState {
        let start = config.sync_start_date.unwrap_or(now);
        MirrorState {
            status: SyncStatus::NeverRun,
            retries_remaining: MAX_RETRIES,
            start_date: start,
            next_start: start,
            last_started: None,
            last_finished: None,
            last_error: None,
            lease_owner: None,
            lease_expires: None,
            lease_token: 0,
        }
    }

    /// Whether this mirror's first run has no time of its own yet: it has no start date of its
    /// own, has never been claimed, and no poll has placed it ([`spread_first_runs`] moves
    /// `next_start` off the start date, which stays its creation time until the first claim).
    pub fn first_run_unplaced(&self, config: &MirrorConfig) -> bool {
        config.sync_start_date.is_none()
            && self.status == SyncStatus::NeverRun
            && self.last_started.is_none()
            && self.next_start == self.start_date
    }

    /// Apply an edited configuration: a changed start date or interval starts a new grid (one
    /// without a start date from the last run, or from now — due at once — if there was none);
    /// status, retries and any lease stay as they are, so an edit never disturbs a running sync.
    pub fn reconfigure(&mut self, old: &MirrorConfig, new: &MirrorConfig, now: OffsetDateTime) {
        if old.sync_start_date == new.sync_start_date && old.sync_interval == new.sync_interval {
            return;
        }
        (self.start_date, self.next_start) = match (new.sync_start_date, self.last_started) {
            (Some(start), _) => (start, start),
            (None, Some(last)) => (last, next_slot(last, new.sync_interval, now)),
            (None, None) => (now, now),
        };
    }

    /// The earliest time this mirror may be claimed, or `None` while nothing would run it
    /// (cancelled, disabled, or out of retries). Stores index this value to find due mirrors fast.
    ///
    /// A live lease always defers the claim to its expiry, so no mirror runs twice at once; an
    /// expired lease on a `SYNCING` mirror makes it claimable (its worker died: the next one
    /// finishes or rolls back the interrupted run), enabled or not.
    pub fn due_at(&self, enabled: bool) -> Option<OffsetDateTime> {
        let due = match self.status {
            SyncStatus::SyncNow | SyncStatus::Syncing => OffsetDateTime::UNIX_EPOCH,
            SyncStatus::Cancel => return None,
            SyncStatus::NeverRun | SyncStatus::Success | SyncStatus::Fail => {
                if !enabled || self.retries_remaining == 0 {
                    return None;
                }
                self.next_start
            }
        };
        Some(match self.lease_expires {
            Some(expires) => due.max(expires),
            None => due,
        })
    }

    /// Whether a worker runs this mirror now (`SYNCING` under a lease that has not expired).
    pub fn holds_live_lease(&self, now: OffsetDateTime) -> bool {
        self.status == SyncStatus::Syncing && self.lease_expires.is_some_and(|e| e > now)
    }

    /// `Conflict` while a worker runs this mirror under a lease that has not expired: a
    /// one-shot claim may take any mirror except one another worker is running right now.
    pub(crate) fn ensure_no_live_lease(&self, id: &str, now: OffsetDateTime) -> Result<()> {
        match (&self.lease_owner, self.lease_expires) {
            (Some(owner), Some(expires)) if expires > now => Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "mirror {id:?} is being synced by worker {owner:?} (lease until {expires})"
                ),
            )),
            _ => Ok(()),
        }
    }

    /// A mirror is deleted only while no worker runs it: a run going on after the delete would
    /// write to a repository that is no longer mirrored (SEMANTICS.md §8). A lease that expired
    /// (its worker died) does not hold a delete up.
    pub(crate) fn ensure_deletable(&self, id: &str, now: OffsetDateTime) -> Result<()> {
        self.ensure_no_live_lease(id, now).map_err(|e| {
            Error::new(
                ErrorKind::Conflict,
                format!(
                    "{}; cancel the run and delete the mirror once it has stopped",
                    e.message()
                ),
            )
        })
    }

    /// Whether a worker may claim this mirror at `now`.
    pub fn is_claimable(&self, enabled: bool, now: OffsetDateTime) -> bool {
        self.due_at(enabled).is_some_and(|due| due <= now)
    }

    /// "Sync now": `SYNC_NOW` with at least one retry, from any status but `SYNCING`.
    pub fn sync_now(&mut self, id: &str) -> Result<()> {
        if self.status == SyncStatus::Syncing {
            return Err(conflict(id, "sync now", self.status));
        }
        self.status = SyncStatus::SyncNow;
        self.retries_remaining = self.retries_remaining.max(1);
        Ok(())
    }

    /// Cancel: `CANCEL` with no retries, from `SYNCING` or `SYNC_NOW`. A running sync keeps its
    /// lease (its next renewal reports the cancel) so nothing else starts until it has stopped.
    pub fn cancel(&mut self, id: &str) -> Result<()> {
        if !matches!(self.status, SyncStatus::Syncing | SyncStatus::SyncNow) {
            return Err(conflict(id, "cancel", self.status));
        }
        self.status = SyncStatus::Cancel;
        self.retries_remaining = 0;
        Ok(())
    }

    /// Claim for `worker` if this mirror is due at `now` (the rule of
    /// [`StateStore::claim_due`](crate::StateStore::claim_due)); `None` if it is not, or if
    /// taking over a lost run used its last retry (see [`MirrorState::count_lost_run`]). The
    /// store writes the state back whenever it changed, claimed or not.
    pub fn claim_if_due(
        &mut self,
        config: &MirrorConfig,
        worker: &str,
        now: OffsetDateTime,
        lease: Duration,
    ) -> Option<Claim> {
        if !self.is_claimable(config.enabled, now) {
            return None;
        }
        self.claim_counting_lost_run(config, worker, now, lease, false)
    }

    /// A claim whatever the schedule (a one-shot run; the caller checks no live lease is held):
    /// a lost run it takes over is counted ([`MirrorState::count_lost_run`]), but the claim
    /// goes ahead even if that used the last retry.
    pub fn claim_forced(
        &mut self,
        config: &MirrorConfig,
        worker: &str,
        now: OffsetDateTime,
        lease: Duration,
    ) -> Claim {
        self.claim_counting_lost_run(config, worker, now, lease, true)
            .expect("a forced claim goes ahead even without a retry left")
    }

    /// Claim for `worker` after counting a lost run it takes over
    /// ([`MirrorState::count_lost_run`]), whose error the claim then carries; `None` when that
    /// used the last retry, unless `force`.
    fn claim_counting_lost_run(
        &mut self,
        config: &MirrorConfig,
        worker: &str,
        now: OffsetDateTime,
        lease: Duration,
        force: bool,
    ) -> Option<Claim> {
        let lost = self.is_lost_run(now);
        if !self.count_lost_run(config.sync_interval, now) && !force {
            return None;
        }
        let mut claim = self.claim(config, worker, now, lease);
        claim.taken_over = self.last_error.clone().filter(|_| lost);
        Some(claim)
    }

    /// Whether this is a `SYNCING` mirror whose worker's lease expired before `now`.
    fn is_lost_run(&self, now: OffsetDateTime) -> bool {
        self.status == SyncStatus::Syncing
            && self.lease_owner.is_some()
            && self.lease_expires.is_some_and(|expires| expires <= now)
    }

    /// A `SYNCING` mirror whose lease expired lost its run with its worker (killed, crashed on
    /// this mirror, cut off from the store). That run counts as a failed attempt: one retry
    /// used and its error recorded, so a mirror that kills every worker running it cannot be
    /// taken over forever. Returns whether a retry was left: then the next run goes ahead at
    /// once and finishes or rolls back the lost one from the tag record (SEMANTICS.md §5). With
    /// none left the mirror fails to its next grid slot (§6), where that run does it instead.
    /// Any other state is left alone (`true`).
    pub fn count_lost_run(&mut self, interval: Duration, now: OffsetDateTime) -> bool {
        let (Some(owner), Some(expires)) = (&self.lease_owner, self.lease_expires) else {
            return true;
        };
        if !self.is_lost_run(now) {
            return true;
        }
        let expired = expires
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| expires.to_string());
        self.last_error = Some(format!(
            "the run by worker {owner:?} stopped without finishing (its lease expired at \
             {expired}): the worker was killed, crashed or lost the state store"
        ));
        self.lease_owner = None;
        self.lease_expires = None;
        let left = self.retries_remaining.saturating_sub(1);
        if left == 0 {
            self.finish_on_grid(SyncStatus::Fail, interval, now);
            return false;
        }
        self.retries_remaining = left;
        true
    }

    /// Claim for `worker`: `SYNCING` with a lease until `now + lease` and a fresh fencing token.
    /// [`MirrorState::claim_if_due`] and [`MirrorState::claim_forced`] check and count what
    /// they must first.
    fn claim(
        &mut self,
        config: &MirrorConfig,
        worker: &str,
        now: OffsetDateTime,
        lease: Duration,
    ) -> Claim {
        // A mirror without a start date of its own takes its grid from its first run: the time
        // it was due (a crowd spread by `spread_first_runs` stays spread however late a busy
        // worker gets to it), or now when it runs earlier (sync now).
        if self.last_started.is_none() && config.sync_start_date.is_none() {
            self.start_date = self.next_start.min(now);
        }
        self.status = SyncStatus::Syncing;
        self.lease_token += 1;
        self.lease_owner = Some(worker.to_owned());
        let expires = now + lease;
        self.lease_expires = Some(expires);
        self.last_started = Some(now);
        Claim {
            mirror_id: config.id.clone(),
            worker: worker.to_owned(),
            token: self.lease_token,
            expires,
            config: config.clone(),
            taken_over: None,
        }
    }

    /// Whether `claim` is still this mirror's current claim: no other worker claimed it since
    /// (an expired lease nobody took over is still honoured).
    fn check_claim(&self, claim: &Claim) -> Result<()> {
        if self.lease_token == claim.token && self.lease_owner.as_deref() == Some(&claim.worker) {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "mirror {:?}: the claim of worker {:?} (token {}) was lost to another worker",
                claim.mirror_id, claim.worker, claim.token
            ),
        ))
    }

    /// Extend `claim` to `now + lease`; returns the status, `CANCEL` telling the runner to stop.
    pub fn renew(
        &mut self,
        claim: &Claim,
        now: OffsetDateTime,
        lease: Duration,
    ) -> Result<SyncStatus> {
        self.check_claim(claim)?;
        self.lease_expires = Some(now + lease);
        Ok(self.status)
    }

    /// End `claim` with the run's outcome (SEMANTICS.md §6):
    /// - success: `SUCCESS`, retries reset, next start on the next grid slot;
    /// - failure with retries left: `FAIL`, one retry used, start date kept, retried after
    ///   [`retry_delay`] of the mirror's `retry_backoff` (never later than the next slot);
    /// - failure on the last retry: `FAIL`, retries reset, next start on the next grid slot;
    /// - interrupted (the worker stopped before finishing): `SYNC_NOW`, retries kept, so the next
    ///   poll resumes or rolls back the run.
    ///
    /// A cancel requested during the run wins over its outcome (`CANCEL`, no retries), and a
    /// "sync now" requested after that cancel stays pending.
    pub fn release(
        &mut self,
        claim: &Claim,
        outcome: &RunOutcome,
        config: &MirrorConfig,
        now: OffsetDateTime,
    ) -> Result<()> {
        self.check_claim(claim)?;
        let interval = config.sync_interval;
        self.lease_owner = None;
        self.lease_expires = None;
        self.last_finished = Some(now);
        self.last_error = match outcome {
            RunOutcome::Failed { error } => Some(error.clone()),
            _ => None,
        };
        match self.status {
            SyncStatus::Cancel => self.retries_remaining = 0,
            SyncStatus::SyncNow => {}
            _ => match outcome {
                RunOutcome::Success => self.finish_on_grid(SyncStatus::Success, interval, now),
                RunOutcome::Failed { .. } => {
                    let left = self.retries_remaining.saturating_sub(1);
                    if left == 0 {
                        self.finish_on_grid(SyncStatus::Fail, interval, now);
                    } else {
                        self.status = SyncStatus::Fail;
                        self.retries_remaining = left;
                        let failures = MAX_RETRIES.saturating_sub(left);
                        let retry = now + retry_delay(config.retry_backoff, failures);
                        self.next_start = retry.min(next_slot(self.start_date, interval, now));
                    }
                }
                RunOutcome::Cancelled | RunOutcome::Interrupted => {
                    self.status = SyncStatus::SyncNow;
                    self.retries_remaining = self.retries_remaining.max(1);
                }
            },
        }
        Ok(())
    }

    fn finish_on_grid(&mut self, status: SyncStatus, interval: Duration, now: OffsetDateTime) {
        self.status = status;
        self.retries_remaining = MAX_RETRIES;
        self.start_date = next_slot(self.start_date, interval, now);
        self.next_start = self.start_date;
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn config() -> MirrorConfig {
        let mut c = MirrorConfig::new("ns/app", "quay.io/coreos/etcd".parse().unwrap(), &["v3.*"]);
        c.sync_start_date = Some(datetime!(2026-01-01 00:00 UTC));
        c
    }

    fn claimed(state: &mut MirrorState, now: OffsetDateTime) -> Claim {
        assert!(
            state.is_claimable(true, now),
            "{state:?} not claimable at {now}"
        );
        state.claim(&config(), "w1", now, Duration::from_secs(60))
    }

    fn failed() -> RunOutcome {
        RunOutcome::Failed {
            error: "source down".into(),
        }
    }

    #[test]
    fn next_slot_is_the_first_grid_point_strictly_after_now() {
        let start = datetime!(2026-01-01 00:00 UTC);
        assert_eq!(
            next_slot(start, DAY, datetime!(2026-01-01 00:00 UTC)),
            datetime!(2026-01-02 00:00 UTC)
        );
        assert_eq!(
            next_slot(start, DAY, datetime!(2026-01-05 13:30 UTC)),
            datetime!(2026-01-06 00:00 UTC)
        );
        assert_eq!(
            next_slot(start, DAY, datetime!(2025-12-30 00:00 UTC)),
            start
        );
        let hour = Duration::from_secs(3600);
        assert_eq!(
            next_slot(start, hour, datetime!(2026-01-01 05:59:59 UTC)),
            datetime!(2026-01-01 06:00 UTC)
        );
    }

    #[test]
    fn quay_release_sequence() {
        let mut s = MirrorState::new(&config(), datetime!(2025-12-31 12:00 UTC));
        assert_eq!((s.status, s.retries_remaining), (SyncStatus::NeverRun, 3));
        let start = s.start_date;
        let mut now = datetime!(2026-01-01 00:00:10 UTC);

        for (left, delay_min) in [(2, 1), (1, 2)] {
            let c = claimed(&mut s, now);
            s.release(&c, &failed(), &config(), now).unwrap();
            assert_eq!(
                (s.status, s.retries_remaining, s.start_date),
                (SyncStatus::Fail, left, start)
            );
            assert_eq!(s.next_start, now + Duration::from_secs(60 * delay_min));
            assert_eq!(s.last_error.as_deref(), Some("source down"));
            assert!(
                !s.is_claimable(true, now),
                "retried with backoff, not at the next poll"
            );
            now = s.next_start;
        }

        let c = claimed(&mut s, now);
        s.release(&c, &failed(), &config(), now).unwrap();
        assert_eq!((s.status, s.retries_remaining), (SyncStatus::Fail, 3));
        assert_eq!(s.start_date, datetime!(2026-01-02 00:00 UTC));
        assert_eq!(s.next_start, s.start_date);

        let now = datetime!(2026-01-02 00:00:05 UTC);
        let c = claimed(&mut s, now);
        s.release(&c, &RunOutcome::Success, &config(), now).unwrap();
        assert_eq!((s.status, s.retries_remaining), (SyncStatus::Success, 3));
        assert_eq!(s.next_start, datetime!(2026-01-03 00:00 UTC));
        assert_eq!(s.last_error, None);
    }

    #[test]
    fn a_retry_never_waits_past_the_next_slot() {
        let mut c = config();
        c.sync_interval = Duration::from_secs(90);
        let mut s = MirrorState::new(&c, datetime!(2026-01-01 00:00 UTC));
        let now = datetime!(2026-01-01 00:01 UTC);
        let claim = claimed(&mut s, now);
        s.release(&claim, &failed(), &c, now).unwrap();
        assert_eq!(s.next_start, datetime!(2026-01-01 00:01:30 UTC));
    }

    #[test]
    fn cancel_stops_scheduling_until_sync_now() {
        let mut s = MirrorState::new(&config(), datetime!(2026-01-01 00:00 UTC));
        let now = datetime!(2026-01-01 00:00 UTC);
        assert_eq!(s.cancel("ns/app").unwrap_err().kind(), ErrorKind::Conflict);
        let c = claimed(&mut s, now);
        s.cancel("ns/app").unwrap();
        assert_eq!((s.status, s.retries_remaining), (SyncStatus::Cancel, 0));
        assert_eq!(
            s.renew(&c, now, Duration::from_secs(60)).unwrap(),
            SyncStatus::Cancel
        );
        s.release(&c, &RunOutcome::Cancelled, &config(), now)
            .unwrap();
        assert_eq!((s.status, s.retries_remaining), (SyncStatus::Cancel, 0));
        let much_later = datetime!(2027-01-01 00:00 UTC);
        assert!(!s.is_claimable(true, much_later));
        s.sync_now("ns/app").unwrap();
        assert_eq!((s.status, s.retries_remaining), (SyncStatus::SyncNow, 1));
        assert!(
            s.is_claimable(false, now),
            "sync now runs even a disabled mirror"
        );
    }

    #[test]
    fn a_successful_run_cancelled_meanwhile_stays_cancelled() {
        let mut s = MirrorState::new(&config(), datetime!(2026-01-01 00:00 UTC));
        let now = datetime!(2026-01-01 00:00 UTC);
        let c = claimed(&mut s, now);
        s.cancel("ns/app").unwrap();
        s.release(&c, &RunOutcome::Success, &config(), now).unwrap();
        assert_eq!((s.status, s.retries_remaining), (SyncStatus::Cancel, 0));
    }

    #[test]
    fn sync_now_is_refused_while_syncing_and_waits_for_a_cancelled_run() {
        let mut s = MirrorState::new(&config(), datetime!(2026-01-01 00:00 UTC));
        let now = datetime!(2026-01-01 00:00 UTC);
        let c = claimed(&mut s, now);
        let e = s.sync_now("ns/app").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert!(e.message().contains("SYNCING"), "{e}");
        s.cancel("ns/app").unwrap();
        s.sync_now("ns/app").unwrap();
        assert!(
            !s.is_claimable(true, now),
            "the cancelled run still holds its lease"
        );
        s.release(&c, &RunOutcome::Cancelled, &config(), now)
            .unwrap();
        assert_eq!(s.status, SyncStatus::SyncNow);
        assert!(s.is_claimable(true, now));
    }

    #[test]
    fn an_expired_lease_is_claimable_and_fences_the_old_holder() {
        let mut s = MirrorState::new(&config(), datetime!(2026-01-01 00:00 UTC));
        let now = datetime!(2026-01-01 00:00 UTC);
        let old = claimed(&mut s, now);
        assert!(!s.is_claimable(true, now + Duration::from_secs(59)));
        let later = now + Duration::from_secs(61);
        assert!(
            s.is_claimable(false, later),
            "a dead worker's run is recovered even if disabled"
        );
        let new = s.claim(&config(), "w2", later, Duration::from_secs(60));
        assert!(new.token > old.token);
        let lease = Duration::from_secs(60);
        assert_eq!(
            s.renew(&old, later, lease).unwrap_err().kind(),
            ErrorKind::Conflict
        );
        assert_eq!(
            s.release(&old, &RunOutcome::Success, &config(), later)
                .unwrap_err()
                .kind(),
            ErrorKind::Conflict
        );
        s.release(&new, &RunOutcome::Success, &config(), later)
            .unwrap();
        assert_eq!(s.status, SyncStatus::Success);
    }

    #[test]
    fn only_a_live_lease_holds_up_a_one_shot_claim_or_a_delete() {
        let mut s = MirrorState::new(&config(), datetime!(2026-01-01 00:00 UTC));
        let now = datetime!(2026-01-01 00:00 UTC);
        s.ensure_no_live_lease("ns/app", now).unwrap();
        s.ensure_deletable("ns/app", now).unwrap();
        claimed(&mut s, now);
        s.cancel("ns/app").unwrap();
        // A cancelled run keeps its lease until it stops.
        let e = s.ensure_no_live_lease("ns/app", now).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert!(e.message().contains("\"w1\""), "{e}");
        let e = s.ensure_deletable("ns/app", now).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert!(
            e.message()
                .ends_with("delete the mirror once it has stopped"),
            "{e}"
        );
        let expired = now + Duration::from_secs(60);
        s.ensure_no_live_lease("ns/app", expired).unwrap();
        s.ensure_deletable("ns/app", expired).unwrap();
    }

    #[test]
    fn an_interrupted_run_is_due_again_with_its_retries() {
        let mut s = MirrorState::new(&config(), datetime!(2026-01-01 00:00 UTC));
        let now = datetime!(2026-01-01 00:00 UTC);
        let c = claimed(&mut s, now);
        s.release(&c, &RunOutcome::Interrupted, &config(), now)
            .unwrap();
        assert_eq!((s.status, s.retries_remaining), (SyncStatus::SyncNow, 3));
        assert!(s.is_claimable(true, now));
    }

    #[test]
    fn disabled_or_not_yet_due_mirrors_are_not_claimable() {
        let s = MirrorState::new(&config(), datetime!(2025-12-01 00:00 UTC));
        assert!(!s.is_claimable(true, datetime!(2025-12-31 23:59 UTC)));
        assert!(s.is_claimable(true, datetime!(2026-01-01 00:00 UTC)));
        assert!(!s.is_claimable(false, datetime!(2026-01-01 00:00 UTC)));
    }

    const HOUR: Duration = Duration::from_secs(3600);

    /// A mirror without a start date, hourly, created at `now`.
    fn new_mirror(id: &str, now: OffsetDateTime) -> MirrorRecord {
        let mut config = MirrorConfig::new(id, "quay.io/coreos/etcd".parse().unwrap(), &["v3.*"]);
        config.sync_interval = HOUR;
        let state = MirrorState::new(&config, now);
        MirrorRecord { config, state }
    }

    #[test]
    fn a_mirror_without_a_start_date_is_due_at_once_on_a_grid_from_its_creation() {
        let created = datetime!(2026-01-01 10:00 UTC);
        let mut m = new_mirror("ns/app", created);
        assert!(m.state.is_claimable(true, created));
        assert!(m.state.first_run_unplaced(&m.config));
        // Alone, it is not moved: the poll that finds it runs it.
        let mut crowd = vec![m.clone()];
        spread_first_runs(&mut crowd, created + Duration::from_secs(20), HOUR);
        assert!(crowd.is_empty());
        let now = created + Duration::from_secs(20);
        let c = m.state.claim(&m.config, "w1", now, Duration::from_secs(60));
        assert!(!m.state.first_run_unplaced(&m.config));
        m.state
            .release(
                &c,
                &RunOutcome::Success,
                &m.config,
                now + Duration::from_secs(5),
            )
            .unwrap();
        assert_eq!(m.state.start_date, datetime!(2026-01-01 11:00 UTC));
        assert_eq!(m.state.next_start, datetime!(2026-01-01 11:00 UTC));
    }

    #[test]
    fn a_crowd_of_new_mirrors_is_spread_over_the_window_and_stays_spread() {
        let created = datetime!(2026-01-01 10:00 UTC);
        let now = created + Duration::from_secs(5);
        let window = Duration::from_secs(200);
        let mut all: Vec<_> = (0..200)
            .map(|i| new_mirror(&format!("ns/m{i:03}"), created))
            .collect();
        let mut crowd = all.clone();
        spread_first_runs(&mut crowd, now, window);
        assert_eq!(crowd.len(), 199, "all but the first are moved");
        assert!(crowd.iter().all(|r| r.config.id != "ns/m000"));
        let mut slots: Vec<_> = crowd.iter().map(|r| r.state.next_start).collect();
        slots.sort();
        // 199 slots a second apart: 1 s … 199 s after now.
        assert_eq!(slots[0], now + Duration::from_secs(1));
        assert_eq!(slots[198], now + Duration::from_secs(199));
        assert!(
            slots
                .windows(2)
                .all(|w| w[1] - w[0] == time::Duration::SECOND)
        );
        for moved in crowd {
            let i = all
                .iter()
                .position(|r| r.config.id == moved.config.id)
                .unwrap();
            all[i] = moved;
        }
        // Placed mirrors are not placed again.
        let mut again = all.clone();
        spread_first_runs(&mut again, now + Duration::from_secs(100), window);
        assert!(again.is_empty(), "{} moved again", again.len());

        // Each runs when its slot comes (or later, on a busy worker) and its grid follows
        // from the slot: the second runs are as spread as the first.
        for r in &mut all {
            let slot = r.state.next_start;
            assert!(!r.state.is_claimable(true, slot - Duration::from_millis(1)));
            let ran = slot + Duration::from_secs(7);
            let c = r.state.claim(&r.config, "w1", ran, Duration::from_secs(60));
            r.state
                .release(
                    &c,
                    &RunOutcome::Success,
                    &r.config,
                    ran + Duration::from_secs(3),
                )
                .unwrap();
            assert_eq!(r.state.next_start, slot + HOUR);
        }
    }

    #[test]
    fn the_spread_window_is_cut_to_the_interval_and_explicit_starts_stay() {
        let created = datetime!(2026-01-01 10:00 UTC);
        let mut crowd: Vec<_> = (0..10)
            .map(|i| {
                let mut r = new_mirror(&format!("ns/m{i}"), created);
                r.config.sync_interval = Duration::from_secs(60);
                r
            })
            .collect();
        let mut explicit = new_mirror("ns/explicit", created);
        explicit.config.sync_start_date = Some(created);
        explicit.state = MirrorState::new(&explicit.config, created);
        crowd.push(explicit);
        spread_first_runs(&mut crowd, created, HOUR);
        assert_eq!(crowd.len(), 9);
        assert!(crowd.iter().all(|r| r.config.id != "ns/explicit"));
        assert!(crowd.iter().all(|r| r.state.next_start > created
            && r.state.next_start < created + Duration::from_secs(60)));
    }

    #[test]
    fn an_edited_interval_without_a_start_date_keeps_the_grid_of_the_last_run() {
        let created = datetime!(2026-01-01 10:00 UTC);
        let mut r = new_mirror("ns/app", created);
        let mut daily = r.config.clone();
        daily.sync_interval = DAY;
        // Never run: due at once, as a new mirror.
        r.state.reconfigure(&r.config, &daily, created + HOUR);
        assert_eq!(r.state.next_start, created + HOUR);
        assert!(r.state.first_run_unplaced(&daily));
        // Run at 11:00; the interval becomes 1 h at 11:30: next at 12:00.
        let c = r
            .state
            .claim(&daily, "w1", created + HOUR, Duration::from_secs(60));
        r.state
            .release(&c, &RunOutcome::Success, &daily, created + HOUR)
            .unwrap();
        r.state
            .reconfigure(&daily, &r.config, created + Duration::from_secs(5400));
        assert_eq!(r.state.next_start, datetime!(2026-01-01 12:00 UTC));
    }

    #[test]
    fn an_edited_interval_starts_a_new_grid() {
        let old = config();
        let mut s = MirrorState::new(&old, datetime!(2026-01-01 00:00 UTC));
        let mut new = old.clone();
        new.sync_start_date = Some(datetime!(2026-02-01 00:00 UTC));
        s.reconfigure(&old, &new, datetime!(2026-01-10 00:00 UTC));
        assert_eq!(s.next_start, datetime!(2026-02-01 00:00 UTC));
        let mut tags_only = new.clone();
        tags_only.tags = vec!["*".into()];
        s.next_start = datetime!(2026-01-15 00:00 UTC);
        s.reconfigure(&new, &tags_only, datetime!(2026-01-10 00:00 UTC));
        assert_eq!(s.next_start, datetime!(2026-01-15 00:00 UTC));
    }

    #[test]
    fn retry_delays_double() {
        let minute = Duration::from_secs(60);
        assert_eq!(retry_delay(minute, 1), Duration::from_secs(60));
        assert_eq!(retry_delay(minute, 2), Duration::from_secs(120));
        assert_eq!(retry_delay(minute, 3), Duration::from_secs(240));
        assert_eq!(retry_delay(minute, 100), Duration::from_secs(60 << 16));
        assert_eq!(retry_delay(Duration::ZERO, 2), Duration::ZERO);
    }

    #[test]
    fn a_zero_backoff_retries_at_the_next_poll_as_quay_does() {
        let mut c = config();
        c.retry_backoff = Duration::ZERO;
        let mut s = MirrorState::new(&c, datetime!(2026-01-01 00:00 UTC));
        let now = datetime!(2026-01-01 00:00:10 UTC);
        let claim = claimed(&mut s, now);
        s.release(&claim, &failed(), &c, now).unwrap();
        assert_eq!((s.status, s.retries_remaining), (SyncStatus::Fail, 2));
        assert!(s.is_claimable(true, now), "due again at once");
    }
}
