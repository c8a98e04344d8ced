//! Running the engine's futures for Python: blocking (the GIL released, Ctrl-C honoured) or as
//! an asyncio coroutine; records handed over as the core's JSON; callbacks on threads of their
//! own ([`regmirror::handoff`]); and `CancelToken`.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyCFunction;
use regmirror::engine::Progress;
use regmirror::handoff::{self, CallbackNotifier, Drained};
use regmirror::{Error, ErrorKind};
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::errors::to_py;

/// How long a blocking call waits before letting Python run its signal handlers.
pub(crate) const SIGNAL_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// How long a blocking sync waits, after the run, for its progress callback to see the last
/// events (a callback that blocks gets them later).
const PROGRESS_DRAIN: Duration = Duration::from_secs(5);

fn runtime() -> &'static tokio::runtime::Runtime {
    pyo3_async_runtimes::tokio::get_runtime()
}

/// Start `work` on regmirror's runtime (from any thread).
pub(crate) fn spawn<T: Send + 'static>(
    work: impl Future<Output = T> + Send + 'static,
) -> JoinHandle<T> {
    runtime().spawn(work)
}

/// A task's outcome; tasks are never aborted, so a join error is a panic (a bug).
fn joined<T>(result: Result<regmirror::Result<T>, tokio::task::JoinError>) -> regmirror::Result<T> {
    result.unwrap_or_else(|e| {
        Err(Error::new(
            ErrorKind::Internal,
            format!("the operation panicked (a bug): {e}"),
        ))
    })
}

/// Wait up to `limit` for `task`, outside the GIL; `None` if it is still going.
pub(crate) fn wait<T: Send>(
    py: Python<'_>,
    task: &mut JoinHandle<regmirror::Result<T>>,
    limit: Duration,
) -> Option<regmirror::Result<T>> {
    // The timer is made inside the runtime (it needs its time driver).
    py.detach(|| {
        runtime()
            .block_on(async { tokio::time::timeout(limit, task).await })
            .ok()
            .map(joined)
    })
}

/// Run `work` on regmirror's runtime and wait for it, the GIL released. Ctrl-C (a signal
/// handler that raises) ends the wait at once and cancels `cancel`.
pub(crate) fn block_on<T, F>(py: Python<'_>, cancel: CancellationToken, work: F) -> PyResult<T>
where
    T: Send + 'static,
    F: Future<Output = regmirror::Result<T>> + Send + 'static,
{
    let _cancel_on_drop = cancel.drop_guard();
    let mut task = runtime().spawn(work);
    loop {
        if let Some(result) = wait(py, &mut task, SIGNAL_CHECK_INTERVAL) {
            return result.map_err(to_py);
        }
        py.check_signals()?;
    }
}

/// An asyncio coroutine running `work` on regmirror's runtime. `work` starts when the coroutine
/// is first awaited, with a token that cancelling the coroutine cancels (and `parent`, when
/// given); `convert` makes the Python result from its output, under the GIL. A cancelled
/// coroutine returns at once, or with `wind_down` once `work` has ended (a worker stopping).
pub(crate) fn coroutine<'py, T, F, W, C>(
    py: Python<'py>,
    name: &'static std::ffi::CStr,
    parent: Option<&CancelToken>,
    wind_down: bool,
    work: W,
    convert: C,
) -> PyResult<Bound<'py, PyAny>>
where
    T: Send + 'static,
    F: Future<Output = regmirror::Result<T>> + Send + 'static,
    W: FnOnce(CancellationToken) -> F + Send + 'static,
    C: FnOnce(Python<'_>, T) -> PyResult<Py<PyAny>> + Send + 'static,
{
    let once = Mutex::new(Some((work, convert)));
    let parent = parent.map(|p| p.0.clone());
    // `regmirror._coroutine.run` calls this with its event loop, an asyncio future for the
    // outcome and the function that settles it on the loop's thread.
    let start = PyCFunction::new_closure(
        py,
        Some(name),
        None,
        move |args, _kwargs| -> PyResult<CancelToken> {
            let (event_loop, future, settle) =
                args.extract::<(Py<PyAny>, Py<PyAny>, Py<PyAny>)>()?;
            let (work, convert) = once
                .lock()
                .map_err(|_| PyRuntimeError::new_err("poisoned"))?
                .take()
                .ok_or_else(|| PyRuntimeError::new_err("the coroutine was started twice"))?;
            let cancel = parent
                .as_ref()
                .map_or_else(CancellationToken::new, CancellationToken::child_token);
            let task = runtime().spawn(work(cancel.clone()));
            runtime().spawn(async move {
                let result = joined(task.await);
                // Waiting for the GIL must not hold up a runtime worker (other runs' I/O);
                // skipped when the program has ended meanwhile: nobody is waiting.
                tokio::task::spawn_blocking(move || {
                    Python::try_attach(|py| {
                        let (ok, value) = match result.map_err(to_py).and_then(|v| convert(py, v)) {
                            Ok(value) => (true, value),
                            Err(e) => (false, e.into_value(py).into_any()),
                        };
                        // Fails only when the loop is closed: nobody is waiting either.
                        let _ = event_loop.call_method1(
                            py,
                            "call_soon_threadsafe",
                            (settle, future, ok, value),
                        );
                    })
                });
            });
            Ok(CancelToken(cancel))
        },
    )?;
    py.import("regmirror._coroutine")?
        .getattr("run")?
        .call1((start, wind_down))
}

/// A record of `regmirror._records` (`class`) from a core value's JSON: the same field names
/// as the CLI's `--json`.
pub(crate) fn record<T: Serialize>(py: Python<'_>, class: &str, value: &T) -> PyResult<Py<PyAny>> {
    let text = serde_json::to_string(value)
        .map_err(|e| PyRuntimeError::new_err(format!("cannot serialize a {class}: {e}")))?;
    let records = py.import("regmirror._records")?;
    Ok(records
        .getattr("load")?
        .call1((records.getattr(class)?, text))?
        .unbind())
}

/// Call `regmirror._callbacks.<function>(target, json)`; what it raises goes to
/// `sys.unraisablehook`, never to the sync.
fn deliver<T: Serialize>(function: &str, target: &Py<PyAny>, event: &T) {
    let Ok(text) = serde_json::to_string(event) else {
        return;
    };
    // None once the interpreter is shutting down: nobody is listening any more.
    Python::try_attach(|py| {
        let result = py
            .import("regmirror._callbacks")
            .and_then(|m| m.getattr(function))
            .and_then(|f| f.call1((target.bind(py), text)));
        if let Err(e) = result {
            e.write_unraisable(py, Some(target.bind(py)));
        }
    });
}

/// A notifier calling `target` (a callable, or an object with `notify(event)`) on a thread of
/// its own.
pub(crate) fn notifier(target: &Bound<'_, PyAny>) -> PyResult<CallbackNotifier> {
    let py = target.py();
    let target = py
        .import("regmirror._callbacks")?
        .getattr("check")?
        .call1((target, "notifier"))?
        .unbind();
    CallbackNotifier::new("regmirror-notifier", move |event| {
        deliver("notify", &target, &event)
    })
    .map_err(to_py)
}

/// A progress sink calling `target` with each event on a thread of its own, and what waits
/// for its last events after the run.
pub(crate) fn progress(target: Option<&Bound<'_, PyAny>>) -> PyResult<(Progress, Option<Drained>)> {
    let Some(target) = target.filter(|t| !t.is_none()) else {
        return Ok((Progress::default(), None));
    };
    let py = target.py();
    let target = py
        .import("regmirror._callbacks")?
        .getattr("check")?
        .call1((target, "progress"))?
        .unbind();
    let (progress, drained) = handoff::progress("regmirror-progress", move |event| {
        deliver("progress", &target, &event)
    })
    .map_err(to_py)?;
    Ok((progress, Some(drained)))
}

/// Let a progress callback see a finished run's last events before the call returns (bounded;
/// the GIL released, since the callback needs it).
pub(crate) fn drain(py: Python<'_>, drained: Option<Drained>) {
    if let Some(drained) = drained {
        py.detach(move || drained.wait(PROGRESS_DRAIN));
    }
}

/// What an async call does with a sync's progress drain: nothing (the coroutine returns when
/// the run ends; the last events follow on the callback's thread).
pub(crate) fn forget(_py: Python<'_>, _drained: Option<Drained>) {}

/// Cancels a sync from another thread: `mirror.sync(cancel=token)` in one, `token.cancel()` in
/// the other. The run stops after the units of work in flight and reports `"cancelled"`.
#[pyclass(frozen, module = "regmirror")]
pub(crate) struct CancelToken(pub(crate) CancellationToken);

#[pymethods]
impl CancelToken {
    #[new]
    fn new() -> Self {
        CancelToken(CancellationToken::new())
    }

    /// Cancel every run given this token (and those given it later). Thread-safe.
    fn cancel(&self) {
        self.0.cancel();
    }

    /// Whether `cancel()` was called.
    #[getter]
    fn cancelled(&self) -> bool {
        self.0.is_cancelled()
    }

    fn __repr__(&self) -> String {
        format!("CancelToken(cancelled={})", self.0.is_cancelled())
    }
}
