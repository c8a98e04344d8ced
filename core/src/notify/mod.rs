//! Telling people what happened (SEMANTICS.md §7): the [`Notifier`] trait and its events.

mod log;
#[cfg(feature = "webhook")]
mod webhook;

pub use log::LogNotifier;
#[cfg(feature = "webhook")]
pub use webhook::{EVENT_HEADER, SIGNATURE_HEADER, WebhookBuilder, WebhookNotifier};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::failure::{Failure, TagFailure};

/// Which moment of a run an event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A run began.
    SyncStarted,
    /// A run ended in [`Outcome::Success`](crate::engine::Outcome::Success).
    SyncSucceeded,
    /// A run failed: the listing, a tag, or the run as a whole; `error` says why.
    SyncFailed,
    /// A run stopped because the mirror was cancelled.
    SyncCancelled,
}

impl EventKind {
    /// Its serde name (`sync_started`, …): the webhook's event header and the log record's
    /// `event` field.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::SyncStarted => "sync_started",
            EventKind::SyncSucceeded => "sync_succeeded",
            EventKind::SyncFailed => "sync_failed",
            EventKind::SyncCancelled => "sync_cancelled",
        }
    }
}

/// The payload every notifier receives. Never contains credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorEvent {
    pub event: EventKind,
    pub mirror_id: String,
    /// The source reference, `host/path`.
    pub source: String,
    pub patterns: Vec<String>,
    pub tags_synced: Vec<String>,
    pub tags_failed: Vec<String>,
    pub tags_deleted: Vec<String>,
    pub bytes_copied: u64,
    /// Referrers (signatures, SBOMs, attestations) newly copied with their subjects.
    #[serde(default)]
    pub referrers_copied: u64,
    pub duration_ms: u64,
    /// Why the run failed or was cancelled; `None` for a success.
    pub error: Option<String>,
    /// The same as data (as the report's `failure`); `None` for a success.
    #[serde(default)]
    pub failure: Option<Failure>,
    /// Each failed tag with its failure as data (as the report's `tags_failed`).
    #[serde(default)]
    pub tag_failures: Vec<TagFailure>,
    /// A remark on a successful run, such as "no tags matched".
    pub note: Option<String>,
}

/// Delivers events somewhere. The engine bounds every call with a timeout and ignores failures:
/// a notifier can never fail or stall a sync.
#[async_trait]
pub trait Notifier: Send + Sync + std::fmt::Debug {
    /// Deliver one event. An error is logged and otherwise ignored.
    async fn notify(&self, event: &MirrorEvent) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::EventKind;

    #[test]
    fn event_names_are_the_serde_names() {
        for kind in [
            EventKind::SyncStarted,
            EventKind::SyncSucceeded,
            EventKind::SyncFailed,
            EventKind::SyncCancelled,
        ] {
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::Value::from(kind.as_str())
            );
        }
    }
}
