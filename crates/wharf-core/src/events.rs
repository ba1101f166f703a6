//! The event contract: what the VFS reports when a file or directory changes, and how; and the
//! login and ban events the control plane records itself ([`EventPayload`]).
//!
//! [`EventSink`] is implemented in-process by the control plane (for `wharf serve`, writing
//! the events table and the webhook outbox) and over HTTP by the client crate (for the
//! gateways, `POST /internal/v1/events…`), so both paths record the same events.
//!
//! An upload is recorded in two steps so that no completed upload can be missed, even if the
//! gateway dies at the worst moment:
//! 1. [`EventSink::begin_upload`] before the object is made visible: the control plane stores a
//!    *pending* `file.created` event with everything known at that point (size and SHA-256 are
//!    final: the data is complete, only the store's commit is left). If this fails, the upload
//!    is not committed and the partner gets an error.
//! 2. [`EventSink::settle_upload`] after the commit: the event becomes `file.created` (and is
//!    delivered to webhooks) or `file.upload_failed`.
//!
//! The reply to the client does not have to wait for step 2: the pending event already makes
//! the upload durable. [`EventSink::settle_upload_later`] lets a sink that can order the settle
//! before every later read and write of events (the in-process one on SQLite) run it in the
//! background.
//!
//! A pending event that is never settled (the gateway crashed between the two steps) is
//! settled by the control plane itself after a while, by looking at the object in the store.
//!
//! Deletes, renames and new directories are recorded the same way
//! ([`EventSink::begin_change`] before the change, the settle after it), so that no change a
//! client was told of goes unrecorded: a pending change that is settled as not done, or that
//! the control plane finds not done in the store, is forgotten.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{BucketName, Protocol, Username};

/// The kinds of events, with their wire names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum EventType {
    /// An upload completed: the file is visible with this content.
    #[serde(rename = "file.created")]
    FileCreated,
    /// An upload that had received data did not complete (error, disconnect, abort); the
    /// previous version (or nothing) is still in place.
    #[serde(rename = "file.upload_failed")]
    FileUploadFailed,
    #[serde(rename = "file.deleted")]
    FileDeleted,
    /// A file or directory was renamed; `data.key` is the new key, `data.previousKey` the old.
    #[serde(rename = "file.renamed")]
    FileRenamed,
    #[serde(rename = "directory.created")]
    DirectoryCreated,
    /// A login was refused ([`LoginFailedData`]); refusals of an address or name already
    /// banned are not recorded (they cost nothing and could be sent by the thousand).
    #[serde(rename = "user.login_failed")]
    UserLoginFailed,
    /// Failed logins banned a client address (its /64 for IPv6) ([`BanData`]).
    #[serde(rename = "ip.banned")]
    IpBanned,
    /// Failed passwords banned password logins for a user name ([`BanData`]).
    #[serde(rename = "user.banned")]
    UserBanned,
}

impl EventType {
    pub const ALL: [EventType; 8] = [
        EventType::FileCreated,
        EventType::FileUploadFailed,
        EventType::FileDeleted,
        EventType::FileRenamed,
        EventType::DirectoryCreated,
        EventType::UserLoginFailed,
        EventType::IpBanned,
        EventType::UserBanned,
    ];

    /// Whether events of this type are about a file or directory ([`EventData`]): the ones
    /// gateways report, and the only ones a webhook's bucket and prefix filters match.
    pub fn is_file_event(self) -> bool {
        matches!(
            self,
            EventType::FileCreated
                | EventType::FileUploadFailed
                | EventType::FileDeleted
                | EventType::FileRenamed
                | EventType::DirectoryCreated
        )
    }

    /// The wire name (`file.created`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::FileCreated => "file.created",
            EventType::FileUploadFailed => "file.upload_failed",
            EventType::FileDeleted => "file.deleted",
            EventType::FileRenamed => "file.renamed",
            EventType::DirectoryCreated => "directory.created",
            EventType::UserLoginFailed => "user.login_failed",
            EventType::IpBanned => "ip.banned",
            EventType::UserBanned => "user.banned",
        }
    }

    /// The type for a wire name.
    pub fn parse(name: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl std::fmt::Display for EventType {
    // `pad`, not `write_str`: width and alignment (`{:<18}`) line tables up.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// The `data` of a file event: what happened to which key, and who did it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventData {
    pub bucket_name: BucketName,
    /// The bucket key (`alice/in/x.edi`: home + path, no leading `/`).
    pub key: String,
    /// Bytes of the file (`file.created`; the bytes received for `file.upload_failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Lowercase hex SHA-256 of the whole file, computed while it streamed (`file.created`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    pub username: Username,
    pub protocol: Protocol,
    /// The partner's address (from PROXY protocol when behind a load balancer).
    pub client_ip: String,
    /// The gateway's id of the session.
    pub session_id: String,
    /// The key before a rename (`file.renamed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_key: Option<String>,
    /// Why an upload failed (`file.upload_failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How a refused login tried to sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LoginMethod {
    Password,
    Publickey,
}

/// Why a login was refused (`user.login_failed`). Operators see it; partners never do (they
/// all get the same "denied").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LoginFailureReason {
    /// No user has this name.
    UnknownUser,
    /// The password is not the user's (or is longer than any password can be).
    WrongPassword,
    /// The public key is not one of the user's.
    KeyNotAuthorized,
    /// The user is disabled.
    UserDisabled,
    /// The user signs in with keys only.
    PasswordLoginDisabled,
}

impl LoginMethod {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            LoginMethod::Password => "password",
            LoginMethod::Publickey => "publickey",
        }
    }
}

impl LoginFailureReason {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            LoginFailureReason::UnknownUser => "unknown-user",
            LoginFailureReason::WrongPassword => "wrong-password",
            LoginFailureReason::KeyNotAuthorized => "key-not-authorized",
            LoginFailureReason::UserDisabled => "user-disabled",
            LoginFailureReason::PasswordLoginDisabled => "password-login-disabled",
        }
    }
}

/// The `data` of `user.login_failed`. Never holds the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginFailedData {
    /// The name as the client sent it (it may name no user; at most 128 characters kept).
    pub username: String,
    pub protocol: Protocol,
    pub method: LoginMethod,
    pub reason: LoginFailureReason,
    /// The client's address (from PROXY protocol when behind a load balancer).
    pub client_ip: String,
    /// The gateway's id of the session.
    pub session_id: String,
}

/// The `data` of `ip.banned` (with `address`) and `user.banned` (with `username`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BanData {
    /// The banned network: `203.0.113.7/32`, or the /64 of an IPv6 address (`ip.banned`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The user name whose password logins are banned (`user.banned`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// When the ban ends (`DELETE /v1/bans/…` lifts it sooner).
    pub until: DateTime<Utc>,
    /// Its number in a row of bans of this target (each lasts twice as long as the last).
    pub ban_count: u32,
    /// The address of the failed login that imposed the ban.
    pub client_ip: String,
}

/// The `data` of an event; which one its `type` says: file and directory events carry
/// [`EventData`], `user.login_failed` [`LoginFailedData`], `ip.banned` and `user.banned`
/// [`BanData`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum EventPayload {
    File(EventData),
    LoginFailed(LoginFailedData),
    Ban(BanData),
}

impl EventPayload {
    /// The file event's data, if this is one.
    pub fn file(&self) -> Option<&EventData> {
        match self {
            EventPayload::File(data) => Some(data),
            _ => None,
        }
    }

    /// The bucket a file event happened in.
    pub fn bucket_name(&self) -> Option<&BucketName> {
        self.file().map(|data| &data.bucket_name)
    }

    /// The key a file event is about.
    pub fn key(&self) -> Option<&str> {
        self.file().map(|data| data.key.as_str())
    }

    /// The user the event is about, if any (a login's name as typed; none for `ip.banned`).
    pub fn username(&self) -> Option<&str> {
        match self {
            EventPayload::File(data) => Some(data.username.as_str()),
            EventPayload::LoginFailed(data) => Some(&data.username),
            EventPayload::Ban(data) => data.username.as_deref(),
        }
    }

    /// The protocol of the session the event came from (none for a ban).
    pub fn protocol(&self) -> Option<Protocol> {
        match self {
            EventPayload::File(data) => Some(data.protocol),
            EventPayload::LoginFailed(data) => Some(data.protocol),
            EventPayload::Ban(_) => None,
        }
    }

    /// What the event is about, in one line for tables: the key (`old -> new` for a rename),
    /// a refused login's reason and method, a ban's target and end.
    pub fn subject(&self) -> String {
        match self {
            EventPayload::File(data) => match &data.previous_key {
                Some(previous) => format!("{previous} -> {}", data.key),
                None => data.key.clone(),
            },
            EventPayload::LoginFailed(data) => {
                format!("{} ({})", data.reason.as_str(), data.method.as_str())
            }
            EventPayload::Ban(data) => format!(
                "{} banned until {}",
                data.address
                    .as_deref()
                    .or(data.username.as_deref())
                    .unwrap_or_default(),
                data.until
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        }
    }

    /// The client address the event came from.
    pub fn client_ip(&self) -> &str {
        match self {
            EventPayload::File(data) => &data.client_ip,
            EventPayload::LoginFailed(data) => &data.client_ip,
            EventPayload::Ban(data) => &data.client_ip,
        }
    }
}

impl From<EventData> for EventPayload {
    fn from(data: EventData) -> Self {
        EventPayload::File(data)
    }
}

/// One event as recorded and delivered: the Standard Webhooks payload shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// `evt_…`, unique; also the `webhook-id` of its deliveries.
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub time: DateTime<Utc>,
    pub data: EventPayload,
}

/// `POST /internal/v1/events`: an event a gateway reports (anything but an upload's start).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordEventRequest {
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub data: EventData,
}

/// `POST /internal/v1/uploads`: an upload about to be committed (step 1), or a delete, rename
/// or new directory about to be made. For an upload, `data.size` and `data.sha256` are those
/// of the complete file.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BeginUploadRequest {
    /// `file.created` (the default) for an upload; `file.deleted`, `file.renamed` or
    /// `directory.created` for a change.
    #[serde(rename = "type", default = "file_created")]
    pub event_type: EventType,
    pub data: EventData,
}

fn file_created() -> EventType {
    EventType::FileCreated
}

/// The reply to [`BeginUploadRequest`]: the pending event's id.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingUpload {
    pub event_id: String,
}

/// `201` reply to `POST /internal/v1/events`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordedEvent {
    /// `evt_…`
    pub id: String,
}

/// `POST /internal/v1/uploads/{eventId}/settle`: how the commit went (step 2).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SettleUploadRequest {
    /// `true`: the object is visible (`file.created`); `false`: it is not
    /// (`file.upload_failed`, with `error`).
    pub committed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Why an event could not be recorded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EventError {
    /// The control plane could not be reached or could not store the event; retrying may help.
    #[error("event service unavailable: {0}")]
    Unavailable(String),
    /// The control plane refused the event (a bug in the caller, or an unknown pending id).
    #[error("event refused: {0}")]
    Rejected(String),
}

/// Where file events go. See the module documentation for the two-step upload protocol.
#[async_trait::async_trait]
pub trait EventSink: Send + Sync + 'static {
    /// Step 1 of an upload: records a pending `file.created`; returns its id. The caller must
    /// not commit the upload if this fails.
    async fn begin_upload(&self, data: EventData) -> Result<String, EventError>;

    /// Step 1 of a delete, rename or new directory (`event_type`): records it pending before
    /// the change is made; returns its id. The caller must not make the change if this fails,
    /// and settles it afterwards like an upload: `committed` if the change was made (the event
    /// is recorded and delivered), not if it failed (the pending event is forgotten).
    async fn begin_change(
        &self,
        event_type: EventType,
        data: EventData,
    ) -> Result<String, EventError>;

    /// Step 2 of an upload: the commit succeeded (`committed`) or failed (`error` says why).
    async fn settle_upload(
        &self,
        event_id: &str,
        committed: bool,
        error: Option<String>,
    ) -> Result<(), EventError>;

    /// Step 2 when the caller goes on without its outcome (the commit is done and the client
    /// is told so). A sink that can order the settle before every later read and write of
    /// events returns at once and settles in the background, logging a failure; the default
    /// settles inline. Either way a pending event nobody settles is settled by the control
    /// plane later.
    async fn settle_upload_later(
        &self,
        event_id: &str,
        committed: bool,
        error: Option<String>,
    ) -> Result<(), EventError> {
        self.settle_upload(event_id, committed, error).await
    }

    /// Records any other event (deletes, renames, new directories, failed uploads that never
    /// reached step 1). Returns the event's id.
    async fn record(&self, event_type: EventType, data: EventData) -> Result<String, EventError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_round_trip_their_wire_names() {
        for t in EventType::ALL {
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.as_str()));
            assert_eq!(serde_json::from_str::<EventType>(&json).unwrap(), t);
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
        assert_eq!(EventType::parse("file.exploded"), None);
    }

    #[test]
    fn event_payload_has_the_documented_shape() {
        let event = Event {
            id: "evt_1".into(),
            event_type: EventType::FileCreated,
            time: DateTime::parse_from_rfc3339("2026-11-28T12:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            data: EventPayload::File(EventData {
                bucket_name: BucketName::parse("default").unwrap(),
                key: "alice/in/x.edi".into(),
                size: Some(5),
                sha256: Some("ab".into()),
                username: Username::parse("alice").unwrap(),
                protocol: Protocol::Sftp,
                client_ip: "192.0.2.1".into(),
                session_id: "s-1".into(),
                previous_key: None,
                error: None,
            }),
        };
        let v = serde_json::to_value(&event).unwrap();
        assert_eq!(v["type"], "file.created");
        assert_eq!(v["time"], "2026-11-28T12:00:00Z");
        assert_eq!(v["data"]["bucketName"], "default");
        assert_eq!(v["data"]["clientIp"], "192.0.2.1");
        assert_eq!(v["data"]["sessionId"], "s-1");
        assert_eq!(v["data"]["sha256"], "ab");
        assert!(v["data"].get("previousKey").is_none());
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn login_and_ban_payloads_read_back_as_themselves() {
        let time = DateTime::parse_from_rfc3339("2026-12-07T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        for data in [
            EventPayload::LoginFailed(LoginFailedData {
                username: "mallory".into(),
                protocol: Protocol::Ftps,
                method: LoginMethod::Password,
                reason: LoginFailureReason::UnknownUser,
                client_ip: "198.18.0.1".into(),
                session_id: "s-2".into(),
            }),
            EventPayload::Ban(BanData {
                address: Some("198.18.0.1/32".into()),
                username: None,
                until: time,
                ban_count: 1,
                client_ip: "198.18.0.1".into(),
            }),
            EventPayload::Ban(BanData {
                address: None,
                username: Some("alice".into()),
                until: time,
                ban_count: 2,
                client_ip: "198.18.0.1".into(),
            }),
        ] {
            let json = serde_json::to_value(&data).unwrap();
            assert!(json.get("bucketName").is_none(), "{json}");
            assert_eq!(serde_json::from_value::<EventPayload>(json).unwrap(), data);
        }
        let json = serde_json::json!({"username": "mallory", "protocol": "sftp",
            "method": "publickey", "reason": "key-not-authorized", "clientIp": "::1",
            "sessionId": "s"});
        for reason in [
            LoginFailureReason::UnknownUser,
            LoginFailureReason::WrongPassword,
            LoginFailureReason::KeyNotAuthorized,
            LoginFailureReason::UserDisabled,
            LoginFailureReason::PasswordLoginDisabled,
        ] {
            assert_eq!(serde_json::to_value(reason).unwrap(), reason.as_str());
        }
        for method in [LoginMethod::Password, LoginMethod::Publickey] {
            assert_eq!(serde_json::to_value(method).unwrap(), method.as_str());
        }
        assert!(matches!(
            serde_json::from_value::<EventPayload>(json).unwrap(),
            EventPayload::LoginFailed(LoginFailedData {
                reason: LoginFailureReason::KeyNotAuthorized,
                ..
            })
        ));
    }
}
