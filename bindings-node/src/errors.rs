//! The one place a regmirror error becomes a JavaScript error: an `Error` whose `code` is the
//! error kind's name (`'InvalidPattern'`), so callers test `err.code`, never messages.

use napi::{Env, JsError};

/// The `code` of a thrown error: the error kind's name.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(&'static str);

impl AsRef<str> for ErrorCode {
    fn as_ref(&self) -> &str {
        self.0
    }
}

/// For functions that throw synchronously (`Result<T, ErrorCode>`).
pub(crate) fn to_js(e: regmirror::Error) -> napi::Error<ErrorCode> {
    napi::Error::new(ErrorCode(e.kind().as_str()), e.message())
}

/// For promises settled on the JavaScript thread (a task's `resolve`): napi rejects with the
/// very JS object an error was made from, so the object built here keeps its `code`.
pub(crate) fn to_js_rejection(env: Env, e: regmirror::Error) -> napi::Error {
    napi::Error::from(JsError::from(to_js(e)).into_unknown(env))
}
