//! The accept loops: explicit FTPS (`AUTH TLS`) on one listener, implicit FTPS (TLS from the
//! first byte) on an optional second one, sharing one connection limit, one set of session
//! counts, one passive port pool and one TLS session cache.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tracing::{Instrument, info_span};
use wharf_core::LoginProvider;
use wharf_core::admission::Admission;
use wharf_core::session_watch::SessionWatch;
use wharf_vfs::StoreCache;

use crate::passive::PortPool;
use crate::session::{self, Mode};
use crate::sessions::SessionCounts;
use crate::{FtpsConfig, TlsError};

/// The first line a client of the explicit port sees.
pub const GREETING: &str = "Wharf FTPS ready. TLS is required: AUTH TLS, then log in.";

/// Why the gateway did not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("TLS certificate or key: {0}")]
    Tls(#[from] TlsError),
    #[error("FTPS configuration: {0}")]
    Config(String),
}

/// The sockets a gateway serves.
pub struct FtpsListeners {
    /// Explicit FTPS: a plain greeting, then `AUTH TLS`.
    pub explicit: TcpListener,
    /// Implicit FTPS (`ftps://`, usually port 990): TLS from the first byte.
    pub implicit: Option<TcpListener>,
}

/// Everything a connection needs, shared by all of them.
pub(crate) struct Shared {
    pub config: FtpsConfig,
    pub login: Arc<dyn LoginProvider>,
    pub stores: Arc<StoreCache>,
    pub sessions: SessionCounts,
    pub ports: Arc<PortPool>,
    /// Connections in the login phase (see [`wharf_core::admission`]).
    pub admission: Admission,
    /// Logged-in sessions, re-checked with the control plane.
    pub watch: SessionWatch,
}

/// Serves explicit FTPS on `listener`: [`serve_listeners`] without an implicit port.
pub async fn serve(
    listener: TcpListener,
    config: FtpsConfig,
    login: Arc<dyn LoginProvider>,
    stores: Arc<StoreCache>,
    shutdown: watch::Receiver<bool>,
    drain: Duration,
) -> Result<(), ServeError> {
    let listeners = FtpsListeners {
        explicit: listener,
        implicit: None,
    };
    serve_listeners(listeners, config, login, stores, shutdown, drain).await
}

/// Serves FTPS on `listeners` until `shutdown` turns true, then stops accepting, tells idle
/// sessions so (`421`), lets running transfers finish for up to `drain`, and returns. Sessions
/// still running after that are cut when the process exits; their uploads are never committed.
///
/// Fails at once if the certificate and key cannot be used.
pub async fn serve_listeners(
    listeners: FtpsListeners,
    config: FtpsConfig,
    login: Arc<dyn LoginProvider>,
    stores: Arc<StoreCache>,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
) -> Result<(), ServeError> {
    config.tls.check()?;
    if config.passive_ports.is_empty() {
        return Err(ServeError::Config("the passive port range is empty".into()));
    }
    let shared = Arc::new(Shared {
        ports: PortPool::new(config.passive_ports.clone()),
        sessions: SessionCounts::default(),
        admission: Admission::new(config.admission),
        watch: SessionWatch::start(login.clone(), config.session_watch),
        config,
        login,
        stores,
    });
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
    let FtpsListeners { explicit, implicit } = listeners;
    loop {
        let permit = tokio::select! {
            permit = limit.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return Ok(()),
            },
            _ = stopped(&mut shutdown) => return stopping(limit).await,
        };
        let (accepted, mode) = tokio::select! {
            accepted = explicit.accept() => (accepted, Mode::Explicit),
            accepted = accept(implicit.as_ref()) => (accepted, Mode::Implicit),
            _ = stopped(&mut shutdown) => {
                drop(permit);
                return stopping(limit).await;
            }
        };
        let (socket, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning, keep serving.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let session_id = uuid::Uuid::now_v7().simple().to_string();
        let span = info_span!(
            "ftps",
            session = %session_id,
            client = tracing::field::Empty,
            user = tracing::field::Empty
        );
        tokio::spawn(
            {
                let shared = shared.clone();
                let shutdown = shutdown.clone();
                async move {
                    let _permit = permit;
                    session::run(shared, socket, peer, mode, session_id, shutdown).await;
                }
            }
            .instrument(span),
        );
    }
}

/// Accepts on `listener`, or never when there is none.
async fn accept(
    listener: Option<&TcpListener>,
) -> std::io::Result<(TcpStream, std::net::SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// Resolves once `shutdown` is true (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}
