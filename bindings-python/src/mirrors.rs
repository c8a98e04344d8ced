//! `regmirror.Mirrors` (blocking, releases the GIL) and `regmirror.AsyncMirrors` (asyncio):
//! mirrors kept in a state store, managed, synced and previewed through the core's front door
//! ([`regmirror::Mirror`]), and its worker run in-process. Settings pass through the core's
//! serde type ([`regmirror::config::MirrorSettings`], a `[[mirror]]` table's names) as JSON;
//! what comes back (views, reports, previews, log entries) is the core's JSON as records.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use regmirror::config::MirrorSettings;
use regmirror::engine::{HttpConnector, SyncOptions};
use regmirror::registry::http::{AddressGuard, HttpOptions};
use regmirror::state::StoreTimeouts;
use regmirror::worker::WorkerOptions;
use regmirror::{Credentials, Destination, EngineSettings, Error, ErrorKind, StoreUrl};
use tokio_util::sync::CancellationToken;

use crate::bridge::{self, CancelToken, SIGNAL_CHECK_INTERVAL};
use crate::errors::to_py;
use crate::mirror::seconds;

/// A Python value for a core result, made under the GIL.
type Convert<T> = fn(Python<'_>, T) -> PyResult<Py<PyAny>>;

fn view(py: Python<'_>, v: regmirror::MirrorView) -> PyResult<Py<PyAny>> {
    bridge::record(py, "MirrorView", &v)
}

fn views(py: Python<'_>, v: Vec<regmirror::MirrorView>) -> PyResult<Py<PyAny>> {
    bridge::record(py, "MirrorView", &v)
}

fn logs(py: Python<'_>, v: Vec<regmirror::state::LogEntry>) -> PyResult<Py<PyAny>> {
    bridge::record(py, "LogEntry", &v)
}

fn report(py: Python<'_>, v: regmirror::SyncReport) -> PyResult<Py<PyAny>> {
    bridge::record(py, "SyncReport", &v)
}

fn preview(py: Python<'_>, v: regmirror::engine::SyncPreview) -> PyResult<Py<PyAny>> {
    bridge::record(py, "SyncPreview", &v)
}

fn nothing(py: Python<'_>, (): ()) -> PyResult<Py<PyAny>> {
    Ok(py.None())
}

/// Keyword arguments as a mirror's settings: `regmirror._convert.settings` makes them the
/// JSON of a `[[mirror]]` table (paths as strings), which the core's type reads, refusing
/// unknown names.
fn settings(
    py: Python<'_>,
    id: &str,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<MirrorSettings> {
    let text: String = py
        .import("regmirror._convert")?
        .getattr("settings")?
        .call1((id, kwargs))?
        .extract()?;
    MirrorSettings::from_json(&text).map_err(|e| to_py(e.context(format!("mirror {id:?}"))))
}

/// The two classes' shared constructor and methods; `$run` turns a core future into the
/// method's result (blocking, or a coroutine).
macro_rules! mirrors_class {
    ($class:ident, $ret:ty, $run:ident, $drain:path, { $($extra:tt)* }) => {
        #[pymethods]
        impl $class {
            /// Open the state store (creating or migrating its schema) and the destination.
            #[new]
            #[pyo3(signature = (
                state, *,
                destination = None,
                dest_credentials = None,
                dest_tls_verify = true,
                dest_cert_dir = None,
                notifiers = Vec::new(),
                concurrency = regmirror::engine::DEFAULT_CONCURRENCY as i64,
                lease = 60.0,
                default_rollback = "failed_tags_only",
                retry_backoff = 60.0,
                ssrf_guard = false,
                ssrf_allow = Vec::new(),
                max_tags = regmirror::registry::http::DEFAULT_MAX_TAGS as i64,
            ))]
            #[allow(clippy::too_many_arguments)] // Python keyword arguments, one per setting.
            fn new(
                py: Python<'_>,
                state: &str,
                destination: Option<&str>,
                dest_credentials: Option<(String, String)>,
                dest_tls_verify: bool,
                dest_cert_dir: Option<PathBuf>,
                notifiers: Vec<Bound<'_, PyAny>>,
                concurrency: i64,
                lease: f64,
                default_rollback: &str,
                retry_backoff: f64,
                ssrf_guard: bool,
                ssrf_allow: Vec<String>,
                max_tags: i64,
            ) -> PyResult<Self> {
                let engine = Engine {
                    state,
                    destination,
                    dest_credentials,
                    dest_tls_verify,
                    dest_cert_dir,
                    concurrency,
                    lease,
                    default_rollback,
                    retry_backoff,
                    ssrf_guard,
                    ssrf_allow,
                    max_tags,
                };
                let (mirror, description) = engine.open(py, &notifiers)?;
                Ok($class { mirror, description })
            }

            /// Create mirror `id` from `[[mirror]]` settings (`source`, `tags`, `interval` …);
            /// returns its view.
            #[pyo3(signature = (id, /, **settings))]
            fn add<'py>(
                &self,
                py: Python<'py>,
                id: &str,
                settings: Option<&Bound<'_, PyDict>>,
            ) -> $ret {
                let settings = self::settings(py, id, settings)?;
                let mirror = self.mirror.clone();
                $run(py, c"add", None, view, move |_| async move {
                    let id = mirror.add(settings).await?.config.id;
                    mirror.view(&id).await
                })
            }

            /// Change mirror `id`: the settings given replace the stored ones, the rest stay.
            /// A running sync finishes with the old ones.
            #[pyo3(signature = (id, /, **settings))]
            fn update<'py>(
                &self,
                py: Python<'py>,
                id: &str,
                settings: Option<&Bound<'_, PyDict>>,
            ) -> $ret {
                let changes = self::changes(py, settings)?;
                let mirror = self.mirror.clone();
                let id = id.to_owned();
                $run(py, c"update", None, view, move |_| async move {
                    mirror.update(&id, changes).await?;
                    mirror.view(&id).await
                })
            }

            /// Mirror `id`: settings (never a password), status, retries left, last and next
            /// run, last report.
            fn get<'py>(&self, py: Python<'py>, id: String) -> $ret {
                let mirror = self.mirror.clone();
                $run(py, c"get", None, view, move |_| async move { mirror.view(&id).await })
            }

            /// Every mirror, ordered by id.
            fn list<'py>(&self, py: Python<'py>) -> $ret {
                let mirror = self.mirror.clone();
                $run(py, c"list", None, views, move |_| async move { mirror.views().await })
            }

            /// Remove mirror `id`, its status and its log (the destination's images stay).
            fn delete<'py>(&self, py: Python<'py>, id: String) -> $ret {
                let mirror = self.mirror.clone();
                $run(py, c"delete", None, nothing, move |_| async move { mirror.delete(&id).await })
            }

            /// Let the schedule run mirror `id` again.
            fn enable<'py>(&self, py: Python<'py>, id: String) -> $ret {
                let mirror = self.mirror.clone();
                $run(py, c"enable", None, view, move |_| async move {
                    mirror.set_enabled(&id, true).await?;
                    mirror.view(&id).await
                })
            }

            /// Keep the schedule from running mirror `id` (`sync_now` still runs it).
            fn disable<'py>(&self, py: Python<'py>, id: String) -> $ret {
                let mirror = self.mirror.clone();
                $run(py, c"disable", None, view, move |_| async move {
                    mirror.set_enabled(&id, false).await?;
                    mirror.view(&id).await
                })
            }

            /// Run mirror `id` at a worker's next poll, even if disabled or not due.
            fn sync_now<'py>(&self, py: Python<'py>, id: String) -> $ret {
                let mirror = self.mirror.clone();
                $run(py, c"sync_now", None, view, move |_| async move {
                    mirror.sync_now(&id).await?;
                    mirror.view(&id).await
                })
            }

            /// Stop mirror `id`'s pending or running sync (after the tags in flight); no runs
            /// until `sync_now`.
            fn cancel<'py>(&self, py: Python<'py>, id: String) -> $ret {
                let mirror = self.mirror.clone();
                $run(py, c"cancel", None, view, move |_| async move {
                    mirror.cancel(&id).await?;
                    mirror.view(&id).await
                })
            }

            /// Mirror `id`'s usage log, newest first: at most `limit` entries, older than
            /// sequence number `before` when given (to page back).
            #[pyo3(signature = (id, limit = 50, before = None))]
            fn logs<'py>(
                &self,
                py: Python<'py>,
                id: String,
                limit: i64,
                before: Option<u64>,
            ) -> $ret {
                let limit = usize::try_from(limit).ok().filter(|n| *n > 0).ok_or_else(|| {
                    to_py(Error::new(
                        ErrorKind::InvalidConfig,
                        format!("limit must be greater than 0, not {limit}"),
                    ))
                })?;
                let mirror = self.mirror.clone();
                $run(py, c"logs", None, logs, move |_| async move {
                    mirror.logs(&id, limit, before).await
                })
            }

            /// Run mirror `id` now, in this process, and return its report (a failed tag is
            /// in the report, not raised). A worker holding it makes this a `ConflictError`.
            #[pyo3(signature = (id, *, progress = None, cancel = None))]
            fn sync<'py>(
                &self,
                py: Python<'py>,
                id: String,
                progress: Option<&Bound<'_, PyAny>>,
                cancel: Option<&CancelToken>,
            ) -> $ret {
                let (progress, drained) = bridge::progress(progress)?;
                let mirror = self.mirror.clone();
                let result = $run(py, c"sync", cancel, report, move |cancel| {
                    let options = SyncOptions {
                        cancel,
                        progress,
                        ..SyncOptions::default()
                    };
                    async move { mirror.sync_with(&id, options).await }
                });
                $drain(py, drained);
                result
            }

            /// What syncing mirror `id` would do, changing nothing: per tag copy / current /
            /// delete, and the bytes to move.
            fn preview<'py>(&self, py: Python<'py>, id: String) -> $ret {
                let mirror = self.mirror.clone();
                $run(py, c"preview", None, preview, move |_| async move {
                    mirror.preview(&id).await
                })
            }

            fn __repr__(&self) -> String {
                format!("{}({})", stringify!($class), self.description)
            }

            $($extra)*
        }
    };
}

/// The store and engine settings a `Mirrors` is opened with.
struct Engine<'a> {
    state: &'a str,
    destination: Option<&'a str>,
    dest_credentials: Option<(String, String)>,
    dest_tls_verify: bool,
    dest_cert_dir: Option<PathBuf>,
    concurrency: i64,
    lease: f64,
    default_rollback: &'a str,
    retry_backoff: f64,
    ssrf_guard: bool,
    ssrf_allow: Vec<String>,
    max_tags: i64,
}

impl Engine<'_> {
    /// The engine, and how `repr()` names it.
    fn open(
        self,
        py: Python<'_>,
        notifiers: &[Bound<'_, PyAny>],
    ) -> PyResult<(regmirror::Mirror, String)> {
        let notifiers = notifiers
            .iter()
            .map(bridge::notifier)
            .collect::<PyResult<Vec<_>>>()?;
        let checked = || -> regmirror::Result<_> {
            let url: StoreUrl = self.state.parse().map_err(|e: Error| e.context("state"))?;
            let destination = match self.destination {
                Some(d) => {
                    let mut dest = Destination::parse(d).map_err(|e| e.context("destination"))?;
                    dest.credentials = self
                        .dest_credentials
                        .map(|(user, password)| Credentials::new(user, password));
                    dest.tls_verify = self.dest_tls_verify;
                    dest.ca_certs = self.dest_cert_dir.into_iter().collect();
                    Some(dest)
                }
                None => None,
            };
            let settings = EngineSettings {
                default_rollback: self.default_rollback.parse()?,
                default_retry_backoff: retry_backoff(self.retry_backoff)?,
                ..EngineSettings::default()
            };
            let connector = HttpConnector::new(HttpOptions {
                docker_config: false,
                address_guard: AddressGuard::switch(self.ssrf_guard, &self.ssrf_allow)
                    .map_err(|e| e.context("ssrf_allow"))?,
                max_tags: count("max_tags", self.max_tags)?,
                ..HttpOptions::default()
            });
            let builder = regmirror::Mirror::builder()
                .connector(Arc::new(connector))
                .concurrency(count("concurrency", self.concurrency)?)
                .max_tags(count("max_tags", self.max_tags)?)
                .lease(seconds("lease", self.lease)?)
                .settings(settings);
            Ok((url, destination, builder))
        };
        let (url, destination, mut builder) = checked().map_err(to_py)?;
        let description = match &destination {
            Some(d) => format!("{:?}, destination={:?}", url.to_string(), d.to_string()),
            None => format!("{:?}", url.to_string()),
        };
        if let Some(destination) = destination {
            builder = builder.destination_spec(destination);
        }
        for notifier in notifiers {
            builder = builder.notifier(Arc::new(notifier));
        }
        let store = bridge::block_on(py, CancellationToken::new(), async move {
            url.open(StoreTimeouts::default()).await
        })?;
        let mirror = builder.state(store).build().map_err(to_py)?;
        Ok((mirror, description))
    }
}

fn retry_backoff(secs: f64) -> regmirror::Result<std::time::Duration> {
    if secs == 0.0 {
        return Ok(std::time::Duration::ZERO);
    }
    seconds("retry_backoff", secs)
}

fn count(name: &str, n: i64) -> regmirror::Result<usize> {
    usize::try_from(n).ok().filter(|n| *n > 0).ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidConfig,
            format!("{name} must be greater than 0, not {n}"),
        )
    })
}

/// The changes `update` applies, as a JSON object of `[[mirror]]` names.
fn changes(
    py: Python<'_>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<serde_json::Map<String, serde_json::Value>> {
    let text: String = py
        .import("regmirror._convert")?
        .getattr("changes")?
        .call1((kwargs,))?
        .extract()?;
    serde_json::from_str(&text).map_err(|e| to_py(Error::new(ErrorKind::Internal, e.to_string())))
}

/// Run a core future to completion, blocking; the token is cancelled when the wait is given up
/// (Ctrl-C).
fn blocking<T, F, W>(
    py: Python<'_>,
    _name: &'static std::ffi::CStr,
    parent: Option<&CancelToken>,
    convert: Convert<T>,
    work: W,
) -> PyResult<Py<PyAny>>
where
    T: Send + 'static,
    F: Future<Output = regmirror::Result<T>> + Send + 'static,
    W: FnOnce(CancellationToken) -> F + Send + 'static,
{
    let cancel = parent.map_or_else(CancellationToken::new, |p| p.0.child_token());
    let value = bridge::block_on(py, cancel.clone(), work(cancel))?;
    convert(py, value)
}

/// Run a core future as an asyncio coroutine.
fn awaitable<'py, T, F, W>(
    py: Python<'py>,
    name: &'static std::ffi::CStr,
    parent: Option<&CancelToken>,
    convert: Convert<T>,
    work: W,
) -> PyResult<Bound<'py, PyAny>>
where
    T: Send + 'static,
    F: Future<Output = regmirror::Result<T>> + Send + 'static,
    W: FnOnce(CancellationToken) -> F + Send + 'static,
{
    bridge::coroutine(py, name, parent, false, work, convert)
}

/// Mirrors in a state store, synced into a destination; blocking methods (the GIL released).
#[pyclass(frozen, module = "regmirror")]
pub(crate) struct Mirrors {
    mirror: regmirror::Mirror,
    /// The store (its password hidden) and the destination, for `repr()`.
    description: String,
}

mirrors_class!(Mirrors, PyResult<Py<PyAny>>, blocking, bridge::drain, {
    /// Run the worker in this process until `stop.is_set()` (a `threading.Event`) or Ctrl-C:
    /// poll for due mirrors and sync them, as `regmirror worker` does. Stopping lets the runs
    /// in flight finish within `shutdown_deadline` (a second Ctrl-C releases them at once);
    /// Ctrl-C then raises `KeyboardInterrupt`.
    #[pyo3(signature = (
        *, stop = None, poll_interval = 30.0, max_concurrent_syncs = 4,
        shutdown_deadline = 30.0, first_run_spread = 180.0,
    ))]
    fn run_worker(
        &self,
        py: Python<'_>,
        stop: Option<Bound<'_, PyAny>>,
        poll_interval: f64,
        max_concurrent_syncs: i64,
        shutdown_deadline: f64,
        first_run_spread: f64,
    ) -> PyResult<()> {
        let options = worker_options(
            poll_interval,
            max_concurrent_syncs,
            shutdown_deadline,
            first_run_spread,
        )
        .map_err(to_py)?;
        let (graceful, now) = (CancellationToken::new(), CancellationToken::new());
        let _release_on_drop = now.clone().drop_guard();
        let worker = self.mirror.worker(options);
        let (g, n) = (graceful.clone(), now.clone());
        let mut task = bridge::spawn(async move {
            worker
                .run_until(g.cancelled_owned(), n.cancelled_owned())
                .await
                .map(|_| ())
        });
        let mut interrupted: Option<PyErr> = None;
        loop {
            if let Some(result) = bridge::wait(py, &mut task, SIGNAL_CHECK_INTERVAL) {
                result.map_err(to_py)?;
                return interrupted.map_or(Ok(()), Err);
            }
            if let Err(e) = py.check_signals() {
                match interrupted {
                    None => {
                        graceful.cancel();
                        interrupted = Some(e);
                    }
                    Some(_) => now.cancel(),
                }
            }
            if let Some(stop) = &stop
                && stop.call_method0("is_set")?.is_truthy()?
            {
                graceful.cancel();
            }
        }
    }
});

/// `Mirrors` for asyncio: the same arguments; every method is a coroutine.
#[pyclass(frozen, module = "regmirror")]
pub(crate) struct AsyncMirrors {
    mirror: regmirror::Mirror,
    /// The store (its password hidden) and the destination, for `repr()`.
    description: String,
}

mirrors_class!(
    AsyncMirrors,
    PyResult<Bound<'py, PyAny>>,
    awaitable,
    bridge::forget,
    {
        /// Run the worker until the task awaiting this is cancelled (`task.cancel()`), as
        /// `regmirror worker` does; the runs in flight then finish within `shutdown_deadline`
        /// before the cancellation completes.
        #[pyo3(signature = (
        *, poll_interval = 30.0, max_concurrent_syncs = 4, shutdown_deadline = 30.0,
        first_run_spread = 180.0,
    ))]
        fn run_worker<'py>(
            &self,
            py: Python<'py>,
            poll_interval: f64,
            max_concurrent_syncs: i64,
            shutdown_deadline: f64,
            first_run_spread: f64,
        ) -> PyResult<Bound<'py, PyAny>> {
            let options = worker_options(
                poll_interval,
                max_concurrent_syncs,
                shutdown_deadline,
                first_run_spread,
            )
            .map_err(to_py)?;
            let worker = self.mirror.worker(options);
            bridge::coroutine(
                py,
                c"run_worker",
                None,
                true,
                move |stop: CancellationToken| async move {
                    worker.run(stop.cancelled_owned()).await.map(|_| ())
                },
                nothing,
            )
        }
    }
);

fn worker_options(
    poll_interval: f64,
    max_concurrent_syncs: i64,
    shutdown_deadline: f64,
    first_run_spread: f64,
) -> regmirror::Result<WorkerOptions> {
    let max_concurrent = count("max_concurrent_syncs", max_concurrent_syncs)?;
    Ok(WorkerOptions {
        poll_interval: seconds("poll_interval", poll_interval)?,
        batch_size: max_concurrent,
        max_concurrent,
        shutdown_deadline: seconds("shutdown_deadline", shutdown_deadline)?,
        first_run_spread: seconds("first_run_spread", first_run_spread)?,
        ..WorkerOptions::default()
    })
}
