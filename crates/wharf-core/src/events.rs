//! The file-event contract: what the VFS reports when a file or directory changes, and how.
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
}

impl EventType {
    pub const ALL: [EventType; 5] = [
        EventType::FileCreated,
        EventType::FileUploadFailed,
        EventType::FileDeleted,
        EventType::FileRenamed,
        EventType::DirectoryCreated,
    ];

    /// The wire name (`file.created`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::FileCreated => "file.created",
            EventType::FileUploadFailed => "file.upload_failed",
            EventType::FileDeleted => "file.deleted",
            EventType::FileRenamed => "file.renamed",
            EventType::DirectoryCreated => "directory.created",
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

/// The `data` of an event: what happened to which key, and who did it.
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

/// One event as recorded and delivered: the Standard Webhooks payload shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// `evt_…`, unique; also the `webhook-id` of its deliveries.
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub time: DateTime<Utc>,
    pub data: EventData,
}

/// `POST /internal/v1/events`: an event a gateway reports (anything but an upload's start).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordEventRequest {
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub data: EventData,
}

/// `POST /internal/v1/uploads`: an upload about to be committed (step 1). `data.size` and
/// `data.sha256` are those of the complete file.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BeginUploadRequest {
    pub data: EventData,
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
            data: EventData {
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
            },
        };
        let v = serde_json::to_value(&event).unwrap();
        assert_eq!(v["type"], "file.created");
        assert_eq!(v["time"], "2026-11-28T12:00:00Z");
        assert_eq!(v["data"]["bucketName"], "default");
        assert_eq!(v["data"]["clientIp"], "192.0.2.1");
        assert_eq!(v["data"]["sessionId"], "s-1");
        assert_eq!(v["data"]["sha256"], "ab");
        assert!(v["data"].get("previousKey").is_none());
    }
}
