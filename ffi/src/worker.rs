//! `regmirror_worker`: the worker `regmirror worker` runs, in-process on regmirror's threads:
//! it polls the store of a `regmirror_mirrors`, claims the mirrors that are due (with the
//! other workers on the same store) and syncs them, until `regmirror_worker_stop`.

use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use engine::worker::{WorkerOptions, WorkerReport};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::guard::{self, Failure, non_null};
use crate::mirrors::regmirror_mirrors;
use crate::result_code::regmirror_result;
use crate::run::runtime;

/// A worker's settings, as the CLI worker's regmirror.toml names them; 0 takes the default.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct regmirror_worker_settings {
    /// The wait between polls of the store (`poll_interval`, default 30 s).
    pub poll_interval_ms: u64,
    /// How long a claim on a mirror lasts without renewal (`lease`, default 60 s): a worker
    /// that dies holds its mirrors this long.
    pub lease_ms: u64,
    /// After `regmirror_worker_stop`: runs still going at two thirds of it are cancelled, at
    /// five sixths released (`shutdown_deadline`, default 30 s).
    pub shutdown_deadline_ms: u64,
    /// The most syncs running at once in this worker (`max_concurrent_syncs`, default 4).
    pub max_concurrent_syncs: usize,
    /// Blob copies and registry requests in flight per sync (`concurrency`, default 8).
    pub concurrency: usize,
    /// When several new mirrors without a start time are due together, all but one are spread
    /// over this window (`first_run_spread`, default 3 min).
    pub first_run_spread_ms: u64,
}

/// A running worker.
#[derive(Debug)]
pub struct regmirror_worker {
    stop: oneshot::Sender<()>,
    task: JoinHandle<engine::Result<WorkerReport>>,
}

/// Start a worker on the store and destination of `mirrors` with `settings` (NULL for the
/// defaults); `*out` receives it, to end with `regmirror_worker_stop`. It runs on regmirror's
/// threads, not the caller's; its runs' events reach the notifier of `mirrors`. A handle
/// without a destination is `REGMIRROR_INVALID_CONFIG`. Store failures while it runs are
/// retried at its next poll; they do not stop it.
///
/// # Safety
/// `mirrors` is NULL or a live handle; `settings` is NULL or points to a
/// `regmirror_worker_settings`; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_worker_start(
    mirrors: *const regmirror_mirrors,
    settings: *const regmirror_worker_settings,
    out: *mut *mut regmirror_worker,
) -> regmirror_result {
    guard::guard(|| {
        let mirrors = non_null(mirrors.cast_mut(), "mirrors")?;
        let out = non_null(out, "out")?;
        // SAFETY: NULL or a valid settings struct per the contract, only read.
        let settings = unsafe { settings.as_ref() }.copied().unwrap_or_default();
        let ms = |ms: u64| (ms != 0).then(|| Duration::from_millis(ms));
        let mut options = WorkerOptions::default();
        if let Some(poll) = ms(settings.poll_interval_ms) {
            options.poll_interval = poll;
        }
        if let Some(deadline) = ms(settings.shutdown_deadline_ms) {
            options.shutdown_deadline = deadline;
        }
        if let Some(spread) = ms(settings.first_run_spread_ms) {
            options.first_run_spread = spread;
        }
        if settings.max_concurrent_syncs != 0 {
            // As the CLI worker: claim up to as many per poll as may run.
            options.max_concurrent = settings.max_concurrent_syncs;
            options.batch_size = settings.max_concurrent_syncs;
        }
        // SAFETY: a live handle, only read.
        let parts = &unsafe { mirrors.as_ref() }.parts;
        let concurrency = (settings.concurrency != 0).then_some(settings.concurrency);
        let mirror = parts.mirror(ms(settings.lease_ms), concurrency)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let mut run: Pin<Box<dyn Future<Output = _> + Send>> =
            Box::pin(mirror.worker(options).run(async {
                let _ = stopped.await;
            }));
        let runtime = runtime()?;
        // The worker checks its settings before its first await: poll it once here, so a
        // worker that cannot run is an error of this call rather than of `_stop`.
        let first = runtime.block_on(std::future::poll_fn(|cx| {
            Poll::Ready(run.as_mut().poll(cx))
        }));
        if let Poll::Ready(ended) = first {
            ended?;
            return Err(Failure::internal(
                "the worker stopped as it started".to_owned(),
            ));
        }
        let task = runtime.spawn(run);
        let worker = Box::new(regmirror_worker { stop, task });
        // SAFETY: non-NULL and valid for a write per the contract.
        unsafe { out.write(Box::into_raw(worker)) };
        Ok(())
    })
}

/// Stop a worker and release it, blocking until it has stopped: it claims nothing more, lets
/// the runs in progress finish within its shutdown deadline (cancelling, then releasing what
/// is left), and returns. `NULL` does nothing and returns `REGMIRROR_OK`.
///
/// # Safety
/// `worker` is NULL or a worker from `regmirror_worker_start` not stopped yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn regmirror_worker_stop(worker: *mut regmirror_worker) -> regmirror_result {
    if worker.is_null() {
        return regmirror_result::REGMIRROR_OK;
    }
    guard::guard(|| {
        // SAFETY: made by Box::into_raw in regmirror_worker_start, consumed once.
        let worker = unsafe { Box::from_raw(worker) };
        // The worker may have ended on its own already; the task says how.
        let _ = worker.stop.send(());
        match runtime()?.block_on(worker.task) {
            Ok(ended) => ended.map(drop).map_err(Failure::from),
            Err(e) => Err(Failure::internal(format!("the worker task failed: {e}"))),
        }
    })
}
