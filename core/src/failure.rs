//! A failure as data (SEMANTICS.md §7): what kind of error, which registry of the sync it came
//! from, in which step, and what regmirror recognised in particular. Reports, usage-log entries,
//! events and the bindings carry a [`Failure`] per failed tag and per failed run, so programs and
//! the CLI's hints decide from fields, never from message text.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind};

/// Which registry of a sync a failure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The registry (or OCI layout) the mirror reads from.
    Source,
    /// The registry (or OCI layout) the mirror writes to.
    Destination,
}

/// The step of a sync run a failure happened in (SEMANTICS.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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

/// An error as data: its kind, where it happened (each `None` when not known or not a
/// registry's), and its one-line message without the kind prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub kind: ErrorKind,
    pub side: Option<Side>,
    pub phase: Option<Phase>,
    /// The host of the registry on `side` (`quay.io`, `127.0.0.1:5000`); `None` for an OCI
    /// layout.
    pub host: Option<String>,
    pub detail: Option<Detail>,
    pub message: String,
}

impl From<&Error> for Failure {
    fn from(e: &Error) -> Self {
        Failure {
            kind: e.kind(),
            side: e.side(),
            phase: e.phase(),
            host: e.host().map(str::to_owned),
            detail: e.detail(),
            message: e.message().to_owned(),
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::from(&e)
    }
}

impl fmt::Display for Failure {
    /// `Kind: message`, as [`Error`] shows itself.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_keeps_what_the_error_knew() {
        let e = Error::new(ErrorKind::Tls, "TLS with r.example failed")
            .on_side(Side::Destination)
            .in_phase(Phase::List)
            .at_host("r.example")
            .with_detail(Detail::PlainHttp);
        let failure = Failure::from(&e);
        assert_eq!(
            serde_json::to_value(&failure).unwrap(),
            serde_json::json!({
                "kind": "Tls", "side": "destination", "phase": "list", "host": "r.example",
                "detail": "plain_http", "message": "TLS with r.example failed"
            })
        );
        assert_eq!(failure.to_string(), e.to_string());
        // Back to an error (shared between waiters, say), nothing is lost but the cause chain.
        let again = Error::from(failure.clone());
        assert_eq!(Failure::from(&again), failure);
    }

    #[test]
    fn the_innermost_side_phase_and_host_stay() {
        // A source stream's error surfacing from the destination's upload stays the source's.
        let e = Error::new(ErrorKind::Network, "reset")
            .on_side(Side::Source)
            .at_host("src.example")
            .in_phase(Phase::Stage)
            .on_side(Side::Destination)
            .at_host("dst.example")
            .in_phase(Phase::Publish)
            .context("blob sha256:ab");
        assert_eq!(e.side(), Some(Side::Source));
        assert_eq!(e.host(), Some("src.example"));
        assert_eq!(e.phase(), Some(Phase::Stage));
        assert_eq!(e.message(), "blob sha256:ab: reset");
    }
}
