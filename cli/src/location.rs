//! Where images come from or go to on the command line: a repository in a registry
//! (`host[:port]/path`, skopeo's `docker://` prefix allowed) or an OCI image layout directory
//! (`oci:PATH`), parsed by the core's [`Location`] with errors naming the argument.

pub use regmirror::oneshot::Location;

use crate::failure::Failure;

/// Parse `arg` given as `what` (`SOURCE`, `--to`), naming it in the error.
pub fn parse(arg: &str, what: &str) -> Result<Location, Failure> {
    arg.parse().map_err(|e: regmirror::Error| {
        let failure = Failure::invalid(format!("{what}: {}", e.message()));
        if arg.starts_with("oci:") {
            failure
        } else {
            failure.hint("give a registry repository (host[:port]/path) or oci:DIRECTORY")
        }
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn registries_and_layouts() {
        let Ok(Location::Registry(r)) = parse("127.0.0.1:5000/mirror/app", "SOURCE") else {
            panic!("a registry location")
        };
        assert_eq!(
            (r.registry(), r.repository()),
            ("127.0.0.1:5000", "mirror/app")
        );
        let l = parse("docker://quay.io/coreos/etcd", "SOURCE").unwrap();
        assert_eq!(l.to_string(), "quay.io/coreos/etcd");
        let l = parse("oci:./out/app", "--to").unwrap();
        assert_eq!(l, Location::Layout(PathBuf::from("./out/app")));
        assert_eq!(l.to_string(), "oci:./out/app");
    }

    #[test]
    fn bad_locations_name_the_argument() {
        for (arg, needle) in [
            ("oci:", "needs a directory"),
            (
                "oci:./etcd:v3.5",
                "give the layout directory alone, oci:./etcd,",
            ),
            ("quay.io/coreos/etcd:v3", "has a tag"),
            ("https://quay.io/a", "has a scheme"),
        ] {
            let e = parse(arg, "--to").unwrap_err().to_string();
            assert!(e.starts_with("--to: "), "{e}");
            assert!(e.contains(needle), "{e}");
            assert!(!e.contains("source reference"), "{e}");
        }
    }
}
