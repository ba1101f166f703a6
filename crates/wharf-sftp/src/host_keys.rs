//! SSH host keys: generated once, persisted, loaded on every start, so partners see the same
//! fingerprint across restarts and across gateway replicas that share the directory.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::{KeypairData, RsaKeypair};
use russh::keys::{Algorithm, HashAlg, PrivateKey};

/// Why host keys could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum HostKeyError {
    #[error("cannot read or write host key {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("host key {path} is not a valid unencrypted OpenSSH private key: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("cannot generate a {algorithm} host key: {message}")]
    Generate { algorithm: String, message: String },
}

/// RSA host keys are generated with this many bits (OpenSSH's default).
const RSA_BITS: usize = 3072;

/// The host keys of this gateway, ed25519 first (preferred by every modern client), then RSA
/// (for old clients that know nothing else).
#[derive(Clone)]
pub struct HostKeys {
    keys: Vec<PrivateKey>,
}

impl HostKeys {
    /// Loads `ssh_host_ed25519_key` and `ssh_host_rsa_key` from `dir`, generating (mode 0600)
    /// whichever is missing. Returns the keys and the paths that were newly generated.
    pub fn load_or_generate(dir: &Path) -> Result<(Self, Vec<PathBuf>), HostKeyError> {
        fs::create_dir_all(dir).map_err(|source| HostKeyError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let mut generated = Vec::new();
        let mut keys = Vec::new();
        for (file, algorithm) in [
            ("ssh_host_ed25519_key", Algorithm::Ed25519),
            ("ssh_host_rsa_key", Algorithm::Rsa { hash: None }),
        ] {
            let path = dir.join(file);
            let key = if path.exists() {
                load(&path)?
            } else {
                let key = generate(&algorithm)?;
                store(&path, &key)?;
                generated.push(path);
                key
            };
            keys.push(key);
        }
        Ok((HostKeys { keys }, generated))
    }

    /// Loads every given key file (no generation): for gateways that share keys by file.
    pub fn load(paths: &[PathBuf]) -> Result<Self, HostKeyError> {
        let keys = paths.iter().map(|p| load(p)).collect::<Result<_, _>>()?;
        Ok(HostKeys { keys })
    }

    pub fn keys(&self) -> &[PrivateKey] {
        &self.keys
    }

    /// `(algorithm, "SHA256:…")` for each key, as `ssh-keygen -l` prints them.
    pub fn fingerprints(&self) -> Vec<(String, String)> {
        self.keys
            .iter()
            .map(|k| {
                (
                    k.algorithm().as_str().to_owned(),
                    k.public_key().fingerprint(HashAlg::Sha256).to_string(),
                )
            })
            .collect()
    }
}

fn load(path: &Path) -> Result<PrivateKey, HostKeyError> {
    let text = fs::read_to_string(path).map_err(|source| HostKeyError::Io {
        path: path.to_owned(),
        source,
    })?;
    let key = PrivateKey::from_openssh(text.as_bytes()).map_err(|e| HostKeyError::Invalid {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    if key.is_encrypted() {
        return Err(HostKeyError::Invalid {
            path: path.to_owned(),
            message: "the key is encrypted".into(),
        });
    }
    Ok(key)
}

fn generate(algorithm: &Algorithm) -> Result<PrivateKey, HostKeyError> {
    let err = |e: russh::keys::ssh_key::Error| HostKeyError::Generate {
        algorithm: algorithm.as_str().to_owned(),
        message: e.to_string(),
    };
    let mut rng = rand::rng();
    let mut key = match algorithm {
        Algorithm::Rsa { .. } => {
            let pair = RsaKeypair::random(&mut rng, RSA_BITS).map_err(err)?;
            PrivateKey::new(KeypairData::from(pair), "").map_err(err)?
        }
        other => PrivateKey::random(&mut rng, other.clone()).map_err(err)?,
    };
    key.set_comment("wharf host key");
    Ok(key)
}

fn store(path: &Path, key: &PrivateKey) -> Result<(), HostKeyError> {
    let io = |source| HostKeyError::Io {
        path: path.to_owned(),
        source,
    };
    let text = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| HostKeyError::Invalid {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    // Write to a temporary name and rename, so a crash never leaves a truncated key behind.
    let tmp = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)?;
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| HostKeyError::Invalid {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    fs::write(path.with_extension("pub"), format!("{public}\n")).map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_stable() {
        let dir = tempfile::tempdir().unwrap();
        let (first, generated) = HostKeys::load_or_generate(dir.path()).unwrap();
        assert_eq!(generated.len(), 2);
        let mode = fs::metadata(dir.path().join("ssh_host_ed25519_key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (second, generated) = HostKeys::load_or_generate(dir.path()).unwrap();
        assert!(generated.is_empty());
        assert_eq!(first.fingerprints(), second.fingerprints());
        let algorithms: Vec<_> = first.fingerprints().into_iter().map(|(a, _)| a).collect();
        assert_eq!(algorithms, ["ssh-ed25519", "ssh-rsa"]);
    }

    #[test]
    fn corrupt_key_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("ssh_host_ed25519_key"), "not a key").unwrap();
        let err = HostKeys::load_or_generate(dir.path()).err().unwrap();
        assert!(err.to_string().contains("ssh_host_ed25519_key"), "{err}");
    }
}
