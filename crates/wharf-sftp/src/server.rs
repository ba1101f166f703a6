//! The SSH side: accepting connections, authenticating through the [`LoginProvider`], and
//! starting the SFTP subsystem on a session channel. Shells, exec (legacy scp), port
//! forwarding and agent forwarding are refused.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use russh::keys::PublicKey as SshPublicKey;
use russh::keys::{Algorithm, EcdsaCurve, HashAlg};
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, MethodKind, MethodSet, Preferred, SshId, cipher};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tracing::{Instrument, info_span};
use wharf_core::admission::{Admission, AdmissionLimits, PreAuth};
use wharf_core::session_watch::{self, EndSender, Registration, SessionWatch, WatchOptions};
use wharf_core::{
    EventSink, LoginError, LoginGrant, LoginProvider, LoginRequest, LoginSecret, Protocol,
    SessionCheck, Username,
};
use wharf_vfs::{MemoryBudget, SessionIdentity, StoreCache, Vfs};

use crate::HostKeys;
use crate::sftp::{OpenFiles, SftpSession};

/// Settings of an SFTP gateway.
#[derive(Clone)]
pub struct SftpConfig {
    pub host_keys: HostKeys,
    /// Most connections served at once; further ones wait in the accept queue.
    pub max_connections: usize,
    /// A connection that has not finished key exchange and authentication by then is closed.
    pub login_timeout: Duration,
    /// Connections taken into the login phase (see [`Admission`]).
    pub admission: AdmissionLimits,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// Authentication attempts per connection, all methods together (each public key a
    /// client offers counts).
    pub max_auth_attempts: usize,
    /// Password (or keyboard-interactive) attempts per connection; the password methods are
    /// offered until they are used up.
    pub max_password_attempts: usize,
    /// Where sessions report uploads, deletes, renames and new directories (none: no events).
    pub events: Option<Arc<dyn EventSink>>,
    /// How often open sessions are re-checked with the control plane, and how long one may
    /// last (see [`wharf_core::session_watch`]).
    pub session_watch: WatchOptions,
}

impl SftpConfig {
    pub fn new(host_keys: HostKeys) -> Self {
        SftpConfig {
            host_keys,
            max_connections: 1024,
            login_timeout: Duration::from_secs(20),
            admission: AdmissionLimits::default(),
            idle_timeout: Duration::from_secs(600),
            max_auth_attempts: 10,
            max_password_attempts: MAX_PASSWORD_ATTEMPTS,
            events: None,
            session_watch: WatchOptions::default(),
        }
    }

    fn russh_config(&self) -> russh::server::Config {
        russh::server::Config {
            server_id: SshId::Standard(concat!("SSH-2.0-Wharf_", env!("CARGO_PKG_VERSION")).into()),
            methods: all_methods(),
            // Failed logins take at least this long, so guessing is slow and timing says nothing.
            auth_rejection_time: Duration::from_millis(500),
            // OpenSSH's first "none" probe is not a guess: answer it at once.
            auth_rejection_time_initial: Some(Duration::ZERO),
            keys: self.host_keys.keys().to_vec(),
            max_auth_attempts: self.max_auth_attempts,
            inactivity_timeout: Some(self.idle_timeout),
            keepalive_interval: Some(Duration::from_secs(30)),
            keepalive_max: 4,
            // Large windows and packets keep bulk transfers from stalling on flow control.
            window_size: 16 * 1024 * 1024,
            maximum_packet_size: 65535,
            // Messages per connection queue. SFTP replies are whole packets of up to 255 KiB
            // here (see `ChannelSink`), so this also bounds what a client that does not read
            // can make the server hold: 64 × 255 KiB.
            channel_buffer_size: 64,
            nodelay: true,
            preferred: Preferred {
                // russh's defaults plus aes128-gcm, the fastest cipher on AES-NI machines and
                // the one throughput-minded clients ask for.
                cipher: std::borrow::Cow::Borrowed(&[
                    cipher::CHACHA20_POLY1305,
                    cipher::AES_128_GCM,
                    cipher::AES_256_GCM,
                    cipher::AES_128_CTR,
                    cipher::AES_192_CTR,
                    cipher::AES_256_CTR,
                ]),
                key: std::borrow::Cow::Borrowed(SIGNATURE_ALGORITHMS),
                ..Preferred::default()
            },
            ..Default::default()
        }
    }
}

/// Host key and user signature algorithms (also advertised as `server-sig-algs`): russh's
/// defaults without `ssh-rsa`, whose signatures use SHA-1. RSA keys sign with rsa-sha2-256 or
/// rsa-sha2-512, which every maintained client does (OpenSSH since 7.2, PuTTY since 0.75).
const SIGNATURE_ALGORITHMS: &[Algorithm] = &[
    Algorithm::Ed25519,
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP256,
    },
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP384,
    },
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP521,
    },
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha512),
    },
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha256),
    },
];

/// Whether a user key's signature algorithm is refused: `ssh-rsa`, whose signatures use SHA-1.
fn sha1_signature(algorithm: &Algorithm) -> bool {
    matches!(algorithm, Algorithm::Rsa { hash: None })
}

/// Password attempts per connection by default (OpenSSH's clients ask three times too).
pub const MAX_PASSWORD_ATTEMPTS: usize = 3;

/// Every login method the gateway offers: public key, password, and keyboard-interactive (one
/// "Password:" prompt, for clients and appliances that only try that one).
fn all_methods() -> MethodSet {
    let mut methods = MethodSet::empty();
    methods.push(MethodKind::PublicKey);
    methods.push(MethodKind::KeyboardInteractive);
    methods.push(MethodKind::Password);
    methods
}

/// Why the gateway stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("accepting connections failed: {0}")]
    Accept(#[from] std::io::Error),
}

/// Serves SFTP on `listener` until `shutdown` turns true, then stops accepting and waits up to
/// `drain` for the sessions in progress to end (a rolling deploy must not cut uploads), and
/// returns. Sessions still running after that are cut when the process exits; their uploads
/// are never committed half-way.
pub async fn serve(
    listener: TcpListener,
    config: SftpConfig,
    login: Arc<dyn LoginProvider>,
    stores: Arc<StoreCache>,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
) -> Result<(), ServeError> {
    let russh_config = Arc::new(config.russh_config());
    let limit = Arc::new(Semaphore::new(config.max_connections));
    let sessions = SessionCounts::default();
    let admission = Admission::new(config.admission);
    let open_sessions = SessionWatch::start(login.clone(), config.session_watch);
    // Handles open in the whole gateway (see `OpenFiles`).
    let process_open_files = Arc::new(AtomicUsize::new(0));
    let stopping = async |limit: Arc<Semaphore>| {
        let all = u32::try_from(config.max_connections).unwrap_or(u32::MAX);
        let in_flight = config.max_connections - limit.available_permits();
        if in_flight > 0 {
            tracing::info!(sessions = in_flight, "waiting for SFTP sessions to end");
        }
        if tokio::time::timeout(drain, limit.acquire_many(all))
            .await
            .is_err()
        {
            tracing::warn!("SFTP sessions still running after the drain period; stopping anyway");
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
        let pre_auth = match admission.admit(peer.ip()) {
            Ok(pre_auth) => pre_auth,
            Err(refusal) => {
                tracing::info!(client = %peer, reason = %refusal, "connection refused");
                // Lines before the SSH version string are shown to the user by OpenSSH.
                let _ = socket.try_write(format!("{refusal}\r\n").as_bytes());
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let open_files = OpenFiles::for_connection(&process_open_files);
        let mut stop = shutdown.clone();
        let session_id = new_session_id();
        let span = info_span!("sftp", session = %session_id, client = %peer);
        let (end, ending) = watch::channel(None);
        let mut ending = Some(ending);
        let handler = Connection {
            login: login.clone(),
            stores: stores.clone(),
            events: config.events.clone(),
            sessions: sessions.clone(),
            peer,
            session_id: session_id.clone(),
            grant: None,
            authenticated: Arc::new(AtomicBool::new(false)),
            pre_auth: Some(pre_auth),
            admission: admission.clone(),
            address_banned: false,
            watch: open_sessions.clone(),
            end: Arc::new(end),
            registration: None,
            slot: None,
            refusal: None,
            offered_key: None,
            password_attempts_left: config.max_password_attempts,
            password_disabled: false,
            channels: HashMap::new(),
            sftp: HashMap::new(),
            open_files: open_files.clone(),
            write_budget: MemoryBudget::for_session(),
            span: span.clone(),
        };
        let russh_config = russh_config.clone();
        let login_timeout = config.login_timeout;
        let authenticated = handler.authenticated.clone();
        tokio::spawn(
            async move {
                let _permit = permit;
                tracing::debug!("connection accepted");
                let deadline = tokio::time::Instant::now() + login_timeout;
                let cut = CancellationToken::new();
                let socket = Cuttable::new(socket, cut.clone());
                let cut_now = cut.clone();
                let session = match tokio::time::timeout_at(
                    deadline,
                    russh::server::run_stream(russh_config, socket, handler),
                )
                .await
                {
                    Ok(Ok(session)) => session,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::info!("handshake timed out");
                        return;
                    }
                };
                // run_stream returns once the version strings are exchanged: key exchange and
                // authentication must also finish by the deadline, or a client that never
                // logs in would hold a connection slot until the idle timeout.
                // (A disconnect message cannot be sent in the middle of a key exchange, so the
                // socket itself is cut.)
                let watchdog = tokio::spawn(async move {
                    tokio::time::sleep_until(deadline).await;
                    if !authenticated.load(Ordering::Acquire) {
                        tracing::info!("login not completed in time; closing the connection");
                        cut.cancel();
                    }
                });
                let handle = session.handle();
                let told = handle.clone();
                tokio::pin!(session);
                let ended = tokio::select! {
                    ended = &mut session => ended,
                    never = end_when_idle(&mut stop, handle, open_files) => match never {},
                    ending = session_watch::ended(&mut ending) => {
                        tracing::info!(reason = ending.message(), "ending the session");
                        let _ = told
                            .disconnect(
                                russh::Disconnect::ByApplication,
                                ending.message().into(),
                                String::new(),
                            )
                            .await;
                        // A client that does not close in time is cut off.
                        match tokio::time::timeout(Duration::from_secs(5), &mut session).await {
                            Ok(ended) => ended,
                            Err(_) => {
                                cut_now.cancel();
                                session.await
                            }
                        }
                    }
                };
                match ended {
                    Ok(()) => tracing::debug!("connection closed"),
                    Err(e) => tracing::debug!(error = %e, "connection ended with an error"),
                }
                watchdog.abort();
            }
            .instrument(span),
        );
    }
}

/// Resolves once `shutdown` is true (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// Once the gateway stops, disconnects the connection as soon as no file is open on it: an
/// idle partner is told to come back at once, while one with a transfer in progress may
/// finish it within the drain time. Never returns; the connection's end stops it.
async fn end_when_idle(
    stop: &mut watch::Receiver<bool>,
    handle: russh::server::Handle,
    open_files: OpenFiles,
) -> std::convert::Infallible {
    stopped(stop).await;
    while open_files.on_connection() > 0 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tracing::info!("gateway stopping: disconnecting an idle session");
    let _ = handle
        .disconnect(
            russh::Disconnect::ByApplication,
            "the server is restarting; connect again".into(),
            String::new(),
        )
        .await;
    std::future::pending().await
}

/// A socket that can be cut from outside: once its token is cancelled every read and write
/// fails, which ends the SSH session whatever state it is in.
///
/// During the first [`QUICK_ACK_READS`] reads (the key exchange and the login) it also
/// acknowledges what it read at once. Clients without `TCP_NODELAY` (OpenSSH's `sftp` and
/// `scp` are not interactive sessions) send their KEXINIT, then hold the next small packet
/// (the key exchange's public key) until that KEXINIT is acknowledged. The server has
/// nothing to answer the KEXINIT with, so Linux delays the acknowledgement by 40 ms: measured
/// on loopback, a 15 ms `sftp ls` took 55–60 ms most of the time. Later on, every request
/// gets an answer that carries the acknowledgement.
struct Cuttable<S> {
    inner: S,
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
    quick_acks_left: u8,
}

/// Reads after which [`Cuttable`] acknowledges at once: more than a login takes.
const QUICK_ACK_READS: u8 = 32;

impl<S> Cuttable<S> {
    fn new(inner: S, token: CancellationToken) -> Self {
        Cuttable {
            inner,
            cut: Box::pin(token.cancelled_owned()),
            quick_acks_left: QUICK_ACK_READS,
        }
    }

    fn check(&mut self, cx: &mut Context<'_>) -> std::io::Result<()> {
        match self.cut.as_mut().poll(cx) {
            Poll::Ready(()) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connection cut: login not completed in time",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

/// A socket that can acknowledge at once what was read.
trait AckNow {
    fn ack_now(&self);
}

impl AckNow for tokio::net::TcpStream {
    fn ack_now(&self) {
        // Not a permanent setting: Linux goes back to delayed acknowledgements by itself.
        #[cfg(target_os = "linux")]
        let _ = self.set_quickack(true);
    }
}

impl<S: AsyncRead + AckNow + Unpin> AsyncRead for Cuttable<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.check(cx)?;
        let before = buf.filled().len();
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.quick_acks_left > 0
            && matches!(read, Poll::Ready(Ok(())))
            && buf.filled().len() > before
        {
            self.quick_acks_left -= 1;
            self.inner.ack_now();
        }
        read
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Cuttable<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn new_session_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// Errors that end an SSH connection.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error(transparent)]
    Ssh(#[from] russh::Error),
}

/// Authenticated connections per user, shared by all connections of one [`serve`] call.
///
/// The count is per gateway process: gateways behind a load balancer each enforce a user's
/// `maxSessions` on their own connections, so a user may hold up to `maxSessions` on each
/// gateway. A cluster-wide count (through the control plane) is future work.
#[derive(Clone, Default)]
struct SessionCounts(Arc<Mutex<HashMap<Username, usize>>>);

impl SessionCounts {
    /// Takes one of `user`'s `limit` session slots: `Err(in_use)` when all are taken. The check
    /// and the increment happen under one lock, so simultaneous logins cannot overshoot.
    fn try_acquire(&self, user: &Username, limit: u32) -> Result<SessionSlot, usize> {
        let mut counts = self.lock();
        let count = counts.entry(user.clone()).or_insert(0);
        if *count >= limit as usize {
            let in_use = *count;
            if in_use == 0 {
                counts.remove(user);
            }
            return Err(in_use);
        }
        *count += 1;
        Ok(SessionSlot {
            counts: self.clone(),
            user: user.clone(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Username, usize>> {
        // The map stays consistent even if a holder panicked: every change is one statement.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    #[cfg(test)]
    fn count(&self, user: &Username) -> usize {
        self.lock().get(user).copied().unwrap_or(0)
    }
}

/// One counted session of a user. Dropping it (with the [`Connection`] that holds it, however
/// the connection ends) gives the slot back, exactly once.
struct SessionSlot {
    counts: SessionCounts,
    user: Username,
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock();
        if let Some(count) = counts.get_mut(&self.user) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.user);
            }
        }
    }
}

/// One SSH connection.
struct Connection {
    login: Arc<dyn LoginProvider>,
    stores: Arc<StoreCache>,
    events: Option<Arc<dyn EventSink>>,
    /// The gateway's session counts per user.
    sessions: SessionCounts,
    peer: SocketAddr,
    session_id: String,
    /// Set once authentication succeeded.
    grant: Option<LoginGrant>,
    /// Whether authentication has finished (granted or turned away with a reason); the login
    /// watchdog disconnects connections where it has not by the login deadline.
    authenticated: Arc<AtomicBool>,
    /// The connection's place in the login phase, given up once logged in.
    pre_auth: Option<PreAuth>,
    /// The listener's admission, told when the control plane says the client's address is
    /// banned.
    admission: Admission,
    /// The control plane said the client's address is banned: no method is offered any more.
    address_banned: bool,
    /// The gateway's open sessions, re-checked with the control plane; this one registers
    /// when it logs in, and is told through `end` when it must end.
    watch: SessionWatch,
    end: Arc<EndSender>,
    registration: Option<Registration>,
    /// This connection's place in the user's session count, held from a successful
    /// authentication until the connection (this handler) is dropped.
    slot: Option<SessionSlot>,
    /// Why a login with valid credentials is turned away (too many sessions): sent as the
    /// SSH disconnect reason in `auth_succeeded`.
    refusal: Option<String>,
    /// A key the control plane accepted in the pre-signature query, with its grant.
    offered_key: Option<(SshPublicKey, LoginGrant)>,
    /// Password (and keyboard-interactive) attempts this connection may still make.
    password_attempts_left: usize,
    /// The user logs in with keys only: the password methods are no longer offered.
    password_disabled: bool,
    /// Session channels opened but not yet given a subsystem.
    channels: HashMap<ChannelId, Channel<Msg>>,
    /// SFTP sessions by channel, until the client ends its input.
    sftp: HashMap<ChannelId, SftpSession>,
    /// Files and directories open on this connection's SFTP sessions: capped, and see
    /// [`serve`]'s drain.
    open_files: OpenFiles,
    /// What this connection's writes held out of order may take in memory, whatever its
    /// channels.
    write_budget: MemoryBudget,
    /// The connection's span (russh runs the handler in a task of its own, outside it).
    span: tracing::Span,
}

/// Where an SFTP session's replies go when not sent from inside `data`: the connection's
/// message queue, whole replies only in each message (so nothing sent from inside `data` can
/// land in the middle of one). The queue is bounded and russh stops taking
/// from it while the client's window is full, so a client that does not read pushes back.
struct ChannelSink {
    handle: russh::server::Handle,
    channel: ChannelId,
}

impl crate::sftp::ReplySink for ChannelSink {
    fn send(&self, packet: bytes::Bytes) -> futures::future::BoxFuture<'_, Result<(), ()>> {
        Box::pin(async move { self.handle.data(self.channel, packet).await.map_err(|_| ()) })
    }

    fn finish(&self, code: u32) -> futures::future::BoxFuture<'_, ()> {
        Box::pin(async move {
            // scp (over SFTP) checks the exit status; then close the channel cleanly.
            let _ = self.handle.exit_status_request(self.channel, code).await;
            let _ = self.handle.eof(self.channel).await;
            let _ = self.handle.close(self.channel).await;
        })
    }
}

/// Replies sent from inside `data`, straight into the connection's output.
struct Direct<'a> {
    session: &'a mut Session,
    channel: ChannelId,
}

impl crate::sftp::DirectOut for Direct<'_> {
    fn ready(&self) -> bool {
        // Once some output waits for the client's window, later replies wait in the SFTP
        // session's queue (bounded by its in-flight limit) rather than in russh's.
        !self.session.has_pending_data(self.channel)
    }

    fn send(&mut self, packet: bytes::Bytes) {
        if let Err(e) = self.session.data(self.channel, packet) {
            tracing::debug!(error = %e, "cannot send an SFTP reply");
        }
    }
}

/// What the control plane said of a login.
enum Checked {
    Granted(LoginGrant),
    Denied,
    /// The user exists and logs in with public keys only.
    PasswordDisabled,
    /// Too many failed logins: from the client's address (nothing more is offered) or for
    /// the user name (passwords are no longer offered).
    Banned,
}

impl Connection {
    async fn check(&mut self, user: &str, secret: LoginSecret, probe: bool) -> Checked {
        let request = LoginRequest {
            protocol: Protocol::Sftp,
            username: user.to_owned(),
            secret,
            client_ip: self.peer.ip().to_string(),
            session_id: self.session_id.clone(),
            probe,
        };
        match self.login.login(request).await {
            Ok(grant) => Checked::Granted(grant),
            Err(LoginError::Denied) => Checked::Denied,
            Err(LoginError::PasswordDisabled) => Checked::PasswordDisabled,
            Err(e @ LoginError::AddressBanned { retry_after }) => {
                tracing::info!(user = %user, error = %e, "login refused: the address is banned");
                self.admission.ban(self.peer.ip(), retry_after);
                self.address_banned = true;
                Checked::Banned
            }
            Err(e @ LoginError::UserBanned { .. }) => {
                tracing::info!(user = %user, error = %e, "login refused: the user name is banned");
                self.password_attempts_left = 0;
                Checked::Banned
            }
            Err(e @ LoginError::Unavailable(_)) => {
                tracing::warn!(error = %e, "login service unavailable");
                Checked::Denied
            }
        }
    }

    /// A password, from the `password` method or the keyboard-interactive prompt. A failure
    /// keeps both methods on offer while attempts remain (a mistyped password must not end
    /// the login), not after the last one, nor for a user who logs in with keys only.
    async fn password_login(&mut self, user: &str, password: String, method: &str) -> Auth {
        if self.password_attempts_left == 0 || self.password_disabled {
            return self.reject(user, method);
        }
        self.password_attempts_left -= 1;
        let secret = LoginSecret::Password { password };
        match self.check(user, secret, false).await {
            Checked::Granted(grant) => self.accept(grant),
            Checked::Denied | Checked::Banned => self.reject(user, method),
            Checked::PasswordDisabled => {
                tracing::info!(user = %user, method, "login failed: the user logs in with keys only");
                self.password_disabled = true;
                self.reject(user, method)
            }
        }
    }

    /// The methods still on offer to this connection.
    fn methods(&self) -> MethodSet {
        if self.address_banned {
            return MethodSet::empty();
        }
        let mut methods = all_methods();
        if self.password_attempts_left == 0 || self.password_disabled {
            methods.remove(MethodKind::Password);
            methods.remove(MethodKind::KeyboardInteractive);
        }
        methods
    }

    /// Lets the user in, unless it already has `max_sessions` connections to this gateway.
    ///
    /// A user over its limit must learn why it is turned away, or it will think its password
    /// is wrong. An SSH authentication failure carries no message, and a disconnect queued
    /// after it arrives too late: OpenSSH has already given up with "Permission denied". So
    /// the login ends the SSH authentication (`Auth::Accept`) but grants nothing: no grant and
    /// no session slot are kept, and `auth_succeeded` disconnects at once with reason 12 (too
    /// many connections) and a message, in the same write as the success reply. russh reads
    /// no further packet, so no channel is ever opened; OpenSSH prints "Received disconnect
    /// from …: 12: too many sessions for user … (limit N); close one and retry".
    fn accept(&mut self, grant: LoginGrant) -> Auth {
        match self
            .sessions
            .try_acquire(&grant.username, grant.max_sessions)
        {
            Ok(slot) => {
                tracing::info!(user = %grant.username, home = %grant.home_directory,
                    "login succeeded");
                let check = SessionCheck {
                    username: grant.username.clone(),
                    credential: grant.credential.clone(),
                };
                self.registration = Some(self.watch.register(check, self.end.clone()));
                self.slot = Some(slot);
                self.grant = Some(grant);
            }
            Err(in_use) => {
                tracing::info!(user = %grant.username, limit = grant.max_sessions, in_use,
                    "login refused: too many sessions");
                self.refusal = Some(format!(
                    "too many sessions for user {} (limit {}); close one and retry",
                    grant.username, grant.max_sessions
                ));
            }
        }
        self.authenticated.store(true, Ordering::Release);
        if let Some(pre_auth) = self.pre_auth.take() {
            pre_auth.logged_in();
        }
        Auth::Accept
    }

    /// Turns a login away, telling the client which methods it may still try.
    fn reject(&self, user: &str, method: &str) -> Auth {
        tracing::info!(user = %user, method, "login failed");
        self.still_offered()
    }

    fn still_offered(&self) -> Auth {
        Auth::Reject {
            proceed_with_methods: Some(self.methods()),
            partial_success: false,
        }
    }

    /// Refuses a channel request with a message the partner's client prints.
    fn refuse(channel: ChannelId, session: &mut Session, what: &str) -> Result<(), russh::Error> {
        let message = format!(
            "This service allows SFTP only ({what} is not available). Use an SFTP client, \
             e.g. `sftp` or `scp`.\r\n"
        );
        session.channel_success(channel)?;
        session.extended_data(channel, 1, message.into_bytes())?;
        session.exit_status_request(channel, 1)?;
        session.eof(channel)?;
        session.close(channel)?;
        Ok(())
    }
}

impl russh::server::Handler for Connection {
    type Error = ConnectionError;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(self.still_offered())
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        Ok(self
            .password_login(user, password.to_owned(), "password")
            .await)
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        response: Option<russh::server::Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        let Some(mut response) = response else {
            if self.password_attempts_left == 0 || self.password_disabled {
                return Ok(self.still_offered());
            }
            // One prompt, not echoed: the user's password.
            return Ok(Auth::Partial {
                name: "".into(),
                instructions: "".into(),
                prompts: std::borrow::Cow::Borrowed(&[(
                    std::borrow::Cow::Borrowed("Password: "),
                    false,
                )]),
            });
        };
        let password = response
            .next()
            .and_then(|answer| String::from_utf8(answer.to_vec()).ok())
            .unwrap_or_default();
        Ok(self
            .password_login(user, password, "keyboard-interactive")
            .await)
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        if sha1_signature(offer.algorithm) {
            tracing::info!(user = %user, "ssh-rsa (SHA-1) signature refused; use rsa-sha2-256/512");
            return Ok(self.still_offered());
        }
        let Ok(line) = offer.public_key.to_openssh() else {
            return Ok(Auth::reject());
        };
        let secret = LoginSecret::PublicKey { public_key: line };
        Ok(match self.check(user, secret, true).await {
            Checked::Granted(grant) => {
                self.offered_key = Some((offer.public_key.clone(), grant));
                Auth::Accept
            }
            Checked::Denied | Checked::PasswordDisabled | Checked::Banned => self.still_offered(),
        })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        // The signature is verified now: record the login for real (this also re-checks the
        // user, which may have been disabled since the query).
        if sha1_signature(key.algorithm) {
            return Ok(self.reject(user, "publickey (ssh-rsa, SHA-1)"));
        }
        let Ok(line) = key.public_key.to_openssh() else {
            return Ok(self.reject(user, "publickey"));
        };
        self.offered_key = None;
        let secret = LoginSecret::PublicKey { public_key: line };
        Ok(match self.check(user, secret, false).await {
            Checked::Granted(grant) => self.accept(grant),
            Checked::Denied | Checked::PasswordDisabled | Checked::Banned => {
                self.reject(user, "publickey")
            }
        })
    }

    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        if let Some(reason) = self.refusal.take() {
            session.disconnect(russh::Disconnect::TooManyConnections, &reason, "")?;
        }
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.grant.is_none() || self.channels.len() + self.sftp.len() >= 16 {
            reply
                .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        }
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel_id: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let (Some(grant), true) = (self.grant.clone(), name == "sftp") else {
            tracing::info!(subsystem = name, "subsystem refused");
            session.channel_failure(channel_id)?;
            return Ok(());
        };
        let Some(channel) = self.channels.remove(&channel_id) else {
            session.channel_failure(channel_id)?;
            return Ok(());
        };
        let bucket = match self.stores.bucket(&grant.bucket) {
            Ok(opened) => opened,
            Err(e) => {
                tracing::error!(error = %e, bucket = %grant.bucket.name, "cannot open bucket");
                session.channel_failure(channel_id)?;
                return Ok(());
            }
        };
        session.channel_success(channel_id)?;
        let identity = SessionIdentity {
            username: grant.username.clone(),
            protocol: Protocol::Sftp,
            client_ip: self.peer.ip().to_string(),
            session_id: self.session_id.clone(),
        };
        let mut vfs = Vfs::on_bucket(
            &bucket,
            grant.home_directory.clone(),
            grant.permissions,
            identity,
        )
        .with_write_budget(self.write_budget.clone());
        if let Some(sink) = &self.events {
            vfs = vfs.with_events(grant.bucket.name.clone(), sink.clone());
        }
        // The channel's own message queue is not read: what the client sends arrives in
        // `data` below and goes straight into the SFTP session.
        drop(channel);
        let sink = Arc::new(ChannelSink {
            handle: session.handle(),
            channel: channel_id,
        });
        self.span
            .in_scope(|| tracing::debug!("sftp subsystem started"));
        let sftp = SftpSession::start(vfs, sink, self.open_files.clone(), self.span.clone());
        self.sftp.insert(channel_id, sftp);
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(sftp) = self.sftp.get_mut(&channel) {
            sftp.feed(data, &mut Direct { session, channel }).await;
        }
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Dropping the SFTP session ends its input: it answers what is in progress, then
        // sends the exit status and closes.
        self.sftp.remove(&channel);
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        self.sftp.remove(&channel);
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        Self::refuse(channel, session, "a shell")?;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Legacy `scp -O` arrives here as "scp -t …"; modern scp uses the SFTP subsystem.
        Self::refuse(channel, session, "command execution")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each of the first reads (the key exchange and login) leaves the socket acknowledging
    /// at once, even where it had been switched to delayed acknowledgements; then the
    /// socket is left alone. A cut socket fails.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn first_reads_switch_to_quick_acks() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let cut = CancellationToken::new();
        let mut server = Cuttable::new(server, cut.clone());
        let mut byte = [0u8; 1];
        for read in 0..QUICK_ACK_READS {
            server.inner.set_quickack(false).unwrap();
            assert!(!server.inner.quickack().unwrap());
            client.write_all(b"x").await.unwrap();
            server.read_exact(&mut byte).await.unwrap();
            assert!(server.inner.quickack().unwrap(), "read {read}");
        }
        // Then the kernel decides alone (whether it acknowledges at once is its business).
        assert_eq!(server.quick_acks_left, 0);
        client.write_all(b"x").await.unwrap();
        server.read_exact(&mut byte).await.unwrap();
        assert_eq!(server.quick_acks_left, 0);
        cut.cancel();
        client.write_all(b"x").await.unwrap();
        let error = server.read_exact(&mut byte).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
    }

    #[test]
    fn session_slots_are_counted_per_user_and_given_back_once() {
        let counts = SessionCounts::default();
        let alice = Username::parse("alice").unwrap();
        let bob = Username::parse("bob").unwrap();
        let first = counts.try_acquire(&alice, 2).unwrap();
        let second = counts.try_acquire(&alice, 2).unwrap();
        assert_eq!(counts.try_acquire(&alice, 2).err(), Some(2));
        // Other users are not affected; a higher limit (changed meanwhile) lets one more in.
        let bobs = counts.try_acquire(&bob, 1).unwrap();
        let third = counts.try_acquire(&alice, 3).unwrap();
        assert_eq!(counts.count(&alice), 3);
        drop(first);
        assert_eq!(counts.count(&alice), 2);
        assert_eq!(counts.try_acquire(&alice, 2).err(), Some(2));
        drop(second);
        drop(third);
        drop(bobs);
        assert_eq!(counts.count(&alice), 0);
        // Nothing is left behind for users without sessions.
        assert!(counts.lock().is_empty());
        let again = counts.try_acquire(&alice, 1).unwrap();
        assert_eq!(counts.count(&alice), 1);
        drop(again);
    }
}
