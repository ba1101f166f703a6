//! Passive data connections: the gateway-wide pool of passive ports, one listener per
//! transfer, and opening the data connection (right client, TLS, timeouts).

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rand::RngExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsAcceptor;

use crate::ack::AckEarly;
use crate::proxy;

/// A data connection after its TLS handshake.
pub(crate) type DataStream = tokio_rustls::server::TlsStream<AckEarly>;

/// Connections from a wrong address (or without a valid PROXY header) tolerated on one
/// passive port before the transfer fails.
const MAX_STRANGERS: usize = 5;

/// The passive ports of one gateway, shared by all its sessions: each listener takes a free
/// port of the range and gives it back when it is dropped (right after its one connection is
/// accepted), so the range only needs as many ports as transfers start at once.
pub(crate) struct PortPool {
    first: u16,
    count: u32,
    state: Mutex<PoolState>,
}

struct PoolState {
    in_use: HashSet<u16>,
}

impl PortPool {
    pub(crate) fn new(range: RangeInclusive<u16>) -> Arc<Self> {
        let (first, last) = (*range.start(), *range.end());
        Arc::new(PortPool {
            first,
            count: u32::from(last.saturating_sub(first)) + 1,
            state: Mutex::new(PoolState {
                in_use: HashSet::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A listener on `ip` and a free port of the range, tried from a random one: the next
    /// session's port cannot be guessed from this one's, so another client cannot be first on
    /// it. Ports in use by another process are skipped; fails when none is left.
    pub(crate) fn bind(self: &Arc<Self>, ip: IpAddr) -> io::Result<PassiveListener> {
        let mut state = self.lock();
        let mut last_error = None;
        let start = rand::rng().random_range(0..self.count);
        for i in 0..self.count {
            let index = (start + i) % self.count;
            let Ok(offset) = u16::try_from(index) else {
                continue;
            };
            let port = self.first.saturating_add(offset);
            if state.in_use.contains(&port) {
                continue;
            }
            match listen(SocketAddr::new(ip, port)) {
                Ok(listener) => {
                    state.in_use.insert(port);
                    return Ok(PassiveListener {
                        listener,
                        port,
                        pool: self.clone(),
                    });
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(match last_error {
            Some(e) => io::Error::new(e.kind(), format!("no passive port is free ({e})")),
            None => io::Error::new(
                io::ErrorKind::AddrInUse,
                "all passive ports are in use; try again shortly",
            ),
        })
    }

    #[cfg(test)]
    fn in_use(&self) -> usize {
        self.lock().in_use.len()
    }
}

fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    // A port whose last data connection is in TIME_WAIT can be listened on again at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(8)
}

/// A passive port waiting for its data connection. Dropping it frees the port.
pub(crate) struct PassiveListener {
    listener: TcpListener,
    port: u16,
    pool: Arc<PortPool>,
}

impl PassiveListener {
    pub(crate) fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PassiveListener {
    fn drop(&mut self) {
        self.pool.lock().in_use.remove(&self.port);
    }
}

/// Why no data connection could be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DataError {
    #[error("no data connection within {0} s")]
    Timeout(u64),
    #[error("data connections came only from other addresses than the control connection's")]
    WrongPeer,
    #[error("cannot accept the data connection: {0}")]
    Accept(io::Error),
    #[error("TLS handshake on the data connection failed: {0}")]
    Tls(io::Error),
    #[error("TLS handshake on the data connection timed out")]
    TlsTimeout,
    #[error("the data connection did not resume the control connection's TLS session")]
    NotResumed,
}

/// Who may open the data connection of a session, and how.
#[derive(Clone)]
pub(crate) struct DataPolicy {
    /// The client's address (after the PROXY protocol).
    pub client_ip: IpAddr,
    /// The control connection's TCP peer (the load balancer's address when one is in front).
    pub control_peer_ip: IpAddr,
    /// The gateway's state: its configuration says which peers may start a data connection
    /// with a PROXY header ([`crate::FtpsConfig::proxy_from`]).
    pub shared: std::sync::Arc<crate::server::Shared>,
    /// TLS for data connections (the control connection's sessions, no tickets).
    pub acceptor: TlsAcceptor,
    /// Refuse a data connection that does not resume one of the control connection's TLS
    /// sessions (see [`crate::FtpsConfig::require_tls_resumption`]).
    pub require_resumption: bool,
    /// For the connection and, again, for the TLS handshake.
    pub timeout: Duration,
}

impl DataPolicy {
    /// Accepts the data connection on `listener` (connections from other addresses are
    /// dropped and waited past), then frees the port and runs the TLS handshake, which must
    /// resume the control connection's TLS session when so required.
    pub(crate) async fn open(&self, listener: PassiveListener) -> Result<DataStream, DataError> {
        let secs = self.timeout.as_secs();
        let deadline = Instant::now() + self.timeout;
        let mut strangers = 0;
        let tcp = loop {
            let (mut tcp, peer) = timeout_at(deadline, listener.listener.accept())
                .await
                .map_err(|_| DataError::Timeout(secs))?
                .map_err(DataError::Accept)?;
            match self.check_peer(&mut tcp, peer, deadline).await {
                Ok(()) => break tcp,
                Err(why) => {
                    tracing::warn!(%peer, expected = %self.client_ip, why,
                        "data connection refused");
                    strangers += 1;
                    if strangers >= MAX_STRANGERS {
                        return Err(DataError::WrongPeer);
                    }
                }
            }
        };
        drop(listener);
        let _ = tcp.set_nodelay(true);
        let deadline = Instant::now() + self.timeout;
        match timeout_at(deadline, self.acceptor.accept(AckEarly::new(tcp))).await {
            Ok(Ok(stream)) => {
                let tls = stream.get_ref().1;
                let resumed = tls.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
                tracing::debug!(version = ?tls.protocol_version(), resumed,
                    "data connection encrypted");
                if self.require_resumption && !resumed {
                    return Err(DataError::NotResumed);
                }
                Ok(stream)
            }
            Ok(Err(e)) => Err(DataError::Tls(e)),
            Err(_) => Err(DataError::TlsTimeout),
        }
    }

    /// Whether the connection from `peer` belongs to this session: from the client's address,
    /// as the socket or, from a trusted proxy, its PROXY header says. From a trusted proxy
    /// without a header, the control connection's peer is accepted too (a load balancer that
    /// adds headers to control connections only).
    async fn check_peer(
        &self,
        tcp: &mut TcpStream,
        peer: SocketAddr,
        deadline: Instant,
    ) -> Result<(), &'static str> {
        let tcp_ip = peer.ip().to_canonical();
        if !self.shared.config.proxy_from(tcp_ip) {
            return if tcp_ip == self.client_ip {
                Ok(())
            } else {
                Err("not the control connection's address")
            };
        }
        let mut first = [0u8; 1];
        let peeked = timeout_at(deadline, tcp.peek(&mut first))
            .await
            .map_err(|_| "nothing received")?
            .map_err(|_| "connection failed")?;
        if peeked == 1 && proxy::starts_header(first[0]) {
            let header = timeout_at(deadline, proxy::read_header(tcp))
                .await
                .map_err(|_| "PROXY header timed out")?
                .map_err(|_| "invalid PROXY header")?;
            let source = header.source.map_or(tcp_ip, |s| s.ip().to_canonical());
            return if source == self.client_ip {
                Ok(())
            } else {
                Err("PROXY header names another client")
            };
        }
        if tcp_ip == self.client_ip || tcp_ip == self.control_peer_ip {
            Ok(())
        } else {
            Err("not the control connection's address")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ports_are_taken_and_given_back() {
        // Find two free neighbouring ports for the test.
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let start = probe.local_addr().unwrap().port();
        drop(probe);
        let pool = PortPool::new(start..=start);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let first = pool.bind(ip).unwrap();
        assert_eq!(first.port(), start);
        assert_eq!(pool.in_use(), 1);
        assert!(pool.bind(ip).is_err(), "the only port is taken");
        drop(first);
        assert_eq!(pool.in_use(), 0);
        let again = pool.bind(ip).unwrap();
        assert_eq!(again.port(), start, "the port is reused");
    }

    /// Ports are handed out from a random one: a client that saw one session's port cannot
    /// tell the next. (In order, the next was the previous one plus one.)
    #[tokio::test]
    async fn ports_are_handed_out_at_random() {
        let pool = PortPool::new(41000..=41999);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let mut seen = Vec::new();
        for _ in 0..8 {
            let Ok(listener) = pool.bind(ip) else {
                continue;
            };
            seen.push(listener.port());
        }
        assert!(
            seen.len() >= 4,
            "too few ports of 41000-41999 were free: {seen:?}"
        );
        let in_order = seen.windows(2).all(|pair| pair[1] == pair[0] + 1);
        assert!(!in_order, "ports were handed out in order: {seen:?}");
    }

    #[tokio::test]
    async fn a_port_held_by_another_process_is_skipped() {
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = other.local_addr().unwrap().port();
        let pool = PortPool::new(taken..=taken.saturating_add(1));
        let listener = pool.bind("127.0.0.1".parse().unwrap());
        if let Ok(listener) = listener {
            assert_ne!(listener.port(), taken);
        }
    }
}
