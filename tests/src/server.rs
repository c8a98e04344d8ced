//! A small HTTP/1 server on a loopback port, plain or TLS, running on its own thread and tokio
//! runtime so that both sync and async tests can use it; stopped on drop. The token issuer and
//! the proxy use it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;

use crate::tls::ServerTls;

/// The error type of response bodies: a failing body aborts the connection mid-response.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;
/// A response body that may stream.
pub type Body = UnsyncBoxBody<Bytes, BodyError>;

/// A whole response body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|e| match e {})
        .boxed_unsync()
}

/// Marks a response that must not be sent: the connection is dropped instead.
#[derive(Debug, Clone, Copy)]
struct AbortConnection;

impl std::fmt::Display for AbortConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose")
    }
}

impl std::error::Error for AbortConnection {}

/// A response that drops the connection without answering (a handler's way to cut a request).
pub fn abort_connection() -> Response<Body> {
    let mut response = Response::new(full(""));
    response.extensions_mut().insert(AbortConnection);
    response
}

/// A running server; dropping it stops accepting and joins its thread.
#[derive(Debug)]
pub struct BackgroundServer {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BackgroundServer {
    /// Serve `handler` on a free port of 127.0.0.1.
    pub fn start<H, F>(name: &str, handler: H) -> BackgroundServer
    where
        H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
        F: Future<Output = Response<Body>> + Send + 'static,
    {
        BackgroundServer::serve(name, None, handler)
    }

    /// Serve `handler` over TLS with `tls`'s server certificate (valid for 127.0.0.1 and
    /// localhost) on a free port of 127.0.0.1.
    pub fn start_tls<H, F>(name: &str, tls: &ServerTls, handler: H) -> BackgroundServer
    where
        H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
        F: Future<Output = Response<Body>> + Send + 'static,
    {
        let read = |path: &std::path::Path| {
            std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        };
        let cert = CertificateDer::from_pem_slice(&read(&tls.cert_pem))
            .expect("the kit's server certificate is PEM");
        let key = PrivateKeyDer::from_pem_slice(&read(&tls.key_pem))
            .expect("the kit's server key is PEM");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("the default protocol versions are supported")
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .expect("the kit's certificate matches its key");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        BackgroundServer::serve(name, Some(acceptor), handler)
    }

    fn serve<H, F>(
        name: &str,
        tls: Option<tokio_rustls::TlsAcceptor>,
        handler: H,
    ) -> BackgroundServer
    where
        H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
        F: Future<Output = Response<Body>> + Send + 'static,
    {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
        let addr = listener
            .local_addr()
            .expect("a bound socket has an address");
        listener
            .set_nonblocking(true)
            .expect("tokio needs a non-blocking listener");
        let (shutdown, mut stopped) = watch::channel(false);
        let handler = Arc::new(handler);
        let thread = std::thread::Builder::new()
            .name(format!("testkit-{name}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("building the test server runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("registering the listener with tokio");
                    loop {
                        let (stream, _) = tokio::select! {
                            accepted = listener.accept() => match accepted {
                                Ok(conn) => conn,
                                // E.g. out of file descriptors: back off instead of spinning.
                                Err(_) => {
                                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                                    continue;
                                }
                            },
                            _ = stopped.changed() => break,
                        };
                        let handler = handler.clone();
                        let service = service_fn(move |req| {
                            let handler = handler.clone();
                            async move {
                                let response = handler(req).await;
                                // An error from the service makes hyper drop the connection.
                                match response.extensions().get::<AbortConnection>() {
                                    Some(abort) => Err(*abort),
                                    None => Ok(response),
                                }
                            }
                        });
                        let tls = tls.clone();
                        tokio::spawn(async move {
                            // A connection error (e.g. a fault cut on purpose, a client that
                            // refuses the certificate) ends that connection only.
                            let http = http1::Builder::new();
                            match tls {
                                None => {
                                    let _ =
                                        http.serve_connection(TokioIo::new(stream), service).await;
                                }
                                Some(acceptor) => {
                                    if let Ok(stream) = acceptor.accept(stream).await {
                                        let _ = http
                                            .serve_connection(TokioIo::new(stream), service)
                                            .await;
                                    }
                                }
                            }
                        });
                    }
                });
                // Dropping the runtime here cancels every connection still open.
            })
            .expect("spawning the test server thread");
        BackgroundServer {
            addr,
            shutdown,
            thread: Some(thread),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for BackgroundServer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
