//! Delivering a run's events to its notifiers without ever stalling the run: events go through
//! a queue to one background task, each delivery is bounded by the notifier timeout, failures
//! are logged and dropped, and the run waits at most one timeout for delivery at its end.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::notify::{MirrorEvent, Notifier};

/// The event queue of one run.
#[derive(Debug)]
pub(crate) struct EventQueue {
    tx: Option<mpsc::UnboundedSender<MirrorEvent>>,
    task: Option<JoinHandle<()>>,
    timeout: Duration,
}

impl EventQueue {
    pub fn start(notifiers: &[Arc<dyn Notifier>], timeout: Duration) -> Self {
        if notifiers.is_empty() {
            return EventQueue {
                tx: None,
                task: None,
                timeout,
            };
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<MirrorEvent>();
        let notifiers = notifiers.to_vec();
        let task = tokio::spawn(
            async move {
                while let Some(event) = rx.recv().await {
                    // In order, one event at a time, every notifier at once.
                    join_all(
                        notifiers
                            .iter()
                            .map(|n| deliver(n.as_ref(), &event, timeout)),
                    )
                    .await;
                }
            }
            // Lines a notifier logs carry the run's fields (mirror, run, worker).
            .in_current_span(),
        );
        EventQueue {
            tx: Some(tx),
            task: Some(task),
            timeout,
        }
    }

    pub fn send(&self, event: MirrorEvent) {
        if let Some(tx) = &self.tx {
            // The task only ends after the sender is dropped, so this cannot fail.
            let _ = tx.send(event);
        }
    }

    /// Close the queue and wait (at most one notifier timeout) for the last deliveries; what is
    /// still pending then finishes in the background.
    pub async fn finish(mut self) {
        self.tx = None;
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(self.timeout, task).await;
        }
    }
}

async fn deliver(notifier: &dyn Notifier, event: &MirrorEvent, timeout: Duration) {
    match tokio::time::timeout(timeout, notifier.notify(event)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(mirror = %event.mirror_id, ?notifier, "notifier failed: {e}");
        }
        Err(_) => tracing::warn!(
            mirror = %event.mirror_id,
            ?notifier,
            "notifier did not answer within {timeout:?}"
        ),
    }
}
