//! The HTTP client against real distribution registries: TLS with the kit's CA, basic and bearer
//! token auth (right, wrong and read-only credentials), cross-repository mounts with tokens,
//! pagination and retries seen through the counting proxy, chunked uploads, interrupted and
//! stalled transfers. The backend-neutral contract lives in `behaviour.rs`, `stored.rs` and
//! `large_blob.rs`, which run this client too.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, LINK, LOCATION, WWW_AUTHENTICATE};
use hyper::{Request, Response};
use regmirror_tests::server::{BackgroundServer, full};

use bytes::Bytes;
use futures::{StreamExt as _, TryStreamExt as _};
use regmirror::registry::BlobStream;
use regmirror::registry::http::{HttpOptions, HttpRegistry, RetryPolicy};
use regmirror::{Credentials, DestRegistry, Detail, Digest, ErrorKind, SourceRegistry};
use regmirror_tests::{
    Blob, Fault, Flavor, HostileRegistry, Image, Index, Mode, PASSWORD, Proxy, READER_PASSWORD,
    READER_USERNAME, Registry, TcpProxy, USERNAME,
};

/// Options for a loopback test registry: plain HTTP allowed, no docker config from the machine,
/// quick retries.
fn options() -> HttpOptions {
    HttpOptions {
        tls_verify: false,
        docker_config: false,
        retry: RetryPolicy {
            max_retries: 3,
            initial_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(100),
        },
        ..HttpOptions::default()
    }
}

fn with_credentials(user: &str, password: &str) -> HttpOptions {
    HttpOptions {
        credentials: Some(Credentials::new(user, password)),
        ..options()
    }
}

fn stream_of(bytes: Bytes) -> BlobStream {
    let chunks: Vec<regmirror::Result<Bytes>> = (0..bytes.len())
        .step_by(64 << 10)
        .map(|start| Ok(bytes.slice(start..(start + (64 << 10)).min(bytes.len()))))
        .collect();
    futures::stream::iter(chunks).boxed()
}

async fn push_blob(dest: &dyn DestRegistry, repo: &str, blob: &Blob) -> regmirror::Result<()> {
    dest.push_blob(
        repo,
        &blob.digest,
        blob.size(),
        stream_of(blob.bytes.clone()),
    )
    .await
}

async fn push_image(dest: &dyn DestRegistry, repo: &str, tag: &str, image: &Image) {
    for blob in image.blobs() {
        if !dest.has_blob(repo, &blob.digest).await.unwrap() {
            push_blob(dest, repo, blob).await.unwrap();
        }
    }
    let digest = dest
        .push_manifest(repo, tag, &image.manifest)
        .await
        .unwrap();
    assert_eq!(digest, image.manifest.digest);
}

async fn read_blob(
    source: &dyn SourceRegistry,
    repo: &str,
    digest: &Digest,
) -> regmirror::Result<Bytes> {
    let chunks: Vec<Bytes> = source.get_blob(repo, digest).await?.try_collect().await?;
    Ok(chunks.concat().into())
}

/// `Display` and `Debug` of `e` do not contain `secret`.
fn assert_no_secret(e: &regmirror::Error, secret: &str) {
    for shown in [e.to_string(), format!("{e:?}")] {
        assert!(!shown.contains(secret), "secret in error: {shown}");
    }
}

#[tokio::test]
async fn plain_http_is_used_only_when_tls_verification_is_off() {
    let registry = Registry::start();
    let strict = HttpRegistry::new(
        &registry.host(),
        HttpOptions {
            tls_verify: true,
            ..options()
        },
    )
    .unwrap();
    let e = SourceRegistry::list_tags(&strict, "any/repo")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
    // What the hint needs is data: the registry answered in plain HTTP, and which one it was.
    assert_eq!(e.detail(), Some(Detail::PlainHttp), "{e}");
    assert_eq!(e.host(), Some(registry.host().as_str()), "{e}");

    let lax = HttpRegistry::new(&registry.host(), options()).unwrap();
    let image = Image::simple(1, 1, 100);
    push_image(&lax, "plain/app", "v1", &image).await;
    assert_eq!(
        SourceRegistry::list_tags(&lax, "plain/app").await.unwrap(),
        ["v1"]
    );
}

#[tokio::test]
async fn a_host_name_that_does_not_resolve_is_said_as_data() {
    let nowhere = HttpRegistry::new("no-such-registry.invalid", options()).unwrap();
    let e = SourceRegistry::list_tags(&nowhere, "any/repo")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Network, "{e}");
    assert_eq!(e.detail(), Some(Detail::Dns), "{e}");
    assert_eq!(e.host(), Some("no-such-registry.invalid"), "{e}");
    // A registry that resolves but does not listen is no DNS problem.
    let port = regmirror_tests::registry::free_port();
    let closed = HttpRegistry::new(&format!("127.0.0.1:{port}"), options()).unwrap();
    let e = SourceRegistry::list_tags(&closed, "any/repo")
        .await
        .unwrap_err();
    assert_eq!((e.kind(), e.detail()), (ErrorKind::Network, None), "{e}");
}

#[tokio::test]
async fn a_tls_registry_is_spoken_to_over_https_when_verification_is_off() {
    // With verification off, https and plain http are tried at once; the registry answers the
    // plain-http ping too (400, "HTTP request to an HTTPS server"), and https must still win.
    let registry = Registry::builder().tls().start();
    let lax = HttpRegistry::new(&registry.host(), options()).unwrap();
    let image = Image::simple(3, 1, 100);
    push_image(&lax, "lax/app", "v1", &image).await;
    assert_eq!(
        SourceRegistry::list_tags(&lax, "lax/app").await.unwrap(),
        ["v1"]
    );
    let got = SourceRegistry::get_manifest(&lax, "lax/app", "v1")
        .await
        .unwrap();
    assert_eq!(got.bytes, image.manifest.bytes);
}

#[tokio::test]
async fn tls_registry_is_verified_with_its_ca_and_refused_without() {
    let registry = Registry::builder().tls().start();
    let ca = registry
        .ca_pem()
        .expect("the TLS variant has a CA")
        .to_owned();
    let trusted = HttpRegistry::new(
        &registry.host(),
        HttpOptions {
            tls_verify: true,
            ca_certs: vec![ca],
            ..options()
        },
    )
    .unwrap();
    let index = Index::two_platforms(Flavor::Oci, 2, 1000);
    for child in &index.children {
        push_image(&trusted, "tls/app", child.manifest.digest.as_str(), child).await;
    }
    trusted
        .push_manifest("tls/app", "multi", &index.manifest)
        .await
        .unwrap();
    let got = SourceRegistry::get_manifest(&trusted, "tls/app", "multi")
        .await
        .unwrap();
    assert_eq!(got.bytes, index.manifest.bytes);

    let untrusted = HttpRegistry::new(
        &registry.host(),
        HttpOptions {
            tls_verify: true,
            ..options()
        },
    )
    .unwrap();
    let e = SourceRegistry::list_tags(&untrusted, "tls/app")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
    assert!(e.message().contains("TLS"), "{e}");

    // A docker-style certs.d directory of *.crt files works as well.
    let certs = tempfile::tempdir().unwrap();
    std::fs::copy(registry.ca_pem().unwrap(), certs.path().join("ca.crt")).unwrap();
    let from_dir = HttpRegistry::new(
        &registry.host(),
        HttpOptions {
            tls_verify: true,
            ca_certs: vec![certs.path().to_owned()],
            ..options()
        },
    )
    .unwrap();
    assert_eq!(
        SourceRegistry::list_tags(&from_dir, "tls/app")
            .await
            .unwrap(),
        ["multi"]
    );

    // Not verifying still speaks TLS to a TLS registry (it does not fall back to plain HTTP).
    let unverified = HttpRegistry::new(&registry.host(), options()).unwrap();
    assert_eq!(
        SourceRegistry::list_tags(&unverified, "tls/app")
            .await
            .unwrap(),
        ["multi"]
    );
}

#[tokio::test]
async fn basic_auth_accepts_the_right_password_and_hides_a_wrong_one() {
    let registry = Registry::builder().basic_auth().start();
    let right = HttpRegistry::new(&registry.host(), with_credentials(USERNAME, PASSWORD)).unwrap();
    let image = Image::simple(3, 2, 500);
    push_image(&right, "basic/app", "v1", &image).await;
    assert_eq!(
        read_blob(&right, "basic/app", &image.layers[0].digest)
            .await
            .unwrap(),
        image.layers[0].bytes
    );

    let wrong_password = "Wr0ng-p4ss-\"quoted\"-$;";
    let wrong =
        HttpRegistry::new(&registry.host(), with_credentials(USERNAME, wrong_password)).unwrap();
    let e = SourceRegistry::list_tags(&wrong, "basic/app")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
    assert_no_secret(&e, wrong_password);
    assert!(!format!("{wrong:?}").contains(wrong_password));

    let anonymous = HttpRegistry::new(&registry.host(), options()).unwrap();
    let e = SourceRegistry::get_manifest(&anonymous, "basic/app", "v1")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
}

#[tokio::test]
async fn bearer_tokens_for_users_readers_and_anonymous_callers() {
    let registry = Registry::builder().token_auth(true).start();
    let tokens = registry
        .token_server()
        .expect("the token variant has an issuer");
    let writer = HttpRegistry::new(&registry.host(), with_credentials(USERNAME, PASSWORD)).unwrap();
    let image = Image::simple(4, 3, 300);
    push_image(&writer, "token/app", "v1", &image).await;
    writer
        .push_manifest("token/app", "v2", &image.manifest)
        .await
        .unwrap();
    let mut tags = DestRegistry::list_tags(&writer, "token/app").await.unwrap();
    tags.sort();
    assert_eq!(tags, ["v1", "v2"]);
    // One push token serves every request on the repository.
    let issued = tokens.requests();
    assert!(issued <= 2, "{issued} token requests for one repository");

    let reader = HttpRegistry::new(
        &registry.host(),
        with_credentials(READER_USERNAME, READER_PASSWORD),
    )
    .unwrap();
    let got = SourceRegistry::get_manifest(&reader, "token/app", "v1")
        .await
        .unwrap();
    assert_eq!(got.bytes, image.manifest.bytes);
    let other = Image::simple(5, 1, 100);
    let e = push_blob(&reader, "token/app", &other.config)
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Unauthorized | ErrorKind::Forbidden),
        "{e}"
    );
    assert_no_secret(&e, READER_PASSWORD);

    let anonymous = HttpRegistry::new(&registry.host(), options()).unwrap();
    assert_eq!(
        read_blob(&anonymous, "token/app", &image.config.digest)
            .await
            .unwrap(),
        image.config.bytes
    );

    let wrong_password = "n0t-The-Password-\u{1F511}";
    let wrong =
        HttpRegistry::new(&registry.host(), with_credentials(USERNAME, wrong_password)).unwrap();
    let e = SourceRegistry::list_tags(&wrong, "token/app")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
    assert!(e.message().contains("token"), "{e}");
    assert_no_secret(&e, wrong_password);
    assert_no_secret(&e, PASSWORD);
}

#[tokio::test]
async fn a_refused_token_is_replaced_once() {
    let registry = Registry::builder().token_auth(false).start();
    let proxy = Proxy::start(&registry);
    let client = HttpRegistry::new(&proxy.host(), with_credentials(USERNAME, PASSWORD)).unwrap();
    let image = Image::simple(17, 1, 100);
    push_image(&client, "fresh/app", "v1", &image).await;
    let tokens = registry.token_server().unwrap();
    let before = tokens.requests();
    // As if the cached token had expired early: one 401, then a fresh token works.
    proxy.inject("GET", "/manifests/v1", Fault::Status(401), 1);
    let got = SourceRegistry::get_manifest(&client, "fresh/app", "v1")
        .await
        .unwrap();
    assert_eq!(got.bytes, image.manifest.bytes);
    assert_eq!(tokens.requests(), before + 1);
    // Refused again after the fresh token: no loop, Unauthorized.
    proxy.inject("GET", "/manifests/v1", Fault::Status(401), 2);
    let e = SourceRegistry::get_manifest(&client, "fresh/app", "v1")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
    assert_no_secret(&e, PASSWORD);
}

#[tokio::test]
async fn oci_artifacts_round_trip_byte_for_byte() {
    let registry = Registry::start();
    let client = HttpRegistry::new(&registry.host(), options()).unwrap();
    let config = Blob::new(&b"{\"tool\":\"sbom\"}"[..]);
    let payload = Blob::random(18, 4000);
    for blob in [&config, &payload] {
        push_blob(&client, "artifact/app", blob).await.unwrap();
    }
    let descriptor = |media_type: &str, blob: &Blob| serde_json::json!({"mediaType": media_type, "digest": blob.digest.as_str(), "size": blob.size()});
    let bytes = serde_json::to_vec_pretty(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.sbom.v1",
        "config": descriptor("application/vnd.example.sbom.config.v1+json", &config),
        "layers": [descriptor("application/spdx+json", &payload)],
        "annotations": {"org.opencontainers.image.created": "2026-11-27T00:00:00Z"},
    }))
    .unwrap();
    let manifest =
        regmirror::Manifest::from_bytes(bytes, "application/vnd.oci.image.manifest.v1+json")
            .unwrap();
    client
        .push_manifest("artifact/app", "sbom", &manifest)
        .await
        .unwrap();
    let got = SourceRegistry::get_manifest(&client, "artifact/app", "sbom")
        .await
        .unwrap();
    assert_eq!(got.bytes, manifest.bytes);
    assert_eq!(got.digest, manifest.digest);
}

#[tokio::test]
async fn blobs_mount_across_repositories_with_tokens() {
    let registry = Registry::builder().token_auth(false).start();
    let client = HttpRegistry::new(&registry.host(), with_credentials(USERNAME, PASSWORD)).unwrap();
    let blob = Blob::random(6, 3000);
    push_blob(&client, "mount/from", &blob).await.unwrap();
    assert!(
        client
            .mount_blob("mount/to", &blob.digest, "mount/from")
            .await
            .unwrap()
    );
    assert!(client.has_blob("mount/to", &blob.digest).await.unwrap());
    assert_eq!(
        read_blob(&client, "mount/to", &blob.digest).await.unwrap(),
        blob.bytes
    );
    let unknown = Digest::of(b"nowhere");
    assert!(
        !client
            .mount_blob("mount/to", &unknown, "mount/from")
            .await
            .unwrap()
    );
}

/// A minimal spec-following registry front for two things distribution 2.8 cannot show: tag
/// pagination (2.8 ignores `n` on tag lists) and blob downloads redirected to object storage.
/// It requires basic auth; the "object storage" behind it records the `Authorization` it gets.
struct SpecFront {
    front: BackgroundServer,
    _storage: BackgroundServer,
    front_seen: Arc<Mutex<Vec<(String, bool)>>>,
    storage_auth: Arc<Mutex<Vec<Option<String>>>>,
}

const SPEC_TAGS: usize = 25;
const STORED_BYTES: &[u8] = b"bytes served by object storage";

impl SpecFront {
    fn start() -> SpecFront {
        let storage_auth = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&storage_auth);
        let storage = BackgroundServer::start("storage", move |req: Request<Incoming>| {
            let auth = req
                .headers()
                .get(AUTHORIZATION)
                .map(|v| v.to_str().unwrap().to_owned());
            seen.lock().unwrap().push(auth);
            async move { Response::new(full(STORED_BYTES)) }
        });
        let storage_base = format!("http://{}", storage.addr());
        let expected_auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{USERNAME}:{PASSWORD}"))
        );
        let front_seen = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&front_seen);
        let front = BackgroundServer::start("spec-front", move |req: Request<Incoming>| {
            let authorized = req
                .headers()
                .get(AUTHORIZATION)
                .is_some_and(|v| v.to_str().unwrap() == expected_auth);
            let path = req.uri().path().to_owned();
            let query = req.uri().query().unwrap_or("").to_owned();
            seen.lock().unwrap().push((path.clone(), authorized));
            let storage_base = storage_base.clone();
            async move {
                if !authorized {
                    return Response::builder()
                        .status(401)
                        .header(WWW_AUTHENTICATE, r#"Basic realm="spec""#)
                        .body(full(
                            r#"{"errors":[{"code":"UNAUTHORIZED","message":"auth"}]}"#,
                        ))
                        .unwrap();
                }
                if path == "/v2/paged/app/tags/list" {
                    return tag_page(&query);
                }
                if let Some(digest) = path.strip_prefix("/v2/paged/app/blobs/") {
                    return Response::builder()
                        .status(307)
                        .header(
                            LOCATION,
                            format!("{storage_base}/bucket/{digest}?X-Amz-Signature=s1gn3d"),
                        )
                        .body(full(""))
                        .unwrap();
                }
                Response::new(full("{}"))
            }
        });
        SpecFront {
            front,
            _storage: storage,
            front_seen,
            storage_auth,
        }
    }
}

/// A page of tags `t00`..`t24` after `last`, at most `n`, with a relative `Link` to the next.
fn tag_page(query: &str) -> Response<regmirror_tests::server::Body> {
    let params: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
    let n: usize = params.get("n").map_or(SPEC_TAGS, |n| n.parse().unwrap());
    let all: Vec<String> = (0..SPEC_TAGS).map(|i| format!("t{i:02}")).collect();
    let after: Vec<&String> = all
        .iter()
        .filter(|t| params.get("last").is_none_or(|last| *t > last))
        .collect();
    let page: Vec<&String> = after.iter().take(n).copied().collect();
    let mut response = Response::builder().header(CONTENT_TYPE, "application/json");
    if after.len() > n {
        let last = page.last().unwrap();
        response = response.header(
            LINK,
            format!(r#"</v2/paged/app/tags/list?n={n}&last={last}>; rel="next""#),
        );
    }
    response
        .body(full(
            serde_json::json!({"name": "paged/app", "tags": page}).to_string(),
        ))
        .unwrap()
}

#[tokio::test]
async fn tag_lists_follow_link_pages() {
    let spec = SpecFront::start();
    let client = HttpRegistry::new(
        &spec.front.addr().to_string(),
        HttpOptions {
            tags_page_size: 10,
            ..with_credentials(USERNAME, PASSWORD)
        },
    )
    .unwrap();
    let tags = SourceRegistry::list_tags(&client, "paged/app")
        .await
        .unwrap();
    let expected: Vec<String> = (0..SPEC_TAGS).map(|i| format!("t{i:02}")).collect();
    assert_eq!(tags, expected);
    let pages = spec
        .front_seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(path, authorized)| path.ends_with("/tags/list") && *authorized)
        .count();
    assert_eq!(pages, 3);
}

#[tokio::test]
async fn redirected_downloads_do_not_take_the_credentials_along() {
    let spec = SpecFront::start();
    let client = HttpRegistry::new(
        &spec.front.addr().to_string(),
        with_credentials(USERNAME, PASSWORD),
    )
    .unwrap();
    let digest = Digest::of(STORED_BYTES);
    assert_eq!(
        read_blob(&client, "paged/app", &digest).await.unwrap(),
        STORED_BYTES
    );
    assert!(
        spec.front_seen
            .lock()
            .unwrap()
            .iter()
            .any(|(path, authorized)| path.contains("/blobs/") && *authorized),
        "the registry got the credentials"
    );
    assert_eq!(
        *spec.storage_auth.lock().unwrap(),
        [None],
        "object storage got no Authorization"
    );
}

#[tokio::test]
async fn transient_failures_are_retried_and_persistent_ones_reported() {
    let registry = Registry::start();
    let proxy = Proxy::start(&registry);
    let client = HttpRegistry::new(&proxy.host(), options()).unwrap();
    let image = Image::simple(8, 1, 1000);
    push_image(&client, "retry/app", "v1", &image).await;

    proxy.reset_counts();
    proxy.inject("GET", "/manifests/v1", Fault::Status(503), 2);
    let got = SourceRegistry::get_manifest(&client, "retry/app", "v1")
        .await
        .unwrap();
    assert_eq!(got.bytes, image.manifest.bytes);
    assert_eq!(proxy.count("GET", "/manifests/v1"), 3);

    proxy.inject("HEAD", "/blobs/", Fault::Status(429), 1);
    assert!(
        client
            .has_blob("retry/app", &image.config.digest)
            .await
            .unwrap()
    );

    proxy.reset_counts();
    proxy.inject("GET", "/tags/list", Fault::Status(500), 100);
    let e = SourceRegistry::list_tags(&client, "retry/app")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Network, "{e}");
    assert!(e.message().contains("injected fault 500"), "{e}");
    assert_eq!(
        proxy.count("GET", "/tags/list"),
        4,
        "one try and three retries"
    );

    proxy.inject("GET", "/manifests/v1", Fault::Status(429), 100);
    let e = SourceRegistry::get_manifest(&client, "retry/app", "v1")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RateLimited, "{e}");
}

#[tokio::test]
async fn a_failed_upload_leaves_nothing_and_a_new_one_succeeds() {
    let registry = Registry::start();
    let proxy = Proxy::start(&registry);
    let client = HttpRegistry::new(&proxy.host(), options()).unwrap();
    // Larger than what is buffered for retries, so the upload streams.
    let blob = Blob::random(9, 3 << 20);
    proxy.inject("PUT", "/blobs/uploads/", Fault::Status(500), 1);
    let e = push_blob(&client, "upload/app", &blob).await.unwrap_err();
    assert!(e.kind().is_temporary(), "{e}");
    assert!(!client.has_blob("upload/app", &blob.digest).await.unwrap());
    assert_eq!(
        proxy.count("DELETE", "/blobs/uploads/"),
        1,
        "the session is cancelled"
    );

    push_blob(&client, "upload/app", &blob).await.unwrap();
    assert_eq!(
        read_blob(&client, "upload/app", &blob.digest)
            .await
            .unwrap(),
        blob.bytes
    );
}

#[tokio::test]
async fn a_small_upload_restarts_in_a_new_session_by_itself() {
    let registry = Registry::start();
    let proxy = Proxy::start(&registry);
    let client = HttpRegistry::new(&proxy.host(), options()).unwrap();
    let blob = Blob::random(15, 10_000);
    proxy.inject("PUT", "/blobs/uploads/", Fault::Status(500), 1);
    push_blob(&client, "restart/app", &blob).await.unwrap();
    assert_eq!(
        proxy.count("POST", "/blobs/uploads/"),
        2,
        "a second session"
    );
    assert_eq!(
        proxy.count("DELETE", "/blobs/uploads/"),
        1,
        "the first is cancelled"
    );
    assert_eq!(
        read_blob(&client, "restart/app", &blob.digest)
            .await
            .unwrap(),
        blob.bytes
    );
}

#[tokio::test]
async fn requests_wait_for_a_slot_under_the_per_host_cap() {
    let registry = Registry::start();
    let client = HttpRegistry::new(
        &registry.host(),
        HttpOptions {
            max_concurrent_requests: 1,
            ..options()
        },
    )
    .unwrap();
    // Big enough to be streamed (small blobs are read whole, under the cap of small requests).
    let blob = Blob::random(16, 300_000);
    push_blob(&client, "cap/app", &blob).await.unwrap();
    let small = Blob::random(17, 10_000);
    push_blob(&client, "cap/app", &small).await.unwrap();
    // An open download holds the only slot until it is dropped.
    let download = client.get_blob("cap/app", &blob.digest).await.unwrap();
    // A small blob does not wait behind it.
    let read = tokio::time::timeout(
        Duration::from_secs(5),
        read_blob(&client, "cap/app", &small.digest),
    );
    assert_eq!(read.await.unwrap().unwrap(), small.bytes);
    let waiting = tokio::spawn({
        let client = client.clone();
        let digest = blob.digest.clone();
        async move { read_blob(&client, "cap/app", &digest).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "a second download ran beside the first"
    );
    drop(download);
    assert_eq!(waiting.await.unwrap().unwrap(), blob.bytes);
}

#[tokio::test]
async fn small_reads_do_not_wait_behind_blob_transfers() {
    let registry = Registry::start();
    let client = HttpRegistry::new(
        &registry.host(),
        HttpOptions {
            max_concurrent_requests: 1,
            ..options()
        },
    )
    .unwrap();
    let image = Image::simple(17, 1, 100_000);
    push_image(&client, "small/app", "v1", &image).await;
    let layer = &image.layers[0].digest;
    // The open download holds the only transfer slot; manifest and blob HEADs, manifest GETs
    // and tag lists have their own cap, so a run's planning is not queued behind its copies.
    let download = client.get_blob("small/app", layer).await.unwrap();
    let reads = async {
        let head = SourceRegistry::head_manifest(&client, "small/app", "v1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(head.digest, image.manifest.digest);
        let manifest = SourceRegistry::get_manifest(&client, "small/app", "v1")
            .await
            .unwrap();
        assert_eq!(manifest.bytes, image.manifest.bytes);
        assert!(client.has_blob("small/app", layer).await.unwrap());
        assert_eq!(
            SourceRegistry::list_tags(&client, "small/app")
                .await
                .unwrap(),
            ["v1"]
        );
    };
    // Only a guard against hanging forever on the transfer slot; nothing here is timed.
    tokio::time::timeout(Duration::from_secs(60), reads)
        .await
        .expect("small reads waited for the download's slot");
    drop(download);
}

#[tokio::test]
async fn chunked_uploads_verify_the_content_too() {
    let registry = Registry::start();
    let proxy = Proxy::start(&registry);
    let client = HttpRegistry::new(
        &proxy.host(),
        HttpOptions {
            upload_chunk_size: Some(256 << 10),
            ..options()
        },
    )
    .unwrap();
    let blob = Blob::random(10, (3 << 19) + 17);
    push_blob(&client, "chunks/app", &blob).await.unwrap();
    assert_eq!(proxy.count("PATCH", "/blobs/uploads/"), 7);
    assert_eq!(
        read_blob(&client, "chunks/app", &blob.digest)
            .await
            .unwrap(),
        blob.bytes
    );

    let claimed = Blob::random(11, 1 << 20);
    let wrong = Blob::random(12, 1 << 20);
    let e = client
        .push_blob(
            "chunks/app",
            &claimed.digest,
            claimed.size(),
            stream_of(wrong.bytes.clone()),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DigestMismatch, "{e}");
    assert!(
        !client
            .has_blob("chunks/app", &claimed.digest)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn a_streamed_corrupt_blob_is_refused_and_not_stored() {
    let registry = Registry::start();
    let client = HttpRegistry::new(&registry.host(), options()).unwrap();
    let claimed = Blob::random(13, 4 << 20);
    let mut wrong = claimed.bytes.to_vec();
    let last = wrong.len() - 1;
    wrong[last] ^= 1;
    let e = client
        .push_blob(
            "corrupt/app",
            &claimed.digest,
            claimed.size(),
            stream_of(wrong.into()),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DigestMismatch, "{e}");
    assert!(
        !client
            .has_blob("corrupt/app", &claimed.digest)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn interrupted_and_stalled_downloads_fail() {
    let registry = Registry::start();
    let proxy = Proxy::start(&registry);
    let client = HttpRegistry::new(&proxy.host(), options()).unwrap();
    // Only the stalled download runs under the short stall timeout, so a slow machine does not
    // time out the other requests.
    let impatient = HttpRegistry::new(
        &proxy.host(),
        HttpOptions {
            stall_timeout: Duration::from_secs(2),
            ..options()
        },
    )
    .unwrap();
    let blob = Blob::random(14, 200_000);
    push_blob(&client, "cut/app", &blob).await.unwrap();

    proxy.inject("GET", "/blobs/sha256:", Fault::CutBody { after: 1000 }, 1);
    let e = read_blob(&client, "cut/app", &blob.digest)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Network, "{e}");

    proxy.inject(
        "GET",
        "/blobs/sha256:",
        Fault::StallBody {
            after: 1000,
            pause: Duration::from_secs(8),
        },
        1,
    );
    let e = read_blob(&impatient, "cut/app", &blob.digest)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");

    // Nothing sticks: the next download is whole.
    assert_eq!(
        read_blob(&client, "cut/app", &blob.digest).await.unwrap(),
        blob.bytes
    );
}

#[tokio::test]
async fn credentials_come_from_an_auth_file() {
    let registry = Registry::builder().basic_auth().start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("auth.json");
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USERNAME}:{PASSWORD}"));
    std::fs::write(
        &file,
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#,
            registry.host()
        ),
    )
    .unwrap();
    let client = HttpRegistry::new(
        &registry.host(),
        HttpOptions {
            auth_file: Some(file.clone()),
            ..options()
        },
    )
    .unwrap();
    let image = Image::simple(19, 1, 100);
    push_image(&client, "authfile/app", "v1", &image).await;

    // Explicit credentials win over the file.
    let explicit = HttpRegistry::new(
        &registry.host(),
        HttpOptions {
            auth_file: Some(file),
            ..with_credentials(USERNAME, "explicitly-wrong")
        },
    )
    .unwrap();
    let e = SourceRegistry::list_tags(&explicit, "authfile/app")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
}

/// A forward HTTP proxy on loopback that records the absolute URLs it is asked for.
fn forward_proxy() -> (BackgroundServer, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let server = BackgroundServer::start("forward-proxy", move |req: Request<Incoming>| {
        log.lock().unwrap().push(req.uri().to_string());
        let client = client.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = http_body_util::BodyExt::collect(body)
                .await
                .unwrap()
                .to_bytes();
            let mut upstream = client.request(parts.method, parts.uri.to_string());
            for (name, value) in &parts.headers {
                if !matches!(name.as_str(), "host" | "proxy-connection" | "connection") {
                    upstream = upstream.header(name, value);
                }
            }
            let answer = upstream.body(body).send().await.unwrap();
            let mut response = Response::builder().status(answer.status());
            for (name, value) in answer.headers() {
                if !matches!(name.as_str(), "transfer-encoding" | "connection") {
                    response = response.header(name, value);
                }
            }
            response.body(full(answer.bytes().await.unwrap())).unwrap()
        }
    });
    (server, seen)
}

#[tokio::test]
async fn requests_go_through_the_configured_proxy_unless_excluded() {
    let registry = Registry::start();
    let (proxy, seen) = forward_proxy();
    let proxied = HttpRegistry::new(
        &registry.host(),
        HttpOptions {
            proxy: regmirror::ProxyConfig {
                http_proxy: Some(format!("http://{}", proxy.addr())),
                ..regmirror::ProxyConfig::default()
            },
            ..options()
        },
    )
    .unwrap();
    let image = Image::simple(20, 1, 100);
    push_image(&proxied, "proxied/app", "v1", &image).await;
    let through = seen.lock().unwrap().clone();
    assert!(
        through.iter().any(|u| u.starts_with(&format!(
            "http://{}/v2/proxied/app/manifests/v1",
            registry.host()
        ))),
        "{through:?}"
    );

    let excluded = HttpRegistry::new(
        &registry.host(),
        HttpOptions {
            proxy: regmirror::ProxyConfig {
                http_proxy: Some(format!("http://{}", proxy.addr())),
                no_proxy: Some("example.com, 127.0.0.1".into()),
                ..regmirror::ProxyConfig::default()
            },
            ..options()
        },
    )
    .unwrap();
    let before = seen.lock().unwrap().len();
    assert_eq!(
        SourceRegistry::list_tags(&excluded, "proxied/app")
            .await
            .unwrap(),
        ["v1"]
    );
    assert_eq!(
        seen.lock().unwrap().len(),
        before,
        "no_proxy bypasses the proxy"
    );
}

/// A log sink for the test's thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_at_trace_level_hold_no_credentials_or_tokens() {
    use tracing_subscriber::util::SubscriberInitExt as _;
    let captured = Captured::default();
    let sink = captured.clone();
    let _guard = tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::TRACE)
        .with_writer(move || sink.clone())
        .finish()
        .set_default();

    let basic = Registry::builder().basic_auth().start();
    let proxy = Proxy::start(&basic);
    let client = HttpRegistry::new(&proxy.host(), with_credentials(USERNAME, PASSWORD)).unwrap();
    proxy.inject("HEAD", "/blobs/", Fault::Status(503), 1);
    push_image(&client, "logs/app", "v1", &Image::simple(21, 1, 100)).await;
    let wrong_password = "l0gged-n0where-pw";
    let wrong =
        HttpRegistry::new(&proxy.host(), with_credentials(USERNAME, wrong_password)).unwrap();
    SourceRegistry::list_tags(&wrong, "logs/app")
        .await
        .unwrap_err();

    let token = Registry::builder().token_auth(false).start();
    let client = HttpRegistry::new(&token.host(), with_credentials(USERNAME, PASSWORD)).unwrap();
    push_image(&client, "logs/app", "v1", &Image::simple(22, 1, 100)).await;

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("retrying"), "the retry was logged:\n{text}");
    let basic_value =
        base64::engine::general_purpose::STANDARD.encode(format!("{USERNAME}:{PASSWORD}"));
    for secret in [PASSWORD, wrong_password, basic_value.as_str(), "Bearer ey"] {
        assert!(!text.contains(secret), "{secret:?} in the logs:\n{text}");
    }
}

#[tokio::test]
async fn identity_tokens_use_the_oauth2_refresh_grant() {
    let forms = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&forms);
    let issuer = BackgroundServer::start("oauth", move |req: Request<Incoming>| {
        let log = Arc::clone(&log);
        async move {
            let method = req.method().to_string();
            let body = http_body_util::BodyExt::collect(req.into_body())
                .await
                .unwrap()
                .to_bytes();
            let form: std::collections::HashMap<String, String> =
                url::form_urlencoded::parse(&body).into_owned().collect();
            let granted = method == "POST"
                && form.get("grant_type").map(String::as_str) == Some("refresh_token")
                && form.get("refresh_token").map(String::as_str) == Some("refresh-me");
            log.lock().unwrap().push((method, form));
            if granted {
                Response::new(full(r#"{"access_token":"access-xyz","expires_in":300}"#))
            } else {
                Response::builder().status(401).body(full("{}")).unwrap()
            }
        }
    });
    let realm = format!("http://{}/token", issuer.addr());
    let front = BackgroundServer::start("bearer-front", move |req: Request<Incoming>| {
        let ok = req
            .headers()
            .get(AUTHORIZATION)
            .is_some_and(|v| v.to_str().unwrap() == "Bearer access-xyz");
        let challenge = format!(r#"Bearer realm="{realm}",service="svc""#);
        async move {
            if !ok {
                return Response::builder()
                    .status(401)
                    .header(WWW_AUTHENTICATE, challenge)
                    .body(full("{}"))
                    .unwrap();
            }
            Response::builder()
                .header(CONTENT_TYPE, "application/json")
                .body(full(r#"{"name":"id/app","tags":["a"]}"#))
                .unwrap()
        }
    });
    let client = HttpRegistry::new(
        &front.addr().to_string(),
        with_credentials("<token>", "refresh-me"),
    )
    .unwrap();
    assert_eq!(
        SourceRegistry::list_tags(&client, "id/app").await.unwrap(),
        ["a"]
    );
    let forms = forms.lock().unwrap();
    let (method, form) = &forms[0];
    assert_eq!(method, "POST");
    assert_eq!(form["service"], "svc");
    assert_eq!(form["scope"], "repository:id/app:pull");
}

#[tokio::test]
async fn deleting_a_tag_on_distribution_leaves_no_placeholder_behind() {
    let registry = Registry::start();
    let proxy = Proxy::start(&registry);
    let client = HttpRegistry::new(&proxy.host(), options()).unwrap();
    let image = Image::simple(23, 1, 100);
    push_image(&client, "del/app", "old", &image).await;
    client
        .push_manifest("del/app", "keep", &image.manifest)
        .await
        .unwrap();
    proxy.reset_counts();
    client.delete_tag("del/app", "old").await.unwrap();

    // Distribution 2.8 refuses DELETE by tag; deletes by digest then remove exactly the probe and
    // the placeholder the tag was moved onto.
    assert_eq!(proxy.count("DELETE", "/manifests/old"), 1);
    let deleted: Vec<String> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE" && r.path.contains("/manifests/sha256:"))
        .map(|r| r.path.rsplit('/').next().unwrap().to_owned())
        .collect();
    assert_eq!(deleted.len(), 2, "{deleted:?}");
    for digest in &deleted {
        assert_ne!(digest, image.manifest.digest.as_str());
        assert!(
            DestRegistry::head_manifest(&client, "del/app", digest)
                .await
                .unwrap()
                .is_none()
        );
    }
    assert_eq!(
        DestRegistry::list_tags(&client, "del/app").await.unwrap(),
        ["keep"]
    );
    let kept = SourceRegistry::get_manifest(&client, "del/app", "keep")
        .await
        .unwrap();
    assert_eq!(kept.bytes, image.manifest.bytes);
}

#[tokio::test]
async fn a_refused_placeholder_delete_names_the_tag_puts_it_back_and_cleans_up() {
    let registry = Registry::start();
    let proxy = Proxy::start(&registry);
    let client = HttpRegistry::new(&proxy.host(), options()).unwrap();
    let image = Image::simple(25, 1, 100);
    push_image(&client, "del/app", "old", &image).await;
    // The probe is deleted (the header changes nothing), the placeholder is refused once.
    proxy.inject(
        "DELETE",
        "/manifests/sha256:",
        Fault::Header {
            name: "x-passed".into(),
            value: "1".into(),
        },
        1,
    );
    proxy.inject("DELETE", "/manifests/sha256:", Fault::Status(403), 1);
    proxy.reset_counts();
    let e = client.delete_tag("del/app", "old").await.unwrap_err();

    assert_eq!(e.kind(), ErrorKind::Forbidden, "{e}");
    let message = e.to_string();
    assert!(message.contains("delete tag del/app:old"), "{message}");
    assert!(
        !message.contains("sha256:"),
        "no placeholder URL: {message}"
    );
    let old = SourceRegistry::get_manifest(&client, "del/app", "old")
        .await
        .unwrap();
    assert_eq!(old.bytes, image.manifest.bytes, "the tag is put back");
    // Probe, refused placeholder, placeholder again once untagged: nothing is left behind.
    let deleted: Vec<String> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE" && r.path.contains("/manifests/sha256:"))
        .map(|r| r.path.rsplit('/').next().unwrap().to_owned())
        .collect();
    assert_eq!(deleted.len(), 3, "{deleted:?}");
    assert_eq!(deleted[1], deleted[2]);
    for digest in &deleted {
        assert!(
            DestRegistry::head_manifest(&client, "del/app", digest)
                .await
                .unwrap()
                .is_none()
        );
    }
}

#[tokio::test]
async fn an_upload_whose_source_stalls_times_out_and_is_abandoned() {
    let registry = Registry::start();
    let proxy = Proxy::start(&registry);
    let client = HttpRegistry::new(
        &proxy.host(),
        HttpOptions {
            stall_timeout: Duration::from_secs(1),
            ..options()
        },
    )
    .unwrap();
    let blob = Blob::random(24, 3 << 20);
    // The first MiB arrives, then the source goes silent.
    let first = blob.bytes.slice(..1 << 20);
    let stalled: BlobStream = futures::stream::once(async move { Ok(first) })
        .chain(futures::stream::pending())
        .boxed();
    let e = client
        .push_blob("stall/app", &blob.digest, blob.size(), stalled)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert_eq!(
        proxy.count("DELETE", "/blobs/uploads/"),
        1,
        "the session is cancelled"
    );
    assert!(!client.has_blob("stall/app", &blob.digest).await.unwrap());
}

/// A TLS registry behind a counting [`TcpProxy`], seeded with one image under `tags` tags in
/// `repo`, and a client (TLS verified) that reaches it through the proxy.
async fn counted_tls(registry: &Registry, repo: &str, tags: usize) -> (TcpProxy, HttpRegistry) {
    let ca = registry.ca_pem().expect("a TLS registry").to_owned();
    let verified = HttpOptions {
        tls_verify: true,
        ca_certs: vec![ca],
        ..options()
    };
    let direct = HttpRegistry::new(&registry.host(), verified.clone()).unwrap();
    let image = Image::simple(17, 1, 100);
    push_image(&direct, repo, "t0", &image).await;
    for tag in 1..tags {
        direct
            .push_manifest(repo, &format!("t{tag}"), &image.manifest)
            .await
            .unwrap();
    }
    let proxy = TcpProxy::start(([127, 0, 0, 1], registry.port()).into());
    let client = HttpRegistry::new(&proxy.addr().to_string(), verified).unwrap();
    (proxy, client)
}

/// The tag list, then a HEAD of every tag at once (a no-op run's planning burst).
async fn list_then_burst(client: &HttpRegistry, repo: &str) -> usize {
    let tags = SourceRegistry::list_tags(client, repo).await.unwrap();
    let heads = tags
        .iter()
        .map(|tag| SourceRegistry::head_manifest(client, repo, tag));
    for head in futures::future::join_all(heads).await {
        assert!(head.unwrap().is_some());
    }
    tags.len()
}

#[tokio::test]
async fn a_registry_offering_http2_serves_a_burst_on_one_connection() {
    let registry = Registry::builder().tls().start();
    let (proxy, client) = counted_tls(&registry, "h2/app", 12).await;
    assert_eq!(list_then_burst(&client, "h2/app").await, 12);
    // ALPN chose h2: the burst is multiplexed on the tag list's connection.
    assert_eq!(proxy.connections(), 1);
    assert_eq!(proxy.tls_handshakes(), (1, 0));
}

#[tokio::test]
async fn without_http2_a_burst_falls_back_to_http1_and_resumes_tls_sessions() {
    let registry = Registry::builder().http2_disabled().start();
    let (proxy, client) = counted_tls(&registry, "h1/app", 12).await;
    assert_eq!(list_then_burst(&client, "h1/app").await, 12);
    // HTTP/1.1: one request per connection at a time, so the burst opens more of them, and
    // they resume the session the first one got instead of each doing a full handshake.
    let connections = proxy.connections();
    let (full, resumed) = proxy.tls_handshakes();
    assert!(connections > 1, "{connections} connections");
    assert_eq!(
        full + resumed,
        connections,
        "{full} full, {resumed} resumed"
    );
    assert!(resumed >= 1, "{full} full, {resumed} resumed");
}

#[tokio::test]
async fn under_tls_verification_the_first_request_learns_the_challenge_without_a_ping() {
    let registry = HostileRegistry::builder(Mode::Honest)
        .tls()
        .token_auth()
        .start();
    let image = Image::simple(5, 1, 100);
    registry.put_image("quiet/app", "v1", &image);
    for tag in ["v2", "v3", "v4"] {
        registry.put_tag("quiet/app", tag, &image.manifest.digest);
    }
    let client = registry.client();
    let tags = SourceRegistry::list_tags(&client, "quiet/app")
        .await
        .unwrap();
    assert_eq!(tags.len(), 4);
    let seen = registry.requests();
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    // No `GET /v2/`: the tag list's 401 carried the challenge; the token, then the list again.
    assert!(!paths.contains(&"/v2/"), "{paths:?}");
    assert_eq!(paths.len(), 3, "{paths:?}");
    assert!(paths[1].starts_with("/token"), "{paths:?}");

    // A fresh client whose first requests are a burst: they are refused together, and one
    // token serves them all.
    let fresh = registry.client();
    let before = registry.requests().len();
    let heads = tags
        .iter()
        .map(|tag| SourceRegistry::head_manifest(&fresh, "quiet/app", tag));
    for head in futures::future::join_all(heads).await {
        assert!(head.unwrap().is_some());
    }
    let burst = &registry.requests()[before..];
    let tokens = burst
        .iter()
        .filter(|s| s.path.starts_with("/token"))
        .count();
    assert_eq!(tokens, 1, "{burst:?}");
    assert!(burst.iter().all(|s| s.path != "/v2/"), "{burst:?}");
}
