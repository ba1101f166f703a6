//! The accept loop: explicit FTPS (`AUTH TLS`) on one listener.
//!
//! Each connection is served by a libunftp `Server` of its own (`Server::service`), not by
//! libunftp's accept loop: the connection then has a session id and a tracing span from the
//! first byte, logins know the client's address and the gateway's session counts, the
//! connection limit and the graceful stop work as for SFTP, and the TLS session cache (used to
//! resume the control connection's TLS session on its data connections) is private to the
//! connection. Building a `Server` reads the certificate files, so a renewed certificate is
//! picked up by the next connection without a restart.

use std::sync::Arc;
use std::time::Duration;

use libunftp::options::{FtpsRequired, TlsFlags};
use libunftp::{Server, ServerBuilder};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tracing::{Instrument, info_span};
use wharf_core::LoginProvider;
use wharf_vfs::StoreCache;

use crate::auth::{FtpsUser, Logins};
use crate::sessions::SessionCounts;
use crate::storage::VfsBackend;
use crate::{FtpsConfig, TlsError};

/// The first line a client sees.
pub const GREETING: &str = "Wharf FTPS ready. TLS is required: AUTH TLS, then log in.";

/// Why the gateway did not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("TLS certificate or key: {0}")]
    Tls(#[from] TlsError),
    #[error("FTPS configuration: {0}")]
    Config(String),
}

/// Everything a connection needs, shared by all of them.
struct Shared {
    config: FtpsConfig,
    login: Arc<dyn LoginProvider>,
    stores: Arc<StoreCache>,
    sessions: SessionCounts,
}

/// Serves explicit FTPS on `listener` until `shutdown` turns true, then stops accepting and
/// waits up to `drain` for the sessions in progress to end, and returns. Sessions still
/// running after that are cut when the process exits; their uploads are never committed.
///
/// Fails at once if the certificate and key cannot be used.
pub async fn serve(
    listener: TcpListener,
    config: FtpsConfig,
    login: Arc<dyn LoginProvider>,
    stores: Arc<StoreCache>,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
) -> Result<(), ServeError> {
    config.tls.check()?;
    let shared = Arc::new(Shared {
        config,
        login,
        stores,
        sessions: SessionCounts::default(),
    });
    // One server built up front: a configuration libunftp refuses is reported now.
    build_server(&shared, test_logins(&shared)).map_err(|e| ServeError::Config(e.to_string()))?;
    let max_connections = shared.config.max_connections.max(1);
    let limit = Arc::new(Semaphore::new(max_connections));
    let stopping = async |limit: Arc<Semaphore>| {
        let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
        let in_flight = max_connections - limit.available_permits();
        if in_flight > 0 {
            tracing::info!(sessions = in_flight, "waiting for FTPS sessions to end");
        }
        if tokio::time::timeout(drain, limit.acquire_many(all))
            .await
            .is_err()
        {
            tracing::warn!("FTPS sessions still running after the drain period; stopping anyway");
        }
        Ok(())
    };
    loop {
        let permit = tokio::select! {
            permit = limit.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return Ok(()),
            },
            _ = stopped(&mut shutdown) => return stopping(limit).await,
        };
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stopped(&mut shutdown) => {
                drop(permit);
                return stopping(limit).await;
            }
        };
        let _ = socket.set_nodelay(true);
        let session_id = uuid::Uuid::now_v7().simple().to_string();
        let span =
            info_span!("ftps", session = %session_id, client = %peer, user = tracing::field::Empty);
        let logins = Logins::new(
            shared.login.clone(),
            shared.stores.clone(),
            shared.sessions.clone(),
            peer,
            session_id,
            span.clone(),
        );
        let server = match build_server(&shared, logins) {
            Ok(server) => server,
            Err(e) => {
                // The certificate files changed into something unusable since start-up.
                tracing::error!(parent: &span, error = %e, "cannot serve FTPS; connection closed");
                continue;
            }
        };
        tokio::spawn(
            async move {
                let _permit = permit;
                tracing::debug!("connection accepted");
                match server.service(socket).await {
                    Ok(()) => tracing::debug!("connection closed"),
                    Err(e) => tracing::info!(error = %e, "connection ended with an error"),
                }
            }
            .instrument(span),
        );
    }
}

/// A libunftp server for one connection.
fn build_server(
    shared: &Shared,
    logins: Logins,
) -> Result<Server<VfsBackend, FtpsUser>, libunftp::ServerError> {
    let config = &shared.config;
    let logins = Arc::new(logins);
    ServerBuilder::<VfsBackend, FtpsUser>::with_user_detail_provider(
        Box::new(|| VfsBackend),
        logins.clone(),
    )
    .authenticator(logins)
    .greeting(GREETING)
    .ftps(config.tls.cert_file.clone(), config.tls.key_file.clone())
    // USER/PASS only after AUTH TLS; PASV only after PROT P.
    .ftps_required(FtpsRequired::All, FtpsRequired::All)
    // TLS 1.2 and 1.3; data connections resume the control connection's TLS session by
    // session id (clients such as curl and FileZilla expect to). Tickets stay off: lftp
    // stumbles over TLS 1.3 tickets on uploads (bolcom/libunftp#285).
    .ftps_tls_flags(TlsFlags::V1_2 | TlsFlags::V1_3 | TlsFlags::RESUMPTION_SESS_ID)
    .passive_ports(config.passive_ports.clone())
    .passive_host(config.passive_host.clone())
    .idle_session_timeout(config.idle_timeout.as_secs().max(1))
    .build()
}

/// Logins for the start-up check: never used to log anyone in.
fn test_logins(shared: &Shared) -> Logins {
    Logins::new(
        shared.login.clone(),
        shared.stores.clone(),
        shared.sessions.clone(),
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        String::new(),
        tracing::Span::none(),
    )
}

/// Resolves once `shutdown` is true (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}
