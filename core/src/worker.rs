//! The daemon side of the engine: a [`Worker`] polls the state store for due mirrors, claims a
//! batch with a lease, runs each claim with [`Mirror::run_claimed_with`] (which renews the lease
//! and releases with the outcome), and shuts down gracefully (SEMANTICS.md §6).
//!
//! Any number of workers — tasks in one process, processes on one host, hosts sharing one
//! PostgreSQL — may poll one store: claims are atomic, so no mirror runs twice at once, and a
//! worker that dies leaves leases that expire and let another worker take over.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use regmirror::engine::{Mirror, StaticConnector};
//! use regmirror::registry::MemoryRegistry;
//! use regmirror::worker::WorkerOptions;
//! use regmirror::{MemoryStateStore, MirrorConfig, SyncStatus};
//!
//! let source = MemoryRegistry::new();
//! source.seed_image("library/app", Some("v1"), "amd64", &[b"layer"]);
//! let dest = MemoryRegistry::new();
//! let mirror = Mirror::builder()
//!     .state(Arc::new(MemoryStateStore::new()))
//!     .connector(Arc::new(StaticConnector(Arc::new(source))))
//!     .destination(Arc::new(dest.clone()))
//!     .build()
//!     .unwrap();
//! let config = MirrorConfig::new("mirror/app", "example.com/library/app".parse().unwrap(), &["v*"]);
//! mirror.create_mirror(config.validated().unwrap()).await.unwrap();
//! // Due at the worker's next poll, whatever the schedule says.
//! mirror.sync_now("mirror/app").await.unwrap();
//!
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let worker = tokio::spawn(mirror.worker(WorkerOptions::default()).run(async {
//!     let _ = stopped.await;
//! }));
//! while mirror.get("mirror/app").await.unwrap().state.status != SyncStatus::Success {
//!     tokio::time::sleep(Duration::from_millis(10)).await;
//! }
//! stop.send(()).unwrap();
//! let report = worker.await.unwrap().unwrap();
//! assert_eq!(report.runs.len(), 1);
//! assert!(dest.tag_map("mirror/app").contains_key("v1"));
//! # });
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::task::{AbortHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::engine::{Mirror, Outcome, Progress, ProgressEvent, SyncOptions};
use crate::error::{Error, ErrorKind, Result};
use crate::state::{Claim, LogRetention, RunOutcome, StateStore};

/// Quay's default poll interval.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(30);
/// Syncs one worker runs at a time by default.
pub const DEFAULT_MAX_CONCURRENT: usize = 4;
/// How long a shutting-down worker may take by default.
pub const DEFAULT_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(30);
/// How often a worker applies [`WorkerOptions::log_retention`] (and once when it starts).
pub const LOG_PRUNE_INTERVAL: Duration = Duration::from_secs(3600);
/// The window a crowd of new mirrors' first runs is spread over by default.
pub const DEFAULT_FIRST_RUN_SPREAD: Duration = Duration::from_secs(180);

/// How a [`Worker`] polls and runs. The lease length and the worker's name on claims are the
/// [`Mirror`]'s (its builder's `lease` and `worker_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerOptions {
    /// The wait between polls while nothing finishes (default 30 s, ±20 % at random). A run
    /// that finishes triggers a poll at once, so a backlog drains without waiting; but in each
    /// poll interval a worker claims at most its share of the due and running mirrors over the
    /// live workers ([`crate::state::Census::share`]), so work spreads across workers.
    pub poll_interval: Duration,
    /// The most mirrors claimed per poll (default: `max_concurrent`); never more than free slots.
    pub batch_size: usize,
    /// The most syncs running at once in this worker (default 4).
    pub max_concurrent: usize,
    /// After the shutdown signal: runs still going at two thirds of this are cancelled (they stop
    /// after their unit in flight and release the mirror as due again); runs still going at five
    /// sixths are abandoned and released by the worker; the worker stops by the deadline even
    /// if the store does not answer (default 30 s).
    pub shutdown_deadline: Duration,
    /// How much usage log the store keeps; the worker prunes the rest when it starts and every
    /// [`LOG_PRUNE_INTERVAL`] (default: [`LogRetention::default`]).
    pub log_retention: LogRetention,
    /// When a poll finds several mirrors due for a first run that has no time of its own
    /// (created without a start date), all but one are spread over this window — never more
    /// than a mirror's interval — and their schedules follow from there (default 3 min;
    /// [`StateStore::spread_first_runs`]). A lone new mirror runs at once.
    pub first_run_spread: Duration,
    /// Receives the progress events of every run this worker starts, with the mirror's id
    /// (metrics such as the tags still pending in a run; default: none).
    pub progress: RunProgress,
}

/// A callback for the progress of a worker's runs: `(mirror id, event)`. Cheap to clone; two
/// are equal when they are the same callback.
#[derive(Clone, Default)]
pub struct RunProgress(Option<Arc<RunProgressFn>>);

type RunProgressFn = dyn Fn(&str, ProgressEvent) + Send + Sync;

impl RunProgress {
    /// Call `f` for every event of every run. It runs on the engine's tasks: keep it quick.
    pub fn new(f: impl Fn(&str, ProgressEvent) + Send + Sync + 'static) -> Self {
        RunProgress(Some(Arc::new(f)))
    }

    /// The [`Progress`] of one run of `mirror_id`.
    fn for_run(&self, mirror_id: &str) -> Progress {
        match &self.0 {
            Some(f) => {
                let (f, id) = (Arc::clone(f), mirror_id.to_owned());
                Progress::new(move |event| f(&id, event))
            }
            None => Progress::default(),
        }
    }
}

impl PartialEq for RunProgress {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

impl Eq for RunProgress {}

impl std::fmt::Debug for RunProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "RunProgress(callback)"
        } else {
            "RunProgress(none)"
        })
    }
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            poll_interval: DEFAULT_POLL_INTERVAL,
            batch_size: DEFAULT_MAX_CONCURRENT,
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            shutdown_deadline: DEFAULT_SHUTDOWN_DEADLINE,
            log_retention: LogRetention::default(),
            first_run_spread: DEFAULT_FIRST_RUN_SPREAD,
            progress: RunProgress::default(),
        }
    }
}

/// One finished (or abandoned) run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerRun {
    pub mirror_id: String,
    /// The claim's fencing token.
    pub token: u64,
    /// `None` when the run was abandoned at the shutdown deadline or panicked.
    pub outcome: Option<Outcome>,
}

/// What a worker did between start and shutdown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerReport {
    /// Every run it started, in the order they ended.
    pub runs: Vec<WorkerRun>,
    /// Polls whose census or claim failed (the store did not answer); each was retried at the
    /// next poll.
    pub failed_polls: u64,
}

/// A polling loop over one [`Mirror`]; build with [`Mirror::worker`], start with [`Worker::run`].
#[derive(Debug, Clone)]
#[must_use = "a worker does nothing until run"]
pub struct Worker {
    mirror: Mirror,
    options: WorkerOptions,
}

impl Mirror {
    /// A worker that runs this engine's due mirrors; see [`Worker::run`].
    pub fn worker(&self, options: WorkerOptions) -> Worker {
        Worker {
            mirror: self.clone(),
            options,
        }
    }
}

impl Worker {
    fn validate(&self) -> Result<()> {
        let invalid = |what: &str| {
            Err(Error::new(
                ErrorKind::InvalidConfig,
                format!("WorkerOptions: {what} must be greater than 0"),
            ))
        };
        if self.options.poll_interval.is_zero() {
            return invalid("poll_interval");
        }
        if self.options.first_run_spread.is_zero() {
            return invalid("first_run_spread");
        }
        if self.options.batch_size == 0 {
            return invalid("batch_size");
        }
        if self.options.max_concurrent == 0 {
            return invalid("max_concurrent");
        }
        if self.mirror.state().is_none() {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                "a worker needs a Mirror with a state store; build it with .state(...)",
            ));
        }
        self.mirror.destination()?;
        Ok(())
    }

    /// Poll, claim and sync until `shutdown` completes, then stop claiming and wind down within
    /// [`WorkerOptions::shutdown_deadline`]. Store failures while polling are logged and retried
    /// at the next poll; they never stop the worker. `Err` only for invalid options.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<WorkerReport> {
        self.run_until(shutdown, std::future::pending()).await
    }

    /// [`Worker::run`], and when `abort` completes during the wind-down (a second Ctrl-C), the
    /// runs still going are abandoned and released at once instead of at the deadline.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()>,
        abort: impl Future<Output = ()>,
    ) -> Result<WorkerReport> {
        self.validate()?;
        let mut state = Running {
            tasks: JoinSet::new(),
            claims: HashMap::new(),
            cancel: CancellationToken::new(),
            report: WorkerReport::default(),
            period_ends: tokio::time::Instant::now(),
            allowance: 0,
        };
        let store = self
            .mirror
            .state()
            .expect("validated: the mirror has a state store");
        tokio::pin!(shutdown);
        let pruning = tokio::spawn(prune_logs(
            Arc::clone(store),
            self.options.log_retention,
            self.mirror.worker_id().to_owned(),
        ));
        let _stop_pruning = AbortOnDrop(pruning.abort_handle());
        loop {
            let free = self.options.max_concurrent - state.tasks.len();
            if free > 0 && self.mirror.settings().mirroring_enabled {
                // A store slow to answer (up to its query timeout) does not hold up shutdown.
                tokio::select! {
                    () = &mut shutdown => break,
                    () = self.claim_and_start(&mut state, store, free) => {}
                }
            }
            tokio::select! {
                () = &mut shutdown => break,
                Some(done) = state.tasks.join_next_with_id() => state.finished(done, store).await,
                () = tokio::time::sleep(self.jittered_poll()) => {}
            }
        }
        self.wind_down(&mut state, store, abort).await;
        Ok(state.report)
    }

    async fn claim_and_start(&self, state: &mut Running, store: &Arc<dyn StateStore>, free: usize) {
        let spread = self.options.first_run_spread;
        match store
            .spread_first_runs(OffsetDateTime::now_utc(), spread)
            .await
        {
            Ok(0) => {}
            Ok(moved) => tracing::info!(
                worker = self.mirror.worker_id(),
                mirrors = moved + 1,
                window_secs = spread.as_secs_f64(),
                "spreading the first runs of new mirrors due together"
            ),
            // The claim below says whether the store is reachable; unplaced mirrors still run.
            Err(e) => tracing::warn!(
                worker = self.mirror.worker_id(),
                "placing the first runs of new mirrors failed: {e}"
            ),
        }
        if tokio::time::Instant::now() >= state.period_ends {
            let Some(share) = self.share(store).await else {
                // The store does not answer: claim nothing, count the poll as failed.
                state.report.failed_polls += 1;
                return;
            };
            state.allowance = share;
            state.period_ends = tokio::time::Instant::now() + self.jittered_poll();
        }
        let max = free.min(self.options.batch_size).min(state.allowance);
        if max == 0 {
            return;
        }
        let claims = store
            .claim_due(
                self.mirror.worker_id(),
                OffsetDateTime::now_utc(),
                max,
                self.mirror.lease(),
            )
            .await;
        self.mirror.store_health().observe(&claims);
        match claims {
            Ok(claims) => {
                state.allowance -= claims.len();
                for claim in claims {
                    let mirror = self.mirror.clone();
                    let options = SyncOptions {
                        cancel: state.cancel.child_token(),
                        progress: self.options.progress.for_run(&claim.mirror_id),
                        ..SyncOptions::default()
                    };
                    // Every line logged during the run carries these fields (JSON logs).
                    let span = tracing::info_span!(
                        "run",
                        mirror = %claim.mirror_id,
                        run = claim.token,
                        worker = %claim.worker
                    );
                    let run_claim = claim.clone();
                    let handle = state.tasks.spawn(
                        async move {
                            mirror
                                .run_claimed_with(run_claim, options)
                                .await
                                .map(|report| report.outcome)
                        }
                        .instrument(span),
                    );
                    state.claims.insert(handle.id(), (claim, handle));
                }
            }
            Err(e) => {
                state.report.failed_polls += 1;
                tracing::warn!(
                    worker = self.mirror.worker_id(),
                    "claiming due mirrors failed: {e}"
                );
            }
        }
    }

    /// This worker's share of the due and running mirrors for the poll interval now starting
    /// (SEMANTICS.md §6: due mirrors are spread fairly across live workers): without it the
    /// worker whose runs end first polls again at once and takes everything due, while the
    /// others sleep until their next poll. Taking the census also keeps this worker counted as
    /// live for three poll intervals. `None` when the store does not answer.
    async fn share(&self, store: &Arc<dyn StateStore>) -> Option<usize> {
        let now = OffsetDateTime::now_utc();
        let live_until = now + self.options.poll_interval * 3;
        let census = store.census(self.mirror.worker_id(), now, live_until).await;
        self.mirror.store_health().observe(&census);
        match census {
            Ok(census) => Some(census.share()),
            Err(e) => {
                tracing::warn!(
                    worker = self.mirror.worker_id(),
                    "polling the store failed: {e}"
                );
                None
            }
        }
    }

    /// The poll interval, ±20 % at random, so that workers started together do not poll in
    /// step (and the same one always first).
    fn jittered_poll(&self) -> Duration {
        self.options
            .poll_interval
            .mul_f64(rand::random_range(0.8..1.2))
    }

    /// Let runs finish; cancel those left at two thirds of the deadline; abandon those left at
    /// five sixths (or when `abort` completes) and release them, so the next poll of any worker
    /// picks them up at once. The releases (at once, each bounded by the store's timeouts) get
    /// until the deadline: a store that does not answer never holds the worker past it, and
    /// those mirrors are taken over when their leases expire.
    async fn wind_down(
        &self,
        state: &mut Running,
        store: &Arc<dyn StateStore>,
        abort: impl Future<Output = ()>,
    ) {
        tokio::pin!(abort);
        let started = tokio::time::Instant::now();
        let limit = self.options.shutdown_deadline;
        let deadline = started + limit;
        let cancel_at = started + limit * 2 / 3;
        let abandon_at = started + limit * 5 / 6;
        while !state.tasks.is_empty() {
            tokio::select! {
                Some(done) = state.tasks.join_next_with_id() => state.finished(done, store).await,
                () = tokio::time::sleep_until(cancel_at), if !state.cancel.is_cancelled() => {
                    state.cancel.cancel();
                }
                () = tokio::time::sleep_until(abandon_at) => break,
                () = &mut abort => break,
            }
        }
        let abandoned: Vec<Claim> = state
            .claims
            .drain()
            .map(|(_, (claim, handle))| {
                handle.abort();
                claim
            })
            .collect();
        let releases = abandoned.iter().map(|claim| async move {
            let released = store
                .release(claim, &RunOutcome::Interrupted, OffsetDateTime::now_utc())
                .await;
            if let Err(e) = released {
                // The lease expires on its own; another worker takes the mirror over then.
                tracing::warn!(mirror = %claim.mirror_id, "could not release at shutdown: {e}");
            }
        });
        let all = futures::future::join_all(releases);
        if tokio::time::timeout_at(deadline.max(tokio::time::Instant::now()), all)
            .await
            .is_err()
        {
            tracing::warn!(
                "the state store did not answer the releases by the shutdown deadline; the \
                 mirrors are taken over when their leases expire"
            );
        }
        for claim in abandoned {
            state.report.runs.push(WorkerRun {
                mirror_id: claim.mirror_id,
                token: claim.token,
                outcome: None,
            });
        }
        // Aborted tasks end at their next await; none is waited for past the deadline.
        let _ = tokio::time::timeout_at(
            deadline.max(tokio::time::Instant::now()),
            state.tasks.shutdown(),
        )
        .await;
    }
}

/// Apply `retention` to the usage log now and every [`LOG_PRUNE_INTERVAL`] (until aborted).
/// Every worker sharing a store does it; pruning is idempotent.
async fn prune_logs(store: Arc<dyn StateStore>, retention: LogRetention, worker: String) {
    if retention
        == (LogRetention {
            max_entries: None,
            max_age: None,
        })
    {
        return;
    }
    loop {
        match store
            .prune_logs(&retention, OffsetDateTime::now_utc())
            .await
        {
            Ok(0) => {}
            Ok(removed) => tracing::info!(worker, removed, "pruned the usage log"),
            Err(e) => tracing::warn!(worker, "pruning the usage log failed: {e}"),
        }
        tokio::time::sleep(LOG_PRUNE_INTERVAL).await;
    }
}

/// Aborts a background task when the worker stops, however it stops.
struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The worker's in-flight runs.
struct Running {
    tasks: JoinSet<Result<Outcome>>,
    claims: HashMap<tokio::task::Id, (Claim, AbortHandle)>,
    cancel: CancellationToken,
    report: WorkerReport,
    /// When the current poll interval's share runs out; the next claim takes a new census.
    period_ends: tokio::time::Instant,
    /// Claims left of this worker's share in the current poll interval.
    allowance: usize,
}

impl Running {
    /// Record a run that ended. A run that panicked never released its claim: release it as
    /// failed (a retry used, so a mirror that crashes its run cannot loop forever).
    async fn finished(
        &mut self,
        done: std::result::Result<(tokio::task::Id, Result<Outcome>), tokio::task::JoinError>,
        store: &Arc<dyn StateStore>,
    ) {
        let (id, outcome, panicked) = match done {
            Ok((id, Ok(outcome))) => (id, Some(outcome), false),
            Ok((id, Err(e))) => {
                tracing::warn!("a sync could not run: {e}");
                (id, None, false)
            }
            Err(e) => (e.id(), None, e.is_panic()),
        };
        let Some((claim, _)) = self.claims.remove(&id) else {
            return;
        };
        if panicked {
            tracing::error!(mirror = %claim.mirror_id, "a sync panicked");
            let failed = RunOutcome::Failed {
                error: "the sync stopped on an internal error (a panic)".to_owned(),
            };
            if let Err(e) = store
                .release(&claim, &failed, OffsetDateTime::now_utc())
                .await
            {
                tracing::warn!(mirror = %claim.mirror_id, "could not release after a panic: {e}");
            }
        }
        self.report.runs.push(WorkerRun {
            mirror_id: claim.mirror_id,
            token: claim.token,
            outcome,
        });
    }
}
