//! A reverse proxy on a loopback port in front of a registry: it records every request (to prove
//! what a client did or did not fetch) and injects faults (error statuses with or without
//! `Retry-After`, connections cut mid-response or mid-request, stalls, answers lost after the
//! registry did the work, rewritten headers, redirects). Absolute `Location` headers pointing at the registry are rewritten to the proxy, so
//! upload sessions and redirects keep going through it.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use http_body_util::{BodyDataStream, BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderName, HeaderValue, LOCATION};
use hyper::{Request, Response, StatusCode};

use regmirror::registry::http::{HttpOptions, HttpRegistry};

use crate::registry::{Registry, client_options};
use crate::server::{BackgroundServer, Body, BodyError, abort_connection, full};

/// What to do instead of forwarding a matching request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status (and a small JSON error body) without contacting the registry.
    Status(u16),
    /// Read the whole request body, then answer with this status without contacting the
    /// registry (an upload whose every byte went through, refused at the end).
    StatusAfterBody(u16),
    /// Answer with this status, `Content-Type` and body without contacting the registry (to
    /// serve what a real registry would refuse to store: schema 1, oversized manifests). A
    /// `Docker-Content-Digest` of the body is added, as registries send for manifests.
    Respond {
        status: u16,
        content_type: String,
        body: Bytes,
    },
    /// Forward, but cut the connection after this many bytes of the response body.
    CutBody { after: usize },
    /// Forward, but after this many bytes of the response body send nothing for `pause`, then
    /// the rest (a stalled transfer, for timeout tests).
    StallBody { after: usize, pause: Duration },
    /// Never answer: the request hangs until the client gives up or the proxy stops (a worker
    /// stuck mid-run, to be killed there).
    Hang,
    /// Wait this long, then forward (a slow registry: each request takes at least this).
    Delay(Duration),
    /// Answer with this status and a `Retry-After` header of `after` (seconds or an HTTP
    /// date) without contacting the registry.
    RetryAfter { status: u16, after: String },
    /// Forward the request (the registry does the work), then answer with this status instead
    /// of the registry's answer: a response lost after the registry committed the change.
    ForwardThenStatus(u16),
    /// Forward, but set this header on the response (e.g. a `Docker-Content-Digest` that does
    /// not match the bytes).
    Header { name: String, value: String },
    /// Answer `307 Temporary Redirect` to this `Location` without contacting the registry.
    Redirect(String),
    /// Read this many bytes of the request body (all of it if shorter), then drop the
    /// connection without answering: an upload cut mid-request.
    CutRequest { after: usize },
}

#[derive(Debug)]
struct Rule {
    method: String,
    path_contains: String,
    fault: Fault,
    remaining: usize,
}

/// One request the proxy saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub path: String,
    /// When the request's head arrived.
    pub at: std::time::SystemTime,
    /// When the proxy sent the answer's head (`None` while it has not, or never will).
    pub answered: Option<std::time::SystemTime>,
}

#[derive(Debug)]
struct State {
    /// Whether the registry behind wants the kit user's credentials.
    auth: bool,
    upstream: String,
    own_base: String,
    client: reqwest::Client,
    seen: Mutex<Vec<Seen>>,
    rules: Mutex<Vec<Rule>>,
}

/// The running proxy; dropping it stops it.
#[derive(Debug)]
pub struct Proxy {
    state: Arc<State>,
    server: BackgroundServer,
}

impl Proxy {
    /// A plain-HTTP proxy in front of `registry` (which may itself be TLS).
    pub fn start(registry: &Registry) -> Proxy {
        Proxy::with_auth(
            &registry.base_url(),
            registry.ca_pem(),
            registry.requires_auth(),
        )
    }

    /// A plain-HTTP proxy in front of `upstream` (`http(s)://host:port`), trusting `ca_pem`.
    pub fn to(upstream: &str, ca_pem: Option<&Path>) -> Proxy {
        Proxy::with_auth(upstream, ca_pem, false)
    }

    fn with_auth(upstream: &str, ca_pem: Option<&Path>, auth: bool) -> Proxy {
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = ca_pem {
            let pem = std::fs::read(ca).expect("reading the test CA");
            builder = builder.add_root_certificate(
                reqwest::Certificate::from_pem(&pem).expect("the test CA is valid PEM"),
            );
        }
        let client = builder.build().expect("building the proxy client");
        // The listening address is known only once the server runs, and the handler needs it to
        // rewrite Location headers: hand it over through a once-cell.
        let cell: Arc<std::sync::OnceLock<Arc<State>>> = Arc::new(std::sync::OnceLock::new());
        let handler_cell = cell.clone();
        let server = BackgroundServer::start("proxy", move |req| {
            let state = handler_cell
                .get()
                .expect("the proxy state is set before the address is published")
                .clone();
            async move { state.handle(req).await }
        });
        let state = Arc::new(State {
            auth,
            upstream: upstream.trim_end_matches('/').to_owned(),
            own_base: format!("http://{}", server.addr()),
            client,
            seen: Mutex::new(Vec::new()),
            rules: Mutex::new(Vec::new()),
        });
        cell.set(state.clone())
            .expect("the proxy state is set exactly once");
        Proxy { state, server }
    }

    /// `127.0.0.1:PORT`, the host a client should use to go through the proxy.
    pub fn host(&self) -> String {
        self.server.addr().to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.state.own_base.clone()
    }

    /// Options for regmirror's HTTP client to go through the proxy (plain HTTP; the registry's
    /// credentials when it needs them).
    pub fn http_options(&self) -> HttpOptions {
        client_options(None, self.state.auth)
    }

    /// A client of regmirror's HTTP backend that goes through the proxy.
    pub fn client(&self) -> HttpRegistry {
        HttpRegistry::new(&self.host(), self.http_options())
            .expect("the kit's client options are valid")
    }

    /// How many requests with `method` (e.g. `"GET"`; `"*"` for any) had a path containing
    /// `path_contains` (e.g. `"/blobs/"`).
    pub fn count(&self, method: &str, path_contains: &str) -> usize {
        self.requests()
            .iter()
            .filter(|s| (method == "*" || s.method == method) && s.path.contains(path_contains))
            .count()
    }

    /// Every request seen so far, in order.
    pub fn requests(&self) -> Vec<Seen> {
        self.state.seen.lock().expect("proxy log lock").clone()
    }

    /// The most requests with `method` (`"*"` for any) and a path containing `path_contains`
    /// the proxy had taken but not yet answered at any one time (see [`max_in_flight`]).
    pub fn max_in_flight(&self, method: &str, path_contains: &str) -> usize {
        max_in_flight(
            self.requests().iter().filter(|s| {
                (method == "*" || s.method == method) && s.path.contains(path_contains)
            }),
        )
    }

    /// Forget the requests seen so far.
    pub fn reset_counts(&self) {
        self.state.seen.lock().expect("proxy log lock").clear();
    }

    /// Drop every fault rule not used up yet.
    pub fn clear_faults(&self) {
        self.state.rules.lock().expect("proxy rules lock").clear();
    }

    /// Apply `fault` to the next `times` requests with `method` (`"*"` for any) whose path
    /// contains `path_contains`. Rules are checked in the order they were added.
    pub fn inject(&self, method: &str, path_contains: &str, fault: Fault, times: usize) {
        self.state
            .rules
            .lock()
            .expect("proxy rules lock")
            .push(Rule {
                method: method.to_owned(),
                path_contains: path_contains.to_owned(),
                fault,
                remaining: times,
            });
    }
}

/// The most of `requests` (of one proxy or several) taken but not yet answered (the head of
/// the answer sent) at any one time: the concurrency a client reached.
pub fn max_in_flight<'a>(requests: impl IntoIterator<Item = &'a Seen>) -> usize {
    // +1 where a request arrived, -1 where it was answered; at the same instant an answer goes
    // first (the two did not overlap).
    let mut edges: Vec<(std::time::SystemTime, i64)> = Vec::new();
    for seen in requests {
        edges.push((seen.at, 1));
        if let Some(answered) = seen.answered {
            edges.push((answered, -1));
        }
    }
    edges.sort();
    let (mut now, mut most) = (0i64, 0i64);
    for (_, edge) in edges {
        now += edge;
        most = most.max(now);
    }
    usize::try_from(most).expect("never below zero")
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

impl State {
    fn take_fault(&self, method: &str, path: &str) -> Option<Fault> {
        let mut rules = self.rules.lock().expect("proxy rules lock");
        let rule = rules.iter_mut().find(|r| {
            r.remaining > 0
                && (r.method == "*" || r.method == method)
                && path.contains(&r.path_contains)
        })?;
        rule.remaining -= 1;
        Some(rule.fault.clone())
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let method = req.method().as_str().to_owned();
        let path = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".to_owned());
        let at = std::time::SystemTime::now();
        self.seen.lock().expect("proxy log lock").push(Seen {
            method: method.clone(),
            path: path.clone(),
            at,
            answered: None,
        });
        let response = self.respond(req, &method, &path).await;
        let mut seen = self.seen.lock().expect("proxy log lock");
        // Found by its arrival (the log may have been reset meanwhile).
        if let Some(entry) = seen
            .iter_mut()
            .rev()
            .find(|s| s.at == at && s.method == method && s.path == path)
        {
            entry.answered = Some(std::time::SystemTime::now());
        }
        response
    }

    /// The answer to `req`: a fault's, or the registry's.
    async fn respond(&self, req: Request<Incoming>, method: &str, path: &str) -> Response<Body> {
        let fault = self.take_fault(method, path);
        match &fault {
            Some(Fault::Hang) => return std::future::pending().await,
            Some(Fault::Delay(pause)) => tokio::time::sleep(*pause).await,
            Some(Fault::RetryAfter { status, after }) => {
                return Response::builder()
                    .status(StatusCode::from_u16(*status).expect("injected statuses are valid"))
                    .header("retry-after", after)
                    .body(full(""))
                    .expect("an injected response is valid");
            }
            Some(Fault::Redirect(location)) => {
                return Response::builder()
                    .status(StatusCode::TEMPORARY_REDIRECT)
                    .header(LOCATION, location)
                    .body(full(""))
                    .expect("an injected response is valid");
            }
            Some(Fault::CutRequest { after }) => {
                let mut body = req.into_body();
                let mut read = 0;
                // Whatever ends the read (the limit, the body's end, an error), the answer is
                // a dropped connection.
                while read < *after {
                    match body.frame().await {
                        Some(Ok(frame)) => {
                            read += frame.data_ref().map_or(0, Bytes::len);
                        }
                        _ => break,
                    }
                }
                return abort_connection();
            }
            _ => {}
        }
        if let Some(Fault::Status(code) | Fault::StatusAfterBody(code)) = fault {
            if matches!(fault, Some(Fault::StatusAfterBody(_))) {
                // Whatever the body holds, the answer is the fault: a read error changes nothing.
                let _ = req.into_body().collect().await;
            }
            let status = StatusCode::from_u16(code).expect("injected statuses are valid");
            return Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(full(format!(
                    r#"{{"errors":[{{"code":"UNKNOWN","message":"injected fault {code}"}}]}}"#
                )))
                .expect("an injected response is valid");
        }
        if let Some(Fault::Respond {
            status,
            content_type,
            body,
        }) = fault
        {
            let digest = regmirror::Digest::of(&body);
            return Response::builder()
                .status(StatusCode::from_u16(status).expect("injected statuses are valid"))
                .header("content-type", content_type)
                .header("docker-content-digest", digest.as_str())
                .header("content-length", body.len())
                .body(full(body))
                .expect("an injected response is valid");
        }
        match self.forward(req, path).await {
            Ok(mut response) => match fault {
                Some(Fault::CutBody { after }) => interrupt_after(response, after, None),
                Some(Fault::StallBody { after, pause }) => {
                    interrupt_after(response, after, Some(pause))
                }
                Some(Fault::ForwardThenStatus(code)) => {
                    // The registry's answer is read to its end (the work is done), then lost.
                    let _ = response.into_body().collect().await;
                    Response::builder()
                        .status(StatusCode::from_u16(code).expect("injected statuses are valid"))
                        .header("content-type", "application/json")
                        .body(full(format!(
                            r#"{{"errors":[{{"code":"UNKNOWN","message":"injected fault {code} after forwarding"}}]}}"#
                        )))
                        .expect("an injected response is valid")
                }
                Some(Fault::Header { name, value }) => {
                    response.headers_mut().insert(
                        HeaderName::from_bytes(name.as_bytes())
                            .expect("injected header names are valid"),
                        HeaderValue::from_str(&value).expect("injected header values are valid"),
                    );
                    response
                }
                _ => response,
            },
            Err(e) => Response::builder()
                .status(StatusCode::BAD_GATEWAY)
                .body(full(format!("proxy: {e}")))
                .expect("an error response is valid"),
        }
    }

    async fn forward(
        &self,
        req: Request<Incoming>,
        path: &str,
    ) -> Result<Response<Body>, reqwest::Error> {
        let (parts, body) = req.into_parts();
        let mut upstream = self
            .client
            .request(parts.method, format!("{}{path}", self.upstream));
        for (name, value) in &parts.headers {
            if !HOP_BY_HOP.contains(&name.as_str()) {
                upstream = upstream.header(name, value);
            }
        }
        let body = BodyDataStream::new(body);
        let response = upstream
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await?;
        let mut builder = Response::builder().status(response.status());
        for (name, value) in response.headers() {
            if HOP_BY_HOP.contains(&name.as_str()) {
                continue;
            }
            builder = builder.header(name, self.rewrite(name, value));
        }
        let stream = response
            .bytes_stream()
            .map(|chunk| chunk.map(Frame::data).map_err(|e| Box::new(e) as BodyError));
        Ok(builder
            .body(BodyExt::boxed_unsync(StreamBody::new(stream)))
            .expect("copied headers are valid"))
    }

    /// Point absolute `Location`s at the registry back at the proxy.
    fn rewrite(&self, name: &HeaderName, value: &HeaderValue) -> HeaderValue {
        if name != LOCATION {
            return value.clone();
        }
        match value.to_str() {
            Ok(location) if location.starts_with(&self.upstream) => {
                let rewritten = format!("{}{}", self.own_base, &location[self.upstream.len()..]);
                HeaderValue::from_str(&rewritten).expect("a rewritten Location stays valid")
            }
            _ => value.clone(),
        }
    }
}

/// Pass `after` bytes of the body through, then either stall for `pause` and go on, or (no
/// pause) fail the body so hyper drops the connection: the client sees a truncated response
/// under the original Content-Length. A cut waits a moment first so the status line and the
/// partial body are flushed, as on a real network.
fn interrupt_after(
    response: Response<Body>,
    after: usize,
    pause: Option<Duration>,
) -> Response<Body> {
    type Frames = futures::stream::BoxStream<'static, Result<Frame<Bytes>, BodyError>>;
    let interruption = move || -> Frames {
        match pause {
            Some(pause) => futures::stream::once(async move {
                tokio::time::sleep(pause).await;
            })
            .filter_map(|()| async { None })
            .boxed(),
            None => futures::stream::once(async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Err::<Frame<Bytes>, BodyError>("connection cut by injected fault".into())
            })
            .boxed(),
        }
    };
    let (parts, body) = response.into_parts();
    // `None` once the interruption has happened: the rest flows through unchanged.
    let mut left = Some(after);
    let stream = BodyDataStream::new(body).flat_map(move |chunk| -> Frames {
        let bytes = match chunk {
            Err(e) => return futures::stream::iter([Err(e)]).boxed(),
            Ok(bytes) => bytes,
        };
        match left {
            Some(n) if bytes.len() < n => {
                left = Some(n - bytes.len());
                futures::stream::iter([Ok(Frame::data(bytes))]).boxed()
            }
            Some(n) => {
                left = None;
                let (head, tail) = (bytes.slice(..n), bytes.slice(n..));
                let rest: Frames = match pause {
                    Some(_) => futures::stream::iter([Ok(Frame::data(tail))]).boxed(),
                    None => futures::stream::empty().boxed(),
                };
                futures::stream::iter([Ok(Frame::data(head))])
                    .chain(interruption())
                    .chain(rest)
                    .boxed()
            }
            None if pause.is_some() => futures::stream::iter([Ok(Frame::data(bytes))]).boxed(),
            // After a cut, nothing more is sent (the cut's error ends the body anyway).
            None => futures::stream::empty().boxed(),
        }
    });
    Response::from_parts(parts, BodyExt::boxed_unsync(StreamBody::new(stream)))
}
