//! Where images come from or go to on the command line: a repository in a registry
//! (`host[:port]/path`, skopeo's `docker://` prefix allowed) or an OCI image layout directory
//! (`oci:PATH`).

use std::fmt;
use std::path::PathBuf;

use regmirror::RepositoryRef;

use crate::failure::Failure;

/// A `SOURCE` or `--to DEST` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A repository in a registry; the path is the repository.
    Registry(RepositoryRef),
    /// An OCI image layout directory; its `index.json` names the tags.
    Layout(PathBuf),
}

impl Location {
    /// Parse `arg` given as `what` (`SOURCE`, `--to`), naming it in the error.
    pub fn parse(arg: &str, what: &str) -> Result<Location, Failure> {
        if let Some(path) = arg.strip_prefix("oci:") {
            if path.is_empty() {
                return Err(Failure::invalid(format!(
                    "{what}: \"oci:\" needs a directory, as in oci:./images/app"
                )));
            }
            return Ok(Location::Layout(PathBuf::from(path)));
        }
        let reference = arg.strip_prefix("docker://").unwrap_or(arg);
        RepositoryRef::parse(reference)
            .map(Location::Registry)
            .map_err(|e| {
                // The core names every reference a "source reference"; here it may be the
                // destination, so say which argument it was instead.
                let why = e.message().replacen("source reference", "reference", 1);
                Failure::invalid(format!("{what}: {why}"))
                    .hint("give a registry repository (host[:port]/path) or oci:DIRECTORY")
            })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_and_layouts() {
        let Ok(Location::Registry(r)) = Location::parse("127.0.0.1:5000/mirror/app", "SOURCE")
        else {
            panic!("a registry location")
        };
        assert_eq!(
            (r.registry(), r.repository()),
            ("127.0.0.1:5000", "mirror/app")
        );
        let l = Location::parse("docker://quay.io/coreos/etcd", "SOURCE").unwrap();
        assert_eq!(l.to_string(), "quay.io/coreos/etcd");
        let l = Location::parse("oci:./out/app", "--to").unwrap();
        assert_eq!(l, Location::Layout(PathBuf::from("./out/app")));
        assert_eq!(l.to_string(), "oci:./out/app");
    }

    #[test]
    fn bad_locations_name_the_argument() {
        for (arg, needle) in [
            ("oci:", "needs a directory"),
            ("quay.io/coreos/etcd:v3", "has a tag"),
            ("https://quay.io/a", "has a scheme"),
        ] {
            let e = Location::parse(arg, "--to").unwrap_err().to_string();
            assert!(e.starts_with("--to: "), "{e}");
            assert!(e.contains(needle), "{e}");
            assert!(!e.contains("source reference"), "{e}");
        }
    }
}
