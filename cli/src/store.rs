//! Naming and opening a state store on the command line: `sqlite:PATH` (one file, the default
//! kind) or `postgres://USER:PASS@HOST:PORT/DB` (shared by workers on many hosts).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use regmirror::StateStore;
use regmirror::state::{PostgresStateStore, SqliteStateStore, StoreTimeouts};
use url::Url;

use crate::failure::{CliResult, Failure};

/// Where mirrors are kept. `Display` hides the database password.
#[derive(Clone, PartialEq, Eq)]
pub enum StateUrl {
    Sqlite(PathBuf),
    Postgres(Url),
}

impl StateUrl {
    /// Parse `s`, given as `what` (`--state`, `state` in a config file), naming it in errors.
    pub fn parse(s: &str, what: &str) -> CliResult<StateUrl> {
        if let Some(path) = s.strip_prefix("sqlite:") {
            // `sqlite://PATH` is a common spelling too; the path is what follows.
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(Failure::invalid(format!(
                    "{what}: \"sqlite:\" needs a file path, as in sqlite:/var/lib/regmirror/state.db"
                )));
            }
            return Ok(StateUrl::Sqlite(PathBuf::from(path)));
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            // The URL may hold a password: the error names the problem, not the URL.
            let url = Url::parse(s).map_err(|e| {
                Failure::invalid(format!("{what}: the PostgreSQL URL is not valid: {e}"))
            })?;
            return Ok(StateUrl::Postgres(url));
        }
        Err(Failure::invalid(format!(
            "{what}: unknown state store; expected sqlite:PATH or postgres://USER@HOST:PORT/DB"
        )))
    }

    /// Connect, creating or migrating the schema as needed; every call of the store is bounded
    /// by `timeouts`.
    pub async fn open(&self, timeouts: StoreTimeouts) -> CliResult<Arc<dyn StateStore>> {
        let opened: regmirror::Result<Arc<dyn StateStore>> = match self {
            StateUrl::Sqlite(path) => SqliteStateStore::open_with(path, timeouts)
                .await
                .map(|s| Arc::new(s) as Arc<dyn StateStore>),
            StateUrl::Postgres(url) => PostgresStateStore::connect_with(url.as_str(), timeouts)
                .await
                .map(|s| Arc::new(s) as Arc<dyn StateStore>),
        };
        opened.map_err(|e| {
            let message = format!("opening the state store {self}: {}", e.message());
            // A path that cannot be a database is input to fix (exit 2), not a failure.
            if e.kind() == regmirror::ErrorKind::InvalidConfig {
                Failure::invalid(message)
            } else {
                Failure::failed(message)
            }
        })
    }
}

impl fmt::Display for StateUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateUrl::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            StateUrl::Postgres(url) => {
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

impl fmt::Debug for StateUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StateUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_redaction() {
        assert_eq!(
            StateUrl::parse("sqlite:/tmp/s.db", "--state").unwrap(),
            StateUrl::Sqlite("/tmp/s.db".into())
        );
        assert_eq!(
            StateUrl::parse("sqlite:///tmp/s.db", "--state").unwrap(),
            StateUrl::Sqlite("/tmp/s.db".into())
        );
        let pg = StateUrl::parse(
            "postgres://mirror:s3cr%3At@127.0.0.1:5432/regmirror",
            "--state",
        )
        .unwrap();
        assert_eq!(
            pg.to_string(),
            "postgres://mirror:***@127.0.0.1:5432/regmirror"
        );
        assert!(!format!("{pg:?}").contains("s3cr"));
        let e = StateUrl::parse("mysql://x", "--state").unwrap_err();
        assert!(
            e.to_string().starts_with("--state: unknown state store"),
            "{e}"
        );
    }
}
