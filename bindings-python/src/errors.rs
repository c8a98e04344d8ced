//! Python exceptions: `MirrorError` and one subclass per `regmirror::ErrorKind`, and the one
//! place a Rust error becomes a Python exception ([`to_py`]).

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use regmirror::{Error, ErrorKind};

create_exception!(
    regmirror,
    MirrorError,
    PyException,
    "Base class of every regmirror error. `.kind` is the error kind's name (e.g. 'InvalidPattern')."
);

/// One exception class per error kind, each a subclass of `MirrorError`.
macro_rules! kind_exceptions {
    ($($name:ident: $doc:literal),* $(,)?) => {
        $(create_exception!(regmirror, $name, MirrorError, $doc);)*

        /// Add `MirrorError` and every subclass to the module.
        pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
            let py = m.py();
            m.add("MirrorError", py.get_type::<MirrorError>())?;
            $(m.add(stringify!($name), py.get_type::<$name>())?;)*
            Ok(())
        }
    };
}

kind_exceptions! {
    InvalidConfigError: "A mirror or engine setting is invalid.",
    InvalidPatternError: "A tag pattern is invalid; the message names the pattern.",
    InvalidReferenceError: "A registry, repository, tag or digest reference is malformed.",
    UnauthorizedError: "The registry refused the credentials.",
    ForbiddenError: "Authenticated, but not allowed.",
    NotFoundError: "The repository, tag, manifest, blob or mirror does not exist.",
    DigestMismatchError: "Content did not hash to the digest (or size) it claimed.",
    InvalidManifestError: "A manifest could not be parsed, or breaks a limit.",
    UnsupportedError: "Valid, but not handled by regmirror.",
    RateLimitedError: "The registry asked to slow down and retries ran out.",
    NetworkError: "A network failure after retries.",
    TimeoutError: "An operation took longer than allowed.",
    TlsError: "The TLS handshake or certificate verification failed.",
    ConflictError: "The operation conflicts with the current state.",
    CancelledError: "The run was cancelled.",
    StateError: "The state store failed.",
    IoError: "A local filesystem error.",
    InternalError: "A bug inside regmirror.",
}

/// The one place a regmirror error becomes a Python exception, with `.kind` set.
pub(crate) fn to_py(py: Python<'_>, e: Error) -> PyErr {
    let kind = e.kind();
    let message = e.message().to_owned();
    let err = match kind {
        ErrorKind::InvalidConfig => InvalidConfigError::new_err(message),
        ErrorKind::InvalidPattern => InvalidPatternError::new_err(message),
        ErrorKind::InvalidReference => InvalidReferenceError::new_err(message),
        ErrorKind::Unauthorized => UnauthorizedError::new_err(message),
        ErrorKind::Forbidden => ForbiddenError::new_err(message),
        ErrorKind::NotFound => NotFoundError::new_err(message),
        ErrorKind::DigestMismatch => DigestMismatchError::new_err(message),
        ErrorKind::InvalidManifest => InvalidManifestError::new_err(message),
        ErrorKind::Unsupported => UnsupportedError::new_err(message),
        ErrorKind::RateLimited => RateLimitedError::new_err(message),
        ErrorKind::Network => NetworkError::new_err(message),
        ErrorKind::Timeout => TimeoutError::new_err(message),
        ErrorKind::Tls => TlsError::new_err(message),
        ErrorKind::Conflict => ConflictError::new_err(message),
        ErrorKind::Cancelled => CancelledError::new_err(message),
        ErrorKind::State => StateError::new_err(message),
        ErrorKind::Io => IoError::new_err(message),
        ErrorKind::Internal => InternalError::new_err(message),
        // ErrorKind is non-exhaustive: a kind added in core without a class here is still a
        // MirrorError, and `.kind` still names it.
        _ => MirrorError::new_err(message),
    };
    err.value(py)
        .setattr("kind", kind.as_str())
        .expect("exception instances have a __dict__ to hold .kind");
    err
}
