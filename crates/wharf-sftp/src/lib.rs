//! Wharf's SFTP gateway: russh for SSH, russh-sftp's packet types for SFTP, and the Wharf VFS
//! for everything a path means.
//!
//! - [`serve`]: accept loop with a connection limit and graceful stop.
//! - [`HostKeys`]: ed25519 and RSA host keys, generated once and persisted.
//! - [`SftpSession`]: the SFTP protocol over one channel, fed by the connection
//!   ([`DirectOut`] for replies sent at once, [`ReplySink`] for the rest).
//!
//! Logins are decided by a [`wharf_core::LoginProvider`]: the control plane in-process in
//! `wharf serve`, over HTTP in `wharf sftp-gateway`.

mod host_keys;
mod server;
mod sftp;

pub use host_keys::{HostKeyError, HostKeys};
pub use server::{ServeError, SftpConfig, serve};
pub use sftp::{
    BACKLOG_LIMIT, BACKLOG_SOFT_LIMIT, DirectOut, MAX_OPEN_PER_CONNECTION, MAX_OPEN_PER_PROCESS,
    MAX_PACKET_LEN, OpenFiles, ReplySink, SessionError, SftpSession,
};
