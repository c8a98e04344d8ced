//! `Mirrors`: mirrors kept in a state store (`sqlite:PATH`, `postgres://…`, `memory:`),
//! managed, synced and previewed through the core's front door ([`regmirror::Mirror`]), and its
//! worker run in-process (`startWorker()`). Settings pass through the core's serde type
//! ([`regmirror::config::MirrorSettings`], a `[[mirror]]` table's names in camelCase); what comes back (views,
//! reports, previews, log entries) is the core's serde output as plain objects.
//!
//! The constructor checks every option but opens nothing, so it never blocks the event loop on
//! a database: the store is opened by the first call (a store that cannot be opened rejects
//! that call, and the next one tries again).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use napi::bindgen_prelude::{Function, PromiseRaw, Unknown};
use napi::threadsafe_function::ThreadsafeFunction;
use napi::{Env, Status};
use napi_derive::napi;
use regmirror::engine::{DEFAULT_CONCURRENCY, HttpConnector};
use regmirror::registry::http::{AddressGuard, DEFAULT_MAX_TAGS, HttpOptions};
use regmirror::state::StoreTimeouts;
use regmirror::{Destination, EngineSettings, Notifier, StoreUrl};
use serde_json::Value;
use tokio::sync::{Mutex, OnceCell, oneshot};
use tokio_util::sync::CancellationToken;

use crate::callbacks::{self, EventFunction};
use crate::convert::{js_names, mirror_settings, seconds, snake_fields, whole_number};
use crate::errors::{ErrorCode, to_js};
use crate::mirror::Credentials;
use crate::run::{self, SyncOptions, promise, settled};

/// Where `Mirrors` keeps its mirrors and writes their images, and how.
#[napi(object, object_to_js = false)]
pub struct MirrorsOptions<'env> {
    /// The state store: `'sqlite:PATH'` (one file, created with its schema),
    /// `'postgres://USER@HOST/DB'` (shared by workers on many hosts), or `'memory:'`.
    pub state: String,
    /// Where mirrors write: a registry `'HOST[:PORT]'` (mirror `a/b` writes repository `a/b`
    /// there) or `'oci:DIR'` (one OCI layout per mirror). Without one, mirrors are managed but
    /// `sync`, `preview` and `startWorker` reject.
    pub destination: Option<String>,
    /// The robot that writes to the destination registry: the one identity allowed to push
    /// to a mirrored repository.
    pub dest_credentials: Option<Credentials>,
    /// Verify the destination's TLS certificate (default true); `false` also permits plain HTTP.
    pub dest_tls_verify: Option<bool>,
    /// A PEM file of CA certificates to trust for the destination besides the system's.
    pub dest_ca_file: Option<String>,
    /// A directory as docker's `certs.d/HOST` for the destination.
    pub dest_cert_dir: Option<String>,
    /// Functions called with each run's events, as a webhook receives them (see
    /// `MirrorEvent`). One that throws, rejects, blocks or is slow never fails or stalls a
    /// sync; when it falls behind, events are dropped.
    #[napi(ts_type = "Array<(event: MirrorEvent) => unknown>")]
    pub notifiers: Option<Vec<EventFunction<'env>>>,
    /// Blob copies in flight per run, a whole number (default 8).
    pub concurrency: Option<f64>,
    /// A registry listing more tags than this fails the run (default 1000000).
    pub max_tags: Option<f64>,
    /// How long a worker's claim on a running mirror lasts without renewal, in seconds (default
    /// 60); a crashed worker's mirrors run again after it.
    pub lease_seconds: Option<f64>,
    /// The `rollback` of mirrors that do not set one (default `'failed_tags_only'`).
    #[napi(ts_type = "'failed_tags_only' | 'all_or_nothing'")]
    pub default_rollback: Option<String>,
    /// The `retryBackoff` of mirrors that do not set one, in seconds (default 60; 0 retries at
    /// the next poll).
    pub retry_backoff_seconds: Option<f64>,
    /// The SSRF guard for every mirror's source (default false), as the worker's `ssrf_guard`.
    pub ssrf_guard: Option<bool>,
    /// Host names, addresses or CIDR networks the SSRF guard lets through.
    pub ssrf_allow: Option<Vec<String>>,
}

impl std::fmt::Debug for MirrorsOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirrorsOptions")
            .field("destination", &self.destination)
            .field("dest_credentials", &self.dest_credentials)
            .field("notifiers", &self.notifiers.as_ref().map(Vec::len))
            .finish_non_exhaustive()
    }
}

/// What opens the engine: checked options, and the notifiers made on the JavaScript thread.
struct Engine {
    url: StoreUrl,
    destination: Option<Destination>,
    notifiers: Vec<Arc<dyn Notifier>>,
    connector: HttpOptions,
    concurrency: usize,
    max_tags: usize,
    lease: std::time::Duration,
    settings: EngineSettings,
}

impl Engine {
    fn check(o: MirrorsOptions<'_>) -> napi::Result<Self, ErrorCode> {
        let notifiers = o
            .notifiers
            .unwrap_or_default()
            .iter()
            .map(|f| callbacks::notifier(f).map(|n| Arc::new(n) as Arc<dyn Notifier>))
            .collect::<napi::Result<Vec<_>, ErrorCode>>()?;
        let checked = || -> regmirror::Result<Engine> {
            let url: StoreUrl = o
                .state
                .parse()
                .map_err(|e: regmirror::Error| e.context("state"))?;
            let destination = match &o.destination {
                Some(d) => {
                    let mut dest = Destination::parse(d).map_err(|e| e.context("destination"))?;
                    dest.credentials = o
                        .dest_credentials
                        .map(|c| regmirror::Credentials::new(c.username, c.password));
                    dest.tls_verify = o.dest_tls_verify.unwrap_or(true);
                    dest.ca_certs = [o.dest_ca_file, o.dest_cert_dir]
                        .into_iter()
                        .flatten()
                        .map(PathBuf::from)
                        .collect();
                    dest.validate().map_err(|e| e.context("destination"))?;
                    Some(dest)
                }
                None => None,
            };
            let max_tags = match o.max_tags {
                Some(n) => whole_number("maxTags", n)?,
                None => DEFAULT_MAX_TAGS,
            };
            let mut settings = EngineSettings::default();
            if let Some(rollback) = &o.default_rollback {
                settings.default_rollback = rollback
                    .parse()
                    .map_err(|e: regmirror::Error| e.context("defaultRollback"))?;
            }
            if let Some(secs) = o.retry_backoff_seconds {
                settings.default_retry_backoff = seconds("retryBackoffSeconds", secs)?;
            }
            Ok(Engine {
                url,
                destination,
                notifiers,
                connector: HttpOptions {
                    // As the worker: a mirror's source login is its own, never one lying around.
                    docker_config: false,
                    address_guard: AddressGuard::switch(
                        o.ssrf_guard.unwrap_or(false),
                        &o.ssrf_allow.unwrap_or_default(),
                    )
                    .map_err(|e| e.context("ssrfAllow"))?,
                    max_tags,
                    ..HttpOptions::default()
                },
                concurrency: match o.concurrency {
                    Some(n) => whole_number("concurrency", n)?,
                    None => DEFAULT_CONCURRENCY,
                },
                max_tags,
                lease: match o.lease_seconds {
                    Some(secs) => seconds("leaseSeconds", secs)?,
                    None => regmirror::engine::DEFAULT_LEASE,
                },
                settings,
            })
        };
        checked().map_err(to_js)
    }

    async fn open(&self) -> regmirror::Result<regmirror::Mirror> {
        let store = self.url.open(StoreTimeouts::default()).await?;
        let mut builder = regmirror::Mirror::builder()
            .state(store)
            .connector(Arc::new(HttpConnector::new(self.connector.clone())))
            .concurrency(self.concurrency)
            .max_tags(self.max_tags)
            .lease(self.lease)
            .settings(self.settings.clone());
        if let Some(destination) = &self.destination {
            builder = builder.destination_spec(destination.clone());
        }
        for notifier in &self.notifiers {
            builder = builder.notifier(Arc::clone(notifier));
        }
        builder.build()
    }
}

/// Mirrors kept in a state store, as `regmirror mirror …` and `regmirror worker` keep them
/// (the same SQLite file or PostgreSQL database serves both). Every method returns a Promise;
/// errors carry `code` (`'NotFound'`, `'InvalidConfig'`, `'Conflict'`, …).
#[napi]
pub struct Mirrors {
    engine: Arc<Engine>,
    mirror: Arc<OnceCell<regmirror::Mirror>>,
}

impl std::fmt::Debug for Mirrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // StoreUrl's Display hides a password.
        f.debug_struct("Mirrors")
            .field("state", &self.engine.url.to_string())
            .field(
                "destination",
                &self.engine.destination.as_ref().map(ToString::to_string),
            )
            .finish_non_exhaustive()
    }
}

#[napi]
impl Mirrors {
    /// Check the options (throws when one is invalid); the store is opened by the first call.
    #[napi(constructor)]
    pub fn new(options: MirrorsOptions) -> napi::Result<Self, ErrorCode> {
        Ok(Mirrors {
            engine: Arc::new(Engine::check(options)?),
            mirror: Arc::new(OnceCell::new()),
        })
    }

    /// Create a mirror from its settings (the names of a `[[mirror]]` in the worker's
    /// `regmirror.toml`, in camelCase); resolves with its view. Unknown names are refused.
    #[napi(ts_return_type = "Promise<MirrorView>")]
    pub fn add<'env>(
        &self,
        env: &'env Env,
        #[napi(ts_arg_type = "MirrorSettings")] settings: Value,
    ) -> napi::Result<PromiseRaw<'env, Value>> {
        let settings = mirror_settings(settings);
        promise(
            env,
            self.with(move |m| async move {
                let settings = settings?;
                let id = settings.id.clone();
                m.add(settings).await?;
                m.view(&id).await
            }),
        )
    }

    /// Change mirror `id`: the settings given replace the stored ones, the rest stay (`null`
    /// puts one back to its default); a running sync finishes with the old ones. Resolves with
    /// its view.
    #[napi(ts_return_type = "Promise<MirrorView>")]
    pub fn update<'env>(
        &self,
        env: &'env Env,
        id: String,
        #[napi(ts_arg_type = "MirrorChanges")] changes: Value,
    ) -> napi::Result<PromiseRaw<'env, Value>> {
        let changes = snake_fields(changes, "changes");
        promise(
            env,
            self.with(move |m| async move {
                m.update(&id, changes?).await.map_err(js_names)?;
                m.view(&id).await
            }),
        )
    }

    /// Mirror `id`: its settings (never a password), `status` (Quay's names: `'NEVER_RUN'`,
    /// `'SYNCING'`, `'SUCCESS'`, …), retries left, last and next run, last report.
    #[napi(ts_return_type = "Promise<MirrorView>")]
    pub fn get<'env>(&self, env: &'env Env, id: String) -> napi::Result<PromiseRaw<'env, Value>> {
        promise(env, self.with(move |m| async move { m.view(&id).await }))
    }

    /// Every mirror, ordered by id.
    #[napi(ts_return_type = "Promise<Array<MirrorView>>")]
    pub fn list<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, Value>> {
        promise(env, self.with(|m| async move { m.views().await }))
    }

    /// Remove mirror `id`, its status and its log (the destination's images stay).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn delete<'env>(&self, env: &'env Env, id: String) -> napi::Result<PromiseRaw<'env, ()>> {
        settled(env, self.with(move |m| async move { m.delete(&id).await }))
    }

    /// Let the schedule run mirror `id` again; resolves with its view.
    #[napi(ts_return_type = "Promise<MirrorView>")]
    pub fn enable<'env>(
        &self,
        env: &'env Env,
        id: String,
    ) -> napi::Result<PromiseRaw<'env, Value>> {
        promise(
            env,
            self.with(move |m| async move {
                m.set_enabled(&id, true).await?;
                m.view(&id).await
            }),
        )
    }

    /// Keep the schedule from running mirror `id` (`syncNow` still does); resolves with its
    /// view.
    #[napi(ts_return_type = "Promise<MirrorView>")]
    pub fn disable<'env>(
        &self,
        env: &'env Env,
        id: String,
    ) -> napi::Result<PromiseRaw<'env, Value>> {
        promise(
            env,
            self.with(move |m| async move {
                m.set_enabled(&id, false).await?;
                m.view(&id).await
            }),
        )
    }

    /// Run mirror `id` at a worker's next poll, even if disabled or not due (status
    /// `'SYNC_NOW'`); resolves with its view.
    #[napi(ts_return_type = "Promise<MirrorView>")]
    pub fn sync_now<'env>(
        &self,
        env: &'env Env,
        id: String,
    ) -> napi::Result<PromiseRaw<'env, Value>> {
        promise(
            env,
            self.with(move |m| async move {
                m.sync_now(&id).await?;
                m.view(&id).await
            }),
        )
    }

    /// Cancel mirror `id`'s pending or running sync: a running one (in any worker sharing the
    /// store) stops after its unit in flight and reports `'cancelled'`. Resolves with its view.
    #[napi(ts_return_type = "Promise<MirrorView>")]
    pub fn cancel<'env>(
        &self,
        env: &'env Env,
        id: String,
    ) -> napi::Result<PromiseRaw<'env, Value>> {
        promise(
            env,
            self.with(move |m| async move {
                m.cancel(&id).await?;
                m.view(&id).await
            }),
        )
    }

    /// Mirror `id`'s usage log, newest first: at most `limit` entries (default 50), only those
    /// older than the sequence number `before` (to page back).
    #[napi(ts_return_type = "Promise<Array<LogEntry>>")]
    pub fn logs<'env>(
        &self,
        env: &'env Env,
        id: String,
        options: Option<LogsOptions>,
    ) -> napi::Result<PromiseRaw<'env, Value>> {
        let options = options.unwrap_or_default();
        let page = || -> regmirror::Result<(usize, Option<u64>)> {
            let limit = match options.limit {
                Some(n) => whole_number("limit", n)?,
                None => DEFAULT_LOG_LIMIT,
            };
            let before = match options.before {
                Some(n) => Some(whole_number("before", n)? as u64),
                None => None,
            };
            Ok((limit, before))
        };
        let page = page();
        promise(
            env,
            self.with(move |m| async move {
                let (limit, before) = page?;
                m.logs(&id, limit, before).await
            }),
        )
    }

    /// Claim mirror `id` now and sync it here, returning its report (a failed tag or run is in
    /// the report; the promise rejects when it could not run: unknown mirror, a worker holds
    /// it). `options` as for `Mirror.sync()`.
    #[napi(ts_return_type = "Promise<SyncReport>")]
    pub fn sync<'env>(
        &self,
        env: &'env Env,
        id: String,
        options: Option<SyncOptions<'env>>,
    ) -> napi::Result<PromiseRaw<'env, Value>> {
        run::spawn(env, options, |o| {
            self.with(move |m| async move { m.sync_with(&id, o).await })
        })
    }

    /// What syncing mirror `id` would do, changing nothing (see `Mirror.preview()`).
    #[napi(ts_return_type = "Promise<SyncPreview>")]
    pub fn preview<'env>(
        &self,
        env: &'env Env,
        id: String,
        options: Option<SyncOptions<'env>>,
    ) -> napi::Result<PromiseRaw<'env, Value>> {
        run::spawn(env, options, |o| {
            self.with(move |m| async move { m.preview_with(&id, o).await })
        })
    }

    /// Run a worker in this process, as `regmirror worker` does: poll the store for due
    /// mirrors and sync them, with this `Mirrors`' notifiers. It keeps the process alive until
    /// `stop()`.
    #[napi]
    pub fn start_worker(
        &self,
        env: &Env,
        options: Option<WorkerOptions>,
    ) -> napi::Result<WorkerHandle, ErrorCode> {
        let options = options.unwrap_or_default().check().map_err(to_js)?;
        let keep_alive = keep_alive(env).map_err(|e| crate::errors::internal("startWorker", e))?;
        let stop = CancellationToken::new();
        let shutdown = stop.clone();
        let run = self
            .with(move |m| async move { m.worker(options).run(shutdown.cancelled_owned()).await });
        let (done, report) = oneshot::channel();
        napi::bindgen_prelude::spawn(async move {
            // Whoever stops the worker may be gone; the report then goes nowhere.
            let _ = done.send(run.await);
            drop(keep_alive);
        });
        Ok(WorkerHandle {
            stop,
            report: Arc::new(Mutex::new(Some(report))),
        })
    }
}

impl Mirrors {
    /// `work` with the engine, opened by the first call.
    fn with<T, F>(
        &self,
        work: impl FnOnce(regmirror::Mirror) -> F + Send + 'static,
    ) -> impl Future<Output = regmirror::Result<T>> + Send + 'static
    where
        F: Future<Output = regmirror::Result<T>> + Send + 'static,
    {
        let engine = Arc::clone(&self.engine);
        let cell = Arc::clone(&self.mirror);
        async move {
            let mirror = cell.get_or_try_init(|| engine.open()).await?.clone();
            work(mirror).await
        }
    }
}

/// `regmirror mirror logs`' default page.
const DEFAULT_LOG_LIMIT: usize = 50;

/// Which page of a usage log `logs()` returns.
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct LogsOptions {
    /// At most this many entries (default 50).
    pub limit: Option<f64>,
    /// Only entries older than this sequence number (an entry's `seq`), to page back.
    pub before: Option<f64>,
}

/// How a worker polls and runs, as the `[worker]` settings of `regmirror worker`.
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct WorkerOptions {
    /// The wait between polls while nothing finishes, in seconds (default 30, ±20 % at random).
    pub poll_interval_seconds: Option<f64>,
    /// The most syncs running at once in this worker (default 4).
    pub max_concurrent_syncs: Option<f64>,
    /// After `stop()`: runs still going at two thirds of this are cancelled, at five sixths
    /// abandoned (released for another worker); the worker stops by then (default 30).
    pub shutdown_deadline_seconds: Option<f64>,
    /// Several new mirrors due together are spread over this window (default 180).
    pub first_run_spread_seconds: Option<f64>,
}

impl WorkerOptions {
    fn check(self) -> regmirror::Result<regmirror::worker::WorkerOptions> {
        let mut options = regmirror::worker::WorkerOptions::default();
        if let Some(secs) = self.poll_interval_seconds {
            options.poll_interval = seconds("pollIntervalSeconds", secs)?;
        }
        if let Some(n) = self.max_concurrent_syncs {
            options.max_concurrent = whole_number("maxConcurrentSyncs", n)?;
            options.batch_size = options.max_concurrent;
        }
        if let Some(secs) = self.shutdown_deadline_seconds {
            options.shutdown_deadline = seconds("shutdownDeadlineSeconds", secs)?;
        }
        if let Some(secs) = self.first_run_spread_seconds {
            options.first_run_spread = seconds("firstRunSpreadSeconds", secs)?;
        }
        Ok(options)
    }
}

/// A strong threadsafe function of a no-op: while it lives, Node's event loop stays alive (a
/// worker runs on regmirror's runtime, which Node does not wait for).
type KeepAlive = ThreadsafeFunction<(), (), (), Status, false, false, 0>;

fn keep_alive(env: &Env) -> napi::Result<KeepAlive> {
    let noop: Function<Unknown<'static>, ()> =
        env.create_function_from_closure("keepAlive", |_| Ok(()))?;
    noop.build_threadsafe_function::<()>()
        .callee_handled::<false>()
        .weak::<false>()
        .build_callback(|_| Ok(()))
}

/// A worker running in this process (`Mirrors.startWorker()`).
#[napi]
pub struct WorkerHandle {
    stop: CancellationToken,
    /// The worker's end; taken by the first `stop()`.
    report:
        Arc<Mutex<Option<oneshot::Receiver<regmirror::Result<regmirror::worker::WorkerReport>>>>>,
}

impl std::fmt::Debug for WorkerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerHandle").finish_non_exhaustive()
    }
}

/// One run a worker made.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct WorkerRun {
    pub mirror_id: String,
    /// Absent when the run was abandoned at the shutdown deadline.
    #[napi(ts_type = "'success' | 'failed' | 'cancelled'")]
    pub outcome: Option<String>,
}

/// What a worker did between start and stop.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct WorkerReport {
    /// Every run it started, in the order they ended.
    pub runs: Vec<WorkerRun>,
    /// Polls the store did not answer (each retried at the next poll).
    pub failed_polls: f64,
}

#[napi]
impl WorkerHandle {
    /// Stop claiming, let the runs in flight finish (within the shutdown deadline), and resolve
    /// with what the worker did; rejects with what stopped it otherwise (a store that could not
    /// be opened, no destination). A second call resolves with `null` once the first has.
    #[napi(ts_return_type = "Promise<WorkerReport | null>")]
    pub fn stop<'env>(
        &self,
        env: &'env Env,
    ) -> napi::Result<PromiseRaw<'env, Option<WorkerReport>>> {
        self.stop.cancel();
        let report = Arc::clone(&self.report);
        env.spawn_future_with_callback(
            async move {
                let mut report = report.lock().await;
                let Some(end) = report.take() else {
                    return Ok(None);
                };
                Ok(Some(end.await.unwrap_or_else(|_| {
                    Err(regmirror::Error::new(
                        regmirror::ErrorKind::Internal,
                        "the worker task ended without a report (it panicked)",
                    ))
                })))
            },
            |env, output| match output {
                None => Ok(None),
                Some(Ok(report)) => Ok(Some(WorkerReport {
                    runs: report
                        .runs
                        .into_iter()
                        .map(|r| WorkerRun {
                            mirror_id: r.mirror_id,
                            outcome: r.outcome.map(|o| o.as_str().to_owned()),
                        })
                        .collect(),
                    failed_polls: report.failed_polls as f64,
                })),
                Some(Err(e)) => Err(crate::errors::to_js_rejection(*env, e)),
            },
        )
    }
}
