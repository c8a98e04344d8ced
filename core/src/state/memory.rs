//! [`MemoryStateStore`]: every mirror in one process's memory, for tests and for embedders that
//! keep their own durable copy. Nothing survives the process; workers share it only in-process.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use super::ops::{self, Txn};
use super::{
    Census, Claim, Declaration, LogEntry, LogKind, LogRetention, MirrorRecord, RunOutcome,
    StateStore, SyncStatus, TagRecord, redact_secrets,
};
use crate::config::ValidConfig;
use crate::error::Result;

/// A [`StateStore`] in memory. Each operation holds one lock, so each is atomic.
#[derive(Debug, Default)]
pub struct MemoryStateStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    mirrors: BTreeMap<String, MirrorRecord>,
    tag_records: HashMap<String, TagRecord>,
    logs: HashMap<String, Vec<LogEntry>>,
    last_seq: u64,
    /// Worker → live until.
    workers: HashMap<String, OffsetDateTime>,
}

impl Inner {
    fn mirror(&self, id: &str) -> Result<&MirrorRecord> {
        self.mirrors.get(id).ok_or_else(|| ops::not_found(id))
    }
}

/// The whole store is the transaction: [`MemoryStateStore::write`] holds its lock throughout.
impl Txn for Inner {
    async fn get(&mut self, id: &str) -> Result<Option<MirrorRecord>> {
        Ok(self.mirrors.get(id).cloned())
    }

    async fn insert(&mut self, record: &mut MirrorRecord) -> Result<bool> {
        match self.mirrors.entry(record.config.id.clone()) {
            Entry::Occupied(_) => Ok(false),
            Entry::Vacant(slot) => {
                slot.insert(record.clone());
                Ok(true)
            }
        }
    }

    async fn put(&mut self, record: &mut MirrorRecord) -> Result<()> {
        self.mirrors
            .insert(record.config.id.clone(), record.clone());
        Ok(())
    }

    async fn remove(&mut self, id: &str) -> Result<()> {
        self.mirrors.remove(id);
        self.tag_records.remove(id);
        self.logs.remove(id);
        Ok(())
    }

    async fn due(&mut self, now: OffsetDateTime, max: usize) -> Result<Vec<MirrorRecord>> {
        let mut due: Vec<(OffsetDateTime, &MirrorRecord)> = self
            .mirrors
            .values()
            .filter_map(|r| {
                let at = r.state.due_at(r.config.enabled)?;
                (at <= now).then_some((at, r))
            })
            .collect();
        // The map iterates in id order and the sort is stable: earliest first, by id among
        // equals.
        due.sort_by_key(|(at, _)| *at);
        Ok(due.into_iter().take(max).map(|(_, r)| r.clone()).collect())
    }

    async fn unplaced(&mut self, _now: OffsetDateTime) -> Result<Vec<MirrorRecord>> {
        Ok(self
            .mirrors
            .values()
            .filter(|r| r.state.first_run_unplaced(&r.config))
            .cloned()
            .collect())
    }
}

impl MemoryStateStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> Result<T>) -> Result<T> {
        // A panic while holding the lock cannot leave a half-applied change to a mirror (each
        // is written whole, by one assignment), so a poisoned lock is still usable.
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut inner)
    }

    /// Run one operation of [`ops`] under the lock. There is nothing to roll back: these
    /// primitives never fail, and an operation fails only before its first write.
    fn write<T>(&self, op: impl AsyncFnOnce(&mut Inner) -> Result<T>) -> Result<T> {
        self.with(|inner| ops::ready(op(inner)))
    }
}

#[async_trait]
impl StateStore for MemoryStateStore {
    async fn create_mirror(
        &self,
        config: &ValidConfig,
        now: OffsetDateTime,
    ) -> Result<MirrorRecord> {
        self.write(async |tx| ops::create(tx, config, now).await)
    }

    async fn declare_mirrors(
        &self,
        configs: &[ValidConfig],
        now: OffsetDateTime,
    ) -> Result<Vec<Declaration>> {
        self.write(async |tx| ops::declare(tx, configs, now).await)
    }

    async fn update_mirror(&self, config: &ValidConfig) -> Result<MirrorRecord> {
        let now = OffsetDateTime::now_utc();
        self.write(async |tx| ops::update(tx, config, now).await)
    }

    async fn get_mirror(&self, id: &str) -> Result<MirrorRecord> {
        self.with(|inner| Ok(inner.mirror(id)?.clone()))
    }

    async fn list_mirrors(&self) -> Result<Vec<MirrorRecord>> {
        self.with(|inner| {
            Ok(inner
                .mirrors
                .values()
                .cloned()
                .map(|mut r| {
                    redact_secrets(&mut r.config);
                    r
                })
                .collect())
        })
    }

    async fn delete_mirror(&self, id: &str) -> Result<()> {
        let now = OffsetDateTime::now_utc();
        self.write(async |tx| ops::delete(tx, id, now).await)
    }

    async fn sync_now(&self, id: &str) -> Result<MirrorRecord> {
        self.write(async |tx| ops::sync_now(tx, id).await)
    }

    async fn cancel(&self, id: &str) -> Result<MirrorRecord> {
        self.write(async |tx| ops::cancel(tx, id).await)
    }

    async fn set_enabled(&self, id: &str, enabled: bool) -> Result<MirrorRecord> {
        self.write(async |tx| ops::set_enabled(tx, id, enabled).await)
    }

    async fn spread_first_runs(&self, now: OffsetDateTime, window: Duration) -> Result<usize> {
        self.write(async |tx| ops::spread_first_runs(tx, now, window).await)
    }

    async fn claim_due(
        &self,
        worker: &str,
        now: OffsetDateTime,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Claim>> {
        self.write(async |tx| ops::claim_due(tx, worker, now, max, lease).await)
    }

    async fn claim(
        &self,
        id: &str,
        worker: &str,
        now: OffsetDateTime,
        lease: Duration,
    ) -> Result<Claim> {
        self.write(async |tx| ops::claim(tx, id, worker, now, lease).await)
    }

    async fn census(
        &self,
        worker: &str,
        now: OffsetDateTime,
        live_until: OffsetDateTime,
    ) -> Result<Census> {
        self.with(|inner| {
            inner.workers.insert(worker.to_owned(), live_until);
            inner.workers.retain(|_, until| *until >= now);
            let mut census = Census {
                live_workers: inner.workers.len(),
                ..Census::default()
            };
            for r in inner.mirrors.values() {
                if r.state.is_claimable(r.config.enabled, now) {
                    census.due += 1;
                } else if r.state.holds_live_lease(now) {
                    census.running += 1;
                }
            }
            Ok(census)
        })
    }

    async fn renew(
        &self,
        claim: &Claim,
        now: OffsetDateTime,
        lease: Duration,
    ) -> Result<SyncStatus> {
        self.write(async |tx| ops::renew(tx, claim, now, lease).await)
    }

    async fn release(
        &self,
        claim: &Claim,
        outcome: &RunOutcome,
        now: OffsetDateTime,
    ) -> Result<MirrorRecord> {
        self.write(async |tx| ops::release(tx, claim, outcome, now).await)
    }

    async fn save_tag_record(&self, id: &str, record: &TagRecord) -> Result<()> {
        self.with(|inner| {
            inner.mirror(id)?;
            inner.tag_records.insert(id.to_owned(), record.clone());
            Ok(())
        })
    }

    async fn tag_record(&self, id: &str) -> Result<Option<TagRecord>> {
        self.with(|inner| Ok(inner.tag_records.get(id).cloned()))
    }

    async fn clear_tag_record(&self, id: &str) -> Result<()> {
        self.with(|inner| {
            inner.tag_records.remove(id);
            Ok(())
        })
    }

    async fn append_log(&self, entries: &[LogEntry]) -> Result<()> {
        self.with(|inner| {
            for entry in entries {
                inner.mirror(&entry.mirror_id)?;
            }
            for entry in entries {
                inner.last_seq += 1;
                let stored = LogEntry {
                    seq: inner.last_seq,
                    ..entry.clone()
                };
                inner
                    .logs
                    .entry(entry.mirror_id.clone())
                    .or_default()
                    .push(stored);
            }
            Ok(())
        })
    }

    async fn logs(&self, id: &str, limit: usize, before: Option<u64>) -> Result<Vec<LogEntry>> {
        self.with(|inner| {
            let Some(entries) = inner.logs.get(id) else {
                return Ok(Vec::new());
            };
            Ok(entries
                .iter()
                .rev()
                .filter(|e| before.is_none_or(|b| e.seq < b))
                .take(limit)
                .cloned()
                .collect())
        })
    }

    async fn last_finishes(&self, id: Option<&str>) -> Result<Vec<LogEntry>> {
        self.with(|inner| {
            let mut last: Vec<LogEntry> = inner
                .logs
                .iter()
                .filter(|(mirror, _)| id.is_none_or(|id| id == mirror.as_str()))
                .filter_map(|(_, entries)| {
                    entries
                        .iter()
                        .rev()
                        .find(|e| LogKind::FINISHES.contains(&e.kind))
                        .cloned()
                })
                .collect();
            last.sort_by(|a, b| a.mirror_id.cmp(&b.mirror_id));
            Ok(last)
        })
    }

    async fn prune_logs(&self, retention: &LogRetention, now: OffsetDateTime) -> Result<u64> {
        let cutoff = retention.cutoff(now);
        self.with(|inner| {
            let mut removed = 0;
            for entries in inner.logs.values_mut() {
                let before = entries.len();
                if let Some(cutoff) = cutoff {
                    entries.retain(|e| e.time >= cutoff);
                }
                if let Some(max) = retention.max_entries {
                    // Oldest first: the newest `max` are at the end.
                    let excess = entries.len().saturating_sub(max);
                    entries.drain(..excess);
                }
                removed += (before - entries.len()) as u64;
            }
            Ok(removed)
        })
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::config::{Credentials, MirrorConfig};
    use crate::error::ErrorKind;

    fn config(id: &str) -> MirrorConfig {
        let mut c = MirrorConfig::new(id, "quay.io/coreos/etcd".parse().unwrap(), &["v3.*"]);
        c.sync_start_date = Some(datetime!(2026-01-01 00:00 UTC));
        c
    }

    #[tokio::test]
    async fn claims_each_due_mirror_once_and_redacts_listings() {
        let store = MemoryStateStore::new();
        let now = datetime!(2026-01-01 00:00 UTC);
        let mut a = config("ns/a");
        a.source_credentials = Some(Credentials::new("bot", "s3cret"));
        store
            .create_mirror(&a.clone().validated().unwrap(), now)
            .await
            .unwrap();
        let mut later = config("ns/later");
        later.sync_start_date = Some(datetime!(2026-06-01 00:00 UTC));
        store
            .create_mirror(&later.validated().unwrap(), now)
            .await
            .unwrap();
        let lease = Duration::from_secs(60);

        let claims = store.claim_due("w1", now, 10, lease).await.unwrap();
        assert_eq!(claims.len(), 1);
        assert_eq!(
            claims[0]
                .config
                .source_credentials
                .as_ref()
                .unwrap()
                .password,
            "s3cret"
        );
        assert!(
            store
                .claim_due("w2", now, 10, lease)
                .await
                .unwrap()
                .is_empty()
        );
        let listed = store.list_mirrors().await.unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(
            listed[0]
                .config
                .source_credentials
                .as_ref()
                .unwrap()
                .password,
            ""
        );
        assert_eq!(listed[0].state.status, SyncStatus::Syncing);
        let e = store.claim("ns/a", "w2", now, lease).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict);
    }
}
