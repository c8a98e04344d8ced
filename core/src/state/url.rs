//! Naming a state store in one string, as a command line, a config file or a binding gives it:
//! `memory:` (nothing kept past the process), `sqlite:PATH` (one file, the embedded default) or
//! `postgres://USER:PASS@HOST:PORT/DB` (shared by workers on many hosts).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use url::Url;

use super::{MemoryStateStore, StateStore, StoreTimeouts};
use crate::error::{Error, ErrorKind, Result};

/// Where mirrors are kept. `Display` and `Debug` hide the database password.
///
/// ```
/// use regmirror::StoreUrl;
///
/// let url: StoreUrl = "postgres://mirror:s3cret@db:5432/regmirror".parse().unwrap();
/// assert_eq!(url.to_string(), "postgres://mirror:***@db:5432/regmirror");
/// assert_eq!("sqlite:///var/lib/regmirror/state.db".parse::<StoreUrl>().unwrap(),
///            StoreUrl::Sqlite("/var/lib/regmirror/state.db".into()));
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = StoreUrl::Memory.open(Default::default()).await.unwrap();
/// assert!(store.list_mirrors().await.unwrap().is_empty());
/// # });
/// ```
#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// [`MemoryStateStore`]: gone with the process (tests, one-off embedding).
    Memory,
    /// [`SqliteStateStore`](super::SqliteStateStore) in this file (feature `sqlite`).
    Sqlite(PathBuf),
    /// `PostgresStateStore` at this URL (feature `postgres`).
    Postgres(Url),
}

impl FromStr for StoreUrl {
    type Err = Error;

    /// `memory:`, `sqlite:PATH` (also `sqlite://PATH`), `postgres://…` or `postgresql://…`.
    /// An error names the problem, never the URL (it may hold a password).
    fn from_str(s: &str) -> Result<StoreUrl> {
        let invalid = |why: String| Error::new(ErrorKind::InvalidConfig, why);
        if s == "memory:" {
            return Ok(StoreUrl::Memory);
        }
        if let Some(path) = s.strip_prefix("sqlite:") {
            // `sqlite://PATH` is a common spelling too; the path is what follows.
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(invalid(
                    "\"sqlite:\" needs a file path, as in sqlite:/var/lib/regmirror/state.db"
                        .to_owned(),
                ));
            }
            return Ok(StoreUrl::Sqlite(PathBuf::from(path)));
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            let url = Url::parse(s)
                .map_err(|e| invalid(format!("the PostgreSQL URL is not valid: {e}")))?;
            return Ok(StoreUrl::Postgres(url));
        }
        Err(invalid(
            "unknown state store; expected memory:, sqlite:PATH or postgres://USER@HOST:PORT/DB"
                .to_owned(),
        ))
    }
}

impl StoreUrl {
    /// Open the store, creating or migrating its schema as needed; every call of the store is
    /// bounded by `timeouts`. A store kind this build lacks (features `sqlite`, `postgres`) is
    /// `Unsupported`; an error says which store (without its password).
    pub async fn open(&self, timeouts: StoreTimeouts) -> Result<Arc<dyn StateStore>> {
        let opened: Result<Arc<dyn StateStore>> = match self {
            StoreUrl::Memory => Ok(Arc::new(MemoryStateStore::new())),
            StoreUrl::Sqlite(path) => open_sqlite(path, timeouts).await,
            StoreUrl::Postgres(url) => open_postgres(url, timeouts).await,
        };
        opened.map_err(|e| e.context(format!("opening the state store {self}")))
    }
}

#[cfg(feature = "sqlite")]
async fn open_sqlite(path: &Path, timeouts: StoreTimeouts) -> Result<Arc<dyn StateStore>> {
    let store = super::SqliteStateStore::open_with(path, timeouts).await?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "sqlite"))]
async fn open_sqlite(_: &Path, _: StoreTimeouts) -> Result<Arc<dyn StateStore>> {
    Err(not_built("sqlite"))
}

#[cfg(feature = "postgres")]
async fn open_postgres(url: &Url, timeouts: StoreTimeouts) -> Result<Arc<dyn StateStore>> {
    let store = super::PostgresStateStore::connect_with(url.as_str(), timeouts).await?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(_: &Url, _: StoreTimeouts) -> Result<Arc<dyn StateStore>> {
    Err(not_built("postgres"))
}

#[cfg(not(all(feature = "sqlite", feature = "postgres")))]
fn not_built(feature: &str) -> Error {
    Error::new(
        ErrorKind::Unsupported,
        format!("regmirror was built without the {feature} state store (feature \"{feature}\")"),
    )
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Memory => f.write_str("memory:"),
            StoreUrl::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            StoreUrl::Postgres(url) => {
                let mut shown = url.clone();
                if shown.password().is_some() {
                    // Setting a password only fails for URLs that cannot have one, and this
                    // one has one.
                    let _ = shown.set_password(Some("***"));
                }
                write!(f, "{shown}")
            }
        }
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_redaction() {
        assert_eq!("memory:".parse::<StoreUrl>().unwrap(), StoreUrl::Memory);
        assert_eq!(
            "sqlite:/tmp/s.db".parse::<StoreUrl>().unwrap(),
            StoreUrl::Sqlite("/tmp/s.db".into())
        );
        assert_eq!(
            "sqlite:///tmp/s.db".parse::<StoreUrl>().unwrap(),
            StoreUrl::Sqlite("/tmp/s.db".into())
        );
        assert_eq!(
            "sqlite:rel.db".parse::<StoreUrl>().unwrap(),
            StoreUrl::Sqlite("rel.db".into())
        );
        let pg: StoreUrl = "postgresql://mirror:s3cr%3At@127.0.0.1:5432/regmirror"
            .parse()
            .unwrap();
        assert_eq!(
            pg.to_string(),
            "postgresql://mirror:***@127.0.0.1:5432/regmirror"
        );
        assert!(!format!("{pg:?}").contains("s3cr"));
        for (bad, why) in [
            ("mysql://x", "unknown state store"),
            ("sqlite:", "needs a file path"),
            ("memory", "unknown state store"),
            (
                "postgres://u:hunter2@[::1",
                "the PostgreSQL URL is not valid",
            ),
        ] {
            let e = bad.parse::<StoreUrl>().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidConfig);
            assert!(e.message().contains(why), "{bad}: {e}");
            assert!(!e.message().contains("hunter2"), "{e}");
        }
    }

    #[tokio::test]
    async fn memory_and_sqlite_open() {
        let store = StoreUrl::Memory
            .open(StoreTimeouts::default())
            .await
            .unwrap();
        assert!(store.list_mirrors().await.unwrap().is_empty());
        let dir = tempfile::tempdir().unwrap();
        let url = StoreUrl::Sqlite(dir.path().join("s.db"));
        url.open(StoreTimeouts::default()).await.unwrap();
        assert!(dir.path().join("s.db").is_file());
        // A directory is no database file: the error says which store.
        let e = StoreUrl::Sqlite(dir.path().to_owned())
            .open(StoreTimeouts::default())
            .await
            .unwrap_err();
        assert!(
            e.message().starts_with("opening the state store sqlite:"),
            "{e}"
        );
    }
}
