//! The login check gateways ask for: [`DatabaseLogin`]. It backs both `POST /internal/v1/login`
//! (gateways in other processes) and [`crate::ControlPlane::login_provider`] (`wharf serve`), so
//! there is one code path for who may log in.

use wharf_core::{
    LoginError, LoginGrant, LoginProvider, LoginRequest, LoginSecret, PublicKey, Username,
};

use crate::metrics::Metrics;
use crate::passwords;
use crate::store::{self, Store};

/// Passwords longer than this are refused without hashing (no generated password comes close).
const MAX_PASSWORD_BYTES: usize = 1024;

/// Checks logins against the users in the [`Store`].
#[derive(Clone)]
pub struct DatabaseLogin {
    store: Store,
    metrics: Metrics,
}

impl DatabaseLogin {
    pub(crate) fn new(store: Store, metrics: Metrics) -> Self {
        DatabaseLogin { store, metrics }
    }

    /// Unknown user, wrong secret and disabled user all give [`LoginError::Denied`], after the
    /// same work (an argon2 verification for passwords), so neither the answer nor its timing
    /// tells them apart. A database failure is [`LoginError::Unavailable`].
    pub async fn check(&self, request: LoginRequest) -> Result<LoginGrant, LoginError> {
        let protocol = request.protocol.as_str();
        let result = self.check_inner(&request).await;
        let outcome = match &result {
            Ok(_) if request.probe => "probe",
            Ok(_) => "success",
            Err(LoginError::Denied) => "denied",
            Err(LoginError::Unavailable(_)) => "error",
        };
        self.metrics.observe_login(protocol, outcome);
        let method = match request.secret {
            LoginSecret::Password { .. } => "password",
            LoginSecret::PublicKey { .. } => "publickey",
        };
        match &result {
            Ok(_) if request.probe => {}
            Ok(grant) => tracing::info!(
                username = %grant.username, protocol, method,
                client_ip = ?request.client_ip, session_id = ?request.session_id,
                "login accepted"
            ),
            Err(e) => tracing::info!(
                username = ?request.username, protocol, method,
                client_ip = ?request.client_ip, session_id = ?request.session_id,
                error = %e, "login refused"
            ),
        }
        result
    }

    async fn check_inner(&self, request: &LoginRequest) -> Result<LoginGrant, LoginError> {
        let username = Username::parse(&request.username).ok();
        let found = match &username {
            Some(username) => self
                .store
                .get_user_with_bucket(username)
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, "login: cannot read the user");
                    LoginError::Unavailable("the user database is unavailable".into())
                })?,
            None => None,
        };
        let accepted = match &request.secret {
            LoginSecret::Password { password } => {
                if password.len() > MAX_PASSWORD_BYTES {
                    false
                } else {
                    let hash = found.as_ref().map(|(user, _)| user.password_hash.clone());
                    passwords::verify_login_password(&request.username, password.clone(), hash)
                        .await
                }
            }
            LoginSecret::PublicKey { public_key } => match (PublicKey::parse(public_key), &found) {
                (Ok(offered), Some((user, _))) => user
                    .public_keys
                    .iter()
                    .filter_map(|line| PublicKey::parse(line).ok())
                    .any(|key| key.same_key(&offered)),
                _ => false,
            },
        };
        let (user, bucket) = match found {
            Some((user, bucket)) if accepted && !user.disabled => (user, bucket),
            _ => return Err(LoginError::Denied),
        };
        if !request.probe {
            // A plain UPDATE per login: "within seconds" precision without a write queue.
            if let Err(e) = self
                .store
                .touch_last_connected(&user.username, store::now())
                .await
            {
                tracing::warn!(username = %user.username, error = %e, "cannot record the login time");
            }
        }
        Ok(LoginGrant {
            username: user.username,
            bucket: bucket.storage(),
            home_directory: user.home_directory,
            permissions: user.permissions,
            max_sessions: user.max_sessions,
        })
    }
}

#[async_trait::async_trait]
impl LoginProvider for DatabaseLogin {
    async fn login(&self, request: LoginRequest) -> Result<LoginGrant, LoginError> {
        self.check(request).await
    }
}
