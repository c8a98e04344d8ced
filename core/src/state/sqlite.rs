//! [`SqliteStateStore`]: the embedded default, one SQLite file. Several worker processes on one
//! machine may share the file (WAL journal, busy timeout); every change is one transaction, and
//! claims take the write lock up front (`BEGIN IMMEDIATE`) so two workers never claim the same
//! mirror. The schema version lives in `PRAGMA user_version`; opening a file migrates it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};
use time::OffsetDateTime;

use super::ops::{self, Txn, not_found};
use super::row::{
    LogRow, MirrorRow, STATE_COLUMNS, before_seq, failure_json, last_finishes_sql, limit,
    log_kind_name, micros, status_name, tag_record_from_json, tag_record_json, truncate, write_sql,
};
use super::{
    Census, Claim, Declaration, LogEntry, LogRetention, MirrorRecord, RunOutcome, StateStore,
    StoreTimeouts, SyncStatus, TagRecord, redact_secrets,
};
use crate::config::ValidConfig;
use crate::error::{Error, ErrorKind, Result};

/// Schema migrations; entry `i` takes a database from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE mirrors (
        id TEXT PRIMARY KEY,
        config TEXT NOT NULL,
        enabled INTEGER NOT NULL,
        status TEXT NOT NULL,
        retries_remaining INTEGER NOT NULL,
        start_date_us INTEGER NOT NULL,
        next_start_us INTEGER NOT NULL,
        last_started_us INTEGER,
        last_finished_us INTEGER,
        last_error TEXT,
        lease_owner TEXT,
        lease_expires_us INTEGER,
        lease_token INTEGER NOT NULL,
        due_us INTEGER
    );
    CREATE INDEX mirrors_due ON mirrors (due_us, id) WHERE due_us IS NOT NULL;
    CREATE TABLE tag_records (
        mirror_id TEXT PRIMARY KEY REFERENCES mirrors (id) ON DELETE CASCADE,
        record TEXT NOT NULL
    );
    CREATE TABLE usage_log (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        mirror_id TEXT NOT NULL REFERENCES mirrors (id) ON DELETE CASCADE,
        time_us INTEGER NOT NULL,
        kind TEXT NOT NULL,
        tag TEXT,
        digest TEXT,
        message TEXT NOT NULL
    );
    CREATE INDEX usage_log_mirror ON usage_log (mirror_id, seq);
",
    "
    CREATE TABLE workers (
        id TEXT PRIMARY KEY,
        live_until_us INTEGER NOT NULL
    );
",
    // A failed tag's or run's failure as data (JSON of `Failure`).
    "ALTER TABLE usage_log ADD COLUMN failure TEXT;",
];

/// A [`StateStore`] in one SQLite file.
#[derive(Clone)]
pub struct SqliteStateStore {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteStateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStateStore")
            .field("path", &self.path)
            .finish()
    }
}

fn db_error(e: rusqlite::Error) -> Error {
    let kind = match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            ErrorKind::Timeout
        }
        _ => ErrorKind::State,
    };
    Error::new(kind, format!("sqlite: {e}")).with_source(e)
}

impl SqliteStateStore {
    /// Open (creating if needed) the store at `path` and migrate its schema, with the default
    /// [`StoreTimeouts`].
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, StoreTimeouts::default()).await
    }

    /// [`SqliteStateStore::open`] where a write waits at most `timeouts.query` for another
    /// process's write lock (SQLite's busy timeout) before failing as a timeout.
    pub async fn open_with(path: impl AsRef<Path>, timeouts: StoreTimeouts) -> Result<Self> {
        let path = path.as_ref().to_owned();
        let opened = path.clone();
        let conn =
            tokio::task::spawn_blocking(move || Self::open_blocking(&opened, timeouts.query))
                .await
                .map_err(|e| {
                    Error::new(ErrorKind::Internal, format!("sqlite open panicked: {e}"))
                })??;
        Ok(SqliteStateStore {
            path,
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn open_blocking(path: &Path, busy_timeout: Duration) -> Result<Connection> {
        // SQLite says only "unable to open database file" for these two common mistakes.
        let invalid = |why: String| Err(Error::new(ErrorKind::InvalidConfig, why));
        if path.is_dir() {
            return invalid(format!(
                "{} is a directory; give the database file in it, as in {}",
                path.display(),
                path.join("regmirror.db").display()
            ));
        }
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
            && !dir.is_dir()
        {
            return invalid(format!(
                "the directory {} does not exist; create it first",
                dir.display()
            ));
        }
        let context = |e: rusqlite::Error| db_error(e).context(format!("{}", path.display()));
        let mut conn = Connection::open(path).map_err(context)?;
        conn.busy_timeout(busy_timeout).map_err(context)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(context)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::new(
                ErrorKind::State,
                format!(
                    "{}: SQLite refused WAL mode (journal_mode is {mode})",
                    path.display()
                ),
            ));
        }
        conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")
            .map_err(context)?;
        migrate(&mut conn).map_err(|e| e.context(path.display()))?;
        Ok(conn)
    }

    /// Where the store lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Run `f` on the connection on the blocking pool (SQLite calls block).
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            // A panic inside `f` rolls its transaction back (Transaction's Drop), so the
            // connection behind a poisoned lock is still consistent.
            let mut conn = conn
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&mut conn)
        })
        .await
        .map_err(|e| Error::new(ErrorKind::Internal, format!("sqlite call panicked: {e}")))?
    }

    /// Run one operation of [`ops`] in a write transaction, committed when it succeeds.
    async fn write<T: Send + 'static>(
        &self,
        op: impl AsyncFnOnce(&mut Transaction<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.run(move |conn| {
            let mut tx = write_tx(conn)?;
            let done = ops::ready(op(&mut tx))?;
            tx.commit().map_err(db_error)?;
            Ok(done)
        })
        .await
    }
}

fn migrate(conn: &mut Connection) -> Result<()> {
    // Read first: a store already at this version (every open but the first) needs no write
    // lock, so read-only commands never wait for, or block, a worker's write.
    let current: usize = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(db_error)?;
    if current == MIGRATIONS.len() {
        return Ok(());
    }
    let tx = write_tx(conn)?;
    let version: usize = tx
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(db_error)?;
    if version > MIGRATIONS.len() {
        return Err(Error::new(
            ErrorKind::State,
            format!(
                "the database has schema version {version}, newer than this regmirror knows ({})",
                MIGRATIONS.len()
            ),
        ));
    }
    for migration in &MIGRATIONS[version..] {
        tx.execute_batch(migration).map_err(db_error)?;
    }
    tx.pragma_update(None, "user_version", MIGRATIONS.len())
        .map_err(db_error)?;
    tx.commit().map_err(db_error)
}

/// Every change takes the write lock at its start, so a read-then-write never fails half way
/// with `SQLITE_BUSY` (which a deferred transaction can, and which no retry can fix).
fn write_tx(conn: &mut Connection) -> Result<Transaction<'_>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_error)
}

fn select_mirrors(filter: &str) -> String {
    format!("SELECT id, config, {STATE_COLUMNS} FROM mirrors {filter}")
}

fn read_row(r: &Row<'_>) -> rusqlite::Result<(MirrorRow, String)> {
    let status: String = r.get(3)?;
    Ok((
        MirrorRow {
            id: r.get(0)?,
            config: r.get(1)?,
            enabled: r.get(2)?,
            status: "",
            retries_remaining: r.get(4)?,
            start_date_us: r.get(5)?,
            next_start_us: r.get(6)?,
            last_started_us: r.get(7)?,
            last_finished_us: r.get(8)?,
            last_error: r.get(9)?,
            lease_owner: r.get(10)?,
            lease_expires_us: r.get(11)?,
            lease_token: r.get(12)?,
            due_us: r.get(13)?,
        },
        status,
    ))
}

fn to_record((mut row, status): (MirrorRow, String)) -> Result<MirrorRecord> {
    row.status = status_name(&status)?;
    row.into_record()
}

fn get(conn: &Connection, id: &str) -> Result<Option<MirrorRecord>> {
    conn.query_row(&select_mirrors("WHERE id = ?1"), [id], read_row)
        .optional()
        .map_err(db_error)?
        .map(to_record)
        .transpose()
}

fn query(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<Vec<MirrorRecord>> {
    let mut stmt = conn.prepare_cached(sql).map_err(db_error)?;
    let rows = stmt.query_map(params, read_row).map_err(db_error)?;
    rows.map(|row| to_record(row.map_err(db_error)?)).collect()
}

/// The mirrors due at `now` that may be waiting for their first run to be placed
/// ([`MirrorState::first_run_unplaced`] decides).
fn unplaced_first_runs(conn: &Connection, now: OffsetDateTime) -> Result<Vec<MirrorRecord>> {
    query(
        conn,
        &select_mirrors(
            "WHERE due_us <= ?1 AND status = 'NEVER_RUN' AND last_started_us IS NULL \
             AND next_start_us = start_date_us ORDER BY id",
        ),
        params![micros(now)],
    )
}

/// Write a mirror row: `insert` a new one (unless the id exists), or update one. Cuts `record`'s
/// times to what is stored; returns how many rows changed.
fn write_row(tx: &Transaction<'_>, record: &mut MirrorRecord, insert: bool) -> Result<usize> {
    let row = MirrorRow::new(&record.config, &mut record.state)?;
    tx.execute(
        &write_sql("mirrors", '?', insert),
        params![
            row.id,
            row.config,
            row.enabled,
            row.status,
            row.retries_remaining,
            row.start_date_us,
            row.next_start_us,
            row.last_started_us,
            row.last_finished_us,
            row.last_error,
            row.lease_owner,
            row.lease_expires_us,
            row.lease_token,
            row.due_us,
        ],
    )
    .map_err(db_error)
}

/// Inside [`SqliteStateStore::write`]'s transaction, which holds the write lock from its start.
impl Txn for Transaction<'_> {
    fn stored_time(t: OffsetDateTime) -> OffsetDateTime {
        truncate(t)
    }

    async fn get(&mut self, id: &str) -> Result<Option<MirrorRecord>> {
        get(self, id)
    }

    async fn insert(&mut self, record: &mut MirrorRecord) -> Result<bool> {
        Ok(write_row(self, record, true)? == 1)
    }

    async fn put(&mut self, record: &mut MirrorRecord) -> Result<()> {
        write_row(self, record, false).map(drop)
    }

    async fn remove(&mut self, id: &str) -> Result<()> {
        // The tag record and the usage log go with it (ON DELETE CASCADE).
        self.execute("DELETE FROM mirrors WHERE id = ?1", [id])
            .map(drop)
            .map_err(db_error)
    }

    async fn due(&mut self, now: OffsetDateTime, max: usize) -> Result<Vec<MirrorRecord>> {
        query(
            self,
            &select_mirrors("WHERE due_us <= ?1 ORDER BY due_us, id LIMIT ?2"),
            params![micros(now), limit(max)],
        )
    }

    async fn unplaced(&mut self, now: OffsetDateTime) -> Result<Vec<MirrorRecord>> {
        unplaced_first_runs(self, now)
    }
}

#[async_trait]
impl StateStore for SqliteStateStore {
    async fn create_mirror(
        &self,
        config: &ValidConfig,
        now: OffsetDateTime,
    ) -> Result<MirrorRecord> {
        let config = config.clone();
        self.write(async move |tx| ops::create(tx, &config, now).await)
            .await
    }

    async fn declare_mirrors(
        &self,
        configs: &[ValidConfig],
        now: OffsetDateTime,
    ) -> Result<Vec<Declaration>> {
        let configs = configs.to_vec();
        self.write(async move |tx| ops::declare(tx, &configs, now).await)
            .await
    }

    async fn update_mirror(&self, config: &ValidConfig) -> Result<MirrorRecord> {
        let config = config.clone();
        let now = OffsetDateTime::now_utc();
        self.write(async move |tx| ops::update(tx, &config, now).await)
            .await
    }

    async fn get_mirror(&self, id: &str) -> Result<MirrorRecord> {
        let id = id.to_owned();
        self.run(move |conn| {
            let tx = conn.transaction().map_err(db_error)?;
            get(&tx, &id)?.ok_or_else(|| not_found(&id))
        })
        .await
    }

    async fn list_mirrors(&self) -> Result<Vec<MirrorRecord>> {
        self.run(|conn| {
            let mut records = query(conn, &select_mirrors("ORDER BY id"), [])?;
            for record in &mut records {
                redact_secrets(&mut record.config);
            }
            Ok(records)
        })
        .await
    }

    async fn delete_mirror(&self, id: &str) -> Result<()> {
        let id = id.to_owned();
        let now = OffsetDateTime::now_utc();
        self.write(async move |tx| ops::delete(tx, &id, now).await)
            .await
    }

    async fn sync_now(&self, id: &str) -> Result<MirrorRecord> {
        let id = id.to_owned();
        self.write(async move |tx| ops::sync_now(tx, &id).await)
            .await
    }

    async fn cancel(&self, id: &str) -> Result<MirrorRecord> {
        let id = id.to_owned();
        self.write(async move |tx| ops::cancel(tx, &id).await).await
    }

    async fn set_enabled(&self, id: &str, enabled: bool) -> Result<MirrorRecord> {
        let id = id.to_owned();
        self.write(async move |tx| ops::set_enabled(tx, &id, enabled).await)
            .await
    }

    async fn spread_first_runs(&self, now: OffsetDateTime, window: Duration) -> Result<usize> {
        // Most polls find nothing to place: look before taking the write lock.
        let at = truncate(now);
        let place = self
            .run(move |conn| {
                Ok(ops::any_to_place(
                    unplaced_first_runs(conn, at)?,
                    at,
                    window,
                ))
            })
            .await?;
        if !place {
            return Ok(0);
        }
        self.write(async move |tx| ops::spread_first_runs(tx, now, window).await)
            .await
    }

    async fn claim_due(
        &self,
        worker: &str,
        now: OffsetDateTime,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Claim>> {
        let worker = worker.to_owned();
        self.write(async move |tx| ops::claim_due(tx, &worker, now, max, lease).await)
            .await
    }

    async fn claim(
        &self,
        id: &str,
        worker: &str,
        now: OffsetDateTime,
        lease: Duration,
    ) -> Result<Claim> {
        let (id, worker) = (id.to_owned(), worker.to_owned());
        self.write(async move |tx| ops::claim(tx, &id, &worker, now, lease).await)
            .await
    }

    async fn census(
        &self,
        worker: &str,
        now: OffsetDateTime,
        live_until: OffsetDateTime,
    ) -> Result<Census> {
        let worker = worker.to_owned();
        self.run(move |conn| {
            let tx = write_tx(conn)?;
            tx.execute(
                "INSERT INTO workers (id, live_until_us) VALUES (?1, ?2) \
                 ON CONFLICT (id) DO UPDATE SET live_until_us = excluded.live_until_us",
                params![worker, micros(live_until)],
            )
            .map_err(db_error)?;
            tx.execute(
                "DELETE FROM workers WHERE live_until_us < ?1",
                [micros(now)],
            )
            .map_err(db_error)?;
            let count = |sql: &str| -> Result<usize> {
                let n: i64 = tx
                    .query_row(sql, [micros(now)], |r| r.get(0))
                    .map_err(db_error)?;
                Ok(usize::try_from(n).unwrap_or(0))
            };
            let census = Census {
                live_workers: count("SELECT COUNT(*) FROM workers WHERE live_until_us >= ?1")?,
                due: count("SELECT COUNT(*) FROM mirrors WHERE due_us <= ?1")?,
                running: count(
                    "SELECT COUNT(*) FROM mirrors WHERE status = 'SYNCING' \
                     AND lease_expires_us > ?1",
                )?,
            };
            tx.commit().map_err(db_error)?;
            Ok(census)
        })
        .await
    }

    async fn renew(
        &self,
        claim: &Claim,
        now: OffsetDateTime,
        lease: Duration,
    ) -> Result<SyncStatus> {
        let claim = claim.clone();
        self.write(async move |tx| ops::renew(tx, &claim, now, lease).await)
            .await
    }

    async fn release(
        &self,
        claim: &Claim,
        outcome: &RunOutcome,
        now: OffsetDateTime,
    ) -> Result<MirrorRecord> {
        let (claim, outcome) = (claim.clone(), outcome.clone());
        self.write(async move |tx| ops::release(tx, &claim, &outcome, now).await)
            .await
    }

    async fn save_tag_record(&self, id: &str, record: &TagRecord) -> Result<()> {
        let (id, json) = (id.to_owned(), tag_record_json(record));
        self.run(move |conn| {
            let tx = write_tx(conn)?;
            get(&tx, &id)?.ok_or_else(|| not_found(&id))?;
            tx.execute(
                "INSERT INTO tag_records (mirror_id, record) VALUES (?1, ?2) \
                 ON CONFLICT (mirror_id) DO UPDATE SET record = excluded.record",
                params![id, json],
            )
            .map_err(db_error)?;
            tx.commit().map_err(db_error)
        })
        .await
    }

    async fn tag_record(&self, id: &str) -> Result<Option<TagRecord>> {
        let id = id.to_owned();
        self.run(move |conn| {
            let json: Option<String> = conn
                .query_row(
                    "SELECT record FROM tag_records WHERE mirror_id = ?1",
                    [&id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_error)?;
            json.map(|j| tag_record_from_json(&id, &j)).transpose()
        })
        .await
    }

    async fn clear_tag_record(&self, id: &str) -> Result<()> {
        let id = id.to_owned();
        self.run(move |conn| {
            conn.execute("DELETE FROM tag_records WHERE mirror_id = ?1", [&id])
                .map_err(db_error)?;
            Ok(())
        })
        .await
    }

    async fn append_log(&self, entries: &[LogEntry]) -> Result<()> {
        let entries = entries.to_vec();
        self.run(move |conn| {
            let tx = write_tx(conn)?;
            {
                let mut stmt = tx
                    .prepare_cached(
                        "INSERT INTO usage_log \
                         (mirror_id, time_us, kind, tag, digest, message, failure) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )
                    .map_err(db_error)?;
                for e in &entries {
                    stmt.execute(params![
                        e.mirror_id,
                        micros(e.time),
                        log_kind_name(e.kind),
                        e.tag,
                        e.digest.as_ref().map(|d| d.as_str()),
                        e.message,
                        failure_json(e)?,
                    ])
                    .map_err(|err| match err.sqlite_error_code() {
                        Some(rusqlite::ErrorCode::ConstraintViolation) => not_found(&e.mirror_id),
                        _ => db_error(err),
                    })?;
                }
            }
            tx.commit().map_err(db_error)
        })
        .await
    }

    async fn logs(&self, id: &str, max: usize, before: Option<u64>) -> Result<Vec<LogEntry>> {
        let id = id.to_owned();
        self.run(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT seq, mirror_id, time_us, kind, tag, digest, message, failure \
                     FROM usage_log WHERE mirror_id = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3",
                )
                .map_err(db_error)?;
            let rows = stmt
                .query_map(params![id, before_seq(before), limit(max)], log_row)
                .map_err(db_error)?;
            rows.map(|row| row.map_err(db_error)?.into_entry())
                .collect()
        })
        .await
    }

    async fn last_finishes(&self, id: Option<&str>) -> Result<Vec<LogEntry>> {
        let id = id.map(str::to_owned);
        self.run(move |conn| {
            let mut stmt = conn
                .prepare_cached(&last_finishes_sql("mirrors", "usage_log", "?1"))
                .map_err(db_error)?;
            let rows = stmt.query_map(params![id], log_row).map_err(db_error)?;
            rows.map(|row| row.map_err(db_error)?.into_entry())
                .collect()
        })
        .await
    }

    async fn prune_logs(&self, retention: &LogRetention, now: OffsetDateTime) -> Result<u64> {
        let retention = *retention;
        self.run(move |conn| {
            let tx = write_tx(conn)?;
            let mut removed = 0;
            if let Some(cutoff) = retention.cutoff(now) {
                removed += tx
                    .execute("DELETE FROM usage_log WHERE time_us < ?1", [micros(cutoff)])
                    .map_err(db_error)?;
            }
            if let Some(max) = retention.max_entries {
                removed += tx
                    .execute(
                        "DELETE FROM usage_log WHERE seq IN (SELECT seq FROM (SELECT seq, \
                         ROW_NUMBER() OVER (PARTITION BY mirror_id ORDER BY seq DESC) AS n \
                         FROM usage_log) WHERE n > ?1)",
                        [limit(max)],
                    )
                    .map_err(db_error)?;
            }
            tx.commit().map_err(db_error)?;
            Ok(removed as u64)
        })
        .await
    }
}

/// A usage-log row of `SELECT seq, mirror_id, time_us, kind, tag, digest, message, failure`.
fn log_row(r: &Row) -> rusqlite::Result<LogRow> {
    Ok(LogRow {
        seq: r.get(0)?,
        mirror_id: r.get(1)?,
        time_us: r.get(2)?,
        kind: r.get(3)?,
        tag: r.get(4)?,
        digest: r.get(5)?,
        message: r.get(6)?,
        failure: r.get(7)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MirrorConfig;

    /// `mirror list/show/logs` while a worker holds the write lock: opening the store and
    /// reading need no write lock, so they neither wait for it nor fail as busy.
    #[tokio::test]
    async fn reads_and_reopening_take_no_write_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = SqliteStateStore::open(&path).await.unwrap();
        let config = MirrorConfig::new("ns/app", "quay.io/org/app".parse().unwrap(), &["v*"]);
        store
            .create_mirror(&config.validated().unwrap(), OffsetDateTime::now_utc())
            .await
            .unwrap();
        drop(store);

        let writer = Connection::open(&path).unwrap();
        writer.execute_batch("BEGIN IMMEDIATE").unwrap();
        let reads = async {
            let store = SqliteStateStore::open(&path).await.unwrap();
            assert_eq!(store.list_mirrors().await.unwrap().len(), 1);
            store.get_mirror("ns/app").await.unwrap();
            store.logs("ns/app", 10, None).await.unwrap();
            store.tag_record("ns/app").await.unwrap();
        };
        tokio::time::timeout(Duration::from_secs(5), reads)
            .await
            .expect("reads do not wait for the writer's lock");
        writer.execute_batch("COMMIT").unwrap();
    }
}
