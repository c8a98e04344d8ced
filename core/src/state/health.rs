//! [`StoreHealth`]: whether the state store answers, as an engine last saw it — what a worker
//! reports (logs now; a health endpoint can read it).

use std::sync::Mutex;

use crate::error::{Error, ErrorKind, Result};

/// Whether the state store answered the engine's last call (a claim, a lease renewal, a
/// release). A refusal (`Conflict`, `NotFound`, …) is an answer; a timeout, a network error or a
/// database error is not. Changes are logged once each way.
#[derive(Debug, Default)]
pub struct StoreHealth {
    /// The last failure while the store is failing.
    failing: Mutex<Option<String>>,
}

impl StoreHealth {
    /// True until a call fails, and again once one succeeds.
    pub fn is_healthy(&self) -> bool {
        self.lock().is_none()
    }

    /// Why the store is unhealthy, while it is.
    pub fn last_error(&self) -> Option<String> {
        self.lock().clone()
    }

    /// Record the outcome of a call to the store.
    pub(crate) fn observe<T>(&self, result: &Result<T>) {
        let failure = match result {
            Err(e) if is_unanswered(e) => Some(e.to_string()),
            _ => None,
        };
        let mut failing = self.lock();
        match (&*failing, &failure) {
            (None, Some(e)) => tracing::warn!("state store unhealthy: {e}"),
            (Some(_), None) => tracing::info!("state store healthy again"),
            _ => {}
        }
        *failing = failure;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.failing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Whether `e` means the store did not answer (rather than refused what was asked).
fn is_unanswered(e: &Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Timeout | ErrorKind::Network | ErrorKind::State | ErrorKind::Internal
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_an_answer_a_timeout_is_not() {
        let health = StoreHealth::default();
        assert!(health.is_healthy());
        health.observe::<()>(&Err(Error::new(ErrorKind::Conflict, "claim lost")));
        assert!(health.is_healthy());
        health.observe::<()>(&Err(Error::new(ErrorKind::Timeout, "no answer within 10s")));
        assert!(!health.is_healthy());
        assert!(
            health
                .last_error()
                .unwrap()
                .contains("no answer within 10s")
        );
        health.observe(&Ok(()));
        assert!(health.is_healthy());
        assert_eq!(health.last_error(), None);
    }
}
