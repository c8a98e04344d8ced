//! The worker's Prometheus metrics. They are recorded where the facts already pass: the sync
//! events every notifier receives ([`MetricsNotifier`]), every state store call
//! ([`MeteredStore`], a wrapper around the store) and the core's HTTP client (registry requests
//! by host and status). Labels are bounded: a mirror's id, a store operation, an outcome, a
//! registry host and status code — never a tag.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use regmirror::engine::{BlobTransfer, ProgressEvent};
use regmirror::notify::EventKind;
use regmirror::state::{
    Census, Claim, Declaration, LogEntry, LogRetention, MirrorRecord, RunOutcome, TagRecord,
};
use regmirror::worker::RunProgress;
use regmirror::{ErrorKind, MirrorEvent, Notifier, Result, StateStore, SyncStatus, ValidConfig};
use time::OffsetDateTime;

use crate::failure::{CliResult, Failure};

/// Bucket bounds of the sync duration histogram (seconds: a second to a day).
const SYNC_BUCKETS: &[f64] = &[
    1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0,
];
/// Bucket bounds of the store call latency histogram (seconds).
const STORE_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Install the process's metrics recorder and describe the metrics.
pub fn install() -> CliResult<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("regmirror_sync_duration_seconds".into()),
            SYNC_BUCKETS,
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("regmirror_store_call_duration_seconds".into()),
                STORE_BUCKETS,
            )
        })
        .map_err(|e| Failure::invalid(format!("metrics: {e}")))?
        .install_recorder()
        .map_err(|e| Failure::invalid(format!("metrics: {e}")))?;
    describe();
    Ok(handle)
}

fn describe() {
    describe_counter!(
        "regmirror_syncs_total",
        "Sync runs that ended, by mirror and outcome (success, failed, cancelled)"
    );
    describe_counter!(
        "regmirror_sync_failures_total",
        "Failed sync runs by mirror, reason (tags: some tags failed; run: the run as a whole) \
         and kind (the run's failure kind: Unauthorized, Network, Timeout, ...)"
    );
    describe_histogram!(
        "regmirror_sync_duration_seconds",
        "Duration of the sync runs that ended, by mirror"
    );
    describe_gauge!(
        "regmirror_mirror_last_sync_status",
        "1 if the mirror's last run succeeded, 0 if it failed or was cancelled"
    );
    describe_gauge!(
        "regmirror_mirror_sync_complete",
        "0 while a run of the mirror is in progress in this worker, 1 once it ended"
    );
    describe_gauge!(
        "regmirror_mirror_last_sync_timestamp_seconds",
        "When the mirror's last run ended (Unix time)"
    );
    describe_gauge!(
        "regmirror_mirror_pending_tags",
        "Selected tags the mirror's run in progress has not finished yet (0 between runs)"
    );
    describe_counter!(
        "regmirror_blobs_copied_total",
        "Blobs streamed from source to destination (not mounted or already present), by mirror"
    );
    describe_gauge!(
        "regmirror_syncs_running",
        "Sync runs in progress in this worker"
    );
    describe_counter!(
        "regmirror_bytes_copied_total",
        "Blob bytes streamed from source to destination, by mirror"
    );
    describe_counter!(
        "regmirror_tags_synced_total",
        "Destination tags created or moved, by mirror"
    );
    describe_counter!(
        "regmirror_tags_deleted_total",
        "Destination tags pruned, by mirror"
    );
    describe_counter!("regmirror_tags_failed_total", "Tags that failed, by mirror");
    describe_counter!(
        "regmirror_referrers_copied_total",
        "Referrers (signatures, SBOMs, attestations) copied, by mirror"
    );
    describe_counter!(
        "regmirror_lease_takeovers_total",
        "Claims that took over a mirror whose previous worker's lease expired"
    );
    describe_counter!(
        "regmirror_lease_renewals_failed_total",
        "Lease renewals the state store refused or did not answer"
    );
    describe_histogram!(
        "regmirror_store_call_duration_seconds",
        "State store call latency, by operation"
    );
    describe_counter!(
        "regmirror_store_errors_total",
        "State store calls that failed, by operation"
    );
    describe_gauge!(
        "regmirror_store_healthy",
        "1 while the state store answered the worker's last call, 0 otherwise"
    );
    describe_counter!(
        "regmirror_registry_requests_total",
        "HTTP requests to registries, by host and status code (error: no response)"
    );
}

/// Records what only a run's progress tells: the tags still pending and the blobs copied.
pub fn run_progress() -> RunProgress {
    RunProgress::new(|mirror, event| match event {
        ProgressEvent::Planned { selected, .. } => {
            gauge!("regmirror_mirror_pending_tags", "mirror" => mirror.to_owned())
                .set(selected as f64);
        }
        ProgressEvent::TagFinished { .. } => {
            gauge!("regmirror_mirror_pending_tags", "mirror" => mirror.to_owned()).decrement(1.0);
        }
        ProgressEvent::BlobFinished {
            transfer: BlobTransfer::Copied,
            ..
        } => {
            counter!("regmirror_blobs_copied_total", "mirror" => mirror.to_owned()).increment(1);
        }
        _ => {}
    })
}

/// Set at scrape time from the engine's view of the store.
pub fn observe_health(healthy: bool) {
    gauge!("regmirror_store_healthy").set(if healthy { 1.0 } else { 0.0 });
}

/// Records each sync's outcome from the events the engine sends every notifier.
#[derive(Debug, Default)]
pub struct MetricsNotifier;

#[async_trait]
impl Notifier for MetricsNotifier {
    async fn notify(&self, event: &MirrorEvent) -> Result<()> {
        let mirror = event.mirror_id.clone();
        let outcome = match event.event {
            EventKind::SyncStarted => {
                gauge!("regmirror_syncs_running").increment(1.0);
                gauge!("regmirror_mirror_sync_complete", "mirror" => mirror).set(0.0);
                return Ok(());
            }
            EventKind::SyncSucceeded => "success",
            EventKind::SyncFailed => "failed",
            EventKind::SyncCancelled => "cancelled",
        };
        gauge!("regmirror_syncs_running").decrement(1.0);
        // Whatever the run got through, nothing is pending once it ended.
        gauge!("regmirror_mirror_pending_tags", "mirror" => mirror.clone()).set(0.0);
        counter!("regmirror_syncs_total", "mirror" => mirror.clone(), "outcome" => outcome)
            .increment(1);
        if event.event == EventKind::SyncFailed {
            let reason = if event.tags_failed.is_empty() {
                "run"
            } else {
                "tags"
            };
            // The run's failure (its first failed tag's when tags failed): an ErrorKind name,
            // a bounded set. A failed event always carries one.
            let kind = event
                .failure
                .as_ref()
                .map_or(ErrorKind::Internal, |f| f.kind)
                .as_str();
            counter!("regmirror_sync_failures_total", "mirror" => mirror.clone(), "reason" => reason, "kind" => kind)
                .increment(1);
        }
        histogram!("regmirror_sync_duration_seconds", "mirror" => mirror.clone())
            .record(Duration::from_millis(event.duration_ms).as_secs_f64());
        let succeeded = if event.event == EventKind::SyncSucceeded {
            1.0
        } else {
            0.0
        };
        gauge!("regmirror_mirror_last_sync_status", "mirror" => mirror.clone()).set(succeeded);
        gauge!("regmirror_mirror_sync_complete", "mirror" => mirror.clone()).set(1.0);
        gauge!("regmirror_mirror_last_sync_timestamp_seconds", "mirror" => mirror.clone())
            .set(OffsetDateTime::now_utc().unix_timestamp() as f64);
        counter!("regmirror_bytes_copied_total", "mirror" => mirror.clone())
            .increment(event.bytes_copied);
        counter!("regmirror_referrers_copied_total", "mirror" => mirror.clone())
            .increment(event.referrers_copied);
        let count = |tags: &[String]| tags.len() as u64;
        counter!("regmirror_tags_synced_total", "mirror" => mirror.clone())
            .increment(count(&event.tags_synced));
        counter!("regmirror_tags_deleted_total", "mirror" => mirror.clone())
            .increment(count(&event.tags_deleted));
        counter!("regmirror_tags_failed_total", "mirror" => mirror)
            .increment(count(&event.tags_failed));
        Ok(())
    }
}

/// A state store that times every call and counts failures, takeovers and failed renewals;
/// otherwise it is the store it wraps.
#[derive(Debug)]
pub struct MeteredStore(pub Arc<dyn StateStore>);

impl MeteredStore {
    async fn timed<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let started = Instant::now();
        let result = call.await;
        histogram!("regmirror_store_call_duration_seconds", "operation" => operation)
            .record(started.elapsed().as_secs_f64());
        if result.is_err() {
            counter!("regmirror_store_errors_total", "operation" => operation).increment(1);
        }
        result
    }
}

#[async_trait]
impl StateStore for MeteredStore {
    async fn create_mirror(
        &self,
        config: &ValidConfig,
        now: OffsetDateTime,
    ) -> Result<MirrorRecord> {
        self.timed("create_mirror", self.0.create_mirror(config, now))
            .await
    }

    async fn declare_mirrors(
        &self,
        configs: &[ValidConfig],
        now: OffsetDateTime,
    ) -> Result<Vec<Declaration>> {
        self.timed("declare_mirrors", self.0.declare_mirrors(configs, now))
            .await
    }

    async fn update_mirror(&self, config: &ValidConfig) -> Result<MirrorRecord> {
        self.timed("update_mirror", self.0.update_mirror(config))
            .await
    }

    async fn get_mirror(&self, id: &str) -> Result<MirrorRecord> {
        self.timed("get_mirror", self.0.get_mirror(id)).await
    }

    async fn list_mirrors(&self) -> Result<Vec<MirrorRecord>> {
        self.timed("list_mirrors", self.0.list_mirrors()).await
    }

    async fn delete_mirror(&self, id: &str) -> Result<()> {
        self.timed("delete_mirror", self.0.delete_mirror(id)).await
    }

    async fn sync_now(&self, id: &str) -> Result<MirrorRecord> {
        self.timed("sync_now", self.0.sync_now(id)).await
    }

    async fn cancel(&self, id: &str) -> Result<MirrorRecord> {
        self.timed("cancel", self.0.cancel(id)).await
    }

    async fn set_enabled(&self, id: &str, enabled: bool) -> Result<MirrorRecord> {
        self.timed("set_enabled", self.0.set_enabled(id, enabled))
            .await
    }

    async fn spread_first_runs(&self, now: OffsetDateTime, window: Duration) -> Result<usize> {
        self.timed("spread_first_runs", self.0.spread_first_runs(now, window))
            .await
    }

    async fn claim_due(
        &self,
        worker: &str,
        now: OffsetDateTime,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Claim>> {
        let claims = self
            .timed("claim_due", self.0.claim_due(worker, now, max, lease))
            .await?;
        count_takeovers(claims.iter());
        Ok(claims)
    }

    async fn claim(
        &self,
        id: &str,
        worker: &str,
        now: OffsetDateTime,
        lease: Duration,
    ) -> Result<Claim> {
        let claim = self
            .timed("claim", self.0.claim(id, worker, now, lease))
            .await?;
        count_takeovers(std::iter::once(&claim));
        Ok(claim)
    }

    async fn last_finishes(&self, id: Option<&str>) -> Result<Vec<LogEntry>> {
        self.timed("last_finishes", self.0.last_finishes(id)).await
    }

    async fn census(
        &self,
        worker: &str,
        now: OffsetDateTime,
        live_until: OffsetDateTime,
    ) -> Result<Census> {
        self.timed("census", self.0.census(worker, now, live_until))
            .await
    }

    async fn renew(
        &self,
        claim: &Claim,
        now: OffsetDateTime,
        lease: Duration,
    ) -> Result<SyncStatus> {
        let renewed = self.timed("renew", self.0.renew(claim, now, lease)).await;
        if renewed.is_err() {
            counter!("regmirror_lease_renewals_failed_total").increment(1);
        }
        renewed
    }

    async fn release(
        &self,
        claim: &Claim,
        outcome: &RunOutcome,
        now: OffsetDateTime,
    ) -> Result<MirrorRecord> {
        self.timed("release", self.0.release(claim, outcome, now))
            .await
    }

    async fn save_tag_record(&self, id: &str, record: &TagRecord) -> Result<()> {
        self.timed("save_tag_record", self.0.save_tag_record(id, record))
            .await
    }

    async fn tag_record(&self, id: &str) -> Result<Option<TagRecord>> {
        self.timed("tag_record", self.0.tag_record(id)).await
    }

    async fn clear_tag_record(&self, id: &str) -> Result<()> {
        self.timed("clear_tag_record", self.0.clear_tag_record(id))
            .await
    }

    async fn append_log(&self, entries: &[LogEntry]) -> Result<()> {
        self.timed("append_log", self.0.append_log(entries)).await
    }

    async fn logs(&self, id: &str, limit: usize, before: Option<u64>) -> Result<Vec<LogEntry>> {
        self.timed("logs", self.0.logs(id, limit, before)).await
    }

    async fn prune_logs(&self, retention: &LogRetention, now: OffsetDateTime) -> Result<u64> {
        self.timed("prune_logs", self.0.prune_logs(retention, now))
            .await
    }
}

fn count_takeovers<'a>(claims: impl Iterator<Item = &'a Claim>) {
    let taken_over = claims.filter(|c| c.taken_over.is_some()).count() as u64;
    if taken_over > 0 {
        counter!("regmirror_lease_takeovers_total").increment(taken_over);
    }
}

#[cfg(test)]
mod tests {
    use regmirror::{Error, Failure};

    use super::*;

    fn failed(tags_failed: &[&str], kind: ErrorKind) -> MirrorEvent {
        MirrorEvent {
            event: EventKind::SyncFailed,
            mirror_id: "ns/app".into(),
            source: "quay.io/ns/app".into(),
            patterns: vec!["*".into()],
            tags_synced: Vec::new(),
            tags_failed: tags_failed.iter().map(|t| t.to_string()).collect(),
            tags_deleted: Vec::new(),
            bytes_copied: 0,
            referrers_copied: 0,
            duration_ms: 1,
            error: Some("failed".into()),
            failure: Some(Failure::from(Error::new(kind, "failed"))),
            tag_failures: Vec::new(),
            note: None,
        }
    }

    #[test]
    fn sync_failures_say_their_kind() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        // On this thread, where the local recorder is.
        metrics::with_local_recorder(&recorder, || {
            let notify = |event| runtime.block_on(MetricsNotifier.notify(&event)).unwrap();
            notify(failed(&["v1"], ErrorKind::Unauthorized));
            notify(failed(&[], ErrorKind::Network));
            notify(failed(&[], ErrorKind::Network));
        });
        let text = handle.render();
        for line in [
            r#"regmirror_sync_failures_total{mirror="ns/app",reason="tags",kind="Unauthorized"} 1"#,
            r#"regmirror_sync_failures_total{mirror="ns/app",reason="run",kind="Network"} 2"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
    }
}
