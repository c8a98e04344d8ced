//! The SSRF guard (SEMANTICS.md §10): a source registry, its token service and whatever it
//! redirects to may not be reached at a loopback, private, link-local (cloud metadata),
//! unspecified, shared (CGNAT), multicast or reserved address unless an allow-list names the
//! host or a network holding the address — the rule Quay applies to a mirror's
//! `external_reference`.
//!
//! Host names are checked where they are resolved: the client's DNS resolver hands the
//! connector only the addresses the guard allows, so the address connected to is the address
//! checked (a name that resolves to a public address when a mirror is saved and to 127.0.0.1
//! when it runs gets nowhere). Hosts written as IP addresses never reach a resolver and are
//! checked before each request.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, LazyLock};

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::error::{Detail, Error, ErrorKind, Result};

/// Refuses non-public addresses except those its allow-list names. `AddressGuard::default()`
/// allows nothing but public addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressGuard {
    allow: Vec<Allowed>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Allowed {
    /// A host name, lowercase, matched exactly (any port).
    Host(String),
    /// An address or a network of them.
    Network(IpNet),
}

impl AddressGuard {
    /// A guard that also allows what `allow` names: host names (`registry.corp`, matched
    /// exactly, any port), IP addresses (`10.1.2.3`, `::1`) or networks in CIDR notation
    /// (`10.0.0.0/8`, `fd00::/8`). An entry that is none of these is an `InvalidConfig` error
    /// naming it.
    pub fn new<I, S>(allow: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let allow = allow
            .into_iter()
            .map(|entry| Allowed::parse(entry.as_ref()))
            .collect::<Result<_>>()?;
        Ok(AddressGuard { allow })
    }

    /// The guard an on/off switch and an allow-list ask for, as the CLI, the worker config and
    /// the bindings take them: `None` when off; an allow-list with the switch off is an
    /// `InvalidConfig` error (it would silently guard nothing).
    pub fn switch<S: AsRef<str>>(on: bool, allow: &[S]) -> Result<Option<Self>> {
        match (on, allow.is_empty()) {
            (true, _) => AddressGuard::new(allow).map(Some),
            (false, true) => Ok(None),
            (false, false) => Err(Error::new(
                ErrorKind::InvalidConfig,
                "an SSRF guard allow-list has no effect while the guard is off",
            )),
        }
    }

    /// The allow-list as given (normalized: host names lowercase, networks in CIDR form).
    pub fn allow_list(&self) -> Vec<String> {
        self.allow
            .iter()
            .map(|a| match a {
                Allowed::Host(host) => host.clone(),
                Allowed::Network(net) => net.to_string(),
            })
            .collect()
    }

    /// `Ok` when `host` may be reached at `addr`; otherwise a `Forbidden` error naming both and
    /// the kind of address, and saying how to allow it.
    pub(crate) fn check(&self, host: &str, addr: IpAddr) -> Result<()> {
        match self.refusal(host, addr) {
            None => Ok(()),
            Some(why) => Err(refused(host, &[(addr, why)])),
        }
    }

    /// Why `host` may not be reached at `addr`, or `None` when it may.
    fn refusal(&self, host: &str, addr: IpAddr) -> Option<&'static str> {
        let why = non_public(addr)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let allowed = self.allow.iter().any(|a| match a {
            Allowed::Host(name) => name.eq_ignore_ascii_case(host),
            Allowed::Network(net) => net.contains(&canonical(addr)),
        });
        (!allowed).then_some(why)
    }

    /// Check a registry (`host[:port]`, as a mirror's source names it) before it is saved, as
    /// Quay checks a mirror's `external_reference`: an address as it is, a name as it resolves
    /// here and now (Docker Hub's names as `registry-1.docker.io`). A name that does not
    /// resolve here passes: the check that counts is the one at connect time, on the machine
    /// that runs the mirror.
    pub async fn check_registry(&self, registry: &str) -> Result<()> {
        let url =
            url::Url::parse(&format!("https://{}/", super::api_host(registry))).map_err(|e| {
                Error::new(
                    ErrorKind::InvalidReference,
                    format!("registry {registry:?} is not host[:port]: {e}"),
                )
            })?;
        if let Some(addr) = super::literal_ip(&url) {
            return self.check(url.host_str().unwrap_or_default(), addr);
        }
        let Some(name) = url.host_str() else {
            return Ok(());
        };
        match tokio::net::lookup_host((name, 0)).await {
            Ok(found) => self.screen(name, found.collect()).map(drop),
            Err(_) => Ok(()),
        }
    }

    /// The addresses of `host` this guard allows; an error naming every refused address when it
    /// allows none of them.
    fn screen(&self, host: &str, found: Vec<SocketAddr>) -> Result<Vec<SocketAddr>> {
        let mut allowed = Vec::new();
        let mut refusals = Vec::new();
        for addr in found {
            match self.refusal(host, addr.ip()) {
                None => allowed.push(addr),
                Some(why) => refusals.push((addr.ip(), why)),
            }
        }
        if allowed.is_empty() && !refusals.is_empty() {
            return Err(refused(host, &refusals));
        }
        Ok(allowed)
    }
}

impl Allowed {
    fn parse(entry: &str) -> Result<Allowed> {
        let entry = entry.trim();
        let bad = |why: &str| {
            Err(Error::new(
                ErrorKind::InvalidConfig,
                format!(
                    "SSRF guard allow-list entry {entry:?} is not valid: {why} (expected a host \
                     name, an IP address or a CIDR network such as 10.0.0.0/8)"
                ),
            ))
        };
        if entry.contains("://") {
            return bad("give the host without a scheme");
        }
        if entry.contains('/') {
            return match entry.parse::<IpNet>() {
                Ok(net) => Ok(Allowed::Network(net.trunc())),
                Err(e) => bad(&e.to_string()),
            };
        }
        let bare = entry.trim_start_matches('[').trim_end_matches(']');
        if let Ok(addr) = bare.parse::<IpAddr>() {
            return Ok(Allowed::Network(IpNet::from(canonical(addr))));
        }
        if entry.is_empty() {
            return bad("it is empty");
        }
        if entry.contains(':') {
            return bad("give the host without a port");
        }
        let is_name = entry.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
        if !is_name || entry.len() > 253 {
            return bad("it is not a host name");
        }
        Ok(Allowed::Host(entry.to_ascii_lowercase()))
    }
}

/// An IPv4 address written as IPv6 (`::ffff:127.0.0.1`) is that IPv4 address.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

/// The address ranges that are not the public internet, with what each is.
static NON_PUBLIC: LazyLock<Vec<(IpNet, &'static str)>> = LazyLock::new(|| {
    [
        ("0.0.0.0/8", "unspecified"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared (carrier-grade NAT)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.169.254/32", "cloud metadata"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.0.2.0/24", "documentation"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("100::/64", "discard-only"),
        ("2001::/23", "IETF protocol assignments"),
        ("2001:db8::/32", "documentation"),
        ("fd00:ec2::254/128", "cloud metadata"),
        ("fc00::/7", "private (unique local)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    ]
    .into_iter()
    .map(|(net, what)| (net.parse().expect("the table's networks are valid"), what))
    .collect()
});

/// What kind of non-public address `addr` is, or `None` for a public one. IPv6 forms that
/// carry an IPv4 address (mapped, NAT64, 6to4) are judged by that address.
fn non_public(addr: IpAddr) -> Option<&'static str> {
    if let IpAddr::V6(v6) = addr
        && let Some(v4) = embedded_ipv4(v6)
    {
        return non_public(IpAddr::V4(v4));
    }
    NON_PUBLIC
        .iter()
        .find(|(net, _)| net.contains(&addr))
        .map(|(_, what)| *what)
}

/// The IPv4 address an IPv6 address stands for: `::ffff:a.b.c.d` (mapped), `64:ff9b::a.b.c.d`
/// (NAT64's well-known prefix) and `2002:aabb:ccdd::/48` (6to4).
fn embedded_ipv4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let low = || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if let Some(v4) = v6.to_ipv4_mapped() {
        Some(v4)
    } else if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        Some(low())
    } else if s[0] == 0x2002 {
        Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ))
    } else {
        None
    }
}

/// The guard's refusal of `host` at `addrs`, as the error every path reports.
fn refused(host: &str, addrs: &[(IpAddr, &'static str)]) -> Error {
    let list = addrs
        .iter()
        .map(|(addr, why)| format!("{addr} ({why})"))
        .collect::<Vec<_>>()
        .join(", ");
    let at = if host.parse::<IpAddr>().is_ok() || host.starts_with('[') {
        format!("{host} is {list}")
    } else {
        format!("{host} resolves to {list}")
    };
    Error::new(
        ErrorKind::Forbidden,
        format!(
            "the SSRF guard refused {host}: {at}; to reach it, add the host or a network \
             holding the address to the guard's allow-list"
        ),
    )
    .with_detail(Detail::SsrfGuard)
}

/// The guard's refusal inside a reqwest error chain (the resolver can only return a boxed
/// error); [`super::client::map_reqwest_error`] finds it and reports it as `Forbidden`.
#[derive(Debug)]
pub(crate) struct Refused(pub(crate) Error);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.message())
    }
}

impl std::error::Error for Refused {}

/// A host name the system resolver could not resolve, inside a reqwest error chain;
/// [`super::client::map_reqwest_error`] finds it and says so as [`Detail::Dns`].
#[derive(Debug)]
pub(crate) struct Unresolved(std::io::Error);

impl fmt::Display for Unresolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Unresolved {}

/// reqwest's resolver: the system resolver's answer, less what the guard (when there is one)
/// refuses.
#[derive(Debug)]
pub(crate) struct Resolver {
    guard: Option<AddressGuard>,
}

impl Resolver {
    pub(crate) fn new(guard: Option<AddressGuard>) -> Arc<Self> {
        Arc::new(Resolver { guard })
    }
}

impl Resolve for Resolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.guard.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(Unresolved)?
                .collect();
            let allowed = match guard {
                Some(guard) => guard.screen(&host, found).map_err(Refused)?,
                None => found,
            };
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn non_public_addresses_are_named() {
        for (addr, what) in [
            ("127.0.0.1", "loopback"),
            ("127.3.2.1", "loopback"),
            ("::1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.31.255.255", "private"),
            ("192.168.0.1", "private"),
            ("169.254.169.254", "cloud metadata"),
            ("169.254.1.1", "link-local"),
            ("fd00:ec2::254", "cloud metadata"),
            ("fd12::1", "private (unique local)"),
            ("fe80::1", "link-local"),
            ("0.0.0.0", "unspecified"),
            ("::", "unspecified"),
            ("100.100.100.200", "shared (carrier-grade NAT)"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "cloud metadata"),
            ("64:ff9b::a00:1", "private"),
            ("2002:a9fe:a9fe::1", "cloud metadata"),
            ("255.255.255.255", "reserved"),
            ("ff02::1", "multicast"),
        ] {
            assert_eq!(non_public(ip(addr)), Some(what), "{addr}");
        }
        for addr in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "2606:4700::1111",
            "64:ff9b::101:101",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(non_public(ip(addr)), None, "{addr}");
        }
    }

    #[test]
    fn the_allow_list_takes_hosts_addresses_and_networks() {
        let guard =
            AddressGuard::new(["Registry.Corp", "10.0.0.0/8", "::1", "192.168.1.7"]).unwrap();
        assert_eq!(
            guard.allow_list(),
            ["registry.corp", "10.0.0.0/8", "::1/128", "192.168.1.7/32"]
        );
        assert!(guard.check("registry.corp", ip("172.16.0.1")).is_ok());
        assert!(guard.check("10.9.9.9", ip("10.9.9.9")).is_ok());
        assert!(guard.check("other.corp", ip("10.9.9.9")).is_ok());
        assert!(guard.check("[::1]", ip("::1")).is_ok());
        assert!(guard.check("x", ip("192.168.1.7")).is_ok());
        assert!(guard.check("x", ip("::ffff:10.0.0.1")).is_ok());
        let e = guard.check("x", ip("192.168.1.8")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Forbidden);
        assert!(
            e.message().contains("x resolves to 192.168.1.8 (private)"),
            "{e}"
        );
        assert!(e.message().contains("allow-list"), "{e}");
        let e = AddressGuard::default()
            .check("127.0.0.1", ip("127.0.0.1"))
            .unwrap_err();
        assert!(
            e.message().contains("127.0.0.1 is 127.0.0.1 (loopback)"),
            "{e}"
        );
        assert!(
            AddressGuard::default()
                .check("quay.io", ip("3.3.3.3"))
                .is_ok()
        );
    }

    #[test]
    fn the_switch_is_off_by_default_and_an_allow_list_needs_it_on() {
        let none: &[&str] = &[];
        assert_eq!(AddressGuard::switch(false, none).unwrap(), None);
        assert_eq!(
            AddressGuard::switch(true, none).unwrap(),
            Some(AddressGuard::default())
        );
        let guard = AddressGuard::switch(true, &["10.0.0.0/8"])
            .unwrap()
            .unwrap();
        assert_eq!(guard.allow_list(), ["10.0.0.0/8"]);
        let e = AddressGuard::switch(false, &["10.0.0.0/8"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
        assert!(e.message().contains("guard is off"), "{e}");
    }

    #[tokio::test]
    async fn a_registry_is_checked_before_it_is_saved() {
        let guard = AddressGuard::default();
        for registry in ["127.0.0.1:5000", "[::1]:5000", "localhost:5000", "10.1.2.3"] {
            let e = guard.check_registry(registry).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Forbidden, "{registry}: {e}");
        }
        let allowing = AddressGuard::new(["localhost", "127.0.0.1"]).unwrap();
        allowing.check_registry("localhost:5000").await.unwrap();
        allowing.check_registry("127.0.0.1:5000").await.unwrap();
        // A name that does not resolve here is left to the check at connect time.
        guard.check_registry("no-such-host.invalid").await.unwrap();
        let e = guard.check_registry("a b").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidReference, "{e}");
    }

    #[test]
    fn bad_allow_list_entries_are_named() {
        for (entry, why) in [
            ("10.0.0.0/33", "invalid"),
            ("localhost:5000", "without a port"),
            ("", "empty"),
            ("a b", "not a host name"),
            ("https://x", "without a scheme"),
        ] {
            let e = AddressGuard::new([entry]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidConfig);
            assert!(e.message().contains(&format!("{entry:?}")), "{e}");
            assert!(e.message().contains(why), "{entry}: {e}");
        }
    }

    #[tokio::test]
    async fn the_resolver_keeps_only_allowed_addresses() {
        let resolve = |guard: AddressGuard| async move {
            Resolver::new(Some(guard))
                .resolve("localhost".parse().unwrap())
                .await
                .map(|addrs| addrs.map(|a| a.ip()).collect::<Vec<_>>())
        };
        let e = resolve(AddressGuard::default()).await.unwrap_err();
        let refused = e.downcast_ref::<Refused>().expect("the guard's refusal");
        assert!(
            refused.0.message().contains("localhost resolves to"),
            "{}",
            refused.0
        );
        assert!(refused.0.message().contains("(loopback)"), "{}", refused.0);
        assert_eq!(refused.0.detail(), Some(Detail::SsrfGuard));
        let only_v4 = resolve(AddressGuard::new(["127.0.0.0/8"]).unwrap())
            .await
            .unwrap();
        assert!(!only_v4.is_empty());
        assert!(only_v4.iter().all(|a| *a == ip("127.0.0.1")), "{only_v4:?}");
        let all = resolve(AddressGuard::new(["localhost"]).unwrap())
            .await
            .unwrap();
        assert!(all.contains(&ip("127.0.0.1")), "{all:?}");
    }
}
