//! The engine: [`Mirror`], a cheap-to-clone handle that manages mirrors in a state store and
//! runs syncs (SEMANTICS.md §3–§5, §7).
//!
//! A sync is list → select → plan → stage → publish → prune → finish; see [`Mirror::sync`].
//! To follow one from [`Mirror::sync`] to the registry calls, read the files in this order —
//! each imports only files further down the list:
//!
//! 1. this file: [`Mirror`] claims the mirror, starts the run, its timeout and lease renewal
//!    (`execute`), and reports the outcome (`finish`);
//! 2. `run.rs`: the steps of one run, in order (`Run::execute`: recover, list, select,
//!    `plan_all`, `stage_all`, publish); `preview.rs` takes the same first steps, then walks
//!    each tag's manifests as staging would and counts what it would copy;
//! 3. `publish.rs`: moving the tags, pruning (`to_prune`, the rule a preview uses too),
//!    rolling back;
//! 4. `referrers.rs`: the signatures, SBOMs and attestations planned, kept and staged with
//!    their subjects;
//! 5. `plan.rs`: what to do with each tag (`Action`, `Plan`); `copy.rs`: staging a tag's
//!    manifests into the destination by digest;
//! 6. `walk.rs`: a tag's manifests read, verified and bounded, as staging and preview walk
//!    them; `blobs.rs`: copying a blob (present, mounted or streamed and verified);
//! 7. `platform.rs`: the architecture filter and the rewritten index; `context.rs`: the `Run`
//!    every step works through (units of work, cancellation, once-per-run results, caches),
//!    and the `Staging` the staging steps work with (the run, and what planning found).
//!
//! `fence.rs` (the claim's lease as a write fence), `sides.rs` (which registry an error came
//! from), `progress.rs`, `report.rs`, `events.rs` and `connector.rs` stand apart: any step may
//! use them.

mod blobs;
mod connector;
mod context;
mod copy;
mod events;
mod fence;
mod plan;
mod platform;
mod preview;
mod progress;
mod publish;
mod referrers;
mod report;
mod run;
mod sides;
mod walk;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

pub use crate::failure::TagFailure;
pub use connector::{HttpConnector, SourceConnector, StaticConnector};
pub use fence::fence_margin;
pub use preview::{PreviewAction, PreviewTag, SyncPreview};
pub use progress::{BlobTransfer, Progress, ProgressEvent, TagStatus};
pub use report::{Outcome, RewrittenTag, SyncReport};

use context::{KnownBlobs, KnownLinks, Run, RunParts};
use events::EventQueue;
use fence::Fence;

use crate::config::{MirrorConfig, MirrorSettings, ValidConfig};
use crate::destination::Destination;
use crate::error::{Detail, Error, ErrorKind, Result, Side};
use crate::failure::Failure;
use crate::notify::{EventKind, MirrorEvent, Notifier};
use crate::registry::DestRegistry;
use crate::registry::http::DEFAULT_MAX_TAGS;
use crate::settings::{EngineSettings, may_push};
use crate::state::SyncStatus;
use crate::state::{
    Claim, Declaration, LogEntry, LogKind, MirrorRecord, RunOutcome, StateStore, StoreHealth,
};
use crate::view::MirrorView;

/// How many units of network work (blob copies, manifest requests) one run has in flight.
pub const DEFAULT_CONCURRENCY: usize = 8;
pub use crate::registry::http::metadata_concurrency;
/// How long a notifier may take per event.
pub const DEFAULT_NOTIFIER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a claim lasts without renewal; renewed every third of it while a run goes on.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// Per-run options of a sync.
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    /// Cancelling it stops the run after the units of work in flight (no rollback).
    pub cancel: CancellationToken,
    /// Where progress events go.
    pub progress: Progress,
    /// Keep destination tags the patterns do not select instead of pruning them (SEMANTICS.md
    /// §3 step 6): a one-shot copy in the manner of `skopeo sync`, `regmirror sync --no-prune`.
    pub keep_unselected: bool,
}

/// Keeps destination repositories in sync with external repositories.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::sync::Arc;
/// use regmirror::engine::{Mirror, StaticConnector, SyncOptions};
/// use regmirror::registry::MemoryRegistry;
/// use regmirror::MirrorConfig;
///
/// let source = MemoryRegistry::new();
/// source.seed_image("library/app", Some("v1"), "amd64", &[b"layer"]);
/// let dest = MemoryRegistry::new();
/// let mirror = Mirror::builder()
///     .connector(Arc::new(StaticConnector(Arc::new(source))))
///     .destination(Arc::new(dest.clone()))
///     .build()
///     .unwrap();
/// let config = MirrorConfig::new("mirror/app", "example.com/library/app".parse().unwrap(), &["v*"]);
/// let report = mirror.sync_config(&config, SyncOptions::default()).await.unwrap();
/// assert!(report.is_success());
/// assert_eq!(report.tags_synced, ["v1"]);
/// assert!(dest.tag_map("mirror/app").contains_key("v1"));
/// # });
/// ```
#[derive(Clone)]
pub struct Mirror {
    inner: Arc<Inner>,
}

struct Inner {
    state: Option<Arc<dyn StateStore>>,
    destination: Option<Arc<dyn DestRegistry>>,
    connector: Arc<dyn SourceConnector>,
    notifiers: Vec<Arc<dyn Notifier>>,
    concurrency: usize,
    notifier_timeout: Duration,
    lease: Duration,
    worker_id: String,
    settings: EngineSettings,
    known: Arc<KnownBlobs>,
    links: Arc<KnownLinks>,
    store_health: StoreHealth,
}

impl fmt::Debug for Mirror {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("Mirror")
            // Only whether there is one: a store's Debug may show its connection settings.
            .field("state", &i.state.is_some())
            .field("destination", &i.destination)
            .field("connector", &i.connector)
            .field("notifiers", &i.notifiers)
            .field("concurrency", &i.concurrency)
            .field("worker_id", &i.worker_id)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Mirror`]. A state store is required for everything but [`Mirror::sync_config`]
/// and [`Mirror::preview_config`]; a destination for everything that syncs or previews (a
/// `Mirror` without one manages stored mirrors: the CLI's `mirror` commands, an HTTP API).
#[derive(Debug, Default)]
#[must_use]
pub struct MirrorBuilder {
    state: Option<Arc<dyn StateStore>>,
    destination: Option<Arc<dyn DestRegistry>>,
    destination_spec: Option<Destination>,
    max_tags: Option<usize>,
    connector: Option<Arc<dyn SourceConnector>>,
    notifiers: Vec<Arc<dyn Notifier>>,
    concurrency: Option<usize>,
    notifier_timeout: Option<Duration>,
    lease: Option<Duration>,
    worker_id: Option<String>,
    settings: EngineSettings,
}

impl MirrorBuilder {
    /// Where mirrors, status, tag records and logs are kept.
    pub fn state(mut self, store: Arc<dyn StateStore>) -> Self {
        self.state = Some(store);
        self
    }

    /// The registry mirrors write to; each mirror's id is its repository there.
    pub fn destination(mut self, destination: Arc<dyn DestRegistry>) -> Self {
        self.destination = Some(destination);
        self
    }

    /// The destination by name ([`Destination`]): opened by [`MirrorBuilder::build`] with this
    /// builder's concurrency and [`MirrorBuilder::max_tags`]; its robot (the credentials'
    /// username) becomes [`EngineSettings::robot`] unless the settings name one. Instead of
    /// [`MirrorBuilder::destination`].
    pub fn destination_spec(mut self, destination: Destination) -> Self {
        self.destination_spec = Some(destination);
        self
    }

    /// A destination given by [`MirrorBuilder::destination_spec`] listing more tags than this
    /// fails the run that lists them (default [`DEFAULT_MAX_TAGS`]).
    pub fn max_tags(mut self, max: usize) -> Self {
        self.max_tags = Some(max);
        self
    }

    /// How a mirror's source settings become a registry client (default: [`HttpConnector`]).
    pub fn connector(mut self, connector: Arc<dyn SourceConnector>) -> Self {
        self.connector = Some(connector);
        self
    }

    /// Add a notifier (several may be added; each gets every event).
    pub fn notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifiers.push(notifier);
        self
    }

    /// Units of network work in flight per run (default [`DEFAULT_CONCURRENCY`]).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = Some(n);
        self
    }

    /// How long one notifier may take per event (default [`DEFAULT_NOTIFIER_TIMEOUT`]).
    pub fn notifier_timeout(mut self, timeout: Duration) -> Self {
        self.notifier_timeout = Some(timeout);
        self
    }

    /// How long a claim lasts without renewal (default [`DEFAULT_LEASE`]).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = Some(lease);
        self
    }

    /// This engine's name on the claims it takes (default: process id and a random suffix).
    pub fn worker_id(mut self, id: impl Into<String>) -> Self {
        self.worker_id = Some(id.into());
        self
    }

    /// Engine-wide settings (Quay's config fields); default: mirroring on, Quay's defaults.
    pub fn settings(mut self, settings: EngineSettings) -> Self {
        self.settings = settings;
        self
    }

    pub fn build(self) -> Result<Mirror> {
        let invalid = |what: &str| {
            Error::new(
                ErrorKind::InvalidConfig,
                format!("Mirror::builder(): {what} must be greater than 0"),
            )
        };
        let concurrency = self.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
        if concurrency == 0 {
            return Err(invalid("concurrency"));
        }
        let lease = self.lease.unwrap_or(DEFAULT_LEASE);
        if lease.is_zero() {
            return Err(invalid("lease"));
        }
        let notifier_timeout = self.notifier_timeout.unwrap_or(DEFAULT_NOTIFIER_TIMEOUT);
        if notifier_timeout.is_zero() {
            return Err(invalid("notifier_timeout"));
        }
        let max_tags = self.max_tags.unwrap_or(DEFAULT_MAX_TAGS);
        if max_tags == 0 {
            return Err(invalid("max_tags"));
        }
        let mut settings = self.settings;
        let destination = match (self.destination, self.destination_spec) {
            (Some(_), Some(_)) => {
                return Err(Error::new(
                    ErrorKind::InvalidConfig,
                    "Mirror::builder(): give either destination or destination_spec, not both",
                ));
            }
            (Some(destination), None) => Some(destination),
            (None, Some(spec)) => {
                if settings.robot.is_none() {
                    settings.robot = spec.robot().map(str::to_owned);
                }
                Some(spec.open(concurrency, max_tags)?)
            }
            (None, None) => None,
        };
        Ok(Mirror {
            inner: Arc::new(Inner {
                state: self.state,
                destination,
                connector: self
                    .connector
                    .unwrap_or_else(|| Arc::new(HttpConnector::default())),
                notifiers: self.notifiers,
                concurrency,
                notifier_timeout,
                lease,
                worker_id: self.worker_id.unwrap_or_else(|| {
                    format!(
                        "regmirror-{}-{:08x}",
                        std::process::id(),
                        rand::random::<u32>()
                    )
                }),
                settings,
                known: Arc::default(),
                links: Arc::default(),
                store_health: StoreHealth::default(),
            }),
        })
    }
}

impl Mirror {
    pub fn builder() -> MirrorBuilder {
        MirrorBuilder::default()
    }

    fn store(&self) -> Result<&Arc<dyn StateStore>> {
        self.inner.state.as_ref().ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidConfig,
                "this Mirror has no state store; build it with .state(...)",
            )
        })
    }

    pub(crate) fn destination(&self) -> Result<&Arc<dyn DestRegistry>> {
        self.inner.destination.as_ref().ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidConfig,
                "this Mirror has no destination; build it with .destination(...) or \
                 .destination_spec(...) to sync or preview",
            )
        })
    }

    /// This engine's worker name on claims.
    pub fn worker_id(&self) -> &str {
        &self.inner.worker_id
    }

    /// The lease duration claims are taken with.
    pub fn lease(&self) -> Duration {
        self.inner.lease
    }

    /// The engine-wide settings.
    pub fn settings(&self) -> &EngineSettings {
        &self.inner.settings
    }

    /// Whether the state store answered this engine's last claim, lease renewal or release
    /// (what a worker reports as its store's health).
    pub fn store_health(&self) -> &StoreHealth {
        &self.inner.store_health
    }

    /// May `principal` push to `repository`? False for anyone but the mirror's robot while the
    /// repository is mirrored (SEMANTICS.md §8); see [`crate::settings::may_push`]. Without a
    /// state store nothing is mirrored, so every push is allowed.
    pub async fn may_push(&self, repository: &str, principal: &str) -> bool {
        match &self.inner.state {
            Some(store) => {
                may_push(
                    &**store,
                    repository,
                    principal,
                    self.inner.settings.robot.as_deref(),
                )
                .await
            }
            None => true,
        }
    }

    /// The state store, if one was configured.
    pub fn state(&self) -> Option<&Arc<dyn StateStore>> {
        self.inner.state.as_ref()
    }

    /// Create a mirror. Its configuration was checked when it became a [`ValidConfig`]
    /// ([`MirrorConfig::validated`]): invalid patterns, references, architectures or intervals
    /// are refused there, never at sync time.
    pub async fn create_mirror(&self, config: ValidConfig) -> Result<MirrorRecord> {
        self.store()?
            .create_mirror(&config, OffsetDateTime::now_utc())
            .await
    }

    /// Create a mirror from its [`MirrorSettings`] (a `[[mirror]]` table's names), what they
    /// leave out taken from this engine's [`EngineSettings::mirror_defaults`].
    pub async fn add(&self, settings: MirrorSettings) -> Result<MirrorRecord> {
        let config = settings.into_config(&self.inner.settings.mirror_defaults())?;
        self.create_mirror(config).await
    }

    /// Declare `configs` (a worker's config file): create those that do not exist, update
    /// those that differ, in one transaction, so workers starting together all succeed.
    ///
    /// Each creation and each update is logged (`tracing`): an update replaces settings changed
    /// by [`Mirror::update_mirror`] or [`Mirror::set_enabled`], so it is logged as a warning
    /// naming the settings that changed (never their values).
    pub async fn declare(&self, configs: &[ValidConfig]) -> Result<Vec<Declaration>> {
        let declared = self
            .store()?
            .declare_mirrors(configs, OffsetDateTime::now_utc())
            .await?;
        for (config, what) in configs.iter().zip(&declared) {
            match what {
                Declaration::Created => {
                    tracing::info!(mirror = %config.id, "created from the config file");
                }
                Declaration::Updated { changed } => tracing::warn!(
                    mirror = %config.id,
                    changed = %changed.join(", "),
                    "the config file's settings replace the stored ones"
                ),
                Declaration::Unchanged => {}
            }
        }
        Ok(declared)
    }

    /// Replace a mirror's configuration; a running sync finishes with the old one.
    pub async fn update_mirror(&self, config: ValidConfig) -> Result<MirrorRecord> {
        self.store()?.update_mirror(&config).await
    }

    /// Change mirror `id`: `changes` (names of a `[[mirror]]` table, as JSON) replace its stored
    /// settings and the rest stay ([`MirrorSettings::with_changes`]); a running sync finishes
    /// with the old ones.
    pub async fn update(
        &self,
        id: &str,
        changes: serde_json::Map<String, serde_json::Value>,
    ) -> Result<MirrorRecord> {
        let current = self.get(id).await?;
        let settings = MirrorSettings::from(&current.config).with_changes(changes)?;
        self.update_mirror(settings.into_config(&self.inner.settings.mirror_defaults())?)
            .await
    }

    pub async fn get(&self, id: &str) -> Result<MirrorRecord> {
        self.store()?.get_mirror(id).await
    }

    pub async fn list(&self) -> Result<Vec<MirrorRecord>> {
        self.store()?.list_mirrors().await
    }

    /// Ask for a sync at the next worker poll, even if disabled or not due.
    pub async fn sync_now(&self, id: &str) -> Result<MirrorRecord> {
        self.store()?.sync_now(id).await
    }

    /// Cancel a pending or running sync; a running one stops after its unit in flight.
    pub async fn cancel(&self, id: &str) -> Result<MirrorRecord> {
        self.store()?.cancel(id).await
    }

    pub async fn set_enabled(&self, id: &str, enabled: bool) -> Result<MirrorRecord> {
        self.store()?.set_enabled(id, enabled).await
    }

    /// A mirror's usage log, newest first.
    pub async fn logs(&self, id: &str, limit: usize, before: Option<u64>) -> Result<Vec<LogEntry>> {
        self.store()?.logs(id, limit, before).await
    }

    pub async fn delete(&self, id: &str) -> Result<()> {
        self.store()?.delete_mirror(id).await
    }

    /// Mirror `id` for display: settings without secrets, status, next run, and the summary of
    /// its newest finished run ([`MirrorView`], what `regmirror mirror show --json` prints).
    pub async fn view(&self, id: &str) -> Result<MirrorView> {
        let record = self.get(id).await?;
        let last = self.store()?.last_finishes(Some(id)).await?;
        Ok(MirrorView::new(
            &record,
            MirrorView::last_report(last.first()),
        ))
    }

    /// [`Mirror::view`] of every mirror, ordered by id: two store queries however many.
    pub async fn views(&self) -> Result<Vec<MirrorView>> {
        let records = self.list().await?;
        let mut last: HashMap<String, LogEntry> = self
            .store()?
            .last_finishes(None)
            .await?
            .into_iter()
            .map(|e| (e.mirror_id.clone(), e))
            .collect();
        Ok(records
            .iter()
            .map(|r| {
                MirrorView::new(
                    r,
                    MirrorView::last_report(last.remove(&r.config.id).as_ref()),
                )
            })
            .collect())
    }

    /// Claim mirror `id` now and sync it. The run's failures are in the report; `Err` means
    /// it could not run at all (unknown mirror, another worker holds it, store failure).
    pub async fn sync(&self, id: &str) -> Result<SyncReport> {
        self.sync_with(id, SyncOptions::default()).await
    }

    /// [`Mirror::sync`] with a cancellation token and a progress callback.
    pub async fn sync_with(&self, id: &str, options: SyncOptions) -> Result<SyncReport> {
        // Checked before claiming: a claim would count the run as failed.
        self.destination()?;
        let claim = self
            .store()?
            .claim(
                id,
                &self.inner.worker_id,
                OffsetDateTime::now_utc(),
                self.inner.lease,
            )
            .await?;
        self.run_claimed_with(claim, options).await
    }

    /// Run a sync for a claim already taken (the worker loop's entry point): renews the lease
    /// while running (a `CANCEL` status stops the run), then releases with the outcome. A run
    /// stopped through `options.cancel` (e.g. worker shutdown) is released as interrupted: the
    /// mirror is due again and the next run rolls back or completes from the durable tag record.
    pub async fn run_claimed(&self, claim: Claim) -> Result<SyncReport> {
        self.run_claimed_with(claim, SyncOptions::default()).await
    }

    /// [`Mirror::run_claimed`] with a cancellation token and a progress callback.
    pub async fn run_claimed_with(&self, claim: Claim, options: SyncOptions) -> Result<SyncReport> {
        self.destination()?;
        let store = Arc::clone(self.store()?);
        let caller_cancel = options.cancel.clone();
        let report = self
            .execute(&claim.config, options, Some((&store, &claim)))
            .await;
        let outcome = match report.outcome {
            Outcome::Success => RunOutcome::Success,
            // Stopped by this process (shutdown): due again, resumed from the tag record.
            Outcome::Cancelled if caller_cancel.is_cancelled() => RunOutcome::Interrupted,
            Outcome::Cancelled => RunOutcome::Cancelled,
            Outcome::Failed => RunOutcome::Failed {
                error: report.error.clone().unwrap_or_else(|| "failed".to_owned()),
            },
        };
        let released = store
            .release(&claim, &outcome, OffsetDateTime::now_utc())
            .await;
        self.inner.store_health.observe(&released);
        if let Err(e) = released {
            // The lease expires on its own; the next claim picks the mirror up again.
            tracing::warn!(mirror = %claim.mirror_id, "could not release the claim: {e}");
        }
        Ok(report)
    }

    /// Sync `config` once without a state store (the CLI's `regmirror sync SRC --to DEST`):
    /// no claim, no durable tag record, no usage log; notifiers still get the events.
    pub async fn sync_config(
        &self,
        config: &MirrorConfig,
        options: SyncOptions,
    ) -> Result<SyncReport> {
        config.validate()?;
        self.destination()?;
        Ok(self.execute(config, options, None).await)
    }

    /// What [`Mirror::sync_config`] would do with `config` now, changing nothing: each selected
    /// tag's action, the destination tags it would prune, the blob bytes it would copy. Only
    /// `options.keep_unselected` and `options.cancel` matter here. It ends with a `Timeout` error
    /// at the config's `timeout`.
    pub async fn preview_config(
        &self,
        config: &MirrorConfig,
        options: SyncOptions,
    ) -> Result<SyncPreview> {
        config.validate()?;
        let run = Arc::new(self.start_run(config, options, None)?);
        // A preview is bounded by the run's timeout as a sync is: a registry that never
        // answers ends it there, not after every retry of every request.
        let watchdog = CancellationToken::new();
        let _stop_watchdog = watchdog.clone().drop_guard();
        tokio::spawn(timeout_watchdog(Arc::clone(&run), watchdog));
        let preview = preview::preview(&run).await;
        if run.is_aborted() {
            return Err(run.abort_error());
        }
        preview
    }

    /// What [`Mirror::sync`] would do with stored mirror `id` now, changing nothing (see
    /// [`Mirror::preview_config`]); it neither claims the mirror nor writes to its log.
    pub async fn preview(&self, id: &str) -> Result<SyncPreview> {
        self.preview_with(id, SyncOptions::default()).await
    }

    /// [`Mirror::preview`] with a cancellation token (`options.keep_unselected` shows what a
    /// sync keeping unselected tags would do).
    pub async fn preview_with(&self, id: &str, options: SyncOptions) -> Result<SyncPreview> {
        self.destination()?;
        let record = self.get(id).await?;
        self.preview_config(&record.config, options).await
    }

    /// A run of `config`: the source connected, the tag filter built.
    fn start_run(
        &self,
        config: &MirrorConfig,
        options: SyncOptions,
        fence: Option<Arc<Fence>>,
    ) -> Result<Run> {
        let inner = &self.inner;
        let source = inner
            .connector
            .connect(config)
            .map_err(|e| e.context("connecting to the source").on_side(Side::Source))?;
        Run::new(RunParts {
            config: config.clone(),
            source,
            dest: Arc::clone(self.destination()?),
            concurrency: inner.concurrency,
            metadata_concurrency: metadata_concurrency(inner.concurrency),
            known: Arc::clone(&inner.known),
            links: Arc::clone(&inner.links),
            progress: options.progress,
            cancel: options.cancel.child_token(),
            prune: !options.keep_unselected,
            fence,
        })
    }

    async fn execute(
        &self,
        config: &MirrorConfig,
        options: SyncOptions,
        claimed: Option<(&Arc<dyn StateStore>, &Claim)>,
    ) -> SyncReport {
        let started = Instant::now();
        let inner = &self.inner;
        let events = EventQueue::start(&inner.notifiers, inner.notifier_timeout);
        let mut entries = Vec::new();
        // The run this one takes over ended with its worker: it is reported as failed (its
        // start was), so the usage log and the webhooks do not show it running forever.
        if let Some(lost) = claimed.and_then(|(_, claim)| claim.taken_over.as_ref()) {
            // Its worker's lease ran out: the bound on a run's silence.
            let failure = Failure::from(Error::new(ErrorKind::Timeout, lost.clone()));
            let mut lost_event = event(EventKind::SyncFailed, config, None);
            lost_event.error = Some(lost.clone());
            lost_event.failure = Some(failure.clone());
            events.send(lost_event);
            let mut entry = log_entry(config, LogKind::SyncFailed, lost.clone());
            entry.failure = Some(failure);
            entries.push(entry);
        }
        events.send(event(EventKind::SyncStarted, config, None));
        let store = claimed.map(|(s, _)| s);
        if let Some(store) = store {
            entries.push(log_entry(
                config,
                LogKind::SyncStarted,
                format!("sync of {} started", config.source),
            ));
            if let Err(e) = store.append_log(&entries).await {
                tracing::warn!(mirror = %config.id, "could not append to the usage log: {e}");
            }
        }

        let fence = claimed.map(|(_, claim)| {
            Arc::new(Fence::for_claim(
                &claim.mirror_id,
                claim.expires,
                inner.lease,
            ))
        });
        let run = match self.start_run(config, options, fence.clone()) {
            Ok(run) => Arc::new(run),
            Err(e) => {
                let mut report = SyncReport::new(&config.id, &config.source.to_string());
                report.fail(&e);
                return self
                    .finish(config, report, Vec::new(), started, store, events)
                    .await;
            }
        };
        let watchdogs = CancellationToken::new();
        let _stop_watchdogs = watchdogs.clone().drop_guard();
        tokio::spawn(timeout_watchdog(Arc::clone(&run), watchdogs.clone()));
        if let (Some((store, claim)), Some(fence)) = (claimed, fence) {
            tokio::spawn(renew_lease(
                self.clone(),
                Arc::clone(&run),
                Arc::clone(store),
                claim.clone(),
                fence,
                watchdogs.clone(),
            ));
        }
        let mut dropped = AbortOnDrop(Some(Arc::clone(&run)));
        let report = run.execute(store).await;
        dropped.0 = None;
        watchdogs.cancel();
        let entries = run.take_entries();
        self.finish(config, report, entries, started, store, events)
            .await
    }

    async fn finish(
        &self,
        config: &MirrorConfig,
        mut report: SyncReport,
        mut entries: Vec<LogEntry>,
        started: Instant,
        store: Option<&Arc<dyn StateStore>>,
        events: EventQueue,
    ) -> SyncReport {
        report.duration_ms = started.elapsed().as_millis().try_into().unwrap_or(u64::MAX);
        let (kind, log_kind) = match report.outcome {
            Outcome::Success => (EventKind::SyncSucceeded, LogKind::SyncSucceeded),
            Outcome::Failed => (EventKind::SyncFailed, LogKind::SyncFailed),
            Outcome::Cancelled => (EventKind::SyncCancelled, LogKind::SyncCancelled),
        };
        if let Some(store) = store {
            let mut entry = log_entry(config, log_kind, summary(&report));
            entry.failure.clone_from(&report.failure);
            entries.push(entry);
            if let Err(e) = store.append_log(&entries).await {
                tracing::warn!(mirror = %config.id, "could not append to the usage log: {e}");
            }
        }
        events.send(event(kind, config, Some(&report)));
        events.finish().await;
        report
    }
}

/// Stops a run's background tasks (staging, blob copies) if the caller drops the sync future
/// before it finishes, instead of letting them copy on with nobody waiting.
struct AbortOnDrop(Option<Arc<Run>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(run) = self.0.take() {
            run.abort(Error::new(
                ErrorKind::Cancelled,
                "the sync was dropped before it finished",
            ));
        }
    }
}

/// Abort the run once it has taken longer than the mirror's timeout.
async fn timeout_watchdog(run: Arc<Run>, stop: CancellationToken) {
    let timeout = run.config.timeout;
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = tokio::time::sleep(timeout) => run.abort(Error::new(
            ErrorKind::Timeout,
            format!(
                "the sync took longer than its timeout of {}",
                humantime::format_duration(timeout)
            ),
        ).with_detail(Detail::RunTimeout)),
    }
}

/// Keep the claim: renew it every third of the lease (sooner again after a renewal that
/// failed), confirming the run's [`Fence`] with each renewal the store confirms. `CANCEL` cancels
/// the run; a lost claim or a deleted mirror aborts it; and so does a fence that expires because
/// no renewal was confirmed in time, whatever the reason (the store refused, failed, hung or
/// could not be reached; the process was frozen): the run stops before its lease can expire.
async fn renew_lease(
    mirror: Mirror,
    run: Arc<Run>,
    store: Arc<dyn StateStore>,
    claim: Claim,
    fence: Arc<Fence>,
    stop: CancellationToken,
) {
    let lease = mirror.inner.lease;
    let health = &mirror.inner.store_health;
    let mut wait = lease / 3;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
            _ = tokio::time::sleep_until(fence.deadline()) => {}
        }
        if fence.is_expired() {
            run.abort(fence.expired_error());
            tracing::warn!(mirror = %claim.mirror_id, "{}", fence.expired_error().message());
            return;
        }
        // Measured before the wall-clock time the store computes the new expiry from.
        let sent = tokio::time::Instant::now();
        // An answer after the fence's deadline would come too late to matter.
        let renewed = tokio::time::timeout_at(
            fence.deadline(),
            store.renew(&claim, OffsetDateTime::now_utc(), lease),
        )
        .await
        .unwrap_or_else(|_| {
            Err(Error::new(
                ErrorKind::Timeout,
                "the state store did not answer the lease renewal in time",
            ))
        });
        health.observe(&renewed);
        wait = lease / 3;
        match renewed {
            Ok(status) => {
                fence.confirm(sent);
                if status == SyncStatus::Cancel {
                    run.cancel_by_status();
                }
            }
            Err(e) if e.kind() == ErrorKind::Conflict => {
                run.abort(e.context("the claim on the mirror was lost"));
                return;
            }
            // Deleted after its lease expired while this worker was cut off from the store:
            // nothing may write to the repository for it any more.
            Err(e) if e.kind() == ErrorKind::NotFound => {
                run.abort(e.context("the mirror was deleted"));
                return;
            }
            Err(e) => {
                tracing::warn!(mirror = %claim.mirror_id, "could not renew the lease: {e}");
                wait = renewal_retry(lease);
            }
        }
    }
}

/// The wait before trying a failed renewal again: a tenth of the lease, so a store that comes
/// back within the lease keeps the run going.
fn renewal_retry(lease: Duration) -> Duration {
    lease / 10
}

/// A usage-log entry about the whole run.
fn log_entry(config: &MirrorConfig, kind: LogKind, message: String) -> LogEntry {
    LogEntry {
        seq: 0,
        mirror_id: config.id.clone(),
        time: OffsetDateTime::now_utc(),
        kind,
        tag: None,
        digest: None,
        message,
        failure: None,
    }
}

fn event(kind: EventKind, config: &MirrorConfig, report: Option<&SyncReport>) -> MirrorEvent {
    MirrorEvent {
        event: kind,
        mirror_id: config.id.clone(),
        source: config.source.to_string(),
        patterns: config.tags.clone(),
        tags_synced: report.map(|r| r.tags_synced.clone()).unwrap_or_default(),
        tags_failed: report.map(SyncReport::failed_tags).unwrap_or_default(),
        tags_deleted: report.map(|r| r.tags_deleted.clone()).unwrap_or_default(),
        bytes_copied: report.map_or(0, |r| r.bytes_copied),
        referrers_copied: report.map_or(0, |r| r.referrers_copied),
        duration_ms: report.map_or(0, |r| r.duration_ms),
        error: report.and_then(|r| r.error.clone()),
        failure: report.and_then(|r| r.failure.clone()),
        tag_failures: report.map(|r| r.tags_failed.clone()).unwrap_or_default(),
        note: report.and_then(|r| r.note.clone()),
    }
}

fn summary(report: &SyncReport) -> String {
    let head = format!(
        "{} synced, {} current, {} failed, {} deleted, {} bytes copied, {} referrers copied in {} ms",
        report.tags_synced.len(),
        report.tags_current.len(),
        report.tags_failed.len(),
        report.tags_deleted.len(),
        report.bytes_copied,
        report.referrers_copied,
        report.duration_ms
    );
    match report.error.as_ref().or(report.note.as_ref()) {
        Some(e) => format!("{head}: {e}"),
        None => head,
    }
}

#[cfg(test)]
mod tests;
