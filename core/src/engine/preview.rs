//! What a sync would do, without doing it (`regmirror sync --dry-run`): each selected tag's
//! action, the tags that would be pruned, and the blob bytes that would be copied.
//!
//! Read-only: it lists tags, HEADs manifests, GETs source manifests (and the small configs a
//! platform filter needs) and asks the destination which blobs it holds. The planning is the
//! run's own ([`super::plan`]), so a preview and the sync that follows agree.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde::Serialize;

use super::context::Run;
use super::plan::Action;
use super::publish;
use super::walk::{Child, Top, Walk};
use crate::error::{Error, Phase, Result};
use crate::failure::Failure;
use crate::reference::Digest;
use crate::registry::Manifest;
use crate::registry::manifest::Reference;

/// What a sync would do with one selected tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PreviewAction {
    /// Copy the source's manifest (and whatever blobs the destination lacks).
    Copy,
    /// The destination already points at the source's digest: nothing to move.
    Current,
    /// A single-platform image the architecture filter excludes.
    Skip,
    /// The tag cannot be read; the sync would fail it.
    Fail,
}

/// One selected tag in a [`SyncPreview`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreviewTag {
    pub tag: String,
    pub action: PreviewAction,
    /// The source's digest (for `Current`, the destination's, which may be a rewritten index).
    pub digest: Option<Digest>,
    /// Bytes of blobs this tag needs that the destination lacks and no earlier tag (in sorted
    /// order) already brings. Blobs the engine would mount from another repository count too.
    pub bytes: u64,
    /// Why the tag fails or is skipped.
    pub reason: Option<String>,
    /// Why the tag fails, as data.
    pub failure: Option<Failure>,
}

/// The plan of one sync: see [`crate::engine::Mirror::preview_config`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[must_use]
pub struct SyncPreview {
    pub mirror_id: String,
    /// The source reference, `host/path`.
    pub source: String,
    /// Every selected tag, sorted.
    pub tags: Vec<PreviewTag>,
    /// Destination tags the sync would delete (not selected, or skipped by the filter).
    pub tags_to_delete: Vec<String>,
    pub blobs_to_copy: u64,
    pub bytes_to_copy: u64,
    /// A remark such as "no tags matched" (then nothing would be pruned either).
    pub note: Option<String>,
}

/// Plan `run` without changing anything.
pub(crate) async fn preview(run: &Arc<Run>) -> Result<SyncPreview> {
    let mut preview = SyncPreview {
        mirror_id: run.config.id.clone(),
        source: run.config.source.to_string(),
        tags: Vec::new(),
        tags_to_delete: Vec::new(),
        blobs_to_copy: 0,
        bytes_to_copy: 0,
        note: None,
    };
    let (tags, dest) = run.list_both_sides().await?;
    let selected = run.filter.select(&tags);
    if selected.is_empty() {
        preview.note = Some(run.no_tags_matched(tags.len()));
        return Ok(preview);
    }
    let plan = run.plan_all(&tags, selected, dest?).await?;
    let mut seen = HashSet::new();
    let mut keep = BTreeMap::new();
    for (tag, action) in plan.tags {
        let entry = |action, digest, bytes, reason| PreviewTag {
            tag: tag.clone(),
            action,
            digest,
            bytes,
            reason,
            failure: None,
        };
        let fail = |digest, e: Error| PreviewTag {
            failure: Some(Failure::from(&e)),
            ..entry(PreviewAction::Fail, digest, 0, Some(e.to_string()))
        };
        let entry = match action {
            Action::Current(digest) => entry(PreviewAction::Current, Some(digest), 0, None),
            Action::Failed(e) => fail(None, e.in_phase(Phase::Read)),
            Action::Copy(digest, fetched) => match needs(run, &digest, fetched, &mut seen).await {
                Ok(Needs::Blobs { count, bytes }) => {
                    preview.blobs_to_copy += count;
                    preview.bytes_to_copy += bytes;
                    entry(PreviewAction::Copy, Some(digest), bytes, None)
                }
                Ok(Needs::Skip(reason)) => {
                    entry(PreviewAction::Skip, Some(digest), 0, Some(reason))
                }
                Err(e) => fail(Some(digest), e.in_phase(Phase::Stage)),
            },
        };
        // As in the run: a copied tag points at its new digest, current and failed tags keep
        // theirs, skipped tags are pruned.
        match entry.action {
            PreviewAction::Copy => keep.insert(entry.tag.clone(), entry.digest.clone()),
            PreviewAction::Current | PreviewAction::Fail => keep.insert(entry.tag.clone(), None),
            PreviewAction::Skip => None,
        };
        preview.tags.push(entry);
    }
    preview.tags_to_delete = publish::to_prune(run, &plan.prior, &keep)
        .await
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    Ok(preview)
}

enum Needs {
    Blobs { count: u64, bytes: u64 },
    Skip(String),
}

/// The blobs the manifest `digest` needs that the destination lacks (not counting those in
/// `seen`, which collects every blob looked at), walking its manifests as staging does.
/// `fetched` is the manifest if planning read it.
async fn needs(
    run: &Arc<Run>,
    digest: &Digest,
    fetched: Option<Manifest>,
    seen: &mut HashSet<Digest>,
) -> Result<Needs> {
    let mut images: Vec<(Reference, Vec<Reference>)> = Vec::new();
    // Child manifests still to look at, with the nesting level of the index listing them.
    let mut children: Vec<(Reference, usize)> = Vec::new();
    let walk = Walk::new();
    match run.open_top(digest, fetched, &walk).await? {
        Top::Excluded(reason) => return Ok(Needs::Skip(reason)),
        Top::Image { config, layers, .. } => images.push((config, layers)),
        Top::Index { chosen, .. } => children.extend(chosen.into_iter().map(|c| (c, 1))),
    }
    // Child manifests the destination holds bring their blobs along already.
    while let Some((child, level)) = children.pop() {
        match run.open_child(&child, &walk, level).await? {
            Child::Held | Child::Image { held: true, .. } | Child::Index { held: true, .. } => {}
            Child::Image { config, layers, .. } => images.push((config, layers)),
            Child::Index { entries, .. } => {
                children.extend(entries.into_iter().map(|c| (c, level + 1)));
            }
        }
    }
    let (mut count, mut bytes) = (0, 0);
    for blob in images
        .into_iter()
        .flat_map(|(config, layers)| std::iter::once(config).chain(layers))
    {
        if !seen.insert(blob.digest.clone()) {
            continue;
        }
        match run
            .dest_read(run.dest.blob_size(&run.dest_repo, &blob.digest))
            .await?
        {
            Some(size) => blob.check_size(size)?,
            None => {
                count += 1;
                bytes += blob.size;
            }
        }
    }
    Ok(Needs::Blobs { count, bytes })
}
