//! What `regmirror sync` prints at the end: the run's report (or, with `--dry-run`, its plan)
//! as a short summary for people, or as JSON for programs (`--json`).

use std::borrow::Cow;
use std::time::Duration;

use indicatif::HumanBytes;
use regmirror::engine::{Outcome, PreviewAction, SyncPreview, SyncReport};
use regmirror::{Detail, ErrorKind, Phase, Side};
use serde::Serialize;

use crate::hint::{self, Sides};
use crate::output::escaped;

/// Tag names listed per line before the rest are counted.
const MAX_NAMES: usize = 8;

/// The report as `--json` prints it: the engine's report plus where it went.
#[derive(Debug, Serialize)]
pub struct JsonReport<'a> {
    #[serde(flatten)]
    pub report: &'a SyncReport,
    /// The destination as given (`host/path` or `oci:DIR`).
    pub destination: String,
    /// What to try after a failed run, as the text summary's `hint:` line says it.
    pub hint: Option<String>,
}

/// The plan as `--dry-run --json` prints it.
#[derive(Debug, Serialize)]
pub struct JsonPreview<'a> {
    pub dry_run: bool,
    #[serde(flatten)]
    pub preview: &'a SyncPreview,
    pub destination: String,
}

/// `v1, v2, v3 and 4 more`.
fn names<S: AsRef<str>>(tags: &[S]) -> String {
    let shown: Vec<Cow<'_, str>> = tags
        .iter()
        .take(MAX_NAMES)
        .map(|t| escaped(t.as_ref()))
        .collect();
    let mut out = shown.join(", ");
    if tags.len() > MAX_NAMES {
        out.push_str(&format!(" and {} more", tags.len() - MAX_NAMES));
    }
    out
}

fn line<S: AsRef<str>>(label: &str, tags: &[S]) -> String {
    if tags.is_empty() {
        format!("  {label:<9}0")
    } else {
        format!("  {label:<9}{:<4}{}", tags.len(), names(tags))
    }
}

/// The summary of a finished run, ready to print. Everything the registries supplied (tags,
/// digests, errors, notes) is [`escaped`], so each line is one the summary wrote.
pub fn report_text(report: &SyncReport, destination: &str, sides: &Sides) -> String {
    let mut out = vec![format!("{} -> {destination}", report.source)];
    let touched = !(report.tags_synced.is_empty()
        && report.tags_current.is_empty()
        && report.tags_failed.is_empty()
        && report.tags_deleted.is_empty()
        && report.tags_skipped.is_empty());
    // A run that failed before reaching any tag (listing, connecting) has only its error to say.
    if touched || report.outcome == Outcome::Success {
        out.push(line("synced", &report.tags_synced));
        out.push(line("current", &report.tags_current));
        let failed: Vec<&str> = report.tags_failed.iter().map(|f| f.tag.as_str()).collect();
        out.push(line("failed", &failed));
        out.push(line("deleted", &report.tags_deleted));
        if !report.tags_skipped.is_empty() {
            out.push(line("skipped", &report.tags_skipped));
        }
        for r in &report.tags_rewritten {
            out.push(format!(
                "  rewritten {} (index of the selected platforms: {} instead of the source's {})",
                escaped(&r.tag),
                r.digest,
                r.source_digest
            ));
        }
        for f in &report.tags_failed {
            out.push(format!("  {}: {}", escaped(&f.tag), escaped(&f.reason)));
        }
        out.push(format!(
            "copied {} in {} blobs ({} mounted, {} already present){} in {:.1}s",
            HumanBytes(report.bytes_copied),
            report.blobs_copied,
            report.blobs_mounted,
            report.blobs_present,
            match report.referrers_copied {
                0 => String::new(),
                1 => ", 1 referrer (signature, SBOM, attestation)".to_owned(),
                n => format!(", {n} referrers (signatures, SBOMs, attestations)"),
            },
            Duration::from_millis(report.duration_ms).as_secs_f64(),
        ));
    }
    out.push(match report.outcome {
        Outcome::Success => match &report.note {
            Some(note) => format!("success: {}", escaped(note)),
            None => "success".to_owned(),
        },
        // The engine's error already says whether the run was partial or rolled back.
        Outcome::Failed => format!(
            "FAILED: {}",
            escaped(report.error.as_deref().unwrap_or("see the failed tags"))
        ),
        Outcome::Cancelled => "cancelled (the tags synced so far stay)".to_owned(),
    });
    if let Some(hint) = hint(report, sides) {
        out.push(format!("hint: {}", escaped(&hint)));
    }
    out.join("\n")
}

/// What to try when the run or its tags failed on the way to a registry (credentials, TLS, a
/// registry out of reach), decided from the failures' fields; the run's failure comes first.
pub fn hint(report: &SyncReport, sides: &Sides) -> Option<String> {
    if report.outcome != Outcome::Failed {
        return None;
    }
    let tags = || report.tags_failed.iter().map(|f| &f.failure);
    // The engine says how to allow an index rewrite in its own terms (`platform_index`).
    if tags().any(|f| f.detail == Some(Detail::SparseIndex)) {
        return Some(
            "this registry refuses an index whose other platforms are missing; add \
             --platform-index rewrite to push an index of the selected platforms (its digest \
             differs from the source's)"
                .to_owned(),
        );
    }
    // A layout written with --arch holds only those platforms of each index.
    if sides.source_is_layout() && tags().any(|f| f.detail == Some(Detail::SparseSource)) {
        return Some(
            "the layout lacks some platforms of these images (was it written with --arch?); \
             copy only what it holds with the same --arch"
                .to_owned(),
        );
    }
    // distribution refuses deletes unless configured to allow them (storage.delete.enabled).
    if tags().any(|f| {
        f.kind == ErrorKind::Unsupported
            && f.phase == Some(Phase::Prune)
            && f.side == Some(Side::Destination)
    }) {
        return Some(
            "the destination refuses to delete tags; --no-prune keeps the tags the patterns do \
             not select (or allow deletes on the registry: distribution's storage.delete.enabled)"
                .to_owned(),
        );
    }
    report
        .failure
        .iter()
        .chain(tags())
        .find_map(|failure| hint::for_error(failure, sides))
}

/// The plan of a dry run, ready to print (registry-supplied text [`escaped`], as in
/// [`report_text`]).
pub fn preview_text(preview: &SyncPreview, destination: &str) -> String {
    let mut out = vec![format!(
        "dry run: {} -> {destination} (nothing was changed)",
        preview.source
    )];
    for t in &preview.tags {
        let tag = escaped(&t.tag);
        let what = match t.action {
            PreviewAction::Copy => format!("copy      {tag} ({} to move)", HumanBytes(t.bytes)),
            PreviewAction::Current => format!("current   {tag}"),
            PreviewAction::Skip => format!(
                "skip      {tag} ({})",
                escaped(t.reason.as_deref().unwrap_or("platform filter"))
            ),
            PreviewAction::Fail => format!(
                "fail      {tag}: {}",
                escaped(t.reason.as_deref().unwrap_or("unknown error"))
            ),
        };
        out.push(format!("  {what}"));
    }
    for tag in &preview.tags_to_delete {
        out.push(format!("  delete    {}", escaped(tag)));
    }
    if let Some(note) = &preview.note {
        out.push(format!("  {}", escaped(note)));
    }
    let count = |a: PreviewAction| preview.tags.iter().filter(|t| t.action == a).count();
    out.push(format!(
        "would copy {} tags ({} in {} blobs), keep {} current, delete {}, fail {}",
        count(PreviewAction::Copy),
        HumanBytes(preview.bytes_to_copy),
        preview.blobs_to_copy,
        count(PreviewAction::Current),
        preview.tags_to_delete.len(),
        count(PreviewAction::Fail),
    ));
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registry_refusing_deletes_gets_the_no_prune_hint() {
        // The message is not what decides: the kind, side and phase are.
        let refused = regmirror::Error::new(ErrorKind::Unsupported, "no deletes here")
            .on_side(Side::Destination)
            .in_phase(Phase::Prune);
        let report = SyncReport {
            mirror_id: "m/app".into(),
            source: "127.0.0.1:5000/app".into(),
            outcome: Outcome::Failed,
            error: Some("1 unselected tag could not be deleted: old".into()),
            failure: Some(regmirror::Failure::from(&refused)),
            note: None,
            partial: true,
            rolled_back: false,
            tags_synced: vec!["v1".into()],
            tags_current: Vec::new(),
            tags_failed: vec![regmirror::engine::TagFailure::new("old", &refused)],
            tags_deleted: Vec::new(),
            tags_skipped: Vec::new(),
            tags_rewritten: Vec::new(),
            blobs_copied: 0,
            blobs_mounted: 0,
            blobs_present: 0,
            bytes_copied: 0,
            referrers_copied: 0,
            duration_ms: 1,
        };
        let text = report_text(&report, "127.0.0.1:6000/m/app", &Sides::default());
        assert!(
            text.contains("hint: the destination refuses to delete tags; --no-prune keeps"),
            "{text}"
        );
        // The engine's error is the whole story: nothing restated after it.
        assert!(
            text.contains("\nFAILED: 1 unselected tag could not be deleted: old\n"),
            "{text}"
        );
    }

    #[test]
    fn long_tag_lists_are_shortened() {
        let tags: Vec<String> = (0..10).map(|i| format!("v{i}")).collect();
        assert_eq!(
            line("synced", &tags),
            "  synced   10  v0, v1, v2, v3, v4, v5, v6, v7 and 2 more"
        );
        assert_eq!(line::<&str>("deleted", &[]), "  deleted  0");
    }
}
