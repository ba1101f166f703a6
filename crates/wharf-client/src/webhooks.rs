//! Verifying Wharf's webhook deliveries (Standard Webhooks) in a Rust receiver.
//!
//! ```no_run
//! # fn handle(headers: &http::HeaderMap, body: &[u8]) -> Result<(), wharf_client::webhooks::VerifyError> {
//! let secret = std::env::var("WHARF_WEBHOOK_SECRET").unwrap_or_default(); // whsec_…
//! let payload = wharf_client::webhooks::verify(&secret, headers, body)?;
//! println!("{} {}", payload["type"], payload["data"]["key"]);
//! # Ok(()) }
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// How far a delivery's `webhook-timestamp` may be from now (replays are refused beyond).
pub const TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// Why a delivery was refused. Answer such a request with a 4xx and do not act on it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("the secret is not a Standard Webhooks secret (whsec_<base64>)")]
    BadSecret,
    #[error("header {0} is missing or not text")]
    MissingHeader(&'static str),
    #[error("webhook-timestamp is not a number of seconds")]
    BadTimestamp,
    #[error("the delivery is too old or too far in the future (more than 5 minutes)")]
    Expired,
    #[error("no signature matches: wrong secret, or the body or headers were changed")]
    NoMatch,
    #[error("the body is not JSON: {0}")]
    NotJson(String),
}

/// Checks a delivery's `webhook-id`, `webhook-timestamp` and `webhook-signature` headers
/// against `body` (the raw bytes, before any parsing) with the webhook's `secret`, and
/// returns the parsed JSON payload.
pub fn verify(
    secret: &str,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<serde_json::Value, VerifyError> {
    verify_at(secret, headers, body, SystemTime::now())
}

/// [`verify`] as of `now` (for tests and replays of recorded deliveries).
pub fn verify_at(
    secret: &str,
    headers: &http::HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<serde_json::Value, VerifyError> {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .map_err(|_| VerifyError::BadSecret)?;
    if key.is_empty() {
        return Err(VerifyError::BadSecret);
    }
    let header = |name: &'static str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or(VerifyError::MissingHeader(name))
    };
    let id = header("webhook-id")?;
    let timestamp = header("webhook-timestamp")?;
    let signatures = header("webhook-signature")?;
    let sent: u64 = timestamp.parse().map_err(|_| VerifyError::BadTimestamp)?;
    let now = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    if now.abs_diff(sent) > TOLERANCE.as_secs() {
        return Err(VerifyError::Expired);
    }
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key);
    let mut signed = Vec::with_capacity(id.len() + timestamp.len() + body.len() + 2);
    signed.extend_from_slice(id.as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(timestamp.as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(body);
    let matched = signatures
        .split_whitespace()
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|s| STANDARD.decode(s).ok())
        // aws-lc-rs compares in constant time.
        .any(|tag| aws_lc_rs::hmac::verify(&key, &signed, &tag).is_ok());
    if !matched {
        return Err(VerifyError::NoMatch);
    }
    serde_json::from_slice(body).map_err(|e| VerifyError::NotJson(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification's reference libraries.
    #[test]
    fn reference_example() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "webhook-id",
            "msg_p5jXN8AQM9LWM0D4loKWxJek".parse().unwrap(),
        );
        headers.insert("webhook-timestamp", "1614265330".parse().unwrap());
        headers.insert(
            "webhook-signature",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
                .parse()
                .unwrap(),
        );
        let body = br#"{"test": 2432232314}"#;
        let at = UNIX_EPOCH + Duration::from_secs(1614265330 + 10);
        let payload = verify_at(secret, &headers, body, at).unwrap();
        assert_eq!(payload["test"], 2432232314u64);
        assert_eq!(
            verify_at(secret, &headers, br#"{"test": 2432232315}"#, at),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            verify_at("whsec_bm90IHRoZSBzZWNyZXQ=", &headers, body, at),
            Err(VerifyError::NoMatch)
        );
        let late = UNIX_EPOCH + Duration::from_secs(1614265330 + 301);
        assert_eq!(
            verify_at(secret, &headers, body, late),
            Err(VerifyError::Expired)
        );
        headers.remove("webhook-id");
        assert_eq!(
            verify_at(secret, &headers, body, at),
            Err(VerifyError::MissingHeader("webhook-id"))
        );
    }
}
