//! A bearer-token issuer for distribution's `auth: token`: it checks basic credentials, grants the
//! requested scopes (all actions to a known user, `pull` to anonymous callers when allowed) and
//! signs ES256 JWTs whose `x5c` header carries the certificate the registry trusts.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use crate::server::{BackgroundServer, full};
use crate::tls::{ServerTls, SigningCert};

/// The `issuer` both the registry config and the tokens name.
pub const ISSUER: &str = "regmirror-test-issuer";
/// The `service` both the registry config and the tokens name.
pub const SERVICE: &str = "regmirror-test-registry";
/// How long issued tokens live, in seconds.
pub const TOKEN_LIFETIME: i64 = 300;

/// Who the issuer accepts and what anonymous callers get. `Debug` shows user names only.
#[derive(Clone, Default)]
pub struct TokenPolicy {
    /// username → password; each user is granted every action it asks for.
    pub users: HashMap<String, String>,
    /// username → password; these users are granted `pull` only.
    pub readers: HashMap<String, String>,
    /// Whether callers without credentials get `pull` on any repository.
    pub anonymous_pull: bool,
}

impl std::fmt::Debug for TokenPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenPolicy")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .field("readers", &self.readers.keys().collect::<Vec<_>>())
            .field("anonymous_pull", &self.anonymous_pull)
            .finish()
    }
}

/// Who asked for a token.
enum Caller {
    Anonymous,
    /// Granted every action.
    User(String),
    /// Granted `pull` only.
    Reader(String),
}

#[derive(Debug)]
struct Issuer {
    policy: TokenPolicy,
    key: EncodingKey,
    x5c: String,
    requests: AtomicUsize,
}

/// The running issuer. Dropping it stops the server.
#[derive(Debug)]
pub struct TokenServer {
    issuer: Arc<Issuer>,
    server: BackgroundServer,
    /// `https` when it serves TLS.
    scheme: &'static str,
}

/// One grant in a token's `access` claim.
#[derive(Debug, Clone, Serialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
    nbf: i64,
    iat: i64,
    jti: String,
    access: Vec<Access>,
}

impl TokenServer {
    /// Start an issuer signing with `cert`'s key, over HTTPS with `tls`'s server certificate
    /// when given (a TLS registry's token service is on HTTPS: clients verifying TLS refuse a
    /// plain-HTTP one), else over plain HTTP.
    pub fn start(cert: &SigningCert, policy: TokenPolicy, tls: Option<&ServerTls>) -> TokenServer {
        let issuer = Arc::new(Issuer {
            policy,
            key: EncodingKey::from_ec_pem(cert.key_pem.as_bytes())
                .expect("rcgen writes a PKCS#8 P-256 key"),
            x5c: STANDARD.encode(&cert.der),
            requests: AtomicUsize::new(0),
        });
        let handler_issuer = issuer.clone();
        let handler = move |req: hyper::Request<hyper::body::Incoming>| {
            let issuer = handler_issuer.clone();
            async move { issuer.answer(req.uri().query(), req.headers().get(AUTHORIZATION)) }
        };
        let (server, scheme) = match tls {
            Some(tls) => (
                BackgroundServer::start_tls("token-issuer", tls, handler),
                "https",
            ),
            None => (BackgroundServer::start("token-issuer", handler), "http"),
        };
        TokenServer {
            issuer,
            server,
            scheme,
        }
    }

    /// The `realm` URL to configure in the registry.
    pub fn realm(&self) -> String {
        format!("{}://{}/token", self.scheme, self.server.addr())
    }

    /// How many token requests the issuer has answered (granted or not).
    pub fn requests(&self) -> usize {
        self.issuer.requests.load(Ordering::SeqCst)
    }

    /// A handle that signs tokens directly (for seeding without going through HTTP).
    pub fn issuer_handle(&self) -> TokenMinter {
        TokenMinter(self.issuer.clone())
    }
}

/// Signs tokens with the issuer's key, without an HTTP round trip.
#[derive(Debug, Clone)]
pub struct TokenMinter(Arc<Issuer>);

impl TokenMinter {
    /// A token granting every action on `repos` to [`crate::USERNAME`].
    pub fn full_access(&self, repos: &[&str]) -> String {
        let access = repos
            .iter()
            .map(|repo| Access {
                kind: "repository".to_owned(),
                name: (*repo).to_owned(),
                actions: vec!["pull".into(), "push".into(), "delete".into()],
            })
            .collect();
        self.0.sign(crate::USERNAME, access)
    }
}

impl Issuer {
    fn answer(
        &self,
        query: Option<&str>,
        authorization: Option<&hyper::header::HeaderValue>,
    ) -> Response<crate::server::Body> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let caller = match authorization {
            None => Caller::Anonymous,
            Some(value) => match self.check_basic(value) {
                Some(caller) => caller,
                None => return plain(StatusCode::UNAUTHORIZED, "invalid credentials"),
            },
        };
        let mut service_ok = true;
        let mut access = Vec::new();
        for (key, value) in url_pairs(query.unwrap_or("")) {
            match key.as_str() {
                "service" => service_ok = value == SERVICE,
                "scope" => access.extend(self.grant(&caller, &value)),
                _ => {}
            }
        }
        if !service_ok {
            return plain(StatusCode::BAD_REQUEST, "unknown service");
        }
        let subject = match &caller {
            Caller::Anonymous => "",
            Caller::User(name) | Caller::Reader(name) => name,
        };
        let token = self.sign(subject, access);
        let body = serde_json::json!({
            "token": token,
            "access_token": token,
            "expires_in": TOKEN_LIFETIME,
            "issued_at": time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .expect("formatting the current time as RFC 3339"),
        });
        Response::builder()
            .header(CONTENT_TYPE, "application/json")
            .body(full(body.to_string()))
            .expect("a static response is valid")
    }

    fn check_basic(&self, value: &hyper::header::HeaderValue) -> Option<Caller> {
        let encoded = value.to_str().ok()?.strip_prefix("Basic ")?;
        let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
        let (user, password) = decoded.split_once(':')?;
        if self.policy.users.get(user).is_some_and(|p| p == password) {
            Some(Caller::User(user.to_owned()))
        } else if self.policy.readers.get(user).is_some_and(|p| p == password) {
            Some(Caller::Reader(user.to_owned()))
        } else {
            None
        }
    }

    /// `repository:NAME:ACTIONS` → what this caller gets of it.
    fn grant(&self, caller: &Caller, scope: &str) -> Option<Access> {
        // Repository names may contain ':' only in a registry host, which scopes never carry.
        let mut parts = scope.splitn(3, ':');
        let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
        let actions: Vec<String> = actions
            .split(',')
            .filter(|action| match caller {
                Caller::User(_) => true,
                Caller::Reader(_) => *action == "pull",
                Caller::Anonymous => self.policy.anonymous_pull && *action == "pull",
            })
            .map(str::to_owned)
            .collect();
        (!actions.is_empty()).then(|| Access {
            kind: kind.to_owned(),
            name: name.to_owned(),
            actions,
        })
    }

    fn sign(&self, subject: &str, access: Vec<Access>) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut header = Header::new(Algorithm::ES256);
        header.x5c = Some(vec![self.x5c.clone()]);
        let claims = Claims {
            iss: ISSUER,
            sub: subject,
            aud: SERVICE,
            exp: now + TOKEN_LIFETIME,
            nbf: now - 10,
            iat: now,
            jti: format!("{:032x}", rand::random::<u128>()),
            access,
        };
        jsonwebtoken::encode(&header, &claims, &self.key).expect("signing a JWT with a valid key")
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<crate::server::Body> {
    Response::builder()
        .status(status)
        .body(full(text))
        .expect("a static response is valid")
}

/// Decode `a=b&c=d` with percent-escapes and `+` as space.
fn url_pairs(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}
