//! Naming and opening a state store on the command line ([`StoreUrl`]: `sqlite:PATH`, the
//! default kind, or `postgres://USER:PASS@HOST:PORT/DB`, shared by workers on many hosts), with
//! the argument's name in errors and the CLI's exit statuses.

use std::sync::Arc;

use regmirror::state::StoreTimeouts;
use regmirror::{ErrorKind, StateStore, StoreUrl};

use crate::failure::{CliResult, Failure};

/// Parse `s`, given as `what` (`--state`, `state` in a config file), naming it in errors.
pub fn parse(s: &str, what: &str) -> CliResult<StoreUrl> {
    s.parse()
        .map_err(|e: regmirror::Error| Failure::from(e).context(what))
}

/// Connect, creating or migrating the schema as needed; every call of the store is bounded by
/// `timeouts`.
pub async fn open(url: &StoreUrl, timeouts: StoreTimeouts) -> CliResult<Arc<dyn StateStore>> {
    url.open(timeouts).await.map_err(|e| {
        // A path that cannot be a database is input to fix (exit 2), not a failure; a store
        // that does not answer is no registry, so the registry hints do not apply.
        if e.kind() == ErrorKind::InvalidConfig {
            Failure::invalid(e.message())
        } else {
            Failure::failed(e.message())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_argument() {
        let e = parse("mysql://x", "--state").unwrap_err();
        assert!(
            e.to_string().starts_with("--state: unknown state store"),
            "{e}"
        );
        assert_eq!(
            parse("sqlite:///tmp/s.db", "--state").unwrap(),
            StoreUrl::Sqlite("/tmp/s.db".into())
        );
    }
}
