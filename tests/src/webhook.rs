//! A webhook receiver on a loopback port: records every POST (headers and body) and answers
//! 200, fails the first requests ([`WebhookReceiver::failing`]) to test retries, or never
//! answers at all ([`WebhookReceiver::hanging`]) to test notifier timeouts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{Response, StatusCode};

use crate::server::{BackgroundServer, full};

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Header names lowercased.
    pub headers: HashMap<String, String>,
    pub body: Bytes,
}

impl Received {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the webhook body is JSON")
    }
}

/// The running receiver; dropping it stops it.
#[derive(Debug)]
pub struct WebhookReceiver {
    received: Arc<Mutex<Vec<Received>>>,
    server: BackgroundServer,
}

impl WebhookReceiver {
    /// Answers every request with 200.
    pub fn start() -> WebhookReceiver {
        WebhookReceiver::serve(None, 0)
    }

    /// Answers the first `failures` requests with 503, then 200.
    pub fn failing(failures: usize) -> WebhookReceiver {
        WebhookReceiver::serve(None, failures)
    }

    /// Records every request and then never answers (until the receiver is dropped).
    pub fn hanging() -> WebhookReceiver {
        WebhookReceiver::serve(Some(Duration::from_secs(3600)), 0)
    }

    fn serve(delay: Option<Duration>, failures: usize) -> WebhookReceiver {
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        let failures_left = Arc::new(AtomicUsize::new(failures));
        let server = BackgroundServer::start("webhook", move |req| {
            let sink = sink.clone();
            let failures_left = failures_left.clone();
            async move {
                let (parts, body) = req.into_parts();
                let body = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let headers = parts
                    .headers
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.as_str().to_owned(),
                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        )
                    })
                    .collect();
                sink.lock().expect("webhook log lock").push(Received {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_owned(),
                    headers,
                    body,
                });
                if let Some(delay) = delay {
                    tokio::time::sleep(delay).await;
                }
                let fail = failures_left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                let mut response = Response::new(full(Bytes::new()));
                *response.status_mut() = if fail {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                };
                response
            }
        });
        WebhookReceiver { received, server }
    }

    /// `http://127.0.0.1:PORT/hook`.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.server.addr())
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("webhook log lock").clone()
    }

    /// Wait until at least `n` requests arrived (or `timeout` passed); returns what arrived.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let start = Instant::now();
        loop {
            let got = self.received();
            if got.len() >= n || start.elapsed() > timeout {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
