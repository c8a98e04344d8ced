//! Python exceptions: `MirrorError` and one subclass per `regmirror::ErrorKind`, each with a
//! `kind` class attribute, and the one place a Rust error becomes a Python exception
//! ([`to_py`]). Building the exception needs no GIL, so async code can fail from any thread.

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyTimeoutError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple, PyType};
use regmirror::{Error, ErrorKind};

create_exception!(
    regmirror,
    MirrorError,
    PyException,
    "Base class of every regmirror error. `.kind` is the error kind's name (e.g. 'InvalidPattern')."
);

/// The Rust type of one kind's class: made here, or (with a builtin base as well) made by
/// `register` and found in the module when raised.
macro_rules! kind_class {
    ($name:ident, $doc:literal) => {
        create_exception!(regmirror, $name, MirrorError, $doc);
    };
    ($name:ident, $doc:literal, $builtin:ident) => {
        pyo3::import_exception!(regmirror._native, $name);
    };
}

/// The class object of one kind, for `register`.
macro_rules! kind_class_object {
    ($py:ident, $name:ident, $doc:literal) => {
        $py.get_type::<$name>()
    };
    ($py:ident, $name:ident, $doc:literal, $builtin:ident) => {
        also_builtin($py, stringify!($name), $doc, $py.get_type::<$builtin>())?
    };
}

/// A class deriving from `MirrorError` and from the builtin exception it is named after, so
/// `from regmirror import *` shadowing the builtin name changes nothing for `except` clauses
/// (as `socket.timeout` is the builtin `TimeoutError`).
fn also_builtin<'py>(
    py: Python<'py>,
    name: &str,
    doc: &str,
    builtin: Bound<'py, PyType>,
) -> PyResult<Bound<'py, PyType>> {
    let namespace = PyDict::new(py);
    namespace.set_item("__module__", "regmirror")?;
    namespace.set_item("__doc__", doc)?;
    let bases = PyTuple::new(py, [py.get_type::<MirrorError>(), builtin])?;
    Ok(py
        .get_type::<PyType>()
        .call1((name, bases, namespace))?
        .cast_into::<PyType>()?)
}

/// One exception class per error kind, each a subclass of `MirrorError` (and, where marked, of
/// a builtin exception) whose `kind` class attribute names the kind, and the mapping from kinds
/// to classes, all from one list.
macro_rules! kind_exceptions {
    ($($name:ident = $kind:ident $(($builtin:ident))?: $doc:literal),* $(,)?) => {
        $(kind_class!($name, $doc $(, $builtin)?);)*

        // ErrorKind is non-exhaustive, so `to_py` needs a fallback arm; this makes a kind added
        // in core without a class here a compile error instead of an InternalError at run time
        // (a kind listed twice is an unreachable pattern, which clippy refuses).
        const _: () = assert!(
            [$(stringify!($kind)),*].len() == ErrorKind::ALL.len(),
            "every regmirror::ErrorKind needs an exception class in kind_exceptions!"
        );

        /// Add `MirrorError` and every subclass to the module.
        pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
            let py = m.py();
            m.add("MirrorError", py.get_type::<MirrorError>())?;
            $(
                let class = kind_class_object!(py, $name, $doc $(, $builtin)?);
                class.setattr("kind", ErrorKind::$kind.as_str())?;
                m.add(stringify!($name), class)?;
            )*
            Ok(())
        }

        /// The one place a regmirror error becomes a Python exception.
        pub(crate) fn to_py(e: Error) -> PyErr {
            match e.kind() {
                $(ErrorKind::$kind => $name::new_err(e.message().to_owned()),)*
                // Unreachable while the assertion above holds; the kind's name stays in the
                // message all the same.
                _ => InternalError::new_err(e.to_string()),
            }
        }
    };
}

kind_exceptions! {
    InvalidConfigError = InvalidConfig: "A mirror or engine setting is invalid.",
    InvalidPatternError = InvalidPattern: "A tag pattern is invalid; the message names the pattern.",
    InvalidReferenceError = InvalidReference: "A registry, repository, tag or digest reference is malformed.",
    UnauthorizedError = Unauthorized: "The registry refused the credentials.",
    ForbiddenError = Forbidden: "Authenticated, but not allowed.",
    NotFoundError = NotFound: "The repository, tag, manifest, blob or mirror does not exist.",
    DigestMismatchError = DigestMismatch: "Content did not hash to the digest (or size) it claimed.",
    InvalidManifestError = InvalidManifest: "A manifest could not be parsed, or breaks a limit.",
    UnsupportedError = Unsupported: "Valid, but not handled by regmirror.",
    RateLimitedError = RateLimited: "The registry asked to slow down and retries ran out.",
    NetworkError = Network: "A network failure after retries.",
    TimeoutError = Timeout (PyTimeoutError): "An operation took longer than allowed.",
    TlsError = Tls: "The TLS handshake or certificate verification failed.",
    ConflictError = Conflict: "The operation conflicts with the current state.",
    CancelledError = Cancelled: "The run was cancelled.",
    StateError = State: "The state store failed.",
    IoError = Io: "A local filesystem error.",
    InternalError = Internal: "A bug inside regmirror.",
}
