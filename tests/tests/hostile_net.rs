//! Where a hostile registry can send regmirror (SEMANTICS.md §10): credentials never go over
//! plain HTTP to another host, nothing is fetched over plain HTTP while TLS verification is on,
//! and the SSRF guard keeps sources, token services and redirects off non-public addresses
//! unless allow-listed. Every registry here is a [`HostileRegistry`] on loopback.

use std::path::Path;
use std::time::{Duration, Instant};

use regmirror::oneshot::{Access, Location, OneShotSync};
use regmirror::registry::LayoutRegistry;
use regmirror::registry::http::{AddressGuard, HttpOptions, HttpRegistry};
use regmirror::{
    Credentials, DestRegistry, Detail, ErrorKind, SourceRegistry, SyncOptions, SyncReport,
};
use regmirror_tests::hostile::{HostileRegistry, Mode};
use regmirror_tests::{Blob, Fault, Image, PASSWORD, Proxy, USERNAME};

const REPO: &str = "src/app";

/// A registry serving `REPO:v1` as `mode` misbehaves, with token auth, over TLS if `tls`.
fn serving(mode: Mode, tls: bool) -> (HostileRegistry, Image) {
    let mut builder = HostileRegistry::builder(mode).token_auth();
    if tls {
        builder = builder.tls();
    }
    let registry = builder.start();
    let image = Image::simple(1, 2, 1000);
    registry.put_image(REPO, "v1", &image);
    (registry, image)
}

/// A registry without auth serving `REPO:v1` as `mode` misbehaves (storage behind redirects,
/// or a source where the guard, not authentication, is under test).
fn open(mode: Mode) -> (HostileRegistry, Image) {
    let registry = HostileRegistry::start(mode);
    let image = Image::simple(1, 2, 1000);
    registry.put_image(REPO, "v1", &image);
    (registry, image)
}

/// A plain registry's token service at `http://localhost:PORT/token`: another host than
/// `127.0.0.1` for the client, which checks host names, not addresses.
fn foreign_token_service() -> (HostileRegistry, String) {
    let foreign = HostileRegistry::builder(Mode::Honest).token_auth().start();
    let port = foreign.host().rsplit_once(':').unwrap().1.to_owned();
    (foreign, format!("http://localhost:{port}/token"))
}

fn assert_no_password(e: &regmirror::Error) {
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains(PASSWORD), "{shown}");
    assert!(
        !shown.contains(&regmirror_tests::hostile::base64_login()),
        "{shown}"
    );
}

/// One-shot sync of `source`'s `v1` into a layout at `dir`.
async fn sync_to_layout(source: &str, access: Access, dir: &Path) -> SyncReport {
    let mut sync = OneShotSync::new(
        source.parse::<Location>().unwrap(),
        Location::Layout(dir.to_owned()),
        ["v1"],
    );
    sync.source_access = access;
    sync.run(SyncOptions::default()).await.unwrap()
}

/// The kit user's access to a hostile registry: its CA trusted and verified when it has one.
fn access(registry: &HostileRegistry) -> Access {
    Access {
        credentials: Some(Credentials::new(USERNAME, PASSWORD)),
        tls_verify: registry.ca_pem().is_some(),
        ca_certs: registry
            .ca_pem()
            .map(ToOwned::to_owned)
            .into_iter()
            .collect(),
        ..Access::default()
    }
}

async fn layout_tags(dir: &Path) -> Vec<String> {
    DestRegistry::list_tags(&LayoutRegistry::single(dir), REPO)
        .await
        .unwrap_or_default()
}

#[tokio::test]
async fn an_https_registry_with_a_plain_http_foreign_realm_gets_no_credentials_sent_there() {
    let (foreign, realm) = foreign_token_service();
    let (registry, _) = serving(Mode::Realm(realm.clone()), true);
    let e = SourceRegistry::list_tags(&registry.client(), REPO)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Forbidden, "{e}");
    assert!(e.message().contains(&registry.host()), "{e}");
    assert!(e.message().contains(&realm), "{e}");
    assert!(e.message().contains("TLS verification is on"), "{e}");
    assert_no_password(&e);
    assert_eq!(
        foreign.requests(),
        [],
        "the foreign token service was contacted"
    );

    // Without verification plain HTTP is allowed, but still not for the password on another
    // host: refused before anything is sent there.
    let (registry, _) = serving(Mode::Realm(realm.clone()), false);
    let e = SourceRegistry::list_tags(&registry.client(), REPO)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Forbidden, "{e}");
    assert!(e.message().contains("another host"), "{e}");
    assert!(e.message().contains(&realm), "{e}");
    assert_no_password(&e);
    assert_eq!(foreign.requests(), []);

    // An anonymous client has nothing to leak: it asks the foreign service for a token.
    let anonymous = HttpRegistry::new(
        &registry.host(),
        HttpOptions {
            credentials: None,
            ..registry.http_options()
        },
    )
    .unwrap();
    let e = SourceRegistry::list_tags(&anonymous, REPO)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
    let asked = foreign.requests();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0].authorization, None);
}

#[tokio::test]
async fn a_plain_http_realm_on_the_registrys_own_host_still_gets_the_credentials() {
    // Its own /token, and a token service on another port of the same host.
    let (registry, _) = serving(Mode::Honest, false);
    let tags = SourceRegistry::list_tags(&registry.client(), REPO)
        .await
        .unwrap();
    assert_eq!(tags, ["v1"]);
    let (service, _) = foreign_token_service();
    let realm = format!("{}/token", service.base_url());
    let (registry, _) = serving(Mode::Realm(realm), false);
    let tags = SourceRegistry::list_tags(&registry.client(), REPO)
        .await
        .unwrap();
    assert_eq!(tags, ["v1"]);
    assert!(
        service.requests().iter().any(|s| s.authorization.is_some()),
        "{:?}",
        service.requests()
    );
}

#[tokio::test]
async fn a_rate_limiting_token_service_is_retried_after_what_its_retry_after_asks() {
    // The challenges name a token service on the same host behind the fault-injecting proxy.
    let service = HostileRegistry::builder(Mode::Honest).token_auth().start();
    let proxy = Proxy::to(&service.base_url(), None);
    let (registry, _) = serving(Mode::Realm(format!("{}/token", proxy.base_url())), false);
    let rate_limited = |after: &str| Fault::RetryAfter {
        status: 429,
        after: after.into(),
    };

    proxy.inject("GET", "/token", rate_limited("1"), 1);
    let started = Instant::now();
    let tags = SourceRegistry::list_tags(&registry.client(), REPO)
        .await
        .unwrap();
    assert_eq!(tags, ["v1"]);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was waited out, not the shorter backoff ({:?})",
        started.elapsed()
    );
    assert_eq!(proxy.count("GET", "/token"), 2);

    // A pause longer than the client is willing to wait fails the fetch at once, unrepeated.
    proxy.reset_counts();
    proxy.inject("GET", "/token", rate_limited("3600"), 100);
    let started = Instant::now();
    let e = SourceRegistry::list_tags(&registry.client(), REPO)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RateLimited, "{e}");
    assert!(started.elapsed() < Duration::from_secs(10), "{e}");
    assert_eq!(proxy.count("GET", "/token"), 1);
}

#[tokio::test]
async fn an_https_realm_on_another_host_gets_the_credentials_as_docker_hubs_does() {
    let service = HostileRegistry::builder(Mode::Honest)
        .token_auth()
        .tls()
        .start();
    let port = service.host().rsplit_once(':').unwrap().1.to_owned();
    let (registry, _) = serving(Mode::Realm(format!("https://localhost:{port}/token")), true);
    let options = HttpOptions {
        ca_certs: vec![
            registry.ca_pem().unwrap().to_owned(),
            service.ca_pem().unwrap().to_owned(),
        ],
        ..registry.http_options()
    };
    let client = HttpRegistry::new(&registry.host(), options).unwrap();
    assert_eq!(
        SourceRegistry::list_tags(&client, REPO).await.unwrap(),
        ["v1"]
    );
    assert!(service.requests().iter().any(|s| s.authorization.is_some()));
}

#[tokio::test]
async fn an_https_to_http_redirect_is_refused_and_nothing_is_published() {
    // The same content over plain HTTP on the same host, where the redirects point.
    let (plain, _) = open(Mode::Honest);
    let manifest = format!("{}/v2/{REPO}/manifests/v1", plain.base_url());
    let (registry, _) = serving(Mode::RedirectManifests(manifest.clone()), true);
    let dir = tempfile::tempdir().unwrap();
    let source = format!("{}/{REPO}", registry.host());
    let report = sync_to_layout(&source, access(&registry), dir.path()).await;
    assert!(!report.is_success(), "{report:?}");
    let reason = report
        .tags_failed
        .iter()
        .map(|f| f.reason.clone())
        .chain(report.error.clone())
        .collect::<Vec<_>>()
        .join("; ");
    assert!(reason.contains("plain HTTP"), "{reason}");
    assert!(
        reason.contains(&format!("{}/v2/{REPO}/manifests/v1", plain.base_url())),
        "{reason}"
    );
    assert_eq!(plain.count("*", "/manifests/"), 0, "{:?}", plain.requests());
    assert!(layout_tags(dir.path()).await.is_empty());

    // Blobs likewise: the manifest is served, its layers redirected to plain HTTP.
    let (registry, _) = serving(Mode::RedirectBlobs(plain.base_url()), true);
    let source = format!("{}/{REPO}", registry.host());
    let report = sync_to_layout(&source, access(&registry), dir.path()).await;
    assert_eq!(report.failed_tags(), ["v1"], "{report:?}");
    assert!(
        report.tags_failed[0].reason.contains("plain HTTP"),
        "{report:?}"
    );
    assert_eq!(plain.count("*", "/blobs/"), 0, "{:?}", plain.requests());
    assert!(layout_tags(dir.path()).await.is_empty());

    // Without verification a plain-HTTP redirect is followed, as skopeo does.
    let (registry, image) = serving(Mode::RedirectBlobs(plain.base_url()), true);
    let source = format!("{}/{REPO}", registry.host());
    let report = sync_to_layout(
        &source,
        Access {
            tls_verify: false,
            ..access(&registry)
        },
        dir.path(),
    )
    .await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(layout_tags(dir.path()).await, ["v1"]);
    assert!(plain.count("GET", &image.layers[0].digest.to_string()) > 0);
}

#[tokio::test]
async fn tag_pages_and_upload_sessions_on_plain_http_are_refused_under_tls_verification() {
    let (plain, _) = open(Mode::Honest);
    let registry = HostileRegistry::builder(Mode::Downgrade(plain.base_url()))
        .tls()
        .start();
    registry.put_image(REPO, "v1", &Image::simple(1, 2, 1000));
    let client = registry.client();
    let e = SourceRegistry::list_tags(&client, REPO).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Forbidden, "{e}");
    assert!(e.message().contains("plain HTTP"), "{e}");
    assert!(e.message().contains(&plain.base_url()), "{e}");

    // A small blob (sent in one PUT) and a large one (streamed): the session's plain-HTTP
    // location gets neither.
    for blob in [Blob::random(3, 100), Blob::random(4, 2 << 20)] {
        let data: regmirror::registry::BlobStream =
            Box::pin(futures::stream::once(futures::future::ready(Ok(blob
                .bytes
                .clone()))));
        let e = DestRegistry::push_blob(&client, REPO, &blob.digest, blob.bytes.len() as u64, data)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Forbidden, "{e}");
        assert!(e.message().contains("plain HTTP"), "{e}");
    }
    assert_eq!(plain.requests(), [], "plain HTTP was used");
}

#[tokio::test]
async fn a_redirect_to_another_host_takes_no_credentials_along() {
    let storage = HostileRegistry::builder(Mode::Honest).tls().start();
    let image = Image::simple(1, 2, 1000);
    storage.put_image(REPO, "v1", &image);
    let port = storage.host().rsplit_once(':').unwrap().1.to_owned();
    let (registry, _) = serving(
        Mode::RedirectBlobs(format!("https://localhost:{port}")),
        true,
    );
    let options = HttpOptions {
        ca_certs: vec![
            registry.ca_pem().unwrap().to_owned(),
            storage.ca_pem().unwrap().to_owned(),
        ],
        ..registry.http_options()
    };
    let client = HttpRegistry::new(&registry.host(), options).unwrap();
    let layer = &image.layers[0];
    let stream = SourceRegistry::get_blob(&client, REPO, &layer.digest)
        .await
        .unwrap();
    let chunks: Vec<_> = futures::TryStreamExt::try_collect(stream).await.unwrap();
    let bytes: Vec<u8> = chunks.concat();
    assert_eq!(bytes, layer.bytes);
    let fetched = storage.requests();
    assert_eq!(fetched.len(), 1, "{fetched:?}");
    assert_eq!(fetched[0].authorization, None);
    assert!(
        registry
            .requests()
            .iter()
            .any(|s| s.path.contains("/blobs/") && s.authorization.is_some())
    );
}

/// A client of `registry` (named `host`) under the SSRF guard allowing `allow`.
fn guarded(registry: &HostileRegistry, host: &str, allow: &[&str]) -> HttpRegistry {
    let options = HttpOptions {
        address_guard: Some(AddressGuard::new(allow).unwrap()),
        ..registry.http_options()
    };
    HttpRegistry::new(host, options).unwrap()
}

#[tokio::test]
async fn the_ssrf_guard_refuses_loopback_sources_unless_allow_listed() {
    let (registry, _) = open(Mode::Honest);
    let host = registry.host();
    let port = host.rsplit_once(':').unwrap().1.to_owned();

    let e = SourceRegistry::list_tags(&guarded(&registry, &host, &[]), REPO)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Forbidden, "{e}");
    assert_eq!(e.detail(), Some(Detail::SsrfGuard), "{e}");
    assert!(e.message().contains("127.0.0.1 (loopback)"), "{e}");
    assert!(e.message().contains("allow-list"), "{e}");
    assert_eq!(registry.requests(), [], "a refused address was contacted");

    // A name that resolves to loopback is refused where it resolves.
    let by_name = format!("localhost:{port}");
    let e = SourceRegistry::list_tags(&guarded(&registry, &by_name, &["127.0.0.2"]), REPO)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Forbidden, "{e}");
    assert_eq!(e.detail(), Some(Detail::SsrfGuard), "{e}");
    assert!(e.message().contains("localhost resolves to"), "{e}");
    assert!(e.message().contains("(loopback)"), "{e}");
    assert_eq!(registry.requests(), []);

    for (name, allow) in [
        (host.as_str(), "127.0.0.1"),
        (host.as_str(), "127.0.0.0/8"),
        (by_name.as_str(), "localhost"),
        (by_name.as_str(), "127.0.0.0/8"),
    ] {
        let tags = SourceRegistry::list_tags(&guarded(&registry, name, &[allow]), REPO)
            .await
            .unwrap_or_else(|e| panic!("{name} allowing {allow}: {e}"));
        assert_eq!(tags, ["v1"]);
    }
}

#[tokio::test]
async fn the_ssrf_guard_refuses_loopback_realms_and_redirect_targets() {
    // The registry is reached as `localhost`, which the allow-list names; its token service
    // and its blob storage are at 127.0.0.1, which it does not.
    let service = HostileRegistry::builder(Mode::Honest)
        .token_auth()
        .tls()
        .start();
    let realm = format!("https://{}/token", service.host());
    let (registry, _) = serving(Mode::Realm(realm.clone()), true);
    let port = registry.host().rsplit_once(':').unwrap().1.to_owned();
    let by_name = format!("localhost:{port}");
    let client = |allow: &[&str]| {
        let options = HttpOptions {
            ca_certs: vec![
                registry.ca_pem().unwrap().to_owned(),
                service.ca_pem().unwrap().to_owned(),
            ],
            address_guard: Some(AddressGuard::new(allow).unwrap()),
            ..registry.http_options()
        };
        HttpRegistry::new(&by_name, options).unwrap()
    };
    let e = SourceRegistry::list_tags(&client(&["localhost"]), REPO)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Forbidden, "{e}");
    assert!(
        e.message().contains(&format!("token request to {realm}")),
        "{e}"
    );
    assert!(
        e.message().contains("127.0.0.1 is 127.0.0.1 (loopback)"),
        "{e}"
    );
    assert_eq!(service.requests(), []);
    let tags = SourceRegistry::list_tags(&client(&["localhost", "127.0.0.1"]), REPO)
        .await
        .unwrap();
    assert_eq!(tags, ["v1"]);

    // A redirect to a host written as an address is checked before it is followed.
    let (storage, image) = open(Mode::Honest);
    let (registry, _) = open(Mode::RedirectBlobs(storage.base_url()));
    let port = registry.host().rsplit_once(':').unwrap().1.to_owned();
    let client = guarded(&registry, &format!("localhost:{port}"), &["localhost"]);
    let Err(e) = SourceRegistry::get_blob(&client, REPO, &image.layers[0].digest).await else {
        panic!("a redirect to a refused address was followed");
    };
    assert_eq!(e.kind(), ErrorKind::Forbidden, "{e}");
    assert!(
        e.message().contains("127.0.0.1 is 127.0.0.1 (loopback)"),
        "{e}"
    );
    assert_eq!(storage.requests(), []);
}

#[tokio::test]
async fn a_one_shot_sync_under_the_guard_fails_clearly_and_publishes_nothing() {
    let (registry, _) = open(Mode::Honest);
    let dir = tempfile::tempdir().unwrap();
    let source = format!("{}/{REPO}", registry.host());
    let guard = |allow: &[&str]| Access {
        address_guard: Some(AddressGuard::new(allow).unwrap()),
        ..access(&registry)
    };
    let report = sync_to_layout(&source, guard(&[]), dir.path()).await;
    assert!(!report.is_success());
    let error = report.error.unwrap_or_default();
    assert!(error.contains("SSRF guard refused 127.0.0.1"), "{error}");
    assert!(layout_tags(dir.path()).await.is_empty());
    let report = sync_to_layout(&source, guard(&["127.0.0.1"]), dir.path()).await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(layout_tags(dir.path()).await, ["v1"]);
}
