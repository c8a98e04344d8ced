//! JavaScript functions the engine calls: a `Mirrors`' notifiers and a sync's `onProgress`.
//!
//! The core's [`regmirror::handoff`] queues each event for a thread of its own (bounded, byte
//! counts rate-limited), and that thread passes it to the event loop through a threadsafe
//! function. The engine never waits for JavaScript and JavaScript never waits for the engine,
//! so a callback that throws, blocks or is slow cannot fail or stall a sync, nor deadlock the
//! event loop: when it falls behind, the handoff drops events. What a callback throws, or the
//! promise it returns rejects with, becomes a process warning (`process.on('warning')`) named
//! `RegmirrorCallbackError` whose `cause` is the thrown value.

use napi::bindgen_prelude::{FnArgs, Function, JsObjectValue, Object, Unknown};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, JsError, JsValue, Status};
use regmirror::MirrorEvent;
use regmirror::engine::{Progress, ProgressEvent};
use regmirror::handoff::{self, CallbackNotifier};
use serde::Serialize;
use serde_json::Value;

use crate::convert::to_js;
use crate::errors::{self, ErrorCode};

/// Calls waiting for the event loop, per function. A handoff thread waits while there are this
/// many, so the handoff's own bounded queue absorbs (and then drops) the rest.
const PENDING_CALLS: usize = 16;

/// How a function reaches the event loop. Weak: a `Mirrors` holding its notifiers does not
/// keep the process alive.
type Tsfn = ThreadsafeFunction<Value, Unknown<'static>, Value, Status, false, true, PENDING_CALLS>;

/// A JavaScript function taking one event, as received from JavaScript.
pub(crate) type EventFunction<'env> = Function<'env, Value, Unknown<'static>>;

/// A JavaScript function callable from any thread; `role` names it in warnings.
struct JsCallback {
    tsfn: Tsfn,
    role: &'static str,
}

impl JsCallback {
    fn new(function: &EventFunction, role: &'static str) -> napi::Result<Self, ErrorCode> {
        let tsfn = function
            .build_threadsafe_function::<Value>()
            .callee_handled::<false>()
            .weak::<true>()
            .max_queue_size::<PENDING_CALLS>()
            .build()
            .map_err(|e| errors::internal(role, e))?;
        Ok(JsCallback { tsfn, role })
    }

    /// Call it with `event`. Runs on a handoff thread (never the event loop's), so it may wait
    /// for room in the call queue.
    fn call<T: Serialize>(&self, event: &T) {
        // Events are plain data (no maps with non-string keys): converting them cannot fail.
        let Ok(value) = to_js(event) else { return };
        let role = self.role;
        // A status other than ok means the environment is closing: nothing to deliver to.
        let _ = self.tsfn.call_with_return_value(
            value,
            ThreadsafeFunctionCallMode::Blocking,
            move |returned, env| {
                // Returning an error here would end the process; a warning is all that is due.
                let _ = settle(&env, role, returned);
                Ok(())
            },
        );
    }
}

/// A notifier calling `function` with each event of the runs it is given to.
pub(crate) fn notifier(function: &EventFunction) -> napi::Result<CallbackNotifier, ErrorCode> {
    let callback = JsCallback::new(function, "a notifier")?;
    CallbackNotifier::new("regmirror-node-notifier", move |event: MirrorEvent| {
        callback.call(&event)
    })
    .map_err(errors::to_js)
}

/// The progress sink calling `function` with each event of one run.
pub(crate) fn progress(function: &EventFunction) -> napi::Result<Progress, ErrorCode> {
    let callback = JsCallback::new(function, "onProgress")?;
    // The run's end drops the last clone of the Progress, which ends the thread once it has
    // delivered what is queued; nothing waits for that.
    let (progress, _drained) =
        handoff::progress("regmirror-node-progress", move |event: ProgressEvent| {
            callback.call(&event)
        })
        .map_err(errors::to_js)?;
    Ok(progress)
}

/// What a call returned: a throw, or a promise that may reject later, becomes a warning.
fn settle(
    env: &Env,
    role: &'static str,
    returned: napi::Result<Unknown<'static>>,
) -> napi::Result<()> {
    match returned {
        Err(thrown) => warn(env, role, "threw", JsError::from(thrown).into_unknown(*env)),
        Ok(value) if value.is_promise()? => {
            let promise: Object = value.coerce_to_object()?;
            let on_rejected = env.create_function_from_closure("onRejected", move |ctx| {
                let reason: Unknown = ctx.get(0)?;
                warn(ctx.env, role, "rejected", reason)
            })?;
            let catch: Function<FnArgs<(Function<Unknown, ()>,)>, Unknown> =
                promise.get_named_property("catch")?;
            catch.apply(promise, FnArgs::from((on_rejected,)))?;
            Ok(())
        }
        Ok(_) => Ok(()),
    }
}

/// `process.emitWarning(error)` with an `Error` named `RegmirrorCallbackError` saying which
/// callback failed how, with what it threw as `cause`.
fn warn(env: &Env, role: &str, how: &str, thrown: Unknown) -> napi::Result<()> {
    let message = format!("{role} {how}; the sync went on without it");
    let global = env.get_global()?;
    let error_class: Function<String, Unknown> = global.get_named_property("Error")?;
    let mut warning = error_class.new_instance(message)?.coerce_to_object()?;
    warning.set_named_property("name", "RegmirrorCallbackError")?;
    warning.set_named_property("cause", thrown)?;
    let process: Object = global.get_named_property("process")?;
    let emit: Function<Object, Unknown> = process.get_named_property("emitWarning")?;
    emit.apply(process, warning)?;
    Ok(())
}
