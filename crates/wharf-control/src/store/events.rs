//! Events, webhooks and the delivery outbox (see the `events_webhooks` migration).
//!
//! Recording an event and creating its deliveries happen in one transaction: the outbox. Each
//! transaction starts with its write, so that on SQLite it takes the write lock first (a
//! transaction that reads first and writes later can fail at once with "database is locked"
//! when another connection wrote in between).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::{AnyArguments, AnyRow};
use wharf_core::{BucketName, Event, EventData, EventPayload, EventType, Username};

use super::{Backend, Store, StoreError, from_millis, now, parse_column, to_millis};

/// The type name of a webhook's test event (never listed by `GET /v1/events`).
pub const TEST_EVENT_TYPE: &str = "webhook.test";

/// Where an event is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventStatus {
    /// An upload begun but not settled: not listed, not delivered.
    Pending,
    /// Listed and delivered.
    Recorded,
    /// A webhook's test event: delivered to that webhook only, never listed.
    Test,
}

impl EventStatus {
    fn as_str(self) -> &'static str {
        match self {
            EventStatus::Pending => "pending",
            EventStatus::Recorded => "recorded",
            EventStatus::Test => "test",
        }
    }
}

/// How new deliveries are scheduled and guarded.
#[derive(Debug, Clone, Copy)]
pub struct OutboxPolicy {
    /// No attempt is scheduled later than this after a delivery is created (or retried).
    pub give_up_after: Duration,
    /// Pause a webhook that gets more than `.0` deliveries within `.1`.
    pub loop_guard: Option<(u32, Duration)>,
}

/// What to list with [`Store::list_events`]; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub event_type: Option<EventType>,
    pub username: Option<String>,
    pub bucket_name: Option<String>,
    /// Keys starting with this.
    pub prefix: Option<String>,
}

/// A pending upload event, for the reconciler.
#[derive(Debug, Clone)]
pub struct PendingEvent {
    pub id: String,
    /// `file.created` for an upload; `file.deleted`, `file.renamed` or `directory.created`
    /// for a change.
    pub event_type: EventType,
    pub time: DateTime<Utc>,
    pub data: EventData,
}

/// What [`Store::settle_upload`] did.
#[derive(Debug, Clone)]
pub enum SettleOutcome {
    /// The event is now recorded with this type; `deliveries` were created.
    Settled {
        event_type: EventType,
        deliveries: usize,
    },
    /// It was settled before (by the gateway or the reconciler) as this type.
    AlreadySettled(String),
    /// A pending delete, rename or new directory settled as not done: it is gone.
    Forgotten,
    NotFound,
}

/// A webhook's filter: every part present must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookFilterRecord {
    pub bucket_name: Option<BucketName>,
    pub prefix: Option<String>,
    pub username: Option<Username>,
}

/// A webhook as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookRecord {
    pub id: String,
    pub url: String,
    pub events: Vec<EventType>,
    pub filter: WebhookFilterRecord,
    pub description: String,
    pub enabled: bool,
    /// Set by the loop guard: deliveries are kept but not sent until the webhook is enabled
    /// again.
    pub paused_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl std::fmt::Debug for WebhookRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookRecord")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("filter", &self.filter)
            .field("enabled", &self.enabled)
            .field("paused_reason", &self.paused_reason)
            .finish_non_exhaustive()
    }
}

impl WebhookRecord {
    /// Whether an event of this type with this data goes to this webhook.
    pub fn matches(&self, event_type: EventType, data: &EventPayload) -> bool {
        matches_filter(&self.events, &self.filter, event_type, data)
    }
}

/// Every part of the filter must match; an event without what a part looks at (a login has no
/// bucket nor key, an address ban no user name) does not match it.
fn matches_filter(
    events: &[EventType],
    filter: &WebhookFilterRecord,
    event_type: EventType,
    data: &EventPayload,
) -> bool {
    if !events.contains(&event_type) {
        return false;
    }
    if filter
        .bucket_name
        .as_ref()
        .is_some_and(|b| Some(b) != data.bucket_name())
    {
        return false;
    }
    if filter
        .username
        .as_ref()
        .is_some_and(|u| Some(u.as_str()) != data.username())
    {
        return false;
    }
    if let Some(prefix) = &filter.prefix {
        let Some(data) = data.file() else {
            return false;
        };
        // A rename matters to a prefix it leaves as well as to one it enters.
        let key_matches = data.key.starts_with(prefix.as_str());
        let previous_matches = data
            .previous_key
            .as_deref()
            .is_some_and(|k| k.starts_with(prefix.as_str()));
        if !key_matches && !previous_matches {
            return false;
        }
    }
    true
}

/// A webhook to insert.
#[derive(Clone)]
pub struct NewWebhook {
    pub url: String,
    pub events: Vec<EventType>,
    pub filter: WebhookFilterRecord,
    pub description: String,
    pub secret: String,
}

/// Changes to a webhook; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct WebhookChanges {
    pub url: Option<String>,
    pub events: Option<Vec<EventType>>,
    /// Replaces the whole filter.
    pub filter: Option<WebhookFilterRecord>,
    pub description: Option<String>,
    /// `Some(true)` also lifts a loop-guard pause.
    pub enabled: Option<bool>,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Pending,
    Succeeded,
    Dead,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Dead => "dead",
        }
    }

    fn parse(s: &str) -> Option<DeliveryStatus> {
        match s {
            "pending" => Some(DeliveryStatus::Pending),
            "succeeded" => Some(DeliveryStatus::Succeeded),
            "dead" => Some(DeliveryStatus::Dead),
            _ => None,
        }
    }
}

/// One try at sending a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    pub time: DateTime<Utc>,
    /// The receiver's HTTP status, if it answered.
    pub status_code: Option<u16>,
    pub latency_ms: u64,
    pub error: Option<String>,
}

/// A delivery as stored, with its attempts (oldest first).
#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    pub id: String,
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: String,
    pub status: DeliveryStatus,
    pub attempt_count: u32,
    /// When the next attempt is due (pending deliveries only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub attempts: Vec<AttemptRecord>,
}

/// A delivery claimed by a worker, with everything needed to send it.
#[derive(Clone)]
pub struct ClaimedDelivery {
    pub id: String,
    pub webhook_id: String,
    pub url: String,
    /// `whsec_…`, opened; never log it. An error if the stored one does not open.
    pub secret: Result<String, String>,
    pub event_id: String,
    pub event_type: String,
    pub event_time: DateTime<Utc>,
    /// The event's `data`, JSON.
    pub data: String,
    /// Attempts since the delivery was created or last retried by hand.
    pub round_attempts: u32,
    pub give_up_at: DateTime<Utc>,
}

impl std::fmt::Debug for ClaimedDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimedDelivery")
            .field("id", &self.id)
            .field("webhook_id", &self.webhook_id)
            .field("event_id", &self.event_id)
            .finish_non_exhaustive()
    }
}

/// How an attempt went and what comes next.
#[derive(Debug, Clone)]
pub struct AttemptOutcome {
    pub attempt: AttemptRecord,
    pub status: DeliveryStatus,
    /// The next attempt (for [`DeliveryStatus::Pending`]).
    pub next_attempt_at: DateTime<Utc>,
}

/// What [`Store::retry_delivery`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOutcome {
    Scheduled,
    NotFound,
    /// Only dead deliveries can be retried.
    NotDead(DeliveryStatus),
}

/// A new id, `prefix_` + a UUIDv7 in hex, and its time (milliseconds). The ids of one process
/// increase strictly (even within a millisecond), so they sort by time.
pub fn time_ordered_id(prefix: &str) -> (String, DateTime<Utc>) {
    let id = uuid::Uuid::now_v7();
    let time = id
        .get_timestamp()
        .map(|ts| {
            let (secs, nanos) = ts.to_unix();
            i64::try_from(secs)
                .ok()
                .and_then(|secs| DateTime::from_timestamp(secs, nanos))
                .unwrap_or_else(now)
        })
        .unwrap_or_else(now);
    (
        format!("{prefix}{}", id.simple()),
        super::truncate_to_millis(time),
    )
}

/// The smallest string greater than every string starting with `prefix` (in code point order,
/// which is byte order for UTF-8), or `None` if there is none.
pub fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last {
            '\u{D7FF}' => Some('\u{E000}'),
            c => char::from_u32(u32::from(c) + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

fn corrupt(table: &'static str, detail: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        table,
        detail: detail.into(),
    }
}

fn event_types_to_json(events: &[EventType]) -> String {
    let names: Vec<&str> = events.iter().map(|t| t.as_str()).collect();
    serde_json::to_string(&names).expect("a list of strings serialises")
}

fn data_to_json(data: &impl serde::Serialize) -> String {
    serde_json::to_string(data).expect("event data serialises")
}

fn data_from_json<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, StoreError> {
    serde_json::from_str(json).map_err(|e| corrupt("events", format!("data: {e}")))
}

fn event_from_row(row: &AnyRow) -> Result<Event, StoreError> {
    Ok(Event {
        id: row.try_get("id")?,
        event_type: event_type_of(row)?,
        time: from_millis(row.try_get("occurred_at")?, "events")?,
        data: data_from_json(&row.try_get::<String, _>("data")?)?,
    })
}

macro_rules! webhook_columns {
    () => {
        "id, url, events, filter_bucket, filter_prefix, filter_username, description, \
         enabled, paused_reason, created_at, updated_at"
    };
}

fn webhook_from_row(row: &AnyRow) -> Result<WebhookRecord, StoreError> {
    const T: &str = "webhooks";
    let names: Vec<String> = serde_json::from_str(&row.try_get::<String, _>("events")?)
        .map_err(|e| corrupt(T, format!("events: {e}")))?;
    let events = names
        .iter()
        .map(|n| EventType::parse(n).ok_or_else(|| corrupt(T, format!("unknown event {n:?}"))))
        .collect::<Result<_, _>>()?;
    let bucket_name = row
        .try_get::<Option<String>, _>("filter_bucket")?
        .map(|b| BucketName::parse(&b).map_err(|e| corrupt(T, format!("filter_bucket: {e}"))))
        .transpose()?;
    let username = row
        .try_get::<Option<String>, _>("filter_username")?
        .map(|u| Username::parse(&u).map_err(|e| corrupt(T, format!("filter_username: {e}"))))
        .transpose()?;
    Ok(WebhookRecord {
        id: row.try_get("id")?,
        url: row.try_get("url")?,
        events,
        filter: WebhookFilterRecord {
            bucket_name,
            prefix: row.try_get("filter_prefix")?,
            username,
        },
        description: row.try_get("description")?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        paused_reason: row.try_get("paused_reason")?,
        created_at: from_millis(row.try_get("created_at")?, T)?,
        updated_at: from_millis(row.try_get("updated_at")?, T)?,
    })
}

fn status_code_from(value: Option<i64>) -> Option<u16> {
    value.and_then(|c| u16::try_from(c).ok())
}

fn delivery_from_row(row: &AnyRow) -> Result<DeliveryRecord, StoreError> {
    const T: &str = "deliveries";
    let status = parse_column(row, "status", T, |s| {
        DeliveryStatus::parse(s).ok_or("unknown delivery status")
    })?;
    let attempts: i64 = row.try_get("attempts")?;
    Ok(DeliveryRecord {
        id: row.try_get("id")?,
        webhook_id: row.try_get("webhook_id")?,
        event_id: row.try_get("event_id")?,
        event_type: row.try_get("event_type")?,
        status,
        attempt_count: u32::try_from(attempts).unwrap_or(u32::MAX),
        next_attempt_at: if status == DeliveryStatus::Pending {
            Some(from_millis(row.try_get("next_attempt_at")?, T)?)
        } else {
            None
        },
        last_status_code: status_code_from(row.try_get("last_status_code")?),
        last_error: row.try_get("last_error")?,
        created_at: from_millis(row.try_get("created_at")?, T)?,
        updated_at: from_millis(row.try_get("updated_at")?, T)?,
        attempts: Vec::new(),
    })
}

impl Store {
    // ---------------------------------------------------------------------------------------
    // Events

    /// Records an event (and, unless it is pending, one delivery per matching webhook, in the
    /// same transaction). Returns the event and how many deliveries were created.
    pub async fn insert_event(
        &self,
        event_type: EventType,
        data: &EventPayload,
        status: EventStatus,
        policy: &OutboxPolicy,
    ) -> Result<(Event, usize), StoreError> {
        let (id, time) = time_ordered_id("evt_");
        let json = data_to_json(data);
        // Events that are not about a file have no bucket nor key; an address ban no user.
        let bucket_name = data.bucket_name().map_or("", BucketName::as_str);
        let key = data.key().unwrap_or("");
        let username = data.username().unwrap_or("");
        let webhooks = if status == EventStatus::Recorded {
            enabled_webhooks(&self.pool).await?
        } else {
            Vec::new()
        };
        // Built only where the pool runs it: the direct lane binds its own.
        let insert = || {
            sqlx::query(INSERT_EVENT)
                .bind(&id)
                .bind(event_type.as_str())
                .bind(status.as_str())
                .bind(to_millis(time))
                .bind(bucket_name)
                .bind(key)
                .bind(username)
                .bind(&json)
        };
        let deliveries = if webhooks.iter().any(|w| w.matches(event_type, data)) {
            let mut tx = self.pool.begin().await?;
            insert().execute(&mut *tx).await?;
            let deliveries =
                create_deliveries(&mut tx, &webhooks, &id, event_type, data, time, policy).await?;
            tx.commit().await?;
            deliveries
        } else {
            // No deliveries (a pending event has none yet; no enabled webhook wants this
            // one): one statement, no transaction. Pending events are on the path of every
            // upload's commit, so they take the direct lane where there is one.
            let direct = status == EventStatus::Pending
                && self
                    .write_direct("pending upload event", |conn| {
                        // `$1`…`$8` appear in order, so SQLite numbers them 1 to 8.
                        conn.prepare_cached(INSERT_EVENT)?
                            .execute(rusqlite::params![
                                id,
                                event_type.as_str(),
                                status.as_str(),
                                to_millis(time),
                                bucket_name,
                                key,
                                username,
                                json,
                            ])
                    })
                    .is_some();
            if !direct {
                insert().execute(&self.pool).await?;
            }
            0
        };
        let event = Event {
            id,
            event_type,
            time,
            data: data.clone(),
        };
        Ok((event, deliveries))
    }

    /// Settles a pending upload: `file.created` if `committed`, else `file.upload_failed` with
    /// `error`; deliveries are created in the same transaction.
    pub async fn settle_upload(
        &self,
        id: &str,
        committed: bool,
        error: Option<String>,
        policy: &OutboxPolicy,
    ) -> Result<SettleOutcome, StoreError> {
        let event_type = if committed {
            EventType::FileCreated
        } else {
            EventType::FileUploadFailed
        };
        if !committed {
            // A change that was not made leaves nothing to record.
            let forgotten = sqlx::query(
                "DELETE FROM events WHERE id = $1 AND status = $2 AND event_type <> $3",
            )
            .bind(id)
            .bind(EventStatus::Pending.as_str())
            .bind(EventType::FileCreated.as_str())
            .execute(&self.pool)
            .await?;
            if forgotten.rows_affected() > 0 {
                return Ok(SettleOutcome::Forgotten);
            }
        }
        if committed && self.settle_committed_direct(id) {
            return Ok(SettleOutcome::Settled {
                event_type,
                deliveries: 0,
            });
        }
        // Settling is on the path of every upload's commit. The enabled webhooks are read
        // first, outside any transaction: deliveries go to those enabled when settling starts.
        // With none, a committed upload is settled by one autocommit statement (two round
        // trips in all, against four with a transaction).
        let webhooks = enabled_webhooks(&self.pool).await?;
        if committed && webhooks.is_empty() {
            let claimed = claim_pending(id, event_type)
                .fetch_optional(&self.pool)
                .await?;
            return match claimed {
                Some(row) => Ok(SettleOutcome::Settled {
                    event_type: event_type_of(&row)?,
                    deliveries: 0,
                }),
                None => self.settled_before(id).await,
            };
        }
        // One statement claims the pending event and returns what the deliveries need.
        let mut tx = self.pool.begin().await?;
        let claimed = claim_pending(id, event_type)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = claimed else {
            drop(tx);
            return self.settled_before(id).await;
        };
        let time = from_millis(row.try_get("occurred_at")?, "events")?;
        let event_type = event_type_of(&row)?;
        let mut data: EventData = data_from_json(&row.try_get::<String, _>("data")?)?;
        let error = if committed {
            None
        } else {
            Some(error.unwrap_or_else(|| "the upload could not be committed".to_owned()))
        };
        if data.error != error {
            data.error = error;
            sqlx::query("UPDATE events SET data = $2 WHERE id = $1")
                .bind(id)
                .bind(data_to_json(&data))
                .execute(&mut *tx)
                .await?;
        }
        let data = EventPayload::File(data);
        let deliveries =
            create_deliveries(&mut tx, &webhooks, id, event_type, &data, time, policy).await?;
        tx.commit().await?;
        Ok(SettleOutcome::Settled {
            event_type,
            deliveries,
        })
    }

    /// Settles a committed pending upload through the direct lane, when there is one, it is
    /// free, and no webhook is enabled (so there are no deliveries to create). `false`: nothing
    /// was changed; [`Store::settle_upload`] through the pool does the rest.
    pub(crate) fn settle_committed_direct(&self, id: &str) -> bool {
        let settled = self.write_direct("upload event settle", |conn| {
            conn.prepare_cached(SETTLE_COMMITTED_WITHOUT_WEBHOOKS)?
                .execute(rusqlite::params![
                    id,
                    EventStatus::Recorded.as_str(),
                    EventStatus::Pending.as_str(),
                ])
        });
        settled == Some(1)
    }

    /// Why a pending upload event could not be claimed: unknown, or settled before (by a retry
    /// or by the reconciler).
    async fn settled_before(&self, id: &str) -> Result<SettleOutcome, StoreError> {
        let row = sqlx::query("SELECT event_type FROM events WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => Ok(SettleOutcome::AlreadySettled(row.try_get("event_type")?)),
            None => Ok(SettleOutcome::NotFound),
        }
    }

    /// A recorded event (pending and test events are not found).
    pub async fn get_event(&self, id: &str) -> Result<Option<Event>, StoreError> {
        let row = sqlx::query(
            "SELECT id, event_type, occurred_at, data FROM events WHERE id = $1 AND status = $2",
        )
        .bind(id)
        .bind(EventStatus::Recorded.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| event_from_row(&r)).transpose()
    }

    /// Up to `limit` recorded events matching `filter`, newest first, older than `before`.
    pub async fn list_events(
        &self,
        filter: &EventFilter,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        let prefix = filter.prefix.as_deref().filter(|p| !p.is_empty());
        let upper = prefix.and_then(prefix_upper_bound);
        let rows = sqlx::query(
            "SELECT id, event_type, occurred_at, data FROM events \
             WHERE status = $1 \
             AND ($2 IS NULL OR id < $2) \
             AND ($3 IS NULL OR event_type = $3) \
             AND ($4 IS NULL OR username = $4) \
             AND ($5 IS NULL OR bucket_name = $5) \
             AND ($6 IS NULL OR object_key >= $6) \
             AND ($7 IS NULL OR object_key < $7) \
             ORDER BY id DESC LIMIT $8",
        )
        .bind(EventStatus::Recorded.as_str())
        .bind(before)
        .bind(filter.event_type.map(EventType::as_str))
        .bind(filter.username.as_deref())
        .bind(filter.bucket_name.as_deref())
        .bind(prefix)
        .bind(upper.as_deref())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// Pending events (uploads and changes) begun before `before`, oldest first.
    pub async fn stale_pending_uploads(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<PendingEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, event_type, occurred_at, data FROM events \
             WHERE status = $1 AND occurred_at < $2 ORDER BY occurred_at LIMIT $3",
        )
        .bind(EventStatus::Pending.as_str())
        .bind(to_millis(before))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(PendingEvent {
                    id: row.try_get("id")?,
                    event_type: event_type_of(row)?,
                    time: from_millis(row.try_get("occurred_at")?, "events")?,
                    data: data_from_json(&row.try_get::<String, _>("data")?)?,
                })
            })
            .collect()
    }

    // ---------------------------------------------------------------------------------------
    // Webhooks

    pub async fn insert_webhook(&self, new: &NewWebhook) -> Result<WebhookRecord, StoreError> {
        let (id, created_at) = time_ordered_id("wh_");
        sqlx::query(
            "INSERT INTO webhooks (id, url, events, filter_bucket, filter_prefix, \
             filter_username, description, secret, enabled, paused_reason, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, NULL, $9, $9)",
        )
        .bind(&id)
        .bind(&new.url)
        .bind(event_types_to_json(&new.events))
        .bind(new.filter.bucket_name.as_ref().map(BucketName::as_str))
        .bind(new.filter.prefix.as_deref())
        .bind(new.filter.username.as_ref().map(Username::as_str))
        .bind(&new.description)
        .bind(self.seal_webhook_secret(&id, &new.secret))
        .bind(to_millis(created_at))
        .execute(&self.pool)
        .await?;
        Ok(WebhookRecord {
            id,
            url: new.url.clone(),
            events: new.events.clone(),
            filter: new.filter.clone(),
            description: new.description.clone(),
            enabled: true,
            paused_reason: None,
            created_at,
            updated_at: created_at,
        })
    }

    pub async fn get_webhook(&self, id: &str) -> Result<Option<WebhookRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            webhook_columns!(),
            " FROM webhooks WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| webhook_from_row(&r)).transpose()
    }

    /// Up to `limit` webhooks with an id after `after`, oldest first.
    pub async fn list_webhooks(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<WebhookRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            webhook_columns!(),
            " FROM webhooks WHERE ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2"
        ))
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(webhook_from_row).collect()
    }

    /// Applies `changes`; `None` if there is no such webhook.
    pub async fn update_webhook(
        &self,
        id: &str,
        changes: &WebhookChanges,
    ) -> Result<Option<WebhookRecord>, StoreError> {
        // A filter given replaces all three columns (NULL included): $9 = 1 says it is given.
        let filter = changes.filter.as_ref();
        let result = sqlx::query(
            "UPDATE webhooks SET \
             url = COALESCE($2, url), \
             events = COALESCE($3, events), \
             description = COALESCE($4, description), \
             enabled = COALESCE($5, enabled), \
             paused_reason = CASE WHEN $5 = 1 THEN NULL ELSE paused_reason END, \
             filter_bucket = CASE WHEN $9 = 1 THEN $6 ELSE filter_bucket END, \
             filter_prefix = CASE WHEN $9 = 1 THEN $7 ELSE filter_prefix END, \
             filter_username = CASE WHEN $9 = 1 THEN $8 ELSE filter_username END, \
             updated_at = $10 \
             WHERE id = $1",
        )
        .bind(id)
        .bind(changes.url.as_deref())
        .bind(changes.events.as_deref().map(event_types_to_json))
        .bind(changes.description.as_deref())
        .bind(changes.enabled.map(i64::from))
        .bind(filter.and_then(|f| f.bucket_name.as_ref().map(BucketName::as_str)))
        .bind(filter.and_then(|f| f.prefix.as_deref()))
        .bind(filter.and_then(|f| f.username.as_ref().map(Username::as_str)))
        .bind(i64::from(filter.is_some()))
        .bind(to_millis(now()))
        .execute(&self.pool)
        .await?;
        if result.rows_affected() == 0 {
            return Ok(None);
        }
        self.get_webhook(id).await
    }

    /// Deletes a webhook and its deliveries; `false` if there was none.
    pub async fn delete_webhook(&self, id: &str) -> Result<bool, StoreError> {
        let result = sqlx::query("DELETE FROM webhooks WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() > 0)
    }

    /// Records a test event and one delivery of it to `webhook` only, due now.
    pub async fn insert_test_delivery(
        &self,
        webhook_id: &str,
        data: &serde_json::Value,
        policy: &OutboxPolicy,
    ) -> Result<String, StoreError> {
        let (event_id, time) = time_ordered_id("evt_");
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO events (id, event_type, status, occurred_at, bucket_name, object_key, \
             username, data) VALUES ($1, $2, $3, $4, '', '', '', $5)",
        )
        .bind(&event_id)
        .bind(TEST_EVENT_TYPE)
        .bind(EventStatus::Test.as_str())
        .bind(to_millis(time))
        .bind(data.to_string())
        .execute(&mut *tx)
        .await?;
        let delivery_id = insert_delivery(&mut tx, webhook_id, &event_id, time, policy).await?;
        tx.commit().await?;
        Ok(delivery_id)
    }

    // ---------------------------------------------------------------------------------------
    // Deliveries

    /// Claims up to `limit` due deliveries of enabled, unpaused webhooks as `claim` (unique per
    /// call: `<worker>:<n>`, see [`Store::release_claims`]) until
    /// `lease_until` (another worker may take them after that) and returns them. On PostgreSQL
    /// concurrent workers skip each other's rows (`FOR UPDATE SKIP LOCKED`); SQLite has a
    /// single writer, so the one UPDATE is atomic.
    pub async fn claim_deliveries(
        &self,
        claim_token: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let claim = match self.backend {
            Backend::Postgres => sqlx::query(
                "UPDATE deliveries SET claim = $1, next_attempt_at = $2 WHERE id IN (\
                 SELECT d.id FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id \
                 WHERE d.status = 'pending' AND d.next_attempt_at <= $3 \
                 AND w.enabled = 1 AND w.paused_reason IS NULL \
                 ORDER BY d.next_attempt_at LIMIT $4 FOR UPDATE OF d SKIP LOCKED)",
            ),
            Backend::Sqlite => sqlx::query(
                "UPDATE deliveries SET claim = $1, next_attempt_at = $2 WHERE id IN (\
                 SELECT d.id FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id \
                 WHERE d.status = 'pending' AND d.next_attempt_at <= $3 \
                 AND w.enabled = 1 AND w.paused_reason IS NULL \
                 ORDER BY d.next_attempt_at LIMIT $4)",
            ),
        };
        let claimed = claim
            .bind(claim_token)
            .bind(to_millis(lease_until))
            .bind(to_millis(now))
            .bind(i64::from(limit))
            .execute(&self.pool)
            .await?;
        if claimed.rows_affected() == 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT d.id, d.webhook_id, d.event_id, d.round_attempts, d.give_up_at, w.url, \
             w.secret, e.event_type, e.occurred_at, e.data \
             FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id \
             JOIN events e ON e.id = d.event_id \
             WHERE d.claim = $1 AND d.status = 'pending'",
        )
        .bind(claim_token)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let webhook_id: String = row.try_get("webhook_id")?;
                // One webhook's unreadable secret fails its deliveries, not the batch.
                let secret = self
                    .open_webhook_secret(&webhook_id, &row.try_get::<String, _>("secret")?)
                    .map_err(|e| format!("the webhook's signing secret does not open: {e}"));
                Ok(ClaimedDelivery {
                    id: row.try_get("id")?,
                    webhook_id,
                    url: row.try_get("url")?,
                    secret,
                    event_id: row.try_get("event_id")?,
                    event_type: row.try_get("event_type")?,
                    event_time: from_millis(row.try_get("occurred_at")?, "events")?,
                    data: row.try_get("data")?,
                    round_attempts: u32::try_from(row.try_get::<i64, _>("round_attempts")?)
                        .unwrap_or(u32::MAX),
                    give_up_at: from_millis(row.try_get("give_up_at")?, "deliveries")?,
                })
            })
            .collect()
    }

    /// Stores an attempt of a claimed delivery and its new state. The state changes only if
    /// the claim still holds; the attempt is recorded either way (it happened).
    pub async fn finish_attempt(
        &self,
        claim_token: &str,
        delivery_id: &str,
        outcome: &AttemptOutcome,
    ) -> Result<(), StoreError> {
        let attempt = &outcome.attempt;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE deliveries SET status = $3, attempts = attempts + 1, \
             round_attempts = round_attempts + 1, next_attempt_at = $4, claim = NULL, \
             last_status_code = $5, last_error = $6, updated_at = $7 \
             WHERE id = $1 AND claim = $2",
        )
        .bind(delivery_id)
        .bind(claim_token)
        .bind(outcome.status.as_str())
        .bind(to_millis(outcome.next_attempt_at))
        .bind(attempt.status_code.map(i64::from))
        .bind(attempt.error.as_deref())
        .bind(to_millis(now()))
        .execute(&mut *tx)
        .await?;
        let inserted = sqlx::query(
            "INSERT INTO delivery_attempts (id, delivery_id, attempted_at, status_code, \
             latency_ms, error) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(time_ordered_id("").0)
        .bind(delivery_id)
        .bind(to_millis(attempt.time))
        .bind(attempt.status_code.map(i64::from))
        .bind(i64::try_from(attempt.latency_ms).unwrap_or(i64::MAX))
        .bind(attempt.error.as_deref())
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from);
        match inserted {
            Ok(_) => {}
            // The webhook (and with it the delivery) was deleted meanwhile.
            Err(StoreError::MissingReference) => return Ok(()),
            Err(e) => return Err(e),
        }
        tx.commit().await?;
        Ok(())
    }

    /// Gives back the deliveries `worker` claimed (claims `<worker>:…`) and did not finish
    /// (shutdown).
    pub async fn release_claims(&self, worker: &str) -> Result<(), StoreError> {
        // A range rather than LIKE: the token needs no escaping. ';' follows ':'.
        sqlx::query(
            "UPDATE deliveries SET claim = NULL, next_attempt_at = $3 \
             WHERE claim >= $1 AND claim < $2 AND status = 'pending'",
        )
        .bind(format!("{worker}:"))
        .bind(format!("{worker};"))
        .bind(to_millis(now()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Schedules a dead delivery of `webhook_id` again, now, with a new retry period.
    pub async fn retry_delivery(
        &self,
        webhook_id: &str,
        delivery_id: &str,
        give_up_after: Duration,
    ) -> Result<RetryOutcome, StoreError> {
        let now = now();
        let result = sqlx::query(
            "UPDATE deliveries SET status = 'pending', round_attempts = 0, next_attempt_at = $3, \
             give_up_at = $4, claim = NULL, updated_at = $3 \
             WHERE id = $1 AND webhook_id = $2 AND status = 'dead'",
        )
        .bind(delivery_id)
        .bind(webhook_id)
        .bind(to_millis(now))
        .bind(to_millis(later(now, give_up_after)))
        .execute(&self.pool)
        .await?;
        if result.rows_affected() > 0 {
            return Ok(RetryOutcome::Scheduled);
        }
        match self.get_delivery(webhook_id, delivery_id).await? {
            None => Ok(RetryOutcome::NotFound),
            Some(d) => Ok(RetryOutcome::NotDead(d.status)),
        }
    }

    /// One delivery of `webhook_id`, with its attempts.
    pub async fn get_delivery(
        &self,
        webhook_id: &str,
        delivery_id: &str,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT d.id, d.webhook_id, d.event_id, e.event_type, d.status, d.attempts, \
             d.next_attempt_at, d.last_status_code, d.last_error, d.created_at, d.updated_at \
             FROM deliveries d JOIN events e ON e.id = d.event_id \
             WHERE d.id = $1 AND d.webhook_id = $2",
        )
        .bind(delivery_id)
        .bind(webhook_id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let mut delivery = delivery_from_row(&row)?;
        let rows = sqlx::query(
            "SELECT delivery_id, attempted_at, status_code, latency_ms, error \
             FROM delivery_attempts WHERE delivery_id = $1 ORDER BY id",
        )
        .bind(delivery_id)
        .fetch_all(&self.pool)
        .await?;
        for row in &rows {
            delivery.attempts.push(attempt_from_row(row)?);
        }
        Ok(Some(delivery))
    }

    /// Up to `limit` deliveries of `webhook_id` older than `before`, newest first, each with
    /// its attempts.
    pub async fn list_deliveries(
        &self,
        webhook_id: &str,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.id, d.webhook_id, d.event_id, e.event_type, d.status, d.attempts, \
             d.next_attempt_at, d.last_status_code, d.last_error, d.created_at, d.updated_at \
             FROM deliveries d JOIN events e ON e.id = d.event_id \
             WHERE d.webhook_id = $1 AND ($2 IS NULL OR d.id < $2) \
             ORDER BY d.id DESC LIMIT $3",
        )
        .bind(webhook_id)
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut deliveries: Vec<DeliveryRecord> = rows
            .iter()
            .map(delivery_from_row)
            .collect::<Result<_, _>>()?;
        let (Some(newest), Some(oldest)) = (deliveries.first(), deliveries.last()) else {
            return Ok(deliveries);
        };
        // The attempts of exactly this page: the deliveries of this webhook between its first
        // and last id.
        let attempts = sqlx::query(
            "SELECT a.delivery_id, a.attempted_at, a.status_code, a.latency_ms, a.error \
             FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id \
             WHERE d.webhook_id = $1 AND d.id <= $2 AND d.id >= $3 ORDER BY a.id",
        )
        .bind(webhook_id)
        .bind(&newest.id)
        .bind(&oldest.id)
        .fetch_all(&self.pool)
        .await?;
        let index: std::collections::HashMap<String, usize> = deliveries
            .iter()
            .enumerate()
            .map(|(i, d)| (d.id.clone(), i))
            .collect();
        for row in &attempts {
            let delivery_id: String = row.try_get("delivery_id")?;
            if let Some(&i) = index.get(&delivery_id) {
                deliveries[i].attempts.push(attempt_from_row(row)?);
            }
        }
        Ok(deliveries)
    }
}

fn attempt_from_row(row: &AnyRow) -> Result<AttemptRecord, StoreError> {
    Ok(AttemptRecord {
        time: from_millis(row.try_get("attempted_at")?, "delivery_attempts")?,
        status_code: status_code_from(row.try_get("status_code")?),
        latency_ms: u64::try_from(row.try_get::<i64, _>("latency_ms")?).unwrap_or(0),
        error: row.try_get("error")?,
    })
}

/// `at + d`, saturating.
pub fn later(at: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| at.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

/// An event row, on both databases (and the direct lane).
const INSERT_EVENT: &str = "INSERT INTO events (id, event_type, status, occurred_at, \
    bucket_name, object_key, username, data) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// [`claim_pending`] for a committed upload on the direct lane, only while no webhook is
/// enabled: it changes nothing otherwise.
const SETTLE_COMMITTED_WITHOUT_WEBHOOKS: &str = "UPDATE events SET status = ?2 \
    WHERE id = ?1 AND status = ?3 \
    AND NOT EXISTS (SELECT 1 FROM webhooks WHERE enabled = 1)";

/// Claims a pending event, returning what its deliveries need; no row if it is not pending (any
/// more). A pending upload (`file.created`) becomes `event_type`; a pending change keeps its
/// type.
fn claim_pending(
    id: &str,
    event_type: EventType,
) -> sqlx::query::Query<'_, sqlx::Any, AnyArguments> {
    sqlx::query(
        "UPDATE events SET status = $2, \
         event_type = CASE WHEN event_type = $5 THEN $3 ELSE event_type END \
         WHERE id = $1 AND status = $4 RETURNING occurred_at, data, event_type",
    )
    .bind(id)
    .bind(EventStatus::Recorded.as_str())
    .bind(event_type.as_str())
    .bind(EventStatus::Pending.as_str())
    .bind(EventType::FileCreated.as_str())
}

/// The `event_type` column of an events row.
fn event_type_of(row: &AnyRow) -> Result<EventType, StoreError> {
    parse_column(row, "event_type", "events", |s| {
        EventType::parse(s).ok_or("unknown event type")
    })
}

/// The enabled webhooks, in id order.
async fn enabled_webhooks(pool: &sqlx::AnyPool) -> Result<Vec<WebhookRecord>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        webhook_columns!(),
        " FROM webhooks WHERE enabled = 1 ORDER BY id"
    ))
    .fetch_all(pool)
    .await?;
    rows.iter().map(webhook_from_row).collect()
}

/// One pending delivery per webhook of `webhooks` (the enabled ones) that matches, inside `tx`.
/// Applies the loop guard.
async fn create_deliveries(
    tx: &mut Tx<'_>,
    webhooks: &[WebhookRecord],
    event_id: &str,
    event_type: EventType,
    data: &EventPayload,
    time: DateTime<Utc>,
    policy: &OutboxPolicy,
) -> Result<usize, StoreError> {
    let mut created = 0;
    for webhook in webhooks {
        if !webhook.matches(event_type, data) {
            continue;
        }
        if let Some((max, window)) = policy.loop_guard
            && webhook.paused_reason.is_none()
        {
            let since = time - chrono::Duration::from_std(window).unwrap_or_default();
            let recent: i64 = sqlx::query(
                "SELECT COUNT(*) AS n FROM deliveries WHERE webhook_id = $1 AND created_at > $2",
            )
            .bind(&webhook.id)
            .bind(to_millis(since))
            .fetch_one(&mut **tx)
            .await?
            .try_get("n")?;
            if recent >= i64::from(max) {
                let reason = format!(
                    "loop guard: more than {max} deliveries within {} s; deliveries are kept \
                     and sent once the webhook is enabled again",
                    window.as_secs()
                );
                tracing::warn!(webhook = %webhook.id, url = %webhook.url, %reason,
                    "webhook paused: is its handler writing into the prefix it watches?");
                sqlx::query(
                    "UPDATE webhooks SET paused_reason = $2 WHERE id = $1 AND paused_reason IS NULL",
                )
                .bind(&webhook.id)
                .bind(&reason)
                .execute(&mut **tx)
                .await?;
            }
        }
        insert_delivery(tx, &webhook.id, event_id, time, policy).await?;
        created += 1;
    }
    Ok(created)
}

async fn insert_delivery(
    tx: &mut Tx<'_>,
    webhook_id: &str,
    event_id: &str,
    time: DateTime<Utc>,
    policy: &OutboxPolicy,
) -> Result<String, StoreError> {
    let (id, _) = time_ordered_id("dlv_");
    sqlx::query(
        "INSERT INTO deliveries (id, webhook_id, event_id, status, attempts, round_attempts, \
         next_attempt_at, give_up_at, claim, last_status_code, last_error, created_at, \
         updated_at) VALUES ($1, $2, $3, 'pending', 0, 0, $4, $5, NULL, NULL, NULL, $4, $4)",
    )
    .bind(&id)
    .bind(webhook_id)
    .bind(event_id)
    .bind(to_millis(time))
    .bind(to_millis(later(time, policy.give_up_after)))
    .execute(&mut **tx)
    .await?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_bounds() {
        assert_eq!(prefix_upper_bound("alice/"), Some("alice0".into()));
        assert_eq!(prefix_upper_bound("a\u{10FFFF}"), Some("b".into()));
        assert_eq!(prefix_upper_bound("\u{D7FF}"), Some("\u{E000}".into()));
        assert_eq!(prefix_upper_bound("\u{10FFFF}"), None);
        assert_eq!(prefix_upper_bound(""), None);
    }

    #[test]
    fn ids_sort_by_time() {
        let before = now();
        let (a, time) = time_ordered_id("evt_");
        let (b, _) = time_ordered_id("evt_");
        assert!(a.starts_with("evt_") && a.len() == 36, "{a}");
        assert!(a < b, "strictly increasing within a millisecond");
        assert!(time >= before && time <= now(), "{before} {time}");
    }
}
