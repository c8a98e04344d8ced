//! Live progress of a run, for CLIs and bindings: a callback receiving typed events.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::reference::Digest;

/// What happened to one tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TagStatus {
    /// Published: the destination tag was created or moved.
    Synced,
    /// The destination tag already pointed at the source's digest.
    Current,
    /// The tag could not be synced; `error` says why.
    Failed,
    /// A single-platform image whose architecture the filter excludes.
    Skipped,
}

/// How a blob reached the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BlobTransfer {
    /// Streamed from the source.
    Copied,
    /// Mounted from another repository of the destination registry.
    Mounted,
    /// The destination already had it.
    Present,
}

/// One progress event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ProgressEvent {
    /// The tags to work on are known.
    Planned {
        /// Tags the patterns selected.
        selected: usize,
        /// Of those, the tags whose destination is not already current.
        to_copy: usize,
    },
    /// Copying a tag's content started.
    TagStarted { tag: String },
    /// A tag is done (published, already current, failed or skipped).
    TagFinished {
        tag: String,
        status: TagStatus,
        /// The manifest digest the destination tag now points at (synced or current).
        digest: Option<Digest>,
        /// Why the tag failed.
        error: Option<String>,
    },
    /// Bytes of a blob streamed so far (sent about every MiB and at the end).
    BlobBytes {
        digest: Digest,
        /// Bytes streamed so far.
        done: u64,
        /// The blob's size.
        total: u64,
    },
    /// A blob is in the destination.
    BlobFinished {
        digest: Digest,
        transfer: BlobTransfer,
    },
}

/// Where progress events go. Cheap to clone; the default discards events.
#[derive(Clone, Default)]
pub struct Progress(Option<Arc<dyn Fn(ProgressEvent) + Send + Sync>>);

impl Progress {
    /// Call `f` for every event. It runs on the engine's tasks: keep it quick.
    pub fn new(f: impl Fn(ProgressEvent) + Send + Sync + 'static) -> Self {
        Progress(Some(Arc::new(f)))
    }

    /// Send every event into a channel (events are dropped if the receiver is gone).
    pub fn channel(tx: tokio::sync::mpsc::UnboundedSender<ProgressEvent>) -> Self {
        Progress::new(move |e| {
            // A caller that stopped listening does not want the events any more.
            let _ = tx.send(e);
        })
    }

    pub(crate) fn emit(&self, event: ProgressEvent) {
        if let Some(f) = &self.0 {
            // A callback that panics (a binding's bug) must not take a sync down with it.
            let delivered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(event)));
            if delivered.is_err() {
                tracing::warn!("a progress callback panicked; the event was dropped");
            }
        }
    }
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Progress(callback)"
        } else {
            "Progress(none)"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_callback_is_contained() {
        let progress = Progress::new(|_| panic!("callback bug"));
        progress.emit(ProgressEvent::TagStarted { tag: "v1".into() });
    }
}
