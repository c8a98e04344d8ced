//! Authorizing a registry's requests (the client's side of `auth.rs`): the `Authorization`
//! value a call carries, learnt afresh after a 401, and the bearer tokens fetched from the
//! registry's token service for it.

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue};
use url::Url;

use super::auth::{self, CachedToken, Challenge};
use super::client::{Client, display_url, error_for_status};
use crate::error::{Error, ErrorKind, Result};

/// Token responses are small JSON documents.
const MAX_TOKEN_BODY: usize = 1 << 20;

impl Client {
    /// The `Authorization` value for a request needing `scopes`, fetching a token if needed.
    pub(crate) async fn authorization(&self, scopes: &[String]) -> Result<Option<HeaderValue>> {
        match self.auth.challenge() {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(self.auth.credentials().await?.map(auth::basic_header)),
            Some(Challenge::Bearer { realm, service, .. }) => {
                if let Some(header) = self.auth.cached(scopes) {
                    return Ok(Some(header));
                }
                let _one_at_a_time = self.auth.fetching().await;
                if let Some(header) = self.auth.cached(scopes) {
                    return Ok(Some(header));
                }
                let token = self.fetch_token(&realm, service.as_deref(), scopes).await?;
                let header = token.header.clone();
                self.auth.keep(scopes, token);
                Ok(Some(header))
            }
        }
    }

    /// After a 401: learn the challenge it carries and get fresh authorization. Returns whether
    /// repeating the request can help (false when the credentials we sent were refused).
    pub(crate) async fn reauthorize(
        &self,
        headers: &HeaderMap,
        scopes: &[String],
        sent_authorization: bool,
    ) -> Result<bool> {
        // A 401 without a challenge (some proxies strip it) still means "authorize afresh".
        let challenge = self.auth.learn(headers).or_else(|| self.auth.challenge());
        match challenge {
            None => Ok(false),
            Some(Challenge::Basic) => {
                Ok(!sent_authorization && self.auth.credentials().await?.is_some())
            }
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                let mut wanted = scopes.to_vec();
                if let Some(scope) = scope
                    && !wanted.contains(&scope)
                {
                    wanted.push(scope);
                }
                let _one_at_a_time = self.auth.fetching().await;
                // The first requests of a run go out before the challenge is known and are
                // refused together: the first of them here fetches the token, the others,
                // which sent none, take it from the cache.
                if !sent_authorization
                    && wanted.len() == scopes.len()
                    && self.auth.cached(scopes).is_some()
                {
                    return Ok(true);
                }
                let token = self
                    .fetch_token(&realm, service.as_deref(), &wanted)
                    .await?;
                self.auth.keep(scopes, token);
                Ok(true)
            }
        }
    }

    /// Ask the token service at `realm` for a token covering `scopes` (SEMANTICS.md §10: never
    /// over plain HTTP under TLS verification, credentials only where they may go).
    async fn fetch_token(
        &self,
        realm: &Url,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<CachedToken> {
        let what = format!("token request to {}", display_url(realm));
        let refused = |why: &str| {
            Error::new(
                ErrorKind::Forbidden,
                format!(
                    "the token service of {} is {}, {why}",
                    self.host,
                    display_url(realm)
                ),
            )
        };
        if self.options.tls_verify && realm.scheme() == "http" {
            return Err(refused(
                "plain HTTP while TLS verification is on: refused, nothing was sent",
            ));
        }
        self.check_target(realm, &what)?;
        let credentials = self.auth.credentials().await?;
        if credentials.is_some() && !auth::may_take_credentials(realm, self.base().await?) {
            return Err(refused(
                "plain HTTP on another host: refused, the credentials are not sent there",
            ));
        }
        let request = || auth::token_request(&self.http, realm, service, scopes, credentials);
        let resp = self.send_token_request(request, &what).await?;
        match resp.status() {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                let e = error_for_status(resp, &what).await;
                return Err(Error::new(
                    ErrorKind::Unauthorized,
                    // The registry's name, not only the token service's: a sync talks to two.
                    format!(
                        "the token service of {} refused access {}: {}",
                        self.host,
                        auth::asking_as(credentials),
                        e.message()
                    ),
                ));
            }
            _ => return Err(error_for_status(resp, &what).await),
        }
        let body = self.read_limited(resp, MAX_TOKEN_BODY, &what).await?;
        let token = auth::token_from_body(&body).map_err(|e| e.context(what))?;
        if let Some(bearer) = token
            .header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
        {
            self.secrets.add_token(bearer);
        }
        Ok(token)
    }

    /// Send the token request `request` makes, again after a temporary failure or a retryable
    /// status (waiting what its `Retry-After` asks) while retries remain. Returns the final
    /// response whatever its status.
    async fn send_token_request(
        &self,
        request: impl Fn() -> reqwest::RequestBuilder,
        what: &str,
    ) -> Result<reqwest::Response> {
        let mut retries = 0;
        loop {
            let sent = self.timed(request().send()).await;
            let sent = sent.map_err(|failed| failed.error);
            if !self.pause_to_retry(&mut retries, sent.as_ref(), what).await {
                return sent.map_err(|e| e.context(what));
            }
        }
    }
}
