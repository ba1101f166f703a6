//! Logins: libunftp's [`Authenticator`] and [`UserDetailProvider`] over the gateway's
//! [`LoginProvider`], and [`FtpsUser`], the logged-in user that carries the session's [`Vfs`].

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tracing::Instrument;
use unftp_core::auth::{
    AuthenticationError, Authenticator, ChannelEncryptionState, Credentials, Principal, UserDetail,
    UserDetailError, UserDetailProvider,
};
use wharf_core::{LoginError, LoginProvider, LoginRequest, LoginSecret, Protocol, Username};
use wharf_vfs::{SessionIdentity, StoreCache, Vfs};

use crate::sessions::{SessionCounts, SessionSlot};

/// A failed login takes at least this long, so guessing is slow and timing tells nothing
/// (the SFTP gateway's `auth_rejection_time`).
const REJECTION_TIME: Duration = Duration::from_millis(500);

/// A logged-in FTPS user: its VFS session and its place in the user's session count, both
/// held as long as libunftp keeps the session.
pub(crate) struct FtpsUser {
    username: Username,
    vfs: Vfs,
    span: tracing::Span,
    _slot: SessionSlot,
}

impl FtpsUser {
    pub(crate) fn vfs(&self) -> Vfs {
        self.vfs.clone()
    }

    /// The connection's span (session id, client, user), for work libunftp runs on its own
    /// tasks.
    pub(crate) fn span(&self) -> tracing::Span {
        self.span.clone()
    }
}

impl UserDetail for FtpsUser {}

impl fmt::Display for FtpsUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.username.fmt(f)
    }
}

impl fmt::Debug for FtpsUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FtpsUser")
            .field("username", &self.username)
            .field("session", &self.vfs.identity().session_id)
            .finish_non_exhaustive()
    }
}

/// The login checks of one control connection. libunftp asks the [`Authenticator`] for a
/// principal and then the [`UserDetailProvider`] for the user; this one object is both, and
/// hands the user built during authentication over to the second call.
pub(crate) struct Logins {
    pub(crate) login: Arc<dyn LoginProvider>,
    pub(crate) stores: Arc<StoreCache>,
    pub(crate) sessions: SessionCounts,
    pub(crate) peer: SocketAddr,
    pub(crate) session_id: String,
    pub(crate) span: tracing::Span,
    /// The user of the authentication that just succeeded, until libunftp asks for it.
    pending: Mutex<Option<FtpsUser>>,
}

impl fmt::Debug for Logins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Logins")
            .field("peer", &self.peer)
            .field("session_id", &self.session_id)
            .finish_non_exhaustive()
    }
}

impl Logins {
    pub(crate) fn new(
        login: Arc<dyn LoginProvider>,
        stores: Arc<StoreCache>,
        sessions: SessionCounts,
        peer: SocketAddr,
        session_id: String,
        span: tracing::Span,
    ) -> Self {
        Logins {
            login,
            stores,
            sessions,
            peer,
            session_id,
            span,
            pending: Mutex::new(None),
        }
    }

    async fn try_login(
        &self,
        username: &str,
        creds: &Credentials,
    ) -> Result<FtpsUser, AuthenticationError> {
        // libunftp refuses USER and PASS on a plaintext control channel already (FtpsRequired
        // All); checked again so no configuration mistake can send a password in clear.
        if creds.command_channel_security != ChannelEncryptionState::Tls {
            tracing::info!(user = %username, "login refused: control channel not encrypted");
            return Err(AuthenticationError::new("TLS is required to log in"));
        }
        let Some(password) = creds.password.clone() else {
            return Err(AuthenticationError::BadPassword);
        };
        let request = LoginRequest {
            protocol: Protocol::Ftps,
            username: username.to_owned(),
            secret: LoginSecret::Password { password },
            client_ip: self.peer.ip().to_string(),
            session_id: self.session_id.clone(),
            probe: false,
        };
        let grant = match self.login.login(request).await {
            Ok(grant) => grant,
            Err(LoginError::Denied) => {
                tracing::info!(user = %username, "login failed");
                return Err(AuthenticationError::BadPassword);
            }
            Err(e @ LoginError::Unavailable(_)) => {
                tracing::warn!(error = %e, "login service unavailable");
                return Err(AuthenticationError::with_source("login unavailable", e));
            }
        };
        let slot = match self
            .sessions
            .try_acquire(&grant.username, grant.max_sessions)
        {
            Ok(slot) => slot,
            Err(in_use) => {
                // FTP has no way to say why a login failed beyond 530; the log says it.
                tracing::info!(user = %grant.username, limit = grant.max_sessions, in_use,
                    "login refused: too many sessions");
                return Err(AuthenticationError::new(format!(
                    "too many sessions for user {} (limit {})",
                    grant.username, grant.max_sessions
                )));
            }
        };
        let bucket = self.stores.bucket(&grant.bucket).map_err(|e| {
            tracing::error!(error = %e, bucket = %grant.bucket.name, "cannot open bucket");
            AuthenticationError::with_source("cannot open the bucket", e)
        })?;
        let identity = SessionIdentity {
            username: grant.username.clone(),
            protocol: Protocol::Ftps,
            client_ip: self.peer.ip().to_string(),
            session_id: self.session_id.clone(),
        };
        let vfs = Vfs::on_bucket(
            &bucket,
            grant.home_directory.clone(),
            grant.permissions,
            identity,
        );
        self.span
            .record("user", tracing::field::display(&grant.username));
        tracing::info!(user = %grant.username, home = %grant.home_directory, "login succeeded");
        Ok(FtpsUser {
            username: grant.username,
            vfs,
            span: self.span.clone(),
            _slot: slot,
        })
    }
}

#[async_trait]
impl Authenticator for Logins {
    async fn authenticate(
        &self,
        username: &str,
        creds: &Credentials,
    ) -> Result<Principal, AuthenticationError> {
        let started = tokio::time::Instant::now();
        let result = self
            .try_login(username, creds)
            .instrument(self.span.clone())
            .await;
        match result {
            Ok(user) => {
                let principal = Principal {
                    username: user.username.to_string(),
                };
                *self.pending.lock().unwrap_or_else(PoisonError::into_inner) = Some(user);
                Ok(principal)
            }
            Err(e) => {
                tokio::time::sleep_until(started + REJECTION_TIME).await;
                Err(e)
            }
        }
    }

    fn name(&self) -> &str {
        "wharf-login"
    }
}

#[async_trait]
impl UserDetailProvider for Logins {
    type User = FtpsUser;

    async fn provide_user_detail(
        &self,
        principal: &Principal,
    ) -> Result<FtpsUser, UserDetailError> {
        let user = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match user {
            Some(user) if user.username.as_str() == principal.username => Ok(user),
            _ => Err(UserDetailError::UserNotFound {
                username: principal.username.clone(),
            }),
        }
    }
}
