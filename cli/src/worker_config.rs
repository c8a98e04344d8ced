//! The worker's config file (`regmirror.toml`): the state store, the poll interval, the
//! destination registry and its robot credentials, webhooks, and the mirrors to declare.
//!
//! Unknown keys are errors (a typo must not silently drop a setting). Secrets can stay out of
//! the file: every password has `_file` and `_env` alternatives. Error messages give the line
//! and the problem but never quote the file, which may hold passwords.

use std::path::{Path, PathBuf};
use std::time::Duration;

use regmirror::config::{DEFAULT_RETRY_BACKOFF, MirrorDefaults, MirrorSettings, check_cert_dir};
use regmirror::engine::{DEFAULT_CONCURRENCY, DEFAULT_LEASE};
use regmirror::registry::http::AddressGuard;
use regmirror::state::{LogRetention, StoreTimeouts};
use regmirror::worker::{
    DEFAULT_FIRST_RUN_SPREAD, DEFAULT_MAX_CONCURRENT, DEFAULT_POLL_INTERVAL,
    DEFAULT_SHUTDOWN_DEADLINE,
};
use regmirror::{Credentials, Destination, RollbackMode, StoreUrl, ValidConfig};
use serde::Deserialize;
use toml::Spanned;

use crate::failure::{CliResult, Failure};

/// Where the state lives when the file does not say: next to the config file.
const DEFAULT_STATE: &str = "sqlite:regmirror.db";

/// A checked worker configuration.
#[derive(Debug)]
pub struct WorkerConfig {
    pub state: StoreUrl,
    /// Bounds on every state store call (PostgreSQL queries and connection checkouts, SQLite's
    /// wait for another process's write lock).
    pub state_timeouts: StoreTimeouts,
    pub poll_interval: Duration,
    /// How long a claim lasts unless renewed (renewed every third of it while a sync runs): a
    /// dead worker's mirrors wait this long for another worker, a cancel up to a third of it.
    pub lease: Duration,
    /// After SIGTERM: runs still going at two thirds of it are cancelled, at the end released.
    pub shutdown_deadline: Duration,
    /// Blob copies and requests in flight per sync run (small reads: see
    /// [`regmirror::engine::metadata_concurrency`]).
    pub concurrency: usize,
    /// Syncs one worker runs at once.
    pub max_concurrent_syncs: usize,
    /// A registry listing more tags than this fails the run that lists them.
    pub max_tags: usize,
    /// The window the first runs of many new mirrors due together are spread over.
    pub first_run_spread: Duration,
    /// Quay's `REPO_MIRROR_ROLLBACK` (`default_rollback`) and the file's `retry_backoff`: what
    /// mirrors that do not set their own get (also those added through the API).
    pub defaults: MirrorDefaults,
    /// How much usage log the worker keeps.
    pub log_retention: LogRetention,
    /// The SSRF guard over every mirror's source (`ssrf_guard`, `ssrf_allow`); `None` is off.
    pub address_guard: Option<AddressGuard>,
    /// Where every mirror writes (Quay's `REPO_MIRROR_SERVER_HOSTNAME` and robot).
    pub destination: Destination,
    pub webhooks: Vec<Webhook>,
    pub mirrors: Vec<ValidConfig>,
    /// The HTTP endpoint (`[api]`); `None` is off.
    pub api: Option<ApiConfig>,
    /// How the worker writes its log lines.
    pub log_format: LogFormat,
}

/// `log_format`: lines for people (the default) or one JSON object a line for machines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The worker's HTTP endpoint: management API, metrics, health, status page.
#[derive(Debug)]
pub struct ApiConfig {
    /// `HOST:PORT` to listen on (a host name is resolved when the worker starts).
    pub listen: String,
    /// A certificate chain and its private key (PEM) to serve HTTPS instead of HTTP.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// What `Authorization: Bearer` must carry.
    pub token: ApiToken,
}

/// The API token; `Debug` never shows it.
pub struct ApiToken(pub String);

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

/// A webhook receiving `sync started/succeeded/failed/cancelled` as JSON POSTs.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: String,
    /// Key for the HMAC-SHA256 signature header, if the receiver checks one.
    pub secret: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    state: Option<String>,
    #[serde(default, deserialize_with = "duration::option")]
    state_query_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration::option")]
    state_checkout_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration::option")]
    poll_interval: Option<Duration>,
    #[serde(default, deserialize_with = "duration::option")]
    lease: Option<Duration>,
    #[serde(default, deserialize_with = "duration::option")]
    shutdown_deadline: Option<Duration>,
    concurrency: Option<usize>,
    max_concurrent_syncs: Option<usize>,
    max_tags: Option<usize>,
    #[serde(default, deserialize_with = "duration::option")]
    first_run_spread: Option<Duration>,
    default_rollback: Option<RollbackMode>,
    #[serde(default, deserialize_with = "duration::option_or_zero")]
    retry_backoff: Option<Duration>,
    usage_log_max_entries: Option<usize>,
    #[serde(default, deserialize_with = "duration::option_or_zero")]
    usage_log_max_age: Option<Duration>,
    ssrf_guard: Option<bool>,
    #[serde(default)]
    ssrf_allow: Vec<String>,
    destination: Spanned<RawDestination>,
    #[serde(default)]
    webhook: Vec<Spanned<RawWebhook>>,
    /// Each a [`MirrorSettings`] once its secret and paths are resolved.
    #[serde(default)]
    mirror: Vec<Spanned<toml::Table>>,
    api: Option<Spanned<RawApi>>,
    log_format: Option<LogFormat>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    listen: String,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    token_file: Option<PathBuf>,
    token_env: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDestination {
    registry: String,
    username: Option<String>,
    password: Option<String>,
    password_file: Option<PathBuf>,
    password_env: Option<String>,
    tls_verify: Option<bool>,
    cert_dir: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url: String,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    secret_env: Option<String>,
}

/// A secret given inline, in a file, or in an environment variable. (Not flattened into the
/// tables above: serde cannot deny unknown fields next to a flattened struct.)
struct RawSecret {
    value: Option<String>,
    file: Option<PathBuf>,
    env: Option<String>,
}

impl WorkerConfig {
    /// Read and check the file at `path`.
    pub fn load(path: &Path) -> CliResult<WorkerConfig> {
        let (text, base) = read(path)?;
        Self::parse(&text, base).map_err(|f| f.context(format!("config file {}", path.display())))
    }

    /// Only the state store of the file at `path`, for the mirror commands: they need no
    /// secrets, so the file's passwords (files, environment variables) are not read.
    pub fn load_state(path: &Path) -> CliResult<StoreUrl> {
        let (text, base) = read(path)?;
        let raw: RawConfig = toml::from_str(&text).map_err(|e| {
            toml_error(&text, &e).context(format!("config file {}", path.display()))
        })?;
        state(&raw, base)
    }

    /// Only the SSRF guard of the file at `path` (`ssrf_guard`, `ssrf_allow`), for the mirror
    /// commands to check a source as the workers will; like [`WorkerConfig::load_state`], no
    /// secret is read.
    pub fn load_address_guard(path: &Path) -> CliResult<Option<AddressGuard>> {
        let (text, _) = read(path)?;
        let raw: RawConfig = toml::from_str(&text).map_err(|e| {
            toml_error(&text, &e).context(format!("config file {}", path.display()))
        })?;
        AddressGuard::switch(raw.ssrf_guard.unwrap_or(false), &raw.ssrf_allow).map_err(|e| {
            Failure::from(e).context(format!("config file {}: ssrf_allow", path.display()))
        })
    }

    /// Parse `text`; relative paths in it are relative to `base` (the file's directory).
    pub fn parse(text: &str, base: &Path) -> CliResult<WorkerConfig> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        let state = state(&raw, base)?;
        let positive = |value: Option<usize>, key: &str, default: usize| match value {
            Some(0) => Err(Failure::invalid(format!("{key}: must be at least 1"))),
            Some(n) => Ok(n),
            None => Ok(default),
        };
        // Checks after parsing name the line of the table they are about.
        let line = |span: std::ops::Range<usize>| format!("line {}", line_of(text, span.start));
        let at = line(raw.destination.span());
        let destination =
            destination(raw.destination.into_inner(), base).map_err(|f| f.context(&at))?;
        let webhooks = raw
            .webhook
            .into_iter()
            .enumerate()
            .map(|(i, w)| {
                let at = line(w.span());
                webhook(w.into_inner(), base)
                    .map_err(|f| f.context(format!("{at}: webhook {}", i + 1)))
            })
            .collect::<CliResult<Vec<_>>>()?;
        let defaults = MirrorDefaults {
            rollback: raw.default_rollback.unwrap_or_default(),
            retry_backoff: raw.retry_backoff.unwrap_or(DEFAULT_RETRY_BACKOFF),
        };
        // Checked here too: with no mirror relying on it, nothing else would.
        check_whole_seconds(defaults.retry_backoff, "retry_backoff")?;
        let log_retention = log_retention(raw.usage_log_max_entries, raw.usage_log_max_age);
        let address_guard = AddressGuard::switch(raw.ssrf_guard.unwrap_or(false), &raw.ssrf_allow)
            .map_err(|e| Failure::from(e).context("ssrf_allow"))?;
        let mut mirrors = Vec::with_capacity(raw.mirror.len());
        for m in raw.mirror {
            let at = line(m.span());
            let m = m.into_inner();
            let id = m
                .get("id")
                .and_then(toml::Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let config = mirror(m, base, &defaults, &id).map_err(|f| f.context(&at))?;
            if mirrors.iter().any(|c: &ValidConfig| c.id == config.id) {
                return Err(Failure::invalid(format!(
                    "{at}: mirror {id:?} is declared twice; one mirror per destination repository"
                )));
            }
            mirrors.push(config);
        }
        let api = match raw.api {
            Some(a) => {
                let at = line(a.span());
                Some(api(a.into_inner(), base).map_err(|f| f.context(format!("{at}: api")))?)
            }
            None => None,
        };
        let default_timeouts = StoreTimeouts::default();
        Ok(WorkerConfig {
            state,
            state_timeouts: StoreTimeouts {
                query: raw.state_query_timeout.unwrap_or(default_timeouts.query),
                checkout: raw
                    .state_checkout_timeout
                    .unwrap_or(default_timeouts.checkout),
            },
            poll_interval: raw.poll_interval.unwrap_or(DEFAULT_POLL_INTERVAL),
            lease: raw.lease.unwrap_or(DEFAULT_LEASE),
            shutdown_deadline: raw.shutdown_deadline.unwrap_or(DEFAULT_SHUTDOWN_DEADLINE),
            concurrency: positive(raw.concurrency, "concurrency", DEFAULT_CONCURRENCY)?,
            max_concurrent_syncs: positive(
                raw.max_concurrent_syncs,
                "max_concurrent_syncs",
                DEFAULT_MAX_CONCURRENT,
            )?,
            max_tags: positive(
                raw.max_tags,
                "max_tags",
                regmirror::registry::http::DEFAULT_MAX_TAGS,
            )?,
            first_run_spread: raw.first_run_spread.unwrap_or(DEFAULT_FIRST_RUN_SPREAD),
            defaults,
            log_retention,
            address_guard,
            destination,
            webhooks,
            mirrors,
            api,
            log_format: raw.log_format.unwrap_or_default(),
        })
    }
}

/// The usage log's retention from `usage_log_max_entries` and `usage_log_max_age`: 0 keeps
/// everything, as leaving the key out of a file could not say.
fn log_retention(max_entries: Option<usize>, max_age: Option<Duration>) -> LogRetention {
    LogRetention {
        max_entries: match max_entries {
            Some(0) => None,
            Some(n) => Some(n),
            None => LogRetention::default().max_entries,
        },
        max_age: match max_age {
            Some(age) if age.is_zero() => None,
            Some(age) => Some(age),
            None => LogRetention::default().max_age,
        },
    }
}

/// The file's text and the directory its relative paths start from.
fn read(path: &Path) -> CliResult<(String, &Path)> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::invalid(format!("--config: cannot read {}: {e}", path.display())))?;
    Ok((text, path.parent().unwrap_or(Path::new("."))))
}

/// The state store the file names (a relative SQLite path is relative to the file).
fn state(raw: &RawConfig, base: &Path) -> CliResult<StoreUrl> {
    let state = raw.state.as_deref().unwrap_or(DEFAULT_STATE);
    Ok(match crate::store::parse(state, "state")? {
        StoreUrl::Sqlite(path) => StoreUrl::Sqlite(base.join(path)),
        other => other,
    })
}

/// Every key of the file, the only text of a line an error message may repeat.
const KEYS: &[&str] = &[
    "state",
    "state_query_timeout",
    "state_checkout_timeout",
    "poll_interval",
    "lease",
    "shutdown_deadline",
    "concurrency",
    "max_concurrent_syncs",
    "max_tags",
    "first_run_spread",
    "default_rollback",
    "retry_backoff",
    "usage_log_max_entries",
    "usage_log_max_age",
    "ssrf_guard",
    "ssrf_allow",
    "registry",
    "username",
    "password",
    "password_file",
    "password_env",
    "tls_verify",
    "cert_dir",
    "ca_file",
    "url",
    "secret",
    "secret_file",
    "secret_env",
    "id",
    "source",
    "tags",
    "architectures",
    "interval",
    "start",
    "enabled",
    "verify_tls",
    "timeout",
    "rollback",
    "platform_index",
    "referrers",
    "robot",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "listen",
    "tls_cert",
    "tls_key",
    "token_file",
    "token_env",
    "log_format",
];

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The line, key and message of a TOML error, without the source excerpt (it may show a
/// password). The key is read from the start of the line, never the value after it.
fn toml_error(text: &str, e: &toml::de::Error) -> Failure {
    let at = e
        .span()
        .map(|span| {
            let line = line_of(text, span.start);
            let key = text
                .lines()
                .nth(line - 1)
                .and_then(|l| l.split_once('='))
                .map(|(key, _)| key.trim())
                // Only a key the file format has: a line inside a multi-line string could be
                // part of a password.
                .filter(|key| KEYS.contains(key))
                .filter(|key| !e.message().contains(&format!("`{key}`")))
                // A missing key is reported at the start of its table, whatever key is there.
                .filter(|_| !e.message().starts_with("missing field"));
            match key {
                Some(key) => format!("line {line}: {key}: "),
                None => format!("line {line}: "),
            }
        })
        .unwrap_or_default();
    Failure::invalid(format!("{at}{}", e.message().trim_end()))
}

fn destination(raw: RawDestination, base: &Path) -> CliResult<Destination> {
    let context = |f: Failure| f.context("destination");
    let mut destination = Destination::parse(&raw.registry).map_err(|e| context(e.into()))?;
    if let regmirror::DestinationTarget::Layouts(dir) = &mut destination.target {
        *dir = base.join(&*dir);
    }
    let password = RawSecret {
        value: raw.password,
        file: raw.password_file,
        env: raw.password_env,
    };
    destination.credentials = credentials(raw.username, password, base).map_err(context)?;
    destination.validate().map_err(|e| context(e.into()))?;
    if let Some(dir) = raw.cert_dir {
        let dir = base.join(dir);
        check_cert_dir(&dir).map_err(|e| context(Failure::from(e).context("cert_dir")))?;
        destination.ca_certs.push(dir);
    }
    destination.tls_verify = raw.tls_verify.unwrap_or(true);
    Ok(destination)
}

fn webhook(raw: RawWebhook, base: &Path) -> CliResult<Webhook> {
    match url::Url::parse(&raw.url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {}
        _ => {
            return Err(Failure::invalid("url: not an http:// or https:// URL"));
        }
    }
    let secret = secret(
        RawSecret {
            value: raw.secret,
            file: raw.secret_file,
            env: raw.secret_env,
        },
        "secret",
        base,
    )?;
    Ok(Webhook {
        url: raw.url,
        secret,
    })
}

fn api(raw: RawApi, base: &Path) -> CliResult<ApiConfig> {
    if !raw.listen.contains(':') || raw.listen.starts_with(':') {
        return Err(Failure::invalid(format!(
            "listen: {:?} is not HOST:PORT, as in \"127.0.0.1:9480\"",
            raw.listen
        )));
    }
    let tls = match (raw.tls_cert, raw.tls_key) {
        (Some(cert), Some(key)) => Some((base.join(cert), base.join(key))),
        (None, None) => None,
        _ => {
            return Err(Failure::invalid(
                "tls_cert and tls_key go together (a certificate chain and its key, PEM)",
            ));
        }
    };
    let token = secret(
        RawSecret {
            value: None,
            file: raw.token_file,
            env: raw.token_env,
        },
        "token",
        base,
    )?
    .ok_or_else(|| {
        Failure::invalid(
            "token_file or token_env is required: requests must carry Authorization: Bearer TOKEN",
        )
    })?;
    if token.is_empty() {
        return Err(Failure::invalid("the token is empty"));
    }
    Ok(ApiConfig {
        listen: raw.listen,
        tls,
        token: ApiToken(token),
    })
}

/// `key` (a backoff) must be whole seconds: the store keeps whole seconds.
fn check_whole_seconds(d: Duration, key: &str) -> CliResult<()> {
    if d.subsec_nanos() != 0 {
        return Err(Failure::invalid(format!(
            "{key}: {} is not a whole number of seconds (\"0s\" retries at the next poll)",
            humantime::format_duration(d)
        )));
    }
    Ok(())
}

/// A `[[mirror]]` table as [`MirrorSettings`]: its password read from where the file says,
/// its paths relative to the file, its TOML date-time as text. The core checks the rest.
fn mirror(
    table: toml::Table,
    base: &Path,
    defaults: &MirrorDefaults,
    id: &str,
) -> CliResult<ValidConfig> {
    let settings = settings(table, base).map_err(|f| f.context(format!("mirror {id:?}")))?;
    // The core's errors name the mirror themselves.
    Ok(settings.into_config(defaults)?)
}

/// A `[[mirror]]` table as the core's settings: secrets read from their file or variable,
/// paths made absolute against the config file's folder, TOML date-times as text.
fn settings(mut table: toml::Table, base: &Path) -> CliResult<MirrorSettings> {
    let mut text = |key: &str| match table.remove(key) {
        Some(toml::Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Failure::invalid(format!("{key}: must be a string"))),
        None => Ok(None),
    };
    let password = RawSecret {
        value: text("password")?,
        file: text("password_file")?.map(PathBuf::from),
        env: text("password_env")?,
    };
    if let Some(password) = secret(password, "password", base)? {
        table.insert("password".into(), password.into());
    }
    for key in ["cert_dir", "ca_file"] {
        if let Some(toml::Value::String(path)) = table.get_mut(key) {
            *path = base.join(&*path).display().to_string();
        }
    }
    // `start = 2026-12-01T03:00:00Z` (a TOML date-time) or the same quoted, as many write it.
    if let Some(start) = table.get_mut("start")
        && let toml::Value::Datetime(time) = start
    {
        *start = time.to_string().into();
    }
    toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| Failure::invalid(e.message().trim_end()))
}

fn credentials(
    username: Option<String>,
    password: RawSecret,
    base: &Path,
) -> CliResult<Option<Credentials>> {
    let password = secret(password, "password", base)?;
    match (username, password) {
        (Some(user), _) if user.is_empty() => Err(Failure::invalid("username: is empty")),
        (Some(user), Some(password)) => Ok(Some(Credentials::new(user, password))),
        (Some(_), None) => Err(Failure::invalid(
            "username is set but no password (password, password_file or password_env)",
        )),
        (None, Some(_)) => Err(Failure::invalid("a password is set but no username")),
        (None, None) => Ok(None),
    }
}

/// A secret from exactly one of `KEY`, `KEY_file`, `KEY_env`.
fn secret(raw: RawSecret, key: &str, base: &Path) -> CliResult<Option<String>> {
    match (raw.value, raw.file, raw.env) {
        (None, None, None) => Ok(None),
        (Some(value), None, None) => Ok(Some(value)),
        (None, Some(file), None) => {
            let path = base.join(file);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                Failure::invalid(format!("{key}_file: cannot read {}: {e}", path.display()))
            })?;
            // The line ending an editor adds is not part of the secret.
            let value = text.strip_suffix('\n').unwrap_or(&text);
            Ok(Some(value.strip_suffix('\r').unwrap_or(value).to_owned()))
        }
        (None, None, Some(var)) => match std::env::var(&var) {
            Ok(value) if !value.is_empty() => Ok(Some(value)),
            _ => Err(Failure::invalid(format!(
                "{key}_env: the environment variable {var} is not set"
            ))),
        },
        _ => Err(Failure::invalid(format!(
            "give only one of {key}, {key}_file and {key}_env"
        ))),
    }
}

/// Durations written as whole seconds (`30`) or with units (`"30s"`, `"6h"`, `"1day"`).
mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, de::Error};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }

    /// A duration greater than zero.
    pub fn option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let duration = option_or_zero(d)?.expect("option_or_zero always gives a duration");
        if duration.is_zero() {
            return Err(D::Error::custom("a duration must be greater than zero"));
        }
        Ok(Some(duration))
    }

    /// A duration, zero included (`"0s"`, `0`).
    pub fn option_or_zero<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let duration = match Raw::deserialize(d)? {
            Raw::Secs(secs) => Duration::from_secs(secs),
            Raw::Text(text) => humantime::parse_duration(&text).map_err(|e| {
                D::Error::custom(format!(
                    "{text:?} is not a duration ({e}); write e.g. \"30s\" or \"6h\""
                ))
            })?,
        };
        Ok(Some(duration))
    }
}

#[cfg(test)]
mod tests {
    use regmirror::ReferrersPolicy;

    use super::*;

    #[test]
    fn the_api_table_needs_a_token_and_a_port_and_never_shows_the_token() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "t0ken-in-a-file\n").unwrap();
        let parse = |extra: &str| {
            WorkerConfig::parse(
                &format!("log_format = \"json\"\n[destination]\nregistry = \"r.io\"\n{extra}"),
                dir.path(),
            )
        };
        let config = parse("[api]\nlisten = \"127.0.0.1:9480\"\ntoken_file = \"token\"\n").unwrap();
        assert_eq!(config.log_format, LogFormat::Json);
        let api = config.api.expect("[api] given");
        assert_eq!(api.listen, "127.0.0.1:9480");
        assert_eq!(api.token.0, "t0ken-in-a-file");
        assert!(!format!("{api:?}").contains("t0ken"));
        assert!(parse("").unwrap().api.is_none());
        for (bad, says) in [
            (
                "[api]\nlisten = \"127.0.0.1:9480\"\n",
                "token_file or token_env is required",
            ),
            (
                "[api]\nlisten = \"9480\"\ntoken_file = \"token\"\n",
                "not HOST:PORT",
            ),
            (
                "[api]\nlisten = \"127.0.0.1:1\"\ntoken_file = \"token\"\ntls_cert = \"c.pem\"\n",
                "tls_cert and tls_key go together",
            ),
            (
                "[api]\nlisten = \"127.0.0.1:1\"\ntoken_env = \"REGMIRROR_TEST_UNSET_TOKEN\"\n",
                "REGMIRROR_TEST_UNSET_TOKEN is not set",
            ),
            (
                "[api]\nlisten = \"127.0.0.1:1\"\ntoken = \"x\"\n",
                "unknown field `token`",
            ),
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let e = WorkerConfig::parse(
            "log_format = \"xml\"\n[destination]\nregistry = \"r.io\"\n",
            dir.path(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("log_format"), "{e}");
    }

    const EXAMPLE: &str = r#"
state = "sqlite:state/regmirror.db"
poll_interval = "10s"
lease = "15s"
shutdown_deadline = "8s"
first_run_spread = "90s"

[destination]
registry = "127.0.0.1:5000"
username = "robot"
password = "robot:pa$$"
tls_verify = false

[[webhook]]
url = "http://127.0.0.1:9000/hook"

[[mirror]]
id = "mirror/etcd"
source = "quay.io/coreos/etcd"
tags = "v3.5.*, !*-rc*"
architectures = ["amd64", "arm64"]
interval = "6h"
start = 2026-12-01T03:00:00Z
rollback = "all_or_nothing"
referrers = "application/vnd.dev.cosign.simplesigning.v1+json, application/spdx+json"

[[mirror]]
id = "mirror/alpine"
source = "docker.io/library/alpine"
tags = ["3.*"]
interval = 3600
start = "2026-12-01T04:30:00+01:00"
tls_verify = false
username = "me"
password_env = "REGMIRROR_TEST_CFG_PW"
"#;

    #[test]
    fn a_full_file() {
        // SAFETY: no other test reads or writes this variable.
        unsafe { std::env::set_var("REGMIRROR_TEST_CFG_PW", "env:secret") };
        let c = WorkerConfig::parse(EXAMPLE, Path::new("/etc/regmirror")).unwrap();
        assert_eq!(
            c.state,
            StoreUrl::Sqlite("/etc/regmirror/state/regmirror.db".into())
        );
        assert_eq!(c.poll_interval, Duration::from_secs(10));
        assert_eq!(c.lease, Duration::from_secs(15));
        assert_eq!(c.shutdown_deadline, Duration::from_secs(8));
        assert_eq!(c.first_run_spread, Duration::from_secs(90));
        assert_eq!(
            c.destination.target,
            regmirror::DestinationTarget::Registry("127.0.0.1:5000".into())
        );
        assert_eq!(
            c.destination.credentials.as_ref().unwrap().password,
            "robot:pa$$"
        );
        assert!(!c.destination.tls_verify);
        assert_eq!(c.webhooks.len(), 1);
        let etcd = &c.mirrors[0];
        assert_eq!(etcd.tags, ["v3.5.*", "!*-rc*"]);
        assert_eq!(etcd.sync_interval, Duration::from_secs(6 * 3600));
        assert_eq!(etcd.rollback, RollbackMode::AllOrNothing);
        assert_eq!(
            etcd.referrers,
            ReferrersPolicy::Types(vec![
                "application/vnd.dev.cosign.simplesigning.v1+json".into(),
                "application/spdx+json".into()
            ])
        );
        assert_eq!(
            etcd.sync_start_date.unwrap(),
            time::macros::datetime!(2026-12-01 03:00 UTC)
        );
        let alpine = &c.mirrors[1];
        assert_eq!(alpine.sync_interval, Duration::from_secs(3600));
        assert_eq!(alpine.referrers, ReferrersPolicy::All, "the default");
        assert!(etcd.verify_tls);
        assert!(
            !alpine.verify_tls,
            "tls_verify, spelled as in [destination]"
        );
        // A quoted start time works as well as a TOML date-time.
        assert_eq!(
            alpine.sync_start_date.unwrap(),
            time::macros::datetime!(2026-12-01 03:30 UTC)
        );
        assert_eq!(
            alpine.source_credentials.as_ref().unwrap().password,
            "env:secret"
        );
    }

    #[test]
    fn mistakes_are_named_without_quoting_secrets() {
        let cases = [
            (
                "[destination]\nregistry = \"r.io\"\npasword = \"hunter2\"\n",
                "unknown field `pasword`",
            ),
            (
                "[destination]\nregistry = \"r.io\"\nusername = \"u\"\n",
                "no password",
            ),
            (
                "[destination]\nregistry = \"r.io/ns\"\n",
                "is not host[:port]",
            ),
            (
                "[destination]\nregistry = \"r.io\"\n[[mirror]]\nid = \"m/a\"\nsource = \"q.io/a\"\ntags = \"*\"\nreferrers = \"signed\"\n",
                "referrers: \"signed\" is not an artifact (media) type",
            ),
            (
                "poll_interval = \"soon\"\n[destination]\nregistry = \"r.io\"\n",
                "is not a duration",
            ),
            (
                "[destination]\nregistry = \"r.io\"\n[[mirror]]\nid = \"m/a\"\nsource = \"q.io/a\"\ntags = \"v3.[12\"\n",
                "mirror \"m/a\": tags: ",
            ),
            (
                "[destination]\nregistry = \"r.io\"\n[[mirror]]\nid = \"m/a\"\nsource = \"q.io/a\"\ntags = \"*\"\n[[mirror]]\nid = \"m/a\"\nsource = \"q.io/b\"\ntags = \"*\"\n",
                "declared twice",
            ),
            (
                "state = \"redis://x\"\n[destination]\nregistry = \"r.io\"\n",
                "unknown state store",
            ),
            (
                "[destination]\nregistry = \"r.io\"\npassword = \"hunter2\n",
                "line 3",
            ),
            // Checks after parsing name the line of the table, the key and the mirror once.
            (
                "[destination]\nregistry = \"r.io\"\n\n[[mirror]]\nid = \"m/a\"\nsource = \"q.io/a\"\ntags = \"*\"\n\n[[mirror]]\nid = \"m/b\"\nsource = \"q.io/a\"\ntags = \"v3.[12\"\n",
                "line 9: mirror \"m/b\": tags: invalid tag pattern",
            ),
            (
                "[destination]\nregistry = \"r.io\"\n[[mirror]]\nid = \"M/A\"\nsource = \"q.io/a\"\ntags = \"*\"\n",
                "line 3: mirror \"M/A\": id: repository \"M/A\" is not valid",
            ),
            (
                "state = \"sqlite:x\"\n\n[destination]\nregistry = \"r.io\"\npassword = \"hunter2\"\n",
                "line 3: destination: a password is set but no username",
            ),
            // An unclosed multi-line password: its lines are never shown as keys.
            (
                "[destination]\nregistry = \"r.io\"\npassword = \"\"\"\nhunter2 = x\n",
                "line ",
            ),
            (
                "[destination]\nregistry = \"r.io\"\n[[mirror]]\nid = \"m/a\"\nsource = \"q.io/a\"\ntags = \"*\"\nca_file = \"/nonexistent/ca.pem\"\n",
                "line 3: mirror \"m/a\": ca_file: /nonexistent/ca.pem is not a file",
            ),
            (
                "[destination]\nregistry = \"r.io\"\n[[mirror]]\nid = \"m/a\"\nsource = \"q.io/a\"\ntags = \"*\"\ncert_dir = \"/nonexistent/certs.d\"\n",
                "line 3: mirror \"m/a\": cert_dir: /nonexistent/certs.d is not a readable directory",
            ),
            (
                "state = \"sqlite:x\"\n",
                "line 1: missing field `destination`",
            ),
            (
                "poll_interval = \"0s\"\n[destination]\nregistry = \"r.io\"\n",
                "line 1: poll_interval: a duration must be greater than zero",
            ),
            (
                "[destination]\nregistry = \"r.io\"\n[[mirror]]\nid = \"m/a\"\nsource = \"q.io/a\"\ntags = \"*\"\ninterval = \"500ms\"\n",
                "line 3: mirror \"m/a\": interval: 500ms is less than 1 second; intervals are whole seconds",
            ),
            (
                "[destination]\nregistry = \"r.io\"\n[[mirror]]\nid = \"m/a\"\nsource = \"q.io/a\"\ntags = \"*\"\ninterval = \"90s 500ms\"\n",
                "interval: 1m 30s 500ms is not a whole number of seconds",
            ),
            (
                "retry_backoff = \"1500ms\"\n[destination]\nregistry = \"r.io\"\n",
                "retry_backoff: 1s 500ms is not a whole number of seconds",
            ),
            (
                "[destination]\nregistry = \"r.io\"\nusername = \"u\"\npassword = \"\"\"\nhunter2 = \"\"\"\n[[webhook]]\nurl = \"ftp://x\"\n",
                "line 6: webhook 1: url: not an http",
            ),
            (
                "ssrf_guard = true\nssrf_allow = [\"10.0.0.0/99\"]\n[destination]\nregistry = \"r.io\"\n",
                "ssrf_allow: SSRF guard allow-list entry \"10.0.0.0/99\" is not valid",
            ),
            (
                "ssrf_allow = [\"10.0.0.0/8\"]\n[destination]\nregistry = \"r.io\"\n",
                "ssrf_allow: an SSRF guard allow-list has no effect while the guard is off",
            ),
        ];
        for (text, needle) in cases {
            let e = WorkerConfig::parse(text, Path::new("/"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{needle:?} not in {e:?}");
            assert!(!e.contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn the_readme_example_is_a_valid_config() {
        let readme = include_str!("../../README.md");
        let start = readme
            .find("```toml\n# regmirror.toml\n")
            .expect("the README shows a worker config");
        let block = &readme[start + "```toml\n".len()..];
        let block = &block[..block.find("```").unwrap()];
        // Every key is known (unknown ones are refused) ...
        let raw: RawConfig = toml::from_str(block).unwrap();
        assert_eq!(raw.mirror.len(), 2);
        // ... and every mirror is valid, secrets coming from where the example says.
        // SAFETY: no other test reads or writes this variable.
        unsafe { std::env::set_var("DOCKERHUB_TOKEN", "token") };
        for m in raw.mirror {
            let defaults = MirrorDefaults {
                rollback: RollbackMode::default(),
                retry_backoff: DEFAULT_RETRY_BACKOFF,
            };
            mirror(m.into_inner(), Path::new("/"), &defaults, "readme").unwrap();
        }
    }

    #[test]
    fn retry_backoff_and_log_retention() {
        let c = WorkerConfig::parse(
            "retry_backoff = \"0s\"\nusage_log_max_entries = 500\nusage_log_max_age = 0\n\
             [destination]\nregistry = \"r.io\"\n\
             [[mirror]]\nid = \"m/a\"\nsource = \"q.io/a\"\ntags = \"*\"\n\
             [[mirror]]\nid = \"m/b\"\nsource = \"q.io/b\"\ntags = \"*\"\nretry_backoff = \"5m\"\n",
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(
            c.mirrors[0].retry_backoff,
            Duration::ZERO,
            "Quay's next poll"
        );
        assert_eq!(c.mirrors[1].retry_backoff, Duration::from_secs(300));
        assert_eq!(
            c.log_retention,
            LogRetention {
                max_entries: Some(500),
                max_age: None
            }
        );
        let defaults =
            WorkerConfig::parse("[destination]\nregistry = \"r.io\"\n", Path::new("/")).unwrap();
        assert_eq!(defaults.log_retention, LogRetention::default());
    }

    #[test]
    fn the_ssrf_guard_is_off_unless_the_file_turns_it_on() {
        let dest = "[destination]\nregistry = \"r.io\"\n";
        let c = WorkerConfig::parse(dest, Path::new("/")).unwrap();
        assert_eq!(c.address_guard, None);
        let text =
            format!("ssrf_guard = true\nssrf_allow = [\"registry.corp\", \"10.0.0.0/8\"]\n{dest}");
        let c = WorkerConfig::parse(&text, Path::new("/")).unwrap();
        let guard = c.address_guard.unwrap();
        assert_eq!(guard.allow_list(), ["registry.corp", "10.0.0.0/8"]);
    }

    #[test]
    fn a_layout_destination() {
        let c = WorkerConfig::parse(
            "[destination]\nregistry = \"oci:mirrors\"\n",
            Path::new("/srv"),
        )
        .unwrap();
        assert_eq!(
            c.destination.target,
            regmirror::DestinationTarget::Layouts("/srv/mirrors".into())
        );
        assert_eq!(c.state, StoreUrl::Sqlite("/srv/regmirror.db".into()));
    }
}
