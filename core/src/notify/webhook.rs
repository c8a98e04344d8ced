//! [`WebhookNotifier`]: each event POSTed as JSON to a URL, with a timeout, retries, and an
//! optional HMAC-SHA256 signature so the receiver can check who sent it.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use url::Url;

use super::{MirrorEvent, Notifier};
use crate::error::{Error, ErrorKind, Result};

/// The header carrying `sha256=<hex HMAC-SHA256 of the body>` when a secret is set.
pub const SIGNATURE_HEADER: &str = "X-Regmirror-Signature";
/// The header naming the event (`sync_started`, `sync_succeeded`, …).
pub const EVENT_HEADER: &str = "X-Regmirror-Event";

/// POSTs every event as JSON ([`MirrorEvent`]'s fields) to one URL. A 2xx answer is success;
/// anything else is retried with a growing pause.
#[derive(Clone)]
pub struct WebhookNotifier {
    url: Url,
    client: reqwest::Client,
    secret: Option<String>,
    retries: u32,
    backoff: Duration,
}

impl fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookNotifier")
            .field("url", &redacted(&self.url))
            .field("signed", &self.secret.is_some())
            .field("retries", &self.retries)
            .finish()
    }
}

/// The URL without user info or query, which may hold secrets.
fn redacted(url: &Url) -> String {
    format!(
        "{}://{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port().map(|p| format!(":{p}")).unwrap_or_default()
    ) + url.path()
}

/// Builds a [`WebhookNotifier`].
#[derive(Debug)]
#[must_use]
pub struct WebhookBuilder {
    url: String,
    secret: Option<String>,
    timeout: Duration,
    retries: u32,
    backoff: Duration,
}

impl WebhookBuilder {
    /// Sign each body with HMAC-SHA256 under `secret` ([`SIGNATURE_HEADER`]).
    pub fn secret(mut self, secret: impl Into<String>) -> Self {
        self.secret = Some(secret.into());
        self
    }

    /// One attempt may take this long (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Attempts after the first (default 2).
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// The pause before the first retry, doubling after each (default 500 ms).
    pub fn backoff(mut self, backoff: Duration) -> Self {
        self.backoff = backoff;
        self
    }

    pub fn build(self) -> Result<WebhookNotifier> {
        let url = Url::parse(&self.url).map_err(|e| {
            Error::new(
                ErrorKind::InvalidConfig,
                format!("webhook URL is not valid: {e}"),
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                format!("webhook URL {} must be http or https", redacted(&url)),
            ));
        }
        let client = reqwest::Client::builder()
            .timeout(self.timeout)
            .user_agent(concat!("regmirror/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                Error::new(
                    ErrorKind::InvalidConfig,
                    format!("webhook client cannot be built: {e}"),
                )
            })?;
        Ok(WebhookNotifier {
            url,
            client,
            secret: self.secret,
            retries: self.retries,
            backoff: self.backoff,
        })
    }
}

impl WebhookNotifier {
    /// A webhook to `url` with the defaults (5 s timeout, 2 retries, unsigned).
    pub fn builder(url: impl Into<String>) -> WebhookBuilder {
        WebhookBuilder {
            url: url.into(),
            secret: None,
            timeout: Duration::from_secs(5),
            retries: 2,
            backoff: Duration::from_millis(500),
        }
    }

    /// `sha256=<hex>` of `body` under `secret`, as sent in [`SIGNATURE_HEADER`].
    pub fn signature(secret: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    async fn attempt(&self, event: &str, body: &[u8]) -> std::result::Result<(), String> {
        let mut request = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(EVENT_HEADER, event)
            .body(body.to_vec());
        if let Some(secret) = &self.secret {
            request = request.header(SIGNATURE_HEADER, Self::signature(secret, body));
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(format!("answered {}", response.status())),
            // Without the URL: it may carry a token in its query.
            Err(e) => Err(e.without_url().to_string()),
        }
    }
}

#[async_trait]
impl Notifier for WebhookNotifier {
    async fn notify(&self, event: &MirrorEvent) -> Result<()> {
        let body = serde_json::to_vec(event).map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                format!("event does not serialize: {e}"),
            )
        })?;
        let name = event.event.as_str();
        let mut pause = self.backoff;
        let mut last = String::new();
        for attempt in 0..=self.retries {
            if attempt > 0 {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            match self.attempt(name, &body).await {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
        }
        Err(Error::new(
            ErrorKind::Network,
            format!(
                "webhook {} failed after {} attempts: {last}",
                redacted(&self.url),
                self.retries + 1
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        let sig = WebhookNotifier::signature("Jefe", b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn debug_and_errors_hide_url_secrets() {
        let w = WebhookNotifier::builder("https://user:pw@hooks.example/p?token=abc")
            .secret("shh")
            .build()
            .unwrap();
        let debug = format!("{w:?}");
        assert!(!debug.contains("pw") && !debug.contains("abc") && !debug.contains("shh"));
        let e = WebhookNotifier::builder("ftp://x").build().unwrap_err();
        assert!(e.message().contains("http"));
    }
}
