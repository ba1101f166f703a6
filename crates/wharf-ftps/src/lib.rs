//! Wharf's FTPS gateway: libunftp for FTP and TLS, the Wharf VFS for everything a path means.
//!
//! - [`serve`]: accept loop with a connection limit and graceful stop. Every connection gets a
//!   session id, a tracing span and its own libunftp `Server` (see [`server`](crate::serve) for
//!   why), which serves explicit FTPS (`AUTH TLS`) with TLS required for login and data.
//! - [`FtpsConfig`]: certificate, passive ports and advertised passive host, timeouts.
//! - [`TlsFiles`]: the certificate and key (PEM files), generated self-signed once for
//!   `wharf serve`.
//!
//! Logins are decided by a [`wharf_core::LoginProvider`] (protocol `ftps`): the control plane
//! in-process in `wharf serve`, over HTTP in `wharf ftps-gateway`. A user's concurrent
//! sessions are capped at the grant's `maxSessions`, counted per gateway process. Files go
//! through [`wharf_vfs::Vfs`] exactly as over SFTP: same jail, same permissions, uploads visible
//! only once complete.

mod auth;
mod config;
mod server;
mod sessions;
mod storage;
mod tls;

pub use config::{ConfigError, FtpsConfig, PassiveHost, parse_port_range};
pub use server::{GREETING, ServeError, serve};
pub use tls::{TlsError, TlsFiles};
