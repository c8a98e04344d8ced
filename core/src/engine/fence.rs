//! Fencing (SEMANTICS.md §6): a run writes to the destination only while it can prove that it
//! still holds its claim.
//!
//! The proof is the lease's *confirmed* time, measured on this process's monotonic clock: a
//! claim or renewal that the store confirmed was asked for at instant `sent` (taken before the
//! wall-clock time the store computes the expiry from), so the lease holds at least until
//! `sent + lease` by this clock — by any other worker's clock, until then give or take the skew
//! between the two. A [`Fence`] keeps that instant; the run may write only while more than the
//! [margin](fence_margin) is left, and is stopped (aborted, units in flight abandoned) when it
//! is not. Another worker can take the mirror over only once the lease has expired by its own
//! clock, so the margin covers clock skew between workers and requests already on their way.
//!
//! Every destination write goes through a [`FencedDestination`], which checks the fence just
//! before it (tags, deletes, rollbacks, and the content staged for them), so a process frozen
//! past its lease (SIGSTOP, a VM pause, a long GC-like stall) and then resumed writes nothing:
//! the monotonic clock went on while it was stopped.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::error::{Error, ErrorKind, Result};
use crate::reference::Digest;
use crate::registry::{BlobStream, DestRegistry, Manifest, ManifestHead};

/// The part of a lease a run does not use: it stops writing (and stops) once less than this is
/// left of its confirmed lease. A quarter of the lease (15 s of the default 60 s).
pub fn fence_margin(lease: Duration) -> Duration {
    lease / 4
}

/// The confirmed end of one claim's lease, on the monotonic clock.
#[derive(Debug)]
pub(crate) struct Fence {
    mirror_id: String,
    lease: Duration,
    margin: Duration,
    /// No write may start at or after this instant: the confirmed expiry minus the margin.
    write_until: Mutex<Instant>,
}

impl Fence {
    /// The fence of a claim just taken, whose expiry the store computed from this process's
    /// wall clock: what is left of it now, on the monotonic clock (nothing, if the process was
    /// stopped past it since).
    pub fn for_claim(mirror_id: &str, expires: OffsetDateTime, lease: Duration) -> Fence {
        let left = (expires - OffsetDateTime::now_utc())
            .try_into()
            .unwrap_or(Duration::ZERO)
            .min(lease);
        let margin = fence_margin(lease);
        Fence {
            mirror_id: mirror_id.to_owned(),
            lease,
            margin,
            write_until: Mutex::new(Instant::now() + left.saturating_sub(margin)),
        }
    }

    /// A renewal asked for at `sent` was confirmed: the lease holds until `sent + lease`.
    pub fn confirm(&self, sent: Instant) {
        let mut until = self.lock();
        *until = (*until).max(sent + self.lease - self.margin);
    }

    /// The instant from which no write may start.
    pub fn deadline(&self) -> Instant {
        *self.lock()
    }

    pub fn is_expired(&self) -> bool {
        Instant::now() >= self.deadline()
    }

    /// `Ok` while a write may start; else the error that stops the run.
    pub fn check(&self) -> Result<()> {
        if self.is_expired() {
            return Err(self.expired_error());
        }
        Ok(())
    }

    /// Why a run whose fence expired stops. `Conflict`, as for a claim lost to another worker:
    /// the destination is no longer this run's to change or to roll back.
    pub fn expired_error(&self) -> Error {
        Error::new(
            ErrorKind::Conflict,
            format!(
                "mirror {:?}: the lease could no longer be proven held (no renewal confirmed \
                 within {} of the lease's end): the run stopped before the lease could expire, \
                 writing nothing more to the destination",
                self.mirror_id,
                humantime::format_duration(self.margin)
            ),
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Instant> {
        self.write_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The destination as a claimed run sees it: every write first checks the run's [`Fence`],
/// as late as possible, so nothing is sent once the lease can no longer be proven held. Reads
/// pass through.
#[derive(Debug)]
pub(crate) struct FencedDestination {
    inner: std::sync::Arc<dyn DestRegistry>,
    fence: std::sync::Arc<Fence>,
}

impl FencedDestination {
    pub fn new(inner: std::sync::Arc<dyn DestRegistry>, fence: std::sync::Arc<Fence>) -> Self {
        FencedDestination { inner, fence }
    }
}

#[async_trait]
impl DestRegistry for FencedDestination {
    async fn list_tags(&self, repo: &str) -> Result<Vec<String>> {
        self.inner.list_tags(repo).await
    }

    async fn head_manifest(&self, repo: &str, reference: &str) -> Result<Option<ManifestHead>> {
        self.inner.head_manifest(repo, reference).await
    }

    async fn get_manifest(&self, repo: &str, reference: &str) -> Result<Manifest> {
        self.inner.get_manifest(repo, reference).await
    }

    // Forwarded, not left to the trait's default (`None`, "no referrers API"): a claimed run
    // must see the destination's referrers API as a one-shot sync does.
    async fn referrers(
        &self,
        repo: &str,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Option<Manifest>> {
        self.inner.referrers(repo, digest, artifact_type).await
    }

    async fn blob_size(&self, repo: &str, digest: &Digest) -> Result<Option<u64>> {
        self.inner.blob_size(repo, digest).await
    }

    async fn has_blob(&self, repo: &str, digest: &Digest) -> Result<bool> {
        self.inner.has_blob(repo, digest).await
    }

    async fn mount_blob(&self, repo: &str, digest: &Digest, from: &str) -> Result<bool> {
        self.fence.check()?;
        self.inner.mount_blob(repo, digest, from).await
    }

    fn verifies_blobs(&self) -> bool {
        self.inner.verifies_blobs()
    }

    async fn push_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        data: BlobStream,
    ) -> Result<()> {
        self.fence.check()?;
        self.inner.push_blob(repo, digest, size, data).await
    }

    async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        manifest: &Manifest,
    ) -> Result<Digest> {
        self.fence.check()?;
        self.inner.push_manifest(repo, reference, manifest).await
    }

    async fn delete_tag(&self, repo: &str, tag: &str) -> Result<()> {
        self.fence.check()?;
        self.inner.delete_tag(repo, tag).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn writes_stop_a_margin_before_the_confirmed_lease_ends() {
        let lease = Duration::from_secs(60);
        let fence = Fence::for_claim("ns/app", OffsetDateTime::now_utc() + lease, lease);
        fence.check().unwrap();
        tokio::time::advance(Duration::from_secs(44)).await;
        fence.check().unwrap();
        tokio::time::advance(Duration::from_secs(2)).await;
        let e = fence.check().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert!(e.message().contains("writing nothing more"), "{e}");

        // A renewal confirmed now, asked for 5 s ago, holds until 55 s from now.
        fence.confirm(Instant::now() - Duration::from_secs(5));
        fence.check().unwrap();
        tokio::time::advance(Duration::from_secs(39)).await;
        fence.check().unwrap();
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(fence.check().is_err());
        // A confirmation of an older renewal (sent 6 s before the last) arriving late never
        // shortens it.
        let deadline = fence.deadline();
        fence.confirm(Instant::now() - Duration::from_secs(47));
        assert_eq!(fence.deadline(), deadline);
    }

    #[tokio::test]
    async fn reads_pass_through_including_the_referrers_api() {
        let registry = crate::registry::MemoryRegistry::new();
        let image = registry.seed_image("ns/app", Some("v1"), "amd64", &[b"layer"]);
        let lease = Duration::from_secs(60);
        let fence = Fence::for_claim("ns/app", OffsetDateTime::now_utc() + lease, lease);
        let fenced = FencedDestination::new(std::sync::Arc::new(registry), fence.into());
        // The memory registry has a referrers API; behind the fence it must still show.
        let answer = fenced
            .referrers("ns/app", &image.digest, None)
            .await
            .unwrap();
        assert!(
            answer.is_some(),
            "the fence hid the destination's referrers API"
        );
    }

    #[test]
    fn a_claim_already_expired_fences_at_once() {
        let lease = Duration::from_secs(60);
        let fence = Fence::for_claim("ns/app", OffsetDateTime::now_utc() - lease, lease);
        assert!(fence.is_expired());
    }
}
