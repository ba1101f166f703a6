//! Encryption at rest of the secrets the database keeps: webhook signing secrets and bucket
//! options (cloud credentials). [`SecretKeys`] seals them with AES-256-GCM under a key kept
//! outside the database (the secrets key file), so a copy of the database, a backup or a
//! PostgreSQL dump does not give them away.
//!
//! A sealed value is `wharf-sealed:v1:<key id>:<base64 of nonce ‖ ciphertext ‖ tag>`; the key id
//! is the first 8 hex digits of the key's SHA-256, and what the value belongs to (table, column,
//! row) is the associated data, so a sealed value copied to another row does not open.
//!
//! The key file holds one base64 key (32 bytes) per line: the first seals, the others only
//! open (older keys, during a rotation). [`prepare`] runs at every control-plane start: it
//! refuses a key file that cannot open the database's secrets (another replica's key), and
//! seals again under the first key every value that is not sealed with it (plaintext values
//! from before encryption, values sealed with an older key).

use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

use crate::store::{Store, StoreError};

const PREFIX: &str = "wharf-sealed:v1:";
const KEY_BYTES: usize = 32;
/// What the check row seals: opening it proves a key file fits the database.
const CHECK_CONTEXT: &str = "secret_key_check";
const CHECK_TEXT: &str = "wharf secrets key check";

/// Why secrets cannot be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("cannot read the secrets key file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the secrets key file {path}, line {line}: {reason}")]
    BadKey {
        path: String,
        line: usize,
        reason: String,
    },
    #[error("the secrets key file {0} holds no key")]
    Empty(String),
    #[error(
        "a secret is sealed with key {key_id}, which is not in the secrets key file \
         (its keys: {known}); every control plane must use the same key file"
    )]
    UnknownKey { key_id: String, known: String },
    #[error("a sealed secret does not open: {0}")]
    Unreadable(String),
}

struct Key {
    id: String,
    key: LessSafeKey,
}

impl Key {
    fn new(bytes: &[u8]) -> Option<Key> {
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).ok()?;
        let digest = hex::encode(Sha256::digest(bytes));
        Some(Key {
            id: digest[..8].to_owned(),
            key: LessSafeKey::new(unbound),
        })
    }
}

/// The keys of the secrets key file: the first seals, all open.
pub struct SecretKeys {
    keys: Vec<Key>,
}

impl std::fmt::Debug for SecretKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKeys")
            .field("ids", &self.ids())
            .finish()
    }
}

impl SecretKeys {
    /// A new random key, and the key file's text for it.
    pub fn generate() -> (SecretKeys, String) {
        let mut bytes = [0u8; KEY_BYTES];
        SystemRandom::new()
            .fill(&mut bytes)
            .expect("the system random generator works");
        let text = format!("{}\n", STANDARD.encode(bytes));
        let keys = SecretKeys::parse(&text, "generated").expect("a generated key parses");
        (keys, text)
    }

    /// Reads a key file's text (`source` names it in errors): one base64 key of 32 bytes per
    /// line, the sealing key first; blank lines and `#` comments are skipped.
    pub fn parse(text: &str, source: &str) -> Result<SecretKeys, SecretsError> {
        let mut keys = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |reason: &str| SecretsError::BadKey {
                path: source.to_owned(),
                line: n + 1,
                reason: reason.to_owned(),
            };
            let bytes = STANDARD
                .decode(line)
                .map_err(|_| bad("not base64 (make one with `openssl rand -base64 32`)"))?;
            if bytes.len() != KEY_BYTES {
                return Err(bad(&format!(
                    "a key is {KEY_BYTES} bytes, this one {}",
                    bytes.len()
                )));
            }
            keys.push(Key::new(&bytes).ok_or_else(|| bad("not a usable AES-256 key"))?);
        }
        if keys.is_empty() {
            return Err(SecretsError::Empty(source.to_owned()));
        }
        Ok(SecretKeys { keys })
    }

    /// Reads the key file at `path`.
    pub fn load(path: &Path) -> Result<SecretKeys, SecretsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SecretsError::Read {
            path: path.display().to_string(),
            source,
        })?;
        SecretKeys::parse(&text, &path.display().to_string())
    }

    /// The keys' ids, the sealing key's first.
    pub fn ids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.id.as_str()).collect()
    }

    fn sealing(&self) -> &Key {
        &self.keys[0]
    }

    /// Seals `plaintext`, bound to `context` (what it belongs to: `webhooks.secret:wh_…`).
    pub fn seal(&self, context: &str, plaintext: &str) -> String {
        let key = self.sealing();
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("the system random generator works");
        let mut sealed = plaintext.as_bytes().to_vec();
        key.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut sealed,
            )
            .expect("AES-GCM seals any length a database value has");
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        format!("{PREFIX}{}:{}", key.id, STANDARD.encode(blob))
    }

    /// Opens what [`SecretKeys::seal`] made for the same `context`. A value that is not sealed
    /// (written before encryption at rest) is returned as it is.
    pub fn open(&self, context: &str, stored: &str) -> Result<String, SecretsError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_owned());
        };
        let (key_id, blob) = rest
            .split_once(':')
            .ok_or_else(|| SecretsError::Unreadable(format!("{context}: no key id")))?;
        let key =
            self.keys
                .iter()
                .find(|k| k.id == key_id)
                .ok_or_else(|| SecretsError::UnknownKey {
                    key_id: key_id.to_owned(),
                    known: self.ids().join(", "),
                })?;
        let blob = STANDARD
            .decode(blob)
            .map_err(|_| SecretsError::Unreadable(format!("{context}: not base64")))?;
        if blob.len() < NONCE_LEN {
            return Err(SecretsError::Unreadable(format!("{context}: too short")));
        }
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| SecretsError::Unreadable(format!("{context}: bad nonce")))?;
        let mut sealed = sealed.to_vec();
        let opened = key
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut sealed)
            .map_err(|_| {
                SecretsError::Unreadable(format!(
                    "{context}: the key {key_id} does not open it (altered, or moved from \
                     another row)"
                ))
            })?;
        String::from_utf8(opened.to_vec())
            .map_err(|_| SecretsError::Unreadable(format!("{context}: not UTF-8")))
    }

    /// Whether `stored` should be sealed again: it is plaintext, or sealed with an older key.
    pub fn needs_sealing(&self, stored: &str) -> bool {
        match stored.strip_prefix(PREFIX) {
            Some(rest) => !rest.starts_with(&format!("{}:", self.sealing().id)),
            None => true,
        }
    }
}

/// Reads the key file at `path`, creating it (one new key, mode 0600) if it does not exist.
/// Returns the keys and whether the file was created.
pub fn load_or_create(path: &Path) -> Result<(SecretKeys, bool), SecretsError> {
    if path.exists() {
        return SecretKeys::load(path).map(|keys| (keys, false));
    }
    let (keys, text) = SecretKeys::generate();
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()
    };
    match write() {
        Ok(()) => Ok((keys, true)),
        // Another process created it first: use its key.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            SecretKeys::load(path).map(|keys| (keys, false))
        }
        Err(source) => Err(SecretsError::Read {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// Why [`prepare`] failed.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// At start: checks that `keys` open the database's secrets (the first control plane to start
/// on a database records which key it uses), then seals again under the first key whatever is
/// not sealed with it. Returns how many values were sealed again.
pub async fn prepare(store: &Store, keys: &SecretKeys) -> Result<usize, PrepareError> {
    let check = keys.seal(CHECK_CONTEXT, CHECK_TEXT);
    let recorded = store.secret_key_check(&check).await?;
    if keys.open(CHECK_CONTEXT, &recorded)? != CHECK_TEXT {
        return Err(SecretsError::Unreadable("the key check does not match".into()).into());
    }
    let resealed = store.reseal_secrets(keys).await?;
    if keys.needs_sealing(&recorded) {
        store.replace_secret_key_check(&recorded, &check).await?;
    }
    if resealed > 0 {
        tracing::info!(
            resealed,
            key = keys.ids()[0],
            "secrets in the database sealed with the current key"
        );
    }
    Ok(resealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_in_their_own_context_only() {
        let (keys, _) = SecretKeys::generate();
        let sealed = keys.seal("webhooks.secret:wh_1", "whsec_abc");
        assert!(sealed.starts_with(PREFIX), "{sealed}");
        assert!(!sealed.contains("whsec_abc"));
        assert_eq!(
            keys.open("webhooks.secret:wh_1", &sealed).unwrap(),
            "whsec_abc"
        );
        assert!(matches!(
            keys.open("webhooks.secret:wh_2", &sealed),
            Err(SecretsError::Unreadable(_))
        ));
        // Two seals of one value differ (a fresh nonce each time).
        assert_ne!(keys.seal("c", "v"), keys.seal("c", "v"));
        // Plaintext from before encryption passes, and asks to be sealed.
        assert_eq!(keys.open("c", "whsec_old").unwrap(), "whsec_old");
        assert!(keys.needs_sealing("whsec_old"));
        assert!(!keys.needs_sealing(&sealed));
        let mut altered = sealed.clone();
        altered.pop();
        altered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(keys.open("webhooks.secret:wh_1", &altered).is_err());
    }

    #[test]
    fn a_rotated_key_file_opens_old_values_and_seals_with_the_new_key() {
        let (old, old_text) = SecretKeys::generate();
        let (_, new_text) = SecretKeys::generate();
        let sealed = old.seal("c", "secret");
        let rotated = SecretKeys::parse(&format!("# new\n{new_text}\n{old_text}"), "f").unwrap();
        assert_eq!(rotated.ids().len(), 2);
        assert_eq!(rotated.open("c", &sealed).unwrap(), "secret");
        assert!(rotated.needs_sealing(&sealed));
        let (other, _) = SecretKeys::generate();
        assert!(matches!(
            other.open("c", &sealed),
            Err(SecretsError::UnknownKey { .. })
        ));
    }

    #[test]
    fn bad_key_files_are_refused_with_the_line() {
        for (text, expected) in [
            ("", "holds no key"),
            ("# only a comment\n", "holds no key"),
            ("not base64!\n", "line 1: not base64"),
            ("\nAAAA\n", "line 2: a key is 32 bytes, this one 3"),
        ] {
            let error = SecretKeys::parse(text, "k").unwrap_err().to_string();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn the_key_file_is_created_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.key");
        let (first, created) = load_or_create(&path).unwrap();
        assert!(created);
        let (again, created) = load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(first.ids(), again.ids());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
