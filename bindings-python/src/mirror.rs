//! `regmirror.Mirror` (blocking, releases the GIL) and `regmirror.AsyncMirror` (asyncio): one
//! mirror from a source to a destination, synced on demand without a state store
//! ([`regmirror::oneshot::OneShotSync`]), and the `SyncReport` a run returns.
//!
//! A run is a task on regmirror's tokio runtime that the calling Python code waits for; when
//! the wait is given up (Ctrl-C in `Mirror.sync()`, a cancelled asyncio task awaiting
//! `AsyncMirror.sync()`), the run is cancelled the engine's way: it stops after the units of
//! work in flight and is not rolled back (SEMANTICS.md §5).

use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyCFunction, PyDict, PyList, PyString, PyTuple};
use regmirror::engine::SyncOptions;
use regmirror::oneshot::{Access, Location, OneShotSync};
use regmirror::registry::http::AddressGuard;
use regmirror::{Credentials, Error, ErrorKind};
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::errors::to_py;
use crate::tag_filter::strings;

/// One mirror: `source`'s tags selected by `tags`, kept in `to`. `sync()` runs once, blocking.
#[pyclass(frozen, module = "regmirror")]
pub(crate) struct Mirror {
    sync: Arc<OneShotSync>,
}

#[pymethods]
impl Mirror {
    /// Settings are checked here: an invalid pattern, reference or option raises at once.
    #[new]
    #[pyo3(signature = (
        source, to, tags, *,
        architectures = Vec::new(),
        rollback = "failed_tags_only",
        platform_index = "sparse",
        referrers = "all",
        keep_unselected = false,
        source_credentials = None,
        source_tls_verify = true,
        dest_credentials = None,
        dest_tls_verify = true,
        docker_config = false,
        concurrency = regmirror::engine::DEFAULT_CONCURRENCY,
        timeout = 3600.0,
        ssrf_guard = false,
        ssrf_allow = Vec::new(),
        max_tags = regmirror::registry::http::DEFAULT_MAX_TAGS,
    ))]
    #[allow(clippy::too_many_arguments)] // Python keyword arguments, one per setting.
    fn new(
        source: &str,
        to: &str,
        tags: &Bound<'_, PyAny>,
        architectures: Vec<String>,
        rollback: &str,
        platform_index: &str,
        referrers: &str,
        keep_unselected: bool,
        source_credentials: Option<(String, String)>,
        source_tls_verify: bool,
        dest_credentials: Option<(String, String)>,
        dest_tls_verify: bool,
        docker_config: bool,
        concurrency: usize,
        timeout: f64,
        ssrf_guard: bool,
        ssrf_allow: Vec<String>,
        max_tags: usize,
    ) -> PyResult<Self> {
        let tags = match tags.cast::<PyString>() {
            Ok(list) => vec![list.to_cow()?.into_owned()],
            Err(_) => strings(tags, "tags")?,
        };
        let access = |credentials: Option<(String, String)>, tls_verify| Access {
            credentials: credentials.map(|(user, password)| Credentials::new(user, password)),
            tls_verify,
            docker_config,
            ..Access::default()
        };
        let build = || -> regmirror::Result<OneShotSync> {
            let mut sync = OneShotSync::new(source.parse::<Location>()?, to.parse()?, tags);
            sync.architectures = architectures;
            sync.rollback = rollback.parse()?;
            sync.platform_index = platform_index.parse()?;
            sync.referrers = referrers.parse()?;
            sync.keep_unselected = keep_unselected;
            sync.source_access = Access {
                address_guard: AddressGuard::switch(ssrf_guard, &ssrf_allow)
                    .map_err(|e| e.context("ssrf_allow"))?,
                ..access(source_credentials, source_tls_verify)
            };
            sync.dest_access = access(dest_credentials, dest_tls_verify);
            sync.concurrency = concurrency;
            sync.max_tags = max_tags;
            sync.timeout = Duration::try_from_secs_f64(timeout).map_err(|_| {
                Error::new(
                    ErrorKind::InvalidConfig,
                    format!("timeout: {timeout} is not a number of seconds"),
                )
            })?;
            sync.config()?;
            Ok(sync)
        };
        Ok(Mirror {
            sync: Arc::new(build().map_err(to_py)?),
        })
    }

    /// Run one sync and return its report; a failed tag is in the report, not an exception.
    /// Ctrl-C raises `KeyboardInterrupt` at once and cancels the run.
    fn sync(&self, py: Python<'_>) -> PyResult<SyncReport> {
        let mut run = Run::start(&self.sync);
        loop {
            if let Some(result) = py.detach(|| run.wait(SIGNAL_CHECK_INTERVAL)) {
                return result.map(SyncReport::from).map_err(to_py);
            }
            // A signal handler that raises (SIGINT's) ends the wait; dropping `run` cancels it.
            py.check_signals()?;
        }
    }

    /// Where the images come from.
    #[getter]
    fn source(&self) -> String {
        self.sync.source.to_string()
    }

    /// Where they go.
    #[getter]
    fn to(&self) -> String {
        self.sync.to.to_string()
    }

    /// The tag patterns, as given.
    #[getter]
    fn tags(&self) -> Vec<String> {
        self.sync.tags.clone()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        describe(py, "Mirror", &self.sync)
    }
}

/// [`Mirror`] for asyncio: the same arguments; `await mirror.sync()`.
#[pyclass(frozen, module = "regmirror")]
pub(crate) struct AsyncMirror {
    sync: Arc<OneShotSync>,
}

#[pymethods]
impl AsyncMirror {
    #[new]
    #[pyo3(signature = (*args, **kwargs))]
    fn new(
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        // Mirror's constructor checks the arguments; one signature to keep up to date.
        let mirror = py.get_type::<Mirror>().call(args, kwargs)?;
        let mirror = mirror.cast::<Mirror>()?;
        Ok(AsyncMirror {
            sync: Arc::clone(&mirror.get().sync),
        })
    }

    /// Run one sync on regmirror's tokio runtime: a coroutine whose result is the report. The
    /// run starts when the coroutine is first awaited; cancelling the task awaiting it cancels
    /// the run.
    fn sync<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let sync = Arc::clone(&self.sync);
        // `regmirror._coroutine.run` calls this with its event loop, an asyncio future for the
        // outcome and the function that settles it on the loop's thread.
        let start = PyCFunction::new_closure(
            py,
            Some(c"start_sync"),
            None,
            move |args, _kwargs| -> PyResult<RunHandle> {
                let (event_loop, future, settle) =
                    args.extract::<(Py<PyAny>, Py<PyAny>, Py<PyAny>)>()?;
                let run = Run::start(&sync);
                let handle = RunHandle {
                    cancel: run.cancel.clone(),
                };
                pyo3_async_runtimes::tokio::get_runtime().spawn(async move {
                    let result = run.finish().await;
                    // Waiting for the GIL must not hold up a runtime worker (other runs' I/O);
                    // skipped when the program has ended meanwhile: nobody is waiting.
                    tokio::task::spawn_blocking(move || {
                        Python::try_attach(|py| {
                            settle_future(py, event_loop, future, settle, result)
                        })
                    });
                });
                Ok(handle)
            },
        )?;
        py.import("regmirror._coroutine")?
            .getattr("run")?
            .call1((start,))
    }

    #[getter]
    fn source(&self) -> String {
        self.sync.source.to_string()
    }

    #[getter]
    fn to(&self) -> String {
        self.sync.to.to_string()
    }

    #[getter]
    fn tags(&self) -> Vec<String> {
        self.sync.tags.clone()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        describe(py, "AsyncMirror", &self.sync)
    }
}

/// How long a blocking sync waits before letting Python run its signal handlers.
const SIGNAL_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// One sync running on regmirror's tokio runtime. Dropping it before the run ends cancels the
/// run, which then stops after the units of work in flight.
struct Run {
    task: JoinHandle<regmirror::Result<regmirror::SyncReport>>,
    cancel: CancellationToken,
    _cancel_on_drop: DropGuard,
}

impl Run {
    fn start(sync: &Arc<OneShotSync>) -> Self {
        let options = SyncOptions::default();
        let cancel = options.cancel.clone();
        let sync = Arc::clone(sync);
        let task =
            pyo3_async_runtimes::tokio::get_runtime().spawn(async move { sync.run(options).await });
        Run {
            task,
            _cancel_on_drop: cancel.clone().drop_guard(),
            cancel,
        }
    }

    /// The run's result, or `None` if it is still going after `limit`.
    fn wait(&mut self, limit: Duration) -> Option<regmirror::Result<regmirror::SyncReport>> {
        let task = &mut self.task;
        // The timer is made inside the runtime (it needs its time driver).
        pyo3_async_runtimes::tokio::get_runtime()
            .block_on(async { tokio::time::timeout(limit, task).await })
            .ok()
            .map(joined)
    }

    async fn finish(mut self) -> regmirror::Result<regmirror::SyncReport> {
        joined((&mut self.task).await)
    }
}

/// An `AsyncMirror.sync()` run, for its coroutine to cancel when it is cancelled itself.
#[pyclass(frozen, module = "regmirror")]
pub(crate) struct RunHandle {
    cancel: CancellationToken,
}

#[pymethods]
impl RunHandle {
    /// Cancel the run (nothing once it has ended).
    fn cancel(&self) {
        self.cancel.cancel();
    }
}

/// Settle the asyncio `future` of `AsyncMirror.sync()` with a run's report or error, on its
/// event loop's thread (`settle` is `regmirror._coroutine._settle`).
fn settle_future(
    py: Python<'_>,
    event_loop: Py<PyAny>,
    future: Py<PyAny>,
    settle: Py<PyAny>,
    result: regmirror::Result<regmirror::SyncReport>,
) {
    let (ok, value) = match result.map(|report| Py::new(py, SyncReport::from(report))) {
        Ok(Ok(report)) => (true, report.into_any()),
        Ok(Err(e)) => (false, e.into_value(py).into_any()),
        Err(e) => (false, to_py(e).into_value(py).into_any()),
    };
    // Fails only when the loop is closed: nobody is waiting either.
    let _ = event_loop.call_method1(py, "call_soon_threadsafe", (settle, future, ok, value));
}

/// A run task's outcome; the task is never aborted, so a join error is a panic (a bug).
fn joined(
    result: Result<regmirror::Result<regmirror::SyncReport>, tokio::task::JoinError>,
) -> regmirror::Result<regmirror::SyncReport> {
    result.unwrap_or_else(|e| {
        Err(Error::new(
            ErrorKind::Internal,
            format!("the sync panicked (a bug): {e}"),
        ))
    })
}

/// `Mirror('quay.io/a/b' -> 'oci:out', tags=['v*'])`; credentials never appear.
fn describe(py: Python<'_>, class: &str, sync: &OneShotSync) -> PyResult<String> {
    let text = |s: String| PyString::new(py, &s).repr();
    Ok(format!(
        "{class}({} -> {}, tags={})",
        text(sync.source.to_string())?,
        text(sync.to.to_string())?,
        PyList::new(py, &sync.tags)?.repr()?
    ))
}

/// What one sync run did.
#[pyclass(frozen, get_all, module = "regmirror")]
pub(crate) struct SyncReport {
    /// The destination repository the run was named after.
    mirror_id: String,
    source: String,
    /// `"success"`, `"failed"` or `"cancelled"`.
    outcome: &'static str,
    /// Why the run failed or was cancelled; `None` when it succeeded.
    error: Option<String>,
    /// A remark on a successful run, such as "no tags matched".
    note: Option<String>,
    partial: bool,
    rolled_back: bool,
    tags_synced: Vec<String>,
    tags_current: Vec<String>,
    /// `(tag, reason)` pairs.
    tags_failed: Vec<(String, String)>,
    tags_deleted: Vec<String>,
    tags_skipped: Vec<String>,
    /// `(tag, source_digest, digest)` of indexes rewritten to the selected platforms.
    tags_rewritten: Vec<(String, String, String)>,
    blobs_copied: u64,
    blobs_mounted: u64,
    blobs_present: u64,
    bytes_copied: u64,
    /// Signatures, SBOMs and attestations newly copied with their images.
    referrers_copied: u64,
    duration_ms: u64,
}

#[pymethods]
impl SyncReport {
    /// Whether every selected tag is current now.
    #[getter]
    fn success(&self) -> bool {
        self.outcome == "success"
    }

    fn __repr__(&self) -> String {
        let failed: Vec<&str> = self.tags_failed.iter().map(|(t, _)| t.as_str()).collect();
        format!(
            "<SyncReport {}: {} synced, {} current, {} failed {:?}, {} deleted>",
            self.outcome,
            self.tags_synced.len(),
            self.tags_current.len(),
            failed.len(),
            failed,
            self.tags_deleted.len()
        )
    }
}

impl From<regmirror::SyncReport> for SyncReport {
    fn from(r: regmirror::SyncReport) -> Self {
        SyncReport {
            mirror_id: r.mirror_id,
            source: r.source,
            outcome: r.outcome.as_str(),
            error: r.error,
            note: r.note,
            partial: r.partial,
            rolled_back: r.rolled_back,
            tags_synced: r.tags_synced,
            tags_current: r.tags_current,
            tags_failed: r
                .tags_failed
                .into_iter()
                .map(|f| (f.tag, f.reason))
                .collect(),
            tags_deleted: r.tags_deleted,
            tags_skipped: r.tags_skipped,
            tags_rewritten: r
                .tags_rewritten
                .into_iter()
                .map(|t| (t.tag, t.source_digest.to_string(), t.digest.to_string()))
                .collect(),
            blobs_copied: r.blobs_copied,
            blobs_mounted: r.blobs_mounted,
            blobs_present: r.blobs_present,
            bytes_copied: r.bytes_copied,
            referrers_copied: r.referrers_copied,
            duration_ms: r.duration_ms,
        }
    }
}
