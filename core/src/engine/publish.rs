//! Publishing (SEMANTICS.md §3 steps 5–6, §5): moving tags to their staged manifests, pruning
//! tags the mirror no longer selects, and rolling back per the mirror's mode.
//!
//! Before the first tag changes, the destination's pre-run tags are saved in the state store,
//! so that a worker that dies mid-publish is rolled back (or completed) by the next one. With
//! `all_or_nothing`, a tag that failed before publishing means nothing is published at all (no
//! undo needed); a failure while pruning or publishing undoes every change of the run. That mode
//! prunes first, so a destination that refuses deletes fails the run before any tag moved.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;

use super::context::{OnceMap, Run, Staged, cell};
use super::plan::{Action, Plan, ReferrerTag, destination_tags};
use super::progress::{ProgressEvent, TagStatus};
use super::referrers;
use super::report::{Outcome, RewrittenTag, SyncReport};
use crate::config::RollbackMode;
use crate::error::{Error, ErrorKind, Phase, Result};
use crate::failure::{Failure, TagFailure};
use crate::reference::Digest;
use crate::registry::Manifest;
use crate::state::{LogKind, StateStore, TagRecord};

/// One destination change of this run, as needed to undo it. `unsure` when its request failed:
/// the registry may or may not have made it (an answer lost on the way back).
#[derive(Debug)]
enum Change {
    /// The tag was pointed at a new manifest; it pointed at `old` before (or did not exist).
    Tagged {
        tag: String,
        old: Option<Digest>,
        unsure: bool,
    },
    /// The tag was pruned; it pointed at `old`.
    Pruned {
        tag: String,
        old: Digest,
        unsure: bool,
    },
}

/// The changes of a run and the manifests needed to undo them.
#[derive(Debug)]
struct Undo<'a> {
    run: &'a Run,
    changes: Vec<Change>,
    saved: BTreeMap<Digest, Manifest>,
}

impl<'a> Undo<'a> {
    fn new(run: &'a Run) -> Self {
        Undo {
            run,
            changes: Vec::new(),
            saved: BTreeMap::new(),
        }
    }

    /// Keep the manifests the moves fetched to put their tags back on (see [`Undo::save`]).
    fn keep(&mut self, previous: OnceMap<Digest, Manifest>) {
        let previous = previous
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        for (digest, fetched) in previous {
            if let Some(Ok(manifest)) = fetched.get() {
                self.saved.insert(digest, manifest.clone());
            }
        }
    }

    /// Keep the bytes of manifest `digest` so a tag can be put back on it even if the
    /// destination drops the manifest once no tag references it.
    async fn save(&mut self, digest: &Digest) -> Result<()> {
        if !self.saved.contains_key(digest) {
            let manifest = fetch_previous(self.run, digest).await?;
            self.saved.insert(digest.clone(), manifest);
        }
        Ok(())
    }

    async fn point(&self, tag: &str, digest: &Digest) -> Result<()> {
        let manifest = match self.saved.get(digest) {
            Some(m) => m.clone(),
            None => fetch_previous(self.run, digest).await?,
        };
        self.run
            .dest
            .push_manifest(&self.run.dest_repo, tag, &manifest)
            .await
            .map(drop)
    }

    /// Put `tag` back at `old` (or remove it when it did not exist). An `unsure` change (its
    /// request failed) is checked first and left alone when the tag is as it was. Returns
    /// whether the tag was changed.
    async fn revert(&self, tag: &str, old: Option<&Digest>, unsure: bool) -> Result<bool> {
        let run = self.run;
        // When the tag cannot be read, put it back anyway: the write says whether that works.
        if unsure
            && let Ok(current) = run.dest.head_manifest(&run.dest_repo, tag).await
            && current.map(|h| h.digest).as_ref() == old
        {
            return Ok(false);
        }
        match old {
            Some(old) => self.point(tag, old).await?,
            None => match run.dest.delete_tag(&run.dest_repo, tag).await {
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
                result => result?,
            },
        }
        match old {
            Some(old) => run.log(
                LogKind::TagRestored,
                Some(tag),
                Some(old),
                "rolled back to its pre-run manifest".into(),
            ),
            None => run.log(
                LogKind::TagDeleted,
                Some(tag),
                None,
                "removed by rollback: it did not exist before the run".into(),
            ),
        }
        Ok(true)
    }

    /// Undo every change, newest first. Keeps going past failures and reports them all, naming
    /// each tag that may be left changed. Returns how many tags were put back.
    async fn roll_back(&self) -> Result<usize> {
        let mut reverted = 0;
        let mut errors = Vec::new();
        for change in self.changes.iter().rev() {
            let (tag, old, unsure) = match change {
                Change::Tagged { tag, old, unsure } => (tag, old.as_ref(), *unsure),
                Change::Pruned { tag, old, unsure } => (tag, Some(old), *unsure),
            };
            match self.revert(tag, old, unsure).await {
                Ok(changed) => reverted += usize::from(changed),
                Err(e) => errors.push((tag, e)),
            }
        }
        // The error keeps its cause's kind, side and host (a refused delete, a lost login, the
        // network): the newest change's failure, which is the first one met.
        if errors.is_empty() {
            return Ok(reverted);
        }
        let tags: Vec<String> = errors
            .iter()
            .map(|(tag, e)| format!("{tag}: {e}"))
            .collect();
        let message = format!(
            "rollback incomplete, the destination may be inconsistent; tags not restored: {}",
            tags.join("; ")
        );
        let (_, first) = errors.swap_remove(0);
        Err(first.with_message(message).in_phase(Phase::Rollback))
    }
}

/// The manifest `digest` the destination had before: from the destination, or else from the
/// source (which it was mirrored from), verified either way.
async fn fetch_previous(run: &Run, digest: &Digest) -> Result<Manifest> {
    let manifest = match run.dest.get_manifest(&run.dest_repo, digest.as_str()).await {
        Ok(m) => m,
        Err(dest_error) => run
            .source
            .get_manifest(&run.src_repo, digest.as_str())
            .await
            .map_err(|e| {
                e.context(format!(
                    "manifest {digest} is gone from the destination ({dest_error}) and the source"
                ))
            })?,
    };
    if &manifest.digest != digest {
        return Err(Error::new(
            ErrorKind::DigestMismatch,
            format!(
                "manifest {digest} was served with bytes hashing to {}",
                manifest.digest
            ),
        ));
    }
    Ok(manifest)
}

/// Put the destination's tags back exactly as `record` says (a dead worker's run).
pub(crate) async fn restore(run: &Run, record: &TagRecord) -> Result<()> {
    let current = destination_tags(run).await?;
    let undo = Undo::new(run);
    for (tag, digest) in record {
        if current.get(tag) != Some(digest) {
            undo.point(tag, digest).await?;
            run.log(
                LogKind::TagRestored,
                Some(tag),
                Some(digest),
                "restored after an interrupted run".into(),
            );
        }
    }
    for tag in current.keys().filter(|t| !record.contains_key(*t)) {
        run.dest.delete_tag(&run.dest_repo, tag).await?;
        run.log(
            LogKind::TagDeleted,
            Some(tag),
            None,
            "removed after an interrupted run: it did not exist before it".into(),
        );
    }
    Ok(())
}

fn finished(
    run: &Run,
    tag: &str,
    status: TagStatus,
    digest: Option<&Digest>,
    error: Option<&Error>,
) {
    run.progress.emit(ProgressEvent::TagFinished {
        tag: tag.to_owned(),
        status,
        digest: digest.cloned(),
        error: error.map(ToString::to_string),
    });
}

/// What publishing did, tag by tag, for the log and the report.
#[derive(Debug, Default)]
struct Done {
    /// Tags pointed at their new manifest.
    synced: Vec<(String, Digest)>,
    /// Unselected tags deleted.
    deleted: Vec<(String, Digest)>,
    failures: Vec<(String, Error)>,
    /// Unselected tags whose deletion failed: counted apart from the selected tags that failed.
    unpruned: BTreeSet<String>,
}

/// A staged tag to point at its manifest.
#[derive(Debug)]
struct Publishable {
    tag: String,
    manifest: Arc<Manifest>,
    /// The digest planned from the source (the manifest's own unless it was rewritten).
    source_digest: Digest,
}

/// The planned tags sorted by how staging went.
#[derive(Debug, Default)]
struct Sorted {
    /// The tags the destination keeps, each with the digest it points at once the run is done
    /// (`None`: the one it has now).
    keep: BTreeMap<String, Option<Digest>>,
    publish: Vec<Publishable>,
    failures: Vec<(String, Error)>,
}

/// Publish the staged tags, prune, and roll back as the mode says; fill `report`.
pub(crate) async fn publish(
    run: &Arc<Run>,
    plan: Plan,
    staged: Vec<Option<Result<Staged>>>,
    store: Option<&Arc<dyn StateStore>>,
    report: &mut SyncReport,
) -> Result<()> {
    let Plan {
        prior,
        tags,
        referrer_tags,
    } = plan;
    let selected = tags.len();
    let Sorted {
        keep,
        publish,
        mut failures,
    } = sort(run, tags, staged, report);
    // A cancelled run stops here: units cut short report `Cancelled`, which is no failure.
    failures.retain(|(_, e)| e.kind() != ErrorKind::Cancelled);
    let prune = to_prune(run, &prior, &keep).await;
    let aon = run.config.rollback == RollbackMode::AllOrNothing;
    let mut done = Done {
        failures,
        ..Done::default()
    };
    let mut saved_record = false;
    let mut changed = Changed::default();
    let blocked = run.is_stopped() || (aon && !done.failures.is_empty());
    if !blocked && (!publish.is_empty() || !prune.is_empty()) {
        if let Some(store) = store {
            store
                .save_tag_record(&run.config.id, &prior)
                .await
                .map_err(|e| {
                    e.context("saving the destination's tags before changing them")
                        .in_phase(Phase::Publish)
                })?;
            saved_record = true;
        }
        let to_change = ToChange {
            prior: &prior,
            publish,
            prune,
            referrer_tags: &referrer_tags,
        };
        changed = change(run, to_change, &mut done, report).await;
    }

    // A run interrupted from this side (shutdown, caller's token) rather than cancelled
    // through the store keeps its record: the next run rolls back or completes from it.
    let interrupted = run.is_cancelled() && !run.is_cancelled_by_status();
    if let Some(store) = store
        && saved_record
        && !changed.keep_record
        && !interrupted
        && let Err(e) = store.clear_tag_record(&run.config.id).await
    {
        tracing::warn!(mirror = %run.config.id, "could not clear the pre-run tag record: {e}");
    }
    tell(run, done, selected, changed.rollback_error, report);
    Ok(())
}

/// Sort the planned `tags` by how staging went (`staged`: each tag's outcome at its place in
/// `tags`): report the current and the skipped ones, and say which the destination keeps
/// (every selected tag but the skipped ones: failed tags keep their previous value, so they
/// are not pruned either), which to publish and which failed.
fn sort(
    run: &Run,
    tags: Vec<(String, Action)>,
    staged: Vec<Option<Result<Staged>>>,
    report: &mut SyncReport,
) -> Sorted {
    let mut sorted = Sorted::default();
    // A tag without an outcome is the internal failure below, never left out.
    let staged = staged.into_iter().chain(std::iter::repeat_with(|| None));
    for ((tag, action), staged) in tags.into_iter().zip(staged) {
        match action {
            Action::Current(digest) => {
                finished(run, &tag, TagStatus::Current, Some(&digest), None);
                sorted.keep.insert(tag.clone(), None);
                report.tags_current.push(tag);
            }
            Action::Failed(e) => {
                sorted.keep.insert(tag.clone(), None);
                sorted.failures.push((tag, e.in_phase(Phase::Read)));
            }
            Action::Copy(source_digest, _) => match staged {
                Some(Ok(Staged::Ready(manifest))) => {
                    sorted
                        .keep
                        .insert(tag.clone(), Some(manifest.digest.clone()));
                    sorted.publish.push(Publishable {
                        tag,
                        manifest,
                        source_digest,
                    });
                }
                Some(Ok(Staged::Untagged)) => {
                    finished(run, &tag, TagStatus::Synced, None, None);
                }
                Some(Ok(Staged::Skipped { reason })) => {
                    finished(run, &tag, TagStatus::Skipped, None, None);
                    tracing::info!(mirror = %run.config.id, %tag, "skipped: {reason}");
                    report.tags_skipped.push(tag);
                }
                Some(Err(e)) => {
                    sorted.keep.insert(tag.clone(), None);
                    sorted.failures.push((tag, e.in_phase(Phase::Stage)));
                }
                None => {
                    sorted.keep.insert(tag.clone(), None);
                    let e = Error::new(ErrorKind::Internal, "the tag was planned but not staged");
                    sorted.failures.push((tag, e.in_phase(Phase::Stage)));
                }
            },
        }
    }
    sorted
}

/// The keep/prune rule (SEMANTICS.md §3 step 6, §9), one for a run and its preview: the
/// destination's tags `prior` that are not in `keep` are deleted (none with
/// `keep_unselected`), except the referrer tags whose subject stays mirrored — a digest the
/// kept tags point at once the run is done (`keep` maps each kept tag to its new digest,
/// `None` for its present one), one of their children, or a referrer kept this way.
pub(crate) async fn to_prune(
    run: &Run,
    prior: &TagRecord,
    keep: &BTreeMap<String, Option<Digest>>,
) -> Vec<(String, Digest)> {
    if !run.prune {
        return Vec::new();
    }
    let mut prune: Vec<(String, Digest)> = prior
        .iter()
        .filter(|(tag, _)| !keep.contains_key(*tag))
        .map(|(t, d)| (t.clone(), d.clone()))
        .collect();
    let staying = keep
        .iter()
        .filter_map(|(tag, new)| new.clone().or_else(|| prior.get(tag).cloned()))
        .collect();
    referrers::keep_referrer_tags(run, staying, &mut prune).await;
    prune
}

/// The destination changes a run makes.
struct ToChange<'a> {
    /// The destination's tags before the run.
    prior: &'a TagRecord,
    publish: Vec<Publishable>,
    prune: Vec<(String, Digest)>,
    referrer_tags: &'a BTreeMap<String, ReferrerTag>,
}

/// How changing the destination ended.
#[derive(Debug, Default)]
struct Changed {
    /// The pre-run record stays in the store: the next run restores or completes from it.
    keep_record: bool,
    /// Rolling back failed (all_or_nothing).
    rollback_error: Option<Error>,
}

/// Prune and publish (with all_or_nothing, pruning first), then roll back as the mode says.
async fn change(
    run: &Run,
    to_change: ToChange<'_>,
    done: &mut Done,
    report: &mut SyncReport,
) -> Changed {
    let aon = run.config.rollback == RollbackMode::AllOrNothing;
    let mut undo = Undo::new(run);
    // With all_or_nothing, unselected tags go first: a destination that refuses deletes
    // (distribution's default, many registries) then fails the run before any tag moved.
    // Publishing first would leave created tags that the rollback cannot delete either.
    let (prune_first, prune_last) = if aon {
        (to_change.prune, Vec::new())
    } else {
        (Vec::new(), to_change.prune)
    };
    prune_tags(run, prune_first, &mut undo, done).await;
    // A tag starts moving only while nothing stops the run: with all_or_nothing, a failure
    // (here or in pruning) stops it.
    let stop = AtomicBool::new(aon && !done.failures.is_empty());
    let previous = OnceMap::default();
    let mut moves = futures::stream::iter(to_change.publish)
        .map(|publishable| {
            let old = to_change.prior.get(&publishable.tag).cloned();
            let may_be_rewritten = !to_change.referrer_tags.contains_key(&publishable.tag);
            move_tag(run, publishable, old, may_be_rewritten, &stop, &previous)
        })
        .buffered(MOVES_AT_ONCE);
    // In the tags' order whatever order the registry answers in: events, log and report too.
    while let Some(moved) = moves.next().await {
        record_move(run, moved, &mut undo, done, report);
    }
    drop(moves);
    undo.keep(previous);
    prune_tags(run, prune_last, &mut undo, done).await;
    let mut changed = Changed::default();
    if run.is_claim_lost() {
        // The new holder recovers from the record this run saved.
        changed.keep_record = true;
    } else if aon && (!done.failures.is_empty() || run.is_aborted()) {
        match undo.roll_back().await {
            Ok(reverted) => {
                report.rolled_back = reverted > 0;
                done.synced.clear();
                done.deleted.clear();
                report.tags_rewritten.clear();
            }
            Err(e) => {
                // The record stays in the store: the next run restores from it.
                changed.keep_record = true;
                changed.rollback_error = Some(e.in_phase(Phase::Rollback));
            }
        }
    }
    changed
}

/// Tags moved at once (each a manifest `PUT`, within the run's units). The destination checks
/// each manifest's blobs and stores it, about 4.5 ms for a small image on distribution: one
/// after another, 300 tags held a 6 s run for 1.5 s. A cancel stops after the moves in flight.
const MOVES_AT_ONCE: usize = 8;

/// How moving one tag ended, recorded by [`record_move`] in the tags' order.
enum Moved {
    /// Not started: the run was stopped.
    NotStarted,
    /// Pointed at its manifest; it pointed at `old`. A manifest whose digest differs from the
    /// source's is reported as a rewrite when `may_be_rewritten` (a referrers index merged with
    /// the destination's is no rewritten image).
    Done {
        publishable: Publishable,
        old: Option<Digest>,
        may_be_rewritten: bool,
    },
    /// Failed. `unsure`: the move to undo with the rest (all_or_nothing), its request having
    /// failed, so the registry may have made it or not.
    Failed {
        tag: String,
        error: Error,
        unsure: Option<Option<Digest>>,
    },
}

/// Point one tag at its staged manifest (it pointed at `old`); a failure with all_or_nothing
/// sets `stop`, so no other tag starts. With all_or_nothing, `old`'s manifest is fetched into
/// `previous` first (once, however many tags pointed at it), for a rollback. With
/// failed_tags_only a tag whose move failed is put back at once, since a failed tag keeps its
/// previous value.
async fn move_tag(
    run: &Run,
    publishable: Publishable,
    old: Option<Digest>,
    may_be_rewritten: bool,
    stop: &AtomicBool,
    previous: &OnceMap<Digest, Manifest>,
) -> Moved {
    if run.is_stopped() || stop.load(Ordering::Relaxed) {
        return Moved::NotStarted;
    }
    let aon = run.config.rollback == RollbackMode::AllOrNothing;
    let tag = publishable.tag.clone();
    let failed = |error: Error, unsure| {
        if aon {
            stop.store(true, Ordering::Relaxed);
        }
        Moved::Failed {
            tag: tag.clone(),
            error,
            unsure,
        }
    };
    if aon && let Some(old) = &old {
        let fetched = cell(previous, old);
        let fetched = fetched
            .get_or_init(|| async { fetch_previous(run, old).await.map_err(Into::into) })
            .await;
        if let Err(e) = fetched {
            let e = Error::from(e.clone()).context("saving its previous manifest for rollback");
            return failed(e.in_phase(Phase::Publish), None);
        }
    }
    let manifest = &publishable.manifest;
    match run
        .unit(run.dest.push_manifest(&run.dest_repo, &tag, manifest))
        .await
    {
        Ok(_) => Moved::Done {
            publishable,
            old,
            may_be_rewritten,
        },
        Err(e) if e.kind() == ErrorKind::Cancelled => Moved::NotStarted,
        Err(e) => {
            let mut e = e.context("publishing").in_phase(Phase::Publish);
            // The registry may have moved the tag before the request failed (an answer lost on
            // the way back, a misreported digest): the tag is put back with the rest
            // (all_or_nothing), or on its own.
            if aon {
                return failed(e, Some(old));
            }
            // Within the run's limits: a run timed out or taken over stops here. Nothing is
            // saved without all_or_nothing, so an empty undo reverts as the run's would.
            if !run.is_claim_lost()
                && let Err(restore) = run
                    .unit(Undo::new(run).revert(&tag, old.as_ref(), true))
                    .await
            {
                e = e.context(format!(
                    "the destination may now point it at {} (putting it back failed: {restore})",
                    manifest.digest
                ));
            }
            failed(e, None)
        }
    }
}

/// Record one tag's move in `undo`, `done`, the report and the progress events.
fn record_move(
    run: &Run,
    moved: Moved,
    undo: &mut Undo<'_>,
    done: &mut Done,
    report: &mut SyncReport,
) {
    match moved {
        Moved::NotStarted => {}
        Moved::Done {
            publishable,
            old,
            may_be_rewritten,
        } => {
            let Publishable {
                tag,
                manifest,
                source_digest,
            } = publishable;
            finished(run, &tag, TagStatus::Synced, Some(&manifest.digest), None);
            if manifest.digest != source_digest && may_be_rewritten {
                report.tags_rewritten.push(RewrittenTag {
                    tag: tag.clone(),
                    source_digest,
                    digest: manifest.digest.clone(),
                });
            }
            undo.changes.push(Change::Tagged {
                tag: tag.clone(),
                old,
                unsure: false,
            });
            done.synced.push((tag, manifest.digest.clone()));
        }
        Moved::Failed { tag, error, unsure } => {
            if let Some(old) = unsure {
                undo.changes.push(Change::Tagged {
                    tag: tag.clone(),
                    old,
                    unsure: true,
                });
            }
            done.failures.push((tag, error));
        }
    }
}

/// Delete the unselected tags `prune` (tag, digest), recording each in `undo` (a failed delete
/// too: the tag may be gone all the same) and in `done`; with `all_or_nothing` each manifest is
/// saved for a rollback first and the first failure stops it.
async fn prune_tags(run: &Run, prune: Vec<(String, Digest)>, undo: &mut Undo<'_>, done: &mut Done) {
    let aon = run.config.rollback == RollbackMode::AllOrNothing;
    for (tag, old) in prune {
        if run.is_stopped() {
            break;
        }
        if aon && let Err(e) = undo.save(&old).await {
            done.unpruned.insert(tag.clone());
            let e = e.context("saving its manifest for rollback");
            done.failures.push((tag, e.in_phase(Phase::Prune)));
            break;
        }
        match run.unit(run.dest.delete_tag(&run.dest_repo, &tag)).await {
            Ok(()) => {
                undo.changes.push(Change::Pruned {
                    tag: tag.clone(),
                    old: old.clone(),
                    unsure: false,
                });
                done.deleted.push((tag, old));
            }
            Err(e) if e.kind() == ErrorKind::Cancelled => break,
            Err(e) => {
                // It may be gone all the same: a rollback puts it back if so.
                undo.changes.push(Change::Pruned {
                    tag: tag.clone(),
                    old: old.clone(),
                    unsure: true,
                });
                done.unpruned.insert(tag.clone());
                done.failures
                    .push((tag, e.context("pruning").in_phase(Phase::Prune)));
                if aon {
                    break;
                }
            }
        }
    }
}

/// Log and report what publishing did; a run with failures says which tags in its error.
fn tell(
    run: &Run,
    done: Done,
    selected: usize,
    rollback_error: Option<Error>,
    report: &mut SyncReport,
) {
    for (tag, digest) in done.synced {
        run.log(
            LogKind::TagSynced,
            Some(&tag),
            Some(&digest),
            "synced from the source".into(),
        );
        report.tags_synced.push(tag);
    }
    for (tag, digest) in done.deleted {
        run.log(
            LogKind::TagDeleted,
            Some(&tag),
            Some(&digest),
            "pruned: not selected by the mirror".into(),
        );
        report.tags_deleted.push(tag);
    }
    for (tag, e) in &done.failures {
        finished(run, tag, TagStatus::Failed, None, Some(e));
        run.log_tag_failure(tag, e);
        report.tags_failed.push(TagFailure::new(tag, e));
    }
    if !done.failures.is_empty() {
        let aon = run.config.rollback == RollbackMode::AllOrNothing;
        report.outcome = Outcome::Failed;
        report.partial =
            !aon && (!report.tags_synced.is_empty() || !report.tags_deleted.is_empty());
        let message = failure_message(
            &done.failures,
            &done.unpruned,
            selected,
            aon,
            rollback_error.as_ref(),
            report,
        );
        // The run's failure as data: the rollback's if it failed, else the first tag's.
        let cause = rollback_error.as_ref().unwrap_or(&done.failures[0].1);
        report.error = Some(message.clone());
        report.failure = Some(Failure {
            message,
            ..Failure::from(cause)
        });
    } else if let Some(e) = rollback_error {
        // A run aborted while publishing (timeout) whose rollback failed.
        report.fail(&e);
    }
}

/// The error of a run with failed tags: which selected tags failed, which unselected ones
/// could not be deleted, and what became of the rest.
fn failure_message(
    failures: &[(String, Error)],
    unpruned: &BTreeSet<String>,
    selected: usize,
    aon: bool,
    rollback_error: Option<&Error>,
    report: &SyncReport,
) -> String {
    let (pruning, copying): (Vec<&str>, Vec<&str>) = failures
        .iter()
        .map(|(t, _)| t.as_str())
        .partition(|t| unpruned.contains(*t));
    let mut parts = Vec::new();
    if !copying.is_empty() {
        parts.push(format!(
            "{} of {selected} selected tags failed: {}",
            copying.len(),
            copying.join(", ")
        ));
    }
    if !pruning.is_empty() {
        parts.push(format!(
            "{} unselected {} could not be deleted: {}",
            pruning.len(),
            if pruning.len() == 1 { "tag" } else { "tags" },
            pruning.join(", ")
        ));
    }
    let mut message = parts.join("; ");
    if aon {
        message.push_str(match (rollback_error, report.rolled_back) {
            (Some(_), _) => {
                "; rolling back failed (all_or_nothing): the next run restores the pre-run tags"
            }
            (None, true) => "; the destination was rolled back (all_or_nothing)",
            (None, false) => "; nothing was published (all_or_nothing)",
        });
    } else if report.partial {
        message.push_str("; partial sync: the other tags and pruning stand");
    }
    if let Some(e) = rollback_error {
        message.push_str("; ");
        message.push_str(&e.to_string());
    }
    message
}
