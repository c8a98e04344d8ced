//! What to do about a registry error, naming the flags of the side it came from: a sync talks to
//! two registries, and "--src-tls-verify=false / --dest-tls-verify=false" leaves the user to
//! guess which. Everything is decided from the failure's fields (kind, side, detail), never
//! from its message.

use regmirror::{Detail, ErrorKind, Failure, Side};

use crate::location::Location;

/// Which of a sync's two sides are registries (an `oci:` layout has no flags to suggest).
#[derive(Debug, Clone, Default)]
pub struct Sides {
    source: bool,
    dest: bool,
    /// The flag prefixes of the sides already given `--SIDE-tls-verify=false`.
    plain_http: Vec<&'static str>,
}

impl Sides {
    pub fn new(source: &Location, dest: &Location) -> Sides {
        let registry = |l: &Location| matches!(l, Location::Registry(_));
        Sides {
            source: registry(source),
            dest: registry(dest),
            plain_http: Vec::new(),
        }
    }

    /// Which sides may already use plain HTTP (TLS verification off): hints do not suggest it
    /// again for them.
    #[must_use]
    pub fn plain_http_allowed(mut self, source: bool, dest: bool) -> Sides {
        self.plain_http = [("src", source), ("dest", dest)]
            .into_iter()
            .filter_map(|(flag, allowed)| allowed.then_some(flag))
            .collect();
        self
    }

    /// Whether the source is an OCI layout rather than a registry.
    pub fn source_is_layout(&self) -> bool {
        !self.source
    }

    /// The flag prefixes (`src`, `dest`) of the registry `side` names; both registries' when
    /// the failure names no side.
    fn flags(&self, side: Option<Side>) -> Vec<&'static str> {
        [
            ("src", Side::Source, self.source),
            ("dest", Side::Destination, self.dest),
        ]
        .into_iter()
        .filter(|(_, s, registry)| *registry && side.is_none_or(|side| side == *s))
        .map(|(flag, _, _)| flag)
        .collect()
    }
}

/// What to try after `failure`, if there is anything to try.
pub fn for_error(failure: &Failure, sides: &Sides) -> Option<String> {
    let flags = sides.flags(failure.side);
    let each = |pattern: &str| {
        flags
            .iter()
            .map(|side| pattern.replace("SIDE", side))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    match (failure.kind, failure.detail) {
        (ErrorKind::Unauthorized, _) => Some(format!(
            "check {} (or the docker login for that registry)",
            each("--SIDE-creds")
        )),
        (ErrorKind::Tls, Some(Detail::PlainHttp)) => Some(format!(
            "for a registry on plain HTTP add {}",
            each("--SIDE-tls-verify=false")
        )),
        (ErrorKind::Tls, _) => Some(format!(
            "trust the registry's CA with {}, or skip verification with {}",
            each("--SIDE-cert-dir DIR"),
            each("--SIDE-tls-verify=false")
        )),
        (ErrorKind::Forbidden, Some(Detail::SsrfGuard)) => Some(
            "if the registry is meant to be reached there, allow it with --ssrf-allow HOST or \
             --ssrf-allow NETWORK/BITS"
                .to_owned(),
        ),
        (ErrorKind::Network, Some(Detail::Dns)) => Some(
            "the registry's host name does not resolve; check its spelling (and the network)"
                .to_owned(),
        ),
        // The bound on the whole run (`--timeout`), not a registry that stopped answering.
        (ErrorKind::Timeout, Some(Detail::RunTimeout)) => {
            Some("give the run more time with --timeout (e.g. --timeout 3h)".to_owned())
        }
        (ErrorKind::Network | ErrorKind::Timeout, _) => {
            let reachable = "check that the registry is running and reachable";
            let tls_on: Vec<&str> = flags
                .iter()
                .filter(|side| !sides.plain_http.contains(side))
                .copied()
                .collect();
            Some(if tls_on.is_empty() {
                reachable.to_owned()
            } else {
                let flags: Vec<String> = tls_on
                    .iter()
                    .map(|side| format!("--{side}-tls-verify=false"))
                    .collect();
                format!(
                    "{reachable}; a plain-HTTP registry needs {}",
                    flags.join(" / ")
                )
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sides(source: &str, dest: &str) -> Sides {
        Sides::new(
            &crate::location::parse(source, "SOURCE").unwrap(),
            &crate::location::parse(dest, "--to").unwrap(),
        )
    }

    /// A failure whose message misleads on purpose: hints must come from the fields.
    fn failure(kind: ErrorKind, side: Option<Side>, detail: Option<Detail>) -> Failure {
        Failure {
            kind,
            side,
            phase: None,
            host: None,
            detail,
            message: "127.0.0.1:5000 plain HTTP SSRF guard dns error longer than its timeout"
                .to_owned(),
        }
    }

    #[test]
    fn hints_name_the_side_the_failure_came_from() {
        let s = sides("127.0.0.1:5000/a", "127.0.0.1:5000/b");
        let src = Some(Side::Source);
        let dest = Some(Side::Destination);
        let plain = failure(ErrorKind::Tls, dest, Some(Detail::PlainHttp));
        assert_eq!(
            for_error(&plain, &s).unwrap(),
            "for a registry on plain HTTP add --dest-tls-verify=false"
        );
        let hint = for_error(&failure(ErrorKind::Tls, src, None), &s).unwrap();
        assert!(hint.contains("--src-cert-dir DIR"), "{hint}");
        assert!(!hint.contains("--dest"), "{hint}");
        let hint = for_error(&failure(ErrorKind::Unauthorized, src, None), &s).unwrap();
        assert!(hint.starts_with("check --src-creds "), "{hint}");
        let hint = for_error(&failure(ErrorKind::Unauthorized, dest, None), &s).unwrap();
        assert!(hint.starts_with("check --dest-creds "), "{hint}");
        assert_eq!(
            for_error(&failure(ErrorKind::NotFound, src, None), &s),
            None
        );
        let hint = for_error(&failure(ErrorKind::Network, src, Some(Detail::Dns)), &s).unwrap();
        assert!(hint.contains("does not resolve"), "{hint}");
        let guard = failure(ErrorKind::Forbidden, src, Some(Detail::SsrfGuard));
        let hint = for_error(&guard, &s).unwrap();
        assert!(hint.contains("--ssrf-allow HOST"), "{hint}");
        // A Forbidden the guard did not give has no guard hint, whatever its message says.
        assert_eq!(
            for_error(&failure(ErrorKind::Forbidden, src, None), &s),
            None
        );
        let run = failure(ErrorKind::Timeout, None, Some(Detail::RunTimeout));
        let hint = for_error(&run, &s).unwrap();
        assert!(hint.contains("--timeout"), "{hint}");
        assert!(!hint.contains("reachable"), "{hint}");
        let hint = for_error(&failure(ErrorKind::Timeout, dest, None), &s).unwrap();
        assert!(hint.ends_with("needs --dest-tls-verify=false"), "{hint}");
    }

    #[test]
    fn both_sides_when_the_failure_names_none() {
        let s = sides("127.0.0.1:5000/a", "127.0.0.1:6000/b");
        let hint = for_error(&failure(ErrorKind::Unauthorized, None, None), &s).unwrap();
        assert!(hint.contains("--src-creds / --dest-creds"), "{hint}");
        let s = sides("quay.io/a/b", "oci:/tmp/x");
        let hint = for_error(&failure(ErrorKind::Network, None, None), &s).unwrap();
        assert!(hint.ends_with("needs --src-tls-verify=false"), "{hint}");
    }

    #[test]
    fn plain_http_is_not_suggested_to_a_side_that_has_it() {
        let refused = failure(ErrorKind::Network, Some(Side::Source), None);
        let s = sides("127.0.0.1:1/a", "127.0.0.1:6000/b").plain_http_allowed(true, false);
        let hint = for_error(&refused, &s).unwrap();
        assert_eq!(hint, "check that the registry is running and reachable");
        let s = sides("127.0.0.1:5000/a", "127.0.0.1:6000/b").plain_http_allowed(true, false);
        let reset = failure(ErrorKind::Network, Some(Side::Destination), None);
        let hint = for_error(&reset, &s).unwrap();
        assert!(hint.ends_with("needs --dest-tls-verify=false"), "{hint}");
    }
}
