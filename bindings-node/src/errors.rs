//! The one place a regmirror error becomes a JavaScript error: an `Error` whose `code` is the
//! error kind's name (`'InvalidPattern'`), so callers test `err.code`, never messages. The
//! codes are exported as the string enum `ErrorCode`, which documents them in `index.d.ts`.

use napi::{Env, JsError};
use napi_derive::napi;
use regmirror::ErrorKind;

/// `ErrorCode`, one variant per error kind named after it, and its mapping from kinds.
macro_rules! error_codes {
    ($($kind:ident: $doc:literal),* $(,)?) => {
        /// The `code` of every error regmirror throws or rejects with: the error kind's name.
        #[napi(string_enum)]
        #[derive(Debug, Clone, Copy)]
        pub enum ErrorCode {
            $(#[doc = $doc] $kind,)*
        }

        // ErrorKind is non-exhaustive, so `of` needs a fallback arm; this makes a kind added in
        // core without a code here a compile error instead of an 'Internal' at run time (a kind
        // listed twice is an unreachable pattern, which clippy refuses).
        const _: () = assert!(
            [$(stringify!($kind)),*].len() == ErrorKind::ALL.len(),
            "every regmirror::ErrorKind needs an ErrorCode in error_codes!"
        );

        impl ErrorCode {
            fn of(kind: ErrorKind) -> Self {
                match kind {
                    $(ErrorKind::$kind => ErrorCode::$kind,)*
                    // Unreachable while the assertion above holds.
                    _ => ErrorCode::Internal,
                }
            }
        }

        impl AsRef<str> for ErrorCode {
            fn as_ref(&self) -> &str {
                match self {
                    $(ErrorCode::$kind => ErrorKind::$kind.as_str(),)*
                }
            }
        }
    };
}

error_codes! {
    InvalidConfig: "A mirror or engine setting is invalid.",
    InvalidPattern: "A tag pattern is invalid; the message names the pattern.",
    InvalidReference: "A registry, repository, tag or digest reference is malformed.",
    Unauthorized: "The registry refused the credentials.",
    Forbidden: "Authenticated, but not allowed.",
    NotFound: "The repository, tag, manifest, blob or mirror does not exist.",
    DigestMismatch: "Content did not hash to the digest (or size) it claimed.",
    InvalidManifest: "A manifest could not be parsed, or breaks a limit.",
    Unsupported: "Valid, but not handled by regmirror.",
    RateLimited: "The registry asked to slow down and retries ran out.",
    Network: "A network failure after retries.",
    Timeout: "An operation took longer than allowed.",
    Tls: "The TLS handshake or certificate verification failed.",
    Conflict: "The operation conflicts with the current state.",
    Cancelled: "The run was cancelled.",
    State: "The state store failed.",
    Io: "A local filesystem error.",
    Internal: "A bug inside regmirror.",
}

/// For functions that throw synchronously (`Result<T, ErrorCode>`).
pub(crate) fn to_js(e: regmirror::Error) -> napi::Error<ErrorCode> {
    napi::Error::new(ErrorCode::of(e.kind()), e.message())
}

/// A failure of napi itself while setting up `what` (a bug, or a closing environment).
pub(crate) fn internal(what: &str, e: napi::Error) -> napi::Error<ErrorCode> {
    napi::Error::new(ErrorCode::Internal, format!("{what}: {}", e.reason))
}

/// For promises settled on the JavaScript thread (a task's `resolve`): napi rejects with the
/// very JS object an error was made from, so the object built here keeps its `code`.
pub(crate) fn to_js_rejection(env: Env, e: regmirror::Error) -> napi::Error {
    throw(env, to_js(e))
}

/// `e` as a function returning `napi::Result` throws it, `code` kept (see `to_js_rejection`).
pub(crate) fn throw(env: Env, e: napi::Error<ErrorCode>) -> napi::Error {
    napi::Error::from(JsError::from(e).into_unknown(env))
}
