//! The login check gateways ask for: [`DatabaseLogin`]. It backs both `POST /internal/v1/login`
//! (gateways in other processes) and [`crate::ControlPlane::login_provider`] (`wharf serve`), so
//! there is one code path for who may log in.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use wharf_core::api::BanKind;
use wharf_core::{
    BanData, EventPayload, EventType, LoginError, LoginFailedData, LoginFailureReason, LoginGrant,
    LoginMethod, LoginProvider, LoginRequest, LoginSecret, PublicKey, SessionCheck, Username,
};

use crate::defender::{Defender, NewBan};
use crate::events::DatabaseEvents;
use crate::metrics::Metrics;
use crate::passwords;
use crate::store::{self, Store};

/// Passwords longer than this are refused without hashing (no generated password comes close).
const MAX_PASSWORD_BYTES: usize = 1024;

/// The characters of a typed user name kept in a `user.login_failed` event.
const MAX_EVENT_USERNAME_CHARS: usize = 128;

/// Checks logins against the users in the [`Store`], and records `user.login_failed`,
/// `ip.banned` and `user.banned` events.
#[derive(Clone)]
pub struct DatabaseLogin {
    store: Store,
    metrics: Metrics,
    defender: Defender,
    events: Arc<DatabaseEvents>,
}

/// A refused login worth an event: why, and for a password, whether its user exists (what the
/// defender counts).
struct Failure {
    reason: LoginFailureReason,
    password_of_known_user: Option<bool>,
}

impl DatabaseLogin {
    pub(crate) fn new(
        store: Store,
        metrics: Metrics,
        defender: Defender,
        events: Arc<DatabaseEvents>,
    ) -> Self {
        DatabaseLogin {
            store,
            metrics,
            defender,
            events,
        }
    }

    /// Unknown user, wrong secret and disabled user all give [`LoginError::Denied`], after the
    /// same work (an argon2 verification for passwords), so neither the answer nor its timing
    /// tells them apart. A password for an enabled user without password login gives
    /// [`LoginError::PasswordDisabled`], after that same work. A database failure is
    /// [`LoginError::Unavailable`].
    ///
    /// A banned address, or a password for a banned user name, is refused first, without
    /// looking at the secret ([`LoginError::AddressBanned`], [`LoginError::UserBanned`]); a
    /// failed password counts towards such bans (see [`crate::defender`]).
    ///
    /// Each refusal after a look at the secret is recorded as `user.login_failed` (SSH's key
    /// queries excepted: clients offer keys that are not the user's as a matter of course),
    /// and each ban it imposes as `ip.banned` or `user.banned`.
    pub async fn check(&self, request: LoginRequest) -> Result<LoginGrant, LoginError> {
        let protocol = request.protocol.as_str();
        let client_ip = request.client_ip.parse().ok();
        let password = matches!(request.secret, LoginSecret::Password { .. });
        let result = match self
            .defender
            .check(client_ip, &request.username, password)
            .await
        {
            Ok(()) => self.check_inner(&request).await,
            Err(banned) => Err((banned, None)),
        };
        if let Err((_, Some(failure))) = &result {
            let bans = match failure.password_of_known_user {
                Some(known) => {
                    self.defender
                        .failed(client_ip, &request.username, known)
                        .await
                }
                None => Vec::new(),
            };
            if !request.probe {
                self.record_failure(&request, failure.reason, &bans).await;
            }
        }
        let result = result.map_err(|(e, _)| e);
        let outcome = match &result {
            Ok(_) if request.probe => "probe",
            Ok(_) => "success",
            Err(LoginError::Denied) => "denied",
            Err(LoginError::PasswordDisabled) => "password_disabled",
            Err(LoginError::AddressBanned { .. } | LoginError::UserBanned { .. }) => "banned",
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

    /// Records `user.login_failed` and the bans it imposed. A failure to record is logged: the
    /// login is refused either way.
    async fn record_failure(
        &self,
        request: &LoginRequest,
        reason: LoginFailureReason,
        bans: &[NewBan],
    ) {
        let method = match request.secret {
            LoginSecret::Password { .. } => LoginMethod::Password,
            LoginSecret::PublicKey { .. } => LoginMethod::Publickey,
        };
        let mut events = vec![(
            EventType::UserLoginFailed,
            EventPayload::LoginFailed(LoginFailedData {
                username: request
                    .username
                    .chars()
                    .take(MAX_EVENT_USERNAME_CHARS)
                    .collect(),
                protocol: request.protocol,
                method,
                reason,
                client_ip: request.client_ip.clone(),
                session_id: request.session_id.clone(),
            }),
        )];
        for ban in bans {
            let (event_type, address, username) = match ban.kind {
                BanKind::Address => (EventType::IpBanned, Some(ban.target.clone()), None),
                BanKind::User => (EventType::UserBanned, None, Some(ban.target.clone())),
            };
            events.push((
                event_type,
                EventPayload::Ban(BanData {
                    address,
                    username,
                    until: ban.until,
                    ban_count: ban.ban_count,
                    client_ip: request.client_ip.clone(),
                }),
            ));
        }
        for (event_type, data) in events {
            if let Err(e) = self.events.record_event(event_type, &data).await {
                tracing::warn!(r#type = %event_type, error = %e, "cannot record a login event");
            }
        }
    }

    /// The grant, or the refusal and, where it looked at the secret, why it failed.
    async fn check_inner(
        &self,
        request: &LoginRequest,
    ) -> Result<LoginGrant, (LoginError, Option<Failure>)> {
        let username = Username::parse(&request.username).ok();
        let found = match &username {
            Some(username) => self
                .store
                .get_user_with_bucket(username)
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, "login: cannot read the user");
                    let e = LoginError::Unavailable("the user database is unavailable".into());
                    (e, None)
                })?,
            None => None,
        };
        let tried_password = matches!(request.secret, LoginSecret::Password { .. });
        let mut credential = String::new();
        let accepted = match &request.secret {
            LoginSecret::Password { password } => {
                if password.len() > MAX_PASSWORD_BYTES {
                    false
                } else {
                    // A user without password login is checked against the dummy hash, as an
                    // unknown user is: the refusal takes as long as a wrong password's.
                    let hash = found
                        .as_ref()
                        .filter(|(user, _)| user.password_enabled)
                        .map(|(user, _)| user.password_hash.clone());
                    if let Some(hash) = &hash {
                        credential = password_credential(hash);
                    }
                    passwords::verify_login_password(&request.username, password.clone(), hash)
                        .await
                        .map_err(|busy| {
                            tracing::warn!("login refused: {busy}");
                            (LoginError::Unavailable(busy.to_string()), None)
                        })?
                }
            }
            LoginSecret::PublicKey { public_key } => match (PublicKey::parse(public_key), &found) {
                (Ok(offered), Some((user, _))) => {
                    credential = key_credential(&offered);
                    user.public_keys
                        .iter()
                        .filter_map(|line| PublicKey::parse(line).ok())
                        .any(|key| key.same_key(&offered))
                }
                _ => false,
            },
        };
        let known = found.is_some();
        let failure = |reason| Failure {
            reason,
            password_of_known_user: tried_password.then_some(known),
        };
        let (user, bucket) = match found {
            Some((user, bucket)) if accepted && !user.disabled => (user, bucket),
            Some((user, _)) if tried_password && !user.password_enabled && !user.disabled => {
                let failure = failure(LoginFailureReason::PasswordLoginDisabled);
                return Err((LoginError::PasswordDisabled, Some(failure)));
            }
            None => {
                return Err((
                    LoginError::Denied,
                    Some(failure(LoginFailureReason::UnknownUser)),
                ));
            }
            Some(_) if !accepted && tried_password => {
                return Err((
                    LoginError::Denied,
                    Some(failure(LoginFailureReason::WrongPassword)),
                ));
            }
            Some(_) if !accepted => {
                let failure = failure(LoginFailureReason::KeyNotAuthorized);
                return Err((LoginError::Denied, Some(failure)));
            }
            Some(_) => {
                return Err((
                    LoginError::Denied,
                    Some(failure(LoginFailureReason::UserDisabled)),
                ));
            }
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
            credential,
        })
    }

    /// For each session, whether its user exists and is enabled and its credential still logs
    /// in (see [`wharf_core::session_watch`]). Each user is read once.
    pub async fn check_sessions(&self, sessions: &[SessionCheck]) -> Result<Vec<bool>, LoginError> {
        let mut users = std::collections::HashMap::new();
        let mut valid = Vec::with_capacity(sessions.len());
        for session in sessions {
            if !users.contains_key(&session.username) {
                let user = self.store.get_user(&session.username).await.map_err(|e| {
                    tracing::error!(error = %e, "session check: cannot read the user");
                    LoginError::Unavailable("the user database is unavailable".into())
                })?;
                users.insert(session.username.clone(), user);
            }
            let still = match users.get(&session.username).and_then(Option::as_ref) {
                Some(user) if !user.disabled => {
                    let credential = session.credential.as_str();
                    if credential.is_empty() {
                        // A session from before credentials were told: checked by user only.
                        true
                    } else if credential.starts_with("password:") {
                        user.password_enabled
                            && password_credential(&user.password_hash) == credential
                    } else {
                        user.public_keys
                            .iter()
                            .filter_map(|line| PublicKey::parse(line).ok())
                            .any(|key| key_credential(&key) == credential)
                    }
                }
                _ => false,
            };
            valid.push(still);
        }
        Ok(valid)
    }
}

/// A session's credential when it logged in with a password: a digest of the stored hash
/// (which a new password, or a reset, replaces), never of the password.
fn password_credential(stored_hash: &str) -> String {
    let digest = hex::encode(Sha256::digest(stored_hash.as_bytes()));
    format!("password:{}", &digest[..32])
}

/// A session's credential when it logged in with a public key: the key's fingerprint.
fn key_credential(key: &PublicKey) -> String {
    format!("key:{}", key.fingerprint())
}

#[async_trait::async_trait]
impl LoginProvider for DatabaseLogin {
    async fn login(&self, request: LoginRequest) -> Result<LoginGrant, LoginError> {
        self.check(request).await
    }

    async fn check_sessions(&self, sessions: &[SessionCheck]) -> Result<Vec<bool>, LoginError> {
        DatabaseLogin::check_sessions(self, sessions).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use wharf_core::{BucketName, HomeDirectory, Permissions, Protocol};

    use super::*;
    use crate::store::NewUser;

    fn login_with(username: &str, password: &str) -> LoginRequest {
        LoginRequest {
            protocol: Protocol::Ftps,
            username: username.to_owned(),
            secret: LoginSecret::Password {
                password: password.to_owned(),
            },
            client_ip: "192.0.2.1".into(),
            session_id: "test".into(),
            probe: false,
        }
    }

    /// A password for a user without password login runs argon2 (against the dummy hash), as a
    /// wrong password does: with every hashing slot taken, both wait, and neither answers
    /// early. Once the slots are free, the answer is `PasswordDisabled`.
    #[tokio::test]
    async fn a_disabled_password_costs_as_much_as_a_wrong_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("w.db").display()))
            .await
            .unwrap();
        store
            .ensure_default_bucket(&format!("file://{}", dir.path().display()))
            .await
            .unwrap();
        let hash = passwords::hash_password("the right password!".into())
            .await
            .unwrap();
        for (name, password_enabled) in [("keys", false), ("both", true)] {
            store
                .insert_user(&NewUser {
                    username: Username::parse(name).unwrap(),
                    description: name.into(),
                    home_directory: HomeDirectory::root(),
                    bucket_name: BucketName::default_bucket(),
                    permissions: Permissions::ReadWrite,
                    password_hash: hash.clone(),
                    password_enabled,
                    public_keys: vec![],
                    max_sessions: 10,
                    created_at: store::now(),
                })
                .await
                .unwrap();
        }
        let defender = Defender::new(store.clone(), Default::default(), Metrics::new());
        let events = Arc::new(DatabaseEvents::new(
            store.clone(),
            &Default::default(),
            Default::default(),
        ));
        let login = DatabaseLogin::new(store.clone(), Metrics::new(), defender, events);

        let slots = passwords::take_every_slot().await;
        for (user, password) in [
            ("keys", "the right password!"),
            ("keys", "a wrong password"),
            ("both", "a wrong password"),
        ] {
            let check = login.check(login_with(user, password));
            let answered = tokio::time::timeout(Duration::from_millis(300), check).await;
            assert!(
                answered.is_err(),
                "{user}/{password} answered without argon2: {answered:?}"
            );
        }
        drop(slots);

        for password in ["the right password!", "a wrong password"] {
            assert!(matches!(
                login.check(login_with("keys", password)).await,
                Err(LoginError::PasswordDisabled)
            ));
        }
        assert!(matches!(
            login.check(login_with("both", "a wrong password")).await,
            Err(LoginError::Denied)
        ));
        assert!(
            login
                .check(login_with("both", "the right password!"))
                .await
                .is_ok()
        );
        store.close().await;
    }
}
