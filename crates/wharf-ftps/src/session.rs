//! One control connection: PROXY header, TLS (explicit `AUTH TLS` or implicit), the command
//! loop, logins, and the transfers it starts.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use chrono::Utc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_rustls::TlsAcceptor;
use wharf_core::admission::PreAuth;
use wharf_core::session_watch::{self, Ending};
use wharf_vfs::{CreateOptions, EntryKind, HashAlgorithm, VfsError, VirtualPath, WriteMode};

use crate::ack::AckEarly;
use crate::auth::{self, LoggedIn, LoginFailure};
use crate::command::{self, Command, MAX_LINE, Verb, XHash};
use crate::listing::{Facts, ListFormat, facts, ftp_time, listable, long_line};
use crate::passive::{DataError, DataPolicy, PassiveListener};
use crate::proxy;
use crate::reply::{self, Reply};
use crate::server::Shared;
use crate::tls::ConnectionTls;
use crate::transfer::{self, ListSource, vfs_reply};
use crate::{GREETING, PassiveHost};

/// The first line a client of the implicit TLS port sees (after the handshake).
pub const IMPLICIT_GREETING: &str = "Wharf FTPS ready (implicit TLS). Log in.";

/// How long a client has to send its PROXY header.
const PROXY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a TLS handshake on the control connection may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Commands a connection may send before it has logged in.
const MAX_COMMANDS_BEFORE_LOGIN: u32 = 50;
/// Failed logins after which the connection is closed.
const MAX_FAILED_LOGINS: u32 = 3;
/// Longest user name accepted.
const MAX_USERNAME: usize = 256;

const DATA_MUST_BE_ENCRYPTED: &str =
    "Data connections must be encrypted: send PROT P (after PBSZ 0) before PASV or EPSV.";

/// The algorithms HASH offers, in FEAT's order; the first is the default. SHA-224 and SHA-384
/// are left out: no FTP client asks for them.
const HASH_ALGORITHMS: [HashAlgorithm; 4] = [
    HashAlgorithm::Sha256,
    HashAlgorithm::Sha512,
    HashAlgorithm::Sha1,
    HashAlgorithm::Md5,
];

/// Which port the connection arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Plain greeting; `AUTH TLS` upgrades.
    Explicit,
    /// TLS from the first byte.
    Implicit,
}

/// Serves one control connection to its end. Runs inside the connection's span.
pub(crate) async fn run(
    shared: Arc<Shared>,
    mut socket: TcpStream,
    peer: SocketAddr,
    mode: Mode,
    session_id: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let local = match socket.local_addr() {
        Ok(local) => local,
        Err(e) => {
            tracing::debug!(error = %e, "connection gone before it was served");
            return;
        }
    };
    let (client, advertised) = if shared.config.proxy_protocol {
        if !shared.config.proxy_from(peer.ip()) {
            tracing::warn!(%peer, "connection dropped: PROXY protocol is on and the peer is not a trusted proxy");
            return;
        }
        match timeout(PROXY_TIMEOUT, proxy::read_header(&mut socket)).await {
            Ok(Ok(header)) => (
                header.source.unwrap_or(peer),
                header.destination.map_or(local.ip(), |d| d.ip()),
            ),
            Ok(Err(e)) => {
                tracing::info!(%peer, error = %e, "connection dropped: no valid PROXY header");
                return;
            }
            Err(_) => {
                tracing::info!(%peer, "connection dropped: no PROXY header in time");
                return;
            }
        }
    } else {
        (peer, local.ip())
    };
    let span = tracing::Span::current();
    span.record("client", tracing::field::display(client));
    let pre_auth = match shared.admission.admit(client.ip()) {
        Ok(pre_auth) => pre_auth,
        Err(refusal) => {
            tracing::info!(reason = %refusal, "connection refused");
            if mode == Mode::Explicit {
                let _ = socket.try_write(format!("421 {refusal}\r\n").as_bytes());
            }
            return;
        }
    };
    if client == peer {
        tracing::debug!(?mode, "connection accepted");
    } else {
        tracing::debug!(?mode, via = %peer, "connection accepted (PROXY protocol)");
    }
    let tls = match shared.config.tls.connection_tls() {
        Ok(tls) => tls,
        Err(e) => {
            // The certificate files changed into something unusable since start-up.
            tracing::error!(error = %e, "cannot serve FTPS; connection closed");
            return;
        }
    };
    let stream = match mode {
        Mode::Explicit => ControlStream::Plain(socket),
        Mode::Implicit => {
            let acceptor = TlsAcceptor::from(tls.control.clone());
            match timeout(HANDSHAKE_TIMEOUT, acceptor.accept(AckEarly::new(socket))).await {
                Ok(Ok(stream)) => ControlStream::Tls(Box::new(stream)),
                Ok(Err(e)) => {
                    tracing::info!(error = %e, "TLS handshake failed (implicit FTPS)");
                    return;
                }
                Err(_) => {
                    tracing::info!("TLS handshake timed out (implicit FTPS)");
                    return;
                }
            }
        }
    };
    let mut session = Session {
        control: Control {
            stream,
            buf: BytesMut::with_capacity(1024),
            pushback: None,
        },
        secure: mode == Mode::Implicit,
        mode,
        tls,
        peer_ip: peer.ip().to_canonical(),
        client_ip: client.ip().to_canonical(),
        local_ip: local.ip(),
        advertised_ip: advertised.to_canonical(),
        // Implicit TLS starts as if PBSZ 0 and PROT P had been sent: many clients and
        // appliances take implicit FTPS to mean protected data and never send them.
        prot_private: mode == Mode::Implicit,
        epsv_all: false,
        pending_user: None,
        user: None,
        ending: None,
        failed_logins: 0,
        commands_before_login: 0,
        cwd: VirtualPath::root(),
        rest: 0,
        hash_range: None,
        options: Options::default(),
        rename_from: None,
        passive: None,
        started: Instant::now(),
        pre_auth: Some(pre_auth),
        session_id,
        shared,
    };
    let greeting = match mode {
        Mode::Explicit => GREETING,
        Mode::Implicit => IMPLICIT_GREETING,
    };
    if session.say(220, greeting).await.is_ok() {
        session.serve(&mut shutdown).await;
    }
    session.control.close().await;
    tracing::debug!("connection closed");
}

/// The control connection's byte stream: plain until `AUTH TLS`, then TLS.
enum ControlStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<AckEarly>>),
    /// During the TLS upgrade, and after a failed one.
    Closed,
}

impl AsyncRead for ControlStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ControlStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ControlStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            ControlStream::Closed => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for ControlStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ControlStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ControlStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            ControlStream::Closed => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ControlStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ControlStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            ControlStream::Closed => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ControlStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ControlStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            ControlStream::Closed => Poll::Ready(Ok(())),
        }
    }
}

/// Why no command line could be read.
enum LineError {
    TooLong,
    Io(io::Error),
}

/// The control connection: lines in, replies out.
struct Control {
    stream: ControlStream,
    /// Bytes received and not yet taken as a line; never much more than [`MAX_LINE`].
    buf: BytesMut,
    /// A line received during a transfer, handled after it.
    pushback: Option<Vec<u8>>,
}

impl Control {
    /// The next line (without CRLF); `None` when the client closed the connection. Cancel
    /// safe: what was received stays in the buffer.
    async fn read_line(&mut self) -> Result<Option<Vec<u8>>, LineError> {
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line = self.buf.split_to(end + 1);
                line.truncate(end);
                if line.last() == Some(&b'\r') {
                    line.truncate(end - 1);
                }
                if line.len() > MAX_LINE {
                    return Err(LineError::TooLong);
                }
                return Ok(Some(line.to_vec()));
            }
            if self.buf.len() > MAX_LINE {
                return Err(LineError::TooLong);
            }
            let mut chunk = [0u8; 1024];
            let n = self.stream.read(&mut chunk).await.map_err(LineError::Io)?;
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn next_line(&mut self) -> Result<Option<Vec<u8>>, LineError> {
        if let Some(line) = self.pushback.take() {
            return Ok(Some(line));
        }
        self.read_line().await
    }

    async fn reply(&mut self, reply: &Reply) -> io::Result<()> {
        tracing::trace!(code = reply.code(), "reply");
        self.stream.write_all(&reply.to_bytes()).await?;
        self.stream.flush().await
    }

    /// Ends the connection, with a TLS close if it is encrypted.
    async fn close(&mut self) {
        let _ = timeout(Duration::from_secs(2), self.stream.shutdown()).await;
    }
}

/// Whether the command loop goes on.
enum Flow {
    Continue,
    Close,
}

struct Session {
    shared: Arc<Shared>,
    session_id: String,
    control: Control,
    mode: Mode,
    tls: ConnectionTls,
    /// The control connection is encrypted.
    secure: bool,
    /// The control connection's TCP peer (a load balancer with the PROXY protocol).
    peer_ip: IpAddr,
    /// The client (from the PROXY header when enabled).
    client_ip: IpAddr,
    /// The gateway's own address on the control connection: passive listeners bind to it.
    local_ip: IpAddr,
    /// The address the client connected to (the PROXY header's destination when enabled):
    /// what PASV advertises unless a passive host is configured.
    advertised_ip: IpAddr,
    /// `PROT P`: data connections are encrypted (required for any transfer).
    prot_private: bool,
    /// `EPSV ALL`: PASV is refused from now on.
    epsv_all: bool,
    pending_user: Option<String>,
    user: Option<LoggedIn>,
    /// Told when the logged-in session must end (see [`wharf_core::session_watch`]).
    ending: Option<tokio::sync::watch::Receiver<Option<Ending>>>,
    failed_logins: u32,
    commands_before_login: u32,
    cwd: VirtualPath,
    /// `REST` offset for the next transfer command (reset by every one of them).
    rest: u64,
    /// `RANG start end` (inclusive) for the next command, which must be HASH.
    hash_range: Option<(u64, u64)>,
    /// What OPTS set: MLST facts, HASH algorithm.
    options: Options,
    rename_from: Option<VirtualPath>,
    /// The listener of the last PASV/EPSV, waiting for its data command.
    passive: Option<PassiveListener>,
    started: Instant,
    /// The connection's place in the login phase, given up once logged in.
    pre_auth: Option<PreAuth>,
}

/// Resolves once `shutdown` is true (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

impl Session {
    async fn say(&mut self, code: u16, text: impl AsRef<str>) -> io::Result<()> {
        self.control.reply(&Reply::new(code, text)).await
    }

    async fn send(&mut self, reply: Reply) -> io::Result<Flow> {
        self.control.reply(&reply).await?;
        Ok(Flow::Continue)
    }

    async fn serve(&mut self, shutdown: &mut watch::Receiver<bool>) {
        loop {
            let idle = self.shared.config.idle_timeout;
            let deadline = match self.user {
                Some(_) => Instant::now() + idle,
                None => {
                    (Instant::now() + idle).min(self.started + self.shared.config.login_timeout)
                }
            };
            let line = tokio::select! {
                line = timeout_at(deadline, self.control.next_line()) => line,
                _ = stopped(shutdown) => {
                    let _ = self.say(421, "The server is shutting down; reconnect later.").await;
                    return;
                }
                ending = session_watch::ended(&mut self.ending) => {
                    tracing::info!(reason = ending.message(), "ending the session");
                    let _ = self.say(421, capitalized(ending.message())).await;
                    return;
                }
            };
            let line = match line {
                Err(_) => {
                    let why = if self.user.is_some() {
                        "Idle timeout"
                    } else {
                        "Login timeout"
                    };
                    tracing::info!("{why}; connection closed");
                    let _ = self
                        .say(421, format!("{why}; closing the connection."))
                        .await;
                    return;
                }
                Ok(Err(LineError::TooLong)) => {
                    tracing::info!("command line too long; connection closed");
                    let _ = self.say(500, "Command line too long.").await;
                    return;
                }
                Ok(Err(LineError::Io(e))) => {
                    tracing::debug!(error = %e, "control connection failed");
                    return;
                }
                Ok(Ok(None)) => return,
                Ok(Ok(Some(line))) => line,
            };
            match self.handle(&line).await {
                Ok(Flow::Continue) => {}
                Ok(Flow::Close) => return,
                Err(e) => {
                    tracing::debug!(error = %e, "control connection failed");
                    return;
                }
            }
        }
    }

    async fn handle(&mut self, line: &[u8]) -> io::Result<Flow> {
        if self.user.is_none() {
            self.commands_before_login += 1;
            if self.commands_before_login > MAX_COMMANDS_BEFORE_LOGIN {
                tracing::info!("too many commands before login; connection closed");
                self.say(421, "Too many commands without logging in.")
                    .await?;
                return Ok(Flow::Close);
            }
        }
        let cmd = match command::parse(line) {
            Ok(cmd) => cmd,
            Err(e) => return self.send(Reply::new(500, e.to_string())).await,
        };
        tracing::debug!(command = %cmd.loggable(), "command");
        // RNTO must follow RNFR directly, RANG must come right before its HASH; REST applies
        // to the next transfer command only.
        let rename_from = self.rename_from.take();
        let hash_range = self.hash_range.take();
        if cmd.verb.uses_data_connection() {
            let rest = std::mem::take(&mut self.rest);
            if hash_range.is_some() {
                // Sending the whole file would corrupt a client that asked for a part.
                self.passive = None;
                return self
                    .send(Reply::new(
                        504,
                        "RANG applies to HASH only; send RANG 1 0 or use REST for transfers.",
                    ))
                    .await;
            }
            return self.data_command(&cmd, rest).await;
        }
        if self.user.is_none() && !cmd.verb.allowed_before_login() {
            let text = if self.secure {
                "Please log in with USER and PASS first."
            } else {
                "Please send AUTH TLS, then log in with USER and PASS."
            };
            return self.send(Reply::new(530, text)).await;
        }
        let arg = cmd.arg.as_str();
        let reply = match cmd.verb {
            Verb::Auth => return self.auth(arg).await,
            Verb::User => self.user_command(arg),
            Verb::Pass => return self.pass(arg).await,
            Verb::Acct => Reply::new(202, "ACCT is not needed."),
            Verb::Pbsz if !self.secure => Reply::new(503, "Send AUTH TLS before PBSZ."),
            Verb::Pbsz => Reply::new(200, "PBSZ=0"),
            Verb::Prot => self.prot(arg),
            Verb::Ccc => Reply::new(534, "The control connection stays encrypted."),
            Verb::Type => match arg.trim().to_ascii_uppercase().as_str() {
                "I" | "L 8" => Reply::new(200, "Type set to I."),
                // ASCII is accepted, and files are sent as they are (as binary).
                "A" | "A N" => Reply::new(200, "Type set to A (files are sent unchanged)."),
                _ => Reply::new(504, "Only TYPE I and TYPE A are supported."),
            },
            Verb::Mode if arg.trim().eq_ignore_ascii_case("S") => Reply::new(200, "Mode S."),
            Verb::Mode => Reply::new(504, "Only MODE S (stream) is supported."),
            Verb::Stru if arg.trim().eq_ignore_ascii_case("F") => Reply::new(200, "Structure F."),
            Verb::Stru => Reply::new(504, "Only STRU F (file) is supported."),
            Verb::Syst => Reply::new(215, "UNIX Type: L8"),
            Verb::Feat => self.options.feat(),
            Verb::Opts => self.options.set(arg),
            Verb::Noop => Reply::new(200, "NOOP ok."),
            Verb::Quit => {
                self.say(221, "Goodbye.").await?;
                return Ok(Flow::Close);
            }
            Verb::Rein => Reply::new(502, "REIN is not supported; reconnect instead."),
            Verb::Pwd => Reply::new(
                257,
                format!("{} is the current directory.", quote(&self.cwd)),
            ),
            Verb::Cwd => self.cwd(arg).await,
            Verb::Cdup => {
                self.cwd = self.cwd.parent().unwrap_or_else(VirtualPath::root);
                Reply::new(250, format!("Directory changed to {}.", self.cwd))
            }
            Verb::Mlst => self.mlst(arg).await,
            Verb::Size => self.size(arg).await,
            Verb::Mdtm => self.mdtm(arg).await,
            Verb::Mfmt => self.mfmt(arg).await,
            Verb::Hash => {
                let (start, len) = match hash_range {
                    // `end` is inclusive; an end at u64::MAX is clipped to the file anyway.
                    Some((start, end)) => (start, (end - start).saturating_add(1)),
                    None => (0, 0),
                };
                return self.hash(arg, self.options.hash, start, len).await;
            }
            Verb::XHash(x) => {
                let algorithm = match x {
                    XHash::Sha256 => HashAlgorithm::Sha256,
                    XHash::Sha512 => HashAlgorithm::Sha512,
                    XHash::Sha1 => HashAlgorithm::Sha1,
                    XHash::Md5 => HashAlgorithm::Md5,
                };
                return self.x_hash(&cmd.name, arg, algorithm).await;
            }
            Verb::Rang => self.rang(arg),
            Verb::Rest => match arg.trim().parse::<u64>() {
                Ok(offset) => {
                    self.rest = offset;
                    Reply::new(
                        350,
                        format!("Restarting at {offset}. Send RETR, STOR or APPE."),
                    )
                }
                Err(_) => Reply::new(501, "REST needs a byte offset."),
            },
            Verb::Dele => self.dele(arg).await,
            Verb::Mkd => self.mkd(arg).await,
            Verb::Rmd => self.rmd(arg).await,
            Verb::Rnfr => self.rnfr(arg).await,
            Verb::Rnto => self.rnto(arg, rename_from).await,
            Verb::Pasv => self.passive(false, arg).await,
            Verb::Epsv => self.passive(true, arg).await,
            Verb::Port | Verb::Eprt => Reply::new(
                502,
                "Active mode is not supported; use passive mode (PASV or EPSV).",
            ),
            Verb::Abor => {
                self.passive = None;
                Reply::new(226, "No transfer to abort.")
            }
            Verb::Stat if arg.trim().is_empty() => self.stat(),
            Verb::Stat => return self.stat_path(arg).await,
            Verb::Help => help(),
            Verb::Allo => Reply::new(202, "ALLO is not needed."),
            Verb::Site => Reply::new(502, "SITE commands are not supported."),
            Verb::Clnt => Reply::new(200, "Noted."),
            Verb::Stou => Reply::new(502, "STOU is not supported; use STOR with a name."),
            Verb::Unknown => Reply::new(502, format!("{} is not implemented.", cmd.name)),
            Verb::List | Verb::Nlst | Verb::Mlsd | Verb::Retr | Verb::Stor | Verb::Appe => {
                unreachable!("data commands are handled above")
            }
        };
        self.send(reply).await
    }

    // --- TLS and login ------------------------------------------------------------------------

    async fn auth(&mut self, arg: &str) -> io::Result<Flow> {
        let mechanism = arg.trim().to_ascii_uppercase();
        if self.secure {
            let text = match self.mode {
                Mode::Implicit => "This connection is already TLS (implicit FTPS).",
                Mode::Explicit => "TLS is already active.",
            };
            return self.send(Reply::new(503, text)).await;
        }
        if !matches!(mechanism.as_str(), "TLS" | "TLS-C" | "SSL" | "TLS-P") {
            return self
                .send(Reply::new(504, "Unsupported AUTH mechanism; use AUTH TLS."))
                .await;
        }
        self.say(
            234,
            format!("AUTH {mechanism} ok; start the TLS handshake."),
        )
        .await?;
        if !self.control.buf.is_empty() || self.control.pushback.is_some() {
            // Commands sent before the handshake would be taken as if they came over TLS.
            tracing::info!("data sent between AUTH and the TLS handshake; connection closed");
            return Ok(Flow::Close);
        }
        let ControlStream::Plain(tcp) =
            std::mem::replace(&mut self.control.stream, ControlStream::Closed)
        else {
            return Ok(Flow::Close);
        };
        let acceptor = TlsAcceptor::from(self.tls.control.clone());
        match timeout(HANDSHAKE_TIMEOUT, acceptor.accept(AckEarly::new(tcp))).await {
            Ok(Ok(stream)) => {
                let version = stream.get_ref().1.protocol_version();
                tracing::debug!(?version, "control connection encrypted");
                self.control.stream = ControlStream::Tls(Box::new(stream));
                self.secure = true;
                self.pending_user = None;
                // The old mechanisms protect data connections too.
                if matches!(mechanism.as_str(), "SSL" | "TLS-P") {
                    self.prot_private = true;
                }
                Ok(Flow::Continue)
            }
            Ok(Err(e)) => {
                tracing::info!(error = %e, "TLS handshake failed");
                Ok(Flow::Close)
            }
            Err(_) => {
                tracing::info!("TLS handshake timed out");
                Ok(Flow::Close)
            }
        }
    }

    fn user_command(&mut self, arg: &str) -> Reply {
        if !self.secure {
            tracing::info!("login refused: control channel not encrypted");
            return Reply::new(
                534,
                "A TLS connection is required on the control channel: send AUTH TLS first.",
            );
        }
        if self.user.is_some() {
            return Reply::new(503, "Already logged in.");
        }
        let name = arg.trim();
        if name.is_empty() || name.len() > MAX_USERNAME {
            return Reply::new(501, "USER needs a user name.");
        }
        self.pending_user = Some(name.to_owned());
        Reply::new(331, "Password required.")
    }

    async fn pass(&mut self, arg: &str) -> io::Result<Flow> {
        if !self.secure {
            return self
                .send(Reply::new(
                    530,
                    "Log in over TLS only: send AUTH TLS, then USER and PASS.",
                ))
                .await;
        }
        if self.user.is_some() {
            return self.send(Reply::new(503, "Already logged in.")).await;
        }
        let Some(name) = self.pending_user.take() else {
            return self.send(Reply::new(503, "Send USER first.")).await;
        };
        let shared = self.shared.clone();
        match auth::log_in(
            &shared,
            &name,
            arg.to_owned(),
            self.client_ip,
            &self.session_id,
        )
        .await
        {
            Ok(user) => {
                self.ending = Some(user.ending.clone());
                self.user = Some(user);
                if let Some(pre_auth) = self.pre_auth.take() {
                    pre_auth.logged_in();
                }
                self.cwd = VirtualPath::root();
                self.send(Reply::new(230, "Logged in.")).await
            }
            Err(LoginFailure::Denied) => {
                self.failed_logins += 1;
                self.say(530, "Login incorrect.").await?;
                if self.failed_logins >= MAX_FAILED_LOGINS {
                    tracing::info!("too many failed logins; connection closed");
                    return Ok(Flow::Close);
                }
                Ok(Flow::Continue)
            }
            Err(e @ LoginFailure::TooManySessions { .. }) => {
                self.send(Reply::new(530, e.to_string())).await
            }
            Err(e @ LoginFailure::Banned { address: false }) => {
                self.send(Reply::new(530, e.to_string())).await
            }
            Err(e @ LoginFailure::Banned { address: true }) => {
                self.say(421, e.to_string()).await?;
                Ok(Flow::Close)
            }
            Err(e @ LoginFailure::Unavailable(_)) => {
                self.say(421, e.to_string()).await?;
                Ok(Flow::Close)
            }
        }
    }

    fn prot(&mut self, arg: &str) -> Reply {
        if !self.secure {
            return Reply::new(503, "Send AUTH TLS before PROT.");
        }
        match arg.trim().to_ascii_uppercase().as_str() {
            "P" => {
                self.prot_private = true;
                Reply::new(200, "Data connections will be encrypted.")
            }
            "C" => {
                self.prot_private = false;
                Reply::new(
                    200,
                    "PROT C noted, but transfers are refused until PROT P: data connections \
                     must be encrypted.",
                )
            }
            "S" | "E" => Reply::new(536, "Only PROT P is supported."),
            _ => Reply::new(504, "PROT needs P (private)."),
        }
    }

    // --- Files and directories ------------------------------------------------------------------

    /// The logged-in user's VFS (the login check in `handle` comes first).
    fn vfs(&self) -> Result<wharf_vfs::Vfs, Reply> {
        self.user
            .as_ref()
            .map(|u| u.vfs.clone())
            .ok_or_else(|| Reply::new(530, "Please log in with USER and PASS first."))
    }

    fn path(&self, arg: &str) -> Result<VirtualPath, Reply> {
        VirtualPath::resolve(&self.cwd, arg).map_err(|e| vfs_reply(&e))
    }

    /// The path argument of a command that needs one.
    fn required_path(&self, arg: &str, verb: &str) -> Result<VirtualPath, Reply> {
        if arg.is_empty() {
            return Err(Reply::new(501, format!("{verb} needs a path.")));
        }
        self.path(arg)
    }

    async fn cwd(&mut self, arg: &str) -> Reply {
        let result = async {
            let path = self.required_path(arg, "CWD")?;
            let entry = self.vfs()?.stat(&path).await.map_err(|e| vfs_reply(&e))?;
            match entry.kind {
                EntryKind::Directory => Ok(path),
                EntryKind::File => Err(vfs_reply(&VfsError::NotADirectory)),
            }
        }
        .await;
        match result {
            Ok(path) => {
                self.cwd = path;
                Reply::new(250, format!("Directory changed to {}.", self.cwd))
            }
            Err(reply) => reply,
        }
    }

    async fn mlst(&self, arg: &str) -> Reply {
        let result = async {
            let path = if arg.is_empty() {
                self.cwd.clone()
            } else {
                self.path(arg)?
            };
            let vfs = self.vfs()?;
            let entry = vfs.stat(&path).await.map_err(|e| vfs_reply(&e))?;
            Ok(Reply::multi(
                250,
                format!("Listing {path}"),
                [format!(
                    " {} {path}",
                    facts(&entry, vfs.permissions(), self.options.facts)
                )],
                "End",
            ))
        }
        .await;
        result.unwrap_or_else(|reply| reply)
    }

    async fn size(&self, arg: &str) -> Reply {
        let result = async {
            let path = self.required_path(arg, "SIZE")?;
            let entry = self.vfs()?.stat(&path).await.map_err(|e| vfs_reply(&e))?;
            match entry.kind {
                EntryKind::File => Ok(Reply::new(213, entry.size.to_string())),
                EntryKind::Directory => Err(vfs_reply(&VfsError::IsADirectory)),
            }
        }
        .await;
        result.unwrap_or_else(|reply| reply)
    }

    async fn mdtm(&self, arg: &str) -> Reply {
        let result = async {
            let path = self.required_path(arg, "MDTM")?;
            let entry = self.vfs()?.stat(&path).await.map_err(|e| vfs_reply(&e))?;
            match entry.modified {
                Some(time) => Ok(Reply::new(213, ftp_time(time))),
                None => Err(Reply::new(550, "No modification time.")),
            }
        }
        .await;
        result.unwrap_or_else(|reply| reply)
    }

    /// MFMT: object stores keep their own modification times, so the request is accepted as
    /// a no-op (as SFTP's setstat is) and the reply tells the time the file really has.
    async fn mfmt(&self, arg: &str) -> Reply {
        let result = async {
            let (time, name) = arg.split_once(' ').unwrap_or((arg, ""));
            if !valid_mfmt_time(time) {
                return Err(Reply::new(
                    501,
                    "MFMT needs a time YYYYMMDDHHMMSS[.sss] (UTC) and a path.",
                ));
            }
            let path = self.required_path(name, "MFMT")?;
            let entry = self.vfs()?.stat(&path).await.map_err(|e| vfs_reply(&e))?;
            let Some(modified) = entry.modified else {
                return Err(Reply::new(550, "No modification time is kept for it."));
            };
            tracing::debug!(%path, requested = time, "MFMT accepted; the store keeps its own time");
            Ok(Reply::new(
                213,
                format!("Modify={}; {name}", ftp_time(modified)),
            ))
        }
        .await;
        result.unwrap_or_else(|reply| reply)
    }

    async fn dele(&self, arg: &str) -> Reply {
        let result = async {
            let path = self.required_path(arg, "DELE")?;
            self.vfs()?.remove(&path).await.map_err(|e| vfs_reply(&e))?;
            tracing::info!(%path, "deleted");
            Ok(Reply::new(250, "Deleted."))
        }
        .await;
        result.unwrap_or_else(|reply| reply)
    }

    async fn mkd(&self, arg: &str) -> Reply {
        let result = async {
            let path = self.required_path(arg, "MKD")?;
            self.vfs()?.mkdir(&path).await.map_err(|e| vfs_reply(&e))?;
            tracing::info!(%path, "directory created");
            Ok(Reply::new(257, format!("{} created.", quote(&path))))
        }
        .await;
        result.unwrap_or_else(|reply| reply)
    }

    async fn rmd(&self, arg: &str) -> Reply {
        let result = async {
            let path = self.required_path(arg, "RMD")?;
            self.vfs()?.rmdir(&path).await.map_err(|e| vfs_reply(&e))?;
            tracing::info!(%path, "directory removed");
            Ok(Reply::new(250, "Directory removed."))
        }
        .await;
        result.unwrap_or_else(|reply| reply)
    }

    async fn rnfr(&mut self, arg: &str) -> Reply {
        let result = async {
            let path = self.required_path(arg, "RNFR")?;
            self.vfs()?.stat(&path).await.map_err(|e| vfs_reply(&e))?;
            Ok(path)
        }
        .await;
        match result {
            Ok(path) => {
                self.rename_from = Some(path);
                Reply::new(350, "Ready for RNTO.")
            }
            Err(reply) => reply,
        }
    }

    /// RNFR/RNTO. Like `rename(2)` and other FTP servers, an existing file at the target is
    /// replaced.
    async fn rnto(&self, arg: &str, from: Option<VirtualPath>) -> Reply {
        let Some(from) = from else {
            return Reply::new(503, "Send RNFR first.");
        };
        let result = async {
            let to = self.required_path(arg, "RNTO")?;
            self.vfs()?
                .rename(&from, &to, true)
                .await
                .map_err(|e| vfs_reply(&e))?;
            tracing::info!(%from, %to, "renamed");
            Ok(Reply::new(250, "Renamed."))
        }
        .await;
        result.unwrap_or_else(|reply| reply)
    }

    fn stat(&self) -> Reply {
        let user = match &self.user {
            Some(user) => format!("Logged in as {}", user.username),
            None => "Not logged in".to_owned(),
        };
        Reply::multi(
            211,
            "Wharf FTPS status:",
            [
                format!("Connected from {}", self.client_ip),
                user,
                format!(
                    "Control connection {}; data connections {}",
                    if self.secure { "encrypted" } else { "plain" },
                    if self.prot_private {
                        "encrypted (PROT P)"
                    } else {
                        "refused until PROT P"
                    }
                ),
            ],
            "End of status.",
        )
    }

    /// `STAT <path>` (RFC 959): what LIST would show, over the control connection, written one
    /// store page at a time. A failure before the first line is an ordinary error reply.
    async fn stat_path(&mut self, arg: &str) -> io::Result<Flow> {
        let opened = async {
            let path = match command::list_path(arg) {
                "" => self.cwd.clone(),
                path => self.path(path)?,
            };
            let vfs = self.vfs()?;
            let entry = vfs.stat(&path).await.map_err(|e| vfs_reply(&e))?;
            let source = match entry.kind {
                EntryKind::Directory => {
                    ListSource::Directory(vfs.list_pages(&path).await.map_err(|e| vfs_reply(&e))?)
                }
                EntryKind::File => ListSource::One(entry),
            };
            Ok((path, source, vfs.permissions()))
        }
        .await;
        let (path, source, permissions) = match opened {
            Ok(opened) => opened,
            Err(reply) => return self.send(reply).await,
        };
        let now = Utc::now();
        let lines = |entries: &[wharf_vfs::Entry], text: &mut String| {
            for entry in entries.iter().filter(|e| listable(&e.name)) {
                text.push_str(&reply::middle_line(&long_line(entry, permissions, now)));
            }
        };
        let mut text = reply::first_line(213, &format!("Status of {path}:"));
        let mut started = false;
        match source {
            ListSource::One(entry) => lines(std::slice::from_ref(&entry), &mut text),
            ListSource::Directory(mut listing) => loop {
                match listing.next_page().await {
                    Ok(Some(page)) => lines(&page, &mut text),
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(%path, error = %e, "STAT listing failed");
                        if !started {
                            return self.send(vfs_reply(&e)).await;
                        }
                        // The reply has begun as 213: its last line can only say it is cut.
                        let reason = match e {
                            VfsError::Storage(_) | VfsError::Config(_) => {
                                "storage error; try again later".to_owned()
                            }
                            other => other.to_string(),
                        };
                        return self
                            .send(Reply::new(
                                213,
                                format!("End of status: listing incomplete ({reason})"),
                            ))
                            .await;
                    }
                }
                self.write_control(text.as_bytes()).await?;
                started = true;
                text.clear();
            },
        }
        self.write_control(text.as_bytes()).await?;
        self.send(Reply::new(213, "End of status")).await
    }

    /// Writes part of a reply, bounded by the idle timeout (a client that stops reading a long
    /// STAT loses its connection).
    async fn write_control(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let idle = self.shared.config.idle_timeout;
        let stream = &mut self.control.stream;
        timeout(idle, async {
            stream.write_all(bytes).await?;
            stream.flush().await
        })
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
    }

    // --- Integrity: HASH, RANG, XSHA256 and friends ---------------------------------------------

    /// `RANG start end`: the inclusive byte range of the next HASH; `RANG 1 0` resets it
    /// (draft-bryan-ftp-range).
    fn rang(&mut self, arg: &str) -> Reply {
        let mut numbers = arg.split_whitespace().map(str::parse::<u64>);
        let (Some(Ok(start)), Some(Ok(end)), None) =
            (numbers.next(), numbers.next(), numbers.next())
        else {
            return Reply::new(501, "RANG needs a start and an end byte.");
        };
        match (start, end) {
            (1, 0) => Reply::new(350, "Range reset: HASH covers the whole file."),
            (start, end) if start > end => {
                Reply::new(501, "The range ends before it starts; range reset.")
            }
            (start, end) => {
                self.hash_range = Some((start, end));
                Reply::new(
                    350,
                    format!("The next HASH covers bytes {start} to {end} (inclusive)."),
                )
            }
        }
    }

    /// `HASH <path>` (draft-bryan-ftpext-hash): `213 SHA-256 0-99 <hex> <path>`, the range
    /// inclusive and clipped to the file. Computed while the control connection is read, so
    /// ABOR can stop a long one.
    async fn hash(
        &mut self,
        arg: &str,
        algorithm: HashAlgorithm,
        start: u64,
        len: u64,
    ) -> io::Result<Flow> {
        let (path, vfs) = match self
            .required_path(arg, "HASH")
            .and_then(|p| Ok((p, self.vfs()?)))
        {
            Ok(found) => found,
            Err(reply) => return self.send(reply).await,
        };
        let shown = arg.to_owned();
        let job = async move {
            let sum = match vfs.checksum(&path, algorithm, start, len, 0).await {
                Ok(sum) => sum,
                Err(e) => return hash_error(&e),
            };
            let Some(digest) = sum.digests.first() else {
                tracing::warn!(%path, "the checksum came back without a digest");
                return Reply::new(451, "No digest could be computed; try again later.");
            };
            // An empty range is shown as `start-start`: the draft's syntax has no empty range.
            let end = sum.range.end.saturating_sub(1).max(sum.range.start);
            tracing::info!(%path, %algorithm, start = sum.range.start, end = sum.range.end, "HASH");
            Reply::new(
                213,
                format!(
                    "{} {}-{end} {} {shown}",
                    algorithm.ftp_name(),
                    sum.range.start,
                    hex(digest)
                ),
            )
        };
        self.run_transfer(job, "A HASH is being computed.").await
    }

    /// `XSHA256`, `XSHA512`, `XSHA1`, `XMD5 <path>`: `250 <hex>` of the whole file, as the
    /// servers that invented them reply.
    async fn x_hash(
        &mut self,
        verb: &str,
        arg: &str,
        algorithm: HashAlgorithm,
    ) -> io::Result<Flow> {
        let (path, vfs) = match self
            .required_path(arg, verb)
            .and_then(|p| Ok((p, self.vfs()?)))
        {
            Ok(found) => found,
            Err(reply) => return self.send(reply).await,
        };
        let job = async move {
            match vfs.checksum(&path, algorithm, 0, 0, 0).await {
                Ok(sum) => match sum.digests.first() {
                    Some(digest) => Reply::new(250, hex(digest)),
                    None => Reply::new(451, "No digest could be computed; try again later."),
                },
                Err(e) => hash_error(&e),
            }
        };
        self.run_transfer(job, "A digest is being computed.").await
    }

    // --- Passive mode and transfers -------------------------------------------------------------

    async fn passive(&mut self, extended: bool, arg: &str) -> Reply {
        if extended {
            match arg.trim().to_ascii_uppercase().as_str() {
                "" => {}
                "ALL" => {
                    self.epsv_all = true;
                    return Reply::new(200, "EPSV ALL ok: only EPSV from now on.");
                }
                "1" if self.local_ip.is_ipv4() || self.local_ip.to_canonical().is_ipv4() => {}
                "2" if self.local_ip.is_ipv6() => {}
                "1" | "2" => {
                    let family = if self.local_ip.is_ipv6() { 2 } else { 1 };
                    return Reply::new(
                        522,
                        format!("Network protocol not supported, use ({family})"),
                    );
                }
                _ => return Reply::new(501, "EPSV takes 1, 2 or ALL."),
            }
        } else if self.epsv_all {
            return Reply::new(503, "PASV is not allowed after EPSV ALL; use EPSV.");
        }
        if !self.prot_private {
            tracing::info!("passive mode refused: data connections not protected (PROT C)");
            return Reply::new(534, DATA_MUST_BE_ENCRYPTED);
        }
        // A new PASV replaces an unused one.
        self.passive = None;
        let advertised = if extended {
            None
        } else {
            match self.pasv_address().await {
                Ok(ip) => Some(ip),
                Err(reply) => return reply,
            }
        };
        let listener = match self.shared.ports.bind(self.local_ip) {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(error = %e, "no passive port");
                return Reply::new(425, format!("Cannot open a passive port: {e}."));
            }
        };
        let port = listener.port();
        self.passive = Some(listener);
        match advertised {
            None => Reply::new(229, format!("Entering Extended Passive Mode (|||{port}|)")),
            Some(ip) => {
                let [a, b, c, d] = ip.octets();
                let [p1, p2] = port.to_be_bytes();
                Reply::new(
                    227,
                    format!("Entering Passive Mode ({a},{b},{c},{d},{p1},{p2})."),
                )
            }
        }
    }

    /// The IPv4 address a PASV reply names.
    async fn pasv_address(&self) -> Result<Ipv4Addr, Reply> {
        match &self.shared.config.passive_host {
            PassiveHost::FromConnection => match self.advertised_ip {
                IpAddr::V4(ip) => Ok(ip),
                IpAddr::V6(_) => Err(Reply::new(
                    522,
                    "PASV needs an IPv4 connection; use EPSV (1,2).",
                )),
            },
            PassiveHost::Ip(ip) => Ok(*ip),
            PassiveHost::Dns(name) => {
                let addrs = tokio::net::lookup_host((name.as_str(), 0)).await;
                let ip = addrs.ok().and_then(|mut addrs| {
                    addrs.find_map(|a| match a.ip() {
                        IpAddr::V4(ip) => Some(ip),
                        IpAddr::V6(_) => None,
                    })
                });
                ip.ok_or_else(|| {
                    tracing::warn!(host = %name, "cannot resolve the passive host to IPv4");
                    Reply::new(425, "Cannot resolve the passive host; try EPSV.")
                })
            }
        }
    }

    fn data_policy(&self) -> DataPolicy {
        DataPolicy {
            client_ip: self.client_ip,
            control_peer_ip: self.peer_ip,
            shared: self.shared.clone(),
            acceptor: TlsAcceptor::from(self.tls.data.clone()),
            require_resumption: self.shared.config.require_tls_resumption,
            timeout: self.shared.config.data_timeout,
        }
    }

    /// LIST, NLST, MLSD, RETR, STOR, APPE: checks, then `150`, then the transfer (during which
    /// the control connection is still read, for ABOR), then its reply.
    async fn data_command(&mut self, cmd: &Command, rest: u64) -> io::Result<Flow> {
        if self.user.is_none() {
            self.passive = None;
            return self
                .send(Reply::new(530, "Please log in with USER and PASS first."))
                .await;
        }
        if !self.prot_private {
            self.passive = None;
            tracing::info!(command = %cmd.name, "transfer refused: PROT C");
            return self.send(Reply::new(534, DATA_MUST_BE_ENCRYPTED)).await;
        }
        let Some(listener) = self.passive.take() else {
            return self.send(Reply::new(425, "Use PASV or EPSV first.")).await;
        };
        let policy = self.data_policy();
        let idle = self.shared.config.idle_timeout;
        let prepared = match cmd.verb {
            Verb::Retr => self.prepare_retr(&cmd.arg, rest).await,
            Verb::Stor | Verb::Appe => {
                self.prepare_stor(&cmd.arg, rest, cmd.verb == Verb::Appe)
                    .await
            }
            _ => self.prepare_list(cmd.verb, &cmd.arg).await,
        };
        let (opening, job) = match prepared {
            Ok(prepared) => prepared,
            Err(reply) => return self.send(reply).await,
        };
        self.say(150, opening).await?;
        let transfer = async move {
            let data = match policy.open(listener).await {
                Ok(data) => data,
                Err(e) => {
                    if let Job::Upload { upload, .. } = job {
                        transfer::abort(*upload).await;
                    }
                    return data_error(e);
                }
            };
            match job {
                Job::Download { download, offset } => {
                    transfer::send_download(data, download, offset, idle).await
                }
                Job::Upload { upload, offset } => {
                    transfer::receive_upload(data, *upload, offset, idle).await
                }
                Job::Listing {
                    source,
                    format,
                    permissions,
                } => transfer::send_listing(data, source, format, permissions, idle).await,
            }
        };
        self.run_transfer(transfer, "A transfer is running.").await
    }

    async fn prepare_retr(&self, arg: &str, rest: u64) -> Result<(String, Job), Reply> {
        let path = self.required_path(arg, "RETR")?;
        let download = self
            .vfs()?
            .open_read(&path)
            .await
            .map_err(|e| vfs_reply(&e))?;
        let size = download.size();
        if rest > size {
            return Err(Reply::new(
                554,
                format!("Cannot restart at {rest}: the file has {size} bytes."),
            ));
        }
        tracing::info!(%path, size, offset = rest, "download started");
        Ok((
            format!("Opening BINARY mode data connection for {path} ({size} bytes)."),
            Job::Download {
                download,
                offset: rest,
            },
        ))
    }

    async fn prepare_stor(
        &self,
        arg: &str,
        rest: u64,
        append: bool,
    ) -> Result<(String, Job), Reply> {
        let path = self.required_path(arg, if append { "APPE" } else { "STOR" })?;
        let vfs = self.vfs()?;
        let upload = if append {
            vfs.open_append(&path).await
        } else {
            let mode = if rest == 0 {
                WriteMode::Truncate
            } else {
                WriteMode::Resume
            };
            vfs.create(
                &path,
                CreateOptions {
                    mode,
                    ..CreateOptions::default()
                },
            )
            .await
        }
        .map_err(|e| vfs_reply(&e))?;
        let existing = upload.start_offset();
        if !append && rest != existing {
            transfer::abort(upload).await;
            let e = VfsError::Unsupported(format!(
                "cannot continue at offset {rest}: an upload resumes only at the current end \
                 of the file ({existing} bytes)"
            ));
            tracing::info!(%path, rest, existing, "upload resume refused");
            return Err(Reply::new(554, e.to_string()));
        }
        let offset = if append { existing } else { rest };
        tracing::info!(%path, offset, append, "upload started");
        Ok((
            "Ok to send data.".to_owned(),
            Job::Upload {
                upload: Box::new(upload),
                offset,
            },
        ))
    }

    async fn prepare_list(&self, verb: Verb, arg: &str) -> Result<(String, Job), Reply> {
        let (format, arg) = match verb {
            Verb::Mlsd => (ListFormat::Machine(self.options.facts), arg.trim_end()),
            Verb::Nlst => (ListFormat::Names, command::list_path(arg)),
            _ => (ListFormat::Long, command::list_path(arg)),
        };
        let path = if arg.is_empty() {
            self.cwd.clone()
        } else {
            self.path(arg)?
        };
        let vfs = self.vfs()?;
        let entry = vfs.stat(&path).await.map_err(|e| vfs_reply(&e))?;
        let source = match entry.kind {
            EntryKind::Directory => {
                ListSource::Directory(vfs.list_pages(&path).await.map_err(|e| vfs_reply(&e))?)
            }
            EntryKind::File if matches!(format, ListFormat::Machine(_)) => {
                return Err(Reply::new(
                    501,
                    "MLSD needs a directory; use MLST for a file.",
                ));
            }
            EntryKind::File => ListSource::One(entry),
        };
        Ok((
            "Here comes the listing.".to_owned(),
            Job::Listing {
                source,
                format,
                permissions: vfs.permissions(),
            },
        ))
    }

    /// Runs `transfer` (or a HASH) while reading the control connection: `ABOR` cancels it
    /// (an upload is aborted), `NOOP` and `STAT` (with or without a path) are answered at once
    /// (STAT with `busy`), any other command is kept for afterwards (and nothing more is read
    /// until then).
    async fn run_transfer(
        &mut self,
        transfer: impl Future<Output = Reply>,
        busy: &str,
    ) -> io::Result<Flow> {
        tokio::pin!(transfer);
        let mut reading = true;
        let mut control_gone = false;
        loop {
            tokio::select! {
                reply = &mut transfer => {
                    if control_gone {
                        return Ok(Flow::Close);
                    }
                    return self.send(reply).await;
                }
                ending = session_watch::ended(&mut self.ending) => {
                    // Dropping the transfer aborts it: an upload leaves nothing.
                    tracing::info!(reason = ending.message(), "ending the session during a transfer");
                    self.say(426, "Transfer aborted.").await?;
                    self.say(421, capitalized(ending.message())).await?;
                    return Ok(Flow::Close);
                }
                line = self.control.read_line(), if reading => match line {
                    Ok(Some(line)) => match command::parse(&line).map(|c| c.verb) {
                        Ok(Verb::Abor) => {
                            tracing::info!("transfer aborted by the client (ABOR)");
                            self.say(426, "Transfer aborted.").await?;
                            return self.send(Reply::new(226, "ABOR successful.")).await;
                        }
                        Ok(Verb::Noop) => self.say(200, "NOOP ok; a transfer is running.").await?,
                        Ok(Verb::Stat) => self.say(213, busy).await?,
                        _ => {
                            self.control.pushback = Some(line);
                            reading = false;
                        }
                    },
                    Ok(None) | Err(_) => {
                        reading = false;
                        control_gone = true;
                    }
                },
            }
        }
    }
}

/// What a data command does once its data connection is open.
enum Job {
    Download {
        download: wharf_vfs::Download,
        offset: u64,
    },
    Upload {
        upload: Box<wharf_vfs::Upload>,
        offset: u64,
    },
    Listing {
        source: ListSource,
        format: ListFormat,
        permissions: wharf_core::Permissions,
    },
}

fn data_error(e: DataError) -> Reply {
    tracing::info!(error = %e, "no usable data connection");
    if let DataError::NotResumed = e {
        // vsftpd's answer to the same refusal, which clients and their users know.
        return Reply::new(
            522,
            "Data connection refused: it must resume the control connection's TLS session \
             (turn on TLS session reuse in the client).",
        );
    }
    Reply::new(425, format!("Cannot open the data connection: {e}."))
}

/// `text` with its first letter upper-case, as FTP reply texts are.
fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect::<String>() + ".",
        None => String::new(),
    }
}

/// A path in double quotes, as PWD and MKD reply it (quotes in it doubled, RFC 959).
fn quote(path: &VirtualPath) -> String {
    format!("\"{}\"", path.to_string().replace('"', "\"\""))
}

/// The reply to a failed HASH or XSHA…: the draft's codes where it has one.
fn hash_error(e: &VfsError) -> Reply {
    match e {
        VfsError::IsADirectory => Reply::new(553, "HASH needs a file: a directory has no hash."),
        VfsError::Unsupported(_) => Reply::new(554, e.to_string()),
        _ => vfs_reply(e),
    }
}

/// Lower-case hexadecimal, as the HASH draft recommends.
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(text, "{b:02x}");
    }
    text
}

/// An MFMT time: `YYYYMMDDHHMMSS` with optional fractions of a second (`.sss`), a real date.
fn valid_mfmt_time(time: &str) -> bool {
    let (whole, fraction) = match time.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (time, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    whole.len() == 14
        && digits(whole)
        && fraction.is_none_or(digits)
        && chrono::NaiveDateTime::parse_from_str(whole, "%Y%m%d%H%M%S").is_ok()
}

/// The FEAT line of HASH: every offered algorithm, the selected one starred.
fn hash_feat(selected: HashAlgorithm) -> String {
    let names: Vec<String> = HASH_ALGORITHMS
        .iter()
        .map(|&a| {
            let star = if a == selected { "*" } else { "" };
            format!("{}{star}", a.ftp_name())
        })
        .collect();
    format!("HASH {}", names.join(";"))
}

/// A session's choices made with OPTS.
#[derive(Debug, Clone, Copy)]
struct Options {
    /// The facts MLST and MLSD show (`OPTS MLST`).
    facts: Facts,
    /// The algorithm of HASH (`OPTS HASH`).
    hash: HashAlgorithm,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            facts: Facts::default(),
            hash: HASH_ALGORITHMS[0],
        }
    }
}

impl Options {
    /// FEAT: what the gateway offers, with this session's MLST facts and HASH algorithm
    /// starred.
    fn feat(&self) -> Reply {
        Reply::multi(
            211,
            "Extensions supported:",
            [
                "AUTH TLS".to_owned(),
                "PBSZ".to_owned(),
                "PROT".to_owned(),
                "EPSV".to_owned(),
                "SIZE".to_owned(),
                "MDTM".to_owned(),
                "MFMT".to_owned(),
                format!("MLST {}", self.facts.feat_list()),
                hash_feat(self.hash),
                "REST STREAM".to_owned(),
                "TVFS".to_owned(),
                "UTF8".to_owned(),
            ],
            "End",
        )
    }

    /// OPTS UTF8, OPTS MLST (RFC 3659 §7.9) and OPTS HASH (draft-bryan-ftpext-hash §3.2).
    fn set(&mut self, arg: &str) -> Reply {
        let arg = arg.trim();
        let (option, value) = match arg.split_once(' ') {
            Some((option, value)) => (option, value.trim()),
            None => (arg, ""),
        };
        match option.to_ascii_uppercase().as_str() {
            "UTF8" | "UTF-8" if value.is_empty() || value.eq_ignore_ascii_case("ON") => {
                Reply::new(200, "UTF8 is always on.")
            }
            "UTF8" | "UTF-8" => Reply::new(504, "UTF8 cannot be turned off."),
            "MLST" => {
                self.facts = Facts::parse(value);
                let list = self.facts.selected_list();
                Reply::new(200, format!("MLST OPTS {list}").trim_end())
            }
            "HASH" if value.is_empty() => Reply::new(200, self.hash.ftp_name()),
            "HASH" => {
                match HashAlgorithm::from_ftp_name(value).filter(|a| HASH_ALGORITHMS.contains(a)) {
                    Some(algorithm) => {
                        self.hash = algorithm;
                        Reply::new(200, algorithm.ftp_name())
                    }
                    None => Reply::new(
                        504,
                        format!(
                            "Unknown algorithm; the selection stays {}. Offered: {}.",
                            self.hash.ftp_name(),
                            HASH_ALGORITHMS.map(HashAlgorithm::ftp_name).join(", ")
                        ),
                    ),
                }
            }
            _ => Reply::new(501, "Option not understood."),
        }
    }
}

fn help() -> Reply {
    Reply::multi(
        214,
        "Commands:",
        [
            "ABOR ALLO APPE AUTH CDUP CWD DELE EPSV FEAT HASH HELP LIST MDTM MFMT MKD",
            "MLSD MLST MODE NLST NOOP OPTS PASS PASV PBSZ PROT PWD QUIT RANG REST RETR",
            "RMD RNFR RNTO SIZE STAT STOR STRU SYST TYPE USER XMD5 XSHA1 XSHA256 XSHA512",
        ]
        .map(str::to_owned),
        "Active mode (PORT, EPRT) is not supported.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feat_lists_what_clients_look_for() {
        let feat = Options::default().feat().to_string();
        for f in [
            " SIZE\r\n",
            " MDTM\r\n",
            " MFMT\r\n",
            " MLST type*;size*;modify*;perm*;\r\n",
            " HASH SHA-256*;SHA-512;SHA-1;MD5\r\n",
            " UTF8\r\n",
            " AUTH TLS\r\n",
            " PBSZ\r\n",
            " PROT\r\n",
            " REST STREAM\r\n",
            " EPSV\r\n",
        ] {
            assert!(feat.contains(f), "{f:?} missing from {feat}");
        }
        assert!(feat.starts_with("211-") && feat.ends_with("211 End\r\n"));
    }

    #[test]
    fn quoted_paths() {
        let path = VirtualPath::parse("/a \"b\"/c").unwrap();
        assert_eq!(quote(&path), "\"/a \"\"b\"\"/c\"");
        assert_eq!(quote(&VirtualPath::root()), "\"/\"");
    }

    #[test]
    fn paths_resolve_against_the_working_directory_and_stay_inside() {
        let cwd = VirtualPath::parse("/in").unwrap();
        let resolve = |arg: &str| VirtualPath::resolve(&cwd, arg).unwrap().to_string();
        assert_eq!(resolve("x.edi"), "/in/x.edi");
        assert_eq!(resolve("../../../etc/passwd"), "/etc/passwd");
        assert_eq!(resolve("/out/./y"), "/out/y");
        assert_eq!(resolve(".."), "/");
        assert!(VirtualPath::resolve(&cwd, "a\\..\\b").is_err());
        assert_eq!(
            vfs_reply(&VirtualPath::resolve(&cwd, "a\0b").unwrap_err()).code(),
            553
        );
    }

    #[test]
    fn options() {
        let mut options = Options::default();
        let mut opts = |arg: &str| options.set(arg).to_string();
        assert_eq!(opts("UTF8 ON"), "200 UTF8 is always on.\r\n");
        assert_eq!(opts("utf8 on"), "200 UTF8 is always on.\r\n");
        assert_eq!(opts("UTF8"), "200 UTF8 is always on.\r\n");
        assert!(opts("UTF8 OFF").starts_with("504 "));
        assert!(opts("FOO").starts_with("501 "));
    }

    #[test]
    fn opts_mlst_replies_the_selection_and_feat_stars_it() {
        let mut options = Options::default();
        assert_eq!(
            options.set("MLST type;size;modify;").to_string(),
            "200 MLST OPTS type;size;modify;\r\n"
        );
        assert!(
            options
                .feat()
                .to_string()
                .contains(" MLST type*;size*;modify*;perm;\r\n")
        );
        assert_eq!(
            options.set("mlst PERM;unknown;").to_string(),
            "200 MLST OPTS perm;\r\n"
        );
        assert_eq!(options.set("MLST").to_string(), "200 MLST OPTS\r\n");
        assert_eq!(options.facts, Facts::parse(""));
    }

    #[test]
    fn opts_hash_selects_an_offered_algorithm_and_feat_stars_it() {
        let mut options = Options::default();
        assert_eq!(options.set("HASH").to_string(), "200 SHA-256\r\n");
        assert_eq!(options.set("HASH sha-1").to_string(), "200 SHA-1\r\n");
        assert!(
            options
                .feat()
                .to_string()
                .contains(" HASH SHA-256;SHA-512;SHA-1*;MD5\r\n")
        );
        // Unknown, or known to the VFS but not offered: refused, the selection kept.
        assert!(options.set("HASH CRC32").to_string().starts_with("504 "));
        assert!(options.set("HASH SHA-384").to_string().starts_with("504 "));
        assert_eq!(options.hash, HashAlgorithm::Sha1);
    }

    #[test]
    fn mfmt_times_must_be_real_dates_with_optional_fractions() {
        for ok in ["20200102030405", "20200102030405.123", "20240229235959.5"] {
            assert!(valid_mfmt_time(ok), "{ok}");
        }
        for bad in [
            "",
            "2020010203040",
            "202001020304056",
            "20201302030405",
            "20230229000000",
            "2020010203040x",
            "20200102030405.",
            "20200102030405.1a",
            "+2020102030405",
        ] {
            assert!(!valid_mfmt_time(bad), "{bad}");
        }
    }

    #[test]
    fn hex_digests_are_lower_case() {
        assert_eq!(hex(&[0x00, 0xab, 0x7f]), "00ab7f");
        assert_eq!(hex(&[]), "");
    }
}
