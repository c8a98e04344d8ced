//! [`PostgresStateStore`]: many workers on many hosts sharing one PostgreSQL database through a
//! connection pool. Connecting migrates the schema under an advisory lock (so workers starting
//! together migrate once); claims lock due rows with `FOR UPDATE SKIP LOCKED`, so concurrent
//! workers take disjoint batches without waiting on each other. Tables are prefixed `regmirror_`
//! so the database can be shared with other applications.
//!
//! Connections are made without TLS: run the database on the same host or a trusted network.

use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Transaction,
};
use time::OffsetDateTime;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{NoTls, Row};

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
    CREATE TABLE regmirror_mirrors (
        id TEXT PRIMARY KEY,
        config TEXT NOT NULL,
        enabled BOOLEAN NOT NULL,
        status TEXT NOT NULL,
        retries_remaining BIGINT NOT NULL,
        start_date_us BIGINT NOT NULL,
        next_start_us BIGINT NOT NULL,
        last_started_us BIGINT,
        last_finished_us BIGINT,
        last_error TEXT,
        lease_owner TEXT,
        lease_expires_us BIGINT,
        lease_token BIGINT NOT NULL,
        due_us BIGINT
    );
    CREATE INDEX regmirror_mirrors_due ON regmirror_mirrors (due_us, id) WHERE due_us IS NOT NULL;
    CREATE TABLE regmirror_tag_records (
        mirror_id TEXT PRIMARY KEY REFERENCES regmirror_mirrors (id) ON DELETE CASCADE,
        record TEXT NOT NULL
    );
    CREATE TABLE regmirror_usage_log (
        seq BIGSERIAL PRIMARY KEY,
        mirror_id TEXT NOT NULL REFERENCES regmirror_mirrors (id) ON DELETE CASCADE,
        time_us BIGINT NOT NULL,
        kind TEXT NOT NULL,
        tag TEXT,
        digest TEXT,
        message TEXT NOT NULL
    );
    CREATE INDEX regmirror_usage_log_mirror ON regmirror_usage_log (mirror_id, seq);
",
    "
    CREATE TABLE regmirror_workers (
        id TEXT PRIMARY KEY,
        live_until_us BIGINT NOT NULL
    );
",
    // A failed tag's or run's failure as data (JSON of `Failure`).
    "ALTER TABLE regmirror_usage_log ADD COLUMN failure TEXT;",
];

/// The advisory lock key that serializes schema migrations ("regmirro" in ASCII).
const MIGRATION_LOCK: i64 = 0x7265_676d_6972_726f;

/// Connections per store (per worker process).
const POOL_SIZE: usize = 16;

/// How long making a connection may take unless the URL sets `connect_timeout` (seconds).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// A [`StateStore`] in a PostgreSQL database.
#[derive(Clone)]
pub struct PostgresStateStore {
    pool: Pool,
    /// The bound on one call's queries ([`StoreTimeouts::query`]).
    query_timeout: Duration,
    /// The bound on getting a connection for a call ([`StoreTimeouts::checkout`]).
    checkout_timeout: Duration,
    /// `host:port/dbname`, for `Debug` (the connection string may hold a password).
    target: String,
}

impl std::fmt::Debug for PostgresStateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStateStore")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

fn db_error(e: tokio_postgres::Error) -> Error {
    let kind = match e.code() {
        Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => ErrorKind::Conflict,
        _ if e.is_closed() => ErrorKind::Network,
        _ => ErrorKind::State,
    };
    Error::new(kind, format!("postgres: {}", reason(&e))).with_source(e)
}

/// What went wrong, in the server's words: the client's own text is only its category ("db
/// error", "error connecting to server"). The server's message names a user or a database, never
/// a password; its DETAIL is left out, as it can quote a row (a mirror's stored credentials).
fn reason(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

fn pool_error(e: deadpool_postgres::PoolError) -> Error {
    let kind = match e {
        deadpool_postgres::PoolError::Timeout(_) => ErrorKind::Timeout,
        _ => ErrorKind::Network,
    };
    let message = match &e {
        deadpool_postgres::PoolError::Backend(backend) => {
            format!("cannot connect: {}", reason(backend))
        }
        deadpool_postgres::PoolError::Timeout(deadpool_postgres::TimeoutType::Create) => {
            "cannot connect: the server did not answer in time (connect_timeout)".to_owned()
        }
        other => format!("postgres connection pool: {other}"),
    };
    Error::new(kind, message).with_source(e)
}

impl PostgresStateStore {
    /// Connect to the database named by `url` (`postgres://user:pass@host:port/db` or
    /// `host=… user=… dbname=…`) and migrate its schema, with the default [`StoreTimeouts`].
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, StoreTimeouts::default()).await
    }

    /// [`PostgresStateStore::connect`] with these bounds on every call: a pooled connection
    /// within `timeouts.checkout` (a new one within the URL's `connect_timeout`, 15 s by
    /// default), each call's queries within `timeouts.query`.
    pub async fn connect_with(url: &str, timeouts: StoreTimeouts) -> Result<Self> {
        let config: tokio_postgres::Config = url.parse().map_err(|e: tokio_postgres::Error| {
            Error::new(
                ErrorKind::InvalidConfig,
                format!("PostgreSQL connection string: {e}"),
            )
        })?;
        let target = describe(&config);
        let connect_timeout = config
            .get_connect_timeout()
            .copied()
            .unwrap_or(CONNECT_TIMEOUT);
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            // The socket's connect timeout does not cover a server that accepts and never
            // answers; a connection (handshake and login included) must be made within it.
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .create_timeout(Some(connect_timeout))
            .wait_timeout(Some(timeouts.checkout))
            .recycle_timeout(Some(timeouts.checkout))
            .build()
            .map_err(|e| {
                Error::new(
                    ErrorKind::Internal,
                    format!("cannot build a PostgreSQL pool: {e}"),
                )
            })?;
        let store = PostgresStateStore {
            pool,
            query_timeout: timeouts.query,
            checkout_timeout: timeouts.checkout,
            target,
        };
        store
            .migrate()
            .await
            .map_err(|e| e.context(format!("PostgreSQL {}", store.target)))?;
        Ok(store)
    }

    /// Run `f` on a pooled connection, within the query timeout. A connection whose call timed
    /// out is closed rather than pooled again: it may be stuck on a stalled network, or still
    /// in the middle of the abandoned call.
    async fn with_client<T>(
        &self,
        f: impl AsyncFnOnce(&mut deadpool_postgres::Client) -> Result<T>,
    ) -> Result<T> {
        // A new connection is made within the URL's connect_timeout, and no checkout, new or
        // pooled, takes longer than the checkout timeout.
        let mut client = tokio::time::timeout(self.checkout_timeout, self.pool.get())
            .await
            .map_err(|_| {
                Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "postgres: no connection within {} (checkout timeout)",
                        humantime::format_duration(self.checkout_timeout)
                    ),
                )
            })?
            .map_err(pool_error)?;
        match tokio::time::timeout(self.query_timeout, f(&mut client)).await {
            Ok(result) => result,
            Err(_) => {
                drop(deadpool_postgres::Object::take(client));
                Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "postgres: no answer within {} (query timeout); the connection was closed",
                        humantime::format_duration(self.query_timeout)
                    ),
                ))
            }
        }
    }

    async fn migrate(&self) -> Result<()> {
        self.with_client(async |client| {
            let tx = client.transaction().await.map_err(db_error)?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await
                .map_err(db_error)?;
            tx.batch_execute("CREATE TABLE IF NOT EXISTS regmirror_schema (version BIGINT NOT NULL)")
                .await
                .map_err(db_error)?;
            let version: i64 = match tx
                .query_opt("SELECT version FROM regmirror_schema", &[])
                .await
                .map_err(db_error)?
            {
                Some(row) => row.get(0),
                None => {
                    tx.execute("INSERT INTO regmirror_schema (version) VALUES (0)", &[])
                        .await
                        .map_err(db_error)?;
                    0
                }
            };
            let known = MIGRATIONS.len();
            let from = usize::try_from(version).unwrap_or(usize::MAX);
            if from > known {
                return Err(Error::new(
                    ErrorKind::State,
                    format!(
                        "the database has schema version {version}, newer than this regmirror knows ({known})"
                    ),
                ));
            }
            for migration in &MIGRATIONS[from..] {
                tx.batch_execute(migration).await.map_err(db_error)?;
            }
            let known = i64::try_from(known).expect("a handful of migrations");
            tx.execute("UPDATE regmirror_schema SET version = $1", &[&known])
                .await
                .map_err(db_error)?;
            tx.commit().await.map_err(db_error)
        })
        .await
    }

    /// Run one operation of [`ops`] in a transaction, committed when it succeeds; the rows it
    /// reads are locked ([`Txn`] for `Transaction`).
    async fn write<T>(&self, op: impl AsyncFnOnce(&mut Transaction<'_>) -> Result<T>) -> Result<T> {
        self.with_client(async |client| {
            let mut tx = client.transaction().await.map_err(db_error)?;
            let done = op(&mut tx).await?;
            tx.commit().await.map_err(db_error)?;
            Ok(done)
        })
        .await
    }
}

fn describe(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", config.get_dbname().unwrap_or(""))
}

fn select_mirrors(filter: &str) -> String {
    format!("SELECT id, config, {STATE_COLUMNS} FROM regmirror_mirrors {filter}")
}

fn to_record(r: &Row) -> Result<MirrorRecord> {
    let status: String = r.get(3);
    MirrorRow {
        id: r.get(0),
        config: r.get(1),
        enabled: r.get(2),
        status: status_name(&status)?,
        retries_remaining: r.get(4),
        start_date_us: r.get(5),
        next_start_us: r.get(6),
        last_started_us: r.get(7),
        last_finished_us: r.get(8),
        last_error: r.get(9),
        lease_owner: r.get(10),
        lease_expires_us: r.get(11),
        lease_token: r.get(12),
        due_us: r.get(13),
    }
    .into_record()
}

/// The mirrors due at `now` that may be waiting for their first run to be placed
/// ([`MirrorState::first_run_unplaced`](super::MirrorState::first_run_unplaced) decides); `tail`
/// ends the query.
async fn unplaced_first_runs(
    client: &impl GenericClient,
    now: OffsetDateTime,
    tail: &str,
) -> Result<Vec<MirrorRecord>> {
    let sql = select_mirrors(&format!(
        "WHERE due_us <= $1 AND status = 'NEVER_RUN' AND last_started_us IS NULL \
         AND next_start_us = start_date_us {tail}"
    ));
    let rows = client
        .query(&sql, &[&micros(now)])
        .await
        .map_err(db_error)?;
    rows.iter().map(to_record).collect()
}

/// Write a mirror row: `insert` a new one (unless the id exists), or update one. Cuts `record`'s
/// times to what is stored; returns how many rows changed.
async fn write_row(tx: &Transaction<'_>, record: &mut MirrorRecord, insert: bool) -> Result<u64> {
    let row = MirrorRow::new(&record.config, &mut record.state)?;
    tx.execute(
        &write_sql("regmirror_mirrors", '$', insert),
        &[
            &row.id,
            &SecretText(&row.config),
            &row.enabled,
            &row.status,
            &row.retries_remaining,
            &row.start_date_us,
            &row.next_start_us,
            &row.last_started_us,
            &row.last_finished_us,
            &row.last_error,
            &row.lease_owner,
            &row.lease_expires_us,
            &row.lease_token,
            &row.due_us,
        ],
    )
    .await
    .map_err(db_error)
}

/// Inside [`PostgresStateStore::write`]'s transaction: every read locks the rows it returns
/// (`FOR UPDATE`) until the commit, so concurrent workers' changes to one mirror take turns.
impl Txn for Transaction<'_> {
    fn stored_time(t: OffsetDateTime) -> OffsetDateTime {
        truncate(t)
    }

    async fn get(&mut self, id: &str) -> Result<Option<MirrorRecord>> {
        let row = self
            .query_opt(&select_mirrors("WHERE id = $1 FOR UPDATE"), &[&id])
            .await
            .map_err(db_error)?;
        row.as_ref().map(to_record).transpose()
    }

    async fn insert(&mut self, record: &mut MirrorRecord) -> Result<bool> {
        // A row another transaction is inserting makes this wait for its commit, then do
        // nothing.
        Ok(write_row(self, record, true).await? == 1)
    }

    async fn put(&mut self, record: &mut MirrorRecord) -> Result<()> {
        write_row(self, record, false).await.map(drop)
    }

    async fn remove(&mut self, id: &str) -> Result<()> {
        // The tag record and the usage log go with it (ON DELETE CASCADE).
        self.execute("DELETE FROM regmirror_mirrors WHERE id = $1", &[&id])
            .await
            .map(drop)
            .map_err(db_error)
    }

    async fn due(&mut self, now: OffsetDateTime, max: usize) -> Result<Vec<MirrorRecord>> {
        // SKIP LOCKED: rows another worker is claiming right now are left to it, not waited on.
        let rows = self
            .query(
                &select_mirrors(
                    "WHERE due_us <= $1 ORDER BY due_us, id LIMIT $2 FOR UPDATE SKIP LOCKED",
                ),
                &[&micros(now), &limit(max)],
            )
            .await
            .map_err(db_error)?;
        rows.iter().map(to_record).collect()
    }

    async fn unplaced(&mut self, now: OffsetDateTime) -> Result<Vec<MirrorRecord>> {
        // Waits for rows another worker is placing or claiming, then sees them as it left them
        // (placed or claimed rows no longer match), so a crowd is placed once. Locked in id
        // order, as any other placer locks them.
        unplaced_first_runs(&*self, now, "ORDER BY id FOR UPDATE").await
    }
}

/// A statement parameter holding secrets (a mirror's configuration with its source password).
/// tokio-postgres logs every statement's parameters with `Debug` at debug level, so an embedder
/// who turns debug logging on would otherwise print the stored passwords.
struct SecretText<'a>(&'a str);

impl std::fmt::Debug for SecretText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl ToSql for SecretText<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.0.to_sql(ty, out)
    }

    fn accepts(ty: &Type) -> bool {
        <&str as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

#[async_trait]
impl StateStore for PostgresStateStore {
    async fn create_mirror(
        &self,
        config: &ValidConfig,
        now: OffsetDateTime,
    ) -> Result<MirrorRecord> {
        self.write(async |tx| ops::create(tx, config, now).await)
            .await
    }

    async fn declare_mirrors(
        &self,
        configs: &[ValidConfig],
        now: OffsetDateTime,
    ) -> Result<Vec<Declaration>> {
        self.write(async |tx| ops::declare(tx, configs, now).await)
            .await
    }

    async fn update_mirror(&self, config: &ValidConfig) -> Result<MirrorRecord> {
        let now = OffsetDateTime::now_utc();
        self.write(async |tx| ops::update(tx, config, now).await)
            .await
    }

    async fn get_mirror(&self, id: &str) -> Result<MirrorRecord> {
        self.with_client(async |client| {
            let row = client
                .query_opt(&select_mirrors("WHERE id = $1"), &[&id])
                .await
                .map_err(db_error)?
                .ok_or_else(|| not_found(id))?;
            to_record(&row)
        })
        .await
    }

    async fn list_mirrors(&self) -> Result<Vec<MirrorRecord>> {
        self.with_client(async |client| {
            let rows = client
                .query(&select_mirrors("ORDER BY id"), &[])
                .await
                .map_err(db_error)?;
            rows.iter()
                .map(|row| {
                    let mut record = to_record(row)?;
                    redact_secrets(&mut record.config);
                    Ok(record)
                })
                .collect()
        })
        .await
    }

    async fn delete_mirror(&self, id: &str) -> Result<()> {
        let now = OffsetDateTime::now_utc();
        self.write(async |tx| ops::delete(tx, id, now).await).await
    }

    async fn sync_now(&self, id: &str) -> Result<MirrorRecord> {
        self.write(async |tx| ops::sync_now(tx, id).await).await
    }

    async fn cancel(&self, id: &str) -> Result<MirrorRecord> {
        self.write(async |tx| ops::cancel(tx, id).await).await
    }

    async fn set_enabled(&self, id: &str, enabled: bool) -> Result<MirrorRecord> {
        self.write(async |tx| ops::set_enabled(tx, id, enabled).await)
            .await
    }

    async fn spread_first_runs(&self, now: OffsetDateTime, window: Duration) -> Result<usize> {
        // Most polls find nothing to place: look before locking rows.
        let at = truncate(now);
        let crowd = self
            .with_client(async |client| unplaced_first_runs(&*client, at, "").await)
            .await?;
        if !ops::any_to_place(crowd, at, window) {
            return Ok(0);
        }
        self.write(async |tx| ops::spread_first_runs(tx, now, window).await)
            .await
    }

    async fn claim_due(
        &self,
        worker: &str,
        now: OffsetDateTime,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Claim>> {
        self.write(async |tx| ops::claim_due(tx, worker, now, max, lease).await)
            .await
    }

    async fn claim(
        &self,
        id: &str,
        worker: &str,
        now: OffsetDateTime,
        lease: Duration,
    ) -> Result<Claim> {
        self.write(async |tx| ops::claim(tx, id, worker, now, lease).await)
            .await
    }

    async fn census(
        &self,
        worker: &str,
        now: OffsetDateTime,
        live_until: OffsetDateTime,
    ) -> Result<Census> {
        let (now, until) = (micros(now), micros(live_until));
        self.with_client(async |client| {
            client
                .execute(
                    "INSERT INTO regmirror_workers (id, live_until_us) VALUES ($1, $2) \
                     ON CONFLICT (id) DO UPDATE SET live_until_us = excluded.live_until_us",
                    &[&worker, &until],
                )
                .await
                .map_err(db_error)?;
            client
                .execute(
                    "DELETE FROM regmirror_workers WHERE live_until_us < $1",
                    &[&now],
                )
                .await
                .map_err(db_error)?;
            let row = client
                .query_one(
                    "SELECT \
                     (SELECT COUNT(*) FROM regmirror_workers WHERE live_until_us >= $1), \
                     (SELECT COUNT(*) FROM regmirror_mirrors WHERE due_us <= $1), \
                     (SELECT COUNT(*) FROM regmirror_mirrors WHERE status = 'SYNCING' \
                      AND lease_expires_us > $1)",
                    &[&now],
                )
                .await
                .map_err(db_error)?;
            let count = |i: usize| usize::try_from(row.get::<_, i64>(i)).unwrap_or(0);
            Ok(Census {
                live_workers: count(0),
                due: count(1),
                running: count(2),
            })
        })
        .await
    }

    async fn renew(
        &self,
        claim: &Claim,
        now: OffsetDateTime,
        lease: Duration,
    ) -> Result<SyncStatus> {
        self.write(async |tx| ops::renew(tx, claim, now, lease).await)
            .await
    }

    async fn release(
        &self,
        claim: &Claim,
        outcome: &RunOutcome,
        now: OffsetDateTime,
    ) -> Result<MirrorRecord> {
        self.write(async |tx| ops::release(tx, claim, outcome, now).await)
            .await
    }

    async fn save_tag_record(&self, id: &str, record: &TagRecord) -> Result<()> {
        self.with_client(async |client| {
            let json = tag_record_json(record);
            client
                .execute(
                    "INSERT INTO regmirror_tag_records (mirror_id, record) VALUES ($1, $2) \
                     ON CONFLICT (mirror_id) DO UPDATE SET record = excluded.record",
                    &[&id, &json],
                )
                .await
                .map_err(|e| match e.code() {
                    Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION) => not_found(id),
                    _ => db_error(e),
                })?;
            Ok(())
        })
        .await
    }

    async fn tag_record(&self, id: &str) -> Result<Option<TagRecord>> {
        self.with_client(async |client| {
            let row = client
                .query_opt(
                    "SELECT record FROM regmirror_tag_records WHERE mirror_id = $1",
                    &[&id],
                )
                .await
                .map_err(db_error)?;
            row.map(|r| tag_record_from_json(id, r.get(0))).transpose()
        })
        .await
    }

    async fn clear_tag_record(&self, id: &str) -> Result<()> {
        self.with_client(async |client| {
            client
                .execute(
                    "DELETE FROM regmirror_tag_records WHERE mirror_id = $1",
                    &[&id],
                )
                .await
                .map_err(db_error)?;
            Ok(())
        })
        .await
    }

    async fn append_log(&self, entries: &[LogEntry]) -> Result<()> {
        self.with_client(async |client| {
            let tx = client.transaction().await.map_err(db_error)?;
            let stmt = tx
                .prepare(
                    "INSERT INTO regmirror_usage_log \
                     (mirror_id, time_us, kind, tag, digest, message, failure) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .await
                .map_err(db_error)?;
            for e in entries {
                tx.execute(
                    &stmt,
                    &[
                        &e.mirror_id,
                        &micros(e.time),
                        &log_kind_name(e.kind),
                        &e.tag,
                        &e.digest.as_ref().map(|d| d.as_str()),
                        &e.message,
                        &failure_json(e)?,
                    ],
                )
                .await
                .map_err(|err| match err.code() {
                    Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION) => {
                        not_found(&e.mirror_id)
                    }
                    _ => db_error(err),
                })?;
            }
            tx.commit().await.map_err(db_error)
        })
        .await
    }

    async fn logs(&self, id: &str, max: usize, before: Option<u64>) -> Result<Vec<LogEntry>> {
        self.with_client(async |client| {
            let rows = client
                .query(
                    "SELECT seq, mirror_id, time_us, kind, tag, digest, message, failure \
                     FROM regmirror_usage_log WHERE mirror_id = $1 AND seq < $2 \
                     ORDER BY seq DESC LIMIT $3",
                    &[&id, &before_seq(before), &limit(max)],
                )
                .await
                .map_err(db_error)?;
            rows.iter().map(|r| log_row(r).into_entry()).collect()
        })
        .await
    }

    async fn last_finishes(&self, id: Option<&str>) -> Result<Vec<LogEntry>> {
        let sql = last_finishes_sql("regmirror_mirrors", "regmirror_usage_log", "$1::text");
        self.with_client(async |client| {
            let rows = client.query(&sql, &[&id]).await.map_err(db_error)?;
            rows.iter().map(|r| log_row(r).into_entry()).collect()
        })
        .await
    }

    async fn prune_logs(&self, retention: &LogRetention, now: OffsetDateTime) -> Result<u64> {
        self.with_client(async |client| {
            let mut removed = 0;
            if let Some(cutoff) = retention.cutoff(now) {
                removed += client
                    .execute(
                        "DELETE FROM regmirror_usage_log WHERE time_us < $1",
                        &[&micros(cutoff)],
                    )
                    .await
                    .map_err(db_error)?;
            }
            if let Some(max) = retention.max_entries {
                removed += client
                    .execute(
                        "DELETE FROM regmirror_usage_log WHERE seq IN (SELECT seq FROM (SELECT seq, \
                         ROW_NUMBER() OVER (PARTITION BY mirror_id ORDER BY seq DESC) AS n \
                         FROM regmirror_usage_log) AS ranked WHERE n > $1)",
                        &[&limit(max)],
                    )
                    .await
                    .map_err(db_error)?;
            }
            Ok(removed)
        })
        .await
    }
}

/// A usage-log row of `SELECT seq, mirror_id, time_us, kind, tag, digest, message, failure`.
fn log_row(r: &Row) -> LogRow {
    LogRow {
        seq: r.get(0),
        mirror_id: r.get(1),
        time_us: r.get(2),
        kind: r.get(3),
        tag: r.get(4),
        digest: r.get(5),
        message: r.get(6),
        failure: r.get(7),
    }
}
