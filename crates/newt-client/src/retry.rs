//! The one retry policy every request goes through.
//!
//! 429: wait as the server says (`Retry-After`, seconds or HTTP date, then
//! `retry_after_ms`), else back off. 5xx and network errors: capped
//! exponential backoff with jitter. Anything else is final. Retries resend
//! the same body to the same path, so transaction IDs are reused (TD-02,
//! TD-05, OTK-08).

use std::time::{Duration, SystemTime};

/// How a failed attempt may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryClass {
    /// The request may not have reached the server: retry with backoff.
    Network,
    /// The server asked us to come back: after this long if it said.
    Transient(Option<Duration>),
    /// Retrying will not help.
    Permanent,
}

/// Backoff settings.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// First backoff delay.
    pub base_delay: Duration,
    /// Longest backoff delay.
    pub max_delay: Duration,
    /// Longest wait a server may ask for before we give up instead.
    pub max_server_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        // complement-crypto expects retries within seconds: start small.
        Self {
            max_attempts: 8,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            max_server_wait: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (attempt counts from 1), or
    /// `None` to give up.
    pub fn delay(&self, attempt: u32, class: RetryClass) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        match class {
            RetryClass::Permanent => None,
            RetryClass::Transient(Some(wait)) if wait > self.max_server_wait => None,
            RetryClass::Transient(Some(wait)) => Some(wait),
            RetryClass::Transient(None) | RetryClass::Network => Some(self.backoff(attempt)),
        }
    }

    /// Exponential backoff, capped, with jitter in `[d/2, d]` so clients
    /// that failed together do not retry together.
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let capped = exp.min(self.max_delay);
        let half = capped / 2;
        half + half.mul_f64(rand::random::<f64>())
    }
}

/// Classifies an HTTP status with its `Retry-After` header and body.
pub fn classify(
    status: u16,
    retry_after: Option<&str>,
    body: &[u8],
    now: SystemTime,
) -> RetryClass {
    match status {
        429 => RetryClass::Transient(
            retry_after
                .and_then(|h| parse_retry_after(h, now))
                .or_else(|| retry_after_ms(body)),
        ),
        500..=599 => RetryClass::Transient(retry_after.and_then(|h| parse_retry_after(h, now))),
        _ => RetryClass::Permanent,
    }
}

/// `Retry-After`: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn retry_after_ms(body: &[u8]) -> Option<Duration> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value
        .get("retry_after_ms")?
        .as_u64()
        .map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_header_wins_over_body() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let body = br#"{"errcode":"M_LIMIT_EXCEEDED","retry_after_ms":1500}"#;
        assert_eq!(
            classify(429, Some("3"), body, now),
            RetryClass::Transient(Some(Duration::from_secs(3)))
        );
        assert_eq!(
            classify(429, None, body, now),
            RetryClass::Transient(Some(Duration::from_millis(1500)))
        );
        assert_eq!(classify(429, None, b"{}", now), RetryClass::Transient(None));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(
            classify(429, Some(&date), body, now),
            RetryClass::Transient(Some(Duration::from_secs(7)))
        );
        assert_eq!(
            classify(429, Some("garbage"), body, now),
            RetryClass::Transient(Some(Duration::from_millis(1500)))
        );
    }

    #[test]
    fn server_errors_retry_client_errors_do_not() {
        let now = SystemTime::now();
        for status in [500, 502, 503, 504] {
            assert_eq!(
                classify(status, None, b"", now),
                RetryClass::Transient(None)
            );
        }
        for status in [400, 401, 403, 404] {
            assert_eq!(classify(status, None, b"", now), RetryClass::Permanent);
        }
    }

    #[test]
    fn backoff_grows_is_capped_and_gives_up() {
        let policy = RetryPolicy::default();
        for attempt in 1..policy.max_attempts {
            let d = policy.delay(attempt, RetryClass::Network).unwrap();
            let full = policy
                .base_delay
                .saturating_mul(1 << (attempt - 1))
                .min(policy.max_delay);
            assert!(
                d >= full / 2 && d <= full,
                "attempt {attempt}: {d:?} vs {full:?}"
            );
        }
        assert_eq!(policy.delay(policy.max_attempts, RetryClass::Network), None);
        assert_eq!(policy.delay(1, RetryClass::Permanent), None);
        assert_eq!(
            policy.delay(1, RetryClass::Transient(Some(Duration::from_secs(3600)))),
            None
        );
    }
}
