//! Password hashing (argon2id) and the two kinds of secret the control plane mints: user
//! passwords and API keys.

use std::sync::LazyLock;

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use rand::RngExt;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

/// Argon2 with its default parameters (argon2id, 19 MiB, 2 passes) takes tens of milliseconds
/// of CPU and 19 MiB of memory per call: bound how many run at once so that a login storm
/// queues instead of exhausting memory, and run them off the async threads.
static HASHING_SLOTS: LazyLock<Semaphore> = LazyLock::new(|| {
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    Semaphore::new(cpus * 2)
});

/// A hash of a password nobody knows, verified against when the user does not exist, so that
/// a login for an unknown user takes as long as one with a wrong password.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    hash_blocking(&generate_api_key()).expect("argon2 hashes with its default parameters")
});

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

fn hash_blocking(password: &str) -> Result<String, HashError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// The argon2id PHC string of `password` (salt generated).
pub async fn hash_password(password: String) -> Result<String, HashError> {
    let _slot = HASHING_SLOTS.acquire().await.expect("never closed");
    tokio::task::spawn_blocking(move || hash_blocking(&password))
        .await
        .map_err(|e| HashError(e.to_string()))?
}

/// Whether `password` matches `hash`. With no hash (unknown user), checks against a dummy hash
/// and returns `false`, taking the same time. An unreadable stored hash is a mismatch.
pub async fn verify_password(password: String, hash: Option<String>) -> bool {
    let Ok(_slot) = HASHING_SLOTS.acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || {
        let known = hash.is_some();
        let hash = hash.as_deref().unwrap_or(DUMMY_HASH.as_str());
        let matches = Argon2::default()
            .verify_password(password.as_bytes(), hash)
            .is_ok();
        known && matches
    })
    .await
    .unwrap_or(false)
}

const BASE62: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A new API key: `wharf_` and 40 random base62 characters (about 238 bits).
pub fn generate_api_key() -> String {
    let mut rng = rand::rng();
    let random: String = (0..40)
        .map(|_| BASE62[rng.random_range(0..BASE62.len())] as char)
        .collect();
    format!("wharf_{random}")
}

/// How an API key is stored: SHA-256, hex. API keys are long random strings (not passwords a
/// person chose), so guessing one from its hash is as hard as guessing the key itself: a fast
/// hash is enough, and it lets every request find its key with one indexed lookup.
pub fn api_key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The first characters of a key, stored to tell keys apart. Short keys (set by an operator)
/// reveal less.
pub fn api_key_prefix(key: &str) -> String {
    let len = key.chars().count();
    let shown = if len >= 32 { 10 } else { len / 4 };
    key.chars().take(shown).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_and_verifies() {
        let hash = hash_password("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse".into(), Some(hash.clone())).await);
        assert!(!verify_password("wrong".into(), Some(hash)).await);
        assert!(!verify_password("anything".into(), None).await);
        assert!(!verify_password("x".into(), Some("not a hash".into())).await);
    }

    #[test]
    fn api_keys() {
        let key = generate_api_key();
        assert_eq!(key.len(), 46);
        assert!(key.starts_with("wharf_"));
        assert!(key[6..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(key, generate_api_key());
        assert_eq!(api_key_hash(&key).len(), 64);
        assert_eq!(api_key_prefix(&key), key[..10]);
        assert_eq!(api_key_prefix("short-key-123456"), "shor");
    }
}
