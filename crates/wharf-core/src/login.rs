//! The gateway login contract: what a gateway sends to the control plane when a partner logs in,
//! and what it gets back. [`LoginProvider`] is implemented in-process by the control plane (for
//! `wharf serve`) and over HTTP by the client crate (for `wharf sftp-gateway`), so both paths
//! run the same checks.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{BucketName, HomeDirectory, Permissions, Protocol, Username};

/// The secret a partner presented.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum LoginSecret {
    /// A password, checked against the stored argon2id hash.
    Password { password: String },
    /// A public key whose possession the gateway has verified (the SSH signature checked out),
    /// as an OpenSSH public key line (`ssh-ed25519 AAAA…`).
    PublicKey {
        #[serde(rename = "publicKey")]
        public_key: String,
    },
}

impl std::fmt::Debug for LoginSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoginSecret::Password { .. } => f.write_str("Password(<redacted>)"),
            LoginSecret::PublicKey { public_key } => {
                f.debug_tuple("PublicKey").field(public_key).finish()
            }
        }
    }
}

/// `POST /internal/v1/login`: one login attempt seen by a gateway.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoginRequest {
    pub protocol: Protocol,
    /// The user name as typed by the partner (not yet validated).
    pub username: String,
    pub secret: LoginSecret,
    /// The partner's address (from PROXY protocol when behind a load balancer).
    pub client_ip: String,
    /// The gateway's id for this connection, for logs and events.
    pub session_id: String,
    /// Check the credentials without recording a login (SSH's public-key query comes before
    /// the signature that proves possession).
    #[serde(default)]
    pub probe: bool,
}

/// Where a bucket's objects live: an object_store URL plus options (credentials, endpoint, ...).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BucketStorage {
    pub name: BucketName,
    /// `file:///…`, `s3://…`, `gs://…` or `az://…`.
    pub url: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

impl std::fmt::Debug for BucketStorage {
    // Options may carry credentials: never log them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketStorage")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("options", &self.options.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// What a gateway needs to serve a logged-in user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginGrant {
    pub username: Username,
    pub bucket: BucketStorage,
    pub home_directory: HomeDirectory,
    pub permissions: Permissions,
    /// Most concurrent sessions of this user on one gateway. Absent in replies of control
    /// planes older than this field, which means the default (10).
    #[serde(default = "default_max_sessions")]
    pub max_sessions: u32,
    /// Which of the user's credentials logged in (opaque: a digest of the password hash or
    /// of the public key). The gateway re-checks its open sessions with it
    /// ([`LoginProvider::check_sessions`]): a session ends when its user is disabled or
    /// deleted, or when the credential it logged in with is changed or removed. Empty in
    /// replies of control planes older than this field: such sessions are re-checked by
    /// user only.
    #[serde(default)]
    pub credential: String,
}

/// One open session, as a gateway re-checks it: its user and the credential it logged in with
/// ([`LoginGrant::credential`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionCheck {
    pub username: Username,
    #[serde(default)]
    pub credential: String,
}

/// `POST /internal/v1/sessions/check`: open sessions of a gateway.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CheckSessionsRequest {
    pub sessions: Vec<SessionCheck>,
}

/// The reply to [`CheckSessionsRequest`]: for each session, in order, whether it may go on.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckSessionsReply {
    pub valid: Vec<bool>,
}

fn default_max_sessions() -> u32 {
    crate::api::DEFAULT_MAX_SESSIONS
}

/// Why a login did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoginError {
    /// Unknown user, wrong secret or disabled user: deliberately one case, so a gateway cannot
    /// tell (or leak) which.
    #[error("access denied")]
    Denied,
    /// The user exists, is enabled and logs in with public keys only (`passwordEnabled:
    /// false`), and a password was tried. Only then: an unknown or disabled user is
    /// [`LoginError::Denied`], and the refusal costs the same work as a wrong password. An SFTP
    /// gateway can stop offering the password method; any other gateway treats it as
    /// [`LoginError::Denied`].
    #[error("password login is disabled for this user")]
    PasswordDisabled,
    /// Too many failed logins came from the partner's address (its IPv6 /64): every login
    /// from it is refused, before its secret is looked at, for `retry_after`. A gateway may
    /// turn new connections from the address away for that long (or less) without asking.
    #[error("too many failed logins from this address; try again in {}s", retry_after.as_secs())]
    AddressBanned { retry_after: Duration },
    /// Too many failed password logins for this user name: password logins for it are
    /// refused, before the password is looked at, for `retry_after`; public keys still work.
    /// Unknown user names are counted and banned as known ones are, so this tells nobody
    /// whether the user exists.
    #[error("too many failed logins for this user; try again in {}s", retry_after.as_secs())]
    UserBanned { retry_after: Duration },
    /// The control plane could not be asked (network, overload): the partner should retry.
    #[error("login service unavailable: {0}")]
    Unavailable(String),
}

/// Decides who may log in. See the module documentation.
#[async_trait::async_trait]
pub trait LoginProvider: Send + Sync + 'static {
    async fn login(&self, request: LoginRequest) -> Result<LoginGrant, LoginError>;

    /// For each open session, in order, whether it may go on: its user exists and is enabled,
    /// and the credential it logged in with still logs in. Only [`LoginError::Unavailable`]
    /// fails it.
    async fn check_sessions(&self, sessions: &[SessionCheck]) -> Result<Vec<bool>, LoginError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_without_max_sessions_gets_the_default() {
        // A control plane from before `maxSessions` sends no such field.
        let grant: LoginGrant = serde_json::from_str(
            r#"{"username":"alice","bucket":{"name":"default","url":"file:///srv"},
                "homeDirectory":"/alice","permissions":"read-write"}"#,
        )
        .unwrap();
        assert_eq!(grant.max_sessions, crate::api::DEFAULT_MAX_SESSIONS);
        let v = serde_json::to_value(&grant).unwrap();
        assert_eq!(v["maxSessions"], 10);
    }
}
