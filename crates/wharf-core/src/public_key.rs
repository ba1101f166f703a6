//! [`PublicKey`]: an OpenSSH public key line, parsed enough to compare and fingerprint it.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use sha2::{Digest, Sha256};

/// Why a string is not an OpenSSH public key line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublicKeyError {
    #[error("expected an OpenSSH public key line such as 'ssh-ed25519 AAAA… comment'")]
    Format,
    #[error("unsupported key type '{0}'")]
    Algorithm(String),
    #[error("the key data is not valid base64")]
    Base64,
    #[error("the key data does not match its type")]
    Mismatch,
}

const ALGORITHMS: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// A public key: its algorithm name and wire-format blob. Two keys are the same key when their
/// blobs are equal; the comment is kept only for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    algorithm: String,
    blob: Vec<u8>,
    comment: String,
}

impl PublicKey {
    /// Parses `"<algorithm> <base64> [comment]"`.
    pub fn parse(line: &str) -> Result<Self, PublicKeyError> {
        let line = line.trim();
        if line.len() > 16 * 1024 || line.chars().any(|c| c.is_control() && c != '\t') {
            return Err(PublicKeyError::Format);
        }
        let mut parts = line.split_whitespace();
        let (Some(algorithm), Some(data)) = (parts.next(), parts.next()) else {
            return Err(PublicKeyError::Format);
        };
        if !ALGORITHMS.contains(&algorithm) {
            return Err(PublicKeyError::Algorithm(
                algorithm.chars().take(64).collect(),
            ));
        }
        let blob = STANDARD
            .decode(data)
            .or_else(|_| STANDARD_NO_PAD.decode(data))
            .map_err(|_| PublicKeyError::Base64)?;
        // The blob starts with the algorithm name as an SSH string.
        let name_len = blob
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or(PublicKeyError::Mismatch)?;
        if blob.get(4..4 + name_len) != Some(algorithm.as_bytes()) || blob.len() <= 4 + name_len {
            return Err(PublicKeyError::Mismatch);
        }
        let comment = parts.collect::<Vec<_>>().join(" ");
        Ok(PublicKey {
            algorithm: algorithm.to_owned(),
            blob,
            comment,
        })
    }

    pub fn algorithm(&self) -> &str {
        &self.algorithm
    }

    /// `SHA256:…` as printed by `ssh-keygen -l`.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(&self.blob);
        format!("SHA256:{}", STANDARD_NO_PAD.encode(digest))
    }

    /// The key without its comment, in canonical form.
    pub fn to_openssh(&self) -> String {
        format!("{} {}", self.algorithm, STANDARD.encode(&self.blob))
    }

    /// The key line as given, normalised, with its comment.
    pub fn to_openssh_with_comment(&self) -> String {
        if self.comment.is_empty() {
            self.to_openssh()
        } else {
            format!("{} {}", self.to_openssh(), self.comment)
        }
    }

    /// Same key material, whatever the comments.
    pub fn same_key(&self, other: &PublicKey) -> bool {
        self.blob == other.blob
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Generated with ssh-keygen -t ed25519; the fingerprint is what ssh-keygen -l printed.
    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOg1F+/tvgtP97Py6h1YOqMj6LRkMYLb8zXrFmMDp1kZ alice@laptop";
    const FINGERPRINT: &str = "SHA256:vB+bEyONOIRhyDTzUqfKNLfpxpa+B2kwTaM58YmIiJQ";

    #[test]
    fn parses_and_fingerprints() {
        let k = PublicKey::parse(KEY).unwrap();
        assert_eq!(k.algorithm(), "ssh-ed25519");
        assert_eq!(k.fingerprint(), FINGERPRINT);
        assert_eq!(k.to_openssh_with_comment(), KEY);
        let bare = PublicKey::parse(&k.to_openssh()).unwrap();
        assert!(bare.same_key(&k));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(PublicKey::parse("").unwrap_err(), PublicKeyError::Format);
        assert_eq!(
            PublicKey::parse("ssh-ed25519").unwrap_err(),
            PublicKeyError::Format
        );
        assert!(matches!(
            PublicKey::parse("ssh-dss AAAA").unwrap_err(),
            PublicKeyError::Algorithm(_)
        ));
        assert_eq!(
            PublicKey::parse("ssh-ed25519 !!!").unwrap_err(),
            PublicKeyError::Base64
        );
        // An RSA blob labelled as ed25519.
        assert_eq!(
            PublicKey::parse("ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQAB").unwrap_err(),
            PublicKeyError::Mismatch
        );
        assert_eq!(
            PublicKey::parse(
                "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIOg1F+/tvgtP97Py6h1YOqMj6LRkMYLb8zXrFmMDp1kZ"
            )
            .unwrap_err(),
            PublicKeyError::Mismatch
        );
    }
}
