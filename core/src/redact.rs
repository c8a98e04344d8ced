//! The one redaction point (SEMANTICS.md §10): a registry client's secrets (passwords, their
//! base64 `user:password` logins, bearer tokens as they are issued) and the rule that scrubs
//! them out of text. Every error leaving a registry client passes through
//! [`Secrets::scrub_error`], and the client's own debug logs through [`Secrets::scrub`], so a
//! registry that echoes a password, a login or a token in an error body, a redirect location
//! or a tag name cannot get it into a message, a report, the usage log, a webhook, a binding's
//! exception or a log line.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};

use base64::Engine as _;

use crate::config::Credentials;
use crate::error::Error;

/// What a secret is replaced with.
pub(crate) const REDACTED: &str = "<redacted>";
/// Tokens are remembered up to this many (a long-lived client is issued new ones all the time;
/// the oldest are long expired and no registry has reason to echo them).
const MAX_TOKENS: usize = 64;

/// The secrets of one registry client. Cheap to clone (shared); `Debug` shows only how many.
#[derive(Clone, Default)]
pub(crate) struct Secrets(Arc<Mutex<Known>>);

#[derive(Default)]
struct Known {
    /// Passwords and the forms they travel in; kept for the client's life.
    logins: Vec<String>,
    /// Issued tokens, newest last.
    tokens: VecDeque<String>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let known = self.lock();
        f.debug_struct("Secrets")
            .field("logins", &known.logins.len())
            .field("tokens", &known.tokens.len())
            .finish()
    }
}

impl Secrets {
    fn lock(&self) -> std::sync::MutexGuard<'_, Known> {
        // Every update is one push: a poisoned lock still holds a consistent list.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Remember `username`'s `password` in every form a request carries it: as is, as the
    /// base64 `user:password` of a Basic `Authorization`, and percent-encoded (a form body or
    /// query).
    pub(crate) fn add_login(&self, username: &str, password: &str) {
        if password.is_empty() {
            return;
        }
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        let encoded: String = url::form_urlencoded::byte_serialize(password.as_bytes()).collect();
        let mut known = self.lock();
        for form in [password.to_owned(), basic, encoded] {
            if !known.logins.contains(&form) {
                known.logins.push(form);
            }
        }
    }

    /// Remember `credentials` (see [`Secrets::add_login`]).
    pub(crate) fn add_credentials(&self, credentials: &Credentials) {
        self.add_login(&credentials.username, &credentials.password);
    }

    /// Remember a bearer token the client was issued.
    pub(crate) fn add_token(&self, token: &str) {
        if token.is_empty() {
            return;
        }
        let mut known = self.lock();
        if known.tokens.iter().any(|t| t == token) {
            return;
        }
        if known.tokens.len() >= MAX_TOKENS {
            known.tokens.pop_front();
        }
        known.tokens.push_back(token.to_owned());
    }

    /// Whether `text` holds any secret.
    pub(crate) fn found_in(&self, text: &str) -> bool {
        let known = self.lock();
        known
            .logins
            .iter()
            .chain(&known.tokens)
            .any(|secret| text.contains(secret.as_str()))
    }

    /// `text` with every secret replaced by [`REDACTED`], longest first (a password may be part
    /// of another secret).
    pub(crate) fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if !self.found_in(text) {
            return Cow::Borrowed(text);
        }
        let known = self.lock();
        let mut secrets: Vec<&String> = known.logins.iter().chain(&known.tokens).collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let mut scrubbed = text.to_owned();
        for secret in secrets {
            if scrubbed.contains(secret.as_str()) {
                scrubbed = scrubbed.replace(secret.as_str(), REDACTED);
            }
        }
        Cow::Owned(scrubbed)
    }

    /// `e` with its message scrubbed; its cause is dropped if any link of the chain holds a
    /// secret (`Debug` would show it).
    pub(crate) fn scrub_error(&self, e: Error) -> Error {
        let mut chain = std::error::Error::source(&e);
        let mut cause_leaks = false;
        while let Some(cause) = chain {
            cause_leaks |= self.found_in(&cause.to_string());
            chain = cause.source();
        }
        let e = if cause_leaks { e.without_source() } else { e };
        match self.scrub(e.message()) {
            Cow::Borrowed(_) => e,
            Cow::Owned(message) => e.with_message(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn passwords_logins_and_tokens_are_scrubbed_in_every_form() {
        let secrets = Secrets::default();
        secrets.add_login("robot", "p@ss word:1");
        secrets.add_token("tok-abc");
        let basic = base64::engine::general_purpose::STANDARD.encode("robot:p@ss word:1");
        let text = format!(
            "pw p@ss word:1, Basic {basic}, form p%40ss+word%3A1, Bearer tok-abc; user robot"
        );
        let scrubbed = secrets.scrub(&text);
        assert_eq!(
            scrubbed,
            "pw <redacted>, Basic <redacted>, form <redacted>, Bearer <redacted>; user robot"
        );
        assert!(matches!(secrets.scrub("nothing here"), Cow::Borrowed(_)));
        assert!(!format!("{secrets:?}").contains("tok-abc"));
    }

    #[test]
    fn errors_lose_secrets_from_their_message_and_their_cause() {
        let secrets = Secrets::default();
        secrets.add_login("u", "hunter22");
        let cause = std::io::Error::other("echo hunter22");
        let e =
            Error::new(ErrorKind::Unauthorized, "GET /v2/: 401: bad hunter22").with_source(cause);
        let e = secrets.scrub_error(e);
        assert_eq!(e.kind(), ErrorKind::Unauthorized);
        assert_eq!(e.to_string(), "Unauthorized: GET /v2/: 401: bad <redacted>");
        assert!(!format!("{e:?}").contains("hunter22"));
        let clean =
            Error::new(ErrorKind::Network, "cut").with_source(std::io::Error::other("reset"));
        assert!(format!("{:?}", secrets.scrub_error(clean)).contains("reset"));
    }

    #[test]
    fn old_tokens_are_forgotten_beyond_the_cap() {
        let secrets = Secrets::default();
        for i in 0..=MAX_TOKENS {
            secrets.add_token(&format!("token-{i:03}"));
        }
        assert!(!secrets.found_in("token-000"));
        assert!(secrets.found_in(&format!("token-{MAX_TOKENS:03}")));
    }
}
