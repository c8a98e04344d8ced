//! A mirror's settings as people write them ([`MirrorSettings`]): the names of a `[[mirror]]`
//! table in the worker's `regmirror.toml`, durations as `"6h"` or seconds, tags as one
//! comma-separated string or a list. The CLI's config file, the bindings (a dict, an object, a
//! JSON string) and an HTTP API all deserialize into it; [`MirrorSettings::into_config`] turns
//! it into a checked [`MirrorConfig`], with the defaults a worker's file or engine sets.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{
    Credentials, DEFAULT_RETRY_BACKOFF, MirrorConfig, PlatformIndexMode, ProxyConfig,
    ReferrersPolicy, RollbackMode, ValidConfig, check_interval,
};
use crate::error::{Error, ErrorKind, Result};
use crate::pattern::TagFilter;
use crate::reference::RepositoryRef;

/// One mirror's settings under the names of the worker file's `[[mirror]]` table. Unknown
/// names are refused (a typo must not silently drop a setting); what is left out takes its
/// default ([`MirrorConfig::new`], and the [`MirrorDefaults`] given to `into_config`).
///
/// ```
/// use regmirror::config::{MirrorDefaults, MirrorSettings};
///
/// let settings: MirrorSettings = serde_json::from_str(r#"{
///     "id": "mirror/etcd", "source": "quay.io/coreos/etcd", "tags": "v3.5.*, !*-rc*",
///     "interval": "6h", "architectures": ["amd64", "arm64"], "rollback": "all_or_nothing"
/// }"#).unwrap();
/// let config = settings.into_config(&MirrorDefaults::default()).unwrap();
/// assert_eq!(config.tags, ["v3.5.*", "!*-rc*"]);
/// assert_eq!(config.sync_interval.as_secs(), 6 * 3600);
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorSettings {
    /// The destination repository (`namespace/name`).
    pub id: String,
    /// The repository to mirror, `host[:port]/path` (skopeo's `docker://` prefix allowed).
    pub source: String,
    /// Tag patterns: a list, or one string of comma-separated patterns.
    #[serde(deserialize_with = "one_or_many")]
    pub tags: Vec<String>,
    /// Architectures to copy from multi-arch images; none (the default) copies all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub architectures: Vec<String>,
    /// Time between scheduled syncs (default 24h): `"6h"`, `"30m"` or seconds.
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// The first scheduled sync, RFC 3339 (`2026-12-01T03:00:00Z`); default now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// The wait before retrying a failed run (default: [`MirrorDefaults::retry_backoff`]); 0
    /// retries at the next poll.
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    pub retry_backoff: Option<Duration>,
    /// Default `true`; a disabled mirror runs only on "sync now".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Verify the source's TLS certificate (default `true`); `false` also permits plain HTTP.
    /// Also spelled `tls_verify`, as skopeo does.
    #[serde(default, alias = "tls_verify", skip_serializing_if = "Option::is_none")]
    pub verify_tls: Option<bool>,
    /// The source's private CA: a directory of `*.crt` files (as docker's `certs.d/HOST`) ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_dir: Option<PathBuf>,
    /// ... or one PEM bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Upper bound for one sync run (default 1h).
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Default: [`MirrorDefaults::rollback`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_index: Option<PlatformIndexMode>,
    /// `all` (default), `none` or comma-separated artifact types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrers: Option<ReferrersPolicy>,
    /// The only identity that may push to the destination repository while it is mirrored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub robot: Option<String>,
    /// The source's username; with `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Never shown by `Debug`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_proxy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https_proxy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_proxy: Option<String>,
}

/// What applies to mirrors whose settings leave it out: a worker file's top-level
/// `default_rollback` and `retry_backoff`, or an engine's
/// [`EngineSettings::mirror_defaults`](crate::EngineSettings::mirror_defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MirrorDefaults {
    /// Quay's `REPO_MIRROR_ROLLBACK`.
    pub rollback: RollbackMode,
    pub retry_backoff: Duration,
}

impl Default for MirrorDefaults {
    /// Quay's rollback default ([`RollbackMode::FailedTagsOnly`]) and [`DEFAULT_RETRY_BACKOFF`].
    fn default() -> Self {
        MirrorDefaults {
            rollback: RollbackMode::default(),
            retry_backoff: DEFAULT_RETRY_BACKOFF,
        }
    }
}

impl fmt::Debug for MirrorSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MirrorSettings")
            .field("id", &self.id)
            .field("source", &self.source)
            .field("tags", &self.tags)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl MirrorSettings {
    /// Settings mirroring `source` into repository `id`, selecting `tags`; the rest default.
    pub fn new(id: impl Into<String>, source: impl Into<String>, tags: &[&str]) -> Self {
        MirrorSettings {
            id: id.into(),
            source: source.into(),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            architectures: Vec::new(),
            interval: None,
            start: None,
            retry_backoff: None,
            enabled: None,
            verify_tls: None,
            cert_dir: None,
            ca_file: None,
            timeout: None,
            rollback: None,
            platform_index: None,
            referrers: None,
            robot: None,
            username: None,
            password: None,
            http_proxy: None,
            https_proxy: None,
            no_proxy: None,
        }
    }

    /// The checked configuration ([`MirrorConfig::validated`]), what is left out taken
    /// from `defaults`. Relative `cert_dir` / `ca_file` paths become absolute against the
    /// current directory (a worker elsewhere reads them); both must exist here. An error is
    /// `InvalidConfig` naming the mirror and the setting as written here (`interval`, not
    /// `sync_interval`), never a password.
    pub fn into_config(self, defaults: &MirrorDefaults) -> Result<ValidConfig> {
        let id = self.id.clone();
        // The conversion's errors name the setting; validation's already name the mirror.
        self.convert(defaults)
            .map_err(|e| e.context(format!("mirror {id:?}")))?
            .validated()
    }

    fn convert(self, defaults: &MirrorDefaults) -> Result<MirrorConfig> {
        let invalid =
            |key: &str, why: String| Error::new(ErrorKind::InvalidConfig, format!("{key}: {why}"));
        let source = RepositoryRef::parse_docker(&self.source)
            .map_err(|e| invalid("source", e.message().to_owned()))?;
        let tags = TagFilter::new(&self.tags).map_err(|e| e.context("tags"))?;
        let patterns: Vec<&str> = tags.patterns().iter().map(String::as_str).collect();
        let mut config = MirrorConfig::new(self.id, source, &patterns);
        config.architectures = self.architectures;
        if let Some(interval) = self.interval {
            check_interval(interval).map_err(|why| invalid("interval", why))?;
            config.sync_interval = interval;
        }
        config.retry_backoff = self.retry_backoff.unwrap_or(defaults.retry_backoff);
        if config.retry_backoff.subsec_nanos() != 0 {
            return Err(invalid(
                "retry_backoff",
                format!(
                    "{} is not a whole number of seconds (\"0s\" retries at the next poll)",
                    humantime::format_duration(config.retry_backoff)
                ),
            ));
        }
        if let Some(start) = self.start {
            config.sync_start_date =
                Some(OffsetDateTime::parse(&start, &Rfc3339).map_err(|e| {
                    invalid(
                        "start",
                        format!(
                            "{start} is not a full date and time with an offset ({e}); write e.g. \
                         2026-12-01T03:00:00Z"
                        ),
                    )
                })?);
        }
        config.enabled = self.enabled.unwrap_or(true);
        config.verify_tls = self.verify_tls.unwrap_or(true);
        if let Some(dir) = self.cert_dir {
            let dir = absolute(&dir, "cert_dir")?;
            check_cert_dir(&dir).map_err(|e| e.context("cert_dir"))?;
            config.source_ca_certs.push(dir);
        }
        if let Some(file) = self.ca_file {
            let file = absolute(&file, "ca_file")?;
            if !file.is_file() {
                return Err(invalid(
                    "ca_file",
                    format!(
                        "{} is not a file; give the source's CA certificate (PEM)",
                        file.display()
                    ),
                ));
            }
            config.source_ca_certs.push(file);
        }
        if let Some(timeout) = self.timeout {
            config.timeout = timeout;
        }
        config.rollback = self.rollback.unwrap_or(defaults.rollback);
        if let Some(mode) = self.platform_index {
            config.platform_index = mode;
        }
        if let Some(referrers) = self.referrers {
            config.referrers = referrers;
        }
        config.robot = self.robot;
        config.source_credentials = match (self.username, self.password) {
            (Some(user), _) if user.is_empty() => {
                return Err(invalid("username", "is empty".to_owned()));
            }
            (Some(user), Some(password)) => Some(Credentials::new(user, password)),
            (Some(_), None) => {
                return Err(Error::new(
                    ErrorKind::InvalidConfig,
                    "username is set but no password",
                ));
            }
            (None, Some(_)) => {
                return Err(Error::new(
                    ErrorKind::InvalidConfig,
                    "a password is set but no username",
                ));
            }
            (None, None) => None,
        };
        config.proxy = ProxyConfig {
            http_proxy: self.http_proxy,
            https_proxy: self.https_proxy,
            no_proxy: self.no_proxy,
        };
        Ok(config)
    }
}

impl From<&MirrorConfig> for MirrorSettings {
    /// The settings that give `config` back through [`MirrorSettings::into_config`] (every
    /// default spelled out, the password included): what an update changes a few names of.
    fn from(config: &MirrorConfig) -> Self {
        let (dirs, files): (Vec<&PathBuf>, Vec<&PathBuf>) =
            config.source_ca_certs.iter().partition(|p| p.is_dir());
        let credentials = config.source_credentials.as_ref();
        MirrorSettings {
            id: config.id.clone(),
            source: config.source.to_string(),
            tags: config.tags.clone(),
            architectures: config.architectures.clone(),
            interval: Some(config.sync_interval),
            start: config
                .sync_start_date
                .and_then(|start| start.format(&Rfc3339).ok()),
            retry_backoff: Some(config.retry_backoff),
            enabled: Some(config.enabled),
            verify_tls: Some(config.verify_tls),
            cert_dir: dirs.first().map(|p| p.to_path_buf()),
            ca_file: files.first().map(|p| p.to_path_buf()),
            timeout: Some(config.timeout),
            rollback: Some(config.rollback),
            platform_index: Some(config.platform_index),
            referrers: Some(config.referrers.clone()),
            robot: config.robot.clone(),
            username: credentials.map(|c| c.username.clone()),
            password: credentials.map(|c| c.password.clone()),
            http_proxy: config.proxy.http_proxy.clone(),
            https_proxy: config.proxy.https_proxy.clone(),
            no_proxy: config.proxy.no_proxy.clone(),
        }
    }
}

impl MirrorSettings {
    /// Settings from JSON, as the bindings and an HTTP API send them. An error names the
    /// setting (`interval: "soon" is not a duration …`), not a position in the text.
    pub fn from_json(text: &str) -> Result<Self> {
        deserialize(&mut serde_json::Deserializer::from_str(text))
    }

    /// These settings with `changes` (names of a `[[mirror]]` table, as JSON) put over them;
    /// a `null` clears a setting back to its default. `id` cannot change.
    pub fn with_changes(self, changes: serde_json::Map<String, serde_json::Value>) -> Result<Self> {
        let id = self.id.clone();
        let invalid = |why: String| Error::new(ErrorKind::InvalidConfig, why);
        if changes.contains_key("id") {
            return Err(invalid(format!(
                "mirror {id:?}: id cannot change; add a mirror under the new id and delete this one"
            )));
        }
        let serde_json::Value::Object(mut settings) =
            serde_json::to_value(&self).map_err(|e| invalid(e.to_string()))?
        else {
            return Err(invalid(format!(
                "mirror {id:?}: settings are not an object"
            )));
        };
        for (name, value) in changes {
            // Under its alias a change must still replace the stored setting, not sit beside
            // it (serde refuses both spellings at once as a duplicate).
            let name = match name.as_str() {
                "tls_verify" => "verify_tls".to_owned(),
                _ => name,
            };
            if value.is_null() {
                settings.remove(&name);
            } else {
                settings.insert(name, value);
            }
        }
        deserialize(serde_json::Value::Object(settings))
            .map_err(|e| e.context(format!("mirror {id:?}")))
    }
}

/// Settings from any serde source, an error naming the setting it is about.
fn deserialize<'de, D>(from: D) -> Result<MirrorSettings>
where
    D: Deserializer<'de>,
    D::Error: fmt::Display,
{
    serde_path_to_error::deserialize(from).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        // serde_json adds where in the text it was; the setting's name says it better.
        let message = match message.rfind(" at line ") {
            Some(at) => &message[..at],
            None => &message,
        };
        Error::new(
            ErrorKind::InvalidConfig,
            if path == "." {
                message.to_owned()
            } else {
                format!("{path}: {message}")
            },
        )
    })
}

fn absolute(path: &Path, key: &str) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|e| {
        Error::new(
            ErrorKind::InvalidConfig,
            format!("{key}: {}: {e}", path.display()),
        )
    })
}

/// Check that `dir` is a CA directory as docker's `certs.d/HOST`: only its `*.crt` files (CAs)
/// and `*.cert` + `*.key` pairs (a client certificate) are read, so one without any (a
/// `ca.pem`, a typo) would silently do nothing and fail later as an unknown issuer. The error
/// says what to put there.
pub fn check_cert_dir(dir: &Path) -> Result<()> {
    let invalid = |why: String| Err(Error::new(ErrorKind::InvalidConfig, why));
    if dir.is_file() {
        return invalid(format!(
            "{} is a file; give the directory that holds it (as docker's certs.d/HOST), with \
             the CA certificate named ca.crt",
            dir.display()
        ));
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            return invalid(format!(
                "{} is not a readable directory: {e}",
                dir.display()
            ));
        }
    };
    let used = entries.filter_map(std::result::Result::ok).any(|e| {
        e.path()
            .extension()
            .is_some_and(|ext| ext == "crt" || ext == "cert")
    });
    if !used {
        return invalid(format!(
            "{} holds no *.crt file; put the registry's CA certificate (PEM) there as ca.crt \
             (and a client certificate as client.cert + client.key)",
            dir.display()
        ));
    }
    Ok(())
}

/// `tags = "v3.*, !*-rc*"` or `tags = ["v3.*", "!*-rc*"]`.
fn one_or_many<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Patterns {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Patterns::deserialize(d)? {
        Patterns::One(s) => vec![s],
        Patterns::Many(v) => v,
    })
}

/// Durations written as whole seconds (`30`) or with units (`"30s"`, `"6h"`, `"1day"`), and
/// written back with units.
pub(crate) mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) if d.is_zero() => s.serialize_str("0s"),
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
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
    use super::*;

    #[test]
    fn stored_settings_come_back_and_take_changes() {
        let defaults = MirrorDefaults::default();
        let config = MirrorSettings::from_json(
            r#"{"id": "m/a", "source": "q.io/a", "tags": "v*, !*-rc", "interval": "6h",
                "username": "u", "password": "p:w", "rollback": "all_or_nothing",
                "start": "2026-12-01T03:00:00Z", "tls_verify": false}"#,
        )
        .unwrap()
        .into_config(&defaults)
        .unwrap();
        let back = MirrorSettings::from(&*config);
        assert!(back.clone().into_config(&defaults).unwrap() == config);

        let changes = serde_json::json!({"interval": 7200, "tags": ["v1"], "rollback": null});
        let changed = back
            .clone()
            .with_changes(changes.as_object().unwrap().clone())
            .unwrap()
            .into_config(&defaults)
            .unwrap();
        assert_eq!(changed.sync_interval.as_secs(), 7200);
        assert_eq!(changed.tags, ["v1"]);
        assert_eq!(changed.rollback, RollbackMode::FailedTagsOnly);
        assert!(changed.source_credentials == config.source_credentials);
        assert!(!changed.verify_tls);

        let id = serde_json::json!({"id": "m/b"});
        let e = back
            .with_changes(id.as_object().unwrap().clone())
            .unwrap_err();
        assert!(e.message().contains("id cannot change"), "{e}");
    }

    #[test]
    fn a_change_under_an_alias_replaces_the_setting() {
        let settings = MirrorSettings::from_json(
            r#"{"id": "m/a", "source": "q.io/a", "tags": "v*", "tls_verify": true}"#,
        )
        .unwrap();
        let changes = serde_json::json!({"tls_verify": false});
        let changed = settings
            .with_changes(changes.as_object().unwrap().clone())
            .unwrap();
        assert_eq!(changed.verify_tls, Some(false));
    }

    #[test]
    fn json_errors_name_the_setting_not_a_position() {
        let e = MirrorSettings::from_json(
            r#"{"id": "m", "source": "q.io/a", "tags": "v", "interval": "soon"}"#,
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
        assert!(e.message().starts_with("interval: "), "{e}");
        let e = MirrorSettings::from_json(
            r#"{"id": "m", "source": "q.io/a", "tags": "v", "intervl": 1}"#,
        )
        .unwrap_err();
        assert!(e.message().contains("unknown field `intervl`"), "{e}");
        assert!(!e.message().contains("line"), "{e}");
    }

    fn settings(json: &str) -> Result<ValidConfig> {
        let settings: MirrorSettings = serde_json::from_str(json)
            .map_err(|e| Error::new(ErrorKind::InvalidConfig, e.to_string()))?;
        settings.into_config(&MirrorDefaults::default())
    }

    #[test]
    fn every_setting_reaches_the_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.crt"), "pem").unwrap();
        std::fs::write(dir.path().join("bundle.pem"), "pem").unwrap();
        let json = serde_json::json!({
            "id": "mirror/alpine", "source": "docker://docker.io/library/alpine",
            "tags": ["3.*", "!*rc*"], "architectures": ["amd64"], "interval": 3600,
            "start": "2026-12-01T04:30:00+01:00", "retry_backoff": "0s", "enabled": false,
            "tls_verify": false, "cert_dir": dir.path(), "ca_file": dir.path().join("bundle.pem"),
            "timeout": "30m", "rollback": "all_or_nothing", "platform_index": "rewrite",
            "referrers": "none", "robot": "bot", "username": "me", "password": "p:w",
            "http_proxy": "http://proxy:3128", "https_proxy": "http://proxy:3129",
            "no_proxy": "internal"
        });
        let settings: MirrorSettings = serde_json::from_value(json).unwrap();
        assert!(!format!("{settings:?}").contains("p:w"));
        // Written back under the same names, it reads as itself.
        let back: MirrorSettings =
            serde_json::from_value(serde_json::to_value(&settings).unwrap()).unwrap();
        assert_eq!(back, settings);
        let c = settings.into_config(&MirrorDefaults::default()).unwrap();
        assert_eq!(c.source.to_string(), "docker.io/library/alpine");
        assert_eq!(c.tags, ["3.*", "!*rc*"]);
        assert_eq!(c.architectures, ["amd64"]);
        assert_eq!(c.sync_interval, Duration::from_secs(3600));
        assert_eq!(
            c.sync_start_date,
            Some(time::macros::datetime!(2026-12-01 03:30 UTC))
        );
        assert_eq!(c.retry_backoff, Duration::ZERO);
        assert!(!c.enabled && !c.verify_tls);
        assert_eq!(
            c.source_ca_certs,
            [dir.path().to_owned(), dir.path().join("bundle.pem")]
        );
        assert_eq!(c.timeout, Duration::from_secs(1800));
        assert_eq!(c.rollback, RollbackMode::AllOrNothing);
        assert_eq!(c.platform_index, PlatformIndexMode::Rewrite);
        assert_eq!(c.referrers, ReferrersPolicy::None);
        assert_eq!(c.robot.as_deref(), Some("bot"));
        assert_eq!(c.source_credentials, Some(Credentials::new("me", "p:w")));
        assert_eq!(c.proxy.no_proxy.as_deref(), Some("internal"));
    }

    #[test]
    fn defaults_apply_to_what_is_left_out() {
        let defaults = MirrorDefaults {
            rollback: RollbackMode::AllOrNothing,
            retry_backoff: Duration::from_secs(5),
        };
        let c = MirrorSettings::new("ns/a", "q.io/a", &["v*, !*rc*"])
            .into_config(&defaults)
            .unwrap();
        assert_eq!(c.tags, ["v*", "!*rc*"]);
        assert_eq!(c.rollback, RollbackMode::AllOrNothing);
        assert_eq!(c.retry_backoff, Duration::from_secs(5));
        assert_eq!(c.sync_interval, Duration::from_secs(86_400));
        assert!(c.enabled && c.verify_tls);
    }

    #[test]
    fn mistakes_name_the_mirror_and_the_setting() {
        let base = r#""id": "m/a", "source": "q.io/a", "tags": "*""#;
        for (extra, needle) in [
            (r#", "intervall": 5"#, "unknown field `intervall`"),
            (r#", "interval": "soon""#, "is not a duration"),
            (
                r#", "interval": "500ms""#,
                "mirror \"m/a\": interval: 500ms is less than 1 second",
            ),
            (
                r#", "retry_backoff": "1500ms""#,
                "mirror \"m/a\": retry_backoff: 1s 500ms is not a whole number of seconds",
            ),
            (
                r#", "start": "tomorrow""#,
                "mirror \"m/a\": start: tomorrow is not",
            ),
            (
                r#", "architectures": ["amd65"]"#,
                "mirror \"m/a\": architectures: unknown architecture \"amd65\"",
            ),
            (
                r#", "cert_dir": "/nonexistent/certs.d""#,
                "mirror \"m/a\": cert_dir: /nonexistent/certs.d is not a readable directory",
            ),
            (
                r#", "ca_file": "/nonexistent/ca.pem""#,
                "mirror \"m/a\": ca_file: /nonexistent/ca.pem is not a file",
            ),
            (
                r#", "password": "hunter2""#,
                "mirror \"m/a\": a password is set but no username",
            ),
            (
                r#", "username": "u""#,
                "mirror \"m/a\": username is set but no password",
            ),
            (
                r#", "referrers": "signed""#,
                "is not an artifact (media) type",
            ),
            (
                r#", "rollback": "sometimes""#,
                "unknown variant `sometimes`",
            ),
        ] {
            let e = settings(&format!("{{{base}{extra}}}")).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidConfig);
            assert!(e.message().contains(needle), "{needle:?} not in {e}");
            assert!(!e.message().contains("hunter2"), "{e}");
        }
        let e = settings(r#"{"id": "M/A", "source": "q.io/a", "tags": "*"}"#).unwrap_err();
        assert!(
            e.message()
                .starts_with("mirror \"M/A\": id: repository \"M/A\" is not valid"),
            "{e}"
        );
        let e = settings(r#"{"id": "m/a", "source": "q.io/a", "tags": "v3.[12"}"#).unwrap_err();
        assert!(e.message().starts_with("mirror \"m/a\": tags: "), "{e}");
        let e = settings(r#"{"id": "m/a", "source": "not a source", "tags": "*"}"#).unwrap_err();
        assert!(e.message().starts_with("mirror \"m/a\": source: "), "{e}");
        let e = settings(r#"{"id": "m/a", "source": "q.io/a", "tags": "*", "timeout": 0}"#)
            .unwrap_err();
        assert!(e.message().contains("timeout"), "{e}");
    }
}
