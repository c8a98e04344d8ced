//! Staging (SEMANTICS.md §3 step 4, §4): copying each tag's blobs and child manifests into the
//! destination by digest, before any tag moves.
//!
//! All tags are staged at once, sharing the run's one bounded pool. Each manifest is handled
//! at most once per run, however many tags share it, and so is each blob (`blobs.rs`). The
//! manifests are walked as a preview walks them (`walk.rs`).

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::{BoxFuture, join_all};

use super::context::{Run, Staged, Staging, cell};
use super::platform;
use super::walk::{Child, Top, Walk};
use crate::config::{PlatformIndexMode, RollbackMode};
use crate::error::{Detail, ErrorKind, Result};
use crate::reference::Digest;
use crate::registry::Manifest;
use crate::registry::manifest::Reference;

impl Staging {
    /// Stage the manifest `digest` a tag points at (once per run, whatever the number of tags).
    pub(crate) async fn stage_top(
        &self,
        digest: &Digest,
        fetched: Option<Manifest>,
    ) -> Result<Staged> {
        let cell = cell(&self.run.tops, digest);
        let staged = cell
            .get_or_init(|| async {
                self.stage_manifest(digest, fetched)
                    .await
                    .map_err(Into::into)
            })
            .await;
        staged.clone().map_err(Into::into)
    }

    async fn stage_manifest(&self, digest: &Digest, fetched: Option<Manifest>) -> Result<Staged> {
        let run = &self.run;
        let ready = |manifest: Manifest| Staged::Ready(Arc::new(manifest));
        let walk = Walk::new();
        let (manifest, chosen, entries) = match run.open_top(digest, fetched, &walk).await? {
            Top::Excluded(reason) => return Ok(Staged::Skipped { reason }),
            Top::Image {
                manifest,
                config,
                layers,
                preloaded,
            } => {
                self.stage_image_content(&config, &layers, preloaded)
                    .await?;
                run.stage_top_manifest(&manifest).await?;
                return Ok(ready(manifest));
            }
            Top::Index {
                manifest,
                chosen,
                entries,
            } => (manifest, chosen, entries),
        };
        self.stage_children(&chosen, &walk, 1, digest).await?;
        if chosen.len() == entries {
            run.stage_top_manifest(&manifest).await?;
            return Ok(ready(manifest));
        }
        // A sparse index is always staged: whether the destination accepts it must be known
        // before any tag moves.
        let Err(e) = run.push_by_digest(&manifest).await else {
            return Ok(ready(manifest));
        };
        // Only a refusal of the content says the index must be rewritten: an outage or a
        // missing permission is the tag's failure, and rewriting on it would publish another
        // digest than the source's for no reason.
        if e.kind() == ErrorKind::Cancelled
            || run.is_aborted()
            || e.kind().is_temporary()
            || matches!(e.kind(), ErrorKind::Unauthorized | ErrorKind::Forbidden)
        {
            return Err(e);
        }
        if run.config.platform_index != PlatformIndexMode::Rewrite {
            let message = format!(
                "the destination refused the sparse index {digest} ({} of {entries} platforms copied): {}; \
                 set platform_index = rewrite to push an index of the selected platforms instead",
                chosen.len(),
                e.message()
            );
            return Err(e.with_message(message).with_detail(Detail::SparseIndex));
        }
        let architectures = &run.config.architectures;
        let rewritten = platform::rewrite_index(&manifest, &chosen, architectures)?;
        run.push_by_digest(&rewritten).await.map_err(|e2| {
            e2.context(format!(
                "the destination refused the sparse index ({e}) and the rewritten index"
            ))
        })?;
        Ok(ready(rewritten))
    }

    /// Stage `entries`, the children of index `index` at nesting `level`; returns the index's
    /// nesting height.
    pub(crate) async fn stage_children(
        &self,
        entries: &[Reference],
        walk: &Walk,
        level: usize,
        index: &Digest,
    ) -> Result<usize> {
        let heights = join_all(entries.iter().map(|c| self.stage_child(c, walk, level))).await;
        walk.check_height(level, heights, index)
    }

    /// A child manifest of an index at nesting `level`, staged by digest once per run. Returns
    /// the index nesting below the child (0 for an image).
    pub(crate) fn stage_child<'a>(
        &'a self,
        child: &'a Reference,
        walk: &'a Walk,
        level: usize,
    ) -> BoxFuture<'a, Result<usize>> {
        async move {
            let cell = cell(&self.run.children, &(child.digest.clone(), child.size));
            let done = cell
                .get_or_init(|| async {
                    self.stage_child_once(child, walk, level)
                        .await
                        .map_err(Into::into)
                })
                .await;
            done.clone().map_err(Into::into)
        }
        .boxed()
    }

    async fn stage_child_once(
        &self,
        child: &Reference,
        walk: &Walk,
        level: usize,
    ) -> Result<usize> {
        let (manifest, height, held) = match self.run.open_child(child, walk, level).await? {
            Child::Held => return Ok(0),
            Child::Image {
                manifest,
                config,
                layers,
                held,
            } => {
                self.stage_image_content(&config, &layers, None).await?;
                (manifest, 0, held)
            }
            Child::Index {
                manifest,
                entries,
                held,
            } => {
                let height = self
                    .stage_children(&entries, walk, level + 1, &child.digest)
                    .await?;
                (manifest, height, held)
            }
        };
        if !held {
            self.run.push_manifest_digest(&manifest).await?;
        }
        Ok(height)
    }

    async fn stage_image_content(
        &self,
        config: &Reference,
        layers: &[Reference],
        preloaded_config: Option<Bytes>,
    ) -> Result<()> {
        let config = self.copy_blob(config, preloaded_config);
        let layers = layers.iter().map(|l| self.copy_blob(l, None));
        all_ok(std::iter::once(config).chain(layers)).await
    }
}

impl Run {
    /// With `all_or_nothing`, store a tag's manifest untagged before publishing, so that a
    /// destination refusing it fails the run before any tag moves (nothing to undo). Otherwise
    /// publishing it under the tag is the first push (one round trip less per tag).
    async fn stage_top_manifest(&self, manifest: &Manifest) -> Result<()> {
        if self.config.rollback == RollbackMode::AllOrNothing {
            self.push_by_digest(manifest).await
        } else {
            Ok(())
        }
    }

    /// Store `manifest` untagged, unless the destination already has it.
    async fn push_by_digest(&self, manifest: &Manifest) -> Result<()> {
        let present = self
            .dest_read(
                self.dest
                    .head_manifest(&self.dest_repo, manifest.digest.as_str()),
            )
            .await?;
        if present.is_some() {
            return Ok(());
        }
        self.push_manifest_digest(manifest).await
    }

    async fn push_manifest_digest(&self, manifest: &Manifest) -> Result<()> {
        self.unit(
            self.dest
                .push_manifest(&self.dest_repo, manifest.digest.as_str(), manifest),
        )
        .await
        .map(drop)
    }
}

/// Wait for every one of `work`, then fail with the first error. Unlike `try_join_all`, no
/// sibling is dropped half-way: it may be the one initializing a once-per-run cell other tags
/// wait on, and dropping it would make a waiter start the same copy again while the first one
/// runs on, detached.
async fn all_ok<F: Future<Output = Result<()>>>(work: impl IntoIterator<Item = F>) -> Result<()> {
    join_all(work).await.into_iter().collect()
}
