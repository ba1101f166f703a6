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
    #[error(
        "RSA keys need at least {MIN_RSA_BITS} bits; this one has {0} (make one with ssh-keygen -t ed25519, or -t rsa -b 4096)"
    )]
    WeakRsa(u32),
}

/// The smallest RSA modulus accepted (NIST SP 800-131A; OpenSSH refuses smaller ones too).
pub const MIN_RSA_BITS: u32 = 2048;

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

/// The size in bits of the modulus of an `ssh-rsa` key, from the blob after its name: the
/// exponent `e` and the modulus `n` as SSH mpints.
fn rsa_modulus_bits(fields: &[u8]) -> Option<u32> {
    let field = |data: &[u8]| -> Option<(usize, usize)> {
        let len = u32::from_be_bytes(data.get(..4)?.try_into().ok()?) as usize;
        (data.len() >= 4 + len).then_some((4, 4 + len))
    };
    let (_, e_end) = field(fields)?;
    let rest = &fields[e_end..];
    let (n_start, n_end) = field(rest)?;
    let n = &rest[n_start..n_end];
    let first = n.iter().position(|&b| b != 0)?;
    let significant = u32::try_from(n.len() - first).ok()?;
    Some(significant * 8 - n[first].leading_zeros())
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
        if algorithm == "ssh-rsa" {
            let bits = rsa_modulus_bits(&blob[4 + name_len..]).ok_or(PublicKeyError::Mismatch)?;
            if bits < MIN_RSA_BITS {
                return Err(PublicKeyError::WeakRsa(bits));
            }
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

    const WEAK_RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDA4oQBdl/q7nW/1L8bV4chW+UYvcvKCveOcU5/7G3uv5rnbHW91kI+srd0QL8+OE6qUt/zcECl52RzyKm/8h3v78vQL8PFC9WbLN5hHUo+SwJT5xWH/1waaqv4hBxdaScZY5Pasvzsi7QZld2NeG69adgdd6Tb5y+LH5sYxXv1lQ== weak";
    const RSA_2048: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDHsyENT9DbSd0UPSQcpa3dJ0JbogEyLGxUc/bdiIn/AxynE8ZMwXcTLSZZYx4Ie0rEBTpqvjg72ahuPImnEJAJIHnUtbl8/4e/AW3YdzrLtAoIsoPHvNpq98+qH0BpeQCsgv7UqO8hTr86AmkQw2AMet+0cAepTVoUSzgtSVFFtfIQ11seHt4c+SmBRrLLnFRM2xgaNnof32J2XRc+FyM6ygczi++2LRqbT9AfPZD6/CN6tOuOPFgZGwo0WD16tfT9P2W/Wra0zXBa+fhU7KIHZlLKdrwIqj65vardsORxygyOjLSNtM+pPzXtciix4IvIXJ+5bp296vOHwSpSNiNB ok";

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
        // RSA keys below 2048 bits are refused (made with ssh-keygen -t rsa -b 1024 / 2048).
        assert_eq!(
            PublicKey::parse(WEAK_RSA).unwrap_err(),
            PublicKeyError::WeakRsa(1024)
        );
        assert_eq!(PublicKey::parse(RSA_2048).unwrap().algorithm(), "ssh-rsa");
        assert_eq!(
            PublicKey::parse(
                "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIOg1F+/tvgtP97Py6h1YOqMj6LRkMYLb8zXrFmMDp1kZ"
            )
            .unwrap_err(),
            PublicKeyError::Mismatch
        );
    }
}
