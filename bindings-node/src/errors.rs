//! The one place a regmirror error becomes a thrown JavaScript error.

/// The `code` of a thrown error: the error kind's name (`'InvalidPattern'`), so callers can
/// test `err.code` without parsing messages.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(&'static str);

impl AsRef<str> for ErrorCode {
    fn as_ref(&self) -> &str {
        self.0
    }
}

/// A thrown `Error` whose `code` is the kind's name and whose message is regmirror's.
pub(crate) fn to_js(e: regmirror::Error) -> napi::Error<ErrorCode> {
    napi::Error::new(ErrorCode(e.kind().as_str()), e.message())
}
