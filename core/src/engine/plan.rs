//! Deciding what a run must do (SEMANTICS.md §3 steps 2–4): the destination's tags before the
//! run, and for each selected tag whether it is already current or must be copied. A tag the
//! destination has is compared by a HEAD of the source manifest, so a tag that is already
//! current costs neither a manifest GET nor any blob traffic.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio_util::task::AbortOnDropHandle;

use super::context::Run;
use super::platform;
use crate::config::PlatformIndexMode;
use crate::error::{Error, ErrorKind, Result, Side};
use crate::reference::Digest;
use crate::registry::{Manifest, ManifestHead};
use crate::state::TagRecord;

/// What to do with one selected tag.
#[derive(Debug)]
pub(crate) enum Action {
    /// The destination already points at this digest.
    Current(Digest),
    /// Copy the source manifest with this digest (its bytes, when already fetched).
    Copy(Digest, Option<Manifest>),
    /// The tag could not be planned.
    Failed(Error),
}

impl Action {
    /// The source digest the action mirrors.
    pub(crate) fn digest(&self) -> Option<&Digest> {
        match self {
            Action::Current(d) | Action::Copy(d, _) => Some(d),
            Action::Failed(_) => None,
        }
    }
}

/// The work of one run.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The destination's tags before the run changed anything.
    pub prior: TagRecord,
    /// Every selected tag in sorted order, with its action; referrer tags included.
    pub tags: Vec<(String, Action)>,
    /// The tags of `tags` that are there for their subject's sake (SEMANTICS.md §9).
    pub referrer_tags: BTreeMap<String, ReferrerTag>,
}

/// A planned tag that belongs to the image whose digest it names (SEMANTICS.md §9): a
/// signature, an SBOM, an attestation or a referrers index (see [`super::referrers`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReferrerTag {
    /// The digest the tag names.
    pub subject: Digest,
    /// The OCI referrers tag schema's index (`sha256-<hex>`), not a cosign tag.
    pub index: bool,
    /// Made from the source's referrers API answer, not a tag the source lists.
    pub from_api: bool,
}

/// The destination repository's tags and their digests. Any failure fails the run: without
/// this record nothing could be pruned or rolled back safely.
pub(crate) async fn destination_tags(run: &Run) -> Result<TagRecord> {
    let tags = destination_listing(run).await?;
    destination_heads(run, &tags).await
}

/// The destination repository's tag names.
pub(crate) async fn destination_listing(run: &Run) -> Result<Vec<String>> {
    run.read_only_unit(run.dest.list_tags(&run.dest_repo))
        .await
        .map_err(|e| {
            e.context(format!(
                "listing the destination's tags of {}",
                run.dest_repo
            ))
        })
}

/// The digests of the destination's `tags` (a tag deleted since it was listed is left out).
pub(crate) async fn destination_heads(run: &Run, tags: &[String]) -> Result<TagRecord> {
    let heads: Vec<_> = tags
        .iter()
        .map(|tag| async move {
            let head = run
                .dest_read(run.dest.head_manifest(&run.dest_repo, tag))
                .await;
            (tag, head)
        })
        .collect();
    let heads = bounded(run.max_reads, heads).await;
    let mut record = BTreeMap::new();
    for (tag, head) in heads {
        if let Some(head) = head.map_err(|e| e.context(format!("reading destination tag {tag}")))? {
            record.insert(tag.clone(), head.digest);
        }
    }
    Ok(record)
}

/// Await `work`, at most `max` at a time, and return the results in `work`'s order. Unlike
/// `join_all`, only `max` futures are under way at once: with 10 000 tags, each waiting for
/// a slot would hold its request's state meanwhile. The slots are taken in any order, so one
/// slow answer holds no others back.
pub(crate) async fn bounded<T>(max: usize, work: Vec<impl Future<Output = T>>) -> Vec<T> {
    let mut results: Vec<Option<T>> = std::iter::repeat_with(|| None).take(work.len()).collect();
    let mut waiting = work.into_iter().enumerate();
    let mut running = FuturesUnordered::new();
    loop {
        while running.len() < max.max(1) {
            let Some((i, work)) = waiting.next() else {
                break;
            };
            running.push(async move { (i, work.await) });
        }
        let Some((i, result)) = running.next().await else {
            break;
        };
        results[i] = Some(result);
    }
    results.into_iter().flatten().collect()
}

/// What the source says of one selected tag.
pub(crate) enum SourceRead {
    /// The manifest itself: the destination lacks the tag, so it is copied whatever its
    /// digest (fetched now instead of a HEAD now and a GET later: one round trip less).
    Fetched(Manifest),
    /// The manifest's digest and media type, to compare with the destination's.
    Head(ManifestHead),
    /// The tag cannot be planned.
    Failed(Action),
}

/// The source's answers about the tags the destination lists that the mirror selects, asked
/// from the moment the destination's tag names are known, while the source's own list is still
/// on its way: over a slow link that list costs a connection set-up and a round trip, which
/// the questions then no longer wait for. Each question is a task, stopped when dropped. Held:
/// the destination's selected tags, each with its question when asked early.
///
/// At most [`Run::max_reads`] tags are asked early (the first ones the destination lists): as
/// many as can be in flight to the source at once, the rest being asked after its list, in the
/// order they would have been. More would only be tasks waiting for a slot, which at 10 000
/// tags cost memory. (A 300-tag no-op over a 50 ms link: 0.66 s asked early against 0.74 s
/// asked after the list, 6 runs each, back to back.)
pub(crate) struct EarlyReads(HashMap<String, Option<AbortOnDropHandle<SourceRead>>>);

impl EarlyReads {
    /// Ask the source about the first [`Run::max_reads`] of the destination's `dest_tags` the
    /// filter selects (a HEAD: the destination has them).
    pub(crate) fn ask(run: &Arc<Run>, dest_tags: &[String]) -> EarlyReads {
        let selected = run.filter.select(dest_tags);
        let asked = selected.into_iter().enumerate().map(|(i, tag)| {
            let task = (i < run.max_reads).then(|| {
                let (run, name) = (Arc::clone(run), tag.clone());
                AbortOnDropHandle::new(tokio::spawn(
                    async move { read_source(&run, &name, true).await },
                ))
            });
            (tag, task)
        });
        EarlyReads(asked.collect())
    }

    /// What the source says of `tag`, which its list names: the early answer when it was asked
    /// early (never asked twice), else a HEAD now when the destination lists it, else its
    /// manifest, fetched now.
    /// What was asked of tags the source does not list is stopped when `self` is dropped.
    pub(crate) fn read<'a>(
        &mut self,
        run: &'a Run,
        tag: &'a str,
    ) -> impl Future<Output = SourceRead> + use<'a> {
        let early = self.0.remove(tag);
        async move {
            // Asked now only if not asked early: boxed, so that a tag answered early holds no
            // room for a question it does not ask.
            let early = match early {
                Some(Some(early)) => early,
                Some(None) => return Box::pin(read_source(run, tag, true)).await,
                None => return Box::pin(read_source(run, tag, false)).await,
            };
            match early.await {
                // Asked before the source's list was read, the tag may have been pushed in
                // between: only a HEAD after the listing tells it disappeared.
                Ok(SourceRead::Failed(Action::Failed(e))) if e.kind() == ErrorKind::NotFound => {
                    Box::pin(read_source(run, tag, true)).await
                }
                Ok(read) => read,
                Err(e) => SourceRead::Failed(Action::Failed(Error::new(
                    ErrorKind::Internal,
                    format!("reading source tag {tag}: {e}"),
                ))),
            }
        }
    }
}

/// What to do with `tag`, and whether its manifest is an index (as far as known), the
/// destination's tags being `prior`.
pub(crate) async fn plan_tag(run: &Run, tag: &str, prior: &TagRecord) -> (Action, bool) {
    let read = read_source(run, tag, prior.contains_key(tag)).await;
    decide(run, tag, read, prior).await
}

/// Read `tag` from the source: its manifest when the destination lacks the tag
/// (`dest_has` false), else its HEAD.
pub(crate) async fn read_source(run: &Run, tag: &str, dest_has: bool) -> SourceRead {
    let failed = |e: Error| {
        SourceRead::Failed(Action::Failed(
            e.context(format!("reading source tag {tag}")),
        ))
    };
    if !dest_has {
        return match run
            .source_read(run.source.get_manifest(&run.src_repo, tag))
            .await
        {
            Ok(manifest) => SourceRead::Fetched(manifest),
            Err(e) if e.kind() == ErrorKind::NotFound => SourceRead::Failed(disappeared(tag)),
            Err(e) => failed(e),
        };
    }
    match run
        .source_read(run.source.head_manifest(&run.src_repo, tag))
        .await
    {
        Ok(Some(head)) => SourceRead::Head(head),
        Ok(None) => SourceRead::Failed(disappeared(tag)),
        Err(e) => failed(e),
    }
}

/// What to do with `tag` given what the source said of it, `read`, and the destination's
/// tags, `prior`; and whether its manifest is an index (as far as known).
pub(crate) async fn decide(
    run: &Run,
    tag: &str,
    read: SourceRead,
    prior: &TagRecord,
) -> (Action, bool) {
    let head = match read {
        SourceRead::Fetched(manifest) => {
            let index = manifest.is_index();
            return (Action::Copy(manifest.digest.clone(), Some(manifest)), index);
        }
        SourceRead::Failed(action) => return (action, false),
        SourceRead::Head(head) => head,
    };
    let index = crate::registry::media_types::is_index(&head.media_type);
    let action = match prior.get(tag) {
        Some(current) if *current == head.digest => Action::Current(head.digest),
        Some(current) if rewritten_from(run, current, &head.digest).await => {
            Action::Current(current.clone())
        }
        _ => Action::Copy(head.digest, None),
    };
    (action, index)
}

fn disappeared(tag: &str) -> Action {
    Action::Failed(
        Error::new(
            ErrorKind::NotFound,
            format!("tag {tag} disappeared from the source after it was listed"),
        )
        .on_side(Side::Source),
    )
}

/// Whether the destination's `current` manifest is an index this engine rewrote from the
/// source's `source` digest for the same architectures (`platform_index = rewrite`), which
/// makes the tag current.
async fn rewritten_from(run: &Run, current: &Digest, source: &Digest) -> bool {
    if run.config.platform_index != PlatformIndexMode::Rewrite
        || run.config.architectures.is_empty()
    {
        return false;
    }
    let Ok(manifest) = run
        .dest_read(run.dest.get_manifest(&run.dest_repo, current.as_str()))
        .await
    else {
        return false;
    };
    platform::is_rewrite_of(&manifest, source, &run.config.architectures)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::bounded;

    #[tokio::test]
    async fn bounded_work_runs_at_most_max_at_once_and_answers_in_order() {
        let (running, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let work: Vec<_> = (0..20u64)
            .map(|i| {
                let (running, most) = (&running, &most);
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    // Later ones finish first.
                    tokio::time::sleep(Duration::from_millis(20 - i)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    i
                }
            })
            .collect();
        assert_eq!(bounded(4, work).await, (0..20).collect::<Vec<_>>());
        assert_eq!(most.load(Ordering::SeqCst), 4);
    }
}
