//! The one error type of regmirror: a flat [`ErrorKind`] every binding maps with a single
//! `match`, a one-line message with context, and the source chain.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What went wrong, coarsely: enough for a caller (or a binding) to decide what to do.
///
/// Non-exhaustive for Rust callers; the bindings map every kind and check at compile time that
/// they map as many kinds as [`ErrorKind::ALL`] holds, so a new kind cannot reach Python, Node
/// or C as `Internal` unnoticed.
/// Serialized under its [`ErrorKind::as_str`] name.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, strum_macros::VariantArray,
)]
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

/// Which registry of a sync a failure came from.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum_macros::IntoStaticStr,
    strum_macros::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Side {
    /// The registry (or OCI layout) the mirror reads from.
    Source,
    /// The registry (or OCI layout) the mirror writes to.
    Destination,
}

/// The step of a sync run a failure happened in (SEMANTICS.md §3).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum_macros::IntoStaticStr,
    strum_macros::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Phase {
    /// Listing the source's tags, or the destination's tags and digests.
    List,
    /// Reading a selected tag's manifest from the source to plan it.
    Read,
    /// Copying a tag's blobs and manifests to the destination by digest.
    Stage,
    /// Moving a tag to its staged manifest.
    Publish,
    /// Deleting a tag the mirror no longer selects.
    Prune,
    /// Putting the destination back as it was before the run (or an interrupted run).
    Rollback,
}

/// What regmirror recognised in particular about a failure, beyond its kind.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum_macros::IntoStaticStr,
    strum_macros::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
#[non_exhaustive]
pub enum Detail {
    /// The registry answered a TLS connection in plain HTTP (kind `Tls`).
    PlainHttp,
    /// The SSRF guard refused the address a host resolved to (kind `Forbidden`).
    SsrfGuard,
    /// The registry's host name did not resolve (kind `Network`).
    Dns,
    /// The destination refused an index whose unselected platforms are missing
    /// (`platform_index = sparse`).
    SparseIndex,
    /// The source lacks a manifest its index names (kind `NotFound`): it is a sparse copy,
    /// such as an OCI layout written for some platforms only.
    SparseSource,
    /// The run took longer than its `timeout` (kind `Timeout`), as opposed to a registry that
    /// stopped answering.
    RunTimeout,
}

impl Side {
    /// Its serde name (`source`, `destination`).
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl Phase {
    /// Its serde name (`list`, `read`, …).
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl Detail {
    /// Its serde name (`plain_http`, `dns`, …).
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The error of every fallible regmirror operation.
///
/// `Display` is one line (`kind: message`) and never contains a secret; `Debug` adds the source chain.
/// Where it happened (side, phase, registry host) and what regmirror recognised about it
/// ([`Detail`]) are fields, so callers decide from data, not from the message
/// ([`crate::Failure`]).
pub struct Error {
    kind: ErrorKind,
    message: String,
    side: Option<Side>,
    phase: Option<Phase>,
    host: Option<String>,
    detail: Option<Detail>,
    /// `Some` when this is the run's abort reason (a timeout, a lost lease) rather than an error
    /// of its own: the contexts it was put under since, outermost first. A step that failed
    /// because the run was aborted is then told apart from one that failed on its own by this
    /// field, not by comparing messages.
    abort_contexts: Option<Vec<String>>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// A new error of `kind` with a one-line message (it must not contain secrets).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            side: None,
            phase: None,
            host: None,
            detail: None,
            abort_contexts: None,
            source: None,
        }
    }

    /// The same error, marked as the run's abort reason (see [`Error::abort_contexts`]).
    pub(crate) fn into_abort(mut self) -> Self {
        self.abort_contexts = Some(Vec::new());
        self
    }

    /// When this error is the run's abort reason: the contexts it was put under since, outermost
    /// first (empty if none); `None` for an error of its own.
    pub(crate) fn abort_contexts(&self) -> Option<&[String]> {
        self.abort_contexts.as_deref()
    }

    /// Say which registry of the sync the error came from, unless it already says: an error
    /// that crossed sides (a source's blob stream failing inside the destination's upload)
    /// stays the side it started on.
    #[must_use]
    pub fn on_side(mut self, side: Side) -> Self {
        self.side.get_or_insert(side);
        self
    }

    /// Say which step of the run the error happened in, unless it already says (the innermost
    /// step is the one that failed).
    #[must_use]
    pub fn in_phase(mut self, phase: Phase) -> Self {
        self.phase.get_or_insert(phase);
        self
    }

    /// Name the registry host the error came from, unless it already names one.
    #[must_use]
    pub fn at_host(mut self, host: impl Into<String>) -> Self {
        if self.host.is_none() {
            self.host = Some(host.into());
        }
        self
    }

    /// Say what in particular went wrong.
    #[must_use]
    pub fn with_detail(mut self, detail: Detail) -> Self {
        self.detail = Some(detail);
        self
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
        let context = context.to_string();
        self.message = format!("{context}: {}", self.message);
        if let Some(contexts) = &mut self.abort_contexts {
            contexts.insert(0, context);
        }
        self
    }

    /// The same error with another message (e.g. one with secrets scrubbed out). It is no longer
    /// just the abort's reason then: the new message says more (or hides something).
    pub(crate) fn with_message(mut self, message: String) -> Self {
        self.message = message;
        self.abort_contexts = None;
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

    /// Which registry of the sync the error came from, when known.
    pub fn side(&self) -> Option<Side> {
        self.side
    }

    /// The step of the run it happened in, when known.
    pub fn phase(&self) -> Option<Phase> {
        self.phase
    }

    /// The registry host it came from, when known (`None` for an OCI layout).
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// What regmirror recognised in particular, if anything.
    pub fn detail(&self) -> Option<Detail> {
        self.detail
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
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::Value::from(kind.as_str())
            );
        }
    }

    #[test]
    fn sides_phases_and_details_are_named_as_serde_names_them() {
        use strum::VariantArray;
        fn check<T: VariantArray + Serialize + Copy>(name: impl Fn(T) -> &'static str) {
            for v in T::VARIANTS {
                let serde = serde_json::to_value(v).unwrap();
                assert_eq!(serde, serde_json::Value::from(name(*v)));
            }
        }
        check(Side::as_str);
        check(Phase::as_str);
        check(Detail::as_str);
        assert_eq!(Detail::PlainHttp.as_str(), "plain_http");
    }
}
