//! The FTPS certificate's SHA-256 fingerprint, which `GET /v1/server` shows so that an
//! operator can tell partners what their FTPS client should display.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const END: &str = "-----END CERTIFICATE-----";

/// The SHA-256 fingerprint of the first certificate in `pem` (the leaf, in a chain) as
/// `openssl x509 -noout -fingerprint -sha256` prints it: upper-case hex bytes joined by `:`.
/// `None` if `pem` holds no readable certificate.
pub fn certificate_sha256(pem: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(pem).ok()?;
    let body = text.split_once(BEGIN)?.1.split_once(END)?.0;
    let base64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = STANDARD.decode(base64).ok()?;
    if der.is_empty() {
        return None;
    }
    let hex: Vec<String> = Sha256::digest(&der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    Some(hex.join(":"))
}

/// [`certificate_sha256`] of the file at `path`, read now (a renewed certificate shows at
/// once). `None`, logged, when it cannot be read.
pub(crate) async fn certificate_file_sha256(path: &Path) -> Option<String> {
    match tokio::fs::read(path).await {
        Ok(pem) => {
            let fingerprint = certificate_sha256(&pem);
            if fingerprint.is_none() {
                tracing::warn!(path = %path.display(), "the FTPS certificate file holds no PEM certificate");
            }
            fingerprint
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the FTPS certificate");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_the_first_certificate_of_a_chain() {
        // Not a real certificate: the fingerprint is of whatever DER the PEM carries.
        let der = b"not really DER, but bytes all the same";
        let pem = format!(
            "junk before\n{BEGIN}\n{}\n{END}\n{BEGIN}\nAAAA\n{END}\n",
            STANDARD.encode(der)
        );
        let expected: Vec<String> = Sha256::digest(der)
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
        assert_eq!(certificate_sha256(pem.as_bytes()), Some(expected.join(":")));
        let fingerprint = certificate_sha256(pem.as_bytes()).unwrap();
        assert_eq!(fingerprint.len(), 32 * 3 - 1);
        assert!(
            fingerprint
                .bytes()
                .all(|b| b == b':' || b.is_ascii_hexdigit())
        );
        assert_eq!(fingerprint, fingerprint.to_uppercase());
    }

    #[test]
    fn no_certificate_no_fingerprint() {
        for pem in [
            "".as_bytes(),
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
            b"-----BEGIN CERTIFICATE-----\n\n-----END CERTIFICATE-----\n",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n",
            &[0xff, 0xfe],
        ] {
            assert_eq!(certificate_sha256(pem), None);
        }
    }
}
