//! [`MemoryStateStore`]: every mirror in one process's memory, for tests and for embedders that
//! keep their own durable copy. Nothing survives the process; workers share it only in-process.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use super::{
    Census, Claim, Declaration, LogEntry, LogRetention, MirrorRecord, MirrorState, RunOutcome,
    StateStore, SyncStatus, TagRecord, redact_secrets,
};
use crate::config::MirrorConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::status;

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
    fn mirror(&mut self, id: &str) -> Result<&mut MirrorRecord> {
        self.mirrors.get_mut(id).ok_or_else(|| not_found(id))
    }
}

pub(crate) fn not_found(id: &str) -> Error {
    Error::new(ErrorKind::NotFound, format!("no mirror {id:?}"))
}

impl MemoryStateStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> Result<T>) -> Result<T> {
        // A panic while holding the lock cannot leave a half-applied transition (each one
        // mutates a clone first or is a single assignment), so a poisoned lock is still usable.
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut inner)
    }

    fn transition(
        &self,
        id: &str,
        f: impl FnOnce(&MirrorConfig, &mut MirrorState) -> Result<()>,
    ) -> Result<MirrorRecord> {
        self.with(|inner| {
            let record = inner.mirror(id)?;
            let mut state = record.state.clone();
            f(&record.config, &mut state)?;
            record.state = state;
            Ok(record.clone())
        })
    }
}

#[async_trait]
impl StateStore for MemoryStateStore {
    async fn create_mirror(
        &self,
        config: &MirrorConfig,
        now: OffsetDateTime,
    ) -> Result<MirrorRecord> {
        config.validate()?;
        self.with(|inner| {
            if inner.mirrors.contains_key(&config.id) {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!("a mirror {:?} already exists", config.id),
                ));
            }
            let record = MirrorRecord {
                config: config.clone(),
                state: MirrorState::new(config, now),
            };
            inner.mirrors.insert(config.id.clone(), record.clone());
            Ok(record)
        })
    }

    async fn declare_mirrors(
        &self,
        configs: &[MirrorConfig],
        now: OffsetDateTime,
    ) -> Result<Vec<Declaration>> {
        for config in configs {
            config.validate()?;
        }
        self.with(|inner| {
            Ok(configs
                .iter()
                .map(|config| {
                    let stored = inner.mirrors.get(&config.id).cloned();
                    let (write, declared) = super::declare(stored, config, now);
                    if let Some(record) = write {
                        inner.mirrors.insert(config.id.clone(), record);
                    }
                    declared
                })
                .collect())
        })
    }

    async fn update_mirror(&self, config: &MirrorConfig) -> Result<MirrorRecord> {
        config.validate()?;
        let now = OffsetDateTime::now_utc();
        self.with(|inner| {
            let record = inner.mirror(&config.id)?;
            record.state.reconfigure(&record.config, config, now);
            record.config = config.clone();
            Ok(record.clone())
        })
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
        self.with(|inner| {
            ensure_deletable(id, &inner.mirror(id)?.state, now)?;
            inner.mirrors.remove(id);
            inner.tag_records.remove(id);
            inner.logs.remove(id);
            Ok(())
        })
    }

    async fn sync_now(&self, id: &str) -> Result<MirrorRecord> {
        self.transition(id, |_, state| state.sync_now(id))
    }

    async fn cancel(&self, id: &str) -> Result<MirrorRecord> {
        self.transition(id, |_, state| state.cancel(id))
    }

    async fn set_enabled(&self, id: &str, enabled: bool) -> Result<MirrorRecord> {
        self.with(|inner| {
            let record = inner.mirror(id)?;
            record.config.enabled = enabled;
            Ok(record.clone())
        })
    }

    async fn spread_first_runs(&self, now: OffsetDateTime, window: Duration) -> Result<usize> {
        self.with(|inner| {
            let mut crowd: Vec<MirrorRecord> = inner
                .mirrors
                .values()
                .filter(|r| r.state.first_run_unplaced(&r.config))
                .cloned()
                .collect();
            status::spread_first_runs(&mut crowd, now, window);
            let moved = crowd.len();
            for record in crowd {
                inner.mirrors.insert(record.config.id.clone(), record);
            }
            Ok(moved)
        })
    }

    async fn claim_due(
        &self,
        worker: &str,
        now: OffsetDateTime,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Claim>> {
        self.with(|inner| {
            let mut due: Vec<(OffsetDateTime, &mut MirrorRecord)> = inner
                .mirrors
                .values_mut()
                .filter_map(|r| {
                    let at = r.state.due_at(r.config.enabled)?;
                    (at <= now).then_some((at, r))
                })
                .collect();
            due.sort_by(|a, b| {
                a.0.cmp(&b.0)
                    .then_with(|| a.1.config.id.cmp(&b.1.config.id))
            });
            Ok(due
                .into_iter()
                .take(max)
                .filter_map(|(_, r)| r.state.claim_if_due(&r.config, worker, now, lease))
                .collect())
        })
    }

    async fn claim(
        &self,
        id: &str,
        worker: &str,
        now: OffsetDateTime,
        lease: Duration,
    ) -> Result<Claim> {
        self.with(|inner| {
            let record = inner.mirror(id)?;
            ensure_no_live_lease(id, &record.state, now)?;
            Ok(record
                .state
                .claim_forced(&record.config, worker, now, lease))
        })
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
        self.with(|inner| {
            inner
                .mirror(&claim.mirror_id)?
                .state
                .renew(claim, now, lease)
        })
    }

    async fn release(
        &self,
        claim: &Claim,
        outcome: &RunOutcome,
        now: OffsetDateTime,
    ) -> Result<MirrorRecord> {
        self.transition(&claim.mirror_id, |config, state| {
            state.release(claim, outcome, config, now)
        })
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

/// A mirror is deleted only while no worker runs it: a run going on after the delete would
/// write to a repository that is no longer mirrored (SEMANTICS.md §8). A lease that expired
/// (its worker died) does not hold a delete up.
pub(crate) fn ensure_deletable(id: &str, state: &MirrorState, now: OffsetDateTime) -> Result<()> {
    ensure_no_live_lease(id, state, now).map_err(|e| {
        Error::new(
            ErrorKind::Conflict,
            format!(
                "{}; cancel the run and delete the mirror once it has stopped",
                e.message()
            ),
        )
    })
}

/// A one-shot claim may take any mirror except one another worker is running right now.
pub(crate) fn ensure_no_live_lease(
    id: &str,
    state: &MirrorState,
    now: OffsetDateTime,
) -> Result<()> {
    match (&state.lease_owner, state.lease_expires) {
        (Some(owner), Some(expires)) if expires > now => Err(Error::new(
            ErrorKind::Conflict,
            format!("mirror {id:?} is being synced by worker {owner:?} (lease until {expires})"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::config::Credentials;

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
        store.create_mirror(&a, now).await.unwrap();
        let mut later = config("ns/later");
        later.sync_start_date = Some(datetime!(2026-06-01 00:00 UTC));
        store.create_mirror(&later, now).await.unwrap();
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
