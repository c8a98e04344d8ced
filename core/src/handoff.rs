//! Events for code that must not run on the engine's tasks: the bindings' callbacks (a Python
//! function that needs the GIL, a C function pointer, a JavaScript function) run on a thread of
//! their own, fed by a bounded queue. The engine only ever queues an event, so a callback that
//! fails, blocks or is slow can neither fail nor stall a sync; when it falls behind, events
//! are dropped (and counted in a warning) instead of piling up.
//!
//! - [`CallbackNotifier`]: a [`Notifier`] delivering each [`MirrorEvent`] to a callback.
//! - [`progress`]: a [`Progress`] delivering [`ProgressEvent`]s to a callback, with byte counts
//!   rate-limited to one per [`BYTES_INTERVAL`].

use std::fmt;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::engine::{Progress, ProgressEvent};
use crate::error::{Error, ErrorKind, Result};
use crate::notify::{MirrorEvent, Notifier};

/// Events queued for a callback before further ones are dropped.
pub const QUEUE_CAPACITY: usize = 1024;

/// At most one [`ProgressEvent::BlobBytes`] per this interval reaches a [`progress`] callback
/// (a blob's last count always does).
pub const BYTES_INTERVAL: Duration = Duration::from_millis(200);

/// The sending side of a callback's thread. Cheap to clone; the thread ends once every clone
/// is dropped and the queued events are delivered.
pub struct Handoff<T> {
    tx: SyncSender<T>,
    /// Queued events dropped because the callback fell behind; warned about once per burst.
    dropped: Arc<Mutex<u64>>,
    name: Arc<str>,
}

impl<T> Clone for Handoff<T> {
    fn clone(&self) -> Self {
        Handoff {
            tx: self.tx.clone(),
            dropped: Arc::clone(&self.dropped),
            name: Arc::clone(&self.name),
        }
    }
}

impl<T> fmt::Debug for Handoff<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Handoff({})", self.name)
    }
}

/// Waits for a [`Handoff`]'s thread to deliver what was queued, after every sender is gone.
#[derive(Debug)]
pub struct Drained(Receiver<()>);

impl Drained {
    /// Wait up to `limit` for the thread to have delivered every queued event; `false` if it
    /// is still busy then (a callback that blocks). The events keep coming after that.
    pub fn wait(&self, limit: Duration) -> bool {
        // The thread never sends: its end drops the sender, which ends the wait.
        matches!(
            self.0.recv_timeout(limit),
            Err(RecvTimeoutError::Disconnected)
        )
    }
}

impl<T: Send + 'static> Handoff<T> {
    /// Start a thread named `name` that calls `deliver` for each queued event, in order.
    pub fn spawn(
        name: &str,
        deliver: impl FnMut(T) + Send + 'static,
    ) -> Result<(Handoff<T>, Drained)> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<T>(QUEUE_CAPACITY);
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel::<()>(0);
        let mut deliver = deliver;
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let _done = done_tx;
                for event in rx {
                    // A callback that panics loses its event, not the thread.
                    let delivered =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| deliver(event)));
                    if delivered.is_err() {
                        tracing::warn!("a callback panicked; the event was dropped");
                    }
                }
            })
            .map_err(|e| {
                Error::new(
                    ErrorKind::Internal,
                    format!("cannot start the callback thread {name}: {e}"),
                )
                .with_source(e)
            })?;
        let handoff = Handoff {
            tx,
            dropped: Arc::default(),
            name: name.into(),
        };
        Ok((handoff, Drained(done_rx)))
    }

    /// Queue `event` without waiting; `false` if it was dropped (the queue is full, or the
    /// thread has ended).
    pub fn offer(&self, event: T) -> bool {
        match self.tx.try_send(event) {
            Ok(()) => {
                let mut dropped = self.dropped.lock().unwrap_or_else(|e| e.into_inner());
                if *dropped > 0 {
                    tracing::warn!(
                        callback = %self.name,
                        dropped = *dropped,
                        "a callback fell behind; events were dropped"
                    );
                    *dropped = 0;
                }
                true
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                *self.dropped.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                false
            }
        }
    }
}

/// A [`Notifier`] that hands each event to a callback on a thread of its own: `notify` returns
/// at once, whatever the callback does.
#[derive(Debug, Clone)]
pub struct CallbackNotifier(Handoff<MirrorEvent>);

impl CallbackNotifier {
    /// Deliver events to `deliver`, one at a time, in order, on a thread named `name`.
    pub fn new(name: &str, deliver: impl FnMut(MirrorEvent) + Send + 'static) -> Result<Self> {
        Ok(CallbackNotifier(Handoff::spawn(name, deliver)?.0))
    }
}

#[async_trait]
impl Notifier for CallbackNotifier {
    async fn notify(&self, event: &MirrorEvent) -> Result<()> {
        if self.0.offer(event.clone()) {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::Internal,
                format!(
                    "{} dropped: the callback is {QUEUE_CAPACITY} events behind",
                    event.event.as_str()
                ),
            ))
        }
    }
}

/// A [`Progress`] that hands events to `deliver` on a thread named `name`, and what waits for
/// it to deliver the last of them once the run (every clone of the `Progress`) is gone. Byte
/// counts are rate-limited to one per [`BYTES_INTERVAL`] plus each blob's last one, so a
/// callback per chunk cannot slow a sync down.
pub fn progress(
    name: &str,
    deliver: impl FnMut(ProgressEvent) + Send + 'static,
) -> Result<(Progress, Drained)> {
    let (handoff, drained) = Handoff::spawn(name, deliver)?;
    let last_bytes = Mutex::new(None::<Instant>);
    let progress = Progress::new(move |event| {
        if let ProgressEvent::BlobBytes { done, total, .. } = &event {
            let now = Instant::now();
            let mut last = last_bytes.lock().unwrap_or_else(|e| e.into_inner());
            let due = last.is_none_or(|at| now.duration_since(at) >= BYTES_INTERVAL);
            if !due && done < total {
                return;
            }
            *last = Some(now);
        }
        handoff.offer(event);
    });
    Ok((progress, drained))
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;
    use crate::reference::Digest;

    fn bytes(done: u64, total: u64) -> ProgressEvent {
        ProgressEvent::BlobBytes {
            digest: Digest::of(b"blob"),
            done,
            total,
        }
    }

    #[test]
    fn a_blocked_callback_neither_blocks_nor_grows_the_queue() {
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (handoff, drained) = Handoff::spawn("test-blocked", move |_: u32| {
            let _ = release_rx.recv();
        })
        .unwrap();
        let started = Instant::now();
        let accepted = (0..QUEUE_CAPACITY as u32 + 10)
            .filter(|n| handoff.offer(*n))
            .count();
        assert!(started.elapsed() < Duration::from_secs(5));
        // The callback holds one event; the queue the rest up to its capacity.
        assert!(accepted <= QUEUE_CAPACITY + 1, "{accepted}");
        assert!(accepted >= QUEUE_CAPACITY, "{accepted}");
        drop(handoff);
        assert!(!drained.wait(Duration::from_millis(50)));
        drop(release_tx);
        assert!(drained.wait(Duration::from_secs(10)));
    }

    #[test]
    fn events_arrive_in_order_and_a_panic_loses_only_its_event() {
        let (tx, rx) = mpsc::channel();
        let (handoff, drained) = Handoff::spawn("test-order", move |n: u32| {
            assert!(n != 2, "callback bug");
            tx.send(n).unwrap();
        })
        .unwrap();
        for n in 0..5 {
            assert!(handoff.offer(n));
        }
        drop(handoff);
        assert!(drained.wait(Duration::from_secs(10)));
        assert_eq!(rx.iter().collect::<Vec<_>>(), [0, 1, 3, 4]);
    }

    #[test]
    fn byte_counts_are_rate_limited_but_each_blob_ends() {
        let (tx, rx) = mpsc::channel();
        let (progress, drained) = progress("test-progress", move |e| tx.send(e).unwrap()).unwrap();
        progress.emit(ProgressEvent::TagStarted { tag: "v1".into() });
        for done in 1..=1000 {
            progress.emit(bytes(done, 1000));
        }
        drop(progress);
        assert!(drained.wait(Duration::from_secs(10)));
        let events: Vec<ProgressEvent> = rx.iter().collect();
        assert_eq!(events[0], ProgressEvent::TagStarted { tag: "v1".into() });
        assert_eq!(events.last(), Some(&bytes(1000, 1000)));
        assert!(events.len() < 10, "{} events", events.len());
    }

    #[tokio::test]
    async fn the_notifier_returns_at_once_with_a_blocked_callback() {
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let notifier = CallbackNotifier::new("test-notifier", move |_| {
            let _ = release_rx.recv();
        })
        .unwrap();
        let event: MirrorEvent = serde_json::from_value(serde_json::json!({
            "event": "sync_started", "mirror_id": "m", "source": "s", "patterns": [],
            "tags_synced": [], "tags_failed": [], "tags_deleted": [], "bytes_copied": 0,
            "duration_ms": 0, "error": null, "note": null,
        }))
        .unwrap();
        let started = Instant::now();
        let mut refused = 0;
        for _ in 0..QUEUE_CAPACITY + 10 {
            if notifier.notify(&event).await.is_err() {
                refused += 1;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(refused >= 9, "{refused}");
        drop(release_tx);
    }
}
