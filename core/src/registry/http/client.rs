//! The HTTP plumbing under [`super::HttpRegistry`]: one reqwest client per registry, scheme
//! discovery, authorization on every request, retries, redirects, the per-host concurrency cap,
//! stall timeouts, and turning registry answers into [`Error`]s.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, LOCATION};
use reqwest::{Method, Response, StatusCode};
use serde::Deserialize;
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};
use url::Url;

use super::HttpOptions;
use super::auth::AuthState;
use super::docker_config::Sources;
use super::guard::{Refused, Unresolved};
use super::window::Window;
use crate::error::{Detail, Error, ErrorKind, Result};
use crate::failure::Failure;
use crate::redact::Secrets;
use crate::registry::BlobStream;

/// At most this many redirects are followed for one request.
const MAX_REDIRECTS: usize = 10;
/// Error bodies are read up to this size for their `errors[]` (the rest is not worth holding).
const MAX_ERROR_BODY: usize = 64 << 10;

/// One registry's connection: what [`super::HttpRegistry`] wraps in an `Arc`.
pub(crate) struct Client {
    /// The registry as the user named it (`docker.io`, `127.0.0.1:5000`): used for credentials.
    pub(crate) host: String,
    /// Where its API lives (`registry-1.docker.io` for `docker.io`).
    pub(crate) api_host: String,
    pub(crate) http: reqwest::Client,
    pub(crate) options: HttpOptions,
    /// `https://api_host/` or, when TLS is not verified and the handshake fails, `http://…/`.
    base: OnceCell<Url>,
    pub(crate) auth: AuthState,
    /// What must never leave this client in a message (see [`crate::redact`]).
    pub(crate) secrets: Secrets,
    permits: Arc<Semaphore>,
    /// Small reads (manifests, blob existence, tag lists) have their own, larger cap: a run's
    /// manifest `HEAD`s are latency-bound, and queueing them behind the blob transfers' cap
    /// costs a round trip per wave. It widens when the registry is far away (see
    /// [`super::window`]).
    metadata_window: Window,
    /// Blob uploads have their own slots: an upload reads a stream that may be a download
    /// from this same registry holding a slot of `permits`, and waiting for a second slot of
    /// the same cap would deadlock once every slot is held by such a download.
    upload_permits: Arc<Semaphore>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("host", &self.host)
            .field("api_host", &self.api_host)
            .field("base", &self.base.get().map(Url::as_str))
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// One request as the registry methods describe it; [`Client::send`] adds authorization,
/// retries and redirects.
pub(crate) struct Call<'a> {
    pub method: Method,
    pub url: Url,
    /// Token scopes this request needs (`repository:NAME:pull`, …).
    pub scopes: &'a [String],
    pub headers: HeaderMap,
    /// Sent when non-empty (or for PUT/POST/PATCH, as an explicit empty body).
    pub body: Bytes,
    /// Whether the request may be repeated after it possibly reached the server.
    pub retry: bool,
    /// Follow 3xx answers (reads: blobs, manifests, tag pages); never sends our authorization
    /// to another host.
    pub follow_redirects: bool,
    /// The registry's answer is a measure of its round trip (a `HEAD`, costing it a fixed,
    /// small amount of work; not a tag list, which grows with the repository). Manifest `GET`s
    /// are not measured either: the runs that make them (cold ones) are bound by their copies,
    /// and a widened window's connections, each holding its buffers, would stay open through
    /// those (12 MiB more peak RSS in a 3 000-tag cold run).
    pub measures_round_trip: bool,
}

impl<'a> Call<'a> {
    pub fn new(method: Method, url: Url, scopes: &'a [String]) -> Self {
        let retry = method != Method::PATCH && method != Method::POST;
        Call {
            method,
            url,
            scopes,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            retry,
            follow_redirects: false,
            measures_round_trip: false,
        }
    }

    pub fn header(mut self, name: reqwest::header::HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    pub fn body(mut self, body: Bytes) -> Self {
        self.body = body;
        self
    }

    pub fn retry(mut self, retry: bool) -> Self {
        self.retry = retry;
        self
    }

    pub fn follow_redirects(mut self) -> Self {
        self.follow_redirects = true;
        self
    }

    pub fn measures_round_trip(mut self) -> Self {
        self.measures_round_trip = true;
        self
    }
}

impl Client {
    pub(crate) fn new(
        host: String,
        api_host: String,
        http: reqwest::Client,
        options: HttpOptions,
    ) -> Result<Self> {
        let permits = Arc::new(Semaphore::new(options.max_concurrent_requests.max(1)));
        let upload_permits = Arc::new(Semaphore::new(options.max_concurrent_requests.max(1)));
        let metadata_window = Window::new(options.max_concurrent_metadata_requests);
        // Stored logins are read now, so a broken auth file is reported before any request
        // rather than as the registry's 401; explicit credentials make them irrelevant.
        let sources = match (&options.auth_file, options.docker_config) {
            _ if options.credentials.is_some() => None,
            (Some(file), _) => Some(Sources::file(file.clone())),
            (None, true) => Some(Sources::from_env()),
            (None, false) => None,
        };
        let stored = sources.as_ref().map(Sources::load).transpose()?;
        let secrets = Secrets::default();
        let auth = AuthState::new(
            host.clone(),
            options.credentials.clone(),
            stored,
            secrets.clone(),
        );
        if let Some(credentials) = &options.credentials {
            secrets.add_credentials(credentials);
        }
        // A proxy's login travels in `Proxy-Authorization`, which a proxy may echo too.
        let proxy = &options.proxy;
        for url in [&proxy.http_proxy, &proxy.https_proxy]
            .into_iter()
            .flatten()
        {
            if let Ok(url) = Url::parse(url)
                && let Some(password) = url.password()
            {
                secrets.add_login(url.username(), password);
            }
        }
        Ok(Client {
            host,
            api_host,
            http,
            options,
            base: OnceCell::new(),
            auth,
            secrets,
            permits,
            metadata_window,
            upload_permits,
        })
    }

    /// Wait for a free slot under the per-host cap. Held for a whole operation (a blob stream
    /// holds it until dropped), never nested, so operations cannot deadlock on each other; an
    /// upload, which may read a download's stream, takes an `upload_permit` instead.
    pub(crate) async fn permit(&self) -> OwnedSemaphorePermit {
        Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    /// Wait for a free slot under the per-host cap of small reads (see `metadata_window`).
    pub(crate) async fn metadata_permit(&self) -> OwnedSemaphorePermit {
        self.metadata_window.acquire().await
    }

    /// Wait for a free slot under the per-host cap of blob uploads (see `upload_permits`).
    pub(crate) async fn upload_permit(&self) -> OwnedSemaphorePermit {
        Arc::clone(&self.upload_permits)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    /// The registry's base URL, discovering the scheme on first use.
    pub(crate) async fn base(&self) -> Result<&Url> {
        self.base.get_or_try_init(|| self.discover()).await
    }

    /// `path` (starting with `/v2/`) on this registry.
    pub(crate) async fn url(&self, path: &str) -> Result<Url> {
        self.base().await?.join(path).map_err(|e| {
            Error::new(
                ErrorKind::InvalidReference,
                format!("cannot build a URL for {path:?} on {}: {e}", self.host),
            )
        })
    }

    /// Resolve a `Location` (or `Link`) the registry sent, relative to `base_url`.
    pub(crate) fn resolve(&self, base_url: &Url, location: &str) -> Result<Url> {
        base_url.join(location).map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                format!("{} sent an unusable location {location:?}: {e}", self.host),
            )
        })
    }

    /// Refuse a request to `url` that would break the rules of SEMANTICS.md §10: nothing goes
    /// over plain HTTP while TLS verification is on (a redirect, an upload location or a token
    /// service at `http://`), and under the SSRF guard no host given as a refused IP address is
    /// contacted (host names are checked by the guard's resolver as they resolve).
    pub(crate) fn check_target(&self, url: &Url, what: &str) -> Result<()> {
        if self.options.tls_verify && url.scheme() == "http" {
            return Err(Error::new(
                ErrorKind::Forbidden,
                format!(
                    "{what}: {} sent us to plain HTTP ({}) while TLS verification is on; refused",
                    self.host,
                    display_url(url)
                ),
            ));
        }
        if let Some(guard) = &self.options.address_guard
            && let Some(addr) = super::literal_ip(url)
        {
            let host = url.host_str().unwrap_or_default();
            guard.check(host, addr).map_err(|e| e.context(what))?;
        }
        Ok(())
    }

    /// https first; with `tls_verify = false`, plain http when https does not work (skopeo's
    /// `--tls-verify=false`), which a ping of both schemes decides. That ping also learns which
    /// authentication the registry wants.
    async fn discover(&self) -> Result<Url> {
        let https = self.root_url("https")?;
        if self.options.tls_verify {
            // https is the only scheme allowed, so there is nothing to probe: the first real
            // request goes out at once, and its 401 carries the challenge a `GET /v2/` would
            // (learnt in `send`), which saves a round trip per registry and run.
            return Ok(https);
        }
        // Both schemes are pinged at once, and https still wins whenever it works: a plain-HTTP
        // registry then costs one round trip instead of a failed TLS handshake followed by the
        // real ping (two round trips on a new connection each, 100 ms over a 25 ms link).
        let http = self.root_url("http")?;
        let (https_root, http_root) = (https.clone(), http.clone());
        let secure = self.ping(&https_root, false);
        let plain = self.ping(&http_root, true);
        tokio::pin!(secure, plain);
        let mut plain_result = None;
        let secure_result = loop {
            tokio::select! {
                result = &mut secure => break result,
                result = &mut plain, if plain_result.is_none() => plain_result = Some(result),
            }
        };
        match secure_result {
            Ok(challenge) => {
                self.learn(challenge.as_ref());
                Ok(https)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::Tls | ErrorKind::Network | ErrorKind::Timeout
                ) =>
            {
                let plain_result = match plain_result {
                    Some(result) => result,
                    None => plain.await,
                };
                let challenge = plain_result.map_err(|plain| {
                    plain.context(format!(
                        "https failed ({}), and so did plain http",
                        e.message()
                    ))
                })?;
                self.learn(challenge.as_ref());
                Ok(http)
            }
            Err(e) => Err(e),
        }
    }

    /// Remember the authentication challenge of the scheme discovery chose.
    fn learn(&self, challenge: Option<&HeaderMap>) {
        if let Some(headers) = challenge {
            self.auth.learn(headers);
        }
    }

    fn root_url(&self, scheme: &str) -> Result<Url> {
        Url::parse(&format!("{scheme}://{}/", self.api_host)).map_err(|e| {
            Error::new(
                ErrorKind::InvalidConfig,
                format!("registry host {:?} is not a valid host: {e}", self.host),
            )
        })
    }

    /// `GET /v2/`: is this a registry, and which challenge does it send? Returns the headers
    /// of a 401 answer for the caller to learn from once it has chosen this scheme (the other
    /// scheme's ping may be answered too, by something that is not the registry).
    async fn ping(&self, root: &Url, retry: bool) -> Result<Option<HeaderMap>> {
        let url = root.join("/v2/").expect("a fixed path joins any base");
        let what = format!("GET {}", display_url(&url));
        self.check_target(&url, &what)?;
        let mut retries = 0;
        loop {
            let sent = self.timed(self.http.get(url.clone()).send()).await;
            let sent = sent.map_err(|failed| failed.error);
            if retry
                && self
                    .pause_to_retry(&mut retries, sent.as_ref(), &what)
                    .await
            {
                continue;
            }
            let resp = sent.map_err(|e| e.context(&what))?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED {
                return Ok(Some(resp.headers().clone()));
            } else if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                return Err(error_for_status(resp, &what).await);
            }
            return Ok(None);
        }
    }

    /// Run a request future under the stall timeout (nothing back for that long is a timeout).
    pub(crate) async fn timed(
        &self,
        fut: impl Future<Output = reqwest::Result<Response>>,
    ) -> Result<Response, Failed> {
        let sent = tokio::time::timeout(self.options.stall_timeout, fut).await;
        // Every request to a registry or its token service passes here, once per attempt.
        match &sent {
            Ok(Ok(resp)) => count_request(Some(resp.url()), &self.host, Some(resp.status())),
            Ok(Err(e)) => count_request(e.url(), &self.host, None),
            Err(_) => count_request(None, &self.host, None),
        }
        match sent {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(Failed {
                unsent: e.is_connect(),
                error: map_reqwest_error(e, &self.host),
            }),
            Err(_) => Err(Failed {
                unsent: false,
                error: Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "{} did not answer within {:?}",
                        self.host, self.options.stall_timeout
                    ),
                ),
            }),
        }
    }

    /// Whether to repeat `what` after an attempt that ended in `outcome`, as
    /// [`RetryPolicy::wait_before`](super::RetryPolicy) decides; if so, waits that long and
    /// counts the retry in `retries`. Every retry loop of the client (the ping, [`Self::send`],
    /// the token fetch, the body and upload restarts) goes through here.
    pub(crate) async fn pause_to_retry(
        &self,
        retries: &mut u32,
        outcome: Result<&Response, &Error>,
        what: &str,
    ) -> bool {
        let Some(wait) = self.options.retry.wait_before(*retries, outcome) else {
            return false;
        };
        let why = match outcome {
            Ok(resp) => resp.status().to_string(),
            Err(e) => e.to_string(),
        };
        tracing::debug!(
            target: "regmirror::http",
            "{}; retrying in {wait:?}",
            self.secrets.scrub(&format!("{what}: {why}"))
        );
        *retries += 1;
        tokio::time::sleep(wait).await;
        true
    }

    /// Send a call: authorize it, retry what may be retried, re-authorize once on 401, follow
    /// redirects when asked. Returns the final response whatever its status.
    pub(crate) async fn send(&self, call: Call<'_>) -> Result<Response> {
        let base = self.base().await?.clone();
        let mut url = call.url.clone();
        let mut retries = 0u32;
        let mut reauthorized = false;
        let mut redirects = 0usize;
        loop {
            let what = format!("{} {}", call.method, display_url(&url));
            self.check_target(&url, &what)?;
            // Our credentials and tokens go to the registry only, never to a redirect target
            // such as object storage.
            let ours = url.origin() == base.origin();
            let authorization = if ours {
                self.authorization(call.scopes).await?
            } else {
                None
            };
            let mut request = self
                .http
                .request(call.method.clone(), url.clone())
                .headers(call.headers.clone());
            if let Some(value) = &authorization {
                request = request.header(AUTHORIZATION, value.clone());
            }
            if !call.body.is_empty()
                || matches!(call.method, Method::PUT | Method::POST | Method::PATCH)
            {
                request = request.body(call.body.clone());
            }
            let started = Instant::now();
            let sent = self.timed(request.send()).await;
            if call.measures_round_trip && ours && sent.is_ok() {
                self.metadata_window.observe(started.elapsed());
            }
            // A request never sent, or answered 429 or 503 (not processed), may go again even
            // when it is not safe to repeat (a POST).
            let may_repeat = call.retry
                || match &sent {
                    Err(failed) => failed.unsent,
                    Ok(resp) => matches!(
                        resp.status(),
                        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
                    ),
                };
            let sent = sent.map_err(|failed| failed.error);
            if may_repeat
                && self
                    .pause_to_retry(&mut retries, sent.as_ref(), &what)
                    .await
            {
                continue;
            }
            let resp = sent.map_err(|e| e.context(&what))?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && ours && !reauthorized {
                reauthorized = true;
                if self
                    .reauthorize(resp.headers(), call.scopes, authorization.is_some())
                    .await?
                {
                    continue;
                }
            }
            if status.is_redirection() && call.follow_redirects {
                let Some(location) = resp.headers().get(LOCATION) else {
                    return Ok(resp);
                };
                redirects += 1;
                if redirects > MAX_REDIRECTS {
                    return Err(Error::new(
                        ErrorKind::Network,
                        format!("{what}: more than {MAX_REDIRECTS} redirects"),
                    ));
                }
                let location = location.to_str().map_err(|_| {
                    Error::new(ErrorKind::Network, format!("{what}: unreadable redirect"))
                })?;
                url = self.resolve(&url, location)?;
                continue;
            }
            return Ok(resp);
        }
    }

    /// `resp` if its status is one of `ok`, else the error it stands for.
    pub(crate) async fn expect(
        &self,
        resp: Response,
        ok: &[StatusCode],
        what: &str,
    ) -> Result<Response> {
        let status = resp.status();
        if ok.contains(&status) {
            return Ok(resp);
        }
        let e = error_for_status(resp, what).await;
        match self.auth.basic_user() {
            Some(user) if status == StatusCode::UNAUTHORIZED => Err(Error::new(
                e.kind(),
                format!(
                    "{} (the registry refused the password of user {user:?})",
                    e.message()
                ),
            )),
            _ => Err(e),
        }
    }

    /// For the loops that repeat what `send` cannot (a body cut off after its headers arrived,
    /// an upload to restart): waits out the backoff and counts the retry when `e` is temporary
    /// and retries remain, otherwise gives `e` back.
    pub(crate) async fn back_off_or_fail(&self, e: Error, retries: &mut u32) -> Result<()> {
        if self.pause_to_retry(retries, Err(&e), "cut short").await {
            Ok(())
        } else {
            Err(e)
        }
    }

    /// Read a whole (small) body, refusing it as soon as it grows past `limit` bytes.
    pub(crate) async fn read_limited(
        &self,
        resp: Response,
        limit: usize,
        what: &str,
    ) -> Result<Bytes> {
        let too_big = || {
            Error::new(
                ErrorKind::InvalidManifest,
                format!("{what}: the response is larger than the {limit}-byte limit"),
            )
        };
        if resp.content_length().is_some_and(|len| len > limit as u64) {
            return Err(too_big());
        }
        let mut body = BytesMut::new();
        let mut stream = resp.bytes_stream();
        loop {
            let next = tokio::time::timeout(self.options.stall_timeout, stream.next())
                .await
                .map_err(|_| self.stalled(what))?;
            match next {
                None => return Ok(body.freeze()),
                Some(Err(e)) => return Err(map_reqwest_error(e, &self.host).context(what)),
                Some(Ok(chunk)) => {
                    if body.len() + chunk.len() > limit {
                        return Err(too_big());
                    }
                    body.extend_from_slice(&chunk);
                }
            }
        }
    }

    fn stalled(&self, what: &str) -> Error {
        Error::new(
            ErrorKind::Timeout,
            format!(
                "{what}: no data from {} for {:?}",
                self.host, self.options.stall_timeout
            ),
        )
    }

    /// A response body as a blob stream that fails with `Timeout` when it stalls and keeps
    /// `permit` (this request's slot under the per-host cap) until it is dropped.
    pub(crate) fn body_stream(
        &self,
        resp: Response,
        permit: OwnedSemaphorePermit,
        what: String,
    ) -> BlobStream {
        let stall = self.options.stall_timeout;
        let host: Arc<str> = self.host.as_str().into();
        let what: Arc<str> = what.into();
        let inner = resp.bytes_stream();
        let state = (inner, permit, false);
        Box::pin(futures::stream::unfold(
            state,
            move |(mut inner, permit, done)| {
                let what = Arc::clone(&what);
                let host = Arc::clone(&host);
                async move {
                    if done {
                        return None;
                    }
                    match tokio::time::timeout(stall, inner.next()).await {
                        Err(_) => Some((
                            Err(Error::new(
                                ErrorKind::Timeout,
                                format!("{what}: no data from {host} for {stall:?}"),
                            )
                            .at_host(&*host)),
                            (inner, permit, true),
                        )),
                        Ok(None) => None,
                        Ok(Some(Err(e))) => Some((
                            Err(map_reqwest_error(e, &host).context(&*what).at_host(&*host)),
                            (inner, permit, true),
                        )),
                        Ok(Some(Ok(bytes))) => Some((Ok(bytes), (inner, permit, false))),
                    }
                }
            },
        ))
    }
}

/// A URL fit for messages and logs: no query string (upload states, signed redirect URLs).
/// `regmirror_registry_requests_total{host, status}` (a no-op unless the program installed a
/// metrics recorder, as the worker does for its `/metrics`). The host is the URL's, with its
/// port (a token service or a redirect target counts under its own), or the registry's when
/// the request has none to show; a request that got no response counts as status `error`.
fn count_request(url: Option<&Url>, registry: &str, status: Option<StatusCode>) {
    let host = match url.map(|u| (u.host_str(), u.port())) {
        Some((Some(host), Some(port))) => format!("{host}:{port}"),
        Some((Some(host), None)) => host.to_owned(),
        _ => registry.to_owned(),
    };
    let status = status.map_or_else(|| "error".to_owned(), |s| s.as_u16().to_string());
    metrics::counter!("regmirror_registry_requests_total", "host" => host, "status" => status)
        .increment(1);
}

pub(crate) fn display_url(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    let _ = shown.set_password(None);
    let _ = shown.set_username("");
    shown.to_string()
}

/// The `{"errors":[{"code","message"}]}` body of a registry error (distribution spec), or the
/// `details`/`error` field token services use.
#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
    details: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct ErrorEntry {
    code: Option<String>,
    message: Option<String>,
}

/// The registry's error codes and messages from an error body, joined for a message.
pub(crate) fn parse_error_body(body: &[u8]) -> (Vec<String>, String) {
    let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body) else {
        return (Vec::new(), String::new());
    };
    let codes: Vec<String> = parsed
        .errors
        .iter()
        .filter_map(|e| e.code.clone())
        .collect();
    let mut parts: Vec<String> = parsed
        .errors
        .iter()
        .map(|e| match (&e.code, &e.message) {
            (Some(c), Some(m)) => format!("{c}: {m}"),
            (Some(c), None) => c.clone(),
            (None, Some(m)) => m.clone(),
            (None, None) => String::new(),
        })
        .filter(|s| !s.is_empty())
        .collect();
    parts.extend(parsed.details);
    parts.extend(parsed.error);
    let mut text = parts.join("; ");
    if text.len() > 500 {
        let mut end = 500;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    (codes, text.replace(['\n', '\r'], " "))
}

/// The error kind an HTTP status stands for, refined by the registry's error codes.
pub(crate) fn kind_for_status(status: StatusCode, codes: &[String]) -> ErrorKind {
    let has = |code: &str| codes.iter().any(|c| c == code);
    match status.as_u16() {
        401 => ErrorKind::Unauthorized,
        403 => ErrorKind::Forbidden,
        404 => ErrorKind::NotFound,
        408 => ErrorKind::Timeout,
        409 => ErrorKind::Conflict,
        429 => ErrorKind::RateLimited,
        400 if has("DIGEST_INVALID") || has("SIZE_INVALID") => ErrorKind::DigestMismatch,
        400 if has("NAME_INVALID") || has("TAG_INVALID") => ErrorKind::InvalidReference,
        400 | 413 | 415 => ErrorKind::InvalidManifest,
        405 | 501 => ErrorKind::Unsupported,
        504 => ErrorKind::Timeout,
        500..=599 => ErrorKind::Network,
        _ if status.is_client_error() => ErrorKind::Unsupported,
        _ => ErrorKind::Internal,
    }
}

/// The error a non-success response stands for, with the registry's error codes and messages.
pub(crate) async fn error_for_status(resp: Response, what: &str) -> Error {
    let status = resp.status();
    let mut body = BytesMut::new();
    let mut stream = resp.bytes_stream();
    // A short read: the body is only decoration for the message.
    while let Ok(Some(Ok(chunk))) =
        tokio::time::timeout(Duration::from_secs(5), stream.next()).await
    {
        let room = MAX_ERROR_BODY.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_ERROR_BODY {
            break;
        }
    }
    let (codes, text) = parse_error_body(&body);
    let kind = kind_for_status(status, &codes);
    let mut message = format!("{what}: {status}");
    if !text.is_empty() {
        message.push_str(": ");
        message.push_str(&text);
    }
    Error::new(kind, message)
}

/// Map a transport error: TLS failures, timeouts, connection problems. The URL (which may carry
/// upload state or a signed query) is left out.
pub(crate) fn map_reqwest_error(e: reqwest::Error, host: &str) -> Error {
    let e = e.without_url();
    let mut chain = Vec::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        let text = err.to_string();
        if !chain.iter().any(|seen: &String| seen.contains(&text)) {
            chain.push(text);
        }
        source = err.source();
    }
    if let Some(refused) = find_source::<Refused>(&e) {
        return Error::from(Failure::from(&refused.0));
    }
    let detail = chain.join(": ");
    let (kind, message, recognised) = if let Some(tls) = find_source::<rustls::Error>(&e) {
        let (problem, recognised) = tls_problem(tls);
        (
            ErrorKind::Tls,
            format!("TLS with {host} failed: {problem}"),
            recognised,
        )
    } else if find_source::<Unresolved>(&e).is_some() {
        let message = format!("cannot connect to {host}: {detail}");
        (ErrorKind::Network, message, Some(Detail::Dns))
    } else if e.is_timeout() {
        (
            ErrorKind::Timeout,
            format!("{host} timed out: {detail}"),
            None,
        )
    } else if e.is_connect() {
        let message = format!("cannot connect to {host}: {detail}");
        (ErrorKind::Network, message, None)
    } else {
        (
            ErrorKind::Network,
            format!("talking to {host}: {detail}"),
            None,
        )
    };
    let error = Error::new(kind, message).with_source(e);
    match recognised {
        Some(recognised) => error.with_detail(recognised),
        None => error,
    }
}

/// What went wrong in a TLS handshake, with what to do about it. A server that answers a TLS
/// hello in plain HTTP shows up as a record of an invalid content type; say so plainly, since a
/// registry on plain HTTP is the usual local setup.
fn tls_problem(e: &rustls::Error) -> (String, Option<Detail>) {
    let problem = match e {
        rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => {
            return (
                "it answered in plain HTTP, not TLS (turn TLS verification off for it to allow \
                 plain HTTP)"
                    .to_owned(),
                Some(Detail::PlainHttp),
            );
        }
        rustls::Error::InvalidCertificate(_) => {
            format!("{e} (trust its CA certificate, or turn TLS verification off for it)")
        }
        _ => e.to_string(),
    };
    (problem, None)
}

/// The error of type `E` behind a transport error (a rustls error, the SSRF guard's refusal),
/// if any. `io::Error::source` skips the error it wraps, so wrapped errors are opened with
/// `get_ref`.
fn find_source<'a, E: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a E> {
    if let Some(found) = err.downcast_ref::<E>() {
        return Some(found);
    }
    if let Some(io) = err.downcast_ref::<std::io::Error>()
        && let Some(inner) = io.get_ref()
        && let Some(found) = find_source::<E>(inner)
    {
        return Some(found);
    }
    err.source().and_then(find_source::<E>)
}

/// A request that got no response.
pub(crate) struct Failed {
    pub error: Error,
    /// It failed while connecting, so the server never saw it and repeating it is always safe.
    pub unsent: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_problems_say_what_to_do() {
        let plain = rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType);
        let (problem, detail) = tls_problem(&plain);
        assert!(problem.contains("plain HTTP"), "{problem}");
        assert_eq!(detail, Some(Detail::PlainHttp));
        let unknown = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let (problem, detail) = tls_problem(&unknown);
        assert!(problem.contains("UnknownIssuer"), "{problem}");
        assert!(problem.contains("trust its CA"), "{problem}");
        assert_eq!(detail, None);
    }

    #[test]
    fn statuses_map_to_kinds() {
        let none: &[String] = &[];
        let k = |code: u16| kind_for_status(StatusCode::from_u16(code).unwrap(), none);
        assert_eq!(k(401), ErrorKind::Unauthorized);
        assert_eq!(k(403), ErrorKind::Forbidden);
        assert_eq!(k(404), ErrorKind::NotFound);
        assert_eq!(k(429), ErrorKind::RateLimited);
        assert_eq!(k(503), ErrorKind::Network);
        assert_eq!(k(405), ErrorKind::Unsupported);
        let digest = ["DIGEST_INVALID".to_owned()];
        assert_eq!(
            kind_for_status(StatusCode::BAD_REQUEST, &digest),
            ErrorKind::DigestMismatch
        );
        let manifest = ["MANIFEST_BLOB_UNKNOWN".to_owned()];
        assert_eq!(
            kind_for_status(StatusCode::BAD_REQUEST, &manifest),
            ErrorKind::InvalidManifest
        );
    }

    #[test]
    fn registry_error_bodies_become_messages() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}},
            {"code":"NAME_UNKNOWN","message":"repository name not known\nto registry"}]}"#;
        let (codes, text) = parse_error_body(body);
        assert_eq!(codes, ["MANIFEST_UNKNOWN", "NAME_UNKNOWN"]);
        assert_eq!(
            text,
            "MANIFEST_UNKNOWN: manifest unknown; NAME_UNKNOWN: repository name not known to registry"
        );
        let (_, text) = parse_error_body(br#"{"details":"incorrect username or password"}"#);
        assert_eq!(text, "incorrect username or password");
        assert_eq!(parse_error_body(b"<html>oops</html>").1, "");
    }

    #[test]
    fn urls_in_messages_lose_their_query() {
        let url = Url::parse("https://u:p@s3.example/bucket/blob?X-Amz-Signature=secret&_state=s")
            .unwrap();
        let shown = display_url(&url);
        assert_eq!(shown, "https://s3.example/bucket/blob");
    }
}
