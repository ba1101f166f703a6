//! [`RetryPolicy`]: when and how long the client waits before sending a request again.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;

/// When the client sends a request again by itself:
///
/// - on `429 Too Many Requests` and `503 Service Unavailable`, for every method (the server did
///   not act on the request);
/// - on connection errors (refused, reset, timed out) of idempotent methods only (GET, HEAD,
///   OPTIONS, PUT, DELETE): a POST or PATCH may have arrived before the connection broke.
///
/// Waits grow exponentially with full jitter (a random time up to `base_delay * 2^n`, at most
/// `max_delay`). A `Retry-After` header (seconds or an HTTP date) is honoured; one asking for
/// more than `max_delay` makes the client give up at once and return the error. Object uploads
/// from a stream ([`Client::put_object_stream`](crate::Client::put_object_stream),
/// [`Client::put_object_file`](crate::Client::put_object_file)) are never sent twice: their
/// body cannot be replayed.
///
/// ```
/// use std::time::Duration;
/// use wharf_client::RetryPolicy;
///
/// let patient = RetryPolicy {
///     max_retries: 6,
///     base_delay: Duration::from_millis(500),
///     max_delay: Duration::from_secs(30),
/// };
/// # let _ = patient;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0: none).
    pub max_retries: u32,
    /// The ceiling of the first wait; doubled for each further retry.
    pub base_delay: Duration,
    /// The longest wait, and the longest `Retry-After` honoured.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 3 retries, from 200 ms, at most 60 s.
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        }
    }

    /// The wait before retry number `done + 1`, or `None` when the retries are used up.
    pub(crate) fn backoff(&self, done: u32) -> Option<Duration> {
        if done >= self.max_retries {
            return None;
        }
        let ceiling = self
            .base_delay
            .saturating_mul(1u32 << done.min(20))
            .min(self.max_delay);
        // Full jitter: anywhere between nothing and the ceiling.
        Some(ceiling.mul_f64(rand_fraction()))
    }

    /// Whether (and how long) to wait before sending again after an answer with `status` and
    /// `headers`, `done` retries in.
    pub(crate) fn wait_for(
        &self,
        status: StatusCode,
        headers: &reqwest::header::HeaderMap,
        done: u32,
    ) -> Option<Duration> {
        if status != StatusCode::TOO_MANY_REQUESTS && status != StatusCode::SERVICE_UNAVAILABLE {
            return None;
        }
        let backoff = self.backoff(done)?;
        match retry_after(headers, SystemTime::now()) {
            Some(asked) if asked > self.max_delay => None,
            Some(asked) => Some(asked.max(backoff)),
            None => Some(backoff),
        }
    }
}

/// `Retry-After` as seconds or an HTTP date (a date in the past is no wait); `None` if absent
/// or unreadable.
pub(crate) fn retry_after(
    headers: &reqwest::header::HeaderMap,
    now: SystemTime,
) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when: SystemTime = chrono::DateTime::parse_from_rfc2822(value).ok()?.into();
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A number in [0, 1) that differs between calls and processes (jitter, not cryptography).
fn rand_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};

    use super::*;

    fn with_retry_after(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // 2015-10-21 07:28:00 UTC
        assert_eq!(
            retry_after(&with_retry_after("7"), now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after(&with_retry_after(" 0 "), now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            retry_after(&with_retry_after("Wed, 21 Oct 2015 07:28:30 GMT"), now),
            Some(Duration::from_secs(30))
        );
        // In the past: no wait.
        assert_eq!(
            retry_after(&with_retry_after("Wed, 21 Oct 2015 07:00:00 GMT"), now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&with_retry_after("soon"), now), None);
        assert_eq!(retry_after(&with_retry_after("-1"), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn backoff_is_jittered_capped_and_counted() {
        let policy = RetryPolicy {
            max_retries: 4,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(250),
        };
        for done in 0..4 {
            let ceiling = (Duration::from_millis(100) * (1 << done)).min(policy.max_delay);
            for _ in 0..50 {
                let wait = policy.backoff(done).unwrap();
                assert!(wait <= ceiling, "{wait:?} > {ceiling:?}");
            }
        }
        assert_eq!(policy.backoff(4), None);
        assert_eq!(RetryPolicy::none().backoff(0), None);
        // Not always the same wait.
        let waits: std::collections::BTreeSet<Duration> =
            (0..20).map(|_| policy.backoff(3).unwrap()).collect();
        assert!(waits.len() > 1);
    }

    #[test]
    fn which_answers_are_retried() {
        let policy = RetryPolicy::default();
        let none = HeaderMap::new();
        assert!(
            policy
                .wait_for(StatusCode::SERVICE_UNAVAILABLE, &none, 0)
                .is_some()
        );
        assert!(
            policy
                .wait_for(StatusCode::TOO_MANY_REQUESTS, &none, 2)
                .is_some()
        );
        // Used up.
        assert!(
            policy
                .wait_for(StatusCode::TOO_MANY_REQUESTS, &none, 3)
                .is_none()
        );
        for status in [
            StatusCode::OK,
            StatusCode::BAD_REQUEST,
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::BAD_GATEWAY,
        ] {
            assert!(policy.wait_for(status, &none, 0).is_none(), "{status}");
        }
        // Retry-After is waited for (at least), unless it is beyond max_delay.
        assert!(
            policy.wait_for(StatusCode::SERVICE_UNAVAILABLE, &with_retry_after("2"), 0)
                >= Some(Duration::from_secs(2))
        );
        assert_eq!(
            policy.wait_for(StatusCode::SERVICE_UNAVAILABLE, &with_retry_after("61"), 0),
            None
        );
    }
}
