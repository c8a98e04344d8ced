//! The one error type of regmirror: a flat [`ErrorKind`] every binding maps with a single
//! `match`, a one-line message with context, and the source chain.

use std::fmt;

/// What went wrong, coarsely: enough for a caller (or a binding) to decide what to do.
///
/// Non-exhaustive for Rust callers; the bindings map every kind and check at compile time that
/// they map as many kinds as [`ErrorKind::ALL`] holds, so a new kind cannot reach Python, Node
/// or C as `Internal` unnoticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum_macros::VariantArray)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A mirror or engine setting is invalid (which field, and why, is in the message).
    InvalidConfig,
    /// A tag pattern is invalid (the pattern and the problem are in the message).
    InvalidPattern,
    /// A registry, repository, tag or digest reference is malformed.
    InvalidReference,
    /// The registry refused our credentials (or we had none and needed some).
    Unauthorized,
    /// Authenticated, but not allowed to do this; or refused by regmirror's own rules about
    /// where a registry may send it (the SSRF guard, plain HTTP while TLS verification is on,
    /// credentials for a plain-HTTP token service on another host).
    Forbidden,
    /// The repository, tag, manifest, blob or mirror does not exist.
    NotFound,
    /// Content did not hash to the digest (or size) it claimed.
    DigestMismatch,
    /// A manifest could not be parsed, or breaks a limit.
    InvalidManifest,
    /// Valid, but something regmirror does not handle (e.g. schema 1 manifests).
    Unsupported,
    /// The registry asked us to slow down (HTTP 429) and retries ran out.
    RateLimited,
    /// Connection refused, reset, DNS, or a server error after retries.
    Network,
    /// An operation took longer than allowed.
    Timeout,
    /// The TLS handshake or certificate verification failed.
    Tls,
    /// The operation conflicts with the current state (e.g. sync-now while syncing).
    Conflict,
    /// The run was cancelled.
    Cancelled,
    /// The state store failed (database error, corrupt state).
    State,
    /// An I/O error on the local filesystem.
    Io,
    /// A bug: something that should not happen.
    Internal,
}

impl ErrorKind {
    /// Every kind, in declaration order (derived, so it cannot miss one).
    pub const ALL: &'static [ErrorKind] = <ErrorKind as strum::VariantArray>::VARIANTS;

    /// The kind's stable name, as used by the bindings (`err.code` in Node, C result names).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidConfig => "InvalidConfig",
            ErrorKind::InvalidPattern => "InvalidPattern",
            ErrorKind::InvalidReference => "InvalidReference",
            ErrorKind::Unauthorized => "Unauthorized",
            ErrorKind::Forbidden => "Forbidden",
            ErrorKind::NotFound => "NotFound",
            ErrorKind::DigestMismatch => "DigestMismatch",
            ErrorKind::InvalidManifest => "InvalidManifest",
            ErrorKind::Unsupported => "Unsupported",
            ErrorKind::RateLimited => "RateLimited",
            ErrorKind::Network => "Network",
            ErrorKind::Timeout => "Timeout",
            ErrorKind::Tls => "Tls",
            ErrorKind::Conflict => "Conflict",
            ErrorKind::Cancelled => "Cancelled",
            ErrorKind::State => "State",
            ErrorKind::Io => "Io",
            ErrorKind::Internal => "Internal",
        }
    }

    /// Whether retrying the same request later may succeed.
    pub fn is_temporary(self) -> bool {
        matches!(
            self,
            ErrorKind::Network | ErrorKind::Timeout | ErrorKind::RateLimited
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of every fallible regmirror operation.
///
/// `Display` is one line (`kind: message`) and never contains a secret; `Debug` adds the source chain.
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// A new error of `kind` with a one-line message (it must not contain secrets).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attach the underlying cause.
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Prefix the message with context, e.g. the tag or blob being worked on.
    #[must_use]
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// The same error with another message (e.g. one with secrets scrubbed out).
    pub(crate) fn with_message(mut self, message: String) -> Self {
        self.message = message;
        self
    }

    /// The same error without its cause.
    pub(crate) fn without_source(mut self) -> Self {
        self.source = None;
        self
    }

    /// What went wrong, coarsely.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message without the kind prefix.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")?;
        let mut source = self.source.as_deref().map(|s| s as &dyn std::error::Error);
        while let Some(s) = source {
            write!(f, "\n  caused by: {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        let kind = match e.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            std::io::ErrorKind::TimedOut => ErrorKind::Timeout,
            _ => ErrorKind::Io,
        };
        Error::new(kind, e.to_string()).with_source(e)
    }
}

/// `Result` with regmirror's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_each_kind_once_under_its_own_name() {
        let mut names: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.first(), Some(&"InvalidConfig"));
        assert_eq!(names.last(), Some(&"Internal"));
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorKind::ALL.len());
        for kind in ErrorKind::ALL {
            assert_eq!(format!("{kind:?}"), kind.as_str());
        }
    }
}
