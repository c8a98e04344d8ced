//! What a sync run did: the [`SyncReport`] returned to callers (and printed by `--json`).

use serde::Serialize;

use crate::error::Error;
use crate::failure::{Failure, TagFailure};
use crate::reference::Digest;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every selected tag is current (or skipped by the platform filter), pruning done.
    Success,
    /// The listing failed, a tag failed, or the run timed out (`error` says which).
    Failed,
    /// Stopped on request after the unit of work in flight; not rolled back.
    Cancelled,
}

impl Outcome {
    /// Its serde name (`success`, `failed`, `cancelled`): what the bindings' reports say.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// A tag whose index was rewritten to the selected platforms (`platform_index = rewrite`):
/// the destination's digest differs from the source's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RewrittenTag {
    pub tag: String,
    pub source_digest: Digest,
    pub digest: Digest,
}

/// The result of one sync run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[must_use]
pub struct SyncReport {
    pub mirror_id: String,
    /// The source reference, `host/path`.
    pub source: String,
    pub outcome: Outcome,
    /// Why the run failed or was cancelled; `None` when it succeeded.
    pub error: Option<String>,
    /// The same as data; `None` when the run succeeded. A run that failed because of its tags
    /// carries the kind, side, phase and host of its rollback's failure if that failed, else of
    /// its first failed tag (each tag's own are in `tags_failed`).
    pub failure: Option<Failure>,
    /// A remark on a successful run, such as "no tags matched" (never an error).
    pub note: Option<String>,
    /// A failed run whose successful tags and pruning stand (`failed_tags_only`).
    pub partial: bool,
    /// The destination was put back as it was before the run (`all_or_nothing`).
    pub rolled_back: bool,
    /// Tags moved or created by this run (after a rollback: none).
    pub tags_synced: Vec<String>,
    /// Tags whose destination already pointed at the source's digest.
    pub tags_current: Vec<String>,
    pub tags_failed: Vec<TagFailure>,
    /// Tags pruned from the destination (after a rollback: none).
    pub tags_deleted: Vec<String>,
    /// Single-platform tags whose architecture the filter excludes.
    pub tags_skipped: Vec<String>,
    pub tags_rewritten: Vec<RewrittenTag>,
    /// Blobs streamed from the source to the destination.
    pub blobs_copied: u64,
    /// Blobs linked from another destination repository without copying.
    pub blobs_mounted: u64,
    /// Blobs the destination repository already held.
    pub blobs_present: u64,
    pub bytes_copied: u64,
    /// Referrers (signatures, SBOMs, attestations) newly copied with their subjects.
    pub referrers_copied: u64,
    pub duration_ms: u64,
}

impl SyncReport {
    pub(crate) fn new(mirror_id: &str, source: &str) -> Self {
        SyncReport {
            mirror_id: mirror_id.to_owned(),
            source: source.to_owned(),
            outcome: Outcome::Success,
            error: None,
            failure: None,
            note: None,
            partial: false,
            rolled_back: false,
            tags_synced: Vec::new(),
            tags_current: Vec::new(),
            tags_failed: Vec::new(),
            tags_deleted: Vec::new(),
            tags_skipped: Vec::new(),
            tags_rewritten: Vec::new(),
            blobs_copied: 0,
            blobs_mounted: 0,
            blobs_present: 0,
            bytes_copied: 0,
            referrers_copied: 0,
            duration_ms: 0,
        }
    }

    /// Whether the run succeeded.
    pub fn is_success(&self) -> bool {
        self.outcome == Outcome::Success
    }

    /// Fail the run because of `error`.
    pub(crate) fn fail(&mut self, error: &Error) {
        self.outcome = Outcome::Failed;
        self.error = Some(error.to_string());
        self.failure = Some(Failure::from(error));
    }

    /// The failed tags' names.
    pub fn failed_tags(&self) -> Vec<String> {
        self.tags_failed.iter().map(|f| f.tag.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::Outcome;

    #[test]
    fn outcome_names_are_the_serde_names() {
        for outcome in [Outcome::Success, Outcome::Failed, Outcome::Cancelled] {
            assert_eq!(
                serde_json::to_value(outcome).unwrap(),
                serde_json::Value::from(outcome.as_str())
            );
        }
    }
}
