//! [`TlsFiles`]: the gateway's certificate and private key, as PEM files.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::StoresServerSessions;

/// TLS sessions one control connection remembers: its own (a TLS 1.2 session id, or the TLS
/// 1.3 tickets it was sent), and a few renegotiated or re-keyed ones.
const SESSIONS_PER_CONNECTION: usize = 8;

/// The TLS sessions of one control connection, and only those: its data connections resume
/// them (TLS 1.2 session id or TLS 1.3 ticket, as curl, lftp, FileZilla and WinSCP do), and a
/// data connection that resumes one proves it comes from the client that holds the control
/// connection's secrets, not from another program on the same address that raced it to the
/// passive port (vsftpd's `require_ssl_reuse`).
///
/// Unlike a shared cache, a session is not taken out when used: a client resumes the same
/// TLS 1.3 ticket for each of its data connections (which send no new tickets, see
/// [`ConnectionTls::data`]). Single use protects 0-RTT data against replay; 0-RTT is off.
#[derive(Debug, Default)]
pub(crate) struct ConnectionSessions {
    /// Oldest first.
    sessions: Mutex<Vec<(Vec<u8>, Vec<u8>)>>,
}

impl StoresServerSessions for ConnectionSessions {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        sessions.retain(|(k, _)| *k != key);
        if sessions.len() >= SESSIONS_PER_CONNECTION {
            sessions.remove(0);
        }
        sessions.push((key, value));
        true
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        sessions
            .iter()
            .find(|(k, _)| k.as_slice() == key)
            .map(|(_, v)| v.clone())
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.get(key)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

/// The TLS configurations of one control connection and its data connections, sharing the
/// connection's own [`ConnectionSessions`].
pub(crate) struct ConnectionTls {
    /// The control connection: TLS 1.3 tickets are sent (the client reads this connection, and
    /// resumes its data connections with them).
    pub control: Arc<rustls::ServerConfig>,
    /// Data connections: the same certificate and sessions, but no TLS 1.3 tickets. A ticket
    /// the client never reads (it only sends, on an upload) makes its kernel answer the close
    /// with a reset, and the upload would be lost (vsftpd's `426` with TLS 1.3).
    pub data: Arc<rustls::ServerConfig>,
}

/// File name of a generated certificate inside its directory.
pub const CERT_FILE_NAME: &str = "ftps-cert.pem";
/// File name of a generated private key inside its directory.
pub const KEY_FILE_NAME: &str = "ftps-key.pem";

/// Where the gateway's certificate chain and private key are (PEM, the leaf certificate first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// The certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key")]
    NoKey { path: PathBuf },
    #[error("{path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot generate a certificate: {0}")]
    Generate(String),
    #[error("only one of {present} and {missing} exists; give both or neither")]
    HalfPair { present: PathBuf, missing: PathBuf },
}

impl TlsFiles {
    pub fn new(cert_file: impl Into<PathBuf>, key_file: impl Into<PathBuf>) -> Self {
        TlsFiles {
            cert_file: cert_file.into(),
            key_file: key_file.into(),
        }
    }

    /// The pair in `dir` ([`CERT_FILE_NAME`], [`KEY_FILE_NAME`]); if neither file exists, a
    /// self-signed certificate for `public_host` is generated there first (see
    /// [`TlsFiles::generate`]). Returns the files and, when it generated them, the names the
    /// new certificate holds.
    pub fn load_or_generate(
        dir: &Path,
        public_host: &str,
    ) -> Result<(TlsFiles, Option<Vec<String>>), TlsError> {
        let files = TlsFiles::new(dir.join(CERT_FILE_NAME), dir.join(KEY_FILE_NAME));
        let generated = match (files.cert_file.exists(), files.key_file.exists()) {
            (true, true) => None,
            (false, false) => Some(files.generate(public_host)?),
            (true, false) => {
                return Err(TlsError::HalfPair {
                    present: files.cert_file,
                    missing: files.key_file,
                });
            }
            (false, true) => {
                return Err(TlsError::HalfPair {
                    present: files.key_file,
                    missing: files.cert_file,
                });
            }
        };
        files.check()?;
        Ok((files, generated))
    }

    /// Writes a new self-signed certificate (ECDSA P-256) and its key (owner-only). Its subject
    /// names `public_host` (the CN clients show) and its names (SAN) are the public host,
    /// `localhost` and 127.0.0.1, so a partner's client matches it whichever it connects to.
    /// Returns those names. Fails if either file exists.
    pub fn generate(&self, public_host: &str) -> Result<Vec<String>, TlsError> {
        let mut names = vec![public_host.to_owned()];
        for local in ["localhost", "127.0.0.1"] {
            if !names.iter().any(|n| n == local) {
                names.push(local.to_owned());
            }
        }
        let generate = |e: rcgen::Error| TlsError::Generate(e.to_string());
        let mut params = rcgen::CertificateParams::new(names.clone()).map_err(generate)?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, public_host);
        let key = rcgen::KeyPair::generate().map_err(generate)?;
        let cert = params.self_signed(&key).map_err(generate)?;
        // The key first, so that a certificate never exists without its key.
        for (path, mode, contents) in [
            (&self.key_file, 0o600, key.serialize_pem()),
            (&self.cert_file, 0o644, cert.pem()),
        ] {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|source| TlsError::Write {
                    path: parent.to_owned(),
                    source,
                })?;
            }
            let write = |path: &Path| -> std::io::Result<()> {
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .open(path)?;
                file.write_all(contents.as_bytes())?;
                file.sync_all()
            };
            write(path).map_err(|source| TlsError::Write {
                path: path.clone(),
                source,
            })?;
        }
        Ok(names)
    }

    /// Reads both files and builds a TLS configuration from them, so a bad certificate or a
    /// key that does not match it is reported at start-up rather than on the first login.
    pub fn check(&self) -> Result<(), TlsError> {
        self.server_config().map(|_| ())
    }

    /// TLS 1.2 and 1.3 (aws-lc-rs) with the certificate and key as the files hold them now.
    fn server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let certs = self.certificates()?;
        let key = self.private_key()?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        Ok(rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?)
    }

    /// The configurations for a new control connection, from the files as they are now (a
    /// renewed certificate is used without a restart), with a session store of its own.
    pub(crate) fn connection_tls(&self) -> Result<ConnectionTls, TlsError> {
        let mut control = self.server_config()?;
        control.session_storage = Arc::new(ConnectionSessions::default());
        let mut data = control.clone();
        data.send_tls13_tickets = 0;
        Ok(ConnectionTls {
            control: Arc::new(control),
            data: Arc::new(data),
        })
    }

    fn certificates(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let pem = read(&self.cert_file)?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Pem {
                path: self.cert_file.clone(),
                message: e.to_string(),
            })?;
        if certs.is_empty() {
            return Err(TlsError::NoCertificate {
                path: self.cert_file.clone(),
            });
        }
        Ok(certs)
    }

    fn private_key(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        let pem = read(&self.key_file)?;
        PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
                path: self.key_file.clone(),
            },
            other => TlsError::Pem {
                path: self.key_file.clone(),
                message: other.to_string(),
            },
        })
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn generated_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (files, generated) =
            TlsFiles::load_or_generate(dir.path(), "sftp.example.com").unwrap();
        assert_eq!(
            generated.as_deref(),
            Some(
                &[
                    "sftp.example.com".to_owned(),
                    "localhost".into(),
                    "127.0.0.1".into()
                ][..]
            )
        );
        let mode = std::fs::metadata(&files.key_file)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let cert = std::fs::read(&files.cert_file).unwrap();
        let (again, generated) =
            TlsFiles::load_or_generate(dir.path(), "sftp.example.com").unwrap();
        assert_eq!(generated, None);
        assert_eq!(again, files);
        assert_eq!(std::fs::read(&files.cert_file).unwrap(), cert);
    }

    #[test]
    fn half_a_pair_or_garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CERT_FILE_NAME), "x").unwrap();
        assert!(matches!(
            TlsFiles::load_or_generate(dir.path(), "localhost"),
            Err(TlsError::HalfPair { .. })
        ));
        std::fs::write(dir.path().join(KEY_FILE_NAME), "y").unwrap();
        assert!(matches!(
            TlsFiles::load_or_generate(dir.path(), "localhost"),
            Err(TlsError::NoCertificate { .. })
        ));
    }

    #[test]
    fn a_key_that_does_not_match_is_refused() {
        let one = tempfile::tempdir().unwrap();
        let two = tempfile::tempdir().unwrap();
        let (a, _) = TlsFiles::load_or_generate(one.path(), "localhost").unwrap();
        let (b, _) = TlsFiles::load_or_generate(two.path(), "localhost").unwrap();
        let mixed = TlsFiles::new(a.cert_file, b.key_file);
        assert!(mixed.check().is_err());
    }
}
