//! C callbacks: a function pointer plus `void *userdata`, called with each event as JSON. The
//! core's [`engine::handoff`] calls them on a thread of their own (so a slow or blocked
//! callback never holds up a sync); the [`Gate`] here makes sure none is called once its
//! registration has ended.

use std::ffi::{CString, c_char, c_void};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;

/// A function regmirror calls with one event: `userdata` as registered, `json` a
/// NUL-terminated JSON object valid only during the call (copy what you keep). The calls of
/// one registration come one at a time, in order, from a regmirror thread (never the thread
/// that registered it); they must not free the handle they were registered on.
pub type regmirror_event_callback =
    Option<unsafe extern "C" fn(userdata: *mut c_void, json: *const c_char)>;

/// A callback and its `userdata` as C gave them.
#[derive(Debug, Clone, Copy)]
struct Callback {
    f: unsafe extern "C" fn(*mut c_void, *const c_char),
    userdata: *mut c_void,
}

// SAFETY: the header tells C callers that callbacks run on a regmirror thread with their
// `userdata`; making that safe is their side of the contract.
unsafe impl Send for Callback {}

/// A callback that can be closed: after [`Gate::close`] returns, it is not called again.
#[derive(Debug, Clone)]
pub(crate) struct Gate(Arc<Mutex<Option<Callback>>>);

impl Gate {
    /// `None` when C passed a NULL function (no callback wanted).
    pub(crate) fn new(f: regmirror_event_callback, userdata: *mut c_void) -> Option<Self> {
        f.map(|f| Gate(Arc::new(Mutex::new(Some(Callback { f, userdata })))))
    }

    /// Call the callback with `event` as JSON, unless the gate is closed.
    pub(crate) fn deliver(&self, event: &impl Serialize) {
        // Events hold no NUL byte (JSON escapes control characters); were one to, that event
        // is skipped rather than cut short.
        let Ok(Ok(json)) = serde_json::to_string(event).map(CString::new) else {
            return;
        };
        // Held during the call, so `close` waits for a call in progress.
        let callback = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(callback) = *callback {
            // SAFETY: a function C registered, called as the header documents.
            unsafe { (callback.f)(callback.userdata, json.as_ptr()) }
        }
    }

    /// No call after this returns (it waits for a call in progress).
    pub(crate) fn close(&self) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}
