//! The bodies of `/v1/webhooks` and `/v1/events`: webhook subscriptions, their deliveries and
//! attempts, and pages of events. Re-exported from [`crate::api`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{BucketName, Event, EventType, Username};

/// Only the events matching every part given are delivered. An event without what a part looks
/// at does not match it: `bucketName` and `prefix` match file and directory events only, and
/// `username` no `ip.banned`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookFilter {
    /// Events in this bucket only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_name: Option<BucketName>,
    /// Events whose bucket key starts with this (`alice/in/`: keys have no leading `/`). A
    /// rename matches if its old or its new key does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Events caused by this user only (for `user.login_failed`, the name as typed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<Username>,
}

/// `POST /v1/webhooks`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateWebhookRequest {
    /// Where deliveries are POSTed: an `http://` or `https://` URL.
    #[schema(example = "https://example.com/wharf-events", format = "uri")]
    pub url: String,
    /// The event types to deliver (at least one).
    #[schema(min_items = 1)]
    pub events: Vec<EventType>,
    #[serde(
        default,
        deserialize_with = "super::object_only",
        skip_serializing_if = "Option::is_none"
    )]
    pub filter: Option<WebhookFilter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `PATCH /v1/webhooks/{id}`: only the fields present change.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateWebhookRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = "uri")]
    pub url: Option<String>,
    /// The event types to deliver (at least one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_items = 1)]
    pub events: Option<Vec<EventType>>,
    /// Replaces the whole filter (`{}` removes it).
    #[serde(
        default,
        deserialize_with = "super::object_only",
        skip_serializing_if = "Option::is_none"
    )]
    pub filter: Option<WebhookFilter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `false` stops new deliveries; `true` also resumes a webhook paused by the loop guard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// A webhook subscription (its secret is shown only when it is created).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    /// `wh_…`
    pub id: String,
    pub url: String,
    pub events: Vec<EventType>,
    pub filter: WebhookFilter,
    pub description: String,
    /// Disabled webhooks get no new deliveries.
    pub enabled: bool,
    /// Why the loop guard paused this webhook: its deliveries are kept and sent once it is
    /// enabled again (`PATCH {"enabled": true}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `201` reply to `POST /v1/webhooks`: the webhook and its signing secret, shown this once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedWebhook {
    /// `whsec_` + base64 of 32 random bytes: give it to the receiver to verify signatures.
    pub secret: String,
    #[serde(flatten)]
    pub webhook: Webhook,
}

/// One page of webhooks.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookList {
    pub items: Vec<Webhook>,
    /// Pass as `pageToken` to get the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum DeliveryState {
    /// Waiting for its next attempt.
    Pending,
    /// The receiver answered 2xx.
    Succeeded,
    /// Every attempt of the retry period failed; `POST …/retry` sends it again.
    Dead,
}

/// One attempt at a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryAttempt {
    pub time: DateTime<Utc>,
    /// The receiver's HTTP status; absent if it did not answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    pub latency_ms: u64,
    /// What went wrong: connection refused, a timeout, or a non-2xx status (the receiver's
    /// answer itself is never kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One event's delivery to one webhook, with every attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// `dlv_…`
    pub id: String,
    pub webhook_id: String,
    /// The event delivered; also the `webhook-id` header of every attempt.
    pub event_id: String,
    /// `file.created`, …, or `webhook.test`.
    pub event_type: String,
    pub status: DeliveryState,
    pub attempt_count: u32,
    /// When the next attempt is due (pending deliveries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Oldest first.
    pub attempts: Vec<DeliveryAttempt>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One page of deliveries, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryList {
    pub items: Vec<Delivery>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// One page of events, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventList {
    pub items: Vec<Event>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}
