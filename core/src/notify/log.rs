//! [`LogNotifier`]: events as `tracing` records, for deployments that collect logs.

use async_trait::async_trait;

use super::{EventKind, MirrorEvent, Notifier};
use crate::error::{Phase, Result, Side};

/// Writes each event as one `tracing` record (target `regmirror::events`): info for started
/// and succeeded, warn for failed and cancelled.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogNotifier;

#[async_trait]
impl Notifier for LogNotifier {
    async fn notify(&self, e: &MirrorEvent) -> Result<()> {
        let event = e.event.as_str();
        let failure = e.failure.as_ref();
        macro_rules! record {
            ($level:ident) => {
                tracing::$level!(
                    target: "regmirror::events",
                    event = %event,
                    mirror = %e.mirror_id,
                    source = %e.source,
                    patterns = ?e.patterns,
                    tags_synced = ?e.tags_synced,
                    tags_failed = ?e.tags_failed,
                    tags_deleted = ?e.tags_deleted,
                    bytes_copied = e.bytes_copied,
                    referrers_copied = e.referrers_copied,
                    duration_ms = e.duration_ms,
                    error = e.error.as_deref().unwrap_or(""),
                    error_kind = failure.map_or("", |f| f.kind.as_str()),
                    error_side = failure.and_then(|f| f.side).map_or("", Side::as_str),
                    error_phase = failure.and_then(|f| f.phase).map_or("", Phase::as_str),
                    note = e.note.as_deref().unwrap_or(""),
                    "mirror {}: {event}", e.mirror_id
                )
            };
        }
        match e.event {
            EventKind::SyncStarted | EventKind::SyncSucceeded => record!(info),
            EventKind::SyncFailed | EventKind::SyncCancelled => record!(warn),
        }
        Ok(())
    }
}
