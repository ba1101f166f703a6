//! Verifying Wharf's webhook deliveries in a Rust receiver.
//!
//! Deliveries follow [Standard Webhooks](https://www.standardwebhooks.com/): headers
//! `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature: v1,<base64>` (one or
//! more, space-separated), the signature being HMAC-SHA256 of `{id}.{timestamp}.{body}` keyed
//! with the base64 after `whsec_` in the webhook's secret. [`verify`] checks a signature (in
//! constant time) and that the timestamp is within 5 minutes of now, then returns the parsed
//! JSON payload. Pass the **raw** body, exactly as received.
//!
//! With axum:
//!
//! ```no_run
//! use axum::body::Bytes;
//! use axum::http::{HeaderMap, StatusCode};
//!
//! async fn wharf_events(headers: HeaderMap, body: Bytes) -> StatusCode {
//!     let secret = std::env::var("WHARF_WEBHOOK_SECRET").unwrap_or_default(); // whsec_…
//!     let payload = match wharf_client::webhooks::verify(&secret, &headers, &body) {
//!         Ok(payload) => payload,
//!         // Not from Wharf (or replayed): do nothing with it.
//!         Err(_) => return StatusCode::UNAUTHORIZED,
//!     };
//!     // `file.created`, …, or `webhook.test` (from `Client::test_webhook`).
//!     if payload["type"] == "file.created" {
//!         let event: wharf_client::wharf_core::Event =
//!             serde_json::from_value(payload).expect("a file event");
//!         if let Some(file) = event.data.file() {
//!             println!("new file {} ({:?} bytes)", file.key, file.size);
//!         }
//!     }
//!     StatusCode::NO_CONTENT
//! }
//! ```
//!
//! A receiver that verifies many deliveries can decode the secret once with [`Verifier`].
//! Headers may come from anything implementing [`WebhookHeaders`]: `http::HeaderMap` (axum,
//! hyper, reqwest), `HashMap`/`BTreeMap` of names to values, or a slice of pairs.

use std::collections::{BTreeMap, HashMap};
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
    #[error("the delivery is too old or too far in the future (beyond the tolerance)")]
    Expired,
    #[error("no signature matches: wrong secret, or the body or headers were changed")]
    NoMatch,
    #[error("the body is not JSON: {0}")]
    NotJson(String),
}

/// Where the `webhook-*` headers of a delivery come from. Names are asked for in lower case;
/// implementations for maps compare them case-insensitively.
pub trait WebhookHeaders {
    /// The value of the header `name`, if present and text.
    fn header(&self, name: &str) -> Option<&str>;
}

impl WebhookHeaders for http::HeaderMap {
    fn header(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| v.to_str().ok())
    }
}

fn find<'a, K: AsRef<str> + 'a, V: AsRef<str> + 'a>(
    mut pairs: impl Iterator<Item = (&'a K, &'a V)>,
    name: &str,
) -> Option<&'a str> {
    pairs
        .find(|(k, _)| k.as_ref().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_ref())
}

impl<K: AsRef<str>, V: AsRef<str>, S> WebhookHeaders for HashMap<K, V, S> {
    fn header(&self, name: &str) -> Option<&str> {
        find(self.iter(), name)
    }
}

impl<K: AsRef<str>, V: AsRef<str>> WebhookHeaders for BTreeMap<K, V> {
    fn header(&self, name: &str) -> Option<&str> {
        find(self.iter(), name)
    }
}

impl<K: AsRef<str>, V: AsRef<str>> WebhookHeaders for [(K, V)] {
    fn header(&self, name: &str) -> Option<&str> {
        find(self.iter().map(|(k, v)| (k, v)), name)
    }
}

impl<K: AsRef<str>, V: AsRef<str>, const N: usize> WebhookHeaders for [(K, V); N] {
    fn header(&self, name: &str) -> Option<&str> {
        self.as_slice().header(name)
    }
}

impl<K: AsRef<str>, V: AsRef<str>> WebhookHeaders for Vec<(K, V)> {
    fn header(&self, name: &str) -> Option<&str> {
        self.as_slice().header(name)
    }
}

/// Checks a delivery's `webhook-id`, `webhook-timestamp` and `webhook-signature` headers
/// against `body` (the raw bytes, before any parsing) with the webhook's `secret` (`whsec_…`),
/// and returns the parsed JSON payload (`{id, type, time, data}`).
pub fn verify<H: WebhookHeaders + ?Sized>(
    secret: &str,
    headers: &H,
    body: &[u8],
) -> Result<serde_json::Value, VerifyError> {
    Verifier::new(secret)?.verify(headers, body)
}

/// [`verify`] as of `now` (for tests and replays of recorded deliveries).
pub fn verify_at<H: WebhookHeaders + ?Sized>(
    secret: &str,
    headers: &H,
    body: &[u8],
    now: SystemTime,
) -> Result<serde_json::Value, VerifyError> {
    Verifier::new(secret)?.verify_at(headers, body, now)
}

/// A webhook's secret, decoded once, to verify (or, in a receiver's tests, sign) deliveries.
///
/// ```
/// use wharf_client::webhooks::Verifier;
///
/// let verifier = Verifier::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
/// let body = br#"{"type":"webhook.test"}"#;
/// let now = std::time::SystemTime::now();
/// let timestamp = now.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
/// let headers = [
///     ("webhook-id", "evt_1".to_owned()),
///     ("webhook-timestamp", timestamp.to_string()),
///     ("webhook-signature", verifier.sign("evt_1", timestamp, body)),
/// ];
/// assert_eq!(verifier.verify_at(&headers, body, now)?["type"], "webhook.test");
/// # Ok::<(), wharf_client::webhooks::VerifyError>(())
/// ```
#[derive(Clone)]
pub struct Verifier {
    key: aws_lc_rs::hmac::Key,
    tolerance: Duration,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("tolerance", &self.tolerance)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// From the webhook's secret: `whsec_` and base64 (the bare base64 is accepted too).
    pub fn new(secret: &str) -> Result<Self, VerifyError> {
        let secret = secret.trim();
        let key = STANDARD
            .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
            .map_err(|_| VerifyError::BadSecret)?;
        if key.is_empty() {
            return Err(VerifyError::BadSecret);
        }
        Ok(Verifier {
            key: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key),
            tolerance: TOLERANCE,
        })
    }

    /// How far `webhook-timestamp` may be from now (default [`TOLERANCE`], 5 minutes).
    pub fn with_tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// See [`verify`].
    pub fn verify<H: WebhookHeaders + ?Sized>(
        &self,
        headers: &H,
        body: &[u8],
    ) -> Result<serde_json::Value, VerifyError> {
        self.verify_at(headers, body, SystemTime::now())
    }

    /// See [`verify_at`].
    pub fn verify_at<H: WebhookHeaders + ?Sized>(
        &self,
        headers: &H,
        body: &[u8],
        now: SystemTime,
    ) -> Result<serde_json::Value, VerifyError> {
        let header = |name: &'static str| {
            headers
                .header(name)
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
        if now.abs_diff(sent) > self.tolerance.as_secs() {
            return Err(VerifyError::Expired);
        }
        let signed = signed_content(id, timestamp, body);
        let matched = signatures
            .split_whitespace()
            .filter_map(|s| s.strip_prefix("v1,"))
            .filter_map(|s| STANDARD.decode(s).ok())
            // aws-lc-rs compares in constant time.
            .any(|tag| aws_lc_rs::hmac::verify(&self.key, &signed, &tag).is_ok());
        if !matched {
            return Err(VerifyError::NoMatch);
        }
        serde_json::from_slice(body).map_err(|e| VerifyError::NotJson(e.to_string()))
    }

    /// The `webhook-signature` value (`v1,<base64>`) of a delivery: what Wharf sends, for a
    /// receiver's own tests.
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        let timestamp = timestamp.to_string();
        let tag = aws_lc_rs::hmac::sign(&self.key, &signed_content(id, &timestamp, body));
        format!("v1,{}", STANDARD.encode(tag.as_ref()))
    }
}

/// `{id}.{timestamp}.{body}`: what the signature covers.
fn signed_content(id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut signed = Vec::with_capacity(id.len() + timestamp.len() + body.len() + 2);
    signed.extend_from_slice(id.as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(timestamp.as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(body);
    signed
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SENT: u64 = 1614265330;

    fn reference_headers() -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "webhook-id",
            "msg_p5jXN8AQM9LWM0D4loKWxJek".parse().unwrap(),
        );
        headers.insert("webhook-timestamp", SENT.to_string().parse().unwrap());
        headers.insert(
            "webhook-signature",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
                .parse()
                .unwrap(),
        );
        headers
    }

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    /// The example of the Standard Webhooks specification's reference libraries.
    #[test]
    fn reference_example() {
        let mut headers = reference_headers();
        let now = at(SENT + 10);
        let payload = verify_at(SECRET, &headers, BODY, now).unwrap();
        assert_eq!(payload["test"], 2432232314u64);
        assert_eq!(
            verify_at(SECRET, &headers, br#"{"test": 2432232315}"#, now),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            verify_at("whsec_bm90IHRoZSBzZWNyZXQ=", &headers, BODY, now),
            Err(VerifyError::NoMatch)
        );
        // 5 minutes either way, not one second more.
        assert!(verify_at(SECRET, &headers, BODY, at(SENT + 300)).is_ok());
        assert!(verify_at(SECRET, &headers, BODY, at(SENT - 300)).is_ok());
        assert_eq!(
            verify_at(SECRET, &headers, BODY, at(SENT + 301)),
            Err(VerifyError::Expired)
        );
        assert_eq!(
            verify_at(SECRET, &headers, BODY, at(SENT - 301)),
            Err(VerifyError::Expired)
        );
        // The id and the timestamp are signed too.
        let mut other_id = headers.clone();
        other_id.insert("webhook-id", "msg_other".parse().unwrap());
        assert_eq!(
            verify_at(SECRET, &other_id, BODY, now),
            Err(VerifyError::NoMatch)
        );
        let mut other_time = headers.clone();
        other_time.insert("webhook-timestamp", (SENT + 1).to_string().parse().unwrap());
        assert_eq!(
            verify_at(SECRET, &other_time, BODY, now),
            Err(VerifyError::NoMatch)
        );
        headers.remove("webhook-id");
        assert_eq!(
            verify_at(SECRET, &headers, BODY, now),
            Err(VerifyError::MissingHeader("webhook-id"))
        );
    }

    #[test]
    fn any_of_several_signatures_and_other_versions_ignored() {
        let mut headers = reference_headers();
        let now = at(SENT);
        headers.insert(
            "webhook-signature",
            "v1a,ignored v1,bm90IGl0 v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= v1,!!"
                .parse()
                .unwrap(),
        );
        assert!(verify_at(SECRET, &headers, BODY, now).is_ok());
        headers.insert(
            "webhook-signature",
            "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
                .parse()
                .unwrap(),
        );
        assert_eq!(
            verify_at(SECRET, &headers, BODY, now),
            Err(VerifyError::NoMatch)
        );
    }

    #[test]
    fn bad_input_is_named() {
        let headers = reference_headers();
        let now = at(SENT);
        for secret in ["whsec_", "whsec_***", ""] {
            assert_eq!(
                verify_at(secret, &headers, BODY, now),
                Err(VerifyError::BadSecret),
                "{secret}"
            );
        }
        // The bare base64 of the key works too.
        assert!(verify_at("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &headers, BODY, now).is_ok());
        let mut bad_time = headers.clone();
        bad_time.insert("webhook-timestamp", "yesterday".parse().unwrap());
        assert_eq!(
            verify_at(SECRET, &bad_time, BODY, now),
            Err(VerifyError::BadTimestamp)
        );
        // A signed body that is not JSON.
        let verifier = Verifier::new(SECRET).unwrap();
        let headers = [
            ("Webhook-Id", "evt_1".to_owned()),
            ("Webhook-Timestamp", SENT.to_string()),
            (
                "Webhook-Signature",
                verifier.sign("evt_1", SENT, b"not json"),
            ),
        ];
        assert!(matches!(
            verifier.verify_at(&headers, b"not json", now),
            Err(VerifyError::NotJson(_))
        ));
    }

    #[test]
    fn other_header_sources_and_tolerance() {
        let verifier = Verifier::new(SECRET)
            .unwrap()
            .with_tolerance(Duration::from_secs(10));
        let signature = verifier.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", SENT, BODY);
        // Our signature is the reference one.
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let map: HashMap<String, String> = [
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("WEBHOOK-TIMESTAMP", "1614265330"),
            ("webhook-signature", signature.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert!(verifier.verify_at(&map, BODY, at(SENT + 10)).is_ok());
        assert_eq!(
            verifier.verify_at(&map, BODY, at(SENT + 11)),
            Err(VerifyError::Expired)
        );
        let tree: BTreeMap<&str, &str> = map.iter().map(|(k, v)| (&**k, &**v)).collect();
        assert!(verifier.verify_at(&tree, BODY, at(SENT)).is_ok());
        let pairs: Vec<(&str, &str)> = tree.into_iter().collect();
        assert!(verifier.verify_at(&pairs, BODY, at(SENT)).is_ok());
        assert!(verifier.verify_at(pairs.as_slice(), BODY, at(SENT)).is_ok());
    }
}
