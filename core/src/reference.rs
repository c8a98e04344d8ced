//! Registry, repository, tag and digest names, validated once so the rest of the code can trust them.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, ErrorKind, Result};

/// A content digest, `sha256:<64 lowercase hex>` (other algorithms are refused: nothing else is
/// verifiable here, and an unverifiable digest must never be trusted).
///
/// Its text is shared: a clone allocates nothing. A run keeps each tag's digest in several
/// places (plan, staging, publishing) for thousands of tags.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(Arc<str>);

impl Digest {
    /// Parse and validate `sha256:<hex>`.
    pub fn parse(s: &str) -> Result<Self> {
        let hex = s.strip_prefix("sha256:").ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidReference,
                format!("digest {s:?} is not of the form sha256:<64 hex digits>"),
            )
        })?;
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(Error::new(
                ErrorKind::InvalidReference,
                format!("digest {s:?} is not of the form sha256:<64 lowercase hex digits>"),
            ));
        }
        Ok(Digest(s.into()))
    }

    /// The sha256 digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Digest(format!("sha256:{}", hex::encode(Sha256::digest(bytes))).into())
    }

    /// `"sha256"`.
    pub fn algorithm(&self) -> &str {
        "sha256"
    }

    /// The hex part, safe to use as a file name.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    /// The whole digest string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.0)
    }
}

impl FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Digest::parse(s)
    }
}

impl TryFrom<String> for Digest {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Digest::parse(&s)
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.0.to_string()
    }
}

/// Validate a tag name per the OCI distribution spec: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn validate_tag(tag: &str) -> Result<()> {
    let mut bytes = tag.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !first_ok || !rest_ok || tag.len() > 128 {
        return Err(Error::new(
            ErrorKind::InvalidReference,
            format!("tag {tag:?} is not a valid tag name ([A-Za-z0-9_][A-Za-z0-9._-]{{0,127}})"),
        ));
    }
    Ok(())
}

/// Validate a repository path per the OCI distribution spec: lowercase components of
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` separated by `/`.
pub fn validate_repository(repo: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::new(
            ErrorKind::InvalidReference,
            format!("repository {repo:?} is not valid: {why}"),
        ))
    };
    if repo.is_empty() {
        return bad("it is empty");
    }
    if repo.len() > 255 {
        return bad("it is longer than 255 characters");
    }
    for component in repo.split('/') {
        if component.is_empty() {
            return bad("it has an empty path component");
        }
        let b = component.as_bytes();
        let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
            return bad("each component must start and end with a lowercase letter or digit");
        }
        if !b
            .iter()
            .all(|&c| alnum(c) || matches!(c, b'.' | b'_' | b'-'))
        {
            return bad("only lowercase letters, digits, '.', '_', '-' and '/' are allowed");
        }
    }
    Ok(())
}

/// A repository in a registry: `host[:port]/path`, no scheme, no tag, no digest.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RepositoryRef {
    registry: String,
    repository: String,
}

/// `localhost`, `HOST:PORT` or `[IPv6]:PORT`: a registry, where `NAME:TAG` would be an image.
fn looks_like_host(s: &str) -> bool {
    if s == "localhost" || s.starts_with('[') {
        return true;
    }
    s.rsplit_once(':').is_some_and(|(host, port)| {
        !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && (host.contains('.') || host == "localhost")
    })
}

impl RepositoryRef {
    /// [`RepositoryRef::parse`], also accepting skopeo's transport prefix: `docker://host/path`,
    /// as sources and one-shot locations may be written.
    pub fn parse_docker(s: &str) -> Result<Self> {
        RepositoryRef::parse(s.strip_prefix("docker://").unwrap_or(s))
    }

    /// Parse `host[:port]/path`. A reference without a registry host (`library/alpine`, `alpine`)
    /// means Docker Hub, as with `docker pull`; `docker.io` single names get `library/`.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why: &str| {
            Err(Error::new(
                ErrorKind::InvalidReference,
                format!("reference {s:?} is not valid: {why} (expected host[:port]/path)"),
            ))
        };
        if s.contains("://") {
            return bad("it has a scheme; give the reference without http:// or https://");
        }
        if s.contains('@') {
            return bad("it has a digest; a mirror source is a repository, not one image");
        }
        if !s.contains('/') && looks_like_host(s) {
            return bad(
                "it names a registry but no repository; add the path, as in HOST/namespace/name",
            );
        }
        let (first, rest) = match s.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_owned(), rest.to_owned())
            }
            _ => ("docker.io".to_owned(), s.to_owned()),
        };
        let last = rest.rsplit('/').next().unwrap_or_default();
        if last.contains(':') {
            return bad("it has a tag; tags are chosen by the mirror's patterns");
        }
        if first.is_empty() {
            return bad("the registry host is empty");
        }
        let repository = if first == "docker.io" && !rest.contains('/') {
            format!("library/{rest}")
        } else {
            rest
        };
        if let Err(e) = validate_repository(&repository) {
            return bad(e.message());
        }
        Ok(RepositoryRef {
            registry: first,
            repository,
        })
    }

    /// A reference from its parts, validated.
    pub fn new(registry: impl Into<String>, repository: impl Into<String>) -> Result<Self> {
        Self::parse(&format!("{}/{}", registry.into(), repository.into()))
    }

    /// The registry host as written (`docker.io`, `quay.io`, `127.0.0.1:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry (`library/alpine`).
    pub fn repository(&self) -> &str {
        &self.repository
    }
}

impl fmt::Display for RepositoryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)
    }
}

impl fmt::Debug for RepositoryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RepositoryRef({self})")
    }
}

impl FromStr for RepositoryRef {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        RepositoryRef::parse(s)
    }
}

impl TryFrom<String> for RepositoryRef {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        RepositoryRef::parse(&s)
    }
}

impl From<RepositoryRef> for String {
    fn from(r: RepositoryRef) -> String {
        r.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_round_trips_and_rejects_junk() {
        let d = Digest::of(b"hello");
        assert_eq!(Digest::parse(d.as_str()).unwrap(), d);
        assert!(Digest::parse("sha256:../../etc/passwd").is_err());
        assert!(Digest::parse("md5:abcd").is_err());
        assert!(Digest::parse(&d.as_str().to_uppercase()).is_err());
    }

    #[test]
    fn a_digest_clone_shares_its_text() {
        let d = Digest::of(b"hello");
        let copy = d.clone();
        // The same bytes, not an equal copy: a run clones each tag's digest several times.
        assert!(std::ptr::eq(d.as_str(), copy.as_str()));
        assert_eq!(String::from(copy), d.as_str());
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
    }

    #[test]
    fn source_references() {
        let r = RepositoryRef::parse("quay.io/coreos/etcd").unwrap();
        assert_eq!((r.registry(), r.repository()), ("quay.io", "coreos/etcd"));
        let r = RepositoryRef::parse("127.0.0.1:5000/a/b").unwrap();
        assert_eq!((r.registry(), r.repository()), ("127.0.0.1:5000", "a/b"));
        let r = RepositoryRef::parse("alpine").unwrap();
        assert_eq!(
            (r.registry(), r.repository()),
            ("docker.io", "library/alpine")
        );
        for bad in [
            "https://quay.io/a",
            "quay.io/a:latest",
            "quay.io/a@sha256:00",
            "quay.io/A",
            "quay.io/",
            "127.0.0.1:5000",
            "[::1]:5000",
        ] {
            let e = RepositoryRef::parse(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidReference, "{bad}");
            assert!(e.message().contains(bad), "{e}");
        }
    }

    #[test]
    fn the_docker_transport_prefix_is_accepted_where_asked_for() {
        let r = RepositoryRef::parse_docker("docker://quay.io/coreos/etcd").unwrap();
        assert_eq!((r.registry(), r.repository()), ("quay.io", "coreos/etcd"));
        let r = RepositoryRef::parse_docker("quay.io/coreos/etcd").unwrap();
        assert_eq!((r.registry(), r.repository()), ("quay.io", "coreos/etcd"));
        // Once only, and never in plain references.
        assert!(RepositoryRef::parse_docker("docker://docker://quay.io/a").is_err());
        assert!(RepositoryRef::parse("docker://quay.io/a").is_err());
    }

    #[test]
    fn a_registry_without_a_repository_is_named_so() {
        for host in [
            "127.0.0.1:5000",
            "localhost:5000",
            "[::1]:5000",
            "localhost",
        ] {
            let e = RepositoryRef::parse(host).unwrap_err();
            assert!(e.message().contains("no repository"), "{e}");
        }
        // A Docker Hub name with a tag is still a tag.
        let e = RepositoryRef::parse("alpine:3.19").unwrap_err();
        assert!(e.message().contains("has a tag"), "{e}");
        let r = RepositoryRef::parse("[::1]:5000/a/b").unwrap();
        assert_eq!((r.registry(), r.repository()), ("[::1]:5000", "a/b"));
    }

    #[test]
    fn tags() {
        assert!(validate_tag("v3.2-4beta").is_ok());
        assert!(validate_tag("_x").is_ok());
        for bad in ["", "-x", ".x", "../x", "a/b", &"x".repeat(129)] {
            assert!(validate_tag(bad).is_err(), "{bad}");
        }
    }
}
