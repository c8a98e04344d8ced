//! Registry authentication: `WWW-Authenticate` challenges, Basic credentials, the token
//! requests of the bearer flow (anonymous, credentialed or with an identity token) and their
//! answers, and the tokens cached per scope until they expire. Tokens and passwords live only in
//! sensitive header values, never in messages. The client sends the requests (`token.rs`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use serde::Deserialize;
use tokio::sync::OnceCell;
use url::Url;

use super::docker_config;
use crate::config::Credentials;
use crate::error::{Error, ErrorKind, Result};
use crate::redact::Secrets;

/// Tokens without `expires_in` live this long (distribution token spec: the minimum is 60 s).
const DEFAULT_TOKEN_LIFETIME: u64 = 60;
/// A token is renewed this long before it expires, so it does not expire mid-request.
const TOKEN_RENEW_MARGIN: Duration = Duration::from_secs(10);
/// The user name docker uses for an identity (OAuth2 refresh) token.
const IDENTITY_TOKEN_USER: &str = "<token>";

/// What a registry asks for in `WWW-Authenticate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    Basic,
    Bearer {
        realm: Url,
        service: Option<String>,
        /// The scope the registry says this request needs, if it says.
        scope: Option<String>,
    },
}

/// The challenge we can answer from a `WWW-Authenticate` value (Bearer preferred over Basic;
/// parameters may be quoted and contain commas, e.g. `scope="repository:a:pull,push"`).
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let challenges = http_auth::parse_challenges(header).ok()?;
    let param = |c: &http_auth::ChallengeRef<'_>, name: &str| {
        c.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.to_unescaped())
    };
    let bearer = challenges.iter().find_map(|c| {
        if !c.scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let realm = Url::parse(&param(c, "realm")?).ok()?;
        if !matches!(realm.scheme(), "http" | "https") {
            return None;
        }
        Some(Challenge::Bearer {
            realm,
            service: param(c, "service"),
            scope: param(c, "scope").filter(|s| !s.is_empty()),
        })
    });
    bearer.or_else(|| {
        challenges
            .iter()
            .any(|c| c.scheme.eq_ignore_ascii_case("basic"))
            .then_some(Challenge::Basic)
    })
}

/// The token scope to read `repo`.
pub(crate) fn pull_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

/// The token scope to write `repo`.
pub(crate) fn push_scope(repo: &str) -> String {
    format!("repository:{repo}:pull,push")
}

/// A bearer token and when to stop using it. Deliberately not `Debug`.
pub(crate) struct CachedToken {
    pub(crate) header: HeaderValue,
    renew_at: Instant,
}

/// Which challenge the registry uses, the credentials to answer it, and the token cache. The
/// requests themselves (tokens fetched, calls authorized) are the client's: see `token.rs`.
pub(crate) struct AuthState {
    /// The registry as the user named it: where stored logins are looked up.
    host: String,
    explicit: Option<Credentials>,
    /// The stored logins, read when the client was made, for when none are explicit;
    /// `None`: anonymous.
    stored: Option<docker_config::StoredLogins>,
    /// Explicit credentials, or what the docker config yields, looked up on first need.
    credentials: OnceCell<Option<Credentials>>,
    /// The client's secrets, which stored credentials join once looked up.
    secrets: Secrets,
    challenge: Mutex<Option<Challenge>>,
    tokens: Mutex<HashMap<String, CachedToken>>,
    /// One token request at a time, so a burst of requests does not fetch the same token often.
    fetching: tokio::sync::Mutex<()>,
}

impl AuthState {
    pub(crate) fn new(
        host: String,
        explicit: Option<Credentials>,
        stored: Option<docker_config::StoredLogins>,
        secrets: Secrets,
    ) -> Self {
        AuthState {
            host,
            explicit,
            stored,
            credentials: OnceCell::new(),
            secrets,
            challenge: Mutex::new(None),
            tokens: Mutex::new(HashMap::new()),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// Remember the challenge a 401 carried. Returns it.
    pub(crate) fn learn(&self, headers: &HeaderMap) -> Option<Challenge> {
        let challenge = headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(parse_challenge)?;
        *self.challenge.lock().expect("no panics while locked") = Some(challenge.clone());
        Some(challenge)
    }

    /// The challenge learnt last, if any.
    pub(crate) fn challenge(&self) -> Option<Challenge> {
        self.challenge
            .lock()
            .expect("no panics while locked")
            .clone()
    }

    /// The credentials to answer a challenge with, if any.
    pub(crate) async fn credentials(&self) -> Result<Option<&Credentials>> {
        let found = self
            .credentials
            .get_or_try_init(|| async {
                if let Some(explicit) = &self.explicit {
                    return Ok(Some(explicit.clone()));
                }
                let found = match &self.stored {
                    Some(stored) => stored.lookup(&self.host).await?,
                    None => None,
                };
                if let Some(credentials) = &found {
                    self.secrets.add_credentials(credentials);
                }
                Ok::<_, Error>(found)
            })
            .await?;
        Ok(found.as_ref())
    }

    /// The user whose password a Basic-auth registry was sent, if one was: a 401 then means it
    /// refused them, which the bare answer ("authentication required") does not say.
    pub(crate) fn basic_user(&self) -> Option<&str> {
        let basic = matches!(
            *self.challenge.lock().expect("no panics while locked"),
            Some(Challenge::Basic)
        );
        let credentials = self.credentials.get()?.as_ref()?;
        (basic && credentials.username != IDENTITY_TOKEN_USER).then_some(&credentials.username)
    }

    /// A cached, unexpired token for `scopes`. A push token also serves pulls of its repository.
    pub(crate) fn cached(&self, scopes: &[String]) -> Option<HeaderValue> {
        let tokens = self.tokens.lock().expect("no panics while locked");
        let now = Instant::now();
        let fresh = |key: &str| {
            tokens
                .get(key)
                .filter(|t| t.renew_at > now)
                .map(|t| t.header.clone())
        };
        fresh(&scopes.join(" ")).or_else(|| match scopes {
            [only] => only
                .strip_suffix(":pull")
                .and_then(|repo_scope| fresh(&format!("{repo_scope}:pull,push"))),
            _ => None,
        })
    }

    /// Cache `token` for `scopes`.
    pub(crate) fn keep(&self, scopes: &[String], token: CachedToken) {
        self.tokens
            .lock()
            .expect("no panics while locked")
            .insert(scopes.join(" "), token);
    }

    /// Wait for the turn to fetch a token (one request at a time).
    pub(crate) async fn fetching(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.fetching.lock().await
    }
}

/// The token request to `realm` for `scopes`: a GET with Basic credentials (or none, for an
/// anonymous token), or an OAuth2 refresh-token POST for identity tokens.
pub(crate) fn token_request(
    http: &reqwest::Client,
    realm: &Url,
    service: Option<&str>,
    scopes: &[String],
    credentials: Option<&Credentials>,
) -> reqwest::RequestBuilder {
    let request = match credentials {
        Some(c) if c.username == IDENTITY_TOKEN_USER => {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "refresh_token")
                .append_pair("client_id", "regmirror")
                .append_pair("refresh_token", &c.password)
                .append_pair("scope", &scopes.join(" "));
            if let Some(service) = service {
                form.append_pair("service", service);
            }
            http.request(Method::POST, realm.clone())
                .header(
                    CONTENT_TYPE,
                    "application/x-www-form-urlencoded; charset=utf-8",
                )
                .body(form.finish())
        }
        _ => {
            let mut url = realm.clone();
            {
                let mut query = url.query_pairs_mut();
                if let Some(service) = service {
                    query.append_pair("service", service);
                }
                for scope in scopes {
                    query.append_pair("scope", scope);
                }
            }
            let mut request = http.get(url);
            if let Some(c) = credentials {
                request = request.header(reqwest::header::AUTHORIZATION, basic_header(c));
            }
            request
        }
    };
    request.header(ACCEPT, "application/json")
}

/// Who a token request asks as, for messages.
pub(crate) fn asking_as(credentials: Option<&Credentials>) -> String {
    match credentials {
        Some(c) if c.username == IDENTITY_TOKEN_USER => "with an identity token".to_owned(),
        Some(c) => format!("for user {:?}", c.username),
        None => "anonymously".to_owned(),
    }
}

/// Whether a token service at `realm` may be sent the credentials of the registry at `base`:
/// over HTTPS wherever it is (the registry names its token service, as Docker Hub names
/// auth.docker.io, and TLS proves who receives them), over plain HTTP only on the registry's
/// own host (any port), where they would travel in the clear anyway.
pub(crate) fn may_take_credentials(realm: &Url, base: &Url) -> bool {
    let same_host = match (realm.host_str(), base.host_str()) {
        (Some(realm), Some(base)) => realm.eq_ignore_ascii_case(base),
        _ => false,
    };
    realm.scheme() == "https" || same_host
}

/// The token service's answer (distribution token spec). Deliberately not `Debug`.
#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

pub(crate) fn token_from_body(body: &[u8]) -> Result<CachedToken> {
    let parsed: TokenResponse = serde_json::from_slice(body).map_err(|e| {
        // serde's message names a position, never the content.
        Error::new(
            ErrorKind::Unauthorized,
            format!("the token service's answer is not valid JSON: {e}"),
        )
    })?;
    let token = parsed
        .token
        .filter(|t| !t.is_empty())
        .or(parsed.access_token.filter(|t| !t.is_empty()))
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Unauthorized,
                "the token service answered without a token",
            )
        })?;
    let mut header = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
        Error::new(
            ErrorKind::Unauthorized,
            "the token service sent a token that is not a valid header value",
        )
    })?;
    header.set_sensitive(true);
    let lifetime = Duration::from_secs(
        parsed
            .expires_in
            .unwrap_or(DEFAULT_TOKEN_LIFETIME)
            .max(DEFAULT_TOKEN_LIFETIME),
    );
    Ok(CachedToken {
        header,
        renew_at: Instant::now() + lifetime - TOKEN_RENEW_MARGIN,
    })
}

/// `Basic base64(user:password)`, marked sensitive so it never shows in `Debug` output.
pub(crate) fn basic_header(credentials: &Credentials) -> HeaderValue {
    let encoded = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", credentials.username, credentials.password));
    let mut header = HeaderValue::from_str(&format!("Basic {encoded}"))
        .expect("base64 is always a valid header value");
    header.set_sensitive(true);
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge_with_quoted_commas() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:samalba/my-app:pull,push""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: Url::parse("https://auth.example/token").unwrap(),
                service: Some("registry.example".into()),
                scope: Some("repository:samalba/my-app:pull,push".into()),
            }
        );
    }

    #[test]
    fn bearer_wins_over_basic_and_unknown_schemes_are_skipped() {
        let c = parse_challenge(
            r#"Basic realm="Registry", Negotiate, Bearer realm="http://127.0.0.1:9/t""#,
        )
        .unwrap();
        assert!(matches!(
            c,
            Challenge::Bearer {
                service: None,
                scope: None,
                ..
            }
        ));
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(r#"Bearer realm="file:///etc/passwd""#),
            None
        );
        assert_eq!(parse_challenge("Bearer realm=\"unterminated"), None);
        assert_eq!(parse_challenge(""), None);
    }

    #[test]
    fn credentials_go_to_https_realms_and_plain_http_ones_on_the_registrys_host() {
        let url = |s: &str| Url::parse(s).unwrap();
        let base = url("http://registry.example:5000/");
        assert!(may_take_credentials(
            &url("https://auth.docker.io/token"),
            &base
        ));
        assert!(may_take_credentials(
            &url("http://registry.example:5001/t"),
            &base
        ));
        assert!(may_take_credentials(
            &url("http://REGISTRY.example/t"),
            &base
        ));
        assert!(!may_take_credentials(&url("http://other.example/t"), &base));
        assert!(!may_take_credentials(
            &url("http://localhost:5000/t"),
            &url("http://127.0.0.1:5000/")
        ));
    }

    #[test]
    fn tokens_come_from_token_or_access_token() {
        let t = token_from_body(br#"{"token":"abc","expires_in":300}"#).unwrap();
        assert_eq!(t.header.to_str().unwrap(), "Bearer abc");
        assert!(t.header.is_sensitive());
        let t = token_from_body(br#"{"access_token":"xyz"}"#).unwrap();
        assert_eq!(t.header.to_str().unwrap(), "Bearer xyz");
        let Err(e) = token_from_body(br#"{"token":""}"#) else {
            panic!("an empty token was accepted")
        };
        assert_eq!(e.kind(), ErrorKind::Unauthorized);
    }

    #[test]
    fn cached_push_token_serves_pulls_and_expired_tokens_do_not() {
        let auth = AuthState::new("registry.example".into(), None, None, Secrets::default());
        let header = |s: &str| HeaderValue::from_str(s).unwrap();
        auth.tokens.lock().unwrap().insert(
            push_scope("a/b"),
            CachedToken {
                header: header("Bearer push"),
                renew_at: Instant::now() + Duration::from_secs(60),
            },
        );
        auth.tokens.lock().unwrap().insert(
            pull_scope("c"),
            CachedToken {
                header: header("Bearer old"),
                renew_at: Instant::now() - Duration::from_secs(1),
            },
        );
        assert_eq!(
            auth.cached(&[pull_scope("a/b")]),
            Some(header("Bearer push"))
        );
        assert_eq!(auth.cached(&[pull_scope("c")]), None);
        assert_eq!(auth.cached(&[push_scope("c")]), None);
    }

    #[test]
    fn basic_header_is_sensitive_and_hidden_from_debug() {
        let h = basic_header(&Credentials::new("alice", "s3cr3t:with\"quotes"));
        assert!(h.is_sensitive());
        assert!(!format!("{h:?}").contains("YWxp"));
    }
}
