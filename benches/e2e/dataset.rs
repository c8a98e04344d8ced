//! The benchmark datasets: deterministic images of incompressible bytes, seeded once into the
//! source registry and reused by every repetition.
//!
//! Layers are gzip streams in "stored" mode wrapping pseudo-random bytes: valid `tar+gzip` as far
//! as any tool checks (skopeo would otherwise recompress an uncompressed layer and change its
//! digest), yet nothing on the wire compresses them further.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use flate2::Compression;
use flate2::write::GzEncoder;
use futures::{StreamExt, TryStreamExt};
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::client::RegistryClient;

const MIB: usize = 1024 * 1024;
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Which dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// 20 tags, 4 layers of 4 MiB (2 shared by all tags), every 4th tag a 2-platform index.
    Standard,
    /// 300 tags, each a 64 KiB layer shared by all plus two 64 KiB layers of its own.
    ManySmall,
    /// 10 000 tags of small images: its own config, a 64 KiB layer shared by all and a 16 KiB
    /// layer shared by its group of 100 tags.
    Scale,
    /// The same shape with 1 000 tags.
    #[value(name = "scale-1k")]
    #[serde(rename = "scale-1k")]
    Scale1k,
    /// The same shape with 3 000 tags.
    #[value(name = "scale-3k")]
    #[serde(rename = "scale-3k")]
    Scale3k,
    /// One image with one 1 GiB layer (the memory measurement).
    Big,
}

impl Kind {
    pub fn repo(self) -> &'static str {
        match self {
            Kind::Standard => "bench/standard",
            Kind::ManySmall => "bench/many-small",
            Kind::Scale => "bench/scale",
            Kind::Scale1k => "bench/scale-1k",
            Kind::Scale3k => "bench/scale-3k",
            Kind::Big => "bench/big",
        }
    }

    /// How many tags a scale dataset has.
    fn scale_tags(self) -> Option<usize> {
        match self {
            Kind::Scale => Some(10_000),
            Kind::Scale1k => Some(1_000),
            Kind::Scale3k => Some(3_000),
            _ => None,
        }
    }

    /// The scale datasets: skopeo handles one tag after another and pings the source for each
    /// (about 0.3 s a tag over the slow link), so it would take about an hour per run there.
    pub fn is_scale(self) -> bool {
        self.scale_tags().is_some()
    }

    /// The destination repository's last path component (skopeo keeps only that).
    pub fn short_name(self) -> &'static str {
        self.repo().rsplit('/').next().expect("repo has a slash")
    }
}

/// The extra tag of the incremental scenario: on the source only while that scenario runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewTag {
    pub tag: String,
    pub digest: String,
    pub media_type: String,
    pub manifest: String,
}

/// What is in the source registry for one dataset.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dataset {
    pub repo: String,
    /// Tag → manifest digest, without the incremental tag.
    pub tags: BTreeMap<String, String>,
    pub new_tag: Option<NewTag>,
    /// Blob and manifest bytes a cold mirror must move (each blob once).
    pub cold_bytes: u64,
    /// Bytes the incremental tag adds.
    pub incremental_bytes: u64,
}

impl Dataset {
    /// Makes sure `source` holds the dataset: reuses an earlier seeding when its record in
    /// `cache_dir` matches what the registry serves, else generates and pushes it.
    pub async fn ensure(kind: Kind, source: &RegistryClient, cache_dir: &Path) -> Result<Dataset> {
        let record = cache_dir.join(format!("{}.json", kind.short_name()));
        if let Ok(text) = std::fs::read_to_string(&record)
            && let Ok(dataset) = serde_json::from_str::<Dataset>(&text)
        {
            if let Some(new_tag) = &dataset.new_tag {
                // A run that was interrupted may have left the incremental tag behind.
                source
                    .delete_manifest(&dataset.repo, &new_tag.digest)
                    .await?;
            }
            if source.tag_digests(&dataset.repo).await? == dataset.tags {
                return Ok(dataset);
            }
        }
        eprintln!(
            "seeding {} (generated once, reused afterwards)",
            kind.repo()
        );
        let started = std::time::Instant::now();
        let seeder = Seeder::new(source, kind.repo());
        let dataset = match kind {
            Kind::Standard => seeder.standard().await?,
            Kind::ManySmall => seeder.many_small().await?,
            Kind::Big => seeder.big(cache_dir).await?,
            _ => {
                let tags = kind
                    .scale_tags()
                    .expect("the other kinds are matched above");
                seeder.scale(tags).await?
            }
        };
        eprintln!(
            "seeded {} in {:.1} s",
            kind.repo(),
            started.elapsed().as_secs_f64()
        );
        if let Some(new_tag) = &dataset.new_tag {
            source
                .delete_manifest(&dataset.repo, &new_tag.digest)
                .await?;
        }
        let found = source.tag_digests(&dataset.repo).await?;
        if found != dataset.tags {
            bail!(
                "seeded {} but the registry serves {} tags instead of {}",
                dataset.repo,
                found.len(),
                dataset.tags.len()
            );
        }
        std::fs::write(&record, serde_json::to_string_pretty(&dataset)?)?;
        Ok(dataset)
    }

    /// Puts the incremental tag on the source.
    pub async fn add_new_tag(&self, source: &RegistryClient) -> Result<()> {
        let new_tag = self.new_tag.as_ref().context("dataset has no new tag")?;
        source
            .push_manifest(
                &self.repo,
                &new_tag.tag,
                &new_tag.media_type,
                new_tag.manifest.clone().into_bytes(),
            )
            .await
    }

    /// Takes the incremental tag off the source again (its blobs stay for the next repetition).
    pub async fn remove_new_tag(&self, source: &RegistryClient) -> Result<()> {
        let new_tag = self.new_tag.as_ref().context("dataset has no new tag")?;
        source.delete_manifest(&self.repo, &new_tag.digest).await
    }

    /// The tags a destination should hold after the incremental scenario.
    pub fn tags_with_new(&self) -> BTreeMap<String, String> {
        let mut tags = self.tags.clone();
        if let Some(new_tag) = &self.new_tag {
            tags.insert(new_tag.tag.clone(), new_tag.digest.clone());
        }
        tags
    }
}

/// A blob for measuring the link: `size` bytes in the repository `bench/probe`.
#[derive(Debug, Clone)]
pub struct ProbeBlob {
    pub repo: &'static str,
    pub digest: String,
    pub size: u64,
}

impl ProbeBlob {
    pub async fn ensure(source: &RegistryClient) -> Result<ProbeBlob> {
        let (bytes, _) = random_layer("bench/probe", 32 * MIB);
        let probe = ProbeBlob {
            repo: "bench/probe",
            digest: sha256(&bytes),
            size: bytes.len() as u64,
        };
        source.push_blob(probe.repo, &probe.digest, bytes).await?;
        Ok(probe)
    }
}

/// A blob's descriptor fields.
#[derive(Debug, Clone)]
struct Blob {
    digest: String,
    size: u64,
    /// sha256 of the uncompressed content, for the config's `diff_ids`.
    diff_id: String,
}

/// Pushes generated content and counts the bytes of everything pushed, each digest once.
struct Seeder<'a> {
    source: &'a RegistryClient,
    repo: &'static str,
    sizes: Mutex<BTreeMap<String, u64>>,
}

/// Images pushed at once when seeding the many-tag datasets.
const SEED_CONCURRENCY: usize = 16;

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A deterministic generator per label, so reseeding reproduces the same digests.
fn rng_for(label: &str) -> SmallRng {
    let hash = Sha256::digest(label.as_bytes());
    let seed = u64::from_le_bytes(hash[..8].try_into().expect("sha256 is 32 bytes"));
    SmallRng::seed_from_u64(seed)
}

/// `size` random bytes in a stored-mode gzip stream, and the uncompressed digest.
fn random_layer(label: &str, size: usize) -> (Vec<u8>, String) {
    let mut raw = vec![0u8; size];
    rng_for(label).fill_bytes(&mut raw);
    let diff_id = sha256(&raw);
    let mut gz = GzEncoder::new(
        Vec::with_capacity(size + size / 100 + 64),
        Compression::none(),
    );
    gz.write_all(&raw).expect("writing to a Vec cannot fail");
    (gz.finish().expect("writing to a Vec cannot fail"), diff_id)
}

/// A writer that hashes and counts what passes through.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    len: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<'a> Seeder<'a> {
    fn new(source: &'a RegistryClient, repo: &'static str) -> Self {
        Seeder {
            source,
            repo,
            sizes: Mutex::new(BTreeMap::new()),
        }
    }

    fn bytes(&self) -> u64 {
        self.sizes.lock().expect("never poisoned").values().sum()
    }

    fn count(&self, digest: &str, size: u64) {
        self.sizes
            .lock()
            .expect("never poisoned")
            .insert(digest.to_owned(), size);
    }

    async fn push_blob(&self, bytes: Vec<u8>, diff_id: String) -> Result<Blob> {
        let digest = sha256(&bytes);
        let size = bytes.len() as u64;
        self.source.push_blob(self.repo, &digest, bytes).await?;
        self.count(&digest, size);
        Ok(Blob {
            digest,
            size,
            diff_id,
        })
    }

    async fn layer(&self, label: &str, size: usize) -> Result<Blob> {
        let (bytes, diff_id) = random_layer(&format!("{}/{label}", self.repo), size);
        self.push_blob(bytes, diff_id).await
    }

    /// Pushes a single-platform image's config and manifest (layers already pushed); returns
    /// the manifest's descriptor and bytes. `tag` is where it goes: a tag, or `None` for an
    /// index child (pushed by digest).
    async fn image(
        &self,
        tag: Option<&str>,
        arch: &str,
        layers: &[Blob],
    ) -> Result<(Blob, Vec<u8>)> {
        let config = serde_json::to_vec(&json!({
            "architecture": arch,
            "os": "linux",
            "config": { "Labels": { "regmirror.bench": format!("{}:{}:{arch}", self.repo, tag.unwrap_or("child")) } },
            "rootfs": { "type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.as_str()).collect::<Vec<_>>() },
        }))?;
        let config = self.push_blob(config, String::new()).await?;
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": { "mediaType": OCI_CONFIG, "digest": config.digest, "size": config.size },
            "layers": layers.iter().map(|l| json!({
                "mediaType": OCI_LAYER, "digest": l.digest, "size": l.size,
            })).collect::<Vec<_>>(),
        }))?;
        let digest = sha256(&manifest);
        let size = manifest.len() as u64;
        self.source
            .push_manifest(
                self.repo,
                tag.unwrap_or(&digest),
                OCI_MANIFEST,
                manifest.clone(),
            )
            .await?;
        self.count(&digest, size);
        let descriptor = Blob {
            digest,
            size,
            diff_id: String::new(),
        };
        Ok((descriptor, manifest))
    }

    /// The manifest bytes of an index over `children` (amd64 first, then arm64).
    fn index(children: &[(&str, Blob)]) -> Result<Vec<u8>> {
        Ok(serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": children.iter().map(|(arch, m)| json!({
                "mediaType": OCI_MANIFEST, "digest": m.digest, "size": m.size,
                "platform": { "architecture": arch, "os": "linux" },
            })).collect::<Vec<_>>(),
        }))?)
    }

    /// One tag of the standard dataset: `shared` plus two layers of its own per platform.
    /// Returns the tag's manifest digest.
    async fn standard_tag(&self, tag: &str, multi_arch: bool, shared: &[Blob]) -> Result<String> {
        let arches: &[&str] = if multi_arch {
            &["amd64", "arm64"]
        } else {
            &["amd64"]
        };
        let mut children = Vec::new();
        for arch in arches {
            let mut layers = shared.to_vec();
            for i in 0..2 {
                layers.push(self.layer(&format!("{tag}/{arch}/{i}"), 4 * MIB).await?);
            }
            let target = if multi_arch { None } else { Some(tag) };
            let (manifest, _) = self.image(target, arch, &layers).await?;
            children.push((*arch, manifest));
        }
        if !multi_arch {
            let (_, manifest) = children.pop().expect("one platform");
            return Ok(manifest.digest);
        }
        let index = Self::index(&children)?;
        let digest = sha256(&index);
        self.count(&digest, index.len() as u64);
        self.source
            .push_manifest(self.repo, tag, OCI_INDEX, index)
            .await?;
        Ok(digest)
    }

    async fn standard(&self) -> Result<Dataset> {
        let shared = vec![
            self.layer("shared/0", 4 * MIB).await?,
            self.layer("shared/1", 4 * MIB).await?,
        ];
        let mut tags = BTreeMap::new();
        for i in 0..20 {
            let tag = format!("t{i:02}");
            let digest = self.standard_tag(&tag, i % 4 == 3, &shared).await?;
            tags.insert(tag, digest);
        }
        let cold_bytes = self.bytes();
        // The incremental tag: a new single-platform image on the shared base.
        let mut layers = shared.clone();
        for i in 0..2 {
            layers.push(self.layer(&format!("t20/amd64/{i}"), 4 * MIB).await?);
        }
        let new_tag = self.new_tag("t20", "amd64", &layers).await?;
        Ok(Dataset {
            repo: self.repo.to_owned(),
            tags,
            new_tag: Some(new_tag),
            cold_bytes,
            incremental_bytes: self.bytes() - cold_bytes,
        })
    }

    /// 300 tags of a shared 64 KiB layer and two of their own: 901 blobs with the configs.
    async fn many_small(&self) -> Result<Dataset> {
        let shared = self.layer("shared/0", 64 * 1024).await?;
        let tags = futures::stream::iter(0..300)
            .map(|i| {
                let shared = shared.clone();
                async move {
                    let tag = format!("s{i:03}");
                    let mut layers = vec![shared];
                    for own in 0..2 {
                        layers.push(self.layer(&format!("{tag}/{own}"), 64 * 1024).await?);
                    }
                    let (manifest, _) = self.image(Some(&tag), "amd64", &layers).await?;
                    anyhow::Ok((tag, manifest.digest))
                }
            })
            .buffer_unordered(SEED_CONCURRENCY)
            .try_collect::<BTreeMap<_, _>>()
            .await?;
        let cold_bytes = self.bytes();
        let mut layers = vec![shared];
        for own in 0..2 {
            layers.push(self.layer(&format!("s300/{own}"), 64 * 1024).await?);
        }
        let new_tag = self.new_tag("s300", "amd64", &layers).await?;
        Ok(Dataset {
            repo: self.repo.to_owned(),
            tags,
            new_tag: Some(new_tag),
            cold_bytes,
            incremental_bytes: self.bytes() - cold_bytes,
        })
    }

    /// `count` small images: each its own config, a 64 KiB layer shared by all and a 16 KiB
    /// layer shared by its group of 100 tags.
    async fn scale(&self, count: usize) -> Result<Dataset> {
        let shared = self.layer("shared", 64 * 1024).await?;
        let groups = futures::stream::iter(0..count.div_ceil(100))
            .map(|g| async move { self.layer(&format!("group/{g}"), 16 * 1024).await })
            .buffered(SEED_CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await?;
        let tags = futures::stream::iter(0..count)
            .map(|i| {
                let layers = [shared.clone(), groups[i / 100].clone()];
                async move {
                    let tag = format!("t{i:05}");
                    let (manifest, _) = self.image(Some(&tag), "amd64", &layers).await?;
                    anyhow::Ok((tag, manifest.digest))
                }
            })
            .buffer_unordered(SEED_CONCURRENCY)
            .try_collect::<BTreeMap<_, _>>()
            .await?;
        let cold_bytes = self.bytes();
        let new_tag = self
            .new_tag("new", "amd64", &[shared, groups[0].clone()])
            .await?;
        Ok(Dataset {
            repo: self.repo.to_owned(),
            tags,
            new_tag: Some(new_tag),
            cold_bytes,
            incremental_bytes: self.bytes() - cold_bytes,
        })
    }

    /// Pushes an image under `tag` and keeps its manifest so the tag can be put back later.
    async fn new_tag(&self, tag: &str, arch: &str, layers: &[Blob]) -> Result<NewTag> {
        let (manifest, bytes) = self.image(Some(tag), arch, layers).await?;
        Ok(NewTag {
            tag: tag.to_owned(),
            digest: manifest.digest,
            media_type: OCI_MANIFEST.to_owned(),
            manifest: String::from_utf8(bytes).context("serde_json writes UTF-8")?,
        })
    }

    /// One 1 GiB layer, generated to a file while hashing so it never sits in memory.
    async fn big(&self, cache_dir: &Path) -> Result<Dataset> {
        let path = cache_dir.join("big-layer.tar.gz");
        let (digest, size, diff_id) = {
            let file = std::fs::File::create(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            let hashing = Hashing {
                inner: std::io::BufWriter::with_capacity(MIB, file),
                hash: Sha256::new(),
                len: 0,
            };
            let mut gz = GzEncoder::new(hashing, Compression::none());
            let mut rng = rng_for(&format!("{}/layer", self.repo));
            let mut raw_hash = Sha256::new();
            let mut chunk = vec![0u8; MIB];
            for _ in 0..1024 {
                rng.fill_bytes(&mut chunk);
                raw_hash.update(&chunk);
                gz.write_all(&chunk)?;
            }
            let mut hashing = gz.finish()?;
            hashing.flush()?;
            (
                format!("sha256:{}", hex::encode(hashing.hash.finalize())),
                hashing.len,
                format!("sha256:{}", hex::encode(raw_hash.finalize())),
            )
        };
        self.source
            .push_blob_file(self.repo, &digest, &path)
            .await?;
        std::fs::remove_file(&path)?;
        self.count(&digest, size);
        let layer = Blob {
            digest,
            size,
            diff_id,
        };
        let (manifest, _) = self.image(Some("v1"), "amd64", &[layer]).await?;
        Ok(Dataset {
            repo: self.repo.to_owned(),
            tags: BTreeMap::from([("v1".to_owned(), manifest.digest)]),
            new_tag: None,
            cold_bytes: self.bytes(),
            incremental_bytes: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn layers_are_deterministic_valid_gzip_of_incompressible_bytes() {
        let (a, diff_a) = random_layer("x", 100_000);
        let (b, diff_b) = random_layer("x", 100_000);
        let (c, _) = random_layer("y", 100_000);
        assert_eq!(a, b);
        assert_eq!(diff_a, diff_b);
        assert_ne!(a, c);
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&a[..])
            .read_to_end(&mut raw)
            .unwrap();
        assert_eq!(raw.len(), 100_000);
        assert_eq!(sha256(&raw), diff_a);
        // Stored mode: the gzip stream is barely larger than its content.
        assert!(a.len() < 100_000 + 100);
    }
}
