//! Wharf's FTPS gateway: its own FTP protocol engine on tokio and rustls (aws-lc-rs), the Wharf
//! VFS for everything a path means.
//!
//! - [`serve_listeners`] / [`serve`]: accept loops for explicit FTPS (`AUTH TLS`) and implicit
//!   FTPS (TLS from the first byte), with a connection limit, the PROXY protocol when enabled,
//!   and a graceful stop. Every connection gets a session id and a tracing span.
//! - [`FtpsConfig`]: certificate, passive ports and advertised passive host, timeouts, PROXY
//!   protocol, event sink.
//! - [`TlsFiles`]: the certificate and key (PEM files), generated self-signed once for
//!   `wharf serve`.
//!
//! TLS is required for login (`USER` on a plain connection is `534`) and for every data
//! connection (`PROT P`, in force from the start on the implicit port; transfers after `PROT C`
//! are `534`, whether set up by PASV or EPSV). Data connections are passive only, from a
//! gateway-wide port pool, must come from the control connection's client, and resume its TLS
//! session.
//!
//! Beyond RFC 959/3659: `HASH`/`RANG`/`OPTS HASH` (draft-bryan-ftpext-hash) and the `XSHA256`,
//! `XSHA512`, `XSHA1`, `XMD5` aliases over [`wharf_vfs::Vfs::checksum`]; `MFMT` accepted as a
//! no-op; `STAT <path>` streamed over the control connection; `OPTS MLST` fact selection.
//!
//! Logins are decided by a [`wharf_core::LoginProvider`] (protocol `ftps`): the control plane
//! in-process in `wharf serve`, over HTTP in `wharf ftps-gateway`. A user's concurrent
//! sessions are capped at the grant's `maxSessions`, counted per gateway process. Files go
//! through [`wharf_vfs::Vfs`] exactly as over SFTP: same jail, same permissions, uploads visible
//! only once complete (after the data connection's TLS close).

mod ack;
mod auth;
mod command;
mod config;
mod listing;
mod passive;
mod proxy;
mod reply;
mod server;
mod session;
mod sessions;
mod tls;
mod transfer;

pub use config::{ConfigError, FtpsConfig, PassiveHost, parse_port_range};
pub use server::{FtpsListeners, GREETING, ServeError, serve, serve_listeners};
pub use session::IMPLICIT_GREETING;
pub use tls::{CERT_FILE_NAME, KEY_FILE_NAME, TlsError, TlsFiles};
