//! Logins: USER/PASS through the gateway's [`LoginProvider`], the user's session slot, and the
//! session's [`Vfs`].

use std::net::IpAddr;
use std::time::Duration;

use std::sync::Arc;

use wharf_core::session_watch::{Ending, Registration};
use wharf_core::{LoginError, LoginRequest, LoginSecret, Protocol, SessionCheck, Username};
use wharf_vfs::{SessionIdentity, Vfs};

use crate::server::Shared;
use crate::sessions::SessionSlot;

/// A failed login takes at least this long, so guessing is slow and timing tells nothing
/// (the SFTP gateway's `auth_rejection_time`).
const REJECTION_TIME: Duration = Duration::from_millis(500);

/// A logged-in user: its VFS session and its place in the user's session count, both held
/// until the control connection ends.
pub(crate) struct LoggedIn {
    pub username: Username,
    pub vfs: Vfs,
    /// Told when the session must end (its user disabled or deleted, its credential changed,
    /// its time up); see [`wharf_core::session_watch`].
    pub ending: tokio::sync::watch::Receiver<Option<Ending>>,
    _slot: SessionSlot,
    _watched: Registration,
}

/// Why a login did not succeed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoginFailure {
    /// Unknown user, wrong password or disabled user: one case, on purpose.
    #[error("login incorrect")]
    Denied,
    #[error("too many sessions for user {user} (limit {limit}); close one and retry")]
    TooManySessions { user: Username, limit: u32 },
    /// Too many failed logins from the client's address (the connection ends) or for the
    /// user name.
    #[error("too many failed logins {}; try again later", if *.address { "from your address" } else { "for this user" })]
    Banned { address: bool },
    /// The control plane could not be asked, or the bucket not opened: try again later.
    #[error("{0}")]
    Unavailable(&'static str),
}

/// Logs `username` in with `password` from `client_ip`. Any failure takes at least
/// [`REJECTION_TIME`].
pub(crate) async fn log_in(
    shared: &Shared,
    username: &str,
    password: String,
    client_ip: IpAddr,
    session_id: &str,
) -> Result<LoggedIn, LoginFailure> {
    let started = tokio::time::Instant::now();
    let result = try_log_in(shared, username, password, client_ip, session_id).await;
    if result.is_err() {
        tokio::time::sleep_until(started + REJECTION_TIME).await;
    }
    result
}

async fn try_log_in(
    shared: &Shared,
    username: &str,
    password: String,
    client_ip: IpAddr,
    session_id: &str,
) -> Result<LoggedIn, LoginFailure> {
    let request = LoginRequest {
        protocol: Protocol::Ftps,
        username: username.to_owned(),
        secret: LoginSecret::Password { password },
        client_ip: client_ip.to_string(),
        session_id: session_id.to_owned(),
        probe: false,
    };
    let grant = match shared.login.login(request).await {
        Ok(grant) => grant,
        // FTPS has no public keys, so a user without password login is refused like any other
        // failed login (indistinguishable, as wharf_core::LoginError asks).
        Err(LoginError::Denied | LoginError::PasswordDisabled) => {
            tracing::info!(user = %username, "login failed");
            return Err(LoginFailure::Denied);
        }
        Err(e @ LoginError::AddressBanned { retry_after }) => {
            tracing::info!(user = %username, error = %e, "login refused: the address is banned");
            shared.admission.ban(client_ip, retry_after);
            return Err(LoginFailure::Banned { address: true });
        }
        Err(e @ LoginError::UserBanned { .. }) => {
            tracing::info!(user = %username, error = %e, "login refused: the user name is banned");
            return Err(LoginFailure::Banned { address: false });
        }
        Err(e @ LoginError::Unavailable(_)) => {
            tracing::warn!(error = %e, "login service unavailable");
            return Err(LoginFailure::Unavailable(
                "the login service is unavailable; try again later",
            ));
        }
    };
    let slot = match shared
        .sessions
        .try_acquire(&grant.username, grant.max_sessions)
    {
        Ok(slot) => slot,
        Err(in_use) => {
            tracing::info!(user = %grant.username, limit = grant.max_sessions, in_use,
                "login refused: too many sessions");
            return Err(LoginFailure::TooManySessions {
                user: grant.username,
                limit: grant.max_sessions,
            });
        }
    };
    let bucket = shared.stores.bucket(&grant.bucket).map_err(|e| {
        tracing::error!(error = %e, bucket = %grant.bucket.name, "cannot open bucket");
        LoginFailure::Unavailable("the user's bucket cannot be opened; try again later")
    })?;
    let identity = SessionIdentity {
        username: grant.username.clone(),
        protocol: Protocol::Ftps,
        client_ip: client_ip.to_string(),
        session_id: session_id.to_owned(),
    };
    let mut vfs = Vfs::on_bucket(
        &bucket,
        grant.home_directory.clone(),
        grant.permissions,
        identity,
    );
    if let Some(sink) = &shared.config.events {
        vfs = vfs.with_events(grant.bucket.name.clone(), sink.clone());
    }
    tracing::Span::current().record("user", tracing::field::display(&grant.username));
    tracing::info!(user = %grant.username, home = %grant.home_directory, "login succeeded");
    let (end, ending) = tokio::sync::watch::channel(None);
    let check = SessionCheck {
        username: grant.username.clone(),
        credential: grant.credential,
    };
    let watched = shared.watch.register(check, Arc::new(end));
    Ok(LoggedIn {
        username: grant.username,
        vfs,
        ending,
        _slot: slot,
        _watched: watched,
    })
}
