//! A hostile registry: a small in-memory distribution server on a loopback port that misbehaves
//! on purpose, one [`Mode`] per misbehaviour. Content is whatever a test puts in (raw manifests
//! with lying descriptors, tags no real registry would accept), served as a registry would;
//! the mode decides how it lies about it. Every request is recorded with the `Authorization`
//! it carried, to prove where credentials went.
//!
//! ```
//! use regmirror_tests::hostile::{HostileRegistry, Mode};
//! use regmirror_tests::Image;
//!
//! // A registry that wants the kit user's password and echoes it in every error body.
//! let echo = Mode::EchoSecrets { status: 401, on: "/manifests/".into() };
//! let hostile = HostileRegistry::builder(echo).basic_auth().start();
//! hostile.put_image("src/app", "v1", &Image::simple(1, 1, 100));
//! assert!(hostile.host().starts_with("127.0.0.1:"));
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use futures::StreamExt as _;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{
    AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LINK, LOCATION, WWW_AUTHENTICATE,
};
use hyper::{Method, Request, Response, StatusCode};

use regmirror::Digest;
use regmirror::registry::http::{HttpOptions, HttpRegistry};
use regmirror::registry::manifest::referrers_index;
use regmirror::registry::{Manifest, media_types};

use crate::image::{Blob, Image, Index};
use crate::registry::{PASSWORD, USERNAME, client_options};
use crate::server::{BackgroundServer, Body, BodyError, full};
use crate::tls::ServerTls;

/// The bearer token the registry's own token service hands out (a test secret: assertions
/// check it never shows up in any output).
pub const HOSTILE_TOKEN: &str = "tok-Hx72-bearer-not-in-logs";
/// The `service` its challenges name.
pub const HOSTILE_SERVICE: &str = "hostile-registry";

/// How the registry misbehaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Serve what was put in, as a registry should (the control case, and the content behind
    /// tests whose lie is in the content itself: lying descriptor sizes, odd tag names).
    Honest,
    /// Answer every authorized repository request whose path contains `on` (`/tags/list`,
    /// `/manifests/`, `/blobs/`; `/` for all) with `status` and a distribution error body
    /// echoing what the request carried: the `Authorization` value, the decoded `user:password`
    /// and the password alone, or the bearer token. Other requests are served honestly.
    EchoSecrets { status: u16, on: String },
    /// Answer every repository request whose path contains `on` with `status` and an error
    /// body whose message is `text` (e.g. terminal escapes, carriage returns, NUL).
    ErrorText {
        status: u16,
        text: String,
        on: String,
    },
    /// An endless tag list: every page holds `page_size` fresh tags of `tag_len` characters and
    /// a `Link` to a next page that was never seen before.
    EndlessTags { page_size: usize, tag_len: usize },
    /// Accept connections and never answer anything (the ping included).
    Hang,
    /// Answer manifest GETs with a body that never ends (sent as fast as it is read).
    EndlessManifest,
    /// Answer manifest requests with `307` to `location` (e.g. another host's URL).
    RedirectManifests(String),
    /// Answer blob requests with `307` to this base URL followed by `/v2/redirected/blobs/`
    /// and the digest: the same blob on another server (plain HTTP, another host), since blob
    /// routes here ignore the repository.
    RedirectBlobs(String),
    /// Point every link it hands out at this base URL instead of its own (e.g. plain HTTP):
    /// the tag list's `Link` to a next page, and the `Location` of an upload session it opens
    /// (`POST /v2/REPO/blobs/uploads/`, which only this mode answers).
    Downgrade(String),
    /// Challenges name this token service (`realm`) instead of the registry's own `/token`
    /// (e.g. another host, over plain HTTP). Use with [`HostileBuilder::token_auth`].
    Realm(String),
}

/// One request the registry saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The `Authorization` value it carried.
    pub authorization: Option<String>,
}

/// How a [`HostileRegistry`] is set up; build with [`HostileRegistry::builder`].
#[derive(Debug, Clone)]
pub struct HostileBuilder {
    mode: Mode,
    auth: Auth,
    tls: bool,
    referrers_api: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auth {
    None,
    /// Basic auth for [`USERNAME`] / [`PASSWORD`].
    Basic,
    /// Bearer tokens ([`HOSTILE_TOKEN`]) from its own `/token`, for [`USERNAME`] / [`PASSWORD`].
    Token,
}

impl HostileBuilder {
    /// Require Basic auth for [`USERNAME`] / [`PASSWORD`].
    pub fn basic_auth(mut self) -> Self {
        self.auth = Auth::Basic;
        self
    }

    /// Require bearer tokens from the registry's own token service (realm `/token` on the same
    /// host), which gives [`HOSTILE_TOKEN`] to [`USERNAME`] / [`PASSWORD`].
    pub fn token_auth(mut self) -> Self {
        self.auth = Auth::Token;
        self
    }

    /// Serve HTTPS with a certificate for 127.0.0.1 and localhost from a CA of its own
    /// ([`HostileRegistry::ca_pem`]).
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Serve the OCI 1.1 referrers API (`GET /v2/<name>/referrers/<digest>`, with
    /// `artifactType` filtering) from the manifests put in; without it that route is a 404, as
    /// on CNCF distribution 2.8.
    pub fn referrers_api(mut self) -> Self {
        self.referrers_api = true;
        self
    }

    /// Start serving on a free loopback port.
    pub fn start(self) -> HostileRegistry {
        let cell: Arc<std::sync::OnceLock<Arc<State>>> = Arc::new(std::sync::OnceLock::new());
        let handler_cell = cell.clone();
        let handler = move |req| {
            let state = handler_cell
                .get()
                .expect("the state is set before the address is published")
                .clone();
            async move { state.handle(req).await }
        };
        let tls = self.tls.then(|| {
            let dir = tempfile::tempdir().expect("creating a temp dir for certificates");
            let certs = ServerTls::generate(dir.path());
            (dir, certs)
        });
        let (server, scheme) = match &tls {
            Some((_, certs)) => (
                BackgroundServer::start_tls("hostile", certs, handler),
                "https",
            ),
            None => (BackgroundServer::start("hostile", handler), "http"),
        };
        let state = Arc::new(State {
            mode: self.mode,
            auth: self.auth,
            referrers_api: self.referrers_api,
            base: format!("{scheme}://{}", server.addr()),
            content: Mutex::new(Content::default()),
            seen: Mutex::new(Vec::new()),
        });
        cell.set(state.clone())
            .expect("the state is set exactly once");
        HostileRegistry { state, server, tls }
    }
}

#[derive(Debug, Default)]
struct Content {
    /// repo → tag → manifest digest. Tags are kept as given, whatever characters they hold.
    tags: BTreeMap<String, BTreeMap<String, Digest>>,
    /// digest → (media type, bytes).
    manifests: HashMap<Digest, (String, Bytes)>,
    blobs: HashMap<Digest, Bytes>,
}

#[derive(Debug)]
struct State {
    mode: Mode,
    auth: Auth,
    referrers_api: bool,
    /// `http://127.0.0.1:PORT` (`https://` with TLS).
    base: String,
    content: Mutex<Content>,
    seen: Mutex<Vec<Seen>>,
}

/// The running registry; dropping it stops it.
#[derive(Debug)]
pub struct HostileRegistry {
    state: Arc<State>,
    server: BackgroundServer,
    /// With TLS: the directory holding the certificates, and their paths.
    tls: Option<(tempfile::TempDir, ServerTls)>,
}

impl HostileRegistry {
    /// A registry misbehaving as `mode`, without authentication unless the builder adds it.
    pub fn builder(mode: Mode) -> HostileBuilder {
        HostileBuilder {
            mode,
            auth: Auth::None,
            tls: false,
            referrers_api: false,
        }
    }

    /// A registry misbehaving as `mode`, without authentication.
    pub fn start(mode: Mode) -> HostileRegistry {
        HostileRegistry::builder(mode).start()
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.server.addr().to_string()
    }

    /// `http://127.0.0.1:PORT` (`https://` with TLS).
    pub fn base_url(&self) -> String {
        self.state.base.clone()
    }

    /// With TLS, the CA certificate (PEM file) that signed the server's certificate.
    pub fn ca_pem(&self) -> Option<&std::path::Path> {
        self.tls.as_ref().map(|(_, certs)| certs.ca_pem.as_path())
    }

    /// Options for regmirror's HTTP client: plain HTTP permitted (or, with TLS, the CA trusted
    /// and verification on), the kit user's credentials when the registry wants some.
    pub fn http_options(&self) -> HttpOptions {
        client_options(
            self.ca_pem().map(ToOwned::to_owned),
            self.state.auth != Auth::None,
        )
    }

    /// A client of regmirror's HTTP backend for this registry.
    pub fn client(&self) -> HttpRegistry {
        HttpRegistry::new(&self.host(), self.http_options())
            .expect("the kit's client options are valid")
    }

    /// Store a blob.
    pub fn put_blob(&self, blob: &Blob) {
        self.content()
            .blobs
            .insert(blob.digest.clone(), blob.bytes.clone());
    }

    /// Store a manifest by digest and point `tag` of `repo` at it (`tag` may be anything).
    pub fn put_manifest(&self, repo: &str, tag: &str, manifest: &Manifest) {
        self.put_untagged(manifest);
        self.put_tag(repo, tag, &manifest.digest);
    }

    /// Store a manifest by digest only (an index's child).
    pub fn put_untagged(&self, manifest: &Manifest) {
        self.content().manifests.insert(
            manifest.digest.clone(),
            (manifest.media_type.clone(), manifest.bytes.clone()),
        );
    }

    /// Store `manifest`'s bytes under `digest`, which is not theirs: a registry answering a
    /// digest with the wrong content.
    pub fn put_as(&self, digest: &Digest, manifest: &Manifest) {
        self.content().manifests.insert(
            digest.clone(),
            (manifest.media_type.clone(), manifest.bytes.clone()),
        );
    }

    /// Point `tag` of `repo` at `digest` (listed even when nothing is stored under it).
    pub fn put_tag(&self, repo: &str, tag: &str, digest: &Digest) {
        self.content()
            .tags
            .entry(repo.to_owned())
            .or_default()
            .insert(tag.to_owned(), digest.clone());
    }

    /// Store an image (blobs and manifest) under `tag`.
    pub fn put_image(&self, repo: &str, tag: &str, image: &Image) {
        for blob in image.blobs() {
            self.put_blob(blob);
        }
        self.put_manifest(repo, tag, &image.manifest);
    }

    /// Store an index, its children and their blobs under `tag`.
    pub fn put_index(&self, repo: &str, tag: &str, index: &Index) {
        for child in &index.children {
            for blob in child.blobs() {
                self.put_blob(blob);
            }
            self.put_untagged(&child.manifest);
        }
        self.put_manifest(repo, tag, &index.manifest);
    }

    /// Every request seen so far, in order.
    pub fn requests(&self) -> Vec<Seen> {
        self.state.seen.lock().expect("hostile log lock").clone()
    }

    /// How many requests with `method` (`"*"` for any) had a path containing `path_contains`.
    pub fn count(&self, method: &str, path_contains: &str) -> usize {
        self.requests()
            .iter()
            .filter(|s| (method == "*" || s.method == method) && s.path.contains(path_contains))
            .count()
    }

    fn content(&self) -> std::sync::MutexGuard<'_, Content> {
        self.state.content.lock().expect("hostile content lock")
    }
}

/// What a repository request asks for.
enum Route<'a> {
    Ping,
    Token,
    Tags { repo: &'a str },
    Manifest { repo: &'a str, reference: String },
    Referrers { digest: String },
    Blob { digest: String },
    Upload { repo: &'a str },
    Other,
}

fn route(path: &str) -> Route<'_> {
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    if path == "/v2/" || path == "/v2" {
        return Route::Ping;
    }
    if path == "/token" {
        return Route::Token;
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Route::Other;
    };
    if let Some(repo) = rest.strip_suffix("/tags/list") {
        return Route::Tags { repo };
    }
    if let Some(repo) = rest.strip_suffix("/blobs/uploads/") {
        return Route::Upload { repo };
    }
    if let Some((_, digest)) = rest.rsplit_once("/referrers/") {
        return Route::Referrers {
            digest: decode(digest),
        };
    }
    if let Some((repo, reference)) = rest.rsplit_once("/manifests/") {
        return Route::Manifest {
            repo,
            reference: decode(reference),
        };
    }
    if let Some((_, digest)) = rest.rsplit_once("/blobs/") {
        return Route::Blob {
            digest: decode(digest),
        };
    }
    Route::Other
}

impl State {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or("").to_owned();
        let authorization = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        self.seen.lock().expect("hostile log lock").push(Seen {
            method: req.method().to_string(),
            path: if query.is_empty() {
                path.clone()
            } else {
                format!("{path}?{query}")
            },
            authorization: authorization.clone(),
        });
        if self.mode == Mode::Hang {
            return std::future::pending().await;
        }
        let route = route(&path);
        if let Route::Token = route {
            return self.token(authorization.as_deref());
        }
        if !self.authorized(authorization.as_deref()) {
            return self.challenge();
        }
        let head = req.method() == Method::HEAD;
        match route {
            Route::Ping => json(StatusCode::OK, "{}".into()),
            Route::Token => unreachable!("answered above"),
            Route::Other => error(StatusCode::NOT_FOUND, "UNSUPPORTED", "no such route"),
            _ if matches!(&self.mode, Mode::EchoSecrets { on, .. } | Mode::ErrorText { on, .. }
                if path.contains(on.as_str())) =>
            {
                self.lie_in_error(authorization.as_deref())
            }
            Route::Tags { repo } => self.tags(repo, &query),
            Route::Manifest { repo, reference } => self.manifest(repo, &reference, head),
            Route::Referrers { digest } => self.referrers(&digest, &query),
            Route::Blob { digest } => self.blob(&digest, head),
            Route::Upload { repo } => match &self.mode {
                Mode::Downgrade(base) => Response::builder()
                    .status(StatusCode::ACCEPTED)
                    .header(
                        LOCATION,
                        format!("{base}/v2/{repo}/blobs/uploads/session-1"),
                    )
                    .body(full(""))
                    .expect("an upload session is a valid response"),
                _ => error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "UNSUPPORTED",
                    "uploads are not supported",
                ),
            },
        }
    }

    /// The referrers API's answer: an index of the stored manifests whose subject is `digest`.
    fn referrers(&self, digest: &str, query: &str) -> Response<Body> {
        if !self.referrers_api {
            return error(StatusCode::NOT_FOUND, "UNSUPPORTED", "no such route");
        }
        let Ok(digest) = Digest::parse(digest) else {
            return error(StatusCode::BAD_REQUEST, "DIGEST_INVALID", "invalid digest");
        };
        let wanted = url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "artifactType")
            .map(|(_, v)| v.into_owned());
        let content = self.content.lock().expect("hostile content lock");
        let mut found: Vec<Manifest> = content
            .manifests
            .values()
            .filter_map(|(media_type, bytes)| Manifest::from_bytes(bytes.clone(), media_type).ok())
            .filter(|m| m.subject().as_ref() == Some(&digest))
            .filter(|m| wanted.is_none() || m.artifact_type() == wanted)
            .collect();
        found.sort_by(|a, b| a.digest.cmp(&b.digest));
        let index = referrers_index(&found);
        Response::builder()
            .status(StatusCode::OK)
            .header(CONTENT_TYPE, media_types::OCI_INDEX)
            .body(full(index.bytes))
            .expect("a referrers answer is a valid response")
    }

    fn authorized(&self, authorization: Option<&str>) -> bool {
        match self.auth {
            Auth::None => true,
            Auth::Basic => authorization.and_then(basic_login) == Some(login()),
            Auth::Token => authorization == Some(&format!("Bearer {HOSTILE_TOKEN}")),
        }
    }

    fn challenge(&self) -> Response<Body> {
        let realm = match &self.mode {
            Mode::Realm(realm) => realm.clone(),
            _ => format!("{}/token", self.base),
        };
        let value = match self.auth {
            Auth::Token => format!(r#"Bearer realm="{realm}",service="{HOSTILE_SERVICE}""#),
            _ => r#"Basic realm="hostile""#.to_owned(),
        };
        let mut response = error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "authentication required",
        );
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, value.parse().expect("a valid challenge"));
        response
    }

    fn token(&self, authorization: Option<&str>) -> Response<Body> {
        if authorization.and_then(basic_login) != Some(login()) {
            return error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "invalid credentials",
            );
        }
        json(
            StatusCode::OK,
            serde_json::json!({ "token": HOSTILE_TOKEN, "expires_in": 300 }).to_string(),
        )
    }

    fn lie_in_error(&self, authorization: Option<&str>) -> Response<Body> {
        match &self.mode {
            Mode::EchoSecrets { status, .. } => {
                let echoed = authorization.unwrap_or("");
                let decoded = echoed.strip_prefix("Basic ").and_then(decode_basic);
                let message = format!(
                    "you sent {echoed:?} (that is {decoded:?}); password {PASSWORD} not accepted"
                );
                let body = serde_json::json!({
                    "errors": [{ "code": "DENIED", "message": message, "detail": echoed }],
                    "details": format!("token {}", echoed.trim_start_matches("Bearer ")),
                });
                json(status_of(*status), body.to_string())
            }
            Mode::ErrorText { status, text, .. } => error(status_of(*status), "DENIED", text),
            _ => unreachable!("only the error modes lie in errors"),
        }
    }

    fn tags(&self, repo: &str, query: &str) -> Response<Body> {
        if let Mode::EndlessTags { page_size, tag_len } = self.mode {
            let page: u64 = url::form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == "page")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let tags: Vec<String> = (0..page_size as u64)
                .map(|i| {
                    let tag = format!("p{page}-{i}-");
                    format!("{tag}{}", "x".repeat(tag_len.saturating_sub(tag.len())))
                })
                .collect();
            let mut response = json(
                StatusCode::OK,
                serde_json::json!({ "name": repo, "tags": tags }).to_string(),
            );
            let next = format!("</v2/{repo}/tags/list?page={}>; rel=\"next\"", page + 1);
            response
                .headers_mut()
                .insert(LINK, next.parse().expect("a valid Link"));
            return response;
        }
        let content = self.content.lock().expect("hostile content lock");
        match content.tags.get(repo) {
            None => error(StatusCode::NOT_FOUND, "NAME_UNKNOWN", "repository unknown"),
            Some(tags) => {
                let mut response = json(
                    StatusCode::OK,
                    serde_json::json!({ "name": repo, "tags": tags.keys().collect::<Vec<_>>() })
                        .to_string(),
                );
                if let Mode::Downgrade(base) = &self.mode {
                    let next = format!("<{base}/v2/{repo}/tags/list?last=zzz>; rel=\"next\"");
                    response
                        .headers_mut()
                        .insert(LINK, next.parse().expect("a valid Link"));
                }
                response
            }
        }
    }

    fn manifest(&self, repo: &str, reference: &str, head: bool) -> Response<Body> {
        match &self.mode {
            Mode::RedirectManifests(location) => {
                return Response::builder()
                    .status(StatusCode::TEMPORARY_REDIRECT)
                    .header(LOCATION, location)
                    .body(full(""))
                    .expect("a redirect is a valid response");
            }
            Mode::EndlessManifest if !head => {
                let chunk = Bytes::from(vec![b' '; 64 << 10]);
                let stream = futures::stream::repeat(chunk)
                    .map(|bytes| Ok::<_, BodyError>(Frame::data(bytes)));
                return Response::builder()
                    .header(CONTENT_TYPE, regmirror::registry::media_types::OCI_MANIFEST)
                    .body(BodyExt::boxed_unsync(StreamBody::new(stream)))
                    .expect("a streamed response is valid");
            }
            _ => {}
        }
        let content = self.content.lock().expect("hostile content lock");
        let digest = match Digest::parse(reference) {
            Ok(digest) => Some(digest),
            Err(_) => content
                .tags
                .get(repo)
                .and_then(|t| t.get(reference))
                .cloned(),
        };
        let Some((media_type, bytes)) = digest.as_ref().and_then(|d| content.manifests.get(d))
        else {
            return error(
                StatusCode::NOT_FOUND,
                "MANIFEST_UNKNOWN",
                "manifest unknown",
            );
        };
        let digest = digest.expect("found by digest");
        Response::builder()
            .header(CONTENT_TYPE, media_type.as_str())
            .header(CONTENT_LENGTH, bytes.len())
            .header("docker-content-digest", digest.as_str())
            .body(if head { full("") } else { full(bytes.clone()) })
            .expect("a manifest response is valid")
    }

    fn blob(&self, digest: &str, head: bool) -> Response<Body> {
        if let Mode::RedirectBlobs(base) = &self.mode {
            let path = format!("/v2/redirected/blobs/{digest}");
            return Response::builder()
                .status(StatusCode::TEMPORARY_REDIRECT)
                .header(LOCATION, format!("{base}{path}"))
                .body(full(""))
                .expect("a redirect is a valid response");
        }
        let content = self.content.lock().expect("hostile content lock");
        let Some(bytes) = Digest::parse(digest)
            .ok()
            .and_then(|d| content.blobs.get(&d))
        else {
            return error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", "blob unknown");
        };
        Response::builder()
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, bytes.len())
            .header("docker-content-digest", digest)
            .body(if head { full("") } else { full(bytes.clone()) })
            .expect("a blob response is valid")
    }
}

fn status_of(code: u16) -> StatusCode {
    StatusCode::from_u16(code).expect("modes hold valid statuses")
}

fn json(status: StatusCode, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .body(full(body))
        .expect("a JSON response is valid")
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    json(
        status,
        serde_json::json!({ "errors": [{ "code": code, "message": message }] }).to_string(),
    )
}

/// `user:password` of the kit user.
fn login() -> String {
    format!("{USERNAME}:{PASSWORD}")
}

fn basic_login(authorization: &str) -> Option<String> {
    decode_basic(authorization.strip_prefix("Basic ")?)
}

fn decode_basic(encoded: &str) -> Option<String> {
    String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()
}

/// The base64 `user:password` login of the kit user, as a Basic `Authorization` carries it.
pub fn base64_login() -> String {
    STANDARD.encode(login())
}
