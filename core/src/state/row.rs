//! The column form of a mirror's state, shared by the SQL stores: times as whole microseconds
//! since the Unix epoch (both SQLite and PostgreSQL compare those exactly and index them), the
//! status by Quay's name, and the configuration as JSON.

use time::OffsetDateTime;

use super::{LogEntry, LogKind, MirrorRecord, MirrorState, TagRecord};
use crate::config::MirrorConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::reference::Digest;
use crate::state::SyncStatus;

/// The columns of the `mirrors` table after `id` and `config`, in this order.
pub(crate) const STATE_COLUMNS: &str = "enabled, status, retries_remaining, start_date_us, \
     next_start_us, last_started_us, last_finished_us, last_error, lease_owner, \
     lease_expires_us, lease_token, due_us";

/// The statement that writes a [`MirrorRow`] into `table`: a new row unless one with its id
/// exists (`insert`), or else the row with its id. Its parameters are the row's fields in order
/// (id, config, then [`STATE_COLUMNS`]), each written `{mark}N` (SQLite `?N`, PostgreSQL `$N`).
pub(crate) fn write_sql(table: &str, mark: char, insert: bool) -> String {
    let columns: Vec<&str> = ["id", "config"]
        .into_iter()
        .chain(STATE_COLUMNS.split(", "))
        .collect();
    let param = |i: usize| format!("{mark}{}", i + 1);
    if insert {
        let values: Vec<String> = (0..columns.len()).map(param).collect();
        format!(
            "INSERT INTO {table} ({}) VALUES ({}) ON CONFLICT (id) DO NOTHING",
            columns.join(", "),
            values.join(", ")
        )
    } else {
        let set: Vec<String> = (1..columns.len())
            .map(|i| format!("{} = {}", columns[i], param(i)))
            .collect();
        format!(
            "UPDATE {table} SET {} WHERE id = {}",
            set.join(", "),
            param(0)
        )
    }
}

/// One `mirrors` row.
#[derive(Debug)]
pub(crate) struct MirrorRow {
    pub id: String,
    pub config: String,
    pub enabled: bool,
    pub status: &'static str,
    pub retries_remaining: i64,
    pub start_date_us: i64,
    pub next_start_us: i64,
    pub last_started_us: Option<i64>,
    pub last_finished_us: Option<i64>,
    pub last_error: Option<String>,
    pub lease_owner: Option<String>,
    pub lease_expires_us: Option<i64>,
    pub lease_token: i64,
    /// [`MirrorState::due_at`]: the one column the claim query filters and orders on.
    pub due_us: Option<i64>,
}

pub(crate) fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::State, format!("corrupt state store: {what}"))
}

/// Whole microseconds since the epoch (both databases' time resolution).
pub(crate) fn micros(t: OffsetDateTime) -> i64 {
    let us = t.unix_timestamp_nanos().div_euclid(1000);
    i64::try_from(us).expect("time's range (±9999 years) fits in i64 microseconds")
}

pub(crate) fn from_micros(us: i64) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .map_err(|e| corrupt(format!("time {us} µs is out of range: {e}")))
}

/// `t` at the resolution the SQL stores keep, so what a call returns equals what it stored.
pub(crate) fn truncate(t: OffsetDateTime) -> OffsetDateTime {
    from_micros(micros(t)).expect("a truncated valid time is valid")
}

fn truncate_state(state: &mut MirrorState) {
    state.start_date = truncate(state.start_date);
    state.next_start = truncate(state.next_start);
    state.last_started = state.last_started.map(truncate);
    state.last_finished = state.last_finished.map(truncate);
    state.lease_expires = state.lease_expires.map(truncate);
}

fn to_i64(n: u64, what: &str) -> i64 {
    i64::try_from(n).unwrap_or_else(|_| panic!("{what} {n} exceeds i64"))
}

fn to_u64(n: i64, what: &str) -> Result<u64> {
    u64::try_from(n).map_err(|_| corrupt(format!("negative {what} {n}")))
}

impl MirrorRow {
    /// The row for `config` and `state`; truncates `state`'s times to what is stored.
    pub fn new(config: &MirrorConfig, state: &mut MirrorState) -> Result<MirrorRow> {
        truncate_state(state);
        Ok(MirrorRow {
            id: config.id.clone(),
            config: serde_json::to_string(config).map_err(|e| {
                Error::new(
                    ErrorKind::Internal,
                    format!("cannot serialize mirror {:?}", config.id),
                )
                .with_source(e)
            })?,
            enabled: config.enabled,
            status: state.status.as_str(),
            retries_remaining: i64::from(state.retries_remaining),
            start_date_us: micros(state.start_date),
            next_start_us: micros(state.next_start),
            last_started_us: state.last_started.map(micros),
            last_finished_us: state.last_finished.map(micros),
            last_error: state.last_error.clone(),
            lease_owner: state.lease_owner.clone(),
            lease_expires_us: state.lease_expires.map(micros),
            lease_token: to_i64(state.lease_token, "lease token"),
            due_us: state.due_at(config.enabled).map(micros),
        })
    }

    pub fn into_record(self) -> Result<MirrorRecord> {
        let config: MirrorConfig = serde_json::from_str(&self.config)
            .map_err(|e| corrupt(format!("mirror {:?}: bad configuration: {e}", self.id)))?;
        let state = MirrorState {
            status: SyncStatus::parse(self.status)?,
            retries_remaining: u32::try_from(self.retries_remaining)
                .map_err(|_| corrupt(format!("retries {}", self.retries_remaining)))?,
            start_date: from_micros(self.start_date_us)?,
            next_start: from_micros(self.next_start_us)?,
            last_started: self.last_started_us.map(from_micros).transpose()?,
            last_finished: self.last_finished_us.map(from_micros).transpose()?,
            last_error: self.last_error,
            lease_owner: self.lease_owner,
            lease_expires: self.lease_expires_us.map(from_micros).transpose()?,
            lease_token: to_u64(self.lease_token, "lease token")?,
        };
        Ok(MirrorRecord { config, state })
    }
}

/// The status column's text as the `&'static str` a [`MirrorRow`] holds.
pub(crate) fn status_name(s: &str) -> Result<&'static str> {
    Ok(SyncStatus::parse(s)?.as_str())
}

pub(crate) fn tag_record_json(record: &TagRecord) -> String {
    serde_json::to_string(record).expect("a map of strings to digests always serializes")
}

pub(crate) fn tag_record_from_json(id: &str, json: &str) -> Result<TagRecord> {
    serde_json::from_str(json).map_err(|e| corrupt(format!("mirror {id:?}: bad tag record: {e}")))
}

/// The query of [`super::StateStore::last_finishes`] over an SQL store's `mirrors` and `log`
/// tables, `id` its one parameter (the mirror id, or NULL for every mirror): per mirror, its log
/// walked back on the `(mirror_id, seq)` index to the newest finish entry.
pub(crate) fn last_finishes_sql(mirrors: &str, log: &str, id: &str) -> String {
    let kinds: Vec<String> = LogKind::FINISHES
        .iter()
        .map(|k| format!("'{}'", log_kind_name(*k)))
        .collect();
    format!(
        "SELECT l.seq, l.mirror_id, l.time_us, l.kind, l.tag, l.digest, l.message, l.failure \
         FROM {mirrors} m JOIN {log} l ON l.seq = (SELECT f.seq FROM {log} f \
         WHERE f.mirror_id = m.id AND f.kind IN ({}) ORDER BY f.seq DESC LIMIT 1) \
         WHERE {id} IS NULL OR m.id = {id} ORDER BY m.id",
        kinds.join(", ")
    )
}

/// A log kind's stored name: its serde name (`tag_synced`, …), so new kinds need no code here.
pub(crate) fn log_kind_name(kind: LogKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .expect("LogKind serializes as a plain string")
}

fn log_kind(name: &str) -> Result<LogKind> {
    serde_json::from_value(serde_json::Value::String(name.to_owned()))
        .map_err(|_| corrupt(format!("unknown log kind {name:?}")))
}

/// A log entry's failure as the SQL stores keep it: JSON text.
pub(crate) fn failure_json(entry: &LogEntry) -> Result<Option<String>> {
    entry
        .failure
        .as_ref()
        .map(|f| {
            serde_json::to_string(f)
                .map_err(|e| Error::new(ErrorKind::Internal, format!("log failure: {e}")))
        })
        .transpose()
}

/// One `usage_log` row read back.
pub(crate) struct LogRow {
    pub seq: i64,
    pub mirror_id: String,
    pub time_us: i64,
    pub kind: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
    pub message: String,
    /// The entry's [`Failure`] as JSON.
    pub failure: Option<String>,
}

impl LogRow {
    pub fn into_entry(self) -> Result<LogEntry> {
        Ok(LogEntry {
            seq: to_u64(self.seq, "log sequence number")?,
            mirror_id: self.mirror_id,
            time: from_micros(self.time_us)?,
            kind: log_kind(&self.kind)?,
            tag: self.tag,
            digest: self
                .digest
                .map(|d| Digest::parse(&d).map_err(|e| corrupt(format!("log digest: {e}"))))
                .transpose()?,
            message: self.message,
            failure: self
                .failure
                .map(|f| serde_json::from_str(&f).map_err(|e| corrupt(format!("log failure: {e}"))))
                .transpose()?,
        })
    }
}

/// A `before` cursor as the SQL stores compare it (no cursor: everything).
pub(crate) fn before_seq(before: Option<u64>) -> i64 {
    before.map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX))
}

pub(crate) fn limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_write_statements_name_each_column_with_its_parameter() {
        assert_eq!(
            write_sql("mirrors", '?', false),
            "UPDATE mirrors SET config = ?2, enabled = ?3, status = ?4, retries_remaining = ?5, \
             start_date_us = ?6, next_start_us = ?7, last_started_us = ?8, last_finished_us = ?9, \
             last_error = ?10, lease_owner = ?11, lease_expires_us = ?12, lease_token = ?13, \
             due_us = ?14 WHERE id = ?1"
        );
        assert_eq!(
            write_sql("regmirror_mirrors", '$', true),
            "INSERT INTO regmirror_mirrors (id, config, enabled, status, retries_remaining, \
             start_date_us, next_start_us, last_started_us, last_finished_us, last_error, \
             lease_owner, lease_expires_us, lease_token, due_us) VALUES ($1, $2, $3, $4, $5, $6, \
             $7, $8, $9, $10, $11, $12, $13, $14) ON CONFLICT (id) DO NOTHING"
        );
    }
}
