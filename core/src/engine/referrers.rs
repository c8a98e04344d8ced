//! Referrers (SEMANTICS.md §9): the signatures, SBOMs and attestations that travel with the
//! images a mirror copies, whatever the tag patterns select.
//!
//! A referrer is found by a tag that names its subject's digest: cosign's
//! `sha256-<hex>.sig` / `.att` / `.sbom`, and the OCI 1.1 referrers tag schema's `sha256-<hex>`,
//! an index of the manifests whose `subject` is that digest (what a registry without the
//! referrers API, such as CNCF distribution 2.8, holds). Such a *referrer tag* belongs to the
//! image it names: it is planned with the selected tags when its subject is mirrored (an index's
//! children and other referrers included, so a signature on an SBOM follows too), copied
//! byte-identical, kept while its subject stays mirrored and pruned with it.
//!
//! The source's tag listing is the change signal: a referrer tag costs one `HEAD` per run, like
//! any tag, and nothing is read when no tag names a mirrored digest. A referrers index at the
//! destination is merged with what it already lists, so a referrer pushed there by someone else
//! is never dropped.
//!
//! A source with the OCI 1.1 referrers API (`GET /v2/<name>/referrers/<digest>`) may keep no
//! such tags: after one probe per run says it has the API, each mirrored digest that no listed
//! tag covers is asked for its referrers. What it lists becomes the `sha256-<hex>` index at a
//! destination without the API, or is pushed by digest (with its `subject`) to a destination
//! with it, which indexes it itself.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::future::join_all;
use serde_json::Value;

use super::context::{Run, Staged, Staging};
use super::plan::{self, Action, Plan, ReferrerTag};
use super::platform::platform_selected;
use super::walk::Walk;
use crate::config::ReferrersPolicy;
use crate::error::{Error, ErrorKind, Result};
use crate::reference::Digest;
use crate::registry::Manifest;
use crate::registry::manifest::{ManifestKind, Reference};

/// Referrers of referrers are followed this many levels deep (an image's SBOM's signature is
/// two levels down).
const MAX_DEPTH: usize = 4;
/// At most this many referrer tags join one run; the rest wait for the next run.
const MAX_REFERRER_TAGS: usize = 1000;

/// The suffixes of cosign's tags, after `sha256-<hex>`.
const COSIGN_SUFFIXES: [&str; 3] = ["sig", "att", "sbom"];

/// Whether `tag` names a subject digest, and how.
pub(crate) fn referrer_tag(tag: &str) -> Option<ReferrerTag> {
    let (name, index) = match tag.rsplit_once('.') {
        Some((name, suffix)) if COSIGN_SUFFIXES.contains(&suffix) => (name, false),
        Some(_) => return None,
        None => (tag, true),
    };
    let (algorithm, hex) = name.split_once('-')?;
    let subject = Digest::parse(&format!("{algorithm}:{hex}")).ok()?;
    Some(ReferrerTag {
        subject,
        index,
        from_api: false,
    })
}

/// The manifests `manifest` points at.
fn links_of(manifest: &Manifest) -> Vec<Reference> {
    match manifest.kind() {
        Ok(ManifestKind::Index { manifests }) => manifests,
        _ => Vec::new(),
    }
}

/// Which side's copy of a manifest to read when looking inside it.
#[derive(Debug, Clone, Copy)]
enum Side {
    Source,
    Destination,
}

impl Run {
    /// The manifests `digest` points at, from the cache or else read from `side` (and from
    /// the destination when the source lacks it: a rewritten index). A manifest that cannot be
    /// read links nowhere: the worst outcome is a referrer tag left unmatched.
    async fn links(&self, side: Side, digest: &Digest) -> Arc<Vec<Reference>> {
        if let Some(links) = self.links.get(digest) {
            return links;
        }
        let from_dest = || self.dest_read(self.dest.get_manifest(&self.dest_repo, digest.as_str()));
        let read = match side {
            Side::Source => match self
                .source_read(self.source.get_manifest(&self.src_repo, digest.as_str()))
                .await
            {
                Err(e) if e.kind() == ErrorKind::NotFound => from_dest().await,
                read => read,
            },
            Side::Destination => from_dest().await,
        };
        match read {
            Ok(manifest) if &manifest.digest == digest => {
                let links = Arc::new(links_of(&manifest));
                self.links.note(digest, Arc::clone(&links));
                links
            }
            _ => Arc::default(),
        }
    }

    /// Read the links of every manifest in `digests` (at once), adding those the architecture
    /// filter selects to `mirrored`; returns the digests newly added.
    async fn expand(
        &self,
        side: Side,
        digests: Vec<Digest>,
        mirrored: &mut HashSet<Digest>,
    ) -> Vec<Digest> {
        let all = join_all(digests.iter().map(|d| self.links(side, d))).await;
        all.iter()
            .flat_map(|links| links.iter())
            .filter(|r| platform_selected(&self.config.architectures, r))
            .filter(|r| mirrored.insert(r.digest.clone()))
            .map(|r| r.digest.clone())
            .collect()
    }
}

/// Add to `plan` the source's referrer tags whose subject the run mirrors: the selected tags'
/// manifests, their children, and (up to [`MAX_DEPTH`] levels) the referrers found so far.
/// `indexes` are the planned digests known to be indexes, whose children are read only when a
/// referrer tag is left unmatched without them.
pub(crate) async fn plan_referrer_tags(
    run: &Arc<Run>,
    source_tags: &[String],
    plan: &mut Plan,
    indexes: HashSet<Digest>,
) {
    if !run.config.referrers.copies_any() {
        return;
    }
    let planned: HashSet<&str> = plan.tags.iter().map(|(t, _)| t.as_str()).collect();
    let mut candidates: BTreeMap<String, ReferrerTag> = source_tags
        .iter()
        .filter(|t| !planned.contains(t.as_str()))
        .filter_map(|t| referrer_tag(t).map(|r| (t.clone(), r)))
        .collect();
    let mut mirrored: HashSet<Digest> = plan
        .tags
        .iter()
        .filter_map(|(_, a)| a.digest().cloned())
        .collect();
    // Manifests whose insides may name more subjects, not yet looked into.
    let mut unread: Vec<Digest> = indexes.iter().cloned().collect();
    for _ in 0..=2 * MAX_DEPTH {
        if candidates.is_empty() {
            break;
        }
        let room = MAX_REFERRER_TAGS.saturating_sub(plan.referrer_tags.len());
        let matched: Vec<(String, ReferrerTag)> = candidates
            .iter()
            .filter(|(_, r)| mirrored.contains(&r.subject))
            .take(room)
            .map(|(t, r)| (t.clone(), r.clone()))
            .collect();
        if matched.is_empty() {
            if candidates.is_empty() || unread.is_empty() || room == 0 {
                break;
            }
            let digests = std::mem::take(&mut unread);
            unread = run.expand(Side::Source, digests, &mut mirrored).await;
            continue;
        }
        let prior = &plan.prior;
        let actions = join_all(matched.iter().map(|(tag, referrer)| async move {
            let (action, _) = plan::plan_tag(run, tag, prior).await;
            match (&action, prior.get(tag)) {
                // A destination index that lists more than the source's (merged) is current
                // when it lists all of the source's.
                (Action::Copy(d, _), Some(prior))
                    if referrer.index && run.lists_all(d, prior).await =>
                {
                    Action::Current(prior.clone())
                }
                _ => action,
            }
        }))
        .await;
        for ((tag, referrer), action) in matched.into_iter().zip(actions) {
            candidates.remove(&tag);
            if let Some(d) = action.digest().cloned() {
                // A referrer is a subject too (a signature on an SBOM); a referrers index
                // lists more of them.
                if mirrored.insert(d.clone()) && referrer.index {
                    unread.push(d.clone());
                }
                if let Action::Copy(_, Some(m)) = &action {
                    run.links.note(&d, Arc::new(links_of(m)));
                }
            }
            plan.referrer_tags.insert(tag.clone(), referrer);
            plan.tags.push((tag, action));
        }
    }
    let listed: HashSet<&str> = source_tags.iter().map(String::as_str).collect();
    plan_api_referrers(run, plan, &listed, indexes).await;
    if plan.referrer_tags.len() >= MAX_REFERRER_TAGS {
        tracing::warn!(
            mirror = %run.config.id,
            "over {MAX_REFERRER_TAGS} referrer tags: the rest are copied by later runs"
        );
    }
    plan.tags.sort_by(|a, b| a.0.cmp(&b.0));
}

/// Ask a source with the referrers API for the referrers of every mirrored digest no listed
/// `sha256-<hex>` tag covers (the selected tags' manifests, indexes' children the architecture
/// filter keeps, referrers found, up to [`MAX_DEPTH`] levels), and plan what it lists as that
/// digest's referrers index. One probe per run finds a source without the API.
async fn plan_api_referrers(
    run: &Arc<Run>,
    plan: &mut Plan,
    listed: &HashSet<&str>,
    indexes: HashSet<Digest>,
) {
    let mut seen: HashSet<Digest> = HashSet::new();
    let uncovered = |d: &Digest| !listed.contains(index_tag(d).as_str());
    let mut queue: Vec<Digest> = plan
        .tags
        .iter()
        .filter_map(|(_, a)| a.digest().cloned())
        .filter(|d| seen.insert(d.clone()))
        .collect();
    let Some(first) = queue.first().cloned() else {
        return;
    };
    let source = run.config.source.to_string();
    if run.links.lacks_api(&source) {
        return;
    }
    let filter = match &run.config.referrers {
        ReferrersPolicy::Types(types) if types.len() == 1 => Some(types[0].as_str()),
        _ => None,
    };
    match run
        .source_read(run.source.referrers(&run.src_repo, &first, filter))
        .await
    {
        Ok(Some(_)) => {}
        // No API: the tags are all there is.
        Ok(None) => {
            run.links.note_lacks_api(source);
            return;
        }
        Err(e) => {
            tracing::warn!(mirror = %run.config.id, "the source's referrers API failed: {e}");
            return;
        }
    }
    let children = run
        .expand(Side::Source, indexes.into_iter().collect(), &mut seen)
        .await;
    queue.extend(children);
    for _ in 0..=MAX_DEPTH {
        queue.retain(|d| uncovered(d));
        let room = MAX_REFERRER_TAGS.saturating_sub(plan.referrer_tags.len());
        queue.truncate(room);
        if queue.is_empty() {
            break;
        }
        let answers = join_all(queue.iter().map(|subject| async move {
            let answer = run
                .source_read(run.source.referrers(&run.src_repo, subject, filter))
                .await;
            (subject, answer)
        }))
        .await;
        let mut next = Vec::new();
        for (subject, answer) in answers {
            let tag = index_tag(subject);
            let action = match answer {
                Ok(Some(index)) => {
                    let Ok(entries) = descriptors(&index) else {
                        continue;
                    };
                    let allowed: Vec<Digest> = entries
                        .iter()
                        .filter(|d| run.config.referrers.allows(artifact_type_of(d).into_iter()))
                        .filter_map(|d| descriptor_digest(d).and_then(|d| Digest::parse(d).ok()))
                        .collect();
                    if allowed.is_empty() {
                        continue;
                    }
                    next.extend(
                        allowed
                            .iter()
                            .filter(|d| seen.insert((*d).clone()))
                            .cloned(),
                    );
                    match run
                        .api_referrers_action(index, &allowed, plan.prior.get(&tag))
                        .await
                    {
                        Some(action) => action,
                        None => continue,
                    }
                }
                Ok(None) => continue,
                Err(e) => Action::Failed(e.context(format!("listing the referrers of {subject}"))),
            };
            plan.referrer_tags.insert(
                tag.clone(),
                ReferrerTag {
                    subject: subject.clone(),
                    index: true,
                    from_api: true,
                },
            );
            plan.tags.push((tag, action));
        }
        queue = next;
    }
}

/// The referrers tag schema's tag for `subject`.
fn index_tag(subject: &Digest) -> String {
    format!("{}-{}", subject.algorithm(), subject.hex())
}

/// A referrers index descriptor's `artifactType`.
fn artifact_type_of(descriptor: &Value) -> Option<&str> {
    descriptor.get("artifactType").and_then(Value::as_str)
}

/// A referrers index descriptor's `digest`, as written.
fn descriptor_digest(descriptor: &Value) -> Option<&str> {
    descriptor.get("digest").and_then(Value::as_str)
}

impl Run {
    /// What to do with the referrers `allowed` of the source's referrers API answer `index`
    /// (the destination's referrers index being `prior`): nothing when the destination holds
    /// them all already.
    async fn api_referrers_action(
        &self,
        index: Manifest,
        allowed: &[Digest],
        prior: Option<&Digest>,
    ) -> Option<Action> {
        if self.dest_has_referrers_api(&index).await {
            let held = join_all(allowed.iter().map(|d| self.dest_holds(d))).await;
            return if held.into_iter().all(|h| h) {
                None
            } else {
                Some(Action::Copy(index.digest.clone(), Some(index)))
            };
        }
        match prior {
            Some(prior) => {
                let ours = self.links(Side::Destination, prior).await;
                if allowed.iter().all(|d| ours.iter().any(|o| &o.digest == d)) {
                    Some(Action::Current(prior.clone()))
                } else {
                    Some(Action::Copy(index.digest.clone(), Some(index)))
                }
            }
            None => Some(Action::Copy(index.digest.clone(), Some(index))),
        }
    }

    /// Whether the destination has the referrers API (asked once per process and repository,
    /// about `index`'s digest: any digest serves).
    async fn dest_has_referrers_api(&self, index: &Manifest) -> bool {
        *self
            .dest_referrers_api
            .get_or_init(|| async {
                if let Some(known) = self.links.dest_api(&self.dest_repo) {
                    return known;
                }
                let answer = self
                    .dest_read(self.dest.referrers(&self.dest_repo, &index.digest, None))
                    .await;
                let has = matches!(answer, Ok(Some(_)));
                if answer.is_ok() {
                    self.links.note_dest_api(&self.dest_repo, has);
                }
                has
            })
            .await
    }

    /// Whether the destination repository holds manifest `digest` (remembered once seen).
    async fn dest_holds(&self, digest: &Digest) -> bool {
        if self.links.is_present(&self.dest_repo, digest) {
            return true;
        }
        let held = matches!(
            self.dest_read(self.dest.head_manifest(&self.dest_repo, digest.as_str()))
                .await,
            Ok(Some(_))
        );
        if held {
            self.links.note_present(&self.dest_repo, digest);
        }
        held
    }

    /// Whether the destination's referrers index `ours` lists every referrer of the source's
    /// index `theirs` (only with every referrer copied: a type filter compares entry by entry
    /// when staging).
    async fn lists_all(&self, theirs: &Digest, ours: &Digest) -> bool {
        if self.config.referrers != ReferrersPolicy::All {
            return false;
        }
        let (theirs, ours) = tokio::join!(
            self.links(Side::Source, theirs),
            self.links(Side::Destination, ours)
        );
        !theirs.is_empty()
            && theirs
                .iter()
                .all(|t| ours.iter().any(|o| o.digest == t.digest))
    }
}

/// Of the unselected destination tags in `prune`, keep the referrer tags whose subject stays
/// mirrored: one of `staying` (the digests the destination's kept tags point at after the
/// run), their children, or a referrer kept this way. With referrers turned off, none is kept.
pub(crate) async fn keep_referrer_tags(
    run: &Run,
    staying: Vec<Digest>,
    prune: &mut Vec<(String, Digest)>,
) {
    if !run.config.referrers.copies_any() || !prune.iter().any(|(t, _)| referrer_tag(t).is_some()) {
        return;
    }
    let mut mirrored: HashSet<Digest> = staying.iter().cloned().collect();
    let mut unread = staying;
    let mut kept: HashSet<String> = HashSet::new();
    for _ in 0..=2 * MAX_DEPTH {
        let matched: Vec<(String, Digest)> = prune
            .iter()
            .filter(|(t, _)| !kept.contains(t))
            .filter(|(t, _)| referrer_tag(t).is_some_and(|r| mirrored.contains(&r.subject)))
            .cloned()
            .collect();
        if matched.is_empty() {
            let unmatched = prune
                .iter()
                .any(|(t, _)| !kept.contains(t) && referrer_tag(t).is_some());
            if !unmatched || unread.is_empty() {
                break;
            }
            let digests = std::mem::take(&mut unread);
            unread = run.expand(Side::Destination, digests, &mut mirrored).await;
            continue;
        }
        for (tag, digest) in matched {
            kept.insert(tag);
            if mirrored.insert(digest.clone()) {
                unread.push(digest);
            }
        }
    }
    prune.retain(|(t, _)| !kept.contains(t));
}

impl Staging {
    /// Stage referrer tag `tag` (source manifest `digest`, already fetched or not), whose
    /// subject `subject_copied` says this run copies. A referrer of a subject that is skipped,
    /// fails, or is rewritten (`platform_index = rewrite`: the signature names a digest the
    /// destination never holds) is not copied.
    pub(crate) async fn stage_referrer_tag(
        &self,
        tag: &str,
        referrer: &ReferrerTag,
        subject_copied: bool,
        digest: &Digest,
        fetched: Option<Manifest>,
        prior: Option<&Digest>,
    ) -> Result<Staged> {
        let run = &self.run;
        let subject = &referrer.subject;
        if subject_copied {
            match self.stage_top(subject, None).await {
                Err(e) => {
                    return Err(Error::new(
                        e.kind(),
                        format!("its subject {subject} was not copied: {}", e.message()),
                    ));
                }
                Ok(Staged::Skipped { reason }) => {
                    return Ok(Staged::Skipped {
                        reason: format!("its subject {subject} is skipped: {reason}"),
                    });
                }
                Ok(Staged::Ready(manifest)) if manifest.digest != *subject => {
                    run.stats
                        .referrers_of_rewritten
                        .fetch_add(1, Ordering::Relaxed);
                    return Ok(Staged::Skipped {
                        reason: format!(
                            "its subject {subject} was rewritten to {} (platform_index = rewrite), \
                             which the referrer does not name",
                            manifest.digest
                        ),
                    });
                }
                Ok(Staged::Ready(_) | Staged::Untagged) => {}
            }
        }
        let manifest = match fetched {
            Some(m) => m,
            None => run.fetch_manifest(digest).await?,
        };
        match manifest.kind()? {
            ManifestKind::Index { manifests } if referrer.index => {
                self.stage_referrers_index(tag, referrer, manifest, &manifests, prior)
                    .await
            }
            kind => {
                if !run
                    .config
                    .referrers
                    .allows(artifact_types(&manifest, &kind).iter().map(String::as_str))
                {
                    return Ok(Staged::Skipped {
                        reason: format!(
                            "its artifact type is not among the mirror's referrers ({})",
                            run.config.referrers
                        ),
                    });
                }
                let staged = self.stage_top(digest, Some(manifest)).await?;
                if matches!(staged, Staged::Ready(_)) {
                    run.stats.referrers_copied.fetch_add(1, Ordering::Relaxed);
                }
                Ok(staged)
            }
        }
    }

    /// Stage a referrers index (`sha256-<hex>` tag): copy each listed referrer the mirror's
    /// policy allows, and merge them into what the destination's tag already lists.
    async fn stage_referrers_index(
        &self,
        tag: &str,
        referrer: &ReferrerTag,
        source: Manifest,
        entries: &[Reference],
        prior: Option<&Digest>,
    ) -> Result<Staged> {
        let run = &self.run;
        let source_digest = source.digest.clone();
        let listed = descriptors(&source)?;
        let allowed: Vec<&Value> = listed
            .iter()
            .filter(|d| run.config.referrers.allows(artifact_type_of(d).into_iter()))
            .collect();
        let existing = match prior {
            Some(prior) => Some(
                run.dest_read(run.dest.get_manifest(&run.dest_repo, prior.as_str()))
                    .await
                    .map_err(|e| e.context(format!("reading the destination's {tag}")))?,
            ),
            None => None,
        };
        let present: HashSet<String> = match &existing {
            Some(m) => descriptors(m)?
                .iter()
                .filter_map(|d| descriptor_digest(d).map(str::to_owned))
                .collect(),
            None => HashSet::new(),
        };
        let copy: Vec<&Reference> = entries
            .iter()
            .filter(|e| {
                allowed
                    .iter()
                    .any(|d| descriptor_digest(d) == Some(e.digest.as_str()))
            })
            .collect();
        // Bounded as an index's children are (count and nesting).
        let walk = Walk::new();
        walk.enter(1, copy.len(), &source_digest)?;
        let heights = join_all(copy.iter().map(|e| self.stage_child(e, &walk, 1))).await;
        let heights = copy
            .iter()
            .zip(heights)
            .map(|(entry, h)| h.map_err(|e| e.context(format!("referrer {}", entry.digest))))
            .collect();
        walk.check_height(1, heights, &source_digest)?;
        let copied = copy
            .iter()
            .filter(|e| !present.contains(e.digest.as_str()))
            .count();
        run.stats
            .referrers_copied
            .fetch_add(copied as u64, Ordering::Relaxed);
        let added: Vec<Value> = allowed
            .into_iter()
            .filter(|d| descriptor_digest(d).is_some_and(|d| !present.contains(d)))
            .cloned()
            .collect();
        if referrer.from_api && run.dest_referrers_api.get() == Some(&true) {
            // The destination indexes them by their `subject`: no tag to keep.
            for entry in &copy {
                run.links.note_present(&run.dest_repo, &entry.digest);
            }
            return Ok(Staged::Untagged);
        }
        let manifest = match existing {
            // Everything the source lists is there already: leave the destination's as it is.
            Some(existing) if added.is_empty() => existing,
            Some(existing) => with_entries(&existing, added, true)?,
            None if added.len() == listed.len() => source,
            None => with_entries(&source, added, false)?,
        };
        // Known, the next run compares against it without reading it back.
        run.links
            .note(&manifest.digest, Arc::new(links_of(&manifest)));
        Ok(Staged::Ready(Arc::new(manifest)))
    }
}

/// An index's `manifests` descriptors, as JSON (to keep every field a referrer carries).
fn descriptors(index: &Manifest) -> Result<Vec<Value>> {
    let value: Value = serde_json::from_slice(&index.bytes).map_err(|e| {
        Error::new(
            ErrorKind::InvalidManifest,
            format!("referrers index {} is not JSON: {e}", index.digest),
        )
    })?;
    Ok(match value.get("manifests") {
        Some(Value::Array(entries)) => entries.clone(),
        _ => Vec::new(),
    })
}

/// `index` with its entries extended by `entries` (`append`) or replaced by them.
fn with_entries(index: &Manifest, entries: Vec<Value>, append: bool) -> Result<Manifest> {
    let invalid = |why: String| {
        Error::new(
            ErrorKind::InvalidManifest,
            format!("referrers index {} cannot be merged: {why}", index.digest),
        )
    };
    let mut value: Value =
        serde_json::from_slice(&index.bytes).map_err(|e| invalid(e.to_string()))?;
    let object = value
        .as_object_mut()
        .ok_or_else(|| invalid("not a JSON object".into()))?;
    let list = object
        .entry("manifests")
        .or_insert_with(|| Value::Array(Vec::new()));
    match list {
        Value::Array(list) if append => list.extend(entries),
        list => *list = Value::Array(entries),
    }
    let bytes = serde_json::to_vec(&value).map_err(|e| invalid(e.to_string()))?;
    Manifest::from_bytes(bytes, &index.media_type)
}

/// The artifact types a referrer manifest counts as: its `artifactType`, else its config's
/// media type; and its layers' media types (a cosign signature's config is an image config,
/// its layer says `application/vnd.dev.cosign.simplesigning.v1+json`).
fn artifact_types(manifest: &Manifest, kind: &ManifestKind) -> Vec<String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Typed {
        artifact_type: Option<String>,
    }
    let declared = serde_json::from_slice::<Typed>(&manifest.bytes)
        .ok()
        .and_then(|t| t.artifact_type);
    let mut types = Vec::new();
    match kind {
        ManifestKind::Image { config, layers } => {
            types.push(declared.unwrap_or_else(|| config.media_type.clone()));
            types.extend(layers.iter().map(|l| l.media_type.clone()));
        }
        ManifestKind::Index { .. } => types.extend(declared),
    }
    types
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn referrer_tags_name_their_subject() {
        let subject = Digest::parse(&format!("sha256:{HEX}")).unwrap();
        for (tag, index) in [
            (format!("sha256-{HEX}"), true),
            (format!("sha256-{HEX}.sig"), false),
            (format!("sha256-{HEX}.att"), false),
            (format!("sha256-{HEX}.sbom"), false),
        ] {
            assert_eq!(
                referrer_tag(&tag),
                Some(ReferrerTag {
                    subject: subject.clone(),
                    index,
                    from_api: false,
                }),
                "{tag}"
            );
        }
        for tag in [
            format!("sha256-{HEX}.foo"),
            format!("sha512-{HEX}"),
            format!("sha256-{}", &HEX[1..]),
            format!("sha256-{}", HEX.to_uppercase()),
            "latest".to_owned(),
            "sha256".to_owned(),
        ] {
            assert_eq!(referrer_tag(&tag), None, "{tag}");
        }
    }

    fn index(entries: &[&str]) -> Manifest {
        let manifests: Vec<Value> = entries
            .iter()
            .map(|d| {
                serde_json::json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": d, "size": 1, "artifactType": "application/example"
                })
            })
            .collect();
        let bytes = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        }))
        .unwrap();
        Manifest::from_bytes(bytes, "").unwrap()
    }

    #[test]
    fn merging_keeps_what_the_index_listed() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let theirs = index(&[&a]);
        let ours = index(&[&b]);
        let merged = with_entries(&theirs, descriptors(&ours).unwrap(), true).unwrap();
        let digests = |m: &Manifest| -> Vec<String> {
            links_of(m)
                .into_iter()
                .map(|r| r.digest.to_string())
                .collect()
        };
        assert_eq!(digests(&merged), [a.clone(), b.clone()]);
        let replaced = with_entries(&theirs, descriptors(&ours).unwrap(), false).unwrap();
        assert_eq!(digests(&replaced), [b]);
    }
}
