//! One sync run from listing to finish (SEMANTICS.md §3): the shared context every step works
//! through ([`Run`]), and the order of the steps ([`Run::execute`]).
//!
//! Every piece of network work is a *unit* ([`Run::unit`]): it takes a permit from the run's
//! bounded pool, is not started once the run is cancelled (so a cancelled run stops after the
//! units in flight), and is abandoned when the run is aborted (timeout, lost lease). Small reads
//! (manifest `HEAD`s and `GET`s, blob `HEAD`s) are units of a second, larger pool
//! ([`Run::metadata_unit`]): they carry no bulk, and each wave of them costs a round trip.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;
use tokio::sync::{OnceCell, Semaphore};
use tokio_util::sync::CancellationToken;

use super::copy::{KnownBlobs, Staged};
use super::fence::{Fence, FencedDestination};
use super::progress::Progress;
use super::referrers::KnownLinks;
use super::report::{Outcome, SyncReport};
use super::{plan, publish};
use crate::config::{MirrorConfig, RollbackMode};
use crate::error::{Error, ErrorKind, Result};
use crate::pattern::TagFilter;
use crate::reference::Digest;
use crate::registry::{DestRegistry, SourceRegistry};
use crate::state::{LogEntry, LogKind, StateStore, TagRecord};

/// An error that several waiters share (the first attempt's result is reused).
#[derive(Debug, Clone)]
pub(crate) struct SharedError {
    kind: ErrorKind,
    message: String,
}

impl From<Error> for SharedError {
    fn from(e: Error) -> Self {
        SharedError {
            kind: e.kind(),
            message: e.message().to_owned(),
        }
    }
}

impl From<SharedError> for Error {
    fn from(e: SharedError) -> Self {
        Error::new(e.kind, e.message)
    }
}

pub(crate) type Shared<T> = std::result::Result<T, SharedError>;
/// A once-per-run result keyed by `K`: the first caller does the work, the rest wait for it.
pub(crate) type OnceMap<K, T> = Mutex<HashMap<K, Arc<OnceCell<Shared<T>>>>>;
/// What a blob or child manifest is staged under: the digest and the size its descriptor
/// declares, so a descriptor whose size lies fails on its own instead of sharing (or
/// spoiling) the work of a right one.
pub(crate) type Described = (Digest, u64);

/// Counters of the run, filled concurrently.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub blobs_copied: AtomicU64,
    pub blobs_mounted: AtomicU64,
    pub blobs_present: AtomicU64,
    pub bytes_copied: AtomicU64,
    /// Referrer manifests (signatures, SBOMs, attestations) newly copied.
    pub referrers_copied: AtomicU64,
    /// Referrers not copied because their subject index was rewritten.
    pub referrers_of_rewritten: AtomicU64,
}

/// Everything one run works with.
#[derive(Debug)]
pub(crate) struct Run {
    pub config: MirrorConfig,
    pub filter: TagFilter,
    pub source: Arc<dyn SourceRegistry>,
    pub dest: Arc<dyn DestRegistry>,
    /// The source repository path.
    pub src_repo: String,
    /// The destination repository path (the mirror's id).
    pub dest_repo: String,
    pool: Semaphore,
    metadata_pool: Semaphore,
    pub known: Arc<KnownBlobs>,
    pub links: Arc<KnownLinks>,
    pub progress: Progress,
    /// Delete destination tags the patterns do not select.
    pub prune: bool,
    /// Stop starting new units (cancel requested).
    pub cancel: CancellationToken,
    cancelled_by_status: AtomicBool,
    /// Abandon units in flight too (timeout, lease lost); `abort_reason` says why.
    abort: CancellationToken,
    abort_reason: Mutex<Option<Error>>,
    fence: Option<Arc<Fence>>,
    pub stats: Stats,
    pub blobs: OnceMap<Described, ()>,
    /// Each child manifest's index nesting below it (0 for an image).
    pub children: OnceMap<Described, usize>,
    pub tops: OnceMap<Digest, Staged>,
    /// Whether the destination has the referrers API, once asked.
    pub dest_referrers_api: OnceCell<bool>,
    entries: Mutex<Vec<LogEntry>>,
}

/// What [`Run::new`] needs.
pub(crate) struct RunParts {
    pub config: MirrorConfig,
    pub source: Arc<dyn SourceRegistry>,
    pub dest: Arc<dyn DestRegistry>,
    pub concurrency: usize,
    pub known: Arc<KnownBlobs>,
    pub links: Arc<KnownLinks>,
    pub progress: Progress,
    pub cancel: CancellationToken,
    pub prune: bool,
    /// The claim's fence, for a run of a claimed mirror: every destination write checks it.
    pub fence: Option<Arc<Fence>>,
}

impl Run {
    pub fn new(parts: RunParts) -> Result<Self> {
        let filter = parts.config.tag_filter()?;
        let dest: Arc<dyn DestRegistry> = match &parts.fence {
            Some(fence) => Arc::new(FencedDestination::new(parts.dest, Arc::clone(fence))),
            None => parts.dest,
        };
        Ok(Run {
            filter,
            src_repo: parts.config.source.repository().to_owned(),
            dest_repo: parts.config.id.clone(),
            config: parts.config,
            source: parts.source,
            dest,
            pool: Semaphore::new(parts.concurrency.max(1)),
            metadata_pool: Semaphore::new(super::metadata_concurrency(parts.concurrency).max(1)),
            known: parts.known,
            links: parts.links,
            progress: parts.progress,
            prune: parts.prune,
            cancel: parts.cancel,
            cancelled_by_status: AtomicBool::new(false),
            abort: CancellationToken::new(),
            abort_reason: Mutex::new(None),
            fence: parts.fence,
            stats: Stats::default(),
            blobs: OnceMap::default(),
            children: OnceMap::default(),
            tops: OnceMap::default(),
            dest_referrers_api: OnceCell::new(),
            entries: Mutex::new(Vec::new()),
        })
    }

    /// Stop the run now, abandoning units in flight, because of `reason` (first reason wins).
    pub fn abort(&self, reason: Error) {
        lock(&self.abort_reason).get_or_insert(reason);
        self.abort.cancel();
    }

    pub fn is_aborted(&self) -> bool {
        self.abort.is_cancelled()
    }

    /// Whether the run can no longer prove it holds its claim (another worker took the mirror
    /// over, or the lease could not be renewed in time): the destination is then the next
    /// holder's to finish or roll back, not this run's, and nothing more is written to it.
    pub fn is_claim_lost(&self) -> bool {
        self.fence_expired()
            || (self.is_aborted()
                && lock(&self.abort_reason)
                    .as_ref()
                    .is_some_and(|e| e.kind() == ErrorKind::Conflict))
    }

    /// Whether the claim's fence has expired; aborts the run if so.
    fn fence_expired(&self) -> bool {
        match &self.fence {
            Some(fence) if fence.is_expired() => {
                self.abort(fence.expired_error());
                true
            }
            _ => false,
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Stop after the units in flight because the mirror's status became `CANCEL`.
    pub fn cancel_by_status(&self) {
        self.cancelled_by_status.store(true, Ordering::SeqCst);
        self.cancel.cancel();
    }

    /// Whether the cancel came from the mirror's status (not from this process).
    pub fn is_cancelled_by_status(&self) -> bool {
        self.cancelled_by_status.load(Ordering::SeqCst)
    }

    /// Whether no new work may start.
    pub fn is_stopped(&self) -> bool {
        self.is_aborted() || self.fence_expired() || self.is_cancelled()
    }

    /// Why the run was aborted.
    pub fn abort_error(&self) -> Error {
        match &*lock(&self.abort_reason) {
            Some(e) => Error::new(e.kind(), e.message()),
            None => Error::new(ErrorKind::Internal, "run aborted without a reason"),
        }
    }

    fn check(&self) -> Result<()> {
        if self.is_aborted() || self.fence_expired() {
            return Err(self.abort_error());
        }
        if self.is_cancelled() {
            return Err(cancelled());
        }
        Ok(())
    }

    /// Run one unit of network work under the pool, the cancel token and the abort token.
    pub async fn unit<T>(&self, work: impl Future<Output = Result<T>>) -> Result<T> {
        self.unit_in(&self.pool, work).await
    }

    /// Like [`Run::unit`], for a small read (a manifest `HEAD` or `GET`, a blob `HEAD`), under
    /// the larger pool of those.
    pub async fn metadata_unit<T>(&self, work: impl Future<Output = Result<T>>) -> Result<T> {
        self.unit_in(&self.metadata_pool, work).await
    }

    async fn unit_in<T>(
        &self,
        pool: &Semaphore,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        self.check()?;
        let _permit = tokio::select! {
            biased;
            _ = self.abort.cancelled() => return Err(self.abort_error()),
            _ = self.cancel.cancelled() => return Err(cancelled()),
            permit = pool.acquire() => permit.expect("the run's pools are never closed"),
        };
        self.check()?;
        tokio::select! {
            biased;
            _ = self.abort.cancelled() => Err(self.abort_error()),
            result = work => result,
        }
    }

    /// Like [`Run::unit`], for work that changes nothing (listing tags): a cancel stops it at
    /// once instead of waiting for it, since there is nothing to finish. A registry that
    /// accepts connections but never answers would otherwise hold a cancelled run for the
    /// stall timeout and every retry.
    pub async fn read_only_unit<T>(&self, work: impl Future<Output = Result<T>>) -> Result<T> {
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Err(cancelled()),
            result = self.unit(work) => result,
        }
    }

    /// Add a usage-log entry (stored when the run finishes).
    pub fn log(&self, kind: LogKind, tag: Option<&str>, digest: Option<&Digest>, message: String) {
        lock(&self.entries).push(LogEntry {
            seq: 0,
            mirror_id: self.config.id.clone(),
            time: OffsetDateTime::now_utc(),
            kind,
            tag: tag.map(str::to_owned),
            digest: digest.cloned(),
            message,
        });
    }

    /// The usage-log entries gathered so far, leaving none behind.
    pub fn take_entries(&self) -> Vec<LogEntry> {
        std::mem::take(&mut *lock(&self.entries))
    }

    /// Run every step and say how it went. Never fails: failures are in the report.
    pub async fn execute(self: &Arc<Self>, store: Option<&Arc<dyn StateStore>>) -> SyncReport {
        let mut report = SyncReport::new(&self.config.id, &self.config.source.to_string());
        if let Err(e) = self.steps(store, &mut report).await {
            report.outcome = Outcome::Failed;
            report.error = Some(e.to_string());
        }
        let stats = &self.stats;
        report.blobs_copied = stats.blobs_copied.load(Ordering::Relaxed);
        report.blobs_mounted = stats.blobs_mounted.load(Ordering::Relaxed);
        report.blobs_present = stats.blobs_present.load(Ordering::Relaxed);
        report.bytes_copied = stats.bytes_copied.load(Ordering::Relaxed);
        report.referrers_copied = stats.referrers_copied.load(Ordering::Relaxed);
        let rewritten = stats.referrers_of_rewritten.load(Ordering::Relaxed);
        if rewritten > 0 {
            let remark = format!(
                "{rewritten} referrer {} of rewritten indexes not copied: they name the source's index digest, which the destination does not hold (platform_index = rewrite)",
                if rewritten == 1 { "tag" } else { "tags" }
            );
            report.note = Some(match report.note.take() {
                Some(note) => format!("{note}; {remark}"),
                None => remark,
            });
        }
        if self.is_aborted() {
            report.outcome = Outcome::Failed;
            let reason = self.abort_error().to_string();
            report.error = Some(match report.error.take() {
                Some(more) => format!("{reason}; {more}"),
                _ => reason,
            });
        } else if self.is_cancelled() {
            report.outcome = Outcome::Cancelled;
            report.error = Some(CANCELLED.to_owned());
        }
        report
    }

    async fn steps(
        self: &Arc<Self>,
        store: Option<&Arc<dyn StateStore>>,
        report: &mut SyncReport,
    ) -> Result<()> {
        if let Some(store) = store {
            self.recover(store.as_ref()).await?;
        }
        let (tags, prior) = self.list_both_sides().await?;
        let selected = self.filter.select(&tags);
        if selected.is_empty() {
            report.note = Some(self.no_tags_matched(tags.len()));
            return Ok(());
        }
        let plan = plan::plan_with_prior(self, &tags, selected, prior?).await?;
        let staged = self.stage_all(&plan).await;
        publish::publish(self, plan, staged, store, report).await
    }

    /// The source's tags, and the destination's tags and digests (checked by the caller only
    /// when it goes on to plan). The destination's inventory does not depend on the source's
    /// tags: both are read at once.
    pub(crate) async fn list_both_sides(&self) -> Result<(Vec<String>, Result<TagRecord>)> {
        let (tags, prior) = tokio::join!(
            self.read_only_unit(self.source.list_tags(&self.src_repo)),
            plan::destination_tags(self)
        );
        let tags =
            tags.map_err(|e| e.context(format!("listing the tags of {}", self.config.source)))?;
        Ok((tags, prior))
    }

    /// The note of a run or preview whose patterns select none of the source's `count` tags.
    pub(crate) fn no_tags_matched(&self, count: usize) -> String {
        format!(
            "no tags matched (the source has {count} {}; patterns {:?})",
            if count == 1 { "tag" } else { "tags" },
            self.filter.patterns()
        )
    }

    /// Finish what a dead worker left: a pre-run record still in the store means a run stopped
    /// between recording and finishing. `all_or_nothing` puts the destination back as recorded;
    /// `failed_tags_only` lets this run proceed (its successful tags would stand anyway).
    async fn recover(&self, store: &dyn StateStore) -> Result<()> {
        let Some(record) = store.tag_record(&self.config.id).await? else {
            return Ok(());
        };
        if self.config.rollback == RollbackMode::AllOrNothing {
            publish::restore(self, &record)
                .await
                .map_err(|e| e.context("restoring the destination after an interrupted run"))?;
        }
        store.clear_tag_record(&self.config.id).await
    }
}

/// Why a cancelled run stopped (its error and its report's).
const CANCELLED: &str = "the sync was cancelled";

fn cancelled() -> Error {
    Error::new(ErrorKind::Cancelled, CANCELLED)
}

/// Lock a mutex whose data stays consistent even if a holder panicked (every update is one step).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The once-cell for `key` in `map`, created if needed.
pub(crate) fn cell<K: Clone + Eq + std::hash::Hash, T>(
    map: &OnceMap<K, T>,
    key: &K,
) -> Arc<OnceCell<Shared<T>>> {
    lock(map).entry(key.clone()).or_default().clone()
}
