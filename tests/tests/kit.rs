//! The test kit itself: every registry variant starts, accepts seeded images and enforces its
//! auth; the proxy counts and injects faults.

use regmirror_tests::image::images_sharing_layers;
use regmirror_tests::proxy::Fault;
use regmirror_tests::{Blob, Flavor, Image, Index, Proxy, Registry, Seeder};

async fn seed_and_read_back(registry: &Registry) {
    let seeder = registry.seeder();
    let image = Image::simple(1, 2, 1000);
    let digest = seeder.push_image("kit/one", "v1", &image).await;
    assert_eq!(digest, image.manifest.digest);
    assert_eq!(seeder.tags("kit/one").await, ["v1"]);
    let bytes = seeder
        .manifest("kit/one", "v1")
        .await
        .expect("tag v1 exists");
    assert_eq!(bytes, image.manifest.bytes);
    let index = Index::two_platforms(Flavor::Docker, 7, 500);
    seeder.push_index("kit/multi", "latest", &index).await;
    let bytes = seeder
        .manifest("kit/multi", "latest")
        .await
        .expect("tag latest exists");
    assert_eq!(bytes, index.manifest.bytes);
}

#[tokio::test]
async fn plain_registry_accepts_seeded_images() {
    let registry = Registry::start();
    assert!(registry.host().starts_with("127.0.0.1:"));
    seed_and_read_back(&registry).await;
}

#[tokio::test]
async fn tls_registry_serves_with_the_generated_ca() {
    let registry = Registry::builder().tls().start();
    assert!(registry.base_url().starts_with("https://"));
    assert!(registry.ca_pem().expect("TLS variant has a CA").exists());
    seed_and_read_back(&registry).await;
}

#[tokio::test]
async fn basic_auth_registry_refuses_anonymous_and_wrong_password() {
    let registry = Registry::builder().basic_auth().start();
    seed_and_read_back(&registry).await;
    let debug = format!("{:?}", registry.seeder());
    assert!(!debug.contains(regmirror_tests::PASSWORD), "{debug}");
    let url = format!("{}/v2/kit/one/tags/list", registry.base_url());
    let client = reqwest::Client::new();
    let anonymous = client.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let wrong = client
        .get(&url)
        .basic_auth(regmirror_tests::USERNAME, Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
}

#[tokio::test]
async fn token_registry_validates_issued_tokens() {
    let registry = Registry::builder().token_auth(true).start();
    seed_and_read_back(&registry).await;
    for debug in [format!("{registry:?}"), format!("{:?}", registry.seeder())] {
        assert!(!debug.contains(regmirror_tests::PASSWORD), "{debug}");
        assert!(!debug.contains("PRIVATE KEY"), "{debug}");
    }
    let client = reqwest::Client::new();
    let url = format!("{}/v2/kit/one/tags/list", registry.base_url());
    let challenge = client.get(&url).send().await.unwrap();
    assert_eq!(challenge.status(), 401);
    let header = challenge.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(header.starts_with("Bearer realm="), "{header}");
    let realm = registry.token_server().unwrap().realm();
    // Anonymous pull is granted; anonymous push is not.
    let token: serde_json::Value = client
        .get(format!(
            "{realm}?service=regmirror-test-registry&scope=repository:kit/one:pull,push"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bearer = token["token"].as_str().unwrap();
    assert_eq!(token["access_token"], token["token"]);
    let listed = client.get(&url).bearer_auth(bearer).send().await.unwrap();
    assert_eq!(listed.status(), 200, "{}", listed.text().await.unwrap());
    let push = client
        .post(format!("{}/v2/kit/one/blobs/uploads/", registry.base_url()))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(push.status(), 401);
    // Wrong credentials are refused by the issuer.
    let refused = client
        .get(format!(
            "{realm}?service=regmirror-test-registry&scope=repository:kit/one:pull"
        ))
        .basic_auth(regmirror_tests::USERNAME, Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    // The reader gets pull but not push.
    let token: serde_json::Value = client
        .get(format!(
            "{realm}?service=regmirror-test-registry&scope=repository:kit/one:pull,push"
        ))
        .basic_auth(
            regmirror_tests::READER_USERNAME,
            Some(regmirror_tests::READER_PASSWORD),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let claims = token["token"].as_str().unwrap().split('.').nth(1).unwrap();
    use base64::Engine as _;
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["access"][0]["actions"], serde_json::json!(["pull"]));
    assert!(registry.token_server().unwrap().requests() >= 3);
}

#[tokio::test]
async fn proxy_counts_requests_and_injects_faults() {
    let registry = Registry::start();
    let proxy = Proxy::start(&registry);
    let through = Seeder::new(
        &proxy.base_url(),
        None,
        regmirror_tests::seed::SeedAuth::None,
    );
    let shared = [Blob::random(1, 2048), Blob::random(2, 2048)];
    let images = images_sharing_layers(3, &shared);
    for (i, image) in images.iter().enumerate() {
        through
            .push_image("kit/shared", &format!("t{i}"), image)
            .await;
    }
    // 3 configs + 2 shared layers were uploaded once each, through rewritten Locations.
    assert_eq!(proxy.count("PUT", "/blobs/uploads/"), 5);
    assert_eq!(proxy.count("POST", "/blobs/uploads/"), 5);
    assert_eq!(
        registry.seeder().tags("kit/shared").await,
        ["t0", "t1", "t2"]
    );

    let blob_url = format!(
        "{}/v2/kit/shared/blobs/{}",
        proxy.base_url(),
        shared[0].digest
    );
    proxy.inject("GET", "/blobs/sha256:", Fault::Status(503), 1);
    let client = reqwest::Client::new();
    assert_eq!(client.get(&blob_url).send().await.unwrap().status(), 503);
    let ok = client.get(&blob_url).send().await.unwrap();
    assert_eq!(ok.bytes().await.unwrap(), shared[0].bytes);

    proxy.inject("GET", "/blobs/sha256:", Fault::CutBody { after: 100 }, 1);
    let cut = client.get(&blob_url).send().await.unwrap();
    assert_eq!(cut.status(), 200);
    assert!(cut.bytes().await.is_err(), "a cut body must fail to read");
    assert_eq!(proxy.count("GET", "/blobs/sha256:"), 3);

    proxy.inject(
        "GET",
        "/blobs/sha256:",
        Fault::StallBody {
            after: 100,
            pause: std::time::Duration::from_secs(3),
        },
        1,
    );
    let impatient = reqwest::Client::builder()
        .read_timeout(std::time::Duration::from_millis(300))
        .build()
        .unwrap();
    let stalled = impatient.get(&blob_url).send().await.unwrap();
    assert!(
        stalled.bytes().await.is_err(),
        "a stalled body must time out"
    );
    let ok = impatient.get(&blob_url).send().await.unwrap();
    assert_eq!(ok.bytes().await.unwrap(), shared[0].bytes);

    let canned = bytes::Bytes::from_static(br#"{"schemaVersion":1,"name":"kit/shared"}"#);
    proxy.inject(
        "GET",
        "/manifests/t0",
        Fault::Respond {
            status: 200,
            content_type: "application/vnd.docker.distribution.manifest.v1+prettyjws".into(),
            body: canned.clone(),
        },
        1,
    );
    let url = format!("{}/v2/kit/shared/manifests/t0", proxy.base_url());
    let served = client.get(&url).send().await.unwrap();
    assert_eq!(
        served.headers()["docker-content-digest"],
        regmirror::Digest::of(&canned).as_str()
    );
    assert_eq!(served.bytes().await.unwrap(), canned);
    let real = client
        .get(&url)
        .header("accept", regmirror::registry::media_types::ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(real.bytes().await.unwrap(), images[0].manifest.bytes);
}

#[tokio::test]
async fn corrupt_and_removed_blobs_are_served_wrong() {
    let registry = Registry::start();
    let seeder = registry.seeder();
    let image = Image::simple(3, 2, 4096);
    seeder.push_image("kit/bad", "v1", &image).await;
    let layer = &image.layers[0];
    registry.corrupt_blob(&layer.digest);
    let url = format!("{}/v2/kit/bad/blobs/{}", registry.base_url(), layer.digest);
    let served = reqwest::get(&url).await.unwrap().bytes().await.unwrap();
    assert_eq!(served.len(), layer.bytes.len());
    assert_ne!(served, layer.bytes);
    registry.remove_blob(&image.layers[1].digest);
    let url = format!(
        "{}/v2/kit/bad/blobs/{}",
        registry.base_url(),
        image.layers[1].digest
    );
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 404);
}

#[tokio::test]
async fn the_hostile_registry_serves_honestly_until_told_otherwise() {
    use regmirror::SourceRegistry as _;
    use regmirror_tests::hostile::{HOSTILE_TOKEN, HostileRegistry, Mode};

    let honest = HostileRegistry::builder(Mode::Honest).token_auth().start();
    let image = Image::simple(1, 1, 100);
    honest.put_image("kit/app", "v1", &image);
    let client = honest.client();
    assert_eq!(client.list_tags("kit/app").await.unwrap(), ["v1"]);
    let manifest = client.get_manifest("kit/app", "v1").await.unwrap();
    assert_eq!(manifest.bytes, image.manifest.bytes);
    let bearer = format!("Bearer {HOSTILE_TOKEN}");
    assert!(
        honest
            .requests()
            .iter()
            .any(|s| s.authorization.as_deref() == Some(bearer.as_str()))
    );

    let echo = HostileRegistry::builder(Mode::EchoSecrets {
        status: 500,
        on: "/".into(),
    })
    .basic_auth()
    .start();
    echo.put_image("kit/app", "v1", &image);
    let answer = reqwest::Client::new()
        .get(format!("{}/v2/kit/app/manifests/v1", echo.base_url()))
        .basic_auth(regmirror_tests::USERNAME, Some(regmirror_tests::PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 500);
    let body = answer.text().await.unwrap();
    assert!(body.contains(regmirror_tests::PASSWORD), "{body}");
    assert!(
        body.contains(&regmirror_tests::hostile::base64_login()),
        "{body}"
    );
}
