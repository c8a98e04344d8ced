//! The one guard every export runs inside, the argument checks it offers, and the
//! thread-local last error message.

use std::any::Any;
use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char};
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::ptr::NonNull;

use crate::result_code::regmirror_result::{self, *};

/// Why a call failed: its result code and the message `regmirror_last_error_message` returns.
#[derive(Debug)]
pub(crate) struct Failure {
    code: regmirror_result,
    message: String,
}

impl From<engine::Error> for Failure {
    fn from(e: engine::Error) -> Self {
        Failure {
            code: regmirror_result::from_kind(e.kind()),
            message: e.to_string(),
        }
    }
}

impl Failure {
    /// A bug inside regmirror (`REGMIRROR_INTERNAL`), worded as the core's internal errors are.
    pub(crate) fn internal(message: String) -> Self {
        engine::Error::new(engine::ErrorKind::Internal, message).into()
    }
}

thread_local! {
    /// `None` when the last call on this thread succeeded.
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

/// Run `body`, turning an error or a panic into a result code and recording its message for
/// `regmirror_last_error_message`. The message of the previous call is cleared first.
pub(crate) fn guard(body: impl FnOnce() -> Result<(), Failure>) -> regmirror_result {
    set_last_error(None);
    // Unwind safety: on a panic nothing `body` touched is used again; out-parameters are
    // written only as the last step of a successful call.
    let failure = match panic::catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => return REGMIRROR_OK,
        Ok(Err(failure)) => failure,
        Err(payload) => Failure {
            code: REGMIRROR_PANIC,
            message: format!("panic inside regmirror (a bug): {}", panic_text(&*payload)),
        },
    };
    set_last_error(Some(failure.message));
    failure.code
}

fn panic_text(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

fn set_last_error(message: Option<String>) {
    // A C string cannot hold NUL; show it instead of losing the message.
    let message = message
        .map(|m| CString::new(m.replace('\0', "\\0")).expect("NUL bytes were replaced just above"));
    // try_with: during thread teardown there is nowhere left to record the message.
    let _ = LAST_ERROR.try_with(|last| *last.borrow_mut() = message);
}

/// The message of the last failed call on this thread (`""` if the last call succeeded). The
/// pointer stays valid until the next regmirror call on the same thread; never free it.
#[unsafe(no_mangle)]
pub extern "C" fn regmirror_last_error_message() -> *const c_char {
    LAST_ERROR
        .try_with(|last| last.borrow().as_ref().map(|m| m.as_ptr()))
        .ok()
        .flatten()
        .unwrap_or(c"".as_ptr())
}

/// A required pointer argument, or `REGMIRROR_NULL_ARGUMENT` naming it.
pub(crate) fn non_null<T>(ptr: *mut T, name: impl fmt::Display) -> Result<NonNull<T>, Failure> {
    NonNull::new(ptr).ok_or_else(|| Failure {
        code: REGMIRROR_NULL_ARGUMENT,
        message: format!("argument `{name}` is NULL"),
    })
}

/// A required string argument as UTF-8.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that outlives `'a`.
pub(crate) unsafe fn utf8<'a>(
    ptr: *const c_char,
    name: impl fmt::Display,
) -> Result<&'a str, Failure> {
    let ptr = non_null(ptr.cast_mut(), &name)?;
    // SAFETY: non-NULL, and the caller promises NUL termination and lifetime.
    let s = unsafe { CStr::from_ptr(ptr.as_ptr()) };
    s.to_str().map_err(|e| Failure {
        code: REGMIRROR_INVALID_UTF8,
        message: format!("argument `{name}` is not valid UTF-8: {e}"),
    })
}

/// An optional string argument: NULL is `None`.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that outlives `'a`.
pub(crate) unsafe fn opt_utf8<'a>(
    ptr: *const c_char,
    name: impl fmt::Display,
) -> Result<Option<&'a str>, Failure> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded from this function's contract.
    unsafe { utf8(ptr, name) }.map(Some)
}
