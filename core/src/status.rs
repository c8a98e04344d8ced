//! A mirror's sync status (SEMANTICS.md §6).

use serde::{Deserialize, Serialize};

/// Where a mirror is in its life, with Quay's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SyncStatus {
    NeverRun,
    SyncNow,
    Syncing,
    Success,
    Fail,
    Cancel,
}

impl SyncStatus {
    /// Quay's name (`NEVER_RUN`, `SYNC_NOW`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            SyncStatus::NeverRun => "NEVER_RUN",
            SyncStatus::SyncNow => "SYNC_NOW",
            SyncStatus::Syncing => "SYNCING",
            SyncStatus::Success => "SUCCESS",
            SyncStatus::Fail => "FAIL",
            SyncStatus::Cancel => "CANCEL",
        }
    }
}

impl std::fmt::Display for SyncStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
