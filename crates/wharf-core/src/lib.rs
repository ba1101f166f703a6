//! Wharf's shared domain types.
//!
//! Everything here is plain data with validation at construction: a [`HomeDirectory`] or a
//! [`Username`] that exists has already been checked, so the VFS, the control plane and the
//! gateways never re-validate strings. This crate does no I/O.

pub mod admission;
pub mod api;
pub mod events;
mod home;
pub mod login;
mod names;
mod permissions;
mod public_key;
pub mod session_watch;

pub use events::{
    BanData, Event, EventData, EventError, EventPayload, EventSink, EventType, LoginFailedData,
    LoginFailureReason, LoginMethod,
};
pub use home::{
    DIRECTORY_MARKER, HomeDirectory, HomeDirectoryError, MAX_HOME_DIRECTORY_BYTES, RESERVED_NAMES,
    UPLOAD_JOURNAL, is_reserved_name,
};
pub use login::{
    BucketStorage, CheckSessionsReply, CheckSessionsRequest, LoginError, LoginGrant, LoginProvider,
    LoginRequest, LoginSecret, SessionCheck,
};
pub use names::{
    BucketName, NameError, PasswordError, USERNAME_ALPHABET, Username, check_password,
    generate_password, generate_username,
};
pub use permissions::Permissions;
pub use public_key::{PublicKey, PublicKeyError};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The protocol a session or an event came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Sftp,
    Ftps,
    Api,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Sftp => "sftp",
            Protocol::Ftps => "ftps",
            Protocol::Api => "api",
        }
    }
}

impl std::fmt::Display for Protocol {
    // `pad`, not `write_str`: width and alignment (`{:<5}`) line tables up.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}
