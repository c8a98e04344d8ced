//! Running the engine's async work for a blocking C caller: one shared runtime, and the
//! per-call options (cancel handle, progress callback) bridged into [`SyncOptions`].

use std::ffi::c_void;
use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use engine::SyncOptions;
use engine::handoff;

use crate::callback::{Gate, regmirror_event_callback};
use crate::cancel::{self, regmirror_cancel};
use crate::guard::Failure;

/// How long a call that ended waits for its progress callback to take the events still
/// queued; the rest are dropped (the call returns once a callback in progress returns).
const CATCH_UP: Duration = Duration::from_secs(1);

/// The runtime the engine runs on, started by the first call that needs it; callers block on
/// it from their own threads.
pub(crate) fn runtime() -> Result<&'static tokio::runtime::Runtime, Failure> {
    static RUNTIME: OnceLock<std::io::Result<tokio::runtime::Runtime>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("regmirror")
                .build()
        })
        .as_ref()
        .map_err(|e| Failure::internal(format!("starting regmirror's runtime: {e}")))
}

/// Run `body` with the options a C caller gave for one sync or preview, blocking until it
/// ends; the progress callback is not called after this returns.
///
/// # Safety
/// `cancel` is NULL or a live handle.
pub(crate) unsafe fn with_options<T, F>(
    cancel: *const regmirror_cancel,
    progress: regmirror_event_callback,
    userdata: *mut c_void,
    body: impl FnOnce(SyncOptions) -> F,
) -> Result<T, Failure>
where
    F: Future<Output = engine::Result<T>>,
{
    let mut options = SyncOptions {
        // SAFETY: forwarded from this function's contract.
        cancel: unsafe { cancel::token(cancel) },
        ..SyncOptions::default()
    };
    let gate = Gate::new(progress, userdata);
    let mut drained = None;
    if let Some(gate) = &gate {
        let gate = gate.clone();
        let (sink, done) = handoff::progress("regmirror-progress", move |e| gate.deliver(&e))?;
        options.progress = sink;
        drained = Some(done);
    }
    let result = runtime()?.block_on(body(options));
    if let (Some(gate), Some(drained)) = (gate, drained) {
        drained.wait(CATCH_UP);
        gate.close();
    }
    Ok(result?)
}
