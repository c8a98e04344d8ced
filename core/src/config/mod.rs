//! A mirror's configuration (SEMANTICS.md §1), validated when it is created so that nothing
//! invalid reaches a sync run.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::{Error, ErrorKind, Result};
use crate::pattern::TagFilter;
use crate::reference::{RepositoryRef, validate_repository};

mod mirror_settings;

pub use mirror_settings::{MirrorDefaults, MirrorSettings, check_cert_dir};

/// A username and a password or token. The password never appears in `Debug`, `Display`,
/// logs, errors or events; it is serialized only for the state store.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// What happens to the destination when some tags fail (SEMANTICS.md §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RollbackMode {
    /// Quay's default: failed tags keep their old value; the rest of the run stands.
    #[default]
    FailedTagsOnly,
    /// Quay's `REPO_MIRROR_ROLLBACK=true`: any failure restores the destination exactly.
    AllOrNothing,
}

/// What to do when the destination refuses a sparse index (SEMANTICS.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlatformIndexMode {
    /// Fail the tag, saying the destination refused the sparse index.
    #[default]
    Sparse,
    /// Push a new index holding only the selected platforms (its digest differs from the source's).
    Rewrite,
}

impl std::str::FromStr for RollbackMode {
    type Err = Error;

    /// The serialized names: `failed_tags_only`, `all_or_nothing`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "failed_tags_only" => Ok(RollbackMode::FailedTagsOnly),
            "all_or_nothing" => Ok(RollbackMode::AllOrNothing),
            _ => Err(Error::new(
                ErrorKind::InvalidConfig,
                format!("rollback: {s:?} is neither \"failed_tags_only\" nor \"all_or_nothing\""),
            )),
        }
    }
}

impl std::str::FromStr for PlatformIndexMode {
    type Err = Error;

    /// The serialized names: `sparse`, `rewrite`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "sparse" => Ok(PlatformIndexMode::Sparse),
            "rewrite" => Ok(PlatformIndexMode::Rewrite),
            _ => Err(Error::new(
                ErrorKind::InvalidConfig,
                format!("platform_index: {s:?} is neither \"sparse\" nor \"rewrite\""),
            )),
        }
    }
}

/// Which referrers travel with a mirrored image (SEMANTICS.md §9): signatures, SBOMs and
/// attestations, whether OCI 1.1 referrers (`subject`) or cosign's `sha256-<hex>.sig` / `.att` /
/// `.sbom` tags. Written as `all`, `none`, or a comma-separated list of artifact types.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ReferrersPolicy {
    /// Copy every referrer (the default).
    #[default]
    All,
    /// Copy none: the mirror holds only what the tag patterns select.
    None,
    /// Copy referrers of these artifact types only (a manifest's `artifactType`, else its
    /// config's media type; for a cosign tag, any of its layers' media types also counts).
    Types(Vec<String>),
}

impl ReferrersPolicy {
    /// Whether any referrer is copied.
    pub fn copies_any(&self) -> bool {
        !matches!(self, ReferrersPolicy::None)
    }

    /// Whether a referrer of any of `types` is copied.
    pub fn allows<'a>(&self, mut types: impl Iterator<Item = &'a str>) -> bool {
        match self {
            ReferrersPolicy::All => true,
            ReferrersPolicy::None => false,
            ReferrersPolicy::Types(allowed) => types.any(|t| allowed.iter().any(|a| a == t)),
        }
    }
}

impl std::str::FromStr for ReferrersPolicy {
    type Err = Error;

    /// `all`, `none`, or artifact types separated by commas (whitespace around them ignored).
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "all" => return Ok(ReferrersPolicy::All),
            "none" => return Ok(ReferrersPolicy::None),
            _ => {}
        }
        let types: Vec<String> = s
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        if types.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                format!("referrers: {s:?} is not \"all\", \"none\" or a list of artifact types"),
            ));
        }
        for t in &types {
            // An artifact type is a media type: `type/subtype`, no spaces or quotes.
            let valid = t
                .split_once('/')
                .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty())
                && t.chars()
                    .all(|c| c.is_ascii_graphic() && c != '"' && c != ',');
            if !valid {
                return Err(Error::new(
                    ErrorKind::InvalidConfig,
                    format!(
                        "referrers: {t:?} is not an artifact (media) type such as application/vnd.example+json"
                    ),
                ));
            }
        }
        Ok(ReferrersPolicy::Types(types))
    }
}

impl fmt::Display for ReferrersPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReferrersPolicy::All => f.write_str("all"),
            ReferrersPolicy::None => f.write_str("none"),
            ReferrersPolicy::Types(types) => f.write_str(&types.join(",")),
        }
    }
}

impl TryFrom<String> for ReferrersPolicy {
    type Error = Error;

    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<ReferrersPolicy> for String {
    fn from(p: ReferrersPolicy) -> String {
        p.to_string()
    }
}

/// Proxies for reaching the source registry. `Debug` hides passwords in proxy URLs.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProxyConfig {
    pub http_proxy: Option<String>,
    pub https_proxy: Option<String>,
    pub no_proxy: Option<String>,
}

impl fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A proxy URL may carry `user:password@`; show it without the password.
        let redact = |url: &Option<String>| {
            url.as_ref().map(|u| match url::Url::parse(u) {
                Ok(mut parsed) if parsed.password().is_some() => {
                    let _ = parsed.set_password(Some("redacted"));
                    parsed.to_string()
                }
                Ok(_) => u.clone(),
                Err(_) => "<unparsable>".to_owned(),
            })
        };
        f.debug_struct("ProxyConfig")
            .field("http_proxy", &redact(&self.http_proxy))
            .field("https_proxy", &redact(&self.https_proxy))
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

/// Architectures a platform filter may name (GOARCH values, as in image indexes).
pub const KNOWN_ARCHITECTURES: &[&str] = &[
    "386", "amd64", "arm", "arm64", "loong64", "mips", "mips64", "mips64le", "mipsle", "ppc64",
    "ppc64le", "riscv64", "s390x", "wasm",
];

/// The default [`MirrorConfig::retry_backoff`]: Quay retries at the very next poll, which
/// hammers a source that is down.
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_secs(60);

fn default_retry_backoff() -> Duration {
    DEFAULT_RETRY_BACKOFF
}

/// One mirror: a destination repository kept in sync with an external repository.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct MirrorConfig {
    /// The destination repository (`namespace/name`); one mirror per destination repository.
    pub id: String,
    /// The external repository, `host[:port]/path`.
    pub source: RepositoryRef,
    /// Credentials for the source; `None` is anonymous.
    pub source_credentials: Option<Credentials>,
    /// Tag patterns (SEMANTICS.md §2), as given.
    pub tags: Vec<String>,
    /// Platform filter for multi-arch images; empty copies every platform.
    pub architectures: Vec<String>,
    /// Seconds between scheduled syncs.
    #[serde(with = "duration_secs")]
    pub sync_interval: Duration,
    /// The first scheduled sync; `None` is now: due at once, the grid following from the first
    /// run (a crowd of new mirrors due together is spread over the worker's
    /// `first_run_spread`, SEMANTICS.md §6).
    #[serde(with = "time::serde::rfc3339::option")]
    pub sync_start_date: Option<OffsetDateTime>,
    /// A disabled mirror is never scheduled; "sync now" still runs it.
    pub enabled: bool,
    /// Verify the source's TLS certificate; `false` also permits plain HTTP.
    pub verify_tls: bool,
    /// CAs to trust for the source besides the system's (a registry with a private CA): PEM
    /// bundles, or directories of `*.crt` files as docker's `certs.d/HOST`. Read by the worker
    /// that runs the mirror, so the paths are that host's.
    #[serde(default)]
    pub source_ca_certs: Vec<PathBuf>,
    pub proxy: ProxyConfig,
    /// Upper bound for one sync run.
    #[serde(with = "duration_secs_ceil")]
    pub timeout: Duration,
    /// The wait before retrying a failed run (retries left); each further retry waits twice as
    /// long, never past the next scheduled slot. Zero retries at the next poll, as Quay does.
    /// Whole seconds.
    #[serde(with = "duration_secs", default = "default_retry_backoff")]
    pub retry_backoff: Duration,
    pub rollback: RollbackMode,
    pub platform_index: PlatformIndexMode,
    /// Which signatures, SBOMs and attestations travel with the mirrored images.
    #[serde(default)]
    pub referrers: ReferrersPolicy,
    /// The robot: the only identity that may push to the destination repository while it is
    /// mirrored (SEMANTICS.md §8). `None` means the engine's destination identity.
    pub robot: Option<String>,
}

impl fmt::Debug for MirrorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MirrorConfig")
            .field("id", &self.id)
            .field("source", &self.source)
            .field("source_credentials", &self.source_credentials)
            .field("tags", &self.tags)
            .field("architectures", &self.architectures)
            .field("sync_interval", &self.sync_interval)
            .field("enabled", &self.enabled)
            .field("source_ca_certs", &self.source_ca_certs)
            .field("retry_backoff", &self.retry_backoff)
            .field("rollback", &self.rollback)
            .field("referrers", &self.referrers)
            .finish_non_exhaustive()
    }
}

impl MirrorConfig {
    /// A mirror of `source` into repository `id` selecting `tags`, with every other field at
    /// its default. Call [`MirrorConfig::validate`] (the engine does) before using it.
    pub fn new(id: impl Into<String>, source: RepositoryRef, tags: &[&str]) -> Self {
        MirrorConfig {
            id: id.into(),
            source,
            source_credentials: None,
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            architectures: Vec::new(),
            sync_interval: Duration::from_secs(86_400),
            sync_start_date: None,
            enabled: true,
            verify_tls: true,
            source_ca_certs: Vec::new(),
            proxy: ProxyConfig::default(),
            timeout: Duration::from_secs(3600),
            retry_backoff: DEFAULT_RETRY_BACKOFF,
            rollback: RollbackMode::default(),
            platform_index: PlatformIndexMode::default(),
            referrers: ReferrersPolicy::default(),
            robot: None,
        }
    }

    /// Check every field; the error names the field and says why.
    pub fn validate(&self) -> Result<()> {
        let invalid = |field: &str, why: String| {
            Err(Error::new(
                ErrorKind::InvalidConfig,
                format!("mirror {:?}: {field}: {why}", self.id),
            ))
        };
        if let Err(e) = validate_repository(&self.id) {
            return invalid("id", e.message().to_owned());
        }
        self.tag_filter()?;
        if let Err(why) = check_architectures(&self.architectures) {
            return invalid("architectures", why);
        }
        if let Err(why) = check_interval(self.sync_interval) {
            return invalid("sync_interval", why);
        }
        if self.timeout.is_zero() {
            return invalid("timeout", "must be greater than 0 seconds".to_owned());
        }
        if self.retry_backoff.subsec_nanos() != 0 {
            return invalid(
                "retry_backoff",
                format!(
                    "{} is not a whole number of seconds (0 retries at the next poll)",
                    humantime::format_duration(self.retry_backoff)
                ),
            );
        }
        if let Some(c) = &self.source_credentials
            && c.username.is_empty()
        {
            return invalid("source_credentials", "the username is empty".to_owned());
        }
        // A policy built in code (not parsed) is held to the parser's rules: its written form
        // must read back as itself.
        if let Err(e) = self.referrers.to_string().parse::<ReferrersPolicy>() {
            return Err(e.context(format!("mirror {:?}", self.id)));
        }
        Ok(())
    }

    /// The compiled tag patterns.
    pub fn tag_filter(&self) -> Result<TagFilter> {
        TagFilter::new(&self.tags).map_err(|e| e.context(format!("mirror {:?}: tags", self.id)))
    }

    /// This configuration checked ([`MirrorConfig::validate`]), as the state stores take it.
    pub fn validated(self) -> Result<ValidConfig> {
        self.validate()?;
        Ok(ValidConfig(self))
    }
}

/// A [`MirrorConfig`] that passed [`MirrorConfig::validate`]: what
/// [`StateStore`](crate::StateStore)s and [`Mirror`](crate::Mirror)'s management calls take,
/// so a configuration is checked once, where it is made ([`MirrorConfig::validated`],
/// [`MirrorSettings::into_config`]), and nothing invalid is ever stored. Read it as a
/// `MirrorConfig` (`Deref`); to change it, take it apart with [`ValidConfig::into_inner`] and
/// validate again.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidConfig(MirrorConfig);

impl ValidConfig {
    /// The configuration, to change and validate again.
    pub fn into_inner(self) -> MirrorConfig {
        self.0
    }
}

impl std::ops::Deref for ValidConfig {
    type Target = MirrorConfig;

    fn deref(&self) -> &MirrorConfig {
        &self.0
    }
}

impl TryFrom<MirrorConfig> for ValidConfig {
    type Error = Error;

    fn try_from(config: MirrorConfig) -> Result<ValidConfig> {
        config.validated()
    }
}

/// Whether every name in `architectures` is one of [`KNOWN_ARCHITECTURES`]. The error names the
/// first that is not and lists the known ones, without the field.
pub fn check_architectures(architectures: &[impl AsRef<str>]) -> std::result::Result<(), String> {
    match architectures
        .iter()
        .map(AsRef::as_ref)
        .find(|a| !KNOWN_ARCHITECTURES.contains(a))
    {
        Some(arch) => Err(format!(
            "unknown architecture {arch:?} (known: {})",
            KNOWN_ARCHITECTURES.join(", ")
        )),
        None => Ok(()),
    }
}

/// Whether `interval` can be a mirror's `sync_interval`: at least one second and a whole number
/// of seconds, since the store keeps whole seconds (Quay's `sync_interval`) and a 500 ms interval
/// would silently become 0 s, a mirror due at every poll. The error says why, without the field.
pub fn check_interval(interval: Duration) -> std::result::Result<(), String> {
    if interval < Duration::from_secs(1) {
        return Err(format!(
            "{} is less than 1 second; intervals are whole seconds",
            shown(interval)
        ));
    }
    if interval.subsec_nanos() != 0 {
        return Err(format!(
            "{} is not a whole number of seconds; intervals are whole seconds",
            shown(interval)
        ));
    }
    Ok(())
}

fn shown(d: Duration) -> String {
    if d.is_zero() {
        "0s".to_owned()
    } else {
        humantime::format_duration(d).to_string()
    }
}

/// Durations are stored as whole seconds, as Quay's `sync_interval` is.
mod duration_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

/// Whole seconds, rounded up: a bound such as 500 ms is kept as 1 s rather than 0 s (none).
mod duration_secs_ceil {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs() + u64::from(d.subsec_nanos() > 0))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        super::duration_secs::deserialize(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> MirrorConfig {
        MirrorConfig::new("ns/app", "quay.io/coreos/etcd".parse().unwrap(), &["v3.*"])
    }

    #[test]
    fn valid_config_passes_and_round_trips() {
        let mut c = config();
        c.source_credentials = Some(Credentials::new("u", "p@$s\"';\\ü"));
        c.validate().unwrap();
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<MirrorConfig>(&json).unwrap(), c);
        assert!(!format!("{c:?}").contains("p@$s"));
    }

    #[test]
    fn only_a_valid_config_becomes_a_valid_config() {
        let valid = config().validated().unwrap();
        assert_eq!(valid.id, "ns/app", "read through Deref");
        let mut changed = valid.clone().into_inner();
        assert_eq!(changed, config());
        changed.sync_interval = Duration::from_millis(500);
        let e = ValidConfig::try_from(changed).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
        assert!(e.message().contains("sync_interval"), "{e}");
    }

    #[test]
    fn a_sub_second_timeout_is_stored_as_one_second_not_none() {
        let mut c = config();
        c.timeout = Duration::from_millis(500);
        let json = serde_json::to_string(&c).unwrap();
        let back: MirrorConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back.timeout, Duration::from_secs(1));
    }

    #[test]
    fn a_stored_config_without_a_retry_backoff_gets_the_default() {
        let mut json = serde_json::to_value(config()).unwrap();
        json.as_object_mut().unwrap().remove("retry_backoff");
        let back: MirrorConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back.retry_backoff, DEFAULT_RETRY_BACKOFF);
    }

    #[test]
    fn referrers_policies_read_and_write_the_same_names() {
        for (text, policy) in [
            ("all", ReferrersPolicy::All),
            ("none", ReferrersPolicy::None),
            (
                " application/spdx+json , application/vnd.dev.cosign.simplesigning.v1+json,",
                ReferrersPolicy::Types(vec![
                    "application/spdx+json".into(),
                    "application/vnd.dev.cosign.simplesigning.v1+json".into(),
                ]),
            ),
        ] {
            let parsed: ReferrersPolicy = text.parse().unwrap();
            assert_eq!(parsed, policy, "{text}");
            assert_eq!(
                parsed.to_string().parse::<ReferrersPolicy>().unwrap(),
                policy
            );
        }
        assert!(
            ReferrersPolicy::Types(vec!["application/spdx+json".into()])
                .allows(["text/plain", "application/spdx+json"].into_iter())
        );
        assert!(!ReferrersPolicy::None.allows(["application/spdx+json"].into_iter()));
        for bad in ["", " , ", "signed", "application/", "a b/c", "All"] {
            let e = bad.parse::<ReferrersPolicy>().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{bad:?}");
            assert!(e.message().starts_with("referrers: "), "{e}");
        }
        let mut c = config();
        c.referrers = ReferrersPolicy::Types(Vec::new());
        let e = c.validate().unwrap_err();
        assert!(e.message().contains("referrers: "), "{e}");
        assert_eq!(
            serde_json::from_value::<ReferrersPolicy>("none".into()).unwrap(),
            ReferrersPolicy::None
        );
        assert!(serde_json::from_value::<ReferrersPolicy>("signed".into()).is_err());
    }

    #[test]
    fn architectures_are_checked_against_the_known_names() {
        assert_eq!(check_architectures(&["amd64", "arm64", "s390x"]), Ok(()));
        assert_eq!(check_architectures(&Vec::<String>::new()), Ok(()));
        let why = check_architectures(&["amd64".to_owned(), "x86_64".to_owned()]).unwrap_err();
        assert!(why.starts_with("unknown architecture \"x86_64\""), "{why}");
        assert!(why.contains("amd64, arm"), "{why}");
    }

    #[test]
    fn each_invalid_field_is_named() {
        type Mutation = Box<dyn Fn(&mut MirrorConfig)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("tags", Box::new(|c| c.tags = vec!["v3.[12".into()])),
            ("tags", Box::new(|c| c.tags = vec![])),
            (
                "architectures",
                Box::new(|c| c.architectures = vec!["amd65".into()]),
            ),
            (
                "sync_interval",
                Box::new(|c| c.sync_interval = Duration::ZERO),
            ),
            (
                "sync_interval: 500ms is less than 1 second",
                Box::new(|c| c.sync_interval = Duration::from_millis(500)),
            ),
            (
                "sync_interval: 1s 500ms is not a whole number of seconds",
                Box::new(|c| c.sync_interval = Duration::from_millis(1500)),
            ),
            (
                "retry_backoff",
                Box::new(|c| c.retry_backoff = Duration::from_millis(10)),
            ),
            ("id", Box::new(|c| c.id = "Bad Name".into())),
        ];
        for (field, mutate) in cases {
            let mut c = config();
            mutate(&mut c);
            let e = c.validate().unwrap_err();
            assert!(e.message().contains(field), "{field}: {e}");
        }
    }
}
