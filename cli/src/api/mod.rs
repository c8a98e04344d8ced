//! The worker's HTTP endpoint (`[api]` in regmirror.toml): Quay's mirror API over the core's
//! `Mirror` handle, Prometheus metrics, health checks and a status page for people. It runs on
//! the worker's tokio runtime and stops with the worker. Handlers translate between HTTP and
//! the `Mirror` methods; the rules (validation, status transitions) are the core's.

pub mod metrics;
mod page;
mod quay;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use base64::Engine as _;
use metrics_exporter_prometheus::PrometheusHandle;
use regmirror::engine::Mirror;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::failure::{CliResult, Failure};
use crate::worker_config::ApiConfig;

/// How long a client may take to send a request's headers (a connection that trickles them
/// is closed); bodies are bounded by axum's 2 MiB limit, and handlers by the store's timeouts.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// What the handlers share.
#[derive(Clone)]
struct Api {
    mirror: Mirror,
    /// SHA-256 of the token: compared in constant time whatever the length of what is sent.
    token_hash: [u8; 32],
    metrics: PrometheusHandle,
    worker: Arc<WorkerState>,
}

/// Whether the worker loop is claiming: set when it starts, cleared when shutdown begins.
#[derive(Debug, Default)]
pub struct WorkerState {
    claiming: AtomicBool,
}

impl WorkerState {
    pub fn set_claiming(&self, claiming: bool) {
        self.claiming.store(claiming, Ordering::SeqCst);
    }

    fn is_claiming(&self) -> bool {
        self.claiming.load(Ordering::SeqCst)
    }
}

/// The running endpoint; [`Server::stop`] ends it.
#[derive(Debug)]
pub struct Server {
    handle: Handle<SocketAddr>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Bind `config.listen` and serve in the background.
    pub async fn start(
        config: &ApiConfig,
        mirror: Mirror,
        metrics: PrometheusHandle,
        worker: Arc<WorkerState>,
    ) -> CliResult<(Server, SocketAddr)> {
        let listener = std::net::TcpListener::bind(&config.listen).map_err(|e| {
            Failure::invalid(format!(
                "api: listen: cannot listen on {}: {e}",
                config.listen
            ))
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Failure::invalid(format!("api: listen: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Failure::invalid(format!("api: listen: {e}")))?;
        let api = Api {
            mirror,
            token_hash: Sha256::digest(config.token.0.as_bytes()).into(),
            metrics,
            worker,
        };
        let app = router(api).into_make_service();
        let handle = Handle::new();
        let task = match &config.tls {
            None => {
                let mut server = axum_server::from_tcp(listener)
                    .map_err(|e| Failure::invalid(format!("api: listen: {e}")))?
                    .handle(handle.clone());
                server
                    .http_builder()
                    .http1()
                    .header_read_timeout(HEADER_TIMEOUT);
                tokio::spawn(server.serve(app))
            }
            Some((cert, key)) => {
                let tls = RustlsConfig::from_pem_file(cert, key).await.map_err(|e| {
                    Failure::invalid(format!(
                        "api: tls_cert {} / tls_key {}: {e}",
                        cert.display(),
                        key.display()
                    ))
                })?;
                let mut server = axum_server::from_tcp_rustls(listener, tls)
                    .map_err(|e| Failure::invalid(format!("api: listen: {e}")))?
                    .handle(handle.clone());
                // (The TLS handshake has axum-server's own bound, 10 s.)
                server
                    .http_builder()
                    .http1()
                    .header_read_timeout(HEADER_TIMEOUT);
                tokio::spawn(server.serve(app))
            }
        };
        Ok((Server { handle, task }, addr))
    }

    /// Stop accepting, let requests in flight finish for up to `grace`, then close.
    pub async fn stop(self, grace: Duration) {
        self.handle.graceful_shutdown(Some(grace));
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("the API endpoint stopped with an error: {e}"),
            Err(e) => tracing::warn!("the API endpoint task failed: {e}"),
        }
    }
}

fn router(api: Api) -> Router {
    let protected = Router::new()
        .route("/", get(page::status))
        .route("/logs/{*id}", get(page::logs))
        .route("/metrics", get(metrics_text))
        .nest("/api/v1", quay::routes())
        .layer(axum::middleware::from_fn_with_state(api.clone(), authorize));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(protected)
        .with_state(api)
}

/// Every route but the health checks needs the token: `Authorization: Bearer TOKEN`, or HTTP
/// Basic with the token as the password (what a browser sends for the status page).
async fn authorize(State(api): State<Api>, request: Request, next: Next) -> Response {
    if presented_token(request.headers())
        .is_some_and(|token| Sha256::digest(token).ct_eq(&api.token_hash).into())
    {
        return next.run(request).await;
    }
    let mut response = quay::error(
        StatusCode::UNAUTHORIZED,
        "invalid_token",
        "the request needs Authorization: Bearer TOKEN (the token in [api] token_file or token_env)",
    );
    let challenges = response.headers_mut();
    challenges.append(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"regmirror\""),
    );
    challenges.append(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"regmirror\", charset=\"UTF-8\""),
    );
    response
}

/// The token a request carries, if any.
fn presented_token(headers: &HeaderMap) -> Option<Vec<u8>> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credentials) = value.split_once(' ')?;
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        Some(credentials.as_bytes().to_vec())
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(credentials)
            .ok()?;
        let colon = decoded.iter().position(|&b| b == b':')?;
        Some(decoded[colon + 1..].to_vec())
    } else {
        None
    }
}

/// Live while the process serves: the worker loop and this endpoint share its runtime.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready while the worker claims and the state store answered its last call in time.
async fn readyz(State(api): State<Api>) -> Response {
    let health = api.mirror.store_health();
    let (status, body) = if !api.worker.is_claiming() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the worker is not claiming (starting or shutting down)\n".to_owned(),
        )
    } else if let Some(e) = health.last_error() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: the state store does not answer: {e}\n"),
        )
    } else {
        (StatusCode::OK, "ready\n".to_owned())
    };
    (status, body).into_response()
}

async fn metrics_text(State(api): State<Api>) -> Response {
    metrics::observe_health(api.mirror.store_health().is_healthy());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        api.metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_of(authorization: &str) -> Option<Vec<u8>> {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, authorization.parse().unwrap());
        presented_token(&headers)
    }

    #[test]
    fn a_token_comes_as_bearer_or_as_the_basic_password() {
        assert_eq!(token_of("Bearer s3cr:t").as_deref(), Some(&b"s3cr:t"[..]));
        assert_eq!(token_of("bearer s3cr:t").as_deref(), Some(&b"s3cr:t"[..]));
        // A browser's Basic login: any user name, the token as the password (colons kept).
        let basic = base64::engine::general_purpose::STANDARD.encode("me:s3cr:t");
        assert_eq!(
            token_of(&format!("Basic {basic}")).as_deref(),
            Some(&b"s3cr:t"[..])
        );
        assert_eq!(token_of("Basic not-base64!"), None);
        assert_eq!(token_of("Digest s3cr:t"), None);
        assert_eq!(token_of("s3cr:t"), None);
        assert_eq!(presented_token(&HeaderMap::new()), None);
    }
}
