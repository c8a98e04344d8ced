//! One sync or preview as a Promise, for `Mirror` and `Mirrors` alike: it runs on napi-rs's
//! tokio runtime, not on a libuv worker thread (those, 4 by default, also serve Node's `fs`,
//! `dns.lookup` and `crypto`, which a few long syncs would hold up). `signal` cancels it the
//! engine's way when the `AbortSignal` aborts; `onProgress` receives its progress events.

use std::future::Future;

use napi::bindgen_prelude::{
    FnArgs, Function, FunctionRef, JsObjectValue, Object, ObjectRef, PromiseRaw, Unknown,
};
use napi::{Env, JsError, JsValue};
use napi_derive::napi;
use regmirror::engine::{Outcome, SyncPreview};
use regmirror::{Error, ErrorKind, SyncReport};
use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::callbacks::{self, EventFunction};
use crate::convert::to_js;
use crate::errors::{throw, to_js as error_to_js, to_js_rejection};

/// How to run one `sync()` or `preview()`.
#[napi(object, object_to_js = false)]
pub struct SyncOptions<'env> {
    /// Cancel the run when this signal aborts (`AbortController.signal`,
    /// `AbortSignal.timeout(ms)`): the promise rejects with an `AbortError`.
    #[napi(ts_type = "AbortSignal")]
    pub signal: Option<Object<'env>>,
    /// Called with each progress event of the run: a tag started or finished, a blob's bytes
    /// (at most five a second, and each blob's last), a blob done. It runs on the event loop
    /// and may lag the run a little: events can arrive after the promise settles. One that
    /// throws or is slow loses events (a process warning says so), never the run.
    #[napi(ts_type = "(event: ProgressEvent) => unknown")]
    pub on_progress: Option<EventFunction<'env>>,
}

impl std::fmt::Debug for SyncOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncOptions")
            .field("signal", &self.signal.as_ref().map(|_| "AbortSignal"))
            .field(
                "on_progress",
                &self.on_progress.as_ref().map(|_| "function"),
            )
            .finish()
    }
}

/// What a run resolves with.
pub(crate) trait RunOutput: Serialize + Send + 'static {
    /// Whether the run stopped because it was cancelled (an aborted signal then rejects).
    fn cancelled(&self) -> bool;
}

impl RunOutput for SyncReport {
    fn cancelled(&self) -> bool {
        self.outcome == Outcome::Cancelled
    }
}

impl RunOutput for SyncPreview {
    fn cancelled(&self) -> bool {
        false
    }
}

/// Start `run` with `options`' signal and progress sink; the promise resolves with its output
/// as a plain object. When the signal aborts, the run stops after the work in flight (nothing
/// is rolled back) and the promise rejects with an `AbortError` (see `abort_error`).
pub(crate) fn spawn<'env, T, F>(
    env: &'env Env,
    options: Option<SyncOptions<'env>>,
    run: impl FnOnce(regmirror::SyncOptions) -> F,
) -> napi::Result<PromiseRaw<'env, Value>>
where
    T: RunOutput,
    F: Future<Output = regmirror::Result<T>> + Send + 'static,
{
    let cancel = CancellationToken::new();
    let (signal, on_progress) = match options {
        Some(o) => (o.signal, o.on_progress),
        None => (None, None),
    };
    let progress = match &on_progress {
        Some(f) => callbacks::progress(f).map_err(|e| throw(*env, e))?,
        None => Default::default(),
    };
    let listener = match &signal {
        Some(signal) => Some(AbortListener::attach(env, signal, cancel.clone())?),
        None => None,
    };
    // Cancelled only by the signal (a stored mirror's cancel reaches the run another way).
    let aborted = cancel.clone();
    let work = run(regmirror::SyncOptions {
        cancel,
        progress,
        ..regmirror::SyncOptions::default()
    });
    let started = aborted.clone();
    env.spawn_future_with_callback(
        async move {
            if started.is_cancelled() {
                return Ok(None);
            }
            Ok(Some(work.await))
        },
        // On the JavaScript thread, where the error object keeps its `code`.
        move |env, output| {
            let reason = match listener {
                Some(listener) => Some(listener.detach(env)?),
                None => None,
            };
            let by_signal = aborted.is_cancelled();
            match output {
                Some(Ok(out)) if by_signal && out.cancelled() => {
                    Err(abort_error(env, Some(&out), reason)?)
                }
                Some(Ok(out)) => to_js(&out).map_err(|e| to_js_rejection(*env, e)),
                Some(Err(e)) if by_signal && e.kind() == ErrorKind::Cancelled => {
                    Err(abort_error(env, None::<&T>, reason)?)
                }
                Some(Err(e)) => Err(to_js_rejection(*env, e)),
                None => Err(abort_error(env, None::<&T>, reason)?),
            }
        },
    )
}

/// A run's `abort` listener on its signal. It is removed when the run ends, so a signal that
/// outlives many runs does not collect listeners (Node warns past 10).
struct AbortListener {
    /// Released by `detach`; a run whose promise is never settled (the environment is torn
    /// down) leaks it, which is moot then.
    signal: ObjectRef<false>,
    listener: FunctionRef<Unknown<'static>, ()>,
}

impl AbortListener {
    /// Cancel `cancel` when `signal` aborts; cancelled at once if it already has.
    fn attach(env: &Env, signal: &Object, cancel: CancellationToken) -> napi::Result<Self> {
        let abort_signal: Function = env.get_global()?.get_named_property("AbortSignal")?;
        if !signal.instanceof(abort_signal)? {
            return Err(napi::Error::new(
                napi::Status::InvalidArg,
                "options.signal must be an AbortSignal (an AbortController's .signal)",
            ));
        }
        if signal.get_named_property::<bool>("aborted")? {
            cancel.cancel();
        }
        let listener = env.create_function_from_closure("onAbort", move |_| {
            cancel.cancel();
            Ok(())
        })?;
        listener_call(signal, "addEventListener", listener)?;
        Ok(AbortListener {
            signal: signal.create_ref()?,
            listener: listener.create_ref()?,
        })
    }

    /// Remove the listener; returns the signal's `reason` (`undefined` when not aborted).
    fn detach<'env>(self, env: &'env Env) -> napi::Result<Unknown<'env>> {
        let signal = self.signal.get_value(env)?;
        listener_call(
            &signal,
            "removeEventListener",
            self.listener.borrow_back(env)?,
        )?;
        let reason = signal.get_named_property("reason")?;
        self.signal.unref(env)?;
        Ok(reason)
    }
}

/// The `abort` listener: called with the event, which it ignores.
type Listener<'env> = Function<'env, Unknown<'static>, ()>;

/// `signal[method]('abort', listener)`.
fn listener_call(signal: &Object, method: &str, listener: Listener<'_>) -> napi::Result<()> {
    let call: Function<FnArgs<(&str, Listener<'_>)>, Unknown> =
        signal.get_named_property(method)?;
    call.apply(signal, FnArgs::from(("abort", listener)))?;
    Ok(())
}

/// The rejection of an aborted run: an `Error` named `AbortError` (what `fetch` and Node's APIs
/// reject with), `code` `'Cancelled'`, the signal's `reason` as `cause`, and the report of the
/// run when it started.
fn abort_error<T: RunOutput>(
    env: &Env,
    report: Option<&T>,
    reason: Option<Unknown>,
) -> napi::Result<napi::Error> {
    let report = report
        .map(to_js)
        .transpose()
        .map_err(|e| to_js_rejection(*env, e))?;
    let message = report
        .as_ref()
        .and_then(|r| r.get("error")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| "the sync was cancelled before it started".to_owned());
    let cancelled = Error::new(ErrorKind::Cancelled, message);
    let mut error = JsError::from(error_to_js(cancelled))
        .into_unknown(*env)
        .coerce_to_object()?;
    error.set_named_property("name", "AbortError")?;
    if let Some(reason) = reason {
        error.set_named_property("cause", reason)?;
    }
    if let Some(report) = report {
        error.set_named_property("report", report)?;
    }
    Ok(napi::Error::from(error.to_unknown()))
}

/// A promise of `work`'s output as a plain object (`to_js`), rejecting with its error (`code`
/// kept). For the calls that are not runs: no signal, no progress.
pub(crate) fn promise<'env, T, F>(env: &'env Env, work: F) -> napi::Result<PromiseRaw<'env, Value>>
where
    T: Serialize + Send + 'static,
    F: Future<Output = regmirror::Result<T>> + Send + 'static,
{
    env.spawn_future_with_callback(async move { Ok(work.await) }, move |env, output| {
        output
            .and_then(|out| to_js(&out))
            .map_err(|e| to_js_rejection(*env, e))
    })
}

/// `promise` for work with no result: resolves with `undefined`.
pub(crate) fn settled<'env, F>(env: &'env Env, work: F) -> napi::Result<PromiseRaw<'env, ()>>
where
    F: Future<Output = regmirror::Result<()>> + Send + 'static,
{
    env.spawn_future_with_callback(async move { Ok(work.await) }, move |env, output| {
        output.map_err(|e| to_js_rejection(*env, e))
    })
}
