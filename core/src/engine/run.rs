//! One sync run from listing to finish (SEMANTICS.md §3), step by step: recover what a dead
//! worker left, list both sides, select, plan ([`Run::plan_all`]), stage
//! ([`Run::stage_all`]), publish and prune ([`publish::publish`]). Each step's work is in its
//! own module, below this one; what every step works with is the [`Run`] of
//! [`super::context`].

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::future::join_all;
use futures::{FutureExt, StreamExt};
use tokio_util::task::AbortOnDropHandle;

use super::context::{CANCELLED, Run, Staged, Staging};
use super::plan::{self, Action, EarlyReads, Plan};
use super::progress::ProgressEvent;
use super::report::{Outcome, SyncReport};
use super::{publish, referrers};
use crate::config::RollbackMode;
use crate::error::{Error, ErrorKind, Phase, Result};
use crate::failure::Failure;
use crate::reference::Digest;
use crate::registry::Manifest;
use crate::state::{StateStore, TagRecord};

/// What is under way from the moment the destination's tag names are known: its digests
/// being read (a task that ends when this is dropped), and the source being asked about the
/// selected ones.
pub(crate) struct DestInventory {
    heads: AbortOnDropHandle<Result<TagRecord>>,
    early: EarlyReads,
}

impl Run {
    /// Run every step and say how it went. Never fails: failures are in the report.
    pub async fn execute(self: &Arc<Self>, store: Option<&Arc<dyn StateStore>>) -> SyncReport {
        let mut report = SyncReport::new(&self.config.id, &self.config.source.to_string());
        let result = self.steps(store, &mut report).await;
        let stats = &self.stats;
        report.blobs_copied = stats.blobs_copied.load(Ordering::Relaxed);
        report.blobs_mounted = stats.blobs_mounted.load(Ordering::Relaxed);
        report.blobs_present = stats.blobs_present.load(Ordering::Relaxed);
        report.bytes_copied = stats.bytes_copied.load(Ordering::Relaxed);
        report.referrers_copied = stats.referrers_copied.load(Ordering::Relaxed);
        let rewritten = stats.referrers_of_rewritten.load(Ordering::Relaxed);
        if rewritten > 0 {
            let remark = format!(
                "{rewritten} referrer {} of rewritten indexes not copied: they name the source's index digest, which the destination does not hold (platform_index = rewrite)",
                if rewritten == 1 { "tag" } else { "tags" }
            );
            report.note = Some(match report.note.take() {
                Some(note) => format!("{note}; {remark}"),
                None => remark,
            });
        }
        if self.is_aborted() {
            // The abort is the run's failure; what failed besides follows in the message.
            let more = match &result {
                Err(step) => after_abort(step),
                Ok(()) => report.error.take().map(|e| format!("; {e}")),
            };
            report.fail(&self.abort_error());
            if let (Some(more), Some(error), Some(failure)) =
                (more, &mut report.error, &mut report.failure)
            {
                error.push_str(&more);
                failure.message.push_str(&more);
            }
        } else if self.is_cancelled() {
            report.outcome = Outcome::Cancelled;
            report.error = Some(CANCELLED.to_owned());
            report.failure = Some(Failure::from(Error::new(ErrorKind::Cancelled, CANCELLED)));
        } else if let Err(e) = &result {
            report.fail(e);
        }
        report
    }

    async fn steps(
        self: &Arc<Self>,
        store: Option<&Arc<dyn StateStore>>,
        report: &mut SyncReport,
    ) -> Result<()> {
        if let Some(store) = store {
            self.recover(store.as_ref()).await?;
        }
        let (tags, dest) = self.list_both_sides().await?;
        let selected = self.filter.select(&tags);
        if selected.is_empty() {
            report.note = Some(self.no_tags_matched(tags.len()));
            return Ok(());
        }
        let mut plan = self.plan_all(&tags, selected, dest?).await?;
        let staged = self.stage_all(&mut plan).await;
        publish::publish(self, plan, staged, store, report).await
    }

    /// Plan the run for `selected` (sorted) tags of the source's `listed` tags, the
    /// destination's being `dest`; the referrer tags of what it mirrors join the plan.
    pub(crate) async fn plan_all(
        self: &Arc<Self>,
        listed: &[String],
        selected: Vec<String>,
        dest: DestInventory,
    ) -> Result<Plan> {
        let DestInventory { heads, mut early } = dest;
        // The source's questions depend only on which tags the destination lists, not on its
        // digests: they go out while those are read (those about the tags the destination
        // lists went out already, with its list). Questions about tags the source no longer
        // lists are stopped here.
        let reads: Vec<_> = selected.iter().map(|tag| early.read(self, tag)).collect();
        drop(early);
        let (prior, read) = tokio::join!(heads, plan::bounded(self.max_reads, reads));
        let prior = prior
            .unwrap_or_else(|e| {
                Err(Error::new(
                    ErrorKind::Internal,
                    format!("reading the destination's tags panicked: {e}"),
                ))
            })
            .map_err(|e| e.in_phase(Phase::List))?;
        let planned = join_all(
            selected
                .iter()
                .zip(read)
                .map(|(tag, read)| plan::decide(self, tag, read, &prior)),
        )
        .await;
        let mut indexes = HashSet::new();
        let mut tags = Vec::with_capacity(selected.len());
        for (tag, (action, index)) in selected.into_iter().zip(planned) {
            if let (true, Action::Current(d) | Action::Copy(d, _)) = (index, &action) {
                indexes.insert(d.clone());
            }
            tags.push((tag, action));
        }
        let mut plan = Plan {
            tags,
            prior,
            referrer_tags: BTreeMap::new(),
        };
        referrers::plan_referrer_tags(self, listed, &mut plan, indexes).await;
        let to_copy = plan
            .tags
            .iter()
            .filter(|(_, a)| matches!(a, Action::Copy(..)))
            .count();
        self.progress.emit(ProgressEvent::Planned {
            selected: plan.tags.len(),
            to_copy,
        });
        Ok(plan)
    }

    /// Stage every tag the plan copies, [`Run::tags_in_flight`] at a time (each tag's blobs
    /// then wait for the pools). The manifests planning fetched move into staging: the plan
    /// keeps none. The result holds each planned tag's outcome at the tag's place in
    /// `plan.tags` (`None` for a tag not copied): no tag name is kept twice.
    pub(crate) async fn stage_all(
        self: &Arc<Self>,
        plan: &mut Plan,
    ) -> Vec<Option<Result<Staged>>> {
        let staging = Staging {
            run: Arc::clone(self),
            dest_untagged: plan.prior.is_empty(),
        };
        // Owned (each copied tag's place, its digest, and the manifest planning fetched, moved
        // out of the plan), so that the stream below holds no closure over borrowed items.
        let work: Vec<(usize, Digest, Option<Manifest>)> = plan
            .tags
            .iter_mut()
            .enumerate()
            .filter_map(|(at, (_, action))| match action {
                Action::Copy(digest, fetched) => Some((at, digest.clone(), fetched.take())),
                _ => None,
            })
            .collect();
        let plan = &*plan;
        let copied: HashSet<&Digest> = plan
            .tags
            .iter()
            .filter_map(|(_, action)| match action {
                Action::Copy(digest, _) => Some(digest),
                _ => None,
            })
            .collect();
        let tasks = work.into_iter().map(|(at, digest, fetched)| {
            let tag = &plan.tags[at].0;
            let (staging, name) = (staging.clone(), tag.clone());
            let referrer = plan.referrer_tags.get(tag).map(|r| {
                let subject_copied = copied.contains(&r.subject);
                (r.clone(), subject_copied, plan.prior.get(tag).cloned())
            });
            // Each tag on its own task, so hashing of different blobs uses every core. The task
            // is spawned only when the stream below takes this tag up.
            let task = tokio::spawn(async move {
                staging
                    .run
                    .progress
                    .emit(ProgressEvent::TagStarted { tag: name.clone() });
                match referrer {
                    Some((referrer, subject_copied, prior)) => {
                        staging
                            .stage_referrer_tag(
                                &name,
                                &referrer,
                                subject_copied,
                                &digest,
                                fetched,
                                prior.as_ref(),
                            )
                            .await
                    }
                    None => staging.stage_top(&digest, fetched).await,
                }
            });
            task.map(move |joined| {
                let staged = joined.unwrap_or_else(|e| {
                    Err(Error::new(
                        ErrorKind::Internal,
                        format!("staging panicked: {e}"),
                    ))
                });
                (at, staged)
            })
        });
        let mut staged: Vec<Option<Result<Staged>>> = std::iter::repeat_with(|| None)
            .take(plan.tags.len())
            .collect();
        let mut done = futures::stream::iter(tasks).buffer_unordered(self.tags_in_flight);
        while let Some((at, result)) = done.next().await {
            staged[at] = Some(result);
        }
        staged
    }

    /// The source's tags, and the destination's tag names (checked by the caller only when it
    /// goes on to plan), listed at once. From the moment the destination's names are known,
    /// its digests are read and the source is asked about those of its tags the mirror
    /// selects, while the source is still listed ([`EarlyReads`]).
    pub(crate) async fn list_both_sides(
        self: &Arc<Self>,
    ) -> Result<(Vec<String>, Result<DestInventory>)> {
        let dest = async {
            let tags = plan::destination_listing(self).await?;
            let early = EarlyReads::ask(self, &tags);
            let run = Arc::clone(self);
            let heads = tokio::spawn(async move { plan::destination_heads(&run, &tags).await });
            Ok(DestInventory {
                heads: AbortOnDropHandle::new(heads),
                early,
            })
        };
        let (tags, dest) = tokio::join!(
            self.read_only_unit(self.source.list_tags(&self.src_repo)),
            dest
        );
        let tags = tags.map_err(|e| {
            e.context(format!("listing the tags of {}", self.config.source))
                .in_phase(Phase::List)
        })?;
        Ok((tags, dest.map_err(|e: Error| e.in_phase(Phase::List))))
    }

    /// The note of a run or preview whose patterns select none of the source's `count` tags.
    pub(crate) fn no_tags_matched(&self, count: usize) -> String {
        format!(
            "no tags matched (the source has {count} {}; patterns {:?})",
            if count == 1 { "tag" } else { "tags" },
            self.filter.patterns()
        )
    }

    /// Finish what a dead worker left: a pre-run record still in the store means a run stopped
    /// between recording and finishing. `all_or_nothing` puts the destination back as recorded;
    /// `failed_tags_only` lets this run proceed (its successful tags would stand anyway).
    async fn recover(&self, store: &dyn StateStore) -> Result<()> {
        let Some(record) = store.tag_record(&self.config.id).await? else {
            return Ok(());
        };
        if self.config.rollback == RollbackMode::AllOrNothing {
            publish::restore(self, &record).await.map_err(|e| {
                e.context("restoring the destination after an interrupted run")
                    .in_phase(Phase::Rollback)
            })?;
        }
        store.clear_tag_record(&self.config.id).await
    }
}

/// What a step that failed during an abort adds to the abort's message: its own error, or, when
/// it failed because of the abort (its error is the abort's reason, under the step's contexts),
/// only where it was, so the reason is not said twice.
fn after_abort(step: &Error) -> Option<String> {
    match step.abort_contexts() {
        Some([]) => None,
        Some(contexts) => Some(format!(" (while {})", contexts.join(": "))),
        None => Some(format!("; {step}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeout() -> Error {
        Error::new(
            ErrorKind::Timeout,
            "the sync took longer than its timeout of 500ms",
        )
    }

    #[test]
    fn a_step_failing_because_of_the_abort_does_not_repeat_its_reason() {
        let listing = timeout().into_abort().context("listing the tags of h/app");
        assert_eq!(
            after_abort(&listing).as_deref(),
            Some(" (while listing the tags of h/app)")
        );
        assert_eq!(after_abort(&timeout().into_abort()), None);
        let other = Error::new(ErrorKind::Network, "connection reset");
        assert_eq!(
            after_abort(&other).as_deref(),
            Some("; Network: connection reset")
        );
    }

    #[test]
    fn an_error_of_its_own_is_told_apart_by_data_not_by_its_words() {
        // A registry's own timeout that happens to read like the abort's reason is still the
        // step's own failure, said in full.
        let own = timeout().context("listing the tags of h/app");
        assert_eq!(
            after_abort(&own).as_deref(),
            Some(
                "; Timeout: listing the tags of h/app: the sync took longer than its timeout of 500ms"
            )
        );
        // A message rewritten since (scrubbed, or said with more) is no longer just the reason.
        let rewritten = timeout().into_abort().with_message("something else".into());
        assert_eq!(
            after_abort(&rewritten).as_deref(),
            Some("; Timeout: something else")
        );
    }
}
