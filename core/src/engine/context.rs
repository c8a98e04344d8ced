//! What one sync run works with (SEMANTICS.md §3): the [`Run`] every step goes through (its
//! mirror, registries and settings, its bounded units of network work, its cancellation and
//! abort, its once-per-run results and its usage-log entries), the [`Staging`] the staging
//! steps work with (the run, and what planning found of the destination), and the caches every
//! run of one `Mirror` shares ([`KnownBlobs`], [`KnownLinks`]).
//!
//! Every piece of network work is a *unit* ([`Run::unit`]): it takes a permit from the run's
//! bounded pool, is not started once the run is cancelled (so a cancelled run stops after the
//! units in flight), and is abandoned when the run is aborted (timeout, lost lease). Small reads
//! (manifest `HEAD`s and `GET`s, blob `HEAD`s) are units of larger pools, one per side
//! ([`Run::source_read`], [`Run::dest_read`]): they carry no bulk, and each wave of them costs a
//! round trip. Those pools only bound the run's tasks: how many reads a registry sees at once
//! is its client's cap, which widens with the registry's round trip (one side far away, the
//! other nearby, each side gets its own). Copies of small blobs ([`Run::blob_unit`]) have a
//! pool of their own, twice what a registry nearby gets (half reading, half writing): what
//! bounds a run is bytes in flight, and a blob of a few KiB costs round trips, not bandwidth.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;
use tokio::sync::{OnceCell, Semaphore};
use tokio_util::sync::CancellationToken;

use super::fence::{Fence, FencedDestination};
use super::progress::Progress;
use super::sides::{DestSide, SourceSide};
use crate::config::MirrorConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::failure::Failure;
use crate::pattern::TagFilter;
use crate::reference::Digest;
use crate::registry::http::max_metadata_window;
use crate::registry::manifest::Reference;
use crate::registry::{DestRegistry, Manifest, SMALL_BLOB_MAX, SourceRegistry};
use crate::state::{LogEntry, LogKind};

/// The known-blob index forgets everything beyond this many entries (it is only a hint).
const MAX_KNOWN_BLOBS: usize = 200_000;
/// The manifest-link cache forgets everything beyond this many manifests (it is only a saving).
const MAX_KNOWN_LINKS: usize = 100_000;

/// A result several waiters share (the first attempt's is reused): its error as a [`Failure`],
/// which converts back into an [`Error`] with everything but the cause chain.
pub(crate) type Shared<T> = std::result::Result<T, Failure>;
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
    source_reads: Semaphore,
    dest_reads: Semaphore,
    small_blob_pool: Semaphore,
    /// At most this many tags are staged at once ([`Run::stage_all`]): 8 per small request a
    /// registry gets at once (256 by default), enough that a tag whose last blob waits does not
    /// hold the pools back (2 per cost a 300-tag run 14 %), few enough that a run of 10 000
    /// tags does not hold 10 000 tasks' state (162 MiB).
    pub tags_in_flight: usize,
    /// Small reads in flight to one registry at most (the size of each side's pool of them),
    /// also how many of the destination's tags the source is asked about early
    /// ([`super::plan::EarlyReads`]).
    pub max_reads: usize,
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
    /// Small reads in flight to a registry nearby, apart from the units
    /// ([`super::metadata_concurrency`]): the pool of small copies, and what the pools of
    /// small reads and the tags staged at once are sized from.
    pub metadata_concurrency: usize,
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
        // The fence's refusals are the run's, not the destination's: it wraps the side.
        let dest: Arc<dyn DestRegistry> = Arc::new(DestSide(parts.dest));
        let dest: Arc<dyn DestRegistry> = match &parts.fence {
            Some(fence) => Arc::new(FencedDestination::new(dest, Arc::clone(fence))),
            None => dest,
        };
        let max_reads = max_metadata_window(parts.metadata_concurrency);
        Ok(Run {
            filter,
            src_repo: parts.config.source.repository().to_owned(),
            dest_repo: parts.config.id.clone(),
            config: parts.config,
            source: Arc::new(SourceSide(parts.source)),
            dest,
            pool: Semaphore::new(parts.concurrency.max(1)),
            // As many as the sides' clients may let through when far away: a side's reads
            // waiting for its registry must not hold the other side's back, as they would
            // under one pool of both.
            source_reads: Semaphore::new(max_reads),
            dest_reads: Semaphore::new(max_reads),
            // Twice a registry's cap of small requests: a small copy holds its slot while it reads
            // from the source and then while it writes to the destination, so with one cap's
            // worth reading, another can be writing (a 300-tag cold run: 6.24 -> 5.41 s over the
            // slow link, 5.47 -> 4.91 s on loopback).
            small_blob_pool: Semaphore::new(2 * parts.metadata_concurrency.max(1)),
            tags_in_flight: 8 * parts.metadata_concurrency.max(parts.concurrency).max(1),
            max_reads,
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
            Some(e) => Error::from(Failure::from(e)).into_abort(),
            None => Error::new(ErrorKind::Internal, "run aborted without a reason").into_abort(),
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

    /// Like [`Run::unit`], for a small read from the source (a manifest `HEAD` or `GET`, a
    /// blob `HEAD`), under the larger pool of those.
    pub async fn source_read<T>(&self, work: impl Future<Output = Result<T>>) -> Result<T> {
        self.unit_in(&self.source_reads, work).await
    }

    /// Like [`Run::source_read`], from the destination.
    pub async fn dest_read<T>(&self, work: impl Future<Output = Result<T>>) -> Result<T> {
        self.unit_in(&self.dest_reads, work).await
    }

    /// Like [`Run::unit`], for copying or reading a blob of `size` bytes: a small one goes
    /// under the pool of small copies, so it does not queue behind a cap meant for big ones.
    pub async fn blob_unit<T>(
        &self,
        size: u64,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        if size <= SMALL_BLOB_MAX {
            self.unit_in(&self.small_blob_pool, work).await
        } else {
            self.unit(work).await
        }
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
        self.push_entry(kind, tag, digest, message, None);
    }

    /// Add the usage-log entry of a failed tag, with its failure as data.
    pub fn log_tag_failure(&self, tag: &str, error: &Error) {
        let failure = Some(Failure::from(error));
        self.push_entry(
            LogKind::TagFailed,
            Some(tag),
            None,
            error.to_string(),
            failure,
        );
    }

    fn push_entry(
        &self,
        kind: LogKind,
        tag: Option<&str>,
        digest: Option<&Digest>,
        message: String,
        failure: Option<Failure>,
    ) {
        lock(&self.entries).push(LogEntry {
            seq: 0,
            mirror_id: self.config.id.clone(),
            time: OffsetDateTime::now_utc(),
            kind,
            tag: tag.map(str::to_owned),
            digest: digest.cloned(),
            message,
            failure,
        });
    }

    /// The usage-log entries gathered so far, leaving none behind.
    pub fn take_entries(&self) -> Vec<LogEntry> {
        std::mem::take(&mut *lock(&self.entries))
    }
}

/// What staging ([`Run::stage_all`]) works with: the run, and what planning found of the
/// destination that changes how content is copied. The staging steps are its methods, so that
/// this reaches every one of them without being passed along.
#[derive(Debug, Clone)]
pub(crate) struct Staging {
    pub run: Arc<Run>,
    /// The destination repository had no tags before the run (a new one, most likely): its
    /// small blobs are copied without asking for them first (`blobs::asks_first`).
    pub dest_untagged: bool,
}

/// A tag's content, staged and ready to be published.
#[derive(Debug, Clone)]
pub(crate) enum Staged {
    /// Push this manifest under the tag. Its digest differs from the source's (the tag's
    /// planned digest) only for a rewritten index or a merged referrers index. Shared: the
    /// run's once-per-digest cell and every tag pointing at it hold the same one.
    Ready(Arc<Manifest>),
    /// A single-platform image the architecture filter excludes: a success with nothing to do.
    Skipped { reason: String },
    /// Referrers pushed by digest to a destination whose referrers API indexes them: no tag
    /// to move (SEMANTICS.md §9).
    Untagged,
}

/// Which destination repository was last seen holding each blob, and the blob's size: where to
/// mount from. Shared by every run of one `Mirror`.
#[derive(Debug, Default)]
pub(crate) struct KnownBlobs(Mutex<HashMap<Digest, (String, u64)>>);

impl KnownBlobs {
    pub(crate) fn note(&self, digest: &Digest, repo: &str, size: u64) {
        let mut map = lock(&self.0);
        if map.len() >= MAX_KNOWN_BLOBS {
            map.clear();
        }
        map.insert(digest.clone(), (repo.to_owned(), size));
    }

    /// Another repository holding the blob, and the blob's size there.
    pub(crate) fn elsewhere(&self, digest: &Digest, repo: &str) -> Option<(String, u64)> {
        lock(&self.0)
            .get(digest)
            .filter(|(r, _)| r != repo)
            .cloned()
    }
}

/// The manifests each manifest points at (an index's entries; nothing for an image), by digest.
/// A digest's content never changes, so this is kept across the runs of one `Mirror`: a run
/// that must look inside an index to match referrer tags reads it once per process.
/// It also remembers which referrers a destination repository was seen holding, so a
/// destination with the referrers API is not asked again for them every run, and which sources
/// have no referrers API, so a process probes each source once.
#[derive(Debug, Default)]
pub(crate) struct KnownLinks {
    links: Mutex<HashMap<Digest, Arc<Vec<Reference>>>>,
    present: Mutex<HashSet<(String, Digest)>>,
    without_api: Mutex<HashSet<String>>,
    /// Destination repository → whether it has the referrers API.
    dest_api: Mutex<HashMap<String, bool>>,
}

impl KnownLinks {
    pub(crate) fn get(&self, digest: &Digest) -> Option<Arc<Vec<Reference>>> {
        lock(&self.links).get(digest).cloned()
    }

    pub(crate) fn note(&self, digest: &Digest, links: Arc<Vec<Reference>>) {
        let mut map = lock(&self.links);
        if map.len() >= MAX_KNOWN_LINKS {
            map.clear();
        }
        map.insert(digest.clone(), links);
    }

    pub(crate) fn is_present(&self, repo: &str, digest: &Digest) -> bool {
        lock(&self.present).contains(&(repo.to_owned(), digest.clone()))
    }

    pub(crate) fn note_present(&self, repo: &str, digest: &Digest) {
        let mut set = lock(&self.present);
        if set.len() >= MAX_KNOWN_LINKS {
            set.clear();
        }
        set.insert((repo.to_owned(), digest.clone()));
    }

    /// Whether `source` was found to have no referrers API.
    pub(crate) fn lacks_api(&self, source: &str) -> bool {
        lock(&self.without_api).contains(source)
    }

    pub(crate) fn note_lacks_api(&self, source: String) {
        let mut without = lock(&self.without_api);
        if without.len() >= MAX_KNOWN_LINKS {
            without.clear();
        }
        without.insert(source);
    }

    /// Whether destination repository `repo` has the referrers API, if known.
    pub(crate) fn dest_api(&self, repo: &str) -> Option<bool> {
        lock(&self.dest_api).get(repo).copied()
    }

    pub(crate) fn note_dest_api(&self, repo: &str, has: bool) {
        let mut known = lock(&self.dest_api);
        if known.len() >= MAX_KNOWN_LINKS {
            known.clear();
        }
        known.insert(repo.to_owned(), has);
    }
}

/// Why a cancelled run stopped (its error and its report's).
pub(crate) const CANCELLED: &str = "the sync was cancelled";

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
