//! Where mirrors live between runs: configs, status, schedule, leases, the pre-run tag record
//! used for rollback, and the usage log (SEMANTICS.md §5–§7).
//!
//! Three stores behave identically (one behaviour suite runs against all of them): the
//! [`MemoryStateStore`], the [`SqliteStateStore`] (feature `sqlite`, the default: one file,
//! several processes on one host) and the `PostgresStateStore` (feature `postgres`: many workers
//! on many hosts). Their operations are written once (the private `ops` module) over a few
//! primitives each store implements inside its own transaction, and apply the status machine of
//! [`crate::status`].
//!
//! Secrets: a store keeps each mirror's source credentials in full and hands them out with
//! [`StateStore::get_mirror`] and with claims (a run needs them); [`StateStore::list_mirrors`]
//! blanks the passwords. Nothing a store logs or puts in an error contains them.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::time::Duration;
//! use regmirror::state::RunOutcome;
//! use regmirror::{MemoryStateStore, MirrorConfig, StateStore, SyncStatus};
//! use time::macros::datetime;
//!
//! let store = MemoryStateStore::new();
//! let mut config = MirrorConfig::new("mirror/app", "quay.io/org/app".parse().unwrap(), &["v*"]);
//! config.sync_start_date = Some(datetime!(2026-01-01 00:00 UTC));
//! let config = config.validated().unwrap();
//! store.create_mirror(&config, datetime!(2025-12-31 00:00 UTC)).await.unwrap();
//!
//! let now = datetime!(2026-01-01 00:00:05 UTC);
//! let claims = store.claim_due("worker-1", now, 10, Duration::from_secs(60)).await.unwrap();
//! assert_eq!(claims.len(), 1);
//! let record = store.release(&claims[0], &RunOutcome::Success, now).await.unwrap();
//! assert_eq!(record.state.status, SyncStatus::Success);
//! // Next run: the next slot of the daily grid.
//! assert_eq!(record.state.next_start, datetime!(2026-01-02 00:00 UTC));
//! # });
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::config::{MirrorConfig, ValidConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::failure::Failure;
use crate::reference::Digest;

mod health;
mod memory;
mod ops;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod row;
#[cfg(feature = "sqlite")]
mod sqlite;
mod url;

pub use health::StoreHealth;
pub use memory::MemoryStateStore;
#[cfg(feature = "postgres")]
pub use postgres::PostgresStateStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStateStore;
pub use url::StoreUrl;

/// The destination's tags before a run changed anything: tag → digest.
pub type TagRecord = BTreeMap<String, Digest>;

/// Where a mirror is in its life, with Quay's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SyncStatus {
    NeverRun,
    SyncNow,
    Syncing,
    Success,
    Fail,
    Cancel,
}

impl SyncStatus {
    /// Quay's name (`NEVER_RUN`, `SYNC_NOW`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            SyncStatus::NeverRun => "NEVER_RUN",
            SyncStatus::SyncNow => "SYNC_NOW",
            SyncStatus::Syncing => "SYNCING",
            SyncStatus::Success => "SUCCESS",
            SyncStatus::Fail => "FAIL",
            SyncStatus::Cancel => "CANCEL",
        }
    }

    /// The status named `s` (Quay's spelling, as [`SyncStatus::as_str`] writes it).
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "NEVER_RUN" => SyncStatus::NeverRun,
            "SYNC_NOW" => SyncStatus::SyncNow,
            "SYNCING" => SyncStatus::Syncing,
            "SUCCESS" => SyncStatus::Success,
            "FAIL" => SyncStatus::Fail,
            "CANCEL" => SyncStatus::Cancel,
            other => {
                return Err(Error::new(
                    ErrorKind::State,
                    format!("unknown sync status {other:?} in the state store"),
                ));
            }
        })
    }
}

impl std::fmt::Display for SyncStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A mirror's status and schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorState {
    pub status: SyncStatus,
    /// Retries left before the mirror waits for its next slot (Quay starts at 3).
    pub retries_remaining: u32,
    /// The schedule's anchor (Quay's `sync_start_date`): runs are due on the grid
    /// `start_date + k·sync_interval`; it moves only to later grid slots.
    #[serde(with = "time::serde::rfc3339")]
    pub start_date: OffsetDateTime,
    /// When the mirror is next due: `start_date`, or earlier-than-the-next-slot retry time after
    /// a failure (retries back off, see [`crate::status::retry_delay`]).
    #[serde(with = "time::serde::rfc3339")]
    pub next_start: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_started: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_finished: Option<OffsetDateTime>,
    /// The last run's error message, if it failed.
    pub last_error: Option<String>,
    /// The worker holding the lease, while one does.
    pub lease_owner: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub lease_expires: Option<OffsetDateTime>,
    /// The fencing token of the latest claim (0 before the first); see [`Claim::token`].
    pub lease_token: u64,
}

/// A mirror as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct MirrorRecord {
    pub config: MirrorConfig,
    pub state: MirrorState,
}

/// A worker's exclusive right to run one mirror until `expires` (renewable).
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub mirror_id: String,
    pub worker: String,
    /// Grows with every claim of this mirror; a stale holder's renew/release is refused.
    pub token: u64,
    pub expires: OffsetDateTime,
    /// The configuration as it was when claimed (edits apply to the next run).
    pub config: MirrorConfig,
    /// Why the run this claim takes over did not finish, when it takes over an expired lease
    /// (that run's worker was killed, crashed or lost the store); it counted as a failure.
    pub taken_over: Option<String>,
}

/// How a run ended, for [`StateStore::release`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    Success,
    Failed {
        error: String,
    },
    /// The run stopped because the mirror was cancelled.
    Cancelled,
    /// The worker stopped before the run finished (shutdown): the mirror is due again at once,
    /// and the next run resumes or rolls back from the durable tag record.
    Interrupted,
}

/// What a usage-log entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogKind {
    SyncStarted,
    TagSynced,
    TagFailed,
    TagDeleted,
    /// A rollback put a tag back at its pre-run digest (a created tag's removal is `TagDeleted`).
    TagRestored,
    SyncSucceeded,
    SyncFailed,
    SyncCancelled,
}

impl LogKind {
    /// The kinds that finish a run: its last entry.
    pub const FINISHES: [LogKind; 3] = [
        LogKind::SyncSucceeded,
        LogKind::SyncFailed,
        LogKind::SyncCancelled,
    ];
}

/// One line of a mirror's usage log (Quay's "Usage Logs" tab).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Assigned by the store, increasing; `0` before it is stored.
    pub seq: u64,
    pub mirror_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub kind: LogKind,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
    pub message: String,
    /// A failed tag's or run's failure as data (`tag_failed`, `sync_failed`, `sync_cancelled`).
    #[serde(default)]
    pub failure: Option<Failure>,
}

/// How much of the usage log a store keeps ([`StateStore::prune_logs`]); `None` is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRetention {
    /// The newest entries kept per mirror.
    pub max_entries: Option<usize>,
    /// Entries older than this are removed.
    pub max_age: Option<Duration>,
}

impl Default for LogRetention {
    /// 10 000 entries per mirror (hundreds of runs) and 90 days.
    fn default() -> Self {
        LogRetention {
            max_entries: Some(10_000),
            max_age: Some(Duration::from_secs(90 * 86_400)),
        }
    }
}

impl LogRetention {
    /// Entries before this time go (`None`: no age limit).
    pub fn cutoff(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        self.max_age.map(|age| now - age)
    }
}

/// Bounds on a store's calls (SEMANTICS.md §6: every store call is bounded), so a store that
/// stops answering makes its callers fail in time instead of hanging: a worker then stops
/// claiming and its runs stop before their leases could expire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreTimeouts {
    /// One call's queries (PostgreSQL; the connection is closed when it runs out), or SQLite's
    /// wait for another process's write lock. Default 10 s.
    pub query: Duration,
    /// The wait for a pooled connection (PostgreSQL). Default 10 s.
    pub checkout: Duration,
}

impl Default for StoreTimeouts {
    fn default() -> Self {
        StoreTimeouts {
            query: Duration::from_secs(10),
            checkout: Duration::from_secs(10),
        }
    }
}

/// How the work stands across the workers sharing a store ([`StateStore::census`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Census {
    /// Workers that said they are live (the asking one included).
    pub live_workers: usize,
    /// Mirrors a worker may claim now.
    pub due: usize,
    /// Mirrors some worker is running (a live lease).
    pub running: usize,
}

impl Census {
    /// One worker's fair share of the work: the due and running mirrors over the live workers,
    /// rounded up (all of it for a lone worker).
    pub fn share(&self) -> usize {
        (self.due + self.running).div_ceil(self.live_workers.max(1))
    }
}

/// What declaring one mirror did ([`StateStore::declare_mirrors`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Declaration {
    /// It did not exist: created in `NEVER_RUN`.
    Created,
    /// It existed with other settings, now replaced (status, schedule and logs stay): the names
    /// of the settings that changed, never their values (they may be credentials).
    Updated { changed: Vec<String> },
    /// It existed exactly so.
    Unchanged,
}

/// Strip what a listing must not carry: the source password (the username stays, so a listing
/// still shows which identity a mirror uses).
pub fn redact_secrets(config: &mut MirrorConfig) {
    if let Some(credentials) = &mut config.source_credentials {
        credentials.password.clear();
    }
}

/// Durable mirror state. Every method is atomic; several workers (threads, processes, hosts)
/// may share one store.
#[async_trait]
pub trait StateStore: Send + Sync + std::fmt::Debug {
    /// Store a new mirror in `NEVER_RUN`. `Conflict` if the id exists.
    async fn create_mirror(
        &self,
        config: &ValidConfig,
        now: OffsetDateTime,
    ) -> Result<MirrorRecord>;
    /// Create each of `configs` that does not exist and update each that differs,
    /// all in one transaction: an idempotent upsert, so workers starting together with one
    /// config file all succeed and agree. Returns what happened to each, in `configs`' order.
    async fn declare_mirrors(
        &self,
        configs: &[ValidConfig],
        now: OffsetDateTime,
    ) -> Result<Vec<Declaration>>;
    /// Replace a mirror's configuration; status and schedule stay (a new start date or interval
    /// reschedules). Never blocks on, or wedges, a running sync. `NotFound` if absent.
    async fn update_mirror(&self, config: &ValidConfig) -> Result<MirrorRecord>;
    /// `NotFound` if absent.
    async fn get_mirror(&self, id: &str) -> Result<MirrorRecord>;
    /// Every mirror, ordered by id, with secrets removed: each `source_credentials` keeps its
    /// username but its password is empty (see [`redact_secrets`]). [`StateStore::get_mirror`]
    /// and claims return the full configuration; edit a mirror from what `get_mirror` returns.
    async fn list_mirrors(&self) -> Result<Vec<MirrorRecord>>;
    /// Remove a mirror with its logs and record. `NotFound` if absent; `Conflict` while a worker
    /// holds a live lease on it (cancel the run first; an expired lease does not count).
    async fn delete_mirror(&self, id: &str) -> Result<()>;

    /// "Sync now": `SYNC_NOW`, due at the next poll. `Conflict` while `SYNCING`.
    async fn sync_now(&self, id: &str) -> Result<MirrorRecord>;
    /// `CANCEL` from `SYNCING` or `SYNC_NOW`; `Conflict` otherwise.
    async fn cancel(&self, id: &str) -> Result<MirrorRecord>;
    /// Turn the schedule on or off; status and a running sync are untouched (`cancel` stops
    /// that). `NotFound` if absent.
    async fn set_enabled(&self, id: &str, enabled: bool) -> Result<MirrorRecord>;

    /// Place the first runs of the mirrors due at `now` that have no time of their own yet
    /// (created without a start date, never run): when there are several, all but the one
    /// waiting longest are spread over `window` ([`crate::status::spread_first_runs`]), so a
    /// crowd of new mirrors neither starts nor keeps running all at once. Workers call it before
    /// each claim; it decides in the store, so workers sharing one agree. Returns how many moved.
    async fn spread_first_runs(&self, now: OffsetDateTime, window: Duration) -> Result<usize>;
    /// Atomically claim up to `max` due mirrors (or `SYNC_NOW`, or with an expired lease) for
    /// `worker`, moving them to `SYNCING` with a lease of `lease`
    /// ([`MirrorState::claim_if_due`]). Taking over an expired lease counts the lost run as a
    /// failure: one retry used, and with none left the mirror goes to its next grid slot
    /// unclaimed, so fewer than `max` claims may come back while more are due.
    async fn claim_due(
        &self,
        worker: &str,
        now: OffsetDateTime,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Claim>>;
    /// Claim one mirror now, whatever its schedule (one-shot syncs). `Conflict` if another
    /// worker holds a live lease; an expired one is counted as a failed run, as in
    /// [`StateStore::claim_due`], but the claim goes ahead even without retries left.
    async fn claim(
        &self,
        id: &str,
        worker: &str,
        now: OffsetDateTime,
        lease: Duration,
    ) -> Result<Claim>;
    /// Record `worker` as live until `live_until` (forgetting workers whose time has passed)
    /// and count the live workers and the due and running mirrors at `now`, so that workers
    /// sharing the store can each take their share ([`Census::share`]).
    async fn census(
        &self,
        worker: &str,
        now: OffsetDateTime,
        live_until: OffsetDateTime,
    ) -> Result<Census>;
    /// Extend a claim. Returns the mirror's status: `CANCEL` tells the runner to stop.
    /// `Conflict` if the claim was lost (expired and taken by another worker).
    async fn renew(
        &self,
        claim: &Claim,
        now: OffsetDateTime,
        lease: Duration,
    ) -> Result<SyncStatus>;
    /// End a claim with the run's outcome, applying SEMANTICS.md §6 (retries, next start).
    async fn release(
        &self,
        claim: &Claim,
        outcome: &RunOutcome,
        now: OffsetDateTime,
    ) -> Result<MirrorRecord>;

    /// Durably keep the destination's pre-run tags for `id` (replacing any earlier record).
    async fn save_tag_record(&self, id: &str, record: &TagRecord) -> Result<()>;
    /// The record left by a run that did not finish, if any.
    async fn tag_record(&self, id: &str) -> Result<Option<TagRecord>>;
    /// Forget the record once a run has finished (successfully or rolled back).
    async fn clear_tag_record(&self, id: &str) -> Result<()>;

    /// Append entries to a mirror's usage log (their `seq` is assigned by the store).
    async fn append_log(&self, entries: &[LogEntry]) -> Result<()>;
    /// A mirror's usage log, newest first: at most `limit` entries with `seq < before`.
    async fn logs(&self, id: &str, limit: usize, before: Option<u64>) -> Result<Vec<LogEntry>>;
    /// The newest entry that finished a run ([`LogKind::FINISHES`]) of each mirror's usage log,
    /// or of mirror `id`'s only, ordered by mirror id; a mirror without one has none. One query
    /// for any number of mirrors (a listing's last reports), however many tags a run logged.
    async fn last_finishes(&self, id: Option<&str>) -> Result<Vec<LogEntry>>;
    /// Remove usage-log entries beyond `retention` (per mirror: all but the newest
    /// `max_entries`; everyone's older than `now - max_age`). Returns how many went.
    async fn prune_logs(&self, retention: &LogRetention, now: OffsetDateTime) -> Result<u64>;
}
