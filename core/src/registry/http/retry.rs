//! When and how long to wait before repeating a request: exponential backoff with full jitter,
//! and the registry's own `Retry-After` when it sends one.

use std::time::Duration;

use rand::Rng;
use reqwest::header::RETRY_AFTER;
use reqwest::{Response, StatusCode};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

use crate::error::Error;

/// A `Retry-After` longer than this is not waited out: the request fails as rate limited, so a
/// sync does not hang for an hour on one registry's say-so.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// How many times, and how patiently, a request that is safe to repeat is repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Repeats after the first attempt; 0 disables retries.
    pub max_retries: u32,
    /// The backoff ceiling of the first retry; it doubles each time.
    pub initial_delay: Duration,
    /// No backoff ceiling grows beyond this.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 4,
            initial_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0-based): uniformly random up to the exponential
    /// ceiling ("full jitter"), so many clients that failed together do not retry together.
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self
            .initial_delay
            .saturating_mul(2u32.saturating_pow(retry))
            .min(self.max_delay);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(0..=millis))
    }

    /// Whether an attempt that ended in `outcome` (an answer, or no answer) is repeated as retry
    /// number `retry`, and the wait before it: a retryable status waits what its `Retry-After`
    /// asks (a pause longer than we are willing to wait is not repeated) or else the backoff; a
    /// temporary failure waits the backoff. Anything else, or once the retries are used up,
    /// `None`. Every retry loop of the client decides here; whether the request is safe to
    /// repeat at all is the caller's to know.
    pub(crate) fn wait_before(
        &self,
        retry: u32,
        outcome: Result<&Response, &Error>,
    ) -> Option<Duration> {
        if retry >= self.max_retries {
            return None;
        }
        match outcome {
            Ok(resp) if is_retryable_status(resp.status()) => {
                let retry_after = resp
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, OffsetDateTime::now_utc()));
                self.delay_for(retry, retry_after)
            }
            Err(e) if e.kind().is_temporary() => Some(self.backoff(retry)),
            _ => None,
        }
    }

    /// The wait before retry number `retry` after a response that allows one, or `None` when the
    /// registry asked for a pause longer than we are willing to wait.
    fn delay_for(&self, retry: u32, retry_after: Option<Duration>) -> Option<Duration> {
        match retry_after {
            Some(wait) if wait > MAX_RETRY_AFTER => None,
            Some(wait) => Some(wait),
            None => Some(self.backoff(retry)),
        }
    }
}

/// Whether a response status means "the same request may succeed later".
pub(crate) fn is_retryable_status(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS
            | StatusCode::REQUEST_TIMEOUT
            | StatusCode::INTERNAL_SERVER_ERROR
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT
    )
}

/// Parse a `Retry-After` value: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
pub(crate) fn parse_retry_after(value: &str, now: OffsetDateTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = OffsetDateTime::parse(value, &Rfc2822).ok()?;
    Some(Duration::try_from(at - now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn retry_after_seconds_and_http_dates() {
        let now = datetime!(2026-11-27 08:00:00 UTC);
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Fri, 27 Nov 2026 08:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Fri, 27 Nov 2026 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn backoff_stays_under_its_growing_ceiling() {
        let policy = RetryPolicy {
            max_retries: 10,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        for retry in 0..10 {
            let ceiling = Duration::from_millis(100 * 2u64.pow(retry)).min(policy.max_delay);
            assert!(policy.backoff(retry) <= ceiling);
        }
    }

    #[test]
    fn a_too_long_retry_after_is_not_waited_out() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.delay_for(0, Some(Duration::from_secs(3))),
            Some(Duration::from_secs(3))
        );
        assert_eq!(policy.delay_for(0, Some(Duration::from_secs(3600))), None);
    }

    fn answer(status: u16, retry_after: Option<&str>) -> Response {
        let mut builder = http::Response::builder().status(status);
        if let Some(after) = retry_after {
            builder = builder.header("retry-after", after);
        }
        Response::from(builder.body("").unwrap())
    }

    #[test]
    fn one_rule_decides_every_retry() {
        let policy = RetryPolicy {
            max_retries: 2,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        // The registry's Retry-After, not the backoff (whose first ceiling is 100 ms).
        let limited = answer(429, Some("7"));
        assert_eq!(
            policy.wait_before(0, Ok(&limited)),
            Some(Duration::from_secs(7))
        );
        assert_eq!(policy.wait_before(0, Ok(&answer(503, Some("3600")))), None);
        assert!(
            policy.wait_before(1, Ok(&answer(502, None))).unwrap() <= Duration::from_millis(200)
        );
        assert_eq!(policy.wait_before(0, Ok(&answer(404, Some("1")))), None);
        assert_eq!(policy.wait_before(0, Ok(&answer(200, None))), None);
        let temporary = Error::new(crate::ErrorKind::Network, "connection reset");
        assert!(policy.wait_before(0, Err(&temporary)).unwrap() <= Duration::from_millis(100));
        let permanent = Error::new(crate::ErrorKind::Unauthorized, "denied");
        assert_eq!(policy.wait_before(0, Err(&permanent)), None);
        // Used up.
        assert_eq!(policy.wait_before(2, Ok(&limited)), None);
        assert_eq!(policy.wait_before(2, Err(&temporary)), None);
    }

    #[test]
    fn retryable_statuses() {
        for code in [429, 500, 502, 503, 504] {
            assert!(is_retryable_status(StatusCode::from_u16(code).unwrap()));
        }
        for code in [400, 401, 403, 404, 501] {
            assert!(!is_retryable_status(StatusCode::from_u16(code).unwrap()));
        }
    }
}
