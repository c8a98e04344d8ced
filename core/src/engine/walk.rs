//! A tag's manifests as staging and preview both walk them (SEMANTICS.md §3 step 4, §10):
//! read from the source and verified (digest and declared size), bounded in depth and count
//! ([`Walk`]), the architecture filter applied; a child manifest the destination holds already
//! is not looked into, since everything it references is there too.

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;

use super::context::Run;
use super::platform::{self, PlatformFit};
use crate::error::{Detail, Error, ErrorKind, Result, Side};
use crate::reference::Digest;
use crate::registry::Manifest;
use crate::registry::manifest::{
    MAX_INDEX_DEPTH, MAX_MANIFESTS_PER_TAG, ManifestKind, Reference, media_types,
};

/// How far one tag's manifests may reach (SEMANTICS.md §10): indexes nest at most
/// [`MAX_INDEX_DEPTH`] levels and the tag reaches at most [`MAX_MANIFESTS_PER_TAG`] child
/// manifests, so a registry serving endless nesting or fan-out fails that tag instead of
/// keeping the run busy.
#[derive(Debug)]
pub(crate) struct Walk {
    left: AtomicUsize,
}

impl Walk {
    pub(crate) fn new() -> Self {
        Walk {
            left: AtomicUsize::new(MAX_MANIFESTS_PER_TAG),
        }
    }

    /// Account for `children` entries of `index`, an index at nesting `level` (1 for a tag's
    /// own index).
    pub(crate) fn enter(&self, level: usize, children: usize, index: &Digest) -> Result<()> {
        if level > MAX_INDEX_DEPTH {
            return Err(too_deep(index, level));
        }
        let taken = self
            .left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(children)
            });
        if taken.is_err() {
            return Err(Error::new(
                ErrorKind::InvalidManifest,
                format!(
                    "index {index} brings the tag over the limit of {MAX_MANIFESTS_PER_TAG} child manifests"
                ),
            ));
        }
        Ok(())
    }

    /// The nesting height of an index at `level` whose children's heights are `heights` (1
    /// plus the highest), checked against the depth limit; the first child's error if any.
    /// Checked here too because a child staged once per run may have been reached by another
    /// tag at a shallower level.
    pub(crate) fn check_height(
        &self,
        level: usize,
        heights: Vec<Result<usize>>,
        index: &Digest,
    ) -> Result<usize> {
        let highest = heights
            .into_iter()
            .collect::<Result<Vec<usize>>>()?
            .into_iter()
            .max()
            .unwrap_or(0);
        let height = highest + 1;
        let deepest = level + height - 1;
        if deepest > MAX_INDEX_DEPTH {
            return Err(too_deep(index, deepest));
        }
        Ok(height)
    }
}

/// A child manifest the source does not hold, though its index names it: the source is a
/// sparse copy (an OCI layout written for some platforms only, say).
fn missing_child(e: Error) -> Error {
    match e.kind() {
        ErrorKind::NotFound => e.with_detail(Detail::SparseSource),
        _ => e,
    }
}

fn too_deep(index: &Digest, levels: usize) -> Error {
    Error::new(
        ErrorKind::InvalidManifest,
        format!(
            "index {index} nests indexes {levels} levels deep, over the limit of {MAX_INDEX_DEPTH}"
        ),
    )
}

/// The manifest a tag points at, opened.
pub(crate) enum Top {
    /// A single-platform image the architecture filter selects; its config's verified bytes
    /// when the filter had to read them.
    Image {
        manifest: Manifest,
        config: Reference,
        layers: Vec<Reference>,
        preloaded: Option<Bytes>,
    },
    /// A single-platform image the architecture filter excludes, and why.
    Excluded(String),
    /// An index of `entries` entries, and those the filter selects (at least one), entered
    /// into the walk at level 1.
    Index {
        manifest: Manifest,
        chosen: Vec<Reference>,
        entries: usize,
    },
}

/// A child manifest of an index, opened.
pub(crate) enum Child {
    /// The destination holds it and it is no index: everything it references is there.
    Held,
    /// An image (`held` when the destination has it already).
    Image {
        manifest: Manifest,
        config: Reference,
        layers: Vec<Reference>,
        held: bool,
    },
    /// An index, its entries entered into the walk one level below the child's.
    Index {
        manifest: Manifest,
        entries: Vec<Reference>,
        held: bool,
    },
}

impl Run {
    /// Open the manifest `digest` a tag points at (`fetched`: its bytes, when planning read
    /// them), entering an index's chosen entries into `walk`.
    pub(crate) async fn open_top(
        &self,
        digest: &Digest,
        fetched: Option<Manifest>,
        walk: &Walk,
    ) -> Result<Top> {
        let manifest = match fetched {
            Some(manifest) => manifest,
            None => self.fetch_manifest(digest).await?,
        };
        match manifest.kind()? {
            ManifestKind::Image { config, layers } => match self.platform_fit(&config).await? {
                PlatformFit::Selected(preloaded) => Ok(Top::Image {
                    manifest,
                    config,
                    layers,
                    preloaded,
                }),
                PlatformFit::Excluded(reason) => Ok(Top::Excluded(reason)),
            },
            ManifestKind::Index { manifests } => {
                let chosen = platform::chosen(digest, &manifests, &self.config.architectures)?;
                walk.enter(1, chosen.len(), digest)?;
                Ok(Top::Index {
                    manifest,
                    chosen,
                    entries: manifests.len(),
                })
            }
        }
    }

    /// Open `child`, an entry of an index at nesting `level`, entering its own entries into
    /// `walk` when it is an index.
    pub(crate) async fn open_child(
        &self,
        child: &Reference,
        walk: &Walk,
        level: usize,
    ) -> Result<Child> {
        let digest = &child.digest;
        let present = self
            .dest_read(self.dest.head_manifest(&self.dest_repo, digest.as_str()))
            .await?;
        if let Some(head) = &present {
            child.check_size(head.size)?;
            // The destination accepted it before, so everything it references is there; only
            // an index's nesting is left to learn, from its bytes.
            if !media_types::is_index(&head.media_type) {
                return Ok(Child::Held);
            }
        }
        let manifest = self.fetch_manifest(digest).await.map_err(missing_child)?;
        child.check_size(manifest.bytes.len() as u64)?;
        let held = present.is_some();
        Ok(match manifest.kind()? {
            ManifestKind::Image { config, layers } => Child::Image {
                manifest,
                config,
                layers,
                held,
            },
            ManifestKind::Index { manifests } => {
                walk.enter(level + 1, manifests.len(), digest)?;
                Child::Index {
                    manifest,
                    entries: manifests,
                    held,
                }
            }
        })
    }

    /// The source manifest `digest`, verified.
    pub(crate) async fn fetch_manifest(&self, digest: &Digest) -> Result<Manifest> {
        let manifest = self
            .source_read(self.source.get_manifest(&self.src_repo, digest.as_str()))
            .await?;
        if &manifest.digest != digest {
            return Err(Error::new(
                ErrorKind::DigestMismatch,
                format!(
                    "the source served manifest {digest} with bytes that hash to {}",
                    manifest.digest
                ),
            )
            .on_side(Side::Source));
        }
        Ok(manifest)
    }

    /// Whether the architecture filter selects a single-platform manifest with `config`,
    /// reading the config when the filter must know its architecture.
    pub(crate) async fn platform_fit(&self, config: &Reference) -> Result<PlatformFit> {
        let architectures = &self.config.architectures;
        if !platform::reads_config(architectures, config) {
            return Ok(PlatformFit::Selected(None));
        }
        let bytes = self.read_config(config).await?;
        platform::config_fit(bytes, &config.digest, architectures)
    }
}
