//! OCI image layout directories (the `oci:PATH` form) as a source and as a destination, per the
//! OCI image-layout spec: an `oci-layout` file, `index.json`, and `blobs/sha256/<hex>`.
//!
//! - Tags are `org.opencontainers.image.ref.name` annotations on `index.json` entries (the short
//!   form skopeo writes: `v1`, not `repo:v1`); entries whose name is not a valid tag are ignored.
//! - Manifests are blobs too. A manifest pushed by digest (the engine stages child manifests
//!   that way before tagging) is stored **only as a blob**: `index.json` lists tagged manifests
//!   alone, so it stays the list of what the layout offers.
//! - Blobs are written to a temp file inside the layout and renamed into place only after their
//!   sha256 and size check out; they are streamed, never held whole in memory.
//! - Files and directories get the modes of any new ones (0644 / 0755 under umask 022), so
//!   others can read a layout; a mounted blob is hard-linked only when its source has that mode.
//! - `index.json` is rewritten to a temp file and renamed over the old one, under an in-process
//!   async mutex per layout plus an exclusive lock on `.regmirror/lock` for other processes, so
//!   concurrent writers never lose each other's tags and readers never see a torn file.
//! - Tags, digests and repository paths are validated before they touch a path, so nothing
//!   escapes the layout directory.
//! - Entries keep the manifest's own media type, Docker ones included (as crane and containerd
//!   write them). skopeo 1.9's `oci:` transport finds tags among OCI-typed entries only, so a
//!   Docker-typed image mirrored into a layout is readable by regmirror, crane and containerd
//!   but not by that skopeo.
//! - Referrers are kept as a registry without the referrers API keeps them: the referrers tag
//!   schema's `sha256-<hex>` tag holds the subject's referrers index (its entry also carries
//!   the `org.opencontainers.image.referrer.subject` annotation of image-spec draft PR #1171),
//!   cosign's `.sig` / `.att` / `.sbom` are tags, and the referrer manifests are blobs.
//! - Indexes whose children are absent ("sparse", SEMANTICS.md §4) are accepted; an image
//!   manifest whose config or layers are absent is refused, as registries do.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

use crate::error::{Error, ErrorKind, Result};
use crate::reference::{Digest, validate_repository, validate_tag};
use crate::registry::manifest::{MAX_INDEX_BYTES, ManifestKind, media_types};
use crate::registry::{BlobStream, DestRegistry, Manifest, ManifestHead, SourceRegistry};

/// The annotation that names a tag in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation that marks an `index.json` entry as the referrers index of a subject digest
/// (image-spec draft PR #1171; the released layout spec says nothing of referrers).
pub const REFERRER_SUBJECT: &str = "org.opencontainers.image.referrer.subject";
/// The subject of a referrers index stored under `tag` in the referrers tag schema
/// (`sha256-<hex>`), so tools reading either convention find it.
fn referrers_subject(tag: &str, manifest: &Manifest) -> Option<Digest> {
    let hex = tag.strip_prefix("sha256-")?;
    if !manifest.is_index() {
        return None;
    }
    Digest::parse(&format!("sha256:{hex}")).ok()
}

/// Where regmirror keeps its lock file and upload temp files inside a layout.
const WORK_DIR: &str = ".regmirror";
/// Read size when streaming a blob out.
const READ_CHUNK: usize = 64 * 1024;

/// How repository paths map to layout directories.
#[derive(Debug, Clone)]
enum Mode {
    /// One layout for every repository argument.
    Single(PathBuf),
    /// Repository `a/b` is the layout at `root/a/b`.
    Root(PathBuf),
}

/// OCI image layouts on the local filesystem, as a [`SourceRegistry`] and a [`DestRegistry`].
#[derive(Debug, Clone)]
pub struct LayoutRegistry {
    mode: Mode,
    /// One async mutex per layout directory, so writers in this process queue instead of all
    /// blocking threads on the file lock.
    locks: Arc<Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>>,
}

/// An `index.json` entry we understand.
#[derive(Debug, Clone)]
struct Entry {
    media_type: String,
    digest: Digest,
}

impl LayoutRegistry {
    /// One layout directory at `path` serves any repository argument (what `oci:PATH` means).
    pub fn single(path: impl Into<PathBuf>) -> Self {
        Self::with_mode(Mode::Single(path.into()))
    }

    /// One layout per repository: repository `a/b` is the layout at `root/a/b`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self::with_mode(Mode::Root(root.into()))
    }

    fn with_mode(mode: Mode) -> Self {
        LayoutRegistry {
            mode,
            locks: Arc::default(),
        }
    }

    /// The layout directory of `repo`. Repository paths are validated first, so `..` and
    /// absolute paths cannot be smuggled in.
    pub fn layout_dir(&self, repo: &str) -> Result<PathBuf> {
        match &self.mode {
            Mode::Single(path) => Ok(path.clone()),
            Mode::Root(root) => {
                validate_repository(repo)?;
                Ok(root.join(repo))
            }
        }
    }

    fn async_lock(&self, dir: &Path) -> Arc<tokio::sync::Mutex<()>> {
        // The map only grows by one small entry per layout written; a poisoned lock still holds
        // a valid map because every mutation is a single insert.
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(dir.to_path_buf()).or_default().clone()
    }

    /// Read-modify-write `index.json` of the layout at `dir` under both locks, creating the
    /// layout if needed. `change` returns whether it changed anything.
    async fn update_index<F>(&self, dir: &Path, change: F) -> Result<bool>
    where
        F: FnOnce(&mut Vec<Value>) -> Result<bool> + Send + 'static,
    {
        let lock = self.async_lock(dir);
        let _held = lock.lock().await;
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || update_index_locked(&dir, change))
            .await
            .map_err(|e| Error::new(ErrorKind::Internal, format!("index update task: {e}")))?
    }
}

fn io_error(what: impl std::fmt::Display, path: &Path, e: std::io::Error) -> Error {
    let kind = match e.kind() {
        std::io::ErrorKind::NotFound => ErrorKind::NotFound,
        _ => ErrorKind::Io,
    };
    Error::new(kind, format!("{what} {}: {e}", path.display())).with_source(e)
}

fn blob_path(dir: &Path, digest: &Digest) -> PathBuf {
    // `Digest` only holds `sha256:<64 lowercase hex>`, so the hex is a safe file name.
    dir.join("blobs")
        .join(digest.algorithm())
        .join(digest.hex())
}

/// Create the layout skeleton (`oci-layout`, `blobs/sha256`, the work dir) if missing.
fn ensure_layout_sync(dir: &Path) -> Result<()> {
    for sub in [Path::new("blobs/sha256"), Path::new(WORK_DIR)] {
        let path = dir.join(sub);
        std::fs::create_dir_all(&path).map_err(|e| io_error("creating", &path, e))?;
    }
    let marker = dir.join("oci-layout");
    if !marker.exists() {
        write_atomic(dir, &marker, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    }
    Ok(())
}

/// A builder of temp files (renamed into place once complete) that get the mode of any new
/// file, 0666 less the process umask (0644 under umask 022), instead of a temp file's private
/// 0600: a layout is there for others to read (an air-gap import account, a web server).
fn file_builder(prefix: &str) -> tempfile::Builder<'_, '_> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix);
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    builder
}

/// Write `bytes` to a temp file in the layout's work dir, fsync, and rename over `target`.
fn write_atomic(dir: &Path, target: &Path, bytes: &[u8]) -> Result<()> {
    let work = dir.join(WORK_DIR);
    let mut temp = file_builder(".tmp")
        .tempfile_in(&work)
        .map_err(|e| io_error("creating a temp file in", &work, e))?;
    temp.write_all(bytes)
        .and_then(|()| temp.as_file().sync_all())
        .map_err(|e| io_error("writing", temp.path(), e))?;
    temp.persist(target)
        .map_err(|e| io_error("replacing", target, e.error))?;
    // The rename is durable only once the directory entry is on disk.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("syncing", dir, e))
}

fn read_index_sync(dir: &Path) -> Result<Option<Value>> {
    let path = dir.join("index.json");
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("reading", &path, e)),
    };
    let index: Value = serde_json::from_slice(&bytes).map_err(|e| {
        Error::new(
            ErrorKind::InvalidManifest,
            format!("{} is not valid JSON: {e}", path.display()),
        )
    })?;
    if !index.get("manifests").is_none_or(Value::is_array) || !index.is_object() {
        return Err(Error::new(
            ErrorKind::InvalidManifest,
            format!("{} has no \"manifests\" array", path.display()),
        ));
    }
    Ok(Some(index))
}

fn update_index_locked<F>(dir: &Path, change: F) -> Result<bool>
where
    F: FnOnce(&mut Vec<Value>) -> Result<bool>,
{
    ensure_layout_sync(dir)?;
    let lock_path = dir.join(WORK_DIR).join("lock");
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| io_error("opening", &lock_path, e))?;
    fs4::fs_std::FileExt::lock_exclusive(&lock_file)
        .map_err(|e| io_error("locking", &lock_path, e))?;
    let mut index = read_index_sync(dir)?.unwrap_or_else(
        || json!({"schemaVersion": 2, "mediaType": media_types::OCI_INDEX, "manifests": []}),
    );
    let mut manifests = match index.get_mut("manifests").map(Value::take) {
        Some(Value::Array(entries)) => entries,
        _ => Vec::new(),
    };
    let changed = change(&mut manifests)?;
    index["manifests"] = Value::Array(manifests);
    if changed {
        let bytes = serde_json::to_vec_pretty(&index).expect("a JSON value serializes");
        write_atomic(dir, &dir.join("index.json"), &bytes)?;
    }
    // Closing the file (drop) releases the lock.
    drop(lock_file);
    Ok(changed)
}

fn ref_name(entry: &Value) -> Option<&str> {
    entry.get("annotations")?.get(REF_NAME)?.as_str()
}

fn parse_entry(entry: &Value) -> Option<Entry> {
    Some(Entry {
        media_type: entry.get("mediaType")?.as_str()?.to_owned(),
        digest: Digest::parse(entry.get("digest")?.as_str()?).ok()?,
    })
}

impl LayoutRegistry {
    async fn read_index(&self, dir: &Path) -> Result<Option<Value>> {
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || read_index_sync(&dir))
            .await
            .map_err(|e| Error::new(ErrorKind::Internal, format!("index read task: {e}")))?
    }

    async fn tags(&self, repo: &str) -> Result<Option<Vec<String>>> {
        let dir = self.layout_dir(repo)?;
        let Some(index) = self.read_index(&dir).await? else {
            return Ok(None);
        };
        let mut tags: Vec<String> = Vec::new();
        for entry in index["manifests"].as_array().into_iter().flatten() {
            match ref_name(entry) {
                Some(name) if validate_tag(name).is_ok() && !tags.iter().any(|t| t == name) => {
                    tags.push(name.to_owned());
                }
                _ => {}
            }
        }
        // Registries list tags in lexical order; do the same so output does not depend on
        // the order tags were written.
        tags.sort();
        Ok(Some(tags))
    }

    /// The `index.json` entry tagged `tag` (the last one, if a foreign tool wrote duplicates).
    async fn tagged(&self, dir: &Path, tag: &str) -> Result<Option<Entry>> {
        validate_tag(tag)?;
        let Some(index) = self.read_index(dir).await? else {
            return Ok(None);
        };
        Ok(index["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| ref_name(e) == Some(tag))
            .filter_map(parse_entry)
            .next_back())
    }

    /// Resolve a tag or digest to the manifest's digest and the media type `index.json` declares
    /// for it (empty when stored only as a blob).
    async fn resolve(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<(PathBuf, Digest, String)>> {
        let dir = self.layout_dir(repo)?;
        if reference.contains(':') {
            let digest = Digest::parse(reference)?;
            return Ok(Some((dir, digest, String::new())));
        }
        Ok(self
            .tagged(&dir, reference)
            .await?
            .map(|e| (dir, e.digest, e.media_type)))
    }

    async fn read_manifest(&self, repo: &str, reference: &str) -> Result<Option<Manifest>> {
        let Some((dir, digest, media_type)) = self.resolve(repo, reference).await? else {
            return Ok(None);
        };
        let path = blob_path(&dir, &digest);
        let size = match tokio::fs::metadata(&path).await {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("reading", &path, e)),
        };
        // Checked before reading so a layer digest asked for as a manifest is not slurped.
        if size > MAX_INDEX_BYTES as u64 {
            return Err(Error::new(
                ErrorKind::InvalidManifest,
                format!(
                    "{digest} in {} is {size} bytes, too large for a manifest",
                    dir.display()
                ),
            ));
        }
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|e| io_error("reading", &path, e))?;
        Manifest::from_bytes_verified(bytes, &media_type, &digest)
            .map(Some)
            .map_err(|e| e.context(format!("manifest {reference} in {}", dir.display())))
    }

    async fn head(&self, repo: &str, reference: &str) -> Result<Option<ManifestHead>> {
        Ok(self
            .read_manifest(repo, reference)
            .await?
            .map(|m| ManifestHead {
                size: m.bytes.len() as u64,
                digest: m.digest,
                media_type: m.media_type,
            }))
    }

    async fn get(&self, repo: &str, reference: &str) -> Result<Manifest> {
        self.read_manifest(repo, reference).await?.ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("manifest {reference} not found in OCI layout for {repo}"),
            )
        })
    }

    async fn blob_exists(&self, dir: &Path, digest: &Digest) -> Result<bool> {
        let path = blob_path(dir, digest);
        tokio::fs::try_exists(&path)
            .await
            .map_err(|e| io_error("checking", &path, e))
    }

    /// Stream `data` into a temp file, verifying digest and size, then rename it into place.
    async fn write_blob(
        &self,
        dir: &Path,
        digest: &Digest,
        size: u64,
        mut data: BlobStream,
    ) -> Result<()> {
        let setup_dir = dir.to_path_buf();
        let temp = tokio::task::spawn_blocking(move || {
            ensure_layout_sync(&setup_dir)?;
            let work = setup_dir.join(WORK_DIR);
            file_builder("upload-")
                .tempfile_in(&work)
                .map_err(|e| io_error("creating a temp file in", &work, e))
        })
        .await
        .map_err(|e| Error::new(ErrorKind::Internal, format!("blob setup task: {e}")))??;
        let std_file = temp
            .as_file()
            .try_clone()
            .map_err(|e| io_error("opening", temp.path(), e))?;
        let mut file = tokio::fs::File::from_std(std_file);
        let mut hasher = Sha256::new();
        let mut written = 0u64;
        let mismatch = |actual: String, written: u64| {
            Error::new(
                ErrorKind::DigestMismatch,
                format!("blob pushed as {digest} ({size} bytes) is {actual} ({written} bytes)"),
            )
        };
        while let Some(chunk) = data.next().await {
            let chunk = chunk?;
            written += chunk.len() as u64;
            if written > size {
                // `temp` is deleted on drop: nothing partial is left behind.
                return Err(mismatch("longer".to_owned(), written));
            }
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|e| io_error("writing", temp.path(), e))?;
        }
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        if actual != digest.as_str() || written != size {
            return Err(mismatch(actual, written));
        }
        file.sync_all()
            .await
            .map_err(|e| io_error("syncing", temp.path(), e))?;
        drop(file);
        let target = blob_path(dir, digest);
        tokio::task::spawn_blocking(move || {
            temp.persist(&target)
                .map(drop)
                .map_err(|e| io_error("storing", &target, e.error))
        })
        .await
        .map_err(|e| Error::new(ErrorKind::Internal, format!("blob store task: {e}")))?
    }
}

#[async_trait]
impl SourceRegistry for LayoutRegistry {
    async fn list_tags(&self, repo: &str) -> Result<Vec<String>> {
        let dir = self.layout_dir(repo)?;
        self.tags(repo).await?.ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("no OCI layout at {} (index.json is missing)", dir.display()),
            )
        })
    }

    async fn head_manifest(&self, repo: &str, reference: &str) -> Result<Option<ManifestHead>> {
        self.head(repo, reference).await
    }

    async fn get_manifest(&self, repo: &str, reference: &str) -> Result<Manifest> {
        self.get(repo, reference).await
    }

    async fn get_blob(&self, repo: &str, digest: &Digest) -> Result<BlobStream> {
        let path = blob_path(&self.layout_dir(repo)?, digest);
        let file = tokio::fs::File::open(&path).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::new(
                    ErrorKind::NotFound,
                    format!("blob {digest} not found in OCI layout for {repo}"),
                )
            } else {
                io_error("opening", &path, e)
            }
        })?;
        let stream = tokio_util::io::ReaderStream::with_capacity(file, READ_CHUNK)
            .map(move |chunk| chunk.map_err(|e| io_error("reading", &path, e)));
        Ok(stream.boxed())
    }
}

#[async_trait]
impl DestRegistry for LayoutRegistry {
    /// Uploads are hashed and a mismatch is never stored.
    fn verifies_blobs(&self) -> bool {
        true
    }

    async fn list_tags(&self, repo: &str) -> Result<Vec<String>> {
        Ok(self.tags(repo).await?.unwrap_or_default())
    }

    async fn head_manifest(&self, repo: &str, reference: &str) -> Result<Option<ManifestHead>> {
        self.head(repo, reference).await
    }

    async fn get_manifest(&self, repo: &str, reference: &str) -> Result<Manifest> {
        self.get(repo, reference).await
    }

    async fn blob_size(&self, repo: &str, digest: &Digest) -> Result<Option<u64>> {
        let path = blob_path(&self.layout_dir(repo)?, digest);
        match tokio::fs::metadata(&path).await {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("checking", &path, e)),
        }
    }

    /// A single layout has nothing to mount from; per-repository layouts hard-link the blob
    /// (or copy it across filesystems).
    async fn mount_blob(&self, repo: &str, digest: &Digest, from: &str) -> Result<bool> {
        if matches!(self.mode, Mode::Single(_)) {
            return Ok(false);
        }
        let (dir, from_dir) = (self.layout_dir(repo)?, self.layout_dir(from)?);
        let source = blob_path(&from_dir, digest);
        if !self.blob_exists(&from_dir, digest).await? {
            return Ok(false);
        }
        if self.blob_exists(&dir, digest).await? {
            return Ok(true);
        }
        let target = blob_path(&dir, digest);
        tokio::task::spawn_blocking(move || {
            ensure_layout_sync(&dir)?;
            let work = dir.join(WORK_DIR);
            let mut temp = file_builder("mount-")
                .tempfile_in(&work)
                .map_err(|e| io_error("creating a temp file in", &work, e))?;
            // A hard link shares the source's inode, mode included: it is used only when that
            // mode is the one a new file gets here (a blob written 0600 elsewhere is copied).
            // The link appears whole at once; a copy is renamed into place when complete.
            let mode = |path: &Path| std::fs::metadata(path).map(|m| m.permissions());
            let wanted = mode(temp.path()).map_err(|e| io_error("reading", temp.path(), e))?;
            if mode(&source).is_ok_and(|m| m == wanted) {
                match std::fs::hard_link(&source, &target) {
                    Ok(()) => return Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
                    // Another filesystem: copy.
                    Err(_) => {}
                }
            }
            std::fs::File::open(&source)
                .and_then(|mut from| std::io::copy(&mut from, temp.as_file_mut()))
                .and_then(|_| temp.as_file().sync_all())
                .map_err(|e| io_error("copying", &source, e))?;
            temp.persist(&target)
                .map(drop)
                .map_err(|e| io_error("storing", &target, e.error))
        })
        .await
        .map_err(|e| Error::new(ErrorKind::Internal, format!("blob mount task: {e}")))??;
        Ok(true)
    }

    async fn push_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        data: BlobStream,
    ) -> Result<()> {
        let dir = self.layout_dir(repo)?;
        if self.blob_exists(&dir, digest).await? {
            return Ok(());
        }
        self.write_blob(&dir, digest, size, data).await
    }

    async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        manifest: &Manifest,
    ) -> Result<Digest> {
        let dir = self.layout_dir(repo)?;
        let actual = Digest::of(&manifest.bytes);
        if actual != manifest.digest {
            return Err(Error::new(
                ErrorKind::DigestMismatch,
                format!("manifest labelled {} hashes to {actual}", manifest.digest),
            ));
        }
        let tag = if reference.contains(':') {
            if Digest::parse(reference)? != actual {
                return Err(Error::new(
                    ErrorKind::DigestMismatch,
                    format!("manifest pushed as {reference} hashes to {actual}"),
                ));
            }
            None
        } else {
            validate_tag(reference)?;
            Some(reference.to_owned())
        };
        if let ManifestKind::Image { config, layers } = manifest.kind()? {
            for blob in std::iter::once(&config).chain(&layers) {
                if !self.blob_exists(&dir, &blob.digest).await? {
                    return Err(Error::new(
                        ErrorKind::InvalidManifest,
                        format!(
                            "manifest {reference} refused: blob {} is not in the OCI layout {} (MANIFEST_BLOB_UNKNOWN)",
                            blob.digest,
                            dir.display()
                        ),
                    ));
                }
            }
        }
        if !self.blob_exists(&dir, &actual).await? {
            let bytes = manifest.bytes.clone();
            let data = futures::stream::iter([Ok::<Bytes, Error>(bytes)]).boxed();
            self.write_blob(&dir, &actual, manifest.bytes.len() as u64, data)
                .await?;
        }
        if let Some(tag) = tag {
            let mut entry = json!({
                "mediaType": manifest.media_type,
                "digest": actual.as_str(),
                "size": manifest.bytes.len(),
                "annotations": { REF_NAME: tag },
            });
            if let Some(subject) = referrers_subject(&tag, manifest) {
                entry["annotations"][REFERRER_SUBJECT] = json!(subject.as_str());
            }
            self.update_index(&dir, move |manifests| {
                manifests.retain(|e| ref_name(e) != Some(tag.as_str()));
                manifests.push(entry);
                Ok(true)
            })
            .await?;
        }
        Ok(actual)
    }

    async fn delete_tag(&self, repo: &str, tag: &str) -> Result<()> {
        validate_tag(tag)?;
        let dir = self.layout_dir(repo)?;
        if self.read_index(&dir).await?.is_none() {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("tag {tag} not found: no OCI layout at {}", dir.display()),
            ));
        }
        let owned = tag.to_owned();
        let removed = self
            .update_index(&dir, move |manifests| {
                let before = manifests.len();
                manifests.retain(|e| ref_name(e) != Some(owned.as_str()));
                Ok(manifests.len() != before)
            })
            .await?;
        if removed {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::NotFound,
                format!("tag {tag} not found in OCI layout {}", dir.display()),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> Manifest {
        // An image without layers whose config is the empty JSON object, pushed below.
        let config = Digest::of(b"{}");
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{config}","size":2}},"layers":[]}}"#,
            media_types::OCI_MANIFEST
        );
        Manifest::from_bytes(json.into_bytes(), "").unwrap()
    }

    #[tokio::test]
    async fn foreign_index_entries_and_fields_survive_updates() {
        let dir = tempfile::tempdir().unwrap();
        let layout = LayoutRegistry::single(dir.path());
        let config = Bytes::from_static(b"{}");
        let data = futures::stream::iter([Ok(config.clone())]).boxed();
        layout
            .push_blob("x", &Digest::of(&config), 2, data)
            .await
            .unwrap();
        let manifest = image();
        layout.push_manifest("x", "mine", &manifest).await.unwrap();
        // Another tool adds a full-reference name, an untagged entry and a field of its own.
        let path = dir.path().join("index.json");
        let mut index: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let mut foreign = index["manifests"][0].clone();
        foreign["annotations"][REF_NAME] = json!("docker.io/library/alpine:3.19");
        let mut untagged = index["manifests"][0].clone();
        untagged.as_object_mut().unwrap().remove("annotations");
        index["manifests"]
            .as_array_mut()
            .unwrap()
            .extend([foreign, untagged]);
        index["annotations"] = json!({"written.by": "someone else"});
        std::fs::write(&path, serde_json::to_vec(&index).unwrap()).unwrap();

        layout
            .push_manifest("x", "second", &manifest)
            .await
            .unwrap();
        layout.delete_tag("x", "mine").await.unwrap();
        assert_eq!(
            SourceRegistry::list_tags(&layout, "x").await.unwrap(),
            ["second"]
        );
        let index: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(index["annotations"]["written.by"], "someone else");
        assert_eq!(index["manifests"].as_array().unwrap().len(), 3);
        let e = layout.delete_tag("x", "mine").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }

    #[tokio::test]
    async fn a_tag_pointing_at_a_missing_blob_reads_as_absent() {
        let dir = tempfile::tempdir().unwrap();
        let layout = LayoutRegistry::single(dir.path());
        let manifest = image();
        let entry = json!({"mediaType": manifest.media_type, "digest": manifest.digest.as_str(),
            "size": manifest.bytes.len(), "annotations": {REF_NAME: "gone"}});
        std::fs::write(
            dir.path().join("index.json"),
            serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [entry]})).unwrap(),
        )
        .unwrap();
        assert_eq!(
            SourceRegistry::list_tags(&layout, "x").await.unwrap(),
            ["gone"]
        );
        assert!(
            SourceRegistry::head_manifest(&layout, "x", "gone")
                .await
                .unwrap()
                .is_none()
        );
        let e = SourceRegistry::get_manifest(&layout, "x", "gone")
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }
}
