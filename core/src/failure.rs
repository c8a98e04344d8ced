//! A failure as data (SEMANTICS.md §7): an [`Error`]'s kind, which registry of the sync it came
//! from, in which step, what regmirror recognised in particular, and its message. Reports,
//! usage-log entries, events and the bindings carry a [`Failure`] per failed tag
//! ([`TagFailure`]) and per failed run, so programs and the CLI's hints decide from fields,
//! never from message text.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Detail, Error, ErrorKind, Phase, Side};

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

/// A tag that failed, and why: as data (`failure`, whose fields it serializes beside `tag`) and
/// as one line (`reason`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagFailure {
    pub tag: String,
    /// `Kind: message`, one line.
    pub reason: String,
    #[serde(flatten)]
    pub failure: Failure,
}

impl TagFailure {
    pub fn new(tag: impl Into<String>, error: &Error) -> Self {
        TagFailure {
            tag: tag.into(),
            reason: error.to_string(),
            failure: Failure::from(error),
        }
    }
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

impl From<Failure> for Error {
    /// The error a [`Failure`] describes (without a cause chain, which a failure does not keep).
    fn from(f: Failure) -> Self {
        let mut e = Error::new(f.kind, f.message);
        if let Some(side) = f.side {
            e = e.on_side(side);
        }
        if let Some(phase) = f.phase {
            e = e.in_phase(phase);
        }
        if let Some(host) = f.host {
            e = e.at_host(host);
        }
        match f.detail {
            Some(detail) => e.with_detail(detail),
            None => e,
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
