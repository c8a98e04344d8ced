//! Where a [`Mirror`](crate::Mirror) writes, named rather than built: a registry host (Quay's
//! `REPO_MIRROR_SERVER_HOSTNAME`, each mirror's id its repository there) with the robot that
//! writes, or a directory of OCI image layouts. [`Destination::open`] makes the client.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::Credentials;
use crate::error::{Error, ErrorKind, Result};
use crate::registry::http::{HttpOptions, HttpRegistry};
use crate::registry::{DestRegistry, LayoutRegistry};

/// Where mirrors write, and how to reach it.
///
/// ```
/// use regmirror::{Credentials, Destination};
///
/// let mut dest = Destination::parse("registry.example.com:5000").unwrap();
/// dest.credentials = Some(Credentials::new("robot", "token"));
/// assert_eq!(dest.robot(), Some("robot"));
/// assert_eq!(dest.to_string(), "registry.example.com:5000");
/// assert_eq!(Destination::parse("oci:/srv/mirrors").unwrap(), Destination::layouts("/srv/mirrors"));
/// assert!(Destination::parse("registry.example.com/ns").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub target: DestinationTarget,
    /// The robot that writes to the registry (Quay's mirroring robot); `None` is anonymous.
    /// Its username is the one identity [`Mirror::may_push`](crate::Mirror::may_push) lets
    /// push to a mirrored repository. (Never read from docker's stored logins.)
    pub credentials: Option<Credentials>,
    /// Verify the registry's TLS certificate (default `true`); `false` also permits plain HTTP.
    pub tls_verify: bool,
    /// CAs to trust for the registry besides the system's: PEM bundles, or directories of
    /// `*.crt` files as docker's `certs.d/HOST`.
    pub ca_certs: Vec<PathBuf>,
}

/// A [`Destination`]'s place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestinationTarget {
    /// A registry, `host[:port]`: mirror `a/b` writes the repository `a/b` there.
    Registry(String),
    /// A directory of OCI image layouts: mirror `a/b` writes the layout `DIR/a/b`.
    Layouts(PathBuf),
}

impl Destination {
    /// The registry at `host` (`host[:port]`), anonymous, TLS verified. [`Destination::open`]
    /// checks the name.
    pub fn registry(host: impl Into<String>) -> Self {
        Destination::new(DestinationTarget::Registry(host.into()))
    }

    /// A directory of OCI image layouts, one per mirror.
    pub fn layouts(dir: impl Into<PathBuf>) -> Self {
        Destination::new(DestinationTarget::Layouts(dir.into()))
    }

    fn new(target: DestinationTarget) -> Self {
        Destination {
            target,
            credentials: None,
            tls_verify: true,
            ca_certs: Vec::new(),
        }
    }

    /// `HOST[:PORT]` (a registry) or `oci:DIR` (layouts). A registry given with a path or a
    /// scheme is refused: each mirror's id is its repository there.
    pub fn parse(s: &str) -> Result<Self> {
        let dest = match s.strip_prefix("oci:") {
            Some(dir) => Destination::layouts(dir),
            None => Destination::registry(s),
        };
        dest.validate()?;
        Ok(dest)
    }

    /// The robot's name: the username of [`Destination::credentials`].
    pub fn robot(&self) -> Option<&str> {
        self.credentials.as_ref().map(|c| c.username.as_str())
    }

    /// Check the names: a registry `host[:port]` (no scheme, no path), a layouts directory
    /// that is not empty and has no credentials. [`Destination::open`] checks too.
    pub fn validate(&self) -> Result<()> {
        let invalid = |why: String| Err(Error::new(ErrorKind::InvalidConfig, why));
        match &self.target {
            DestinationTarget::Layouts(dir) if dir.as_os_str().is_empty() => {
                invalid("registry: \"oci:\" needs a directory, as in oci:/srv/mirrors".to_owned())
            }
            DestinationTarget::Layouts(_) if self.credentials.is_some() => {
                invalid("username/password apply to a registry, not to oci: layouts".to_owned())
            }
            DestinationTarget::Layouts(_) => Ok(()),
            DestinationTarget::Registry(host)
                if host.is_empty() || host.contains("://") || host.contains('/') =>
            {
                invalid(format!(
                    "registry: {host:?} is not host[:port]; give only the registry host (each \
                     mirror's id is its repository there), or oci:DIRECTORY"
                ))
            }
            DestinationTarget::Registry(_) => Ok(()),
        }
    }

    /// The client mirrors write through: `concurrency` requests in flight (as
    /// [`MirrorBuilder::concurrency`](crate::engine::MirrorBuilder::concurrency), small reads
    /// as [`HttpOptions::with_concurrency`]), and a registry listing more than `max_tags` tags
    /// fails the run that lists them.
    pub fn open(&self, concurrency: usize, max_tags: usize) -> Result<Arc<dyn DestRegistry>> {
        self.validate()
            .and_then(|()| match &self.target {
                DestinationTarget::Layouts(root) => {
                    Ok(Arc::new(LayoutRegistry::new(root)) as Arc<dyn DestRegistry>)
                }
                DestinationTarget::Registry(host) => {
                    let options = HttpOptions {
                        credentials: self.credentials.clone(),
                        tls_verify: self.tls_verify,
                        ca_certs: self.ca_certs.clone(),
                        // The robot is the only identity that writes; never a login lying around.
                        docker_config: false,
                        max_tags,
                        ..HttpOptions::default()
                    }
                    .with_concurrency(concurrency);
                    Ok(Arc::new(HttpRegistry::new(host, options)?) as Arc<dyn DestRegistry>)
                }
            })
            .map_err(|e| e.context("destination"))
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            DestinationTarget::Registry(host) => f.write_str(host),
            DestinationTarget::Layouts(dir) => write!(f, "oci:{}", dir.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_mistakes() {
        let dest = Destination::parse("127.0.0.1:5000").unwrap();
        assert_eq!(
            dest.target,
            DestinationTarget::Registry("127.0.0.1:5000".into())
        );
        assert!(dest.tls_verify);
        assert_eq!(dest.robot(), None);
        assert_eq!(
            Destination::parse("oci:mirrors").unwrap().target,
            DestinationTarget::Layouts("mirrors".into())
        );
        for (bad, why) in [
            ("r.io/ns", "is not host[:port]"),
            ("https://r.io", "is not host[:port]"),
            ("", "is not host[:port]"),
            ("oci:", "needs a directory"),
        ] {
            let e = Destination::parse(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidConfig);
            assert!(e.message().contains(why), "{bad:?}: {e}");
        }
        let mut layouts = Destination::layouts("/srv/m");
        layouts.credentials = Some(Credentials::new("robot", "hunter2"));
        let e = layouts.open(1, 10).unwrap_err();
        assert!(
            e.message()
                .starts_with("destination: username/password apply to a registry"),
            "{e}"
        );
        assert!(!format!("{layouts:?}").contains("hunter2"));
    }

    #[test]
    fn a_missing_ca_file_is_named_when_opened() {
        let mut dest = Destination::registry("r.io");
        dest.ca_certs = vec!["/nonexistent/ca.pem".into()];
        let e = dest.open(4, 100).unwrap_err();
        assert!(e.message().starts_with("destination: "), "{e}");
        assert!(e.message().contains("/nonexistent/ca.pem"), "{e}");
    }
}
