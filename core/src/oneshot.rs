//! One-shot syncs between two locations, each a registry repository or an OCI image layout
//! directory, without a state store: what `regmirror sync SOURCE --to DEST` and the bindings'
//! `Mirror.sync()` do. Everything here is plumbing around [`Mirror::sync_config`]; the
//! behaviour is the engine's.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{
    Credentials, MirrorConfig, PlatformIndexMode, ProxyConfig, ReferrersPolicy, RollbackMode,
};
use crate::engine::{
    DEFAULT_CONCURRENCY, Mirror, StaticConnector, SyncOptions, SyncPreview, SyncReport,
};
use crate::error::{Error, ErrorKind, Result};
use crate::reference::RepositoryRef;
use crate::registry::http::{AddressGuard, DEFAULT_MAX_TAGS, HttpOptions, HttpRegistry};
use crate::registry::{DestRegistry, LayoutRegistry, SourceRegistry};

/// The repository name a run uses when neither side is a registry: a layout serves any name.
const LAYOUT_REPOSITORY: &str = "oci-layout";

/// One side of a one-shot sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A repository in a registry, `host[:port]/path`.
    Registry(RepositoryRef),
    /// An OCI image layout directory (`oci:PATH`); its `index.json` names the tags.
    Layout(PathBuf),
}

impl FromStr for Location {
    type Err = Error;

    /// `oci:PATH` is a layout; anything else a registry repository (skopeo's `docker://`
    /// prefix allowed).
    fn from_str(s: &str) -> Result<Self> {
        if let Some(path) = s.strip_prefix("oci:") {
            if path.is_empty() {
                return Err(Error::new(
                    ErrorKind::InvalidReference,
                    "\"oci:\" needs a directory, as in oci:./images/app",
                ));
            }
            // skopeo's `oci:DIR:TAG` names one image; a mirror takes its tags from the
            // patterns. (An existing directory with a colon in its name is taken as it is.)
            if let Some((dir, tag)) = path.rsplit_once(':')
                && !dir.is_empty()
                && !tag.contains('/')
                && !std::path::Path::new(path).exists()
            {
                return Err(Error::new(
                    ErrorKind::InvalidReference,
                    format!(
                        "oci:{dir}:{tag} names one image (skopeo's form); give the layout \
                         directory alone, oci:{dir}, and choose tags with the tag patterns"
                    ),
                ));
            }
            return Ok(Location::Layout(PathBuf::from(path)));
        }
        RepositoryRef::parse_docker(s).map(Location::Registry)
    }
}

impl Location {
    /// Whether `other` is this repository or directory, perhaps under another name: loopback
    /// spellings of one port, Docker Hub's aliases, or paths to one directory. Mirroring a
    /// repository onto itself would prune its own unselected tags.
    pub fn same_place(&self, other: &Location) -> bool {
        fn host(registry: &str) -> String {
            let registry = registry.to_ascii_lowercase();
            let (name, port) = match registry.rsplit_once(':') {
                Some((name, port)) if !port.contains(']') => {
                    (name.to_owned(), Some(port.to_owned()))
                }
                _ => (registry.clone(), None),
            };
            let name = match name.as_str() {
                "localhost" | "127.0.0.1" | "[::1]" => "loopback",
                "docker.io" | "index.docker.io" | "registry-1.docker.io" => "docker.io",
                other => other,
            };
            format!("{name}:{}", port.unwrap_or_default())
        }
        match (self, other) {
            (Location::Registry(a), Location::Registry(b)) => {
                a.repository() == b.repository() && host(a.registry()) == host(b.registry())
            }
            (Location::Layout(a), Location::Layout(b)) => {
                a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b)
            }
            _ => false,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Registry(r) => write!(f, "{r}"),
            Location::Layout(p) => write!(f, "oci:{}", p.display()),
        }
    }
}

/// How to reach one side when it is a registry (ignored for a layout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// `None` is anonymous, unless `docker_config` finds stored credentials.
    pub credentials: Option<Credentials>,
    /// Verify the TLS certificate; `false` also permits plain HTTP (skopeo's meaning).
    pub tls_verify: bool,
    /// Look up credentials as docker and podman store them when none are given.
    pub docker_config: bool,
    /// Read those stored logins from this file instead of the default locations.
    pub auth_file: Option<PathBuf>,
    /// Extra CA certificates to trust: PEM files, or directories of `*.crt` files.
    pub ca_certs: Vec<PathBuf>,
    /// The SSRF guard for this side, its token service and its redirects (off by default):
    /// see [`HttpOptions::address_guard`]. Meant for the source, which others may choose.
    pub address_guard: Option<AddressGuard>,
    /// Proxies for reaching the registry; all unset, the usual `*_proxy` environment variables.
    pub proxy: ProxyConfig,
}

impl Default for Access {
    fn default() -> Self {
        Access {
            credentials: None,
            tls_verify: true,
            docker_config: false,
            auth_file: None,
            ca_certs: Vec::new(),
            address_guard: None,
            proxy: ProxyConfig::default(),
        }
    }
}

/// A one-shot sync: `source`'s tags selected by `tags` copied to `to`, whose tags end up
/// exactly the selected ones (unless `keep_unselected`).
#[derive(Debug, Clone)]
pub struct OneShotSync {
    pub source: Location,
    pub to: Location,
    /// Tag patterns (SEMANTICS.md §2); each entry may be comma-separated.
    pub tags: Vec<String>,
    /// Copy only these platforms of multi-arch images; empty copies all.
    pub architectures: Vec<String>,
    pub rollback: RollbackMode,
    pub platform_index: PlatformIndexMode,
    /// Which signatures, SBOMs and attestations travel with the images (SEMANTICS.md §9).
    pub referrers: ReferrersPolicy,
    /// Keep destination tags the patterns do not select instead of pruning them.
    pub keep_unselected: bool,
    pub source_access: Access,
    pub dest_access: Access,
    /// Blob copies and registry requests in flight at once.
    pub concurrency: usize,
    /// Upper bound for the run.
    pub timeout: Duration,
    /// A registry side listing more tags than this fails the run
    /// ([`HttpOptions::max_tags`]).
    pub max_tags: usize,
}

impl OneShotSync {
    /// A sync of `source` to `to` selecting `tags`, every other setting at its default.
    pub fn new<I, S>(source: Location, to: Location, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        OneShotSync {
            source,
            to,
            tags: tags.into_iter().map(Into::into).collect(),
            architectures: Vec::new(),
            rollback: RollbackMode::default(),
            platform_index: PlatformIndexMode::default(),
            referrers: ReferrersPolicy::default(),
            keep_unselected: false,
            source_access: Access::default(),
            dest_access: Access::default(),
            concurrency: DEFAULT_CONCURRENCY,
            timeout: Duration::from_secs(3600),
            max_tags: DEFAULT_MAX_TAGS,
        }
    }

    /// The mirror configuration the engine runs: the destination repository names the run.
    pub fn config(&self) -> Result<MirrorConfig> {
        if self.source.same_place(&self.to) {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                format!(
                    "source and destination are both {}: nothing to sync",
                    self.source
                ),
            ));
        }
        if self.concurrency == 0 {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                "concurrency must be greater than 0",
            ));
        }
        if self.max_tags == 0 {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                "max_tags must be greater than 0",
            ));
        }
        let id = match (&self.to, &self.source) {
            (Location::Registry(d), _) => d.repository().to_owned(),
            (Location::Layout(_), Location::Registry(s)) => s.repository().to_owned(),
            (Location::Layout(_), Location::Layout(_)) => LAYOUT_REPOSITORY.to_owned(),
        };
        // A layout source answers for any repository path; the engine still needs a reference.
        let source = match &self.source {
            Location::Registry(r) => r.clone(),
            Location::Layout(_) => RepositoryRef::new("localhost", LAYOUT_REPOSITORY)?,
        };
        let tags: Vec<&str> = self.tags.iter().map(String::as_str).collect();
        let mut config = MirrorConfig::new(id, source, &tags);
        config.architectures = self.architectures.clone();
        config.rollback = self.rollback;
        config.platform_index = self.platform_index;
        config.referrers = self.referrers.clone();
        config.verify_tls = self.source_access.tls_verify;
        config.source_credentials = self.source_access.credentials.clone();
        config.timeout = self.timeout;
        config.validate()?;
        Ok(config)
    }

    /// Run the sync with `options`' cancellation token and progress sink (its
    /// `keep_unselected` is this sync's). The run's failures (a tag, the listing, a timeout)
    /// are in the report; `Err` means it could not start (invalid settings, an unusable
    /// registry address).
    pub async fn run(&self, options: SyncOptions) -> Result<SyncReport> {
        let options = SyncOptions {
            keep_unselected: self.keep_unselected,
            ..options
        };
        let config = self.config()?;
        let mirror = self.mirror(self.source_registry()?, self.dest_registry()?)?;
        let mut report = mirror.sync_config(&config, options).await?;
        // A layout source has no registry name; say which directory it was.
        report.source = self.source.to_string();
        Ok(report)
    }

    /// What [`OneShotSync::run`] would do, changing nothing: each selected tag's action and the
    /// bytes to move (`options`' cancellation token and progress sink apply).
    pub async fn preview(&self, options: SyncOptions) -> Result<SyncPreview> {
        let options = SyncOptions {
            keep_unselected: self.keep_unselected,
            ..options
        };
        let config = self.config()?;
        let mirror = self.mirror(self.source_registry()?, self.dest_registry()?)?;
        let mut preview = mirror.preview_config(&config, options).await?;
        preview.source = self.source.to_string();
        Ok(preview)
    }

    /// The source's registry client, or its layout directory.
    pub fn source_registry(&self) -> Result<Arc<dyn SourceRegistry>> {
        Ok(match &self.source {
            Location::Layout(dir) => Arc::new(LayoutRegistry::single(dir)),
            Location::Registry(r) => Arc::new(self.http(r, &self.source_access)?),
        })
    }

    /// The destination's registry client, or its layout directory.
    pub fn dest_registry(&self) -> Result<Arc<dyn DestRegistry>> {
        Ok(match &self.to {
            Location::Layout(dir) => Arc::new(LayoutRegistry::single(dir)),
            Location::Registry(r) => Arc::new(self.http(r, &self.dest_access)?),
        })
    }

    /// The engine that runs this sync between `source` and `dest` (from
    /// [`OneShotSync::source_registry`] and [`OneShotSync::dest_registry`], taken apart so a
    /// caller can say which side failed to open).
    pub fn mirror(
        &self,
        source: Arc<dyn SourceRegistry>,
        dest: Arc<dyn DestRegistry>,
    ) -> Result<Mirror> {
        Mirror::builder()
            .connector(Arc::new(StaticConnector(source)))
            .destination(dest)
            .concurrency(self.concurrency)
            .build()
    }

    fn http(&self, reference: &RepositoryRef, access: &Access) -> Result<HttpRegistry> {
        let options = HttpOptions {
            credentials: access.credentials.clone(),
            tls_verify: access.tls_verify,
            ca_certs: access.ca_certs.clone(),
            docker_config: access.docker_config,
            auth_file: access.auth_file.clone(),
            address_guard: access.address_guard.clone(),
            proxy: access.proxy.clone(),
            max_tags: self.max_tags,
            ..HttpOptions::default()
        }
        .with_concurrency(self.concurrency);
        HttpRegistry::new(reference.registry(), options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let l: Location = "docker://127.0.0.1:5000/mirror/app".parse().unwrap();
        assert_eq!(l.to_string(), "127.0.0.1:5000/mirror/app");
        let l: Location = "oci:./out".parse().unwrap();
        assert_eq!(l, Location::Layout(PathBuf::from("./out")));
        let e = "oci:./etcd:v3.5".parse::<Location>().unwrap_err();
        assert!(e.message().contains("oci:./etcd, and choose tags"), "{e}");
        let e = "oci:".parse::<Location>().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidReference);
        let e = "quay.io/app:v1".parse::<Location>().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidReference);
    }

    #[test]
    fn config_names_the_run_after_the_destination() {
        let s = |src: &str, to: &str| {
            OneShotSync::new(src.parse().unwrap(), to.parse().unwrap(), ["v*"])
                .config()
                .map(|c| c.id)
        };
        assert_eq!(s("quay.io/a/b", "127.0.0.1:5000/m/b").unwrap(), "m/b");
        assert_eq!(s("quay.io/a/b", "oci:/tmp/x").unwrap(), "a/b");
        assert_eq!(s("oci:/tmp/y", "oci:/tmp/x").unwrap(), "oci-layout");
        let e = s("oci:/tmp/x", "oci:/tmp/x").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
        let e = s("127.0.0.1:5000/a/b", "localhost:5000/a/b").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
    }

    #[test]
    fn invalid_patterns_are_refused_before_running() {
        let sync = OneShotSync::new(
            "oci:/tmp/a".parse().unwrap(),
            "oci:/tmp/b".parse().unwrap(),
            ["v3.[12"],
        );
        let e = sync.config().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidPattern);
        assert!(e.message().contains("v3.[12"), "{e}");
    }
}
