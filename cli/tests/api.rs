//! The worker's HTTP endpoint (`[api]`), driven from outside: a real `regmirror worker` process,
//! real registries and PostgreSQL, requests from a real HTTP client; `/metrics` read by the
//! Python `prometheus_client` parser and the status page by headless Chromium.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use regmirror_tests::image::{Flavor, Index};
use regmirror_tests::proxy::{Fault, Proxy};
use regmirror_tests::registry::{Registry, free_port};
use regmirror_tests::tcp_proxy::TcpProxy;
use regmirror_tests::tls::ServerTls;
use reqwest::StatusCode;
use serde_json::{Value, json};

mod common;
use common::command;

const TOKEN: &str = "api-test-token-0123456789";

/// A running `regmirror worker` with its API on a loopback port; SIGTERM and wait on drop.
struct Worker {
    child: Child,
    base: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Worker {
    /// Start a worker whose config is `state` plus `extra` (mirrors, destination...), with the
    /// API on a free port and the token in a file.
    async fn start(state: &str, extra: &str) -> Worker {
        Worker::start_with(state, extra, None, "1s").await
    }

    /// [`Worker::start`], serving HTTPS with `tls`'s certificate when given, polling every
    /// `poll`.
    async fn start_with(state: &str, extra: &str, tls: Option<&ServerTls>, poll: &str) -> Worker {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
        let port = free_port();
        let config = dir.path().join("regmirror.toml");
        let tls_keys = tls.map_or_else(String::new, |t| {
            format!(
                "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
                t.cert_pem.display(),
                t.key_pem.display()
            )
        });
        std::fs::write(
            &config,
            format!(
                "state = \"{state}\"\npoll_interval = \"{poll}\"\nlease = \"6s\"\n\
                 state_query_timeout = \"1s\"\nstate_checkout_timeout = \"1s\"\n\
                 log_format = \"json\"\n{extra}\n\
                 [api]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = \"token\"\n{tls_keys}"
            ),
        )
        .unwrap();
        let log = dir.path().join("worker.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = command(&["worker", "--config", config.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("starting the worker");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let worker = Worker {
            child,
            base: format!("{scheme}://127.0.0.1:{port}"),
            log,
            _dir: dir,
        };
        let client = http_client(tls);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let up = client
                .get(worker.url("/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK);
            if up {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the API did not come up: {}",
                worker.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        worker
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client that trusts `tls`'s CA when given.
fn http_client(tls: Option<&ServerTls>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(10));
    if let Some(tls) = tls {
        let ca = std::fs::read(&tls.ca_pem).unwrap();
        builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap());
    }
    builder.build().unwrap()
}

/// An HTTP client for the API: `call(method, path, body)` with the token.
struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(worker: &Worker) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: worker.base.clone(),
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the API answers");
        let status = response.status();
        let text = response.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    async fn text(&self, path: &str) -> (StatusCode, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("the API answers");
        (response.status(), response.text().await.unwrap())
    }

    async fn mirror(&self, id: &str) -> Value {
        let (status, body) = self
            .call("GET", &format!("/api/v1/repository/{id}/mirror"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// Wait until the mirror's `sync_status` is `want`.
    async fn wait_status(&self, id: &str, want: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mirror = self.mirror(id).await;
            if mirror["sync_status"] == want {
                return mirror;
            }
            assert!(
                Instant::now() < deadline,
                "{id} never reached {want}: {mirror}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Push a two-platform index under each tag (content of its own per tag name).
async fn seed(registry: &Registry, repo: &str, tags: &[&str]) {
    let seeder = registry.seeder();
    for tag in tags {
        let seed = tag
            .bytes()
            .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        let index = Index::two_platforms(Flavor::Oci, seed, 4096);
        seeder.push_index(repo, tag, &index).await;
    }
}

async fn dest_tags(registry: &Registry, repo: &str) -> Vec<String> {
    registry
        .seeder()
        .tag_digests(repo)
        .await
        .into_keys()
        .collect()
}

fn destination(dest: &Registry) -> String {
    format!(
        "[destination]\nregistry = \"{}\"\ntls_verify = false\n",
        dest.host()
    )
}

fn postgres_state() -> (std::sync::Arc<regmirror_tests::Postgres>, String) {
    let pg = regmirror_tests::Postgres::shared();
    let conn = pg.create_database();
    let db = conn
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("dbname="))
        .expect("the kit names the database")
        .to_owned();
    (pg, db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quay_mirror_api_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let state = format!("sqlite:{}", dir.path().join("state.db").display());
    quay_mirror_api(&state).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quay_mirror_api_on_postgresql() {
    let (pg, db) = postgres_state();
    let state = format!("postgres://postgres@127.0.0.1:{}/{db}", pg.port());
    quay_mirror_api(&state).await;
}

/// What a Quay script does, against a worker on `state`: add a mirror with POST, watch it sync
/// with GET, sync-now, cancel (pending and running), edit with PUT, read the usage log and the
/// metrics, delete; with Quay's error codes along the way.
async fn quay_mirror_api(state: &str) {
    let source = Registry::start();
    let dest = Registry::start();
    seed(&source, "lib/app", &["v1", "v2", "other"]).await;
    // The source is reached through a proxy that can slow it down (to catch a run in SYNCING).
    let slow = Proxy::start(&source);
    // Polls 3 s apart (±20 %) leave time to catch a mirror in SYNC_NOW right after a run.
    let worker = Worker::start_with(state, &destination(&dest), None, "3s").await;
    let api = Client::new(&worker);
    let http = reqwest::Client::new();
    let path = "/api/v1/repository/mirror/app/mirror";

    // Authentication: none, a wrong token, a wrong scheme are refused; health checks are open.
    let anonymous = http.get(worker.url(path)).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(anonymous.headers().contains_key("www-authenticate"));
    for header in [
        "Bearer wrong-token".to_owned(),
        format!("Bearer {TOKEN}x"),
        format!("Token {TOKEN}"),
    ] {
        let refused = http
            .get(worker.url(path))
            .header("authorization", header)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    }
    for open in ["/healthz", "/readyz"] {
        let r = http.get(worker.url(open)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{open}");
    }
    let metrics = http.get(worker.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), StatusCode::UNAUTHORIZED);

    // No mirror yet.
    let (status, body) = api.call("GET", path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error_type"], "not_found");
    let (status, _) = api
        .call(
            "POST",
            "/api/v1/repository/mirror/app/mirror/sync-now",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let create = json!({
        "is_enabled": true,
        "external_reference": format!("{}/lib/app", slow.host()),
        "external_registry_username": null,
        "external_registry_password": null,
        "external_registry_config": {"verify_tls": false, "unsigned_images": false,
                                     "proxy": {"http_proxy": null, "https_proxy": null, "no_proxy": null}},
        "sync_interval": 3600,
        "sync_start_date": "2020-01-01T00:00:00Z",
        "robot_username": null,
        "root_rule": {"rule_kind": "tag_glob_csv", "rule_value": ["v*"]},
    });
    // Quay's checks: required fields, the rule kind, the date format; and the core's: patterns,
    // the interval, the reference.
    let mut missing = create.clone();
    missing.as_object_mut().unwrap().remove("root_rule");
    let with = |key: &str, value: Value| {
        let mut body = create.clone();
        body[key] = value;
        body
    };
    for (bad, says) in [
        (missing, "root_rule"),
        (
            with(
                "root_rule",
                json!({"rule_kind": "regex", "rule_value": ["v*"]}),
            ),
            "tag_glob_csv",
        ),
        (
            with("sync_start_date", json!("yesterday")),
            "sync_start_date",
        ),
        (
            with(
                "root_rule",
                json!({"rule_kind": "tag_glob_csv", "rule_value": ["v[1"]}),
            ),
            "v[1",
        ),
        (with("sync_interval", json!(0)), "interval"),
        (with("sync_interval", json!("1h")), "sync_interval"),
        (
            with("external_reference", json!("https://quay.io/x")),
            "external_reference",
        ),
    ] {
        let (status, body) = api.call("POST", path, Some(bad.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains(says),
            "{says}: {body}"
        );
    }
    let (status, body) = api.call("POST", path, Some(create.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = api.call("POST", path, Some(create.clone())).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // Due since 2020: the worker's next poll runs it.
    let synced = api.wait_status("mirror/app", "SUCCESS").await;
    assert_eq!(synced["mirror_type"], "PULL");
    assert_eq!(synced["is_enabled"], true);
    assert_eq!(synced["sync_interval"], 3600);
    assert_eq!(synced["sync_retries_remaining"], 3);
    assert_eq!(
        synced["root_rule"],
        json!({"rule_kind": "tag_glob_csv", "rule_value": ["v*"]})
    );
    assert_eq!(synced["external_registry_config"]["verify_tls"], false);
    assert_eq!(synced["sync_expiration_date"], Value::Null);
    // The next start is on the hourly grid from the given start, in Quay's format.
    let next = synced["sync_start_date"].as_str().unwrap();
    assert!(next.ends_with(":00:00Z") && next.len() == 20, "{next}");
    assert_eq!(dest_tags(&dest, "mirror/app").await, ["v1", "v2"]);
    let (status, health) = api
        .call(
            "GET",
            "/api/v1/repository/mirror/health?detailed=true",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{health}");
    assert_eq!(health["healthy"], true);
    assert_eq!(health["repositories"]["total"], 1);
    assert_eq!(health["repositories"]["completed"], 1);
    assert_eq!(health["repositories"]["details"][0]["repository"], "app");
    assert_eq!(
        health["repositories"]["details"][0]["sync_status"],
        "SUCCESS"
    );
    let (_, other) = api
        .call(
            "GET",
            "/api/v1/repository/mirror/health?namespace=other",
            None,
        )
        .await;
    assert_eq!(other["repositories"]["total"], 0);

    // Cancel applies to a pending or running sync only (Quay: 404 otherwise).
    let sync_now = "/api/v1/repository/mirror/app/mirror/sync-now";
    let sync_cancel = "/api/v1/repository/mirror/app/mirror/sync-cancel";
    let (status, _) = api.call("POST", sync_cancel, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Right after a run the worker's next poll is seconds away: sync-now, then cancel it.
    let (status, _) = api.call("POST", sync_now, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api.call("POST", sync_cancel, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(api.mirror("mirror/app").await["sync_status"], "CANCEL");

    // A slow source keeps the next run in SYNCING: sync-now is refused with 404, as Quay does,
    // and cancel stops the run before it copies the new tag.
    seed(&source, "lib/app", &["v3"]).await;
    slow.inject("GET", "/tags/list", Fault::Delay(Duration::from_secs(4)), 1);
    let (status, _) = api.call("POST", sync_now, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let running = api.wait_status("mirror/app", "SYNCING").await;
    assert!(running["sync_expiration_date"].is_string(), "{running}");
    let (status, body) = api.call("POST", sync_now, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = api.call("POST", sync_cancel, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(api.mirror("mirror/app").await["sync_status"], "CANCEL");
    // The run notices at its next lease renewal and stops once the slow listing returns, without
    // copying v3.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, logs) = api
            .call("GET", "/api/v1/repository/mirror/app/logs?limit=1", None)
            .await;
        if logs["logs"][0]["kind"] == "repo_mirror_sync_cancelled" {
            break;
        }
        assert!(Instant::now() < deadline, "the run never stopped: {logs}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(api.mirror("mirror/app").await["sync_status"], "CANCEL");
    assert_eq!(dest_tags(&dest, "mirror/app").await, ["v1", "v2"]);

    // PUT: Quay's credential rules, an empty reference refused, a narrower rule.
    for (bad, says) in [
        (json!({"external_reference": ""}), "Empty string"),
        (
            json!({"external_registry_password": "pw"}),
            "without also specifying a username",
        ),
        (
            json!({"external_registry_username": null, "external_registry_password": "pw"}),
            "delete username",
        ),
        (
            json!({"root_rule": {"rule_kind": "x", "rule_value": []}}),
            "tag_glob_csv",
        ),
    ] {
        let (status, body) = api.call("PUT", path, Some(bad.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body["detail"].as_str().unwrap().contains(says), "{body}");
    }
    let (status, _) = api
        .call(
            "PUT",
            "/api/v1/repository/mirror/nope/mirror",
            Some(json!({"is_enabled": false})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let secret = "s3cr3t-'\"-pässwörd";
    let (status, body) = api
        .call(
            "PUT",
            path,
            Some(json!({
                "root_rule": {"rule_kind": "tag_glob_csv", "rule_value": ["v1"]},
                "external_registry_username": "reader",
                "external_registry_password": secret,
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let edited = api.mirror("mirror/app").await;
    assert_eq!(edited["root_rule"]["rule_value"], json!(["v1"]));
    assert_eq!(edited["external_registry_username"], "reader");
    // The password is write-only.
    assert!(!edited.to_string().contains("s3cr3t"), "{edited}");

    let (status, _) = api.call("POST", sync_now, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    api.wait_status("mirror/app", "SUCCESS").await;
    assert_eq!(dest_tags(&dest, "mirror/app").await, ["v1"]);

    // The usage log, newest first, with Quay's kind names; paged.
    let (status, logs) = api
        .call("GET", "/api/v1/repository/mirror/app/logs", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{logs}");
    let kinds: Vec<&str> = logs["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"repo_mirror_sync_success"), "{logs}");
    assert!(kinds.contains(&"repo_mirror_sync_tag_success"), "{logs}");
    assert!(kinds.contains(&"repo_mirror_sync_tag_deleted"), "{logs}");
    assert!(kinds.contains(&"repo_mirror_sync_cancelled"), "{logs}");
    let (status, page) = api
        .call("GET", "/api/v1/repository/mirror/app/logs?limit=2", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["logs"].as_array().unwrap().len(), 2);
    let next = page["next_page"].as_u64().expect("a next page");
    let (_, rest) = api
        .call(
            "GET",
            &format!("/api/v1/repository/mirror/app/logs?next_page={next}"),
            None,
        )
        .await;
    assert_eq!(rest["logs"][0], logs["logs"][2], "the next page follows on");

    // Metrics after two successful runs (v1 and v2 copied, then v2 pruned) and a cancelled one.
    // (A run's events reach the metrics as they reach any notifier, possibly just after the
    // status changed.)
    let deadline = Instant::now() + Duration::from_secs(10);
    let (text, samples) = loop {
        let (status, text) = api.text("/metrics").await;
        assert_eq!(status, StatusCode::OK);
        let samples = parse_metrics(&text);
        let done = sample(
            &samples,
            "regmirror_syncs_total",
            &[("mirror", "mirror/app"), ("outcome", "success")],
        );
        if done == Some(2.0) || Instant::now() > deadline {
            break (text, samples);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let value = |name: &str, labels: &[(&str, &str)]| sample(&samples, name, labels);
    let app = ("mirror", "mirror/app");
    assert_eq!(
        value("regmirror_syncs_total", &[app, ("outcome", "success")]),
        Some(2.0)
    );
    assert_eq!(
        value("regmirror_syncs_total", &[app, ("outcome", "cancelled")]),
        Some(1.0)
    );
    assert_eq!(value("regmirror_tags_synced_total", &[app]), Some(2.0));
    assert_eq!(value("regmirror_tags_deleted_total", &[app]), Some(1.0));
    assert_eq!(value("regmirror_tags_failed_total", &[app]), Some(0.0));
    assert!(value("regmirror_bytes_copied_total", &[app]).unwrap() > 8192.0);
    assert_eq!(
        value("regmirror_mirror_last_sync_status", &[app]),
        Some(1.0)
    );
    assert_eq!(value("regmirror_mirror_sync_complete", &[app]), Some(1.0));
    assert_eq!(value("regmirror_syncs_running", &[]), Some(0.0));
    assert_eq!(value("regmirror_mirror_pending_tags", &[app]), Some(0.0));
    // v1 and v2 in the first run: per image a shared layer, and per platform its own layer and
    // config.
    assert_eq!(value("regmirror_blobs_copied_total", &[app]), Some(10.0));
    assert_eq!(
        value("regmirror_sync_duration_seconds_count", &[app]),
        Some(3.0)
    );
    assert_eq!(value("regmirror_store_healthy", &[]), Some(1.0));
    assert!(
        value(
            "regmirror_store_call_duration_seconds_count",
            &[("operation", "claim_due")]
        )
        .unwrap()
            >= 3.0
    );
    let source_requests = value(
        "regmirror_registry_requests_total",
        &[("host", &slow.host()), ("status", "200")],
    );
    assert!(source_requests.unwrap() > 0.0, "{text}");
    assert!(!text.contains("tag=\"v1\""), "no tag names as labels");

    // DELETE (regmirror's addition).
    let (status, _) = api.call("DELETE", path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api.call("GET", path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api.call("DELETE", path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // JSON logs: one object a line; a run's lines carry its mirror, run and worker.
    let log = worker.log_text();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["span"]["mirror"] == "mirror/app"
            && l["span"]["run"].is_number()
            && l["span"]["worker"].is_string()),
        "{log}"
    );
    assert!(!log.contains("s3cr3t") && !log.contains(TOKEN), "{log}");
}

/// The samples of a Prometheus text exposition as `prometheus_client`'s parser reads them.
fn parse_metrics(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    let python = std::env::var("REGMIRROR_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let script = "import json, sys\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        out = [[s.name, s.labels, s.value] for f in text_string_to_metric_families(sys.stdin.read()) for s in f.samples]\n\
        print(json.dumps(out))\n";
    let mut child = Command::new(&python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {python}: {e}"));
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'prometheus_client'"),
        "the Python prometheus_client package is missing: `{python} -m pip install prometheus_client` \
         (scripts/test.sh installs it into target/py-venv and sets REGMIRROR_TEST_PYTHON)"
    );
    assert!(
        out.status.success(),
        "prometheus_client refused the exposition: {stderr}\n{text}"
    );
    serde_json::from_slice(&out.stdout).expect("the parser's JSON")
}

fn sample(
    samples: &[(String, BTreeMap<String, String>, f64)],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| *v)
}

/// SEMANTICS.md §6 fencing as an operator sees it: `/readyz` turns unready while PostgreSQL
/// stops answering (a partition: connections stay open, nothing comes back) and ready again
/// when it answers; `/healthz` stays live throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_state_store() {
    let (pg, db) = postgres_state();
    let proxy = TcpProxy::start(format!("127.0.0.1:{}", pg.port()).parse().unwrap());
    let state = format!("postgres://postgres@{}/{db}", proxy.addr());
    let dest = Registry::start();
    let worker = Worker::start(&state, &destination(&dest)).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let ready = async || {
        http.get(worker.url("/readyz"))
            .send()
            .await
            .map(|r| r.status())
    };
    let wait_for = async |want: StatusCode, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if ready().await.ok() == Some(want) {
                return Instant::now();
            }
            assert!(
                Instant::now() < deadline,
                "/readyz never {what}: {}",
                worker.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    wait_for(StatusCode::OK, "ready").await;
    let stalled = Instant::now();
    proxy.stall();
    let unready = wait_for(StatusCode::SERVICE_UNAVAILABLE, "unready").await;
    // A poll (1 s, ±20 %) and a query timeout (1 s), with slack for a busy machine.
    assert!(unready - stalled < Duration::from_secs(10));
    let body = http
        .get(worker.url("/readyz"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("state store"), "{body}");
    let live = http.get(worker.url("/healthz")).send().await.unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    proxy.resume();
    wait_for(StatusCode::OK, "ready again").await;
    // The calls that did not answer are counted, by operation.
    let (_, text) = Client::new(&worker).text("/metrics").await;
    let samples = parse_metrics(&text);
    let errors: f64 = samples
        .iter()
        .filter(|(name, _, _)| name == "regmirror_store_errors_total")
        .map(|(_, _, value)| value)
        .sum();
    assert!(errors >= 1.0, "{text}");
    assert_eq!(sample(&samples, "regmirror_store_healthy", &[]), Some(1.0));
}

/// The status page in a real browser: Debian's headless Chromium loads `/` (HTTP Basic with the
/// token, as a person's browser would send it), its DOM holds a row per mirror with the status
/// and the last error, and a phone-sized screenshot is a real image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_renders_in_headless_chromium() {
    let chromium = which("chromium").unwrap_or_else(|| {
        panic!("chromium is not installed: `apt-get install -y chromium` (scripts/test.sh does)")
    });
    let source = Registry::start();
    let dest = Registry::start();
    seed(&source, "lib/app", &["v1"]).await;
    let dir = tempfile::tempdir().unwrap();
    let state = format!("sqlite:{}", dir.path().join("state.db").display());
    let mirrors = format!(
        "{}\n[[mirror]]\nid = \"mirror/good\"\nsource = \"{src}/lib/app\"\ntags = \"v*\"\n\
         verify_tls = false\nstart = 2020-01-01T00:00:00Z\n\n[[mirror]]\nid = \"mirror/broken\"\n\
         source = \"{src}/lib/does-not-exist\"\ntags = \"v*\"\nverify_tls = false\n\
         start = 2020-01-01T00:00:00Z\n",
        destination(&dest),
        src = source.host()
    );
    let worker = Worker::start(&state, &mirrors).await;
    let api = Client::new(&worker);
    api.wait_status("mirror/good", "SUCCESS").await;
    api.wait_status("mirror/broken", "FAIL").await;

    // One mirror of two failing is more than Quay's fifth: mirroring is unhealthy.
    let (status, health) = api
        .call("GET", "/api/v1/repository/mirror/health", None)
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{health}");
    assert_eq!(health["healthy"], false);
    assert_eq!(health["repositories"]["failed"], 1);

    let (status, html) = api.text("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("mirror/good") && html.contains("/logs/mirror/good"));
    let (status, log_page) = api.text("/logs/mirror/good").await;
    assert_eq!(status, StatusCode::OK);
    assert!(log_page.contains("repo_mirror_sync_success"), "{log_page}");

    let url = format!(
        "http://regmirror:{TOKEN}@{}/",
        worker.base.trim_start_matches("http://")
    );
    let profile = tempfile::tempdir().unwrap();
    let browse = |extra: &[&str]| {
        let mut c = Command::new(&chromium);
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(&url);
        let out = c.output().expect("running chromium");
        assert!(
            out.status.success(),
            "chromium failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let dom = browse(&["--dump-dom"]);
    let rows = dom.matches("<tr>").count();
    assert_eq!(rows, 3, "a header and one row per mirror: {dom}");
    for expected in [
        "mirror/good",
        "mirror/broken",
        "SUCCESS",
        "FAIL",
        "usage log",
    ] {
        assert!(dom.contains(expected), "{expected} missing: {dom}");
    }
    assert!(
        dom.contains("does-not-exist"),
        "the last error is shown: {dom}"
    );
    assert!(
        dom.contains("succeeded: 1 synced"),
        "the last run's summary: {dom}"
    );

    let shot = dir.path().join("status.png");
    browse(&[
        &format!("--screenshot={}", shot.display()),
        "--window-size=412,915",
        "--hide-scrollbars",
    ]);
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((width, height), (412, 915), "the phone-sized window");
    // A blank page compresses to a few hundred bytes; rendered rows and text do not.
    assert!(
        png.len() > 10_000,
        "a near-empty screenshot: {} bytes",
        png.len()
    );
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
}

/// `tls_cert` / `tls_key`: the API speaks HTTPS with that certificate, and only HTTPS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_serves_https_with_its_certificate() {
    let certs = tempfile::tempdir().unwrap();
    let tls = ServerTls::generate(certs.path());
    let dir = tempfile::tempdir().unwrap();
    let state = format!("sqlite:{}", dir.path().join("state.db").display());
    let dest = Registry::start();
    let worker = Worker::start_with(&state, &destination(&dest), Some(&tls), "1s").await;
    assert!(worker.base.starts_with("https://"));
    let https = http_client(Some(&tls));
    let (status, body) = Client {
        http: https.clone(),
        base: worker.base.clone(),
    }
    .call("GET", "/api/v1/repository/mirror/app/mirror", None)
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let anonymous = https.get(worker.url("/metrics")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    // Plain HTTP to the same port gets no answer from the API.
    let plain = worker.base.replace("https://", "http://");
    let answered = http_client(None)
        .get(format!("{plain}/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    assert!(!answered);
    // A client that does not trust the CA refuses the connection.
    assert!(
        http_client(None)
            .get(worker.url("/healthz"))
            .send()
            .await
            .is_err()
    );
}

/// A client that sends part of its request headers and then nothing is cut off (after 10 s),
/// so idle half-open requests cannot pile up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_headers_never_end_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = tempfile::tempdir().unwrap();
    let state = format!("sqlite:{}", dir.path().join("state.db").display());
    let dest = Registry::start();
    let worker = Worker::start(&state, &destination(&dest)).await;
    let addr = worker.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the connection was still open after 30 s");
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "closed too soon"
    );
}

/// A worker killed mid-run: the next worker takes the mirror over when the lease expires, and
/// its `/metrics` counts the takeover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_is_counted() {
    let source = Registry::start();
    let dest = Registry::start();
    seed(&source, "lib/app", &["v1"]).await;
    let stuck = Proxy::start(&source);
    stuck.inject("GET", "/tags/list", Fault::Hang, 1);
    let dir = tempfile::tempdir().unwrap();
    let state = format!("sqlite:{}", dir.path().join("state.db").display());
    let mirrors = format!(
        "{}\n[[mirror]]\nid = \"mirror/app\"\nsource = \"{}/lib/app\"\ntags = \"v*\"\n\
         verify_tls = false\nstart = 2020-01-01T00:00:00Z\n",
        destination(&dest),
        stuck.host()
    );
    let mut first = Worker::start(&state, &mirrors).await;
    Client::new(&first)
        .wait_status("mirror/app", "SYNCING")
        .await;
    // Killed once its listing hangs (not before it asked: the next worker's would hang then).
    let deadline = Instant::now() + Duration::from_secs(30);
    while stuck.count("GET", "/tags/list") == 0 {
        assert!(
            Instant::now() < deadline,
            "the first worker never listed the tags"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.child.kill().unwrap();
    first.child.wait().unwrap();

    let second = Worker::start(&state, &mirrors).await;
    let api = Client::new(&second);
    api.wait_status("mirror/app", "SUCCESS").await;
    let (_, text) = api.text("/metrics").await;
    let samples = parse_metrics(&text);
    assert_eq!(
        sample(&samples, "regmirror_lease_takeovers_total", &[]),
        Some(1.0),
        "{text}"
    );
}
