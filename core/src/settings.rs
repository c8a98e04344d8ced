//! Engine-wide settings: Quay's mirroring config fields (SEMANTICS.md §1), and the push guard
//! for embedding registries (SEMANTICS.md §8).

use std::time::Duration;

use crate::config::{DEFAULT_RETRY_BACKOFF, MirrorConfig, MirrorDefaults, RollbackMode};
use crate::error::ErrorKind;
use crate::reference::RepositoryRef;
use crate::state::StateStore;

/// Settings that apply to every mirror an engine runs. Where mirrors write (Quay's
/// `REPO_MIRROR_SERVER_HOSTNAME`, `REPO_MIRROR_TLS_VERIFY`) is the engine's
/// [`Destination`](crate::Destination), not a setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineSettings {
    /// Quay's `FEATURE_REPO_MIRROR`: when off, workers claim nothing (management calls and
    /// explicit one-shot syncs still work).
    pub mirroring_enabled: bool,
    /// Quay's `REPO_MIRROR_ROLLBACK`: the rollback mode of mirrors configured through
    /// [`EngineSettings::mirror_config`] or [`MirrorSettings`](crate::config::MirrorSettings)
    /// that do not set one.
    pub default_rollback: RollbackMode,
    /// The retry backoff of those mirrors when they do not set one (default
    /// [`DEFAULT_RETRY_BACKOFF`]).
    pub default_retry_backoff: Duration,
    /// The identity that writes to destinations for mirrors without their own `robot`; the only
    /// principal [`may_push`] allows for those.
    pub robot: Option<String>,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            mirroring_enabled: true,
            default_rollback: RollbackMode::default(),
            default_retry_backoff: DEFAULT_RETRY_BACKOFF,
            robot: None,
        }
    }
}

impl EngineSettings {
    /// [`MirrorConfig::new`] with this engine's defaults applied (rollback mode, retry backoff).
    pub fn mirror_config(
        &self,
        id: impl Into<String>,
        source: RepositoryRef,
        tags: &[&str],
    ) -> MirrorConfig {
        let mut config = MirrorConfig::new(id, source, tags);
        config.rollback = self.default_rollback;
        config.retry_backoff = self.default_retry_backoff;
        config
    }

    /// The defaults for [`MirrorSettings::into_config`](crate::config::MirrorSettings::into_config).
    pub fn mirror_defaults(&self) -> MirrorDefaults {
        MirrorDefaults {
            rollback: self.default_rollback,
            retry_backoff: self.default_retry_backoff,
        }
    }
}

/// "May `principal` push to `repository`?" — the check an embedding registry makes before
/// accepting a push (SEMANTICS.md §8). While `repository` is a mirror's destination only that
/// mirror's robot (its `robot`, else `default_robot`) may write; a repository no mirror owns is
/// not this engine's business (`true`). A store failure answers `false`: refusing a push is
/// recoverable, a push that corrupts a mirror is not.
pub async fn may_push(
    store: &dyn StateStore,
    repository: &str,
    principal: &str,
    default_robot: Option<&str>,
) -> bool {
    match store.get_mirror(repository).await {
        Ok(record) => record.config.robot.as_deref().or(default_robot) == Some(principal),
        Err(e) if e.kind() == ErrorKind::NotFound => true,
        Err(e) => {
            tracing::warn!(%repository, "push guard refused a push: the state store failed: {e}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::state::MemoryStateStore;

    #[tokio::test]
    async fn only_the_robot_may_push_to_a_mirrored_repository() {
        let store = MemoryStateStore::new();
        let now = datetime!(2026-01-01 00:00 UTC);
        let settings = EngineSettings {
            default_rollback: RollbackMode::AllOrNothing,
            robot: Some("engine-robot".into()),
            ..EngineSettings::default()
        };
        let source: RepositoryRef = "quay.io/coreos/etcd".parse().unwrap();
        let plain = settings.mirror_config("ns/plain", source.clone(), &["*"]);
        assert_eq!(plain.rollback, RollbackMode::AllOrNothing);
        store
            .create_mirror(&plain.validated().unwrap(), now)
            .await
            .unwrap();
        let mut own = settings.mirror_config("ns/own", source, &["*"]);
        own.robot = Some("own-robot".into());
        store
            .create_mirror(&own.validated().unwrap(), now)
            .await
            .unwrap();
        let robot = settings.robot.as_deref();

        assert!(may_push(&store, "ns/plain", "engine-robot", robot).await);
        assert!(!may_push(&store, "ns/plain", "alice", robot).await);
        assert!(!may_push(&store, "ns/plain", "engine-robot", None).await);
        assert!(may_push(&store, "ns/own", "own-robot", robot).await);
        assert!(!may_push(&store, "ns/own", "engine-robot", robot).await);
        assert!(may_push(&store, "ns/unmirrored", "alice", robot).await);
        store.delete_mirror("ns/plain").await.unwrap();
        assert!(may_push(&store, "ns/plain", "alice", robot).await);
    }
}
