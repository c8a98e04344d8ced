//! What to do about a registry error, naming the flags of the side it came from: a sync talks to
//! two registries, and "--src-tls-verify=false / --dest-tls-verify=false" leaves the user to
//! guess which. The side is found by the registry host the error names.

use regmirror::ErrorKind;

use crate::location::Location;

/// The registry hosts of a sync's two sides (`None` for an `oci:` layout).
#[derive(Debug, Clone, Default)]
pub struct Sides {
    source: Option<String>,
    dest: Option<String>,
    /// The flag prefixes of the sides already given `--SIDE-tls-verify=false`.
    plain_http: Vec<&'static str>,
}

impl Sides {
    pub fn new(source: &Location, dest: &Location) -> Sides {
        let host = |l: &Location| match l {
            Location::Registry(r) => Some(r.registry().to_owned()),
            Location::Layout(_) => None,
        };
        Sides {
            source: host(source),
            dest: host(dest),
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

    /// The flag prefixes (`src`, `dest`) of the registries `message` names; both when it names
    /// neither, or one host serves both sides.
    fn flags(&self, message: &str) -> Vec<&'static str> {
        let names = |host: &Option<String>| host.as_deref().is_some_and(|h| message.contains(h));
        match (names(&self.source), names(&self.dest)) {
            (true, false) => vec!["src"],
            (false, true) => vec!["dest"],
            _ => [("src", &self.source), ("dest", &self.dest)]
                .into_iter()
                .filter(|(_, host)| host.is_some())
                .map(|(flag, _)| flag)
                .collect(),
        }
    }
}

/// What to try after an error of `kind` saying `message`, if there is anything to try.
pub fn for_error(kind: ErrorKind, message: &str, sides: &Sides) -> Option<String> {
    let flags = sides.flags(message);
    let each = |pattern: &str| {
        flags
            .iter()
            .map(|side| pattern.replace("SIDE", side))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    match kind {
        ErrorKind::Unauthorized => Some(format!(
            "check {} (or the docker login for that registry)",
            each("--SIDE-creds")
        )),
        ErrorKind::Tls if message.contains("plain HTTP") => Some(format!(
            "for a registry on plain HTTP add {}",
            each("--SIDE-tls-verify=false")
        )),
        ErrorKind::Tls => Some(format!(
            "trust the registry's CA with {}, or skip verification with {}",
            each("--SIDE-cert-dir DIR"),
            each("--SIDE-tls-verify=false")
        )),
        ErrorKind::Forbidden if message.contains("SSRF guard") => Some(
            "if the registry is meant to be reached there, allow it with --ssrf-allow HOST or \
             --ssrf-allow NETWORK/BITS"
                .to_owned(),
        ),
        ErrorKind::Network if message.contains("dns error") => Some(
            "the registry's host name does not resolve; check its spelling (and the network)"
                .to_owned(),
        ),
        // The bound on the whole run (`--timeout`), not a registry that stopped answering.
        ErrorKind::Timeout if message.contains("longer than its timeout") => {
            Some("give the run more time with --timeout (e.g. --timeout 3h)".to_owned())
        }
        ErrorKind::Network | ErrorKind::Timeout => {
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

    #[test]
    fn hints_name_the_side_the_error_came_from() {
        let s = sides("127.0.0.1:5000/a", "127.0.0.1:6000/b");
        let plain = "GET https://127.0.0.1:6000/v2/: TLS with 127.0.0.1:6000 failed: it answered \
                     in plain HTTP, not TLS";
        assert_eq!(
            for_error(ErrorKind::Tls, plain, &s).unwrap(),
            "for a registry on plain HTTP add --dest-tls-verify=false"
        );
        let cert = "TLS with 127.0.0.1:5000 failed: invalid peer certificate: UnknownIssuer";
        let hint = for_error(ErrorKind::Tls, cert, &s).unwrap();
        assert!(hint.contains("--src-cert-dir DIR"), "{hint}");
        assert!(!hint.contains("--dest"), "{hint}");
        let hint = for_error(ErrorKind::Unauthorized, "401 from 127.0.0.1:5000", &s).unwrap();
        assert!(hint.starts_with("check --src-creds "), "{hint}");
        assert_eq!(for_error(ErrorKind::NotFound, "127.0.0.1:5000", &s), None);
        let dns = "GET https://a.example/v2/: dns error: failed to lookup address information";
        let hint = for_error(ErrorKind::Network, dns, &s).unwrap();
        assert!(hint.contains("does not resolve"), "{hint}");
        let guard = "GET https://localhost:5000/v2/: the SSRF guard refused localhost: localhost \
                     resolves to 127.0.0.1 (loopback)";
        let hint = for_error(ErrorKind::Forbidden, guard, &s).unwrap();
        assert!(hint.contains("--ssrf-allow HOST"), "{hint}");
        let run = "the sync took longer than its timeout of 1s";
        let hint = for_error(ErrorKind::Timeout, run, &s).unwrap();
        assert!(hint.contains("--timeout"), "{hint}");
        assert!(!hint.contains("reachable"), "{hint}");
    }

    #[test]
    fn both_sides_when_the_error_names_neither_or_both() {
        let s = sides("127.0.0.1:5000/a", "127.0.0.1:5000/b");
        let hint = for_error(ErrorKind::Unauthorized, "127.0.0.1:5000: 401", &s).unwrap();
        assert!(hint.contains("--src-creds / --dest-creds"), "{hint}");
        let s = sides("quay.io/a/b", "oci:/tmp/x");
        let hint = for_error(ErrorKind::Network, "connection reset", &s).unwrap();
        assert!(hint.ends_with("needs --src-tls-verify=false"), "{hint}");
    }

    #[test]
    fn plain_http_is_not_suggested_to_a_side_that_has_it() {
        let refused = "https failed (cannot connect to 127.0.0.1:1), and so did plain http";
        let s = sides("127.0.0.1:1/a", "127.0.0.1:6000/b").plain_http_allowed(true, false);
        let hint = for_error(ErrorKind::Network, refused, &s).unwrap();
        assert_eq!(hint, "check that the registry is running and reachable");
        let s = sides("127.0.0.1:5000/a", "127.0.0.1:6000/b").plain_http_allowed(true, false);
        let hint = for_error(ErrorKind::Network, "connection reset", &s).unwrap();
        assert!(hint.ends_with("needs --dest-tls-verify=false"), "{hint}");
    }
}
